//! The LTX-2 video transformer, video stream only.
//!
//! Matches diffusers' `LTX2VideoTransformer3DModel` with `isolate_modalities=True` (no
//! audio↔video cross-attention), which makes the video output independent of the audio
//! stream. With real weights the audio stream feeds the video stream in every block, so
//! real-quality video will need the audio stream too; see README.md.

use crate::config::TransformerConfig;
use crate::rope::{VideoCoords, apply_split_rope, split_rope_tables};
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{D, DType, Device, Tensor};

/// Channels of the sinusoidal timestep features fed to the timestep MLP.
const TIMESTEP_FEATURES: usize = 256;
/// Additive bias for masked-out text tokens (the reference uses a finite value, not −∞).
const MASK_BIAS: f64 = -10000.0;

#[derive(Debug, Clone)]
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(w: &Weights, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight_t: w
                .get(&format!("{prefix}.weight"), &[out_dim, in_dim])?
                .t()?,
            bias: w.get(&format!("{prefix}.bias"), &[out_dim])?,
        })
    }

    /// `x[..., in] → [..., out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / in_dim.max(1);
        let y = x
            .reshape((rows, in_dim))?
            .matmul(&self.weight_t)?
            .broadcast_add(&self.bias)?;
        let mut out_dims = dims;
        if let Some(last) = out_dims.last_mut() {
            *last = self.weight_t.dim(1)?;
        }
        Ok(y.reshape(out_dims)?)
    }
}

/// RMS norm over the last axis without affine weight, computed in f32 whatever the model
/// dtype (like diffusers' `RMSNorm`, which upcasts for the variance).
fn rms_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let var = x.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(x.broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?
        .to_dtype(dtype)?)
}

/// Layer norm over the last axis without affine weight, computed in f32.
fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    Ok(centered
        .broadcast_mul(&(var + eps)?.sqrt()?.recip()?)?
        .to_dtype(dtype)?)
}

/// `x * (1 + scale) + shift`, broadcasting `[B, Tt, dim]` modulation over tokens.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}

/// Sinusoidal timestep features `[N, 256]`, `[cos | sin]` order, computed in f32 with the
/// reference's operation order (`exp(−ln(10⁴)·i / 128)`, then `t · freq`).
fn timestep_features(timesteps: &[f32], device: &Device) -> Result<Tensor> {
    let half = TIMESTEP_FEATURES / 2;
    let neg_log = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| ((neg_log * i as f32) / half as f32).exp())
        .collect();
    let mut out = Vec::with_capacity(timesteps.len() * TIMESTEP_FEATURES);
    for &t in timesteps {
        out.extend(freqs.iter().map(|f| (t * f).cos()));
        out.extend(freqs.iter().map(|f| (t * f).sin()));
    }
    Ok(Tensor::from_vec(
        out,
        (timesteps.len(), TIMESTEP_FEATURES),
        device,
    )?)
}

/// Timestep → `[N, dim]` embedding: the sinusoidal features (f32, angles up to 1000 rad),
/// then linear → SiLU → linear in the weights' dtype. diffusers' `TimestepEmbedding`, used
/// by the transformer's AdaLN-single and by a timestep-conditioned VAE decoder
/// (`PixArtAlphaCombinedTimestepSizeEmbeddings` without size conditions).
#[derive(Debug, Clone)]
pub(crate) struct TimeEmbedder {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimeEmbedder {
    /// Reads `{prefix}.timestep_embedder.linear_{1,2}`.
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize) -> Result<Self> {
        let p = format!("{prefix}.timestep_embedder");
        Ok(Self {
            linear_1: Linear::load(w, &format!("{p}.linear_1"), TIMESTEP_FEATURES, dim)?,
            linear_2: Linear::load(w, &format!("{p}.linear_2"), dim, dim)?,
        })
    }

