//! The transformer's building blocks: linear layers, norms, timestep embeddings, AdaLN-single
//! and attention (with RoPE on queries and keys and blocked softmax).

use crate::ops::{MAX_SCORE_ELEMS, attend, linear};
use crate::rope::apply_split_rope;
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{D, DType, Device, Tensor};

/// Channels of the sinusoidal timestep features fed to the timestep MLP.
const TIMESTEP_FEATURES: usize = 256;

/// (name, shape) pairs a loader reads, in load order.
pub(crate) type Expected = Vec<(String, Vec<usize>)>;

#[derive(Debug, Clone)]
pub(crate) struct Linear {
    weight_t: Tensor,
    pub(crate) bias: Tensor,
}

impl Linear {
    pub(crate) fn load(w: &Weights, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight_t: w
                .get(&format!("{prefix}.weight"), &[out_dim, in_dim])?
                .t()?,
            bias: w.get(&format!("{prefix}.bias"), &[out_dim])?,
        })
    }

    /// The (name, shape) pairs [`load`](Self::load) reads.
    pub(crate) fn expected(v: &mut Expected, prefix: &str, in_dim: usize, out_dim: usize) {
        v.push((format!("{prefix}.weight"), vec![out_dim, in_dim]));
        v.push((format!("{prefix}.bias"), vec![out_dim]));
    }

    /// `x[..., in] → [..., out]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight_t, Some(&self.bias))
    }
}

/// RMS norm over the last axis without affine weight, computed in f32 whatever the model
/// dtype (like diffusers' `RMSNorm`, which upcasts for the variance).
pub(crate) fn rms_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
    crate::ops::rms_norm(x, None, eps)
}

/// Layer norm over the last axis without affine weight, computed in f32.
pub(crate) fn layer_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
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
pub(crate) fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}

/// `temb [B, Tt, n, dim]` plus a per-block `table [n, dim]`, split into `n` tensors
/// `[B, Tt, dim]` (the reference's `get_mod_params`).
pub(crate) fn mod_params(temb: &Tensor, table: &Tensor) -> Result<Vec<Tensor>> {
    let n = table.dim(0)?;
    let ada = temb.broadcast_add(&table.unsqueeze(0)?.unsqueeze(0)?)?;
    (0..n)
        .map(|i| Ok(ada.narrow(2, i, 1)?.squeeze(2)?))
        .collect()
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
    pub(crate) fn expected(v: &mut Expected, prefix: &str, dim: usize) {
        let p = format!("{prefix}.timestep_embedder");
        Linear::expected(v, &format!("{p}.linear_1"), TIMESTEP_FEATURES, dim);
        Linear::expected(v, &format!("{p}.linear_2"), dim, dim);
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
pub(crate) struct AdaLnSingle {
    emb: TimeEmbedder,
    linear: Linear,
    n_mod: usize,
    dim: usize,
}

impl AdaLnSingle {
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize, n_mod: usize) -> Result<Self> {
        Ok(Self {
            emb: TimeEmbedder::load(w, &format!("{prefix}.emb"), dim)?,
            linear: Linear::load(w, &format!("{prefix}.linear"), dim, n_mod * dim)?,
            n_mod,
            dim,
        })
    }

    pub(crate) fn expected(v: &mut Expected, prefix: &str, dim: usize, n_mod: usize) {
        TimeEmbedder::expected(v, &format!("{prefix}.emb"), dim);
        Linear::expected(v, &format!("{prefix}.linear"), dim, n_mod * dim);
    }

    /// Returns (modulation `[N, n_mod·dim]`, embedded timestep `[N, dim]`).
    pub(crate) fn forward(&self, timesteps: &[f32], device: &Device) -> Result<(Tensor, Tensor)> {
        let emb = self.emb.forward(timesteps, device)?;
        let modulation = self.linear.forward(&emb.silu()?)?;
        Ok((modulation, emb))
    }

    /// The modulation for `b` samples of `per` timesteps each (`timesteps.len() = b·per`),
    /// shaped `[b, per, n_mod, dim]` for [`mod_params`].
    pub(crate) fn modulation(
        &self,
        timesteps: &[f32],
        b: usize,
        per: usize,
        device: &Device,
    ) -> Result<Tensor> {
        let (m, _) = self.forward(timesteps, device)?;
        Ok(m.reshape((b, per, self.n_mod, self.dim))?)
    }
}

/// RoPE tables for one side of an attention: cos/sin `[1, heads, T, width / (2·heads)]`,
/// split by `heads`, which may differ from the attention's own head count (the a2v query
/// side splits the audio width by the video head count).
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
}

