//! LTX-2's text connectors (diffusers' `LTX2TextConnectors`, LTX-2.0 layout): Gemma's stacked
//! hidden states → per-layer masked mean/range normalisation → the shared `text_proj_in` →
//! one 1-D transformer per stream (video, audio) whose padding slots hold learnable
//! registers → caption embeddings for the DiT's caption projections.
//!
//! Pad rows never matter: the normalisation zeroes them and the connectors replace them by
//! registers. So everything here works on the valid rows only: [`Ltx2TextConnectors::forward`]
//! takes the reference's stacked features and mask, and [`Ltx2TextConnectors::project_layer`]
//! and [`Ltx2TextConnectors::connect`] let a caller feed one hidden state at a time (the
//! text encoder's bounded-memory path).

use super::connectors_config::{ConnectorsConfig, Stream};
use crate::ops::{MAX_SCORE_ELEMS, attend, linear, linspace_f64, rms_norm};
use crate::rope::apply_split_rope;
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};

/// Epsilon of the connectors' RMSNorms and of the masked normalisation.
const EPS: f64 = 1e-6;
/// The normalised features are multiplied by this (`scale_factor` in the reference).
const NORM_SCALE: f32 = 8.0;

/// Caption embeddings for the DiT, one row per text slot.
#[derive(Debug, Clone)]
pub struct CaptionEmbeddings {
    /// `[B, T, caption_channels]` for the video stream's `caption_projection`.
    pub video: Tensor,
    /// `[B, T, caption_channels]` for the audio stream's `audio_caption_projection`.
    pub audio: Tensor,
    /// `[B, T]` f32 ones: with registers every slot is attended.
    pub mask: Tensor,
}

#[derive(Debug, Clone)]
struct Lin {
    w_t: Tensor,
    b: Tensor,
}

impl Lin {
    fn load(w: &Weights, p: &str, i: usize, o: usize) -> Result<Self> {
        Ok(Self {
            w_t: w.get(&format!("{p}.weight"), &[o, i])?.t()?,
            b: w.get(&format!("{p}.bias"), &[o])?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.w_t, Some(&self.b))
    }
}

#[derive(Debug, Clone)]
struct Block {
    to_q: Lin,
    to_k: Lin,
    to_v: Lin,
    to_out: Lin,
    norm_q: Tensor,
    norm_k: Tensor,
    ff_in: Lin,
    ff_out: Lin,
}

/// `(suffix, [out, in] or [dim])` of one block's tensors.
fn block_tensors(c: usize) -> Vec<(&'static str, Vec<usize>)> {
    let mut v = Vec::new();
    for p in ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"] {
        v.push((p, vec![c, c]));
    }
    v.push(("attn1.norm_q", vec![c]));
    v.push(("attn1.norm_k", vec![c]));
    v.push(("ff.net.0.proj", vec![4 * c, c]));
    v.push(("ff.net.2", vec![c, 4 * c]));
    v
}

#[derive(Debug, Clone)]
struct Connector1d {
    heads: usize,
    head_dim: usize,
    registers: Tensor,
    blocks: Vec<Block>,
}