    /// The (name, shape) pairs [`load`](Self::load) reads, in load order.
    pub(crate) fn expected(v: &mut Vec<(String, Vec<usize>)>, prefix: &str, dim: usize) {
        let p = format!("{prefix}.timestep_embedder");
        v.push((format!("{p}.linear_1.weight"), vec![dim, TIMESTEP_FEATURES]));
        v.push((format!("{p}.linear_1.bias"), vec![dim]));
        v.push((format!("{p}.linear_2.weight"), vec![dim, dim]));
        v.push((format!("{p}.linear_2.bias"), vec![dim]));
    }

    /// `[N, dim]` for one timestep (in model units) per sample.
    pub(crate) fn forward(&self, timesteps: &[f32], device: &Device) -> Result<Tensor> {
        let feats = timestep_features(timesteps, device)?.to_dtype(self.linear_1.bias.dtype())?;
        self.linear_2
            .forward(&self.linear_1.forward(&feats)?.silu()?)
    }
}

/// AdaLN-single: timestep → embedding `[N, dim]` and `n_mod` modulation vectors.
#[derive(Debug, Clone)]
struct AdaLnSingle {
    emb: TimeEmbedder,
    linear: Linear,
}

impl AdaLnSingle {
    fn load(w: &Weights, prefix: &str, dim: usize, n_mod: usize) -> Result<Self> {
        Ok(Self {
            emb: TimeEmbedder::load(w, &format!("{prefix}.emb"), dim)?,
            linear: Linear::load(w, &format!("{prefix}.linear"), dim, n_mod * dim)?,
        })
    }

    /// Returns (modulation `[N, n_mod·dim]`, embedded timestep `[N, dim]`).
    fn forward(&self, timesteps: &[f32], device: &Device) -> Result<(Tensor, Tensor)> {
        let emb = self.emb.forward(timesteps, device)?;
        let modulation = self.linear.forward(&emb.silu()?)?;
        Ok((modulation, emb))
    }
}

#[derive(Debug, Clone)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
    heads: usize,
    head_dim: usize,
    eps: f64,
}

impl Attention {
    fn load(w: &Weights, prefix: &str, cfg: &TransformerConfig, kv_dim: usize) -> Result<Self> {
        let dim = cfg.inner_dim();
        Ok(Self {
            to_q: Linear::load(w, &format!("{prefix}.to_q"), dim, dim)?,
            to_k: Linear::load(w, &format!("{prefix}.to_k"), kv_dim, dim)?,
            to_v: Linear::load(w, &format!("{prefix}.to_v"), kv_dim, dim)?,
            to_out: Linear::load(w, &format!("{prefix}.to_out.0"), dim, dim)?,
            norm_q: w.get(&format!("{prefix}.norm_q.weight"), &[dim])?,
            norm_k: w.get(&format!("{prefix}.norm_k.weight"), &[dim])?,
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
            eps: cfg.norm_eps,
        })
    }

    /// `[B, T, dim] → [B, heads, T, head_dim]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        Ok(x.reshape((b, t, self.heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Attention of `x` over `context` (self-attention when `None`). `rope` rotates queries
    /// and keys; `bias` `[B, 1, 1, S]` is added to the scores.
    fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        rope: Option<(&Tensor, &Tensor)>,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let ctx = context.unwrap_or(x);
        // QK RMSNorm runs across all heads at once (`rms_norm_across_heads`), with weight
        let q = rms_norm(&self.to_q.forward(x)?, self.eps)?.broadcast_mul(&self.norm_q)?;
        let k = rms_norm(&self.to_k.forward(ctx)?, self.eps)?.broadcast_mul(&self.norm_k)?;
        let v = self.to_v.forward(ctx)?;
        let (mut q, mut k, v) = (
            self.split_heads(&q)?,
            self.split_heads(&k)?,
            self.split_heads(&v)?,
        );
        if let Some((cos, sin)) = rope {
            q = apply_split_rope(&q, cos, sin)?;
            k = apply_split_rope(&k, cos, sin)?;
        }
        // Scale folded into q: one pass over [T, D] instead of over [T, S] scores.
        let q = (q * (1.0 / (self.head_dim as f64).sqrt()))?;
        let out = attend(&q, &k, &v, bias, MAX_SCORE_ELEMS)?; // [B, H, T, Dh]
        let (b, _, t, _) = out.dims4()?;
        let out = out
            .transpose(1, 2)?
            .reshape((b, t, self.heads * self.head_dim))?;
        self.to_out.forward(&out)
    }
}