impl Rope {
    fn heads(&self) -> Result<usize> {
        Ok(self.cos.dim(1)?)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Attention {
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

/// Shape of one attention layer: query width, key/value width, heads × head_dim (the inner
/// width), output width = query width.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnDims {
    pub(crate) query: usize,
    pub(crate) kv: usize,
    pub(crate) heads: usize,
    pub(crate) head_dim: usize,
}

impl Attention {
    pub(crate) fn load(w: &Weights, prefix: &str, d: AttnDims, eps: f64) -> Result<Self> {
        let inner = d.heads * d.head_dim;
        Ok(Self {
            to_q: Linear::load(w, &format!("{prefix}.to_q"), d.query, inner)?,
            to_k: Linear::load(w, &format!("{prefix}.to_k"), d.kv, inner)?,
            to_v: Linear::load(w, &format!("{prefix}.to_v"), d.kv, inner)?,
            to_out: Linear::load(w, &format!("{prefix}.to_out.0"), inner, d.query)?,
            norm_q: w.get(&format!("{prefix}.norm_q.weight"), &[inner])?,
            norm_k: w.get(&format!("{prefix}.norm_k.weight"), &[inner])?,
            heads: d.heads,
            head_dim: d.head_dim,
            eps,
        })
    }

    pub(crate) fn expected(v: &mut Expected, prefix: &str, d: AttnDims) {
        let inner = d.heads * d.head_dim;
        Linear::expected(v, &format!("{prefix}.to_q"), d.query, inner);
        Linear::expected(v, &format!("{prefix}.to_k"), d.kv, inner);
        Linear::expected(v, &format!("{prefix}.to_v"), d.kv, inner);
        Linear::expected(v, &format!("{prefix}.to_out.0"), inner, d.query);
        v.push((format!("{prefix}.norm_q.weight"), vec![inner]));
        v.push((format!("{prefix}.norm_k.weight"), vec![inner]));
    }

    /// `[B, T, inner] → [B, heads, T, head_dim]`, rotated by `rope` (split by its own head
    /// count, which is applied on the flat width when it differs from the attention's).
    fn split_heads_rotated(&self, x: &Tensor, rope: Option<&Rope>) -> Result<Tensor> {
        let (b, t, inner) = x.dims3()?;
        let split = |x: &Tensor, h: usize| -> Result<Tensor> {
            Ok(x.reshape((b, t, h, inner / h))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        match rope {
            None => split(x, self.heads),
            Some(r) if r.heads()? == self.heads => {
                apply_split_rope(&split(x, self.heads)?, &r.cos, &r.sin)
            }
            Some(r) => {
                let rh = r.heads()?;
                if !inner.is_multiple_of(2 * rh) {
                    return Err(InferenceError::Config(format!(
                        "RoPE with {rh} heads cannot rotate an attention {inner} wide"
                    )));
                }
                let rotated = apply_split_rope(&split(x, rh)?, &r.cos, &r.sin)?
                    .transpose(1, 2)?
                    .reshape((b, t, inner))?;
                split(&rotated, self.heads)
            }
        }
    }

    /// Attention of `x` over `context` (self-attention when `None`). `q_rope` rotates the
    /// queries, `k_rope` the keys; `bias` `[B, 1, 1, S]` is added to the scores.
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        q_rope: Option<&Rope>,
        k_rope: Option<&Rope>,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let ctx = context.unwrap_or(x);
        // QK RMSNorm runs across all heads at once (`rms_norm_across_heads`), with weight
        let q = rms_norm(&self.to_q.forward(x)?, self.eps)?.broadcast_mul(&self.norm_q)?;
        let k = rms_norm(&self.to_k.forward(ctx)?, self.eps)?.broadcast_mul(&self.norm_k)?;
        let v = self.to_v.forward(ctx)?;
        let q = self.split_heads_rotated(&q, q_rope)?;
        let k = self.split_heads_rotated(&k, k_rope)?;
        let v = self.split_heads_rotated(&v, None)?;
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

/// GELU-tanh feed-forward `dim → 4·dim → dim`.
#[derive(Debug, Clone)]
pub(crate) struct FeedForward {
    proj_in: Linear,
    proj_out: Linear,
}

impl FeedForward {
    pub(crate) fn load(w: &Weights, prefix: &str, dim: usize) -> Result<Self> {
        Ok(Self {
            proj_in: Linear::load(w, &format!("{prefix}.net.0.proj"), dim, 4 * dim)?,
            proj_out: Linear::load(w, &format!("{prefix}.net.2"), 4 * dim, dim)?,
        })
    }

    pub(crate) fn expected(v: &mut Expected, prefix: &str, dim: usize) {
        Linear::expected(v, &format!("{prefix}.net.0.proj"), dim, 4 * dim);
        Linear::expected(v, &format!("{prefix}.net.2"), 4 * dim, dim);
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj_out.forward(&self.proj_in.forward(x)?.gelu()?)
    }
}

/// `PixArtAlphaTextProjection`: linear → GELU-tanh → linear.
#[derive(Debug, Clone)]
pub(crate) struct CaptionProjection {
    linear_1: Linear,
    linear_2: Linear,
}

impl CaptionProjection {
    pub(crate) fn load(w: &Weights, prefix: &str, in_dim: usize, dim: usize) -> Result<Self> {
        Ok(Self {
            linear_1: Linear::load(w, &format!("{prefix}.linear_1"), in_dim, dim)?,
            linear_2: Linear::load(w, &format!("{prefix}.linear_2"), dim, dim)?,
        })
    }

    pub(crate) fn expected(v: &mut Expected, prefix: &str, in_dim: usize, dim: usize) {
        Linear::expected(v, &format!("{prefix}.linear_1"), in_dim, dim);
        Linear::expected(v, &format!("{prefix}.linear_2"), dim, dim);
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.gelu()?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::seeded;

    #[test]
    fn rope_split_by_another_head_count_rotates_each_chunk_of_the_width() {
        // An attention with 2 heads of 12 rotated by tables split into 4 heads of 6 must equal
        // rotating each 6-wide chunk of the flat width with its table row.
        let (b, t) = (1, 3);
        let x = seeded(&[b, t, 24], 5);
        let cos = seeded(&[1, 4, t, 3], 6);
        let sin = seeded(&[1, 4, t, 3], 7);
        let attn = Attention {
            to_q: Linear {
                weight_t: seeded(&[1, 1], 0),
                bias: seeded(&[1], 0),
            },
            to_k: Linear {
                weight_t: seeded(&[1, 1], 0),
                bias: seeded(&[1], 0),
            },
            to_v: Linear {
                weight_t: seeded(&[1, 1], 0),
                bias: seeded(&[1], 0),
            },
            to_out: Linear {
                weight_t: seeded(&[1, 1], 0),
                bias: seeded(&[1], 0),
            },
            norm_q: seeded(&[1], 0),
            norm_k: seeded(&[1], 0),
            heads: 2,
            head_dim: 12,
            eps: 1e-6,
        };
        let rope = Rope {
            cos: cos.clone(),
            sin: sin.clone(),
        };
        let got = attn.split_heads_rotated(&x, Some(&rope)).unwrap(); // [1, 2, 3, 12]
        let xv: Vec<Vec<f32>> = x.squeeze(0).unwrap().to_vec2().unwrap();
        let (cv, sv) = (
            cos.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            sin.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        let gv = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for tok in 0..t {
            let row = &xv[tok];
            for chunk in 0..4 {
                for e in 0..3 {
                    let (a, bb) = (row[chunk * 6 + e], row[chunk * 6 + 3 + e]);
                    let ti = (chunk * t + tok) * 3 + e;
                    let (c, s) = (cv[ti], sv[ti]);
                    let want = [a * c - bb * s, bb * c + a * s];
                    for (half, w) in want.iter().enumerate() {
                        let flat = chunk * 6 + half * 3 + e; // position in the flat width
                        let (head, within) = (flat / 12, flat % 12);
                        let g = gv[(head * t + tok) * 12 + within];
                        assert!((g - w).abs() < 1e-6, "tok {tok} chunk {chunk} e {e}");
                    }
                }
            }
        }
    }
}
