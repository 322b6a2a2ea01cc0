//! The Gemma-3 text model as LTX-2 uses it: every hidden state, no logits.
//!
//! Matches transformers' `Gemma3TextModel` with `output_hidden_states=True`: state 0 is the
//! token embeddings times `sqrt(hidden_size)` (the scale rounded to the weight dtype), states
//! `1..n` are the raw outputs of layers `0..n-2`, and state `n` is the last layer's output
//! after the final RMSNorm. Each decoder layer is pre- and post-normed attention and a gated
//! GELU-tanh feed-forward; attention has per-head RMSNorm on queries and keys, RoPE (θ and a
//! linear position scale per layer type, tables in f32), grouped key/value heads, scores
//! scaled by `query_pre_attn_scalar^-1/2`, causal masks with a sliding window on the local
//! layers and an optional key-padding mask. RMSNorms compute in f32 and scale by `1 + w`.
//!
//! With left padding the reference gives the real tokens positions `T-L .. T-1`; running
//! only those L tokens at the same positions ([`Gemma3TextEncoder::forward`] with
//! `first_position = T - L` and no mask) gives the same rows (`tests/text_parity.rs`).

use super::gemma_config::{GemmaConfig, LayerType, RopeParams};
use crate::ops::{MAX_SCORE_ELEMS, attend, linear, rms_norm};
use crate::rope::apply_split_rope;
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};

/// Longest token sequence one forward accepts, and the end of its positions (the pipeline
/// uses 1024).
pub const MAX_TEXT_TOKENS: usize = 4096;

#[derive(Debug, Clone)]
struct Layer {
    q_t: Tensor,
    k_t: Tensor,
    v_t: Tensor,
    o_t: Tensor,
    /// `1 + w` in f32, for the RMSNorms.
    q_norm: Tensor,
    k_norm: Tensor,
    input_norm: Tensor,
    post_attn_norm: Tensor,
    pre_ff_norm: Tensor,
    post_ff_norm: Tensor,
    gate_t: Tensor,
    up_t: Tensor,
    down_t: Tensor,
    kind: LayerType,
}

/// Additive bias of a masked-out key. Finite on purpose: a query row with every key masked
/// (a pad row) then gets a uniform softmax instead of NaN, and a NaN can never reach a valid
/// row through a zero attention weight.
const MASKED: f32 = -1e30;
/// `(name, shape)` of every tensor one layer reads, relative to `layers.{i}.`.
fn layer_tensors(cfg: &GemmaConfig) -> Vec<(&'static str, Vec<usize>)> {
    let (h, hd) = (cfg.hidden_size, cfg.head_dim);
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
    let i = cfg.intermediate_size;
    vec![
        ("self_attn.q_proj.weight", vec![q, h]),
        ("self_attn.k_proj.weight", vec![kv, h]),
        ("self_attn.v_proj.weight", vec![kv, h]),
        ("self_attn.o_proj.weight", vec![h, q]),
        ("self_attn.q_norm.weight", vec![hd]),
        ("self_attn.k_norm.weight", vec![hd]),
        ("input_layernorm.weight", vec![h]),
        ("post_attention_layernorm.weight", vec![h]),
        ("pre_feedforward_layernorm.weight", vec![h]),
        ("post_feedforward_layernorm.weight", vec![h]),
        ("mlp.gate_proj.weight", vec![i, h]),
        ("mlp.up_proj.weight", vec![i, h]),
        ("mlp.down_proj.weight", vec![h, i]),
    ]
}

/// `1 + w` in f32 (Gemma's RMSNorm multiplies in f32 before casting back).
fn norm_scale(w: &Weights, name: &str, dim: usize) -> Result<Tensor> {
    Ok((w.get(name, &[dim])?.to_dtype(DType::F32)? + 1.0)?)
}

impl Layer {
    fn load(w: &Weights, i: usize, cfg: &GemmaConfig) -> Result<Self> {
        let p = |n: &str| format!("layers.{i}.{n}");
        let shapes = layer_tensors(cfg);
        let shape = |n: &str| -> Vec<usize> {
            shapes
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, s)| s.clone())
                .unwrap_or_default()
        };
        let t = |n: &str| -> Result<Tensor> { Ok(w.get(&p(n), &shape(n))?.t()?) };
        let ns = |n: &str, dim: usize| norm_scale(w, &p(n), dim);
        let (h, hd) = (cfg.hidden_size, cfg.head_dim);
        Ok(Self {
            q_t: t("self_attn.q_proj.weight")?,
            k_t: t("self_attn.k_proj.weight")?,
            v_t: t("self_attn.v_proj.weight")?,
            o_t: t("self_attn.o_proj.weight")?,
            q_norm: ns("self_attn.q_norm.weight", hd)?,
            k_norm: ns("self_attn.k_norm.weight", hd)?,
            input_norm: ns("input_layernorm.weight", h)?,
            post_attn_norm: ns("post_attention_layernorm.weight", h)?,
            pre_ff_norm: ns("pre_feedforward_layernorm.weight", h)?,
            post_ff_norm: ns("post_feedforward_layernorm.weight", h)?,
            gate_t: t("mlp.gate_proj.weight")?,
            up_t: t("mlp.up_proj.weight")?,
            down_t: t("mlp.down_proj.weight")?,
            kind: cfg.layer_types[i],
        })
    }
}

