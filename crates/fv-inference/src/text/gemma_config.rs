//! Configuration of the Gemma-3 text model, read from a `config.json` as transformers writes
//! it: nested under `text_config` (`Gemma3ForConditionalGeneration`, what LTX-2's
//! `text_encoder/` holds) or flat (`Gemma3ForCausalLM` / `Gemma3TextModel`); RoPE settings in
//! transformers 5's `rope_parameters` or in the older `rope_theta` / `rope_local_base_freq` /
//! `rope_scaling` keys. Keys a file leaves out take `Gemma3TextConfig`'s defaults
//! (transformers 5.25), as Google's own configs rely on.

use crate::{InferenceError, Result};
use serde_json::Value;

/// Whether a layer attends to a sliding window or to the whole causal prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerType {
    /// Causal attention to the last `sliding_window` positions (the local layers).
    Sliding,
    /// Causal attention to every earlier position (the global layers).
    Full,
}

/// RoPE of one layer type: `inv_freq = 1 / (theta^(2i/d)) / linear_factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RopeParams {
    /// Base of the frequency grid.
    pub theta: f64,
    /// Linear position scaling (`rope_type: "linear"`, `factor`); 1 for the default RoPE.
    pub linear_factor: f64,
}

/// The Gemma-3 text model's shape and attention layout.
#[derive(Debug, Clone, PartialEq)]
pub struct GemmaConfig {
    /// Rows of the embedding table.
    pub vocab_size: usize,
    /// Width of the hidden states (3840 for 12B).
    pub hidden_size: usize,
    /// Width of the gated GELU feed-forward.
    pub intermediate_size: usize,
    /// Decoder layers; the encoder returns `num_hidden_layers + 1` hidden states.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// Attention scores are scaled by `query_pre_attn_scalar^-1/2`, not `head_dim^-1/2`.
    pub query_pre_attn_scalar: f64,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Window of the sliding layers: query `i` sees keys `j` with `0 <= i - j < window`.
    pub sliding_window: usize,
    /// One entry per layer.
    pub layer_types: Vec<LayerType>,
    /// RoPE of the full-attention (global) layers.
    pub rope_global: RopeParams,
    /// RoPE of the sliding (local) layers.
    pub rope_local: RopeParams,
    /// Positions the model was trained for (informational: like the reference, the RoPE
    /// here is computed for any position up to [`super::MAX_TEXT_TOKENS`]).
    pub max_position_embeddings: usize,
}

impl Default for GemmaConfig {
    /// Gemma-3-12B, [`GemmaConfig::gemma3_12b`].
    fn default() -> Self {
        Self::gemma3_12b()
    }
}

fn layer_types_from_pattern(layers: usize, pattern: usize) -> Vec<LayerType> {
    (0..layers)
        .map(|i| {
            if pattern > 0 && (i + 1) % pattern == 0 {
                LayerType::Full
            } else {
                LayerType::Sliding
            }
        })
        .collect()
}

impl GemmaConfig {
    /// Gemma-3-12B's text model, LTX-2's text encoder (`google/gemma-3-12b-it`, also the
    /// `-qat-q4_0-unquantized` weights diffusers' converter uses): width 3840, 48 layers,
    /// 16 query / 8 key-value heads of 256, sliding window 1024 with every sixth layer global,
    /// linear RoPE scaling ×8 (θ 10⁶) on the global layers, θ 10⁴ on the local ones.
    /// `tests/text_manifest.rs` checks it against the reference model's tensors.
    pub fn gemma3_12b() -> Self {
        Self {
            vocab_size: 262_208,
            hidden_size: 3840,
            intermediate_size: 15_360,
            num_hidden_layers: 48,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 256,
            query_pre_attn_scalar: 256.0,
            rms_norm_eps: 1e-6,
            sliding_window: 1024,
            layer_types: layer_types_from_pattern(48, 6),
            rope_global: RopeParams {
                theta: 1e6,
                linear_factor: 8.0,
            },
            rope_local: RopeParams {
                theta: 1e4,
                linear_factor: 1.0,
            },
            max_position_embeddings: 131_072,
        }
    }

    /// Number of hidden states the encoder returns (embeddings + one per layer).
    pub fn num_hidden_states(&self) -> usize {
        self.num_hidden_layers + 1
    }

