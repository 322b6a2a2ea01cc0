//! Configuration of the LTX-2 audio-video transformer, in diffusers' spelling so a published
//! `transformer/config.json` deserialises directly (unknown keys are accepted and ignored).
//! The video path reads the video keys only; the audio stream ([`TransformerConfig::validate_audio`])
//! reads the `audio_*` keys and the timestep multipliers too.

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
    /// Audio stream: features per audio token (latent channels × latent mel bins, 8 × 16).
    pub audio_in_channels: usize,
    pub audio_out_channels: Option<usize>,
    /// Audio tokens per latent frame in time; the audio RoPE places tokens by it.
    pub audio_patch_size_t: usize,
    pub audio_num_attention_heads: usize,
    pub audio_attention_head_dim: usize,
    /// Width of the audio caption embeddings after `audio_caption_projection` (= audio width).
    pub audio_cross_attention_dim: usize,
    /// Mel frames per audio latent frame (the audio VAE's time compression, 4).
    pub audio_scale_factor: usize,
    /// Normalising extent of the audio RoPE time axis, in seconds.
    pub audio_pos_embed_max_pos: usize,
    pub audio_sampling_rate: usize,
    pub audio_hop_length: usize,
    /// LTX-2.3/2.5 audio extensions, rejected like their video counterparts.
    pub audio_gated_attn: bool,
    pub audio_cross_attn_mod: bool,
    pub audio_ff_bias: bool,
    /// The a2v/v2a gates see the timestep × `cross_attn_timestep_scale_multiplier /
    /// timestep_scale_multiplier` (1000 / 1000 in the LTX-2.0 release).
    pub timestep_scale_multiplier: f64,
    pub cross_attn_timestep_scale_multiplier: f64,
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
            audio_in_channels: 128,
            audio_out_channels: Some(128),
            audio_patch_size_t: 1,
            audio_num_attention_heads: 32,
            audio_attention_head_dim: 64,
            audio_cross_attention_dim: 2048,
            audio_scale_factor: 4,
            audio_pos_embed_max_pos: 20,
            audio_sampling_rate: 16000,
            audio_hop_length: 160,
            audio_gated_attn: false,
            audio_cross_attn_mod: false,
            audio_ff_bias: true,
            timestep_scale_multiplier: 1000.0,
            cross_attn_timestep_scale_multiplier: 1000.0,
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

    /// Width of the audio stream (`audio heads × audio head_dim`).
    pub fn audio_inner_dim(&self) -> usize {
        self.audio_num_attention_heads * self.audio_attention_head_dim
    }

    /// Audio output channels (defaults to the audio input channels).
    pub fn audio_out_channels(&self) -> usize {
        self.audio_out_channels.unwrap_or(self.audio_in_channels)
    }

    /// Audio latent tokens per second of video: `sampling_rate / hop / scale_factor` (25 for
    /// the release).
    pub fn audio_tokens_per_second(&self) -> f64 {
        self.audio_sampling_rate as f64
            / self.audio_hop_length as f64
            / self.audio_scale_factor as f64
    }

    /// Extent of the cross-attention RoPE time axis: the larger of the two streams' extents.
    pub fn cross_attn_pos_embed_max_pos(&self) -> usize {
        self.pos_embed_max_pos.max(self.audio_pos_embed_max_pos)
    }

    /// The factor between the a2v/v2a gate timestep and the modulation timestep.
    pub fn cross_attn_gate_factor(&self) -> f64 {
        self.cross_attn_timestep_scale_multiplier / self.timestep_scale_multiplier
    }

    /// Rejects audio-stream values the joint audio-video forward cannot honour (on top of
    /// [`validate`](Self::validate), which it runs first), with the reason. Video-only models
    /// never call it, so a video-only config may carry any audio keys.
    pub fn validate_audio(&self) -> Result<()> {
        self.validate()?;
        let bad = |m: String| Err(InferenceError::Config(m));
        let (heads, head_dim) = (
            self.audio_num_attention_heads,
            self.audio_attention_head_dim,
        );
        if heads == 0 || head_dim == 0 || !head_dim.is_multiple_of(2) {
            return bad(format!(
                "audio heads ({heads}) and head_dim ({head_dim}) must be positive, head_dim even \
                 for split RoPE"
            ));
        }
        if self.audio_in_channels == 0 || self.audio_out_channels() == 0 {
            return bad("audio_in_channels and audio_out_channels must be positive".into());
        }
        if self.audio_cross_attention_dim != self.audio_inner_dim() {
            return bad(format!(
                "audio_cross_attention_dim ({}) must equal audio heads × head_dim ({}): the audio \
                 caption projection feeds the audio cross-attention keys, and the a2v/v2a \
                 attention RoPE spans that width",
                self.audio_cross_attention_dim,
                self.audio_inner_dim()
            ));
        }
        // The cross-attention RoPE splits the audio width by the video head count on the video
        // side (a quirk of the reference, harmless at the release's 32/32 heads).
        let ca = self.audio_cross_attention_dim;
        if !ca.is_multiple_of(2 * self.num_attention_heads) {
            return bad(format!(
                "audio_cross_attention_dim ({ca}) must split into an even width per video head \
                 ({} heads) for the cross-attention RoPE",
                self.num_attention_heads
            ));
        }
        if self.audio_patch_size_t == 0
            || self.audio_scale_factor == 0
            || self.audio_pos_embed_max_pos == 0
            || self.audio_sampling_rate == 0
            || self.audio_hop_length == 0
        {
            return bad(
                "audio patch size, scale factor, RoPE extent, sampling rate and hop length must \
                 be positive"
                    .into(),
            );
        }
        if self.audio_gated_attn || self.audio_cross_attn_mod {
            return bad(
                "LTX-2.3 audio gated attention / cross-attention modulation is not implemented"
                    .into(),
            );
        }
        if !self.audio_ff_bias {
            return bad("a bias-free audio feed-forward (LTX-2.5) is not implemented".into());
        }
        let factor = self.cross_attn_gate_factor();
        if !(factor.is_finite() && self.timestep_scale_multiplier > 0.0 && factor >= 0.0) {
            return bad(format!(
                "timestep multipliers must be positive and finite, got {} and {}",
                self.timestep_scale_multiplier, self.cross_attn_timestep_scale_multiplier
            ));
        }
        Ok(())
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