/// RoPE tables `[1, 1, T, head_dim / 2]` in f32 for positions `first .. first + T`.
fn rope_tables(
    p: RopeParams,
    head_dim: usize,
    first: usize,
    t: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    // transformers: 1 / θ^(arange(0, d, 2) / d) in f32, then / factor; angle = pos · inv_freq.
    let theta = p.theta as f32;
    let factor = p.linear_factor as f32;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32) / factor)
        .collect();
    let mut cos = Vec::with_capacity(t * half);
    let mut sin = Vec::with_capacity(t * half);
    for pos in first..first + t {
        for f in &inv {
            let a = pos as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (1, 1, t, half), device)?,
        Tensor::from_vec(sin, (1, 1, t, half), device)?,
    ))
}

/// Additive attention bias `[B, 1, T, T]` (f32): causal, the sliding window when given, and
/// the key-padding mask when given (`mask[b][j] == 0` hides key `j`).
fn attention_bias(
    t: usize,
    window: Option<usize>,
    mask: Option<&[Vec<bool>]>,
    batch: usize,
    device: &Device,
) -> Result<Tensor> {
    let mut v = Vec::with_capacity(batch * t * t);
    for b in 0..batch {
        for i in 0..t {
            for j in 0..t {
                let visible =
                    j <= i && window.is_none_or(|w| i - j < w) && mask.is_none_or(|m| m[b][j]);
                v.push(if visible { 0.0 } else { MASKED });
            }
        }
    }
    Ok(Tensor::from_vec(v, (batch, 1, t, t), device)?)
}

/// Gemma-3's text model returning every hidden state (see the module docs).
#[derive(Debug, Clone)]
pub struct Gemma3TextEncoder {
    cfg: GemmaConfig,
    device: Device,
    embed: Tensor,
    /// `sqrt(hidden_size)` rounded to the weight dtype, as a scalar tensor of that dtype.
    embed_scale: Tensor,
    layers: Vec<Layer>,
    final_norm: Tensor,
}