    /// Parses a `config.json` (nested `text_config` or flat). Unsupported variants
    /// (bidirectional attention, attention soft-capping, biases, other activations or RoPE
    /// types) are errors naming the key.
    pub fn from_json(text: &str) -> Result<Self> {
        let root: Value = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("Gemma config is not JSON: {e}")))?;
        let c = match root.get("text_config") {
            Some(t) if t.is_object() => t,
            Some(_) => return Err(cfg_err("`text_config` is not an object")),
            None => &root,
        };
        let uint = |key: &str, default: usize| -> Result<usize> {
            match c.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| cfg_err(&format!("`{key}` must be a non-negative integer"))),
            }
        };
        let float = |key: &str, default: f64| -> Result<f64> {
            match c.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| cfg_err(&format!("`{key}` must be a number"))),
            }
        };
        for key in ["attn_logit_softcapping"] {
            if !matches!(c.get(key), None | Some(Value::Null)) {
                return Err(cfg_err(&format!(
                    "`{key}` is not supported (Gemma 3 has none)"
                )));
            }
        }
        for key in ["use_bidirectional_attention", "attention_bias"] {
            if c.get(key).and_then(Value::as_bool) == Some(true) {
                return Err(cfg_err(&format!("`{key}: true` is not supported")));
            }
        }
        if let Some(act) = c.get("hidden_activation").and_then(Value::as_str)
            && act != "gelu_pytorch_tanh"
        {
            return Err(cfg_err(&format!(
                "`hidden_activation` {act:?} is not supported (Gemma 3 uses gelu_pytorch_tanh)"
            )));
        }

        let num_hidden_layers = uint("num_hidden_layers", 26)?;
        let layer_types = match c.get("layer_types") {
            None | Some(Value::Null) => {
                let pattern = uint("sliding_window_pattern", 0)?;
                let pattern = if pattern == 0 {
                    uint("_sliding_window_pattern", 6)?
                } else {
                    pattern
                };
                layer_types_from_pattern(num_hidden_layers, pattern)
            }
            Some(Value::Array(v)) => v
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(LayerType::Sliding),
                    Some("full_attention") => Ok(LayerType::Full),
                    other => Err(cfg_err(&format!("unknown layer type {other:?}"))),
                })
                .collect::<Result<Vec<_>>>()?,
            Some(_) => return Err(cfg_err("`layer_types` must be a list")),
        };
        let (rope_global, rope_local) = rope_from(c)?;
        let cfg = Self {
            vocab_size: uint("vocab_size", 262_208)?,
            hidden_size: uint("hidden_size", 2304)?,
            intermediate_size: uint("intermediate_size", 9216)?,
            num_hidden_layers,
            num_attention_heads: uint("num_attention_heads", 8)?,
            num_key_value_heads: uint("num_key_value_heads", 4)?,
            head_dim: uint("head_dim", 256)?,
            query_pre_attn_scalar: float("query_pre_attn_scalar", 256.0)?,
            rms_norm_eps: float("rms_norm_eps", 1e-6)?,
            sliding_window: uint("sliding_window", 4096)?,
            layer_types,
            rope_global,
            rope_local,
            max_position_embeddings: uint("max_position_embeddings", 131_072)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks sizes are positive and consistent.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("sliding_window", self.sliding_window),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(cfg_err(&format!("`{key}` must be positive")));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(cfg_err(&format!(
                "{} query heads are not a multiple of {} key/value heads",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(cfg_err("`head_dim` must be even (RoPE rotates pairs)"));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(cfg_err(&format!(
                "{} layer types for {} layers",
                self.layer_types.len(),
                self.num_hidden_layers
            )));
        }
        let ok = |x: f64| x.is_finite() && x > 0.0;
        for (key, v) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope theta", self.rope_global.theta),
            ("rope theta", self.rope_local.theta),
            ("rope factor", self.rope_global.linear_factor),
            ("rope factor", self.rope_local.linear_factor),
        ] {
            if !ok(v) {
                return Err(cfg_err(&format!("`{key}` must be positive, got {v}")));
            }
        }
        Ok(())
    }
}

fn cfg_err(msg: &str) -> InferenceError {
    InferenceError::Config(format!("Gemma config: {msg}"))
}

/// One RoPE entry: `{"rope_type": "default" | "linear", "factor": f, "rope_theta": θ}`.
fn rope_entry(v: &Value, theta_default: f64, what: &str) -> Result<RopeParams> {
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let theta = match v.get("rope_theta") {
        None | Some(Value::Null) => theta_default,
        Some(t) => t
            .as_f64()
            .ok_or_else(|| cfg_err(&format!("{what}: `rope_theta` must be a number")))?,
    };
    let linear_factor = match kind {
        "default" => 1.0,
        "linear" => v
            .get("factor")
            .and_then(Value::as_f64)
            .ok_or_else(|| cfg_err(&format!("{what}: linear RoPE needs a numeric `factor`")))?,
        other => {
            return Err(cfg_err(&format!(
                "{what}: RoPE type {other:?} is not supported (default and linear are)"
            )));
        }
    };
    Ok(RopeParams {
        theta,
        linear_factor,
    })
}

