//! Configuration of the LTX-2 video transformer, in diffusers' spelling so a published
//! `transformer/config.json` deserialises directly (unknown keys, e.g. the audio ones, are
//! accepted and ignored by the video path).

use crate::{InferenceError, Result};
use serde::Deserialize;

/// Which RoPE layout the attention layers use. The real LTX-2 checkpoints use `Split`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    /// Each head's channels are two halves rotated against each other (LTX-2 release).
    Split,
    /// Adjacent channel pairs are rotated (diffusers' class default; not implemented here).
    Interleaved,
}

/// Video-stream configuration of `LTX2VideoTransformer3DModel`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct TransformerConfig {
    pub in_channels: usize,
    pub out_channels: Option<usize>,
    pub patch_size: usize,
    pub patch_size_t: usize,
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub cross_attention_dim: usize,
    /// VAE compression factors (time, height, width), used to place tokens in pixel space.
    pub vae_scale_factors: [usize; 3],
    /// Normalising extent of the time axis for RoPE (in seconds of video).
    pub pos_embed_max_pos: usize,
    pub base_height: usize,
    pub base_width: usize,
    pub num_layers: usize,
    pub caption_channels: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
    /// Compute the RoPE frequency grid in f64 before rounding to f32, as the release does.
    pub rope_double_precision: bool,
    /// The VAE's first latent frame covers one pixel frame: shift time coordinates by this.
    pub causal_offset: usize,
    pub rope_type: RopeType,
    /// LTX-2.3 extensions; the video path here implements LTX-2.0 and rejects them.
    pub gated_attn: bool,
    pub cross_attn_mod: bool,
    pub attention_bias: bool,
    pub attention_out_bias: bool,
    pub ff_bias: bool,
    pub norm_elementwise_affine: bool,
    pub use_prompt_embeddings: bool,
    pub activation_fn: String,
    pub qk_norm: String,
}

impl Default for TransformerConfig {
    /// The released LTX-2 (19B) video stream, [`TransformerConfig::ltx2_19b`].
    fn default() -> Self {
        Self::ltx2_19b()
    }
}

impl TransformerConfig {
    /// The released LTX-2 (19B) video stream: 48 blocks, 32 heads × 128, caption channels
    /// 3840, split RoPE in f64. Values from diffusers' conversion script
    /// (`get_ltx2_transformer_config("2.0")`); `rope_type` is `Split` although diffusers'
    /// class default is interleaved. `tests/manifest.rs` checks that this config expects
    /// exactly the reference model's video-stream tensors.
    pub fn ltx2_19b() -> Self {
        Self {
            in_channels: 128,
            out_channels: Some(128),
            patch_size: 1,
            patch_size_t: 1,
            num_attention_heads: 32,
            attention_head_dim: 128,
            cross_attention_dim: 4096,
            vae_scale_factors: [8, 32, 32],
            pos_embed_max_pos: 20,
            base_height: 2048,
            base_width: 2048,
            num_layers: 48,
            caption_channels: 3840,
            norm_eps: 1e-6,
            rope_theta: 10000.0,
            rope_double_precision: true,
            causal_offset: 1,
            rope_type: RopeType::Split,
            gated_attn: false,
            cross_attn_mod: false,
            attention_bias: true,
            attention_out_bias: true,
            ff_bias: true,
            norm_elementwise_affine: false,
            use_prompt_embeddings: true,
            activation_fn: "gelu-approximate".to_string(),
            qk_norm: "rms_norm_across_heads".to_string(),
        }
    }
}

impl TransformerConfig {
    /// Parses a diffusers-style JSON config and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("transformer config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Width of the video stream (`heads × head_dim`).
    pub fn inner_dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    /// Output channels (defaults to the input channels).
    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Rejects values the video path cannot honour, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(InferenceError::Config(m));
        if self.num_attention_heads == 0 || self.attention_head_dim == 0 {
            return bad("num_attention_heads and attention_head_dim must be positive".into());
        }
        if !self.attention_head_dim.is_multiple_of(2) {
            return bad(format!(
                "attention_head_dim must be even for split RoPE, got {}",
                self.attention_head_dim
            ));
        }
        if self.in_channels == 0 || self.caption_channels == 0 || self.num_layers == 0 {
            return bad("in_channels, caption_channels and num_layers must be positive".into());
        }
        if self.patch_size == 0 || self.patch_size_t == 0 {
            return bad("patch sizes must be positive".into());
        }
        if self.vae_scale_factors.contains(&0)
            || self.pos_embed_max_pos == 0
            || self.base_height == 0
            || self.base_width == 0
        {
            return bad("vae_scale_factors and RoPE base extents must be positive".into());
        }
        if self.cross_attention_dim != self.inner_dim() {
            return bad(format!(
                "cross_attention_dim ({}) must equal heads × head_dim ({}): the caption \
                 projection feeds the cross-attention keys",
                self.cross_attention_dim,
                self.inner_dim()
            ));
        }
        if self.inner_dim() / 6 == 0 {
            return bad("heads × head_dim must be at least 6 for 3-D RoPE".into());
        }
        if !(self.norm_eps > 0.0 && self.norm_eps < 1.0) {
            return bad(format!("norm_eps must be in (0, 1), got {}", self.norm_eps));
        }
        if !(self.rope_theta > 1.0 && self.rope_theta.is_finite()) {
            return bad(format!("rope_theta must be > 1, got {}", self.rope_theta));
        }
        if self.rope_type != RopeType::Split {
            return bad("only rope_type \"split\" (the released LTX-2) is implemented".into());
        }
        if self.gated_attn || self.cross_attn_mod {
            return bad(
                "LTX-2.3 gated attention / cross-attention modulation is not implemented".into(),
            );
        }
        if !self.attention_bias || !self.attention_out_bias || !self.ff_bias {
            return bad("bias-free attention or feed-forward (LTX-2.5) is not implemented".into());
        }
        if self.norm_elementwise_affine {
            return bad("affine block norms are not implemented (LTX-2 uses none)".into());
        }
        if !self.use_prompt_embeddings {
            return bad(
                "use_prompt_embeddings=false (LTX-2.3 connector path) is not implemented".into(),
            );
        }
        if self.activation_fn != "gelu-approximate" {
            return bad(format!(
                "activation_fn {:?} is not implemented",
                self.activation_fn
            ));
        }
        if self.qk_norm != "rms_norm_across_heads" {
            return bad(format!("qk_norm {:?} is not implemented", self.qk_norm));
        }
        Ok(())
    }
}