/// Most elements of one attention-scores block. candle's CUDA softmax indexes rows with
/// `i32` (`row · ncols + col`), so one block must stay below 2^31 elements, and the scores
/// are the largest temporary of the forward (32 heads × 8160² at the released shape would be
/// 2.1e9); 2^28 keeps a block at 1 GiB in f32.
pub const MAX_SCORE_ELEMS: usize = 1 << 28;

/// Softmax attention of pre-scaled `q` `[B, H, T, D]` over `k`, `v` `[B, H, S, D]` with an
/// optional additive `bias` `[B, 1, 1, S]`, computed in blocks of whole heads (and, when one
/// head is too large, of query rows) with at most `max_elems` scores each. The softmax runs
/// in f32 whatever the model dtype (like PyTorch's fused attention).
fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    bias: Option<&Tensor>,
    max_elems: usize,
) -> Result<Tensor> {
    let (b, h, t, _) = q.dims4()?;
    let s = k.dim(2)?;
    let dtype = q.dtype();
    let block = |q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>| -> Result<Tensor> {
        let mut scores = q.matmul(&k.t()?)?.to_dtype(DType::F32)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(&bias.to_dtype(DType::F32)?)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(dtype)?;
        Ok(probs.matmul(v)?)
    };
    let per_head = t * s;
    if b * h * per_head <= max_elems {
        return block(q, k, v, bias);
    }
    let heads = (max_elems / per_head.max(1)).clamp(1, h);
    let rows = if per_head > max_elems {
        (max_elems / s.max(1)).max(1)
    } else {
        t
    };
    let mut per_batch = Vec::with_capacity(b);
    for bi in 0..b {
        let (qb, kb, vb) = (
            q.narrow(0, bi, 1)?,
            k.narrow(0, bi, 1)?,
            v.narrow(0, bi, 1)?,
        );
        let bias_b = bias.map(|x| x.narrow(0, bi, 1)).transpose()?;
        let mut per_head_block = Vec::new();
        for h0 in (0..h).step_by(heads) {
            let hn = heads.min(h - h0);
            let (qh, kh, vh) = (
                qb.narrow(1, h0, hn)?,
                kb.narrow(1, h0, hn)?,
                vb.narrow(1, h0, hn)?,
            );
            let mut per_rows = Vec::new();
            for t0 in (0..t).step_by(rows) {
                let qr = qh.narrow(2, t0, rows.min(t - t0))?;
                per_rows.push(block(&qr, &kh, &vh, bias_b.as_ref())?);
            }
            per_head_block.push(Tensor::cat(&per_rows, 2)?);
        }
        per_batch.push(Tensor::cat(&per_head_block, 1)?);
    }
    Ok(Tensor::cat(&per_batch, 0)?)
}

#[derive(Debug, Clone)]
struct Block {
    attn1: Attention,
    attn2: Attention,
    ff_in: Linear,
    ff_out: Linear,
    /// `[6, dim]`: shift/scale/gate for self-attention, then for the feed-forward.
    scale_shift_table: Tensor,
    eps: f64,
}