/// (global, local) RoPE from either config generation.
fn rope_from(c: &Value) -> Result<(RopeParams, RopeParams)> {
    let global_theta = c.get("rope_theta").and_then(Value::as_f64).unwrap_or(1e6);
    let local_theta = c
        .get("rope_local_base_freq")
        .and_then(Value::as_f64)
        .unwrap_or(1e4);
    if let Some(p) = c.get("rope_parameters").filter(|p| !p.is_null()) {
        let get = |key: &str, theta: f64| -> Result<RopeParams> {
            match p.get(key) {
                None | Some(Value::Null) => Ok(RopeParams {
                    theta,
                    linear_factor: 1.0,
                }),
                Some(e) => rope_entry(e, theta, key),
            }
        };
        return Ok((
            get("full_attention", global_theta)?,
            get("sliding_attention", local_theta)?,
        ));
    }
    let global = match c.get("rope_scaling") {
        None | Some(Value::Null) => RopeParams {
            theta: global_theta,
            linear_factor: 1.0,
        },
        Some(s) => rope_entry(s, global_theta, "rope_scaling")?,
    };
    Ok((
        global,
        RopeParams {
            theta: local_theta,
            linear_factor: 1.0,
        },
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `google/gemma-3-12b-it`'s config.json: the text config names only what differs from
    /// the class defaults.
    const GOOGLE_12B: &str = r#"{
      "architectures": ["Gemma3ForConditionalGeneration"],
      "boi_token_index": 255999, "eoi_token_index": 256000, "eos_token_id": [1, 106],
      "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
      "model_type": "gemma3",
      "text_config": {
        "hidden_size": 3840, "intermediate_size": 15360, "model_type": "gemma3_text",
        "num_attention_heads": 16, "num_hidden_layers": 48, "num_key_value_heads": 8,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"}, "sliding_window": 1024
      },
      "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
      "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
        "model_type": "siglip_vision_model", "num_attention_heads": 16,
        "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": false}
    }"#;

    #[test]
    fn google_12b_config_is_the_12b_config() {
        let cfg = GemmaConfig::from_json(GOOGLE_12B).unwrap();
        assert_eq!(cfg, GemmaConfig::gemma3_12b());
        let global: Vec<usize> = (0..48)
            .filter(|&i| cfg.layer_types[i] == LayerType::Full)
            .collect();
        assert_eq!(global, vec![5, 11, 17, 23, 29, 35, 41, 47]);
        assert_eq!(cfg.num_hidden_states(), 49);
    }

    #[test]
    fn transformers5_rope_parameters_are_read() {
        let text = r#"{"text_config": {"hidden_size": 32, "num_hidden_layers": 2,
            "layer_types": ["sliding_attention", "full_attention"],
            "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 4.0,
            "rope_theta": 500.0}, "sliding_attention": {"rope_type": "default",
            "rope_theta": 10.0}}}}"#;
        let cfg = GemmaConfig::from_json(text).unwrap();
        assert_eq!(cfg.rope_global.theta, 500.0);
        assert_eq!(cfg.rope_global.linear_factor, 4.0);
        assert_eq!(cfg.rope_local.theta, 10.0);
        assert_eq!(cfg.rope_local.linear_factor, 1.0);
        assert_eq!(cfg.layer_types, vec![LayerType::Sliding, LayerType::Full]);
    }

    #[test]
    fn unsupported_variants_are_named() {
        for (text, needle) in [
            (
                r#"{"use_bidirectional_attention": true}"#,
                "use_bidirectional_attention",
            ),
            (
                r#"{"attn_logit_softcapping": 50.0}"#,
                "attn_logit_softcapping",
            ),
            (r#"{"hidden_activation": "relu"}"#, "hidden_activation"),
            (
                r#"{"rope_scaling": {"rope_type": "yarn", "factor": 2}}"#,
                "yarn",
            ),
            (
                r#"{"num_attention_heads": 3, "num_key_value_heads": 2}"#,
                "multiple",
            ),
            (
                r#"{"num_hidden_layers": 2, "layer_types": ["full_attention"]}"#,
                "layer types",
            ),
            (r#"{"hidden_size": 0}"#, "hidden_size"),
            (r#"{"text_config": 3}"#, "text_config"),
            ("not json", "JSON"),
        ] {
            let err = GemmaConfig::from_json(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
