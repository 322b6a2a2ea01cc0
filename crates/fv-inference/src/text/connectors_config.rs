//! Configuration of LTX-2's text connectors, in diffusers' spelling (`connectors/config.json`).

use crate::config::RopeType;
use crate::{InferenceError, Result};
use serde::Deserialize;

/// `LTX2TextConnectors`' constructor arguments, as in `connectors/config.json`.
///
/// [`Default`] is diffusers' constructor defaults (interleaved RoPE, which the release does
/// not use), so a config file parses exactly as diffusers reads it; the released model is
/// [`ConnectorsConfig::ltx2`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConnectorsConfig {
    /// Gemma's hidden size and the connectors' width (3840).
    pub caption_channels: usize,
    /// Number of stacked hidden states (Gemma's layers + 1 = 49).
    pub text_proj_in_factor: usize,
    /// Heads of the video connector (heads × head_dim = `caption_channels`).
    pub video_connector_num_attention_heads: usize,
    /// Channels per head of the video connector.
    pub video_connector_attention_head_dim: usize,
    /// Transformer blocks of the video connector.
    pub video_connector_num_layers: usize,
    /// Registers that fill the padding slots (`None`: keep the padding mask; not supported).
    pub video_connector_num_learnable_registers: Option<usize>,
    /// LTX-2.3 gated attention (not supported).
    pub video_gated_attn: bool,
    /// Heads of the audio connector.
    pub audio_connector_num_attention_heads: usize,
    /// Channels per head of the audio connector.
    pub audio_connector_attention_head_dim: usize,
    /// Transformer blocks of the audio connector.
    pub audio_connector_num_layers: usize,
    /// Registers of the audio connector.
    pub audio_connector_num_learnable_registers: Option<usize>,
    /// LTX-2.3 gated attention (not supported).
    pub audio_gated_attn: bool,
    /// Positions are `arange(T) / connector_rope_base_seq_len`.
    pub connector_rope_base_seq_len: usize,
    /// RoPE frequency base.
    pub rope_theta: f64,
    /// Frequency grid in f64 before rounding to f32.
    pub rope_double_precision: bool,
    /// Stored by the reference but unused by its forward pass.
    pub causal_temporal_positioning: bool,
    /// RoPE layout (the release: split).
    pub rope_type: RopeType,
    /// LTX-2.3 per-stream projections (not supported).
    pub per_modality_projections: bool,
    /// LTX-2.3 per-stream projection widths (unused by LTX-2.0).
    pub video_hidden_dim: usize,
    /// See `video_hidden_dim`.
    pub audio_hidden_dim: usize,
    /// Whether `text_proj_in` has a bias.
    pub proj_bias: bool,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            caption_channels: 3840,
            text_proj_in_factor: 49,
            video_connector_num_attention_heads: 30,
            video_connector_attention_head_dim: 128,
            video_connector_num_layers: 2,
            video_connector_num_learnable_registers: Some(128),
            video_gated_attn: false,
            audio_connector_num_attention_heads: 30,
            audio_connector_attention_head_dim: 128,
            audio_connector_num_layers: 2,
            audio_connector_num_learnable_registers: Some(128),
            audio_gated_attn: false,
            connector_rope_base_seq_len: 4096,
            rope_theta: 10_000.0,
            rope_double_precision: true,
            causal_temporal_positioning: false,
            rope_type: RopeType::Interleaved,
            per_modality_projections: false,
            video_hidden_dim: 4096,
            audio_hidden_dim: 2048,
            proj_bias: false,
        }
    }
}

impl ConnectorsConfig {
    /// The released LTX-2.0 connectors (diffusers' `get_ltx2_connectors_config("2.0")`):
    /// 3840 wide, 49 stacked states, 2 layers of 30 heads × 128 per stream, 128 registers,
    /// split RoPE over 4096 base positions. `tests/text_manifest.rs` checks it against the
    /// reference model's tensors.
    pub fn ltx2() -> Self {
        Self {
            rope_type: RopeType::Split,
            ..Self::default()
        }
    }

    /// Parses diffusers' `connectors/config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("connectors config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects what this implementation does not do (LTX-2.3's per-modality projections and
    /// gated attention, interleaved RoPE, connectors without registers) and inconsistent sizes.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(InferenceError::Config(format!("connectors config: {m}")));
        if self.per_modality_projections || self.video_gated_attn || self.audio_gated_attn {
            return err(
                "LTX-2.3 connectors (per-modality projections, gated attention) are not supported"
                    .into(),
            );
        }
        if self.rope_type != RopeType::Split {
            return err("only split RoPE is supported (the LTX-2.0 release uses it)".into());
        }
        if self.caption_channels == 0 || self.text_proj_in_factor == 0 {
            return err("caption_channels and text_proj_in_factor must be positive".into());
        }
        if self.connector_rope_base_seq_len == 0
            || self.rope_theta.is_nan()
            || self.rope_theta <= 0.0
        {
            return err("RoPE base length and theta must be positive".into());
        }
        for s in [self.stream(Stream::Video), self.stream(Stream::Audio)] {
            if s.heads == 0 || s.head_dim == 0 || s.head_dim % 2 != 0 {
                return err(format!(
                    "{}: heads and an even head_dim are required",
                    s.name
                ));
            }
            if s.heads * s.head_dim != self.caption_channels {
                return err(format!(
                    "{}: {} heads × {} ≠ caption_channels {}",
                    s.name, s.heads, s.head_dim, self.caption_channels
                ));
            }
            match s.registers {
                Some(r) if r > 0 => {}
                _ => return err(format!("{}: learnable registers are required", s.name)),
            }
        }
        Ok(())
    }

    pub(super) fn stream(&self, s: Stream) -> StreamShape {
        match s {
            Stream::Video => StreamShape {
                name: "video_connector",
                heads: self.video_connector_num_attention_heads,
                head_dim: self.video_connector_attention_head_dim,
                layers: self.video_connector_num_layers,
                registers: self.video_connector_num_learnable_registers,
            },
            Stream::Audio => StreamShape {
                name: "audio_connector",
                heads: self.audio_connector_num_attention_heads,
                head_dim: self.audio_connector_attention_head_dim,
                layers: self.audio_connector_num_layers,
                registers: self.audio_connector_num_learnable_registers,
            },
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Stream {
    Video,
    Audio,
}

pub(super) struct StreamShape {
    pub(super) name: &'static str,
    pub(super) heads: usize,
    pub(super) head_dim: usize,
    pub(super) layers: usize,
    pub(super) registers: Option<usize>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_connector_configs_are_named() {
        let split = r#""rope_type": "split""#;
        for (text, needle) in [
            ("{}".to_string(), "split RoPE"),
            (
                format!(r#"{{{split}, "video_gated_attn": true}}"#),
                "LTX-2.3",
            ),
            (
                format!(r#"{{{split}, "per_modality_projections": true}}"#),
                "LTX-2.3",
            ),
            (
                format!(r#"{{{split}, "audio_connector_num_learnable_registers": null}}"#),
                "audio_connector: learnable registers",
            ),
            (
                format!(r#"{{{split}, "video_connector_num_attention_heads": 20}}"#),
                "20 heads × 128 ≠ caption_channels 3840",
            ),
            (format!(r#"{{{split}, "rope_theta": -1.0}}"#), "theta"),
            (
                r#"{"rope_type": "spiral"}"#.to_string(),
                "connectors config",
            ),
        ] {
            let err = ConnectorsConfig::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        let cfg = ConnectorsConfig::from_json(&format!("{{{split}}}")).unwrap();
        assert_eq!(cfg, ConnectorsConfig::ltx2());
    }
}