impl Block {
    fn load(w: &Weights, i: usize, cfg: &TransformerConfig) -> Result<Self> {
        let dim = cfg.inner_dim();
        let p = format!("transformer_blocks.{i}");
        Ok(Self {
            attn1: Attention::load(w, &format!("{p}.attn1"), cfg, dim)?,
            attn2: Attention::load(w, &format!("{p}.attn2"), cfg, cfg.cross_attention_dim)?,
            ff_in: Linear::load(w, &format!("{p}.ff.net.0.proj"), dim, 4 * dim)?,
            ff_out: Linear::load(w, &format!("{p}.ff.net.2"), 4 * dim, dim)?,
            scale_shift_table: w.get(&format!("{p}.scale_shift_table"), &[6, dim])?,
            eps: cfg.norm_eps,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        rope: (&Tensor, &Tensor),
        text_bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        // temb: [B, Tt, 6, dim]; per-block table added before splitting
        let ada = temb.broadcast_add(&self.scale_shift_table.unsqueeze(0)?.unsqueeze(0)?)?;
        let p = |i: usize| -> Result<Tensor> { Ok(ada.narrow(2, i, 1)?.squeeze(2)?) };
        let (shift_msa, scale_msa, gate_msa) = (p(0)?, p(1)?, p(2)?);
        let (shift_mlp, scale_mlp, gate_mlp) = (p(3)?, p(4)?, p(5)?);

        let h = modulate(&rms_norm(x, self.eps)?, &shift_msa, &scale_msa)?;
        let a = self.attn1.forward(&h, None, Some(rope), None)?;
        let x = (x + a.broadcast_mul(&gate_msa)?)?;

        let h = rms_norm(&x, self.eps)?;
        let a = self.attn2.forward(&h, Some(context), None, text_bias)?;
        let x = (x + a)?;

        let h = modulate(&rms_norm(&x, self.eps)?, &shift_mlp, &scale_mlp)?;
        let f = self.ff_out.forward(&self.ff_in.forward(&h)?.gelu()?)?;
        Ok((x + f.broadcast_mul(&gate_mlp)?)?)
    }
}

/// Timesteps for one forward: one per sample, or one per sample and token (the reference
/// accepts both; per-token timesteps are how conditioning frames are kept clean).
#[derive(Debug, Clone, PartialEq)]
pub enum Timesteps {
    /// `[B]` values in model units (σ × 1000).
    PerSample(Vec<f32>),
    /// `[B][T]` values in model units.
    PerToken(Vec<Vec<f32>>),
}

/// RoPE tables for one latent grid, from [`Ltx2VideoTransformer::rope_tables`].
#[derive(Debug, Clone)]
pub struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    tokens: usize,
}

/// The LTX-2 video transformer (video stream).
#[derive(Debug, Clone)]
pub struct Ltx2VideoTransformer {
    cfg: TransformerConfig,
    device: Device,
    proj_in: Linear,
    caption_1: Linear,
    caption_2: Linear,
    time_embed: AdaLnSingle,
    blocks: Vec<Block>,
    scale_shift_table: Tensor,
    proj_out: Linear,
}

impl Ltx2VideoTransformer {
    /// Builds the model from weights in canonical names (see [`crate::weights`]). Every
    /// tensor is shape-checked against `cfg`.
    pub fn new(cfg: &TransformerConfig, w: &Weights, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let dim = cfg.inner_dim();
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::load(w, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            proj_in: Linear::load(w, "proj_in", cfg.in_channels, dim)?,
            caption_1: Linear::load(w, "caption_projection.linear_1", cfg.caption_channels, dim)?,
            caption_2: Linear::load(w, "caption_projection.linear_2", dim, dim)?,
            time_embed: AdaLnSingle::load(w, "time_embed", dim, 6)?,
            blocks,
            scale_shift_table: w.get("scale_shift_table", &[2, dim])?,
            proj_out: Linear::load(w, "proj_out", dim, cfg.out_channels())?,
        })
    }

    /// The config the model was built with.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// The dtype of the weights, which the forward computes in (norms and tables in f32).
    pub fn dtype(&self) -> DType {
        self.proj_in.bias.dtype()
    }