impl Connector1d {
    fn load(w: &Weights, cfg: &ConnectorsConfig, s: Stream) -> Result<Self> {
        let shape = cfg.stream(s);
        let c = cfg.caption_channels;
        let r = shape.registers.unwrap_or(0);
        let p = shape.name;
        let blocks = (0..shape.layers)
            .map(|i| {
                let b = format!("{p}.transformer_blocks.{i}");
                Ok(Block {
                    to_q: Lin::load(w, &format!("{b}.attn1.to_q"), c, c)?,
                    to_k: Lin::load(w, &format!("{b}.attn1.to_k"), c, c)?,
                    to_v: Lin::load(w, &format!("{b}.attn1.to_v"), c, c)?,
                    to_out: Lin::load(w, &format!("{b}.attn1.to_out.0"), c, c)?,
                    norm_q: w
                        .get(&format!("{b}.attn1.norm_q.weight"), &[c])?
                        .to_dtype(DType::F32)?,
                    norm_k: w
                        .get(&format!("{b}.attn1.norm_k.weight"), &[c])?
                        .to_dtype(DType::F32)?,
                    ff_in: Lin::load(w, &format!("{b}.ff.net.0.proj"), c, 4 * c)?,
                    ff_out: Lin::load(w, &format!("{b}.ff.net.2"), 4 * c, c)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            heads: shape.heads,
            head_dim: shape.head_dim,
            registers: w.get(&format!("{p}.learnable_registers"), &[r, c])?,
            blocks,
        })
    }

    /// `x` `[B, T, C]` (valid rows first, registers after) → `[B, T, C]`.
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (b, t, c) = x.dims3()?;
        let heads = |y: Tensor| -> Result<Tensor> {
            Ok(y.reshape((b, t, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let dtype = x.dtype();
        let mut x = x.clone();
        for blk in &self.blocks {
            let h = rms_norm(&x, None, EPS)?;
            // QK RMSNorm spans all heads (`rms_norm_across_heads`), with weight.
            let q = rms_norm(&blk.to_q.forward(&h)?, Some(&blk.norm_q), EPS)?;
            let k = rms_norm(&blk.to_k.forward(&h)?, Some(&blk.norm_k), EPS)?;
            let v = heads(blk.to_v.forward(&h)?)?;
            // The reference rotates in f32 whatever the model dtype.
            let rot = |y: Tensor| -> Result<Tensor> {
                let y = heads(y)?.to_dtype(DType::F32)?;
                Ok(apply_split_rope(&y, cos, sin)?.to_dtype(dtype)?)
            };
            let (q, k) = (rot(q)?, rot(k)?);
            let a = attend(&(q * scale)?, &k, &v, None, MAX_SCORE_ELEMS)?
                .transpose(1, 2)?
                .reshape((b, t, c))?;
            x = (x + blk.to_out.forward(&a)?)?;
            let h = rms_norm(&x, None, EPS)?;
            x = (&x + blk.ff_out.forward(&blk.ff_in.forward(&h)?.gelu()?)?)?;
        }
        rms_norm(&x, None, EPS)
    }
}

/// The LTX-2.0 text connectors (see the module docs).
#[derive(Debug, Clone)]
pub struct Ltx2TextConnectors {
    cfg: ConnectorsConfig,
    device: Device,
    /// `text_proj_in` rearranged to `[F, C_in, C_out]`: hidden state `l` multiplies slice
    /// `l` (the reference's input index is `d·F + l`, layer fastest).
    proj: Tensor,
    proj_bias: Option<Tensor>,
    video: Connector1d,
    audio: Connector1d,
}

impl Ltx2TextConnectors {
    /// Builds the connectors from weights under diffusers' names (see
    /// [`super::canonical_connector_name`]), every tensor shape-checked.
    pub fn new(cfg: &ConnectorsConfig, w: &Weights, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let (c, f) = (cfg.caption_channels, cfg.text_proj_in_factor);
        let proj = w
            .get("text_proj_in.weight", &[c, c * f])?
            .reshape((c, c, f))?
            .permute((2, 1, 0))?
            .contiguous()?;
        let proj_bias = if cfg.proj_bias {
            Some(w.get("text_proj_in.bias", &[c])?)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            proj,
            proj_bias,
            video: Connector1d::load(w, cfg, Stream::Video)?,
            audio: Connector1d::load(w, cfg, Stream::Audio)?,
        })
    }

    /// Canonical `(name, shape)` of every tensor the connectors read.
    pub fn expected_weights(cfg: &ConnectorsConfig) -> Vec<(String, Vec<usize>)> {
        let (c, f) = (cfg.caption_channels, cfg.text_proj_in_factor);
        let mut v = vec![("text_proj_in.weight".to_string(), vec![c, c * f])];
        if cfg.proj_bias {
            v.push(("text_proj_in.bias".into(), vec![c]));
        }
        for s in [Stream::Video, Stream::Audio] {
            let shape = cfg.stream(s);
            v.push((
                format!("{}.learnable_registers", shape.name),
                vec![shape.registers.unwrap_or(0), c],
            ));
            for i in 0..shape.layers {
                for (n, dims) in block_tensors(c) {
                    let p = format!("{}.transformer_blocks.{i}.{n}", shape.name);
                    if dims.len() == 1 {
                        v.push((format!("{p}.weight"), dims));
                    } else {
                        v.push((format!("{p}.bias"), vec![dims[0]]));
                        v.push((format!("{p}.weight"), dims));
                    }
                }
            }
        }
        v
    }

    /// The config the connectors were built with.
    pub fn config(&self) -> &ConnectorsConfig {
        &self.cfg
    }

    /// The weights' dtype, which the connectors compute in (norms and softmax in f32).
    pub fn dtype(&self) -> DType {
        self.proj.dtype()
    }

    /// Hidden state `layer` of one sample's valid tokens, `h` `[L, C]`, normalised over its
    /// `L × C` values (`(h − mean) / (max − min + 1e-6) · 8`, in f32) and multiplied by that
    /// state's slice of `text_proj_in`: `[L, C]` in f32. Summed over all states (plus
    /// [`connect`](Self::connect)'s bias) this is the reference's projection of the valid
    /// rows.
    pub fn project_layer(&self, layer: usize, h: &Tensor) -> Result<Tensor> {
        let (c, f) = (self.cfg.caption_channels, self.cfg.text_proj_in_factor);
        let (l, hc) = h.dims2()?;
        if layer >= f || hc != c || l == 0 {
            return Err(InferenceError::Input(format!(
                "hidden state {layer} is [{l}, {hc}]; expected layer < {f}, [L ≥ 1, {c}]"
            )));
        }
        let h = h.to_dtype(DType::F32)?;
        let n = (l * c) as f64;
        let mean = (h.sum_all()?.to_scalar::<f32>()? as f64 / (n + EPS)) as f32;
        let min = h.min_all()?.to_scalar::<f32>()?;
        let max = h.max_all()?.to_scalar::<f32>()?;
        let range = (max - min) + EPS as f32;
        let scalar = |v: f32| Tensor::new(v, h.device());
        let normed = h
            .broadcast_sub(&scalar(mean)?)?
            .broadcast_div(&scalar(range)?)?;
        let normed = (normed * f64::from(NORM_SCALE))?.to_dtype(self.dtype())?;
        Ok(normed
            .matmul(&self.proj.get(layer)?)?
            .to_dtype(DType::F32)?)
    }

    /// Runs both connectors on the projected valid rows of each sample (`[L_b, C]`, e.g. the
    /// sum of [`project_layer`](Self::project_layer) over all states) in a sequence of
    /// `seq_len` slots: valid rows first, in order, then the registers of the remaining
    /// slots (register `j mod R` at slot `j`). `seq_len` must be a multiple of both register
    /// counts and at least every `L_b`.
    pub fn connect(&self, projected: &[Tensor], seq_len: usize) -> Result<CaptionEmbeddings> {
        let c = self.cfg.caption_channels;
        if projected.is_empty() {
            return Err(InferenceError::Input("no sample to connect".into()));
        }
        let dtype = self.dtype();
        let mut rows = Vec::with_capacity(projected.len());
        for (i, p) in projected.iter().enumerate() {
            let (l, pc) = p.dims2()?;
            if pc != c || l == 0 || l > seq_len {
                return Err(InferenceError::Input(format!(
                    "sample {i}: projected rows are [{l}, {pc}], expected [1..={seq_len}, {c}]"
                )));
            }
            let mut p = p.to_dtype(dtype)?;
            if let Some(b) = &self.proj_bias {
                p = p.broadcast_add(b)?;
            }
            rows.push((p, l));
        }
        let (cos, sin) = self.rope_flat(seq_len)?;
        let run = |conn: &Connector1d| -> Result<Tensor> {
            // [T, C/2] → [1, heads, T, head_dim/2]: head h rotates channels h·hd/2 ..
            let per_head = |x: &Tensor| -> Result<Tensor> {
                Ok(x.reshape((1, seq_len, conn.heads, conn.head_dim / 2))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (cos, sin) = (per_head(&cos)?, per_head(&sin)?);
            let r = conn.registers.dim(0)?;
            if !seq_len.is_multiple_of(r) {
                return Err(InferenceError::Input(format!(
                    "{seq_len} text slots are not a multiple of the {r} registers"
                )));
            }
            let tiled = conn.registers.repeat((seq_len / r, 1))?; // slot j → register j mod R
            let seqs = rows
                .iter()
                .map(|(p, l)| {
                    if *l == seq_len {
                        Ok(p.clone())
                    } else {
                        Ok(Tensor::cat(&[p, &tiled.narrow(0, *l, seq_len - l)?], 0)?)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            conn.forward(&Tensor::stack(&seqs, 0)?, &cos, &sin)
        };
        Ok(CaptionEmbeddings {
            video: run(&self.video)?,
            audio: run(&self.audio)?,
            mask: Tensor::ones((projected.len(), seq_len), DType::F32, &self.device)?,
        })
    }

    /// The reference's forward: stacked hidden states `features` `[B, T, C·F]` (layer
    /// fastest) and the tokenizer's left-padded `mask` `[B, T]` (non-zero = real token) →
    /// video and audio caption embeddings `[B, T, C]`. Pad rows of `features` are ignored.
    pub fn forward(&self, features: &Tensor, mask: &Tensor) -> Result<CaptionEmbeddings> {
        let (c, f) = (self.cfg.caption_channels, self.cfg.text_proj_in_factor);
        let (b, t, cf) = features.dims3()?;
        if cf != c * f || mask.dims() != [b, t] {
            return Err(InferenceError::Input(format!(
                "features {:?} and mask {:?}: expected [B, T, {}] and [B, T]",
                features.dims(),
                mask.dims(),
                c * f
            )));
        }
        let mask: Vec<Vec<f32>> = mask.to_dtype(DType::F32)?.to_vec2()?;
        let mut projected = Vec::with_capacity(b);
        for (i, m) in mask.iter().enumerate() {
            let l = m.iter().filter(|&&x| x != 0.0).count();
            if l == 0 || m[..t - l].iter().any(|&x| x != 0.0) {
                return Err(InferenceError::Input(format!(
                    "mask row {i} must be left-padded (zeros, then at least one 1)"
                )));
            }
            let valid = features.get(i)?.narrow(0, t - l, l)?.reshape((l, c, f))?;
            let mut acc: Option<Tensor> = None;
            for layer in 0..f {
                let h = valid.narrow(2, layer, 1)?.squeeze(2)?;
                let p = self.project_layer(layer, &h)?;
                acc = Some(match acc {
                    None => p,
                    Some(a) => (a + p)?,
                });
            }
            projected.push(acc.ok_or_else(|| InferenceError::Input("no layers".into()))?);
        }
        self.connect(&projected, t)
    }

    /// Split-RoPE angles for positions `arange(T) / base`: cos and sin `[T, C / 2]` in f32,
    /// channel `g` rotating with frequency `θ^(g / (C/2 − 1)) · π/2`.
    fn rope_flat(&self, t: usize) -> Result<(Tensor, Tensor)> {
        let cfg = &self.cfg;
        let half_dim = cfg.caption_channels / 2;
        let theta = cfg.rope_theta;
        // freqs in f64 (or f32) as configured, rounded to f32; angles in f32, the
        // reference's operation order.
        let freqs: Vec<f32> = linspace_f64(half_dim)
            .into_iter()
            .map(|x| {
                if cfg.rope_double_precision {
                    (theta.powf(x) * std::f64::consts::PI / 2.0) as f32
                } else {
                    (theta as f32).powf(x as f32) * std::f32::consts::PI / 2.0
                }
            })
            .collect();
        let base = cfg.connector_rope_base_seq_len as f32;
        let mut cos = Vec::with_capacity(t * half_dim);
        let mut sin = Vec::with_capacity(t * half_dim);
        for pos in 0..t {
            let frac = (pos as f32 / base) * 2.0 - 1.0;
            for f in &freqs {
                let a = frac * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (t, half_dim), &self.device)?,
            Tensor::from_vec(sin, (t, half_dim), &self.device)?,
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::max_diff;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures")
        .join(name)
    }

    /// The mistake "valid tokens stay where the left padding put them, registers fill the
    /// leading slots" moves the output far from the reference (tests/text_parity.rs has the
    /// public-API mutations).
    #[test]
    fn valid_tokens_must_move_to_the_front() {
        let c =
            Ltx2TextConnectors::load(&fixture("text_tiny/connectors"), &Device::Cpu, DType::F32)
                .unwrap();
        let r =
            candle_core::safetensors::load(fixture("text_tiny.safetensors"), &Device::Cpu).unwrap();
        let feats = &r["gemma.prompt_embeds"];
        let (_, t, _) = feats.dims3().unwrap();
        let mask: Vec<Vec<i64>> = r["batch.mask"].to_vec2().unwrap();
        let f = c.cfg.text_proj_in_factor;
        let ch = c.cfg.caption_channels;
        let (cos, sin) = c.rope_flat(t).unwrap();
        let conn = &c.video;
        let per_head = |x: &Tensor| {
            x.reshape((1, t, conn.heads, conn.head_dim / 2))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
        };
        let (cos, sin) = (per_head(&cos), per_head(&sin));
        let regs = conn
            .registers
            .repeat((t / conn.registers.dim(0).unwrap(), 1))
            .unwrap();
        let mut worst = 0f32;
        let mut right = 0f32;
        for (i, m) in mask.iter().enumerate() {
            let l = m.iter().filter(|&&m| m == 1).count();
            let valid = feats.get(i).unwrap().narrow(0, t - l, l).unwrap();
            let valid = valid.reshape((l, ch, f)).unwrap();
            let mut acc = c
                .project_layer(0, &valid.narrow(2, 0, 1).unwrap().squeeze(2).unwrap())
                .unwrap();
            for layer in 1..f {
                let h = valid.narrow(2, layer, 1).unwrap().squeeze(2).unwrap();
                acc = (acc + c.project_layer(layer, &h).unwrap()).unwrap();
            }
            let want = r["connectors.video"].narrow(0, i, 1).unwrap();
            let run = |rows: Vec<Tensor>| {
                let x = Tensor::cat(&rows, 0).unwrap().unsqueeze(0).unwrap();
                max_diff(&conn.forward(&x, &cos, &sin).unwrap(), &want)
            };
            let front = if l < t {
                vec![acc.clone(), regs.narrow(0, l, t - l).unwrap()]
            } else {
                vec![acc.clone()]
            };
            right = right.max(run(front));
            if l < t {
                worst = worst.max(run(vec![regs.narrow(0, 0, t - l).unwrap(), acc]));
            }
        }
        println!(
            "connector mutation: valid tokens left at the end {worst:.3e} (front: {right:.1e})"
        );
        assert!(right <= 1e-4 && worst > 1e-2);
    }
}