impl Gemma3TextEncoder {
    /// Builds the model from weights under canonical names (`embed_tokens.weight`,
    /// `layers.{i}.…`, `norm.weight`; see [`super::canonical_gemma_name`]), every tensor
    /// shape-checked against `cfg`. The model computes in the weights' dtype.
    pub fn new(cfg: &GemmaConfig, w: &Weights, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let embed = w.get("embed_tokens.weight", &[cfg.vocab_size, cfg.hidden_size])?;
        let embed_scale =
            Tensor::new((cfg.hidden_size as f64).sqrt() as f32, device)?.to_dtype(embed.dtype())?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(w, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            final_norm: norm_scale(w, "norm.weight", cfg.hidden_size)?,
            embed,
            embed_scale,
            layers,
        })
    }

    /// Canonical `(name, shape)` of every tensor the model reads, in load order.
    pub fn expected_weights(cfg: &GemmaConfig) -> Vec<(String, Vec<usize>)> {
        let mut v = vec![(
            "embed_tokens.weight".to_string(),
            vec![cfg.vocab_size, cfg.hidden_size],
        )];
        for i in 0..cfg.num_hidden_layers {
            for (n, s) in layer_tensors(cfg) {
                v.push((format!("layers.{i}.{n}"), s));
            }
        }
        v.push(("norm.weight".into(), vec![cfg.hidden_size]));
        v
    }

    /// The config the model was built with.
    pub fn config(&self) -> &GemmaConfig {
        &self.cfg
    }

    /// The weights' dtype, which the model computes in (norms, RoPE tables and softmax in f32).
    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All `num_hidden_layers + 1` hidden states `[B, T, hidden]` (model dtype) of token ids
    /// `ids` (`[B][T]`), with positions `first_position ..` and an optional key-padding mask
    /// (`mask[b][t]`, true for real tokens). The reference's padded call is
    /// `first_position = 0` with the tokenizer's mask; rows of pad tokens are then
    /// meaningless (finite). Memory: all states at once; see [`forward`](Self::forward) to
    /// stream them.
    pub fn hidden_states(
        &self,
        ids: &[Vec<u32>],
        first_position: usize,
        mask: Option<&[Vec<bool>]>,
    ) -> Result<Vec<Tensor>> {
        let mut out = Vec::with_capacity(self.cfg.num_hidden_states());
        self.forward(ids, first_position, mask, |_, h| {
            out.push(h.clone());
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs the model and hands each hidden state `[B, T, hidden]` to `visit` as soon as it
    /// exists (index 0 = embeddings, `num_hidden_layers` = after the final norm), so a caller
    /// can reduce them without holding all of them. Arguments as in
    /// [`hidden_states`](Self::hidden_states). Errors: an empty or ragged batch, positions
    /// past [`MAX_TEXT_TOKENS`], a token id
    /// outside the vocabulary, a mask of another shape.
    pub fn forward(
        &self,
        ids: &[Vec<u32>],
        first_position: usize,
        mask: Option<&[Vec<bool>]>,
        mut visit: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let cfg = &self.cfg;
        let b = ids.len();
        let t = ids.first().map_or(0, Vec::len);
        if b == 0 || t == 0 || ids.iter().any(|r| r.len() != t) {
            return Err(InferenceError::Input(
                "token ids must be a non-empty batch of equal-length, non-empty rows".into(),
            ));
        }
        if t > MAX_TEXT_TOKENS {
            return Err(InferenceError::Input(format!(
                "{t} tokens, at most {MAX_TEXT_TOKENS}"
            )));
        }
        if first_position + t > MAX_TEXT_TOKENS {
            return Err(InferenceError::Input(format!(
                "positions {first_position}..{} reach past {MAX_TEXT_TOKENS}",
                first_position + t
            )));
        }
        if let Some(&bad) = ids
            .iter()
            .flatten()
            .find(|&&id| id as usize >= cfg.vocab_size)
        {
            return Err(InferenceError::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                cfg.vocab_size
            )));
        }
        if let Some(m) = mask
            && (m.len() != b || m.iter().any(|r| r.len() != t))
        {
            return Err(InferenceError::Input(format!(
                "the mask must be [{b}][{t}] like the ids"
            )));
        }

        let dev = &self.device;
        let dtype = self.dtype();
        let flat: Vec<u32> = ids.concat();
        let flat = Tensor::from_vec(flat, b * t, dev)?;
        let mut x = self
            .embed
            .index_select(&flat, 0)?
            .reshape((b, t, cfg.hidden_size))?
            .broadcast_mul(&self.embed_scale)?;
        visit(0, &x)?;

        let tables = |p: RopeParams| -> Result<(Tensor, Tensor)> {
            let (c, s) = rope_tables(p, cfg.head_dim, first_position, t, dev)?;
            Ok((c.to_dtype(dtype)?, s.to_dtype(dtype)?))
        };
        let rope_local = tables(cfg.rope_local)?;
        let rope_global = tables(cfg.rope_global)?;
        let bias_local = attention_bias(t, Some(cfg.sliding_window), mask, b, dev)?;
        let bias_global = attention_bias(t, None, mask, b, dev)?;

        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let (rope, bias) = match layer.kind {
                LayerType::Sliding => (&rope_local, &bias_local),
                LayerType::Full => (&rope_global, &bias_global),
            };
            x = self.layer_forward(layer, &x, rope, bias)?;
            if i + 1 == n {
                x = rms_norm(&x, Some(&self.final_norm), cfg.rms_norm_eps)?;
            }
            visit(i + 1, &x)?;
        }
        Ok(())
    }

    fn layer_forward(
        &self,
        l: &Layer,
        x: &Tensor,
        (cos, sin): &(Tensor, Tensor),
        bias: &Tensor,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let eps = cfg.rms_norm_eps;
        let (b, t, _) = x.dims3()?;
        let hd = cfg.head_dim;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };

        let h = rms_norm(x, Some(&l.input_norm), eps)?;
        let q = heads(linear(&h, &l.q_t, None)?, cfg.num_attention_heads)?;
        let k = heads(linear(&h, &l.k_t, None)?, cfg.num_key_value_heads)?;
        let v = heads(linear(&h, &l.v_t, None)?, cfg.num_key_value_heads)?;
        let q = rms_norm(&q, Some(&l.q_norm), eps)?;
        let k = rms_norm(&k, Some(&l.k_norm), eps)?;
        // rotate_half with cat(freqs, freqs) tables is the split rotation of the two halves.
        let q = apply_split_rope(&q, cos, sin)?;
        let k = apply_split_rope(&k, cos, sin)?;
        // Scale folded into q: one pass over [T, D] instead of over [T, S] scores.
        let q = (q * cfg.query_pre_attn_scalar.powf(-0.5))?;
        let a = attend(&q, &k, &v, Some(bias), MAX_SCORE_ELEMS)?;
        let a = a
            .transpose(1, 2)?
            .reshape((b, t, cfg.num_attention_heads * hd))?;
        let a = linear(&a, &l.o_t, None)?;
        let x = (x + rms_norm(&a, Some(&l.post_attn_norm), eps)?)?;

        let h = rms_norm(&x, Some(&l.pre_ff_norm), eps)?;
        let gate = linear(&h, &l.gate_t, None)?.gelu()?;
        let f = linear(&(gate * linear(&h, &l.up_t, None)?)?, &l.down_t, None)?;
        Ok((x + rms_norm(&f, Some(&l.post_ff_norm), eps)?)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::max_diff;
    use candle_core::IndexOp;

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures")
        .join(name)
    }

    /// The mistakes "final norm missing" and "final norm on the state before" move the
    /// states far from the reference (tests/text_parity.rs has the public-API mutations).
    #[test]
    fn final_norm_belongs_to_the_last_state_only() {
        let dir = fixture("text_tiny/text_encoder");
        let g = Gemma3TextEncoder::load(&dir, &Device::Cpu, DType::F32).unwrap();
        let r =
            candle_core::safetensors::load(fixture("text_tiny.safetensors"), &Device::Cpu).unwrap();
        let ids: Vec<Vec<i64>> = r["batch.ids"].to_vec2().unwrap();
        // The first sample has no padding, so the layer can be rerun without a mask.
        let ids: Vec<u32> = ids[0].iter().map(|&x| x as u32).collect();
        let t = ids.len();
        let states = g.hidden_states(&[ids], 0, None).unwrap();
        let want = |k: usize| r["gemma.hidden_states"].i((0..1, .., .., k)).unwrap();
        let n = g.cfg.num_hidden_layers;
        assert!(max_diff(&states[n], &want(n)) <= 1e-4);

        let last = &g.layers[n - 1];
        assert_eq!(last.kind, LayerType::Full);
        let (c, s) = rope_tables(g.cfg.rope_global, g.cfg.head_dim, 0, t, &Device::Cpu).unwrap();
        let bias = attention_bias(t, None, None, 1, &Device::Cpu).unwrap();
        let raw = g
            .layer_forward(last, &states[n - 1], &(c, s), &bias)
            .unwrap();
        let no_norm = max_diff(&raw, &want(n));
        let normed_before =
            rms_norm(&states[n - 1], Some(&g.final_norm), g.cfg.rms_norm_eps).unwrap();
        let norm_before = max_diff(&normed_before, &want(n - 1));
        println!(
            "gemma mutation: final norm missing {no_norm:.3e}; also on state {} {norm_before:.3e}",
            n - 1
        );
        assert!(no_norm > 1e-2 && norm_before > 1e-2);
        // And the raw layer output, normed, is the reference's last state.
        let renormed = rms_norm(&raw, Some(&g.final_norm), g.cfg.rms_norm_eps).unwrap();
        assert!(max_diff(&renormed, &want(n)) <= 1e-4);
    }

    #[test]
    fn bias_masks_future_window_and_padding() {
        let mask = vec![vec![false, true, true, true]];
        let bias = attention_bias(4, Some(2), Some(&mask), 1, &Device::Cpu).unwrap();
        let v: Vec<Vec<f32>> = bias
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        let vis: Vec<Vec<bool>> = v
            .iter()
            .map(|r| r.iter().map(|&x| x == 0.0).collect())
            .collect();
        // key 0 is padding; window 2 hides i - j >= 2; nothing sees the future
        assert_eq!(
            vis,
            vec![
                vec![false, false, false, false],
                vec![false, true, false, false],
                vec![false, true, true, false],
                vec![false, false, true, true],
            ]
        );
    }

    #[test]
    fn rope_tables_scale_positions_linearly() {
        let p = |f| RopeParams {
            theta: 100.0,
            linear_factor: f,
        };
        let (c8, s8) = rope_tables(p(8.0), 4, 8, 1, &Device::Cpu).unwrap();
        let (c1, s1) = rope_tables(p(1.0), 4, 1, 1, &Device::Cpu).unwrap();
        // position 8 with factor 8 is position 1 without scaling
        let d = |a: &Tensor, b: &Tensor| crate::test_util::max_diff(a, b);
        assert!(d(&c8, &c1) < 1e-6 && d(&s8, &s1) < 1e-6);
        let angles: Vec<f32> = s1.flatten_all().unwrap().to_vec1().unwrap();
        // inv_freq = [1, 1/10] at θ = 100, d = 4
        assert!((angles[0] - 1f32.sin()).abs() < 1e-6);
        assert!((angles[1] - 0.1f32.sin()).abs() < 1e-6);
    }
}