    /// Canonical (name, shape) of every tensor the video stream reads, in load order.
    pub fn expected_weights(cfg: &TransformerConfig) -> Vec<(String, Vec<usize>)> {
        let dim = cfg.inner_dim();
        let mut v: Vec<(String, Vec<usize>)> = Vec::new();
        let lin = |v: &mut Vec<(String, Vec<usize>)>, p: &str, i: usize, o: usize| {
            v.push((format!("{p}.weight"), vec![o, i]));
            v.push((format!("{p}.bias"), vec![o]));
        };
        lin(&mut v, "proj_in", cfg.in_channels, dim);
        lin(
            &mut v,
            "caption_projection.linear_1",
            cfg.caption_channels,
            dim,
        );
        lin(&mut v, "caption_projection.linear_2", dim, dim);
        TimeEmbedder::expected(&mut v, "time_embed.emb", dim);
        lin(&mut v, "time_embed.linear", dim, 6 * dim);
        for i in 0..cfg.num_layers {
            let p = format!("transformer_blocks.{i}");
            for (a, kv) in [("attn1", dim), ("attn2", cfg.cross_attention_dim)] {
                lin(&mut v, &format!("{p}.{a}.to_q"), dim, dim);
                lin(&mut v, &format!("{p}.{a}.to_k"), kv, dim);
                lin(&mut v, &format!("{p}.{a}.to_v"), kv, dim);
                lin(&mut v, &format!("{p}.{a}.to_out.0"), dim, dim);
                v.push((format!("{p}.{a}.norm_q.weight"), vec![dim]));
                v.push((format!("{p}.{a}.norm_k.weight"), vec![dim]));
            }
            lin(&mut v, &format!("{p}.ff.net.0.proj"), dim, 4 * dim);
            lin(&mut v, &format!("{p}.ff.net.2"), 4 * dim, dim);
            v.push((format!("{p}.scale_shift_table"), vec![6, dim]));
        }
        v.push(("scale_shift_table".into(), vec![2, dim]));
        lin(&mut v, "proj_out", dim, cfg.out_channels());
        v
    }

    /// One denoising forward.
    ///
    /// - `latents`: packed video tokens `[B, T, in_channels]` (T in the coordinates' order);
    /// - `timesteps`: σ × 1000 per sample or per token;
    /// - `text`: caption embeddings `[B, S, caption_channels]`;
    /// - `text_mask`: `[B, S]`, 1 for real tokens and 0 for padding (`None`: all real);
    /// - `coords`: token positions from [`VideoCoords::for_latent_grid`].
    ///
    /// Inputs may be of any float dtype; they are cast to the model's [`dtype`](Self::dtype).
    /// Returns the velocity prediction `[B, T, out_channels]` in f32 (the scheduler's
    /// arithmetic stays in f32, as in the reference pipeline).
    pub fn forward(
        &self,
        latents: &Tensor,
        timesteps: &Timesteps,
        text: &Tensor,
        text_mask: Option<&Tensor>,
        coords: &VideoCoords,
    ) -> Result<Tensor> {
        let rope = self.rope_tables(coords)?;
        self.forward_with_rope(latents, timesteps, text, text_mask, &rope)
    }

    /// The RoPE tables for `coords`, built once (on the host, in the reference's precision)
    /// and uploaded in the model dtype, for [`forward_with_rope`](Self::forward_with_rope):
    /// a denoising loop reuses them for every step.
    pub fn rope_tables(&self, coords: &VideoCoords) -> Result<RopeTables> {
        let (cos, sin) = split_rope_tables(&self.cfg, coords, &self.device)?;
        Ok(RopeTables {
            cos: cos.to_dtype(self.dtype())?,
            sin: sin.to_dtype(self.dtype())?,
            tokens: coords.num_tokens(),
        })
    }

    /// [`forward`](Self::forward) with prebuilt [`RopeTables`].
    pub fn forward_with_rope(
        &self,
        latents: &Tensor,
        timesteps: &Timesteps,
        text: &Tensor,
        text_mask: Option<&Tensor>,
        rope: &RopeTables,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let dim = cfg.inner_dim();
        let (b, t, c) = latents.dims3()?;
        if c != cfg.in_channels {
            return Err(InferenceError::Input(format!(
                "latents have {c} channels, the model takes {}",
                cfg.in_channels
            )));
        }
        if t != rope.tokens {
            return Err(InferenceError::Input(format!(
                "latents have {t} tokens, coordinates describe {}",
                rope.tokens
            )));
        }
        let (tb, s, tc) = text.dims3()?;
        if tb != b || tc != cfg.caption_channels {
            return Err(InferenceError::Input(format!(
                "text embeddings are [{tb}, {s}, {tc}], expected [{b}, S, {}]",
                cfg.caption_channels
            )));
        }
        let (flat, per_token): (Vec<f32>, usize) = match timesteps {
            Timesteps::PerSample(v) if v.len() == b => (v.clone(), 1),
            Timesteps::PerToken(rows) if rows.len() == b && rows.iter().all(|r| r.len() == t) => {
                (rows.concat(), t)
            }
            _ => {
                return Err(InferenceError::Input(format!(
                    "timesteps must be [{b}] or [{b}][{t}]"
                )));
            }
        };
        if flat.iter().any(|v| !v.is_finite()) {
            return Err(InferenceError::Input("timesteps must be finite".into()));
        }
        let text_bias = match text_mask {
            None => None,
            Some(m) => {
                if m.dims() != [b, s] {
                    return Err(InferenceError::Input(format!(
                        "text mask is {:?}, expected [{b}, {s}]",
                        m.dims()
                    )));
                }
                // (1 − mask) · −10⁴, broadcast over heads and queries
                let bias = ((m.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * MASK_BIAS)?;
                // Stays f32: the softmax runs in f32.
                Some(bias.reshape((b, 1, 1, s))?)
            }
        };

        let dtype = self.dtype();
        let (cos, sin) = (&rope.cos, &rope.sin);
        let x = self.proj_in.forward(&latents.to_dtype(dtype)?)?;
        let (modulation, embedded) = self.time_embed.forward(&flat, &self.device)?;
        let temb = modulation.reshape((b, per_token, 6, dim))?;
        let embedded = embedded.reshape((b, per_token, 1, dim))?;
        let context = self
            .caption_2
            .forward(&self.caption_1.forward(&text.to_dtype(dtype)?)?.gelu()?)?;

        let mut x = x;
        for block in &self.blocks {
            x = block.forward(&x, &temb, &context, (cos, sin), text_bias.as_ref())?;
        }

        let ss = embedded.broadcast_add(&self.scale_shift_table.unsqueeze(0)?.unsqueeze(0)?)?;
        let shift = ss.narrow(2, 0, 1)?.squeeze(2)?;
        let scale = ss.narrow(2, 1, 1)?.squeeze(2)?;
        let x = modulate(&layer_norm(&x, 1e-6)?, &shift, &scale)?;
        Ok(self.proj_out.forward(&x)?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, seeded};

    #[test]
    fn blocked_attention_equals_one_block() {
        let (b, h, t, s, d) = (2, 3, 7, 5, 4);
        let q = seeded(&[b, h, t, d], 1);
        let k = seeded(&[b, h, s, d], 2);
        let v = seeded(&[b, h, s, d], 3);
        let bias = (seeded(&[b, 1, 1, s], 4) * 3.0).unwrap();
        let whole = attend(&q, &k, &v, Some(&bias), usize::MAX).unwrap();
        // 35 scores per head: blocks of 2 heads, of 1 head, and of 2 and 1 query rows.
        for limit in [70, 35, 12, 1] {
            let blocked = attend(&q, &k, &v, Some(&bias), limit).unwrap();
            let diff = max_diff(&whole, &blocked);
            assert!(
                diff <= 1e-6,
                "limit {limit}: blocking moved the output by {diff}"
            );
        }
        let no_bias = attend(&q, &k, &v, None, 12).unwrap();
        assert!(max_diff(&no_bias, &attend(&q, &k, &v, None, usize::MAX).unwrap()) <= 1e-6);
        assert!(max_diff(&no_bias, &whole) > 1e-3, "the bias must matter");
    }
}
