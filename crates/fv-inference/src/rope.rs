//! LTX-2's fractional rotary position embeddings, split layout: 3-D for video tokens, 1-D in
//! seconds for audio tokens and for the audio↔video cross-attention.
//!
//! Each video token is placed at the midpoint of the pixel-space box its latent patch covers
//! (time in seconds, height and width in pixels), as a fraction of a base extent; angles are
//! `(2·fraction − 1) · θ^(k/(n−1)) · π/2`. The angles reach ~1.5e4 rad, where one f32 ulp is
//! ~1e-3 rad, so every step here follows the reference's precision exactly: the frequency
//! grid in f64 (when `rope_double_precision`) rounded once to f32, everything else in f32 in
//! the reference's operation order. The tables are built on the host: they are computed once
//! per generation and cost O(tokens × width / 2).

use crate::config::TransformerConfig;
use crate::ops::linspace_f64;
use crate::{InferenceError, Result};
use candle_core::{Device, Tensor};

/// Pixel-space boxes of the video tokens: for each of (time, height, width), the `[start,
/// end)` of every token, in the reference's `prepare_video_coords` layout `[3, T, 2]` (one
/// batch element: every sample in a batch shares the grid).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoCoords {
    /// `coords[axis][token] = [start, end]`.
    pub coords: [Vec<[f32; 2]>; 3],
}

impl VideoCoords {
    /// Number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.coords[0].len()
    }

    /// Coordinates of a latent grid of `frames × height × width` latents at `fps`.
    pub fn for_latent_grid(
        cfg: &TransformerConfig,
        frames: usize,
        height: usize,
        width: usize,
        fps: f32,
    ) -> Result<Self> {
        if frames == 0 || height == 0 || width == 0 {
            return Err(InferenceError::Input(format!(
                "latent grid must be non-empty, got {frames}×{height}×{width}"
            )));
        }
        if !(fps.is_finite() && fps > 0.0) {
            return Err(InferenceError::Input(format!(
                "fps must be positive, got {fps}"
            )));
        }
        let (pt, p) = (cfg.patch_size_t, cfg.patch_size);
        let [sf_t, sf_h, sf_w] = cfg.vae_scale_factors.map(|s| s as f32);
        let offset = cfg.causal_offset as f32;
        let mut out: [Vec<[f32; 2]>; 3] = Default::default();
        for f in (0..frames).step_by(pt) {
            for h in (0..height).step_by(p) {
                for w in (0..width).step_by(p) {
                    // time: latent → pixel frames, shifted for the causal first frame, clamped
                    // at 0, then seconds (same op order as the reference, all f32)
                    let t = |v: f32| ((v * sf_t + offset - sf_t).max(0.0)) / fps;
                    out[0].push([t(f as f32), t((f + pt) as f32)]);
                    out[1].push([h as f32 * sf_h, (h + p) as f32 * sf_h]);
                    out[2].push([w as f32 * sf_w, (w + p) as f32 * sf_w]);
                }
            }
        }
        Ok(Self { coords: out })
    }
}

/// Per-head cos/sin tables for the split layout, each `[1, heads, tokens, head_dim / 2]`.
pub fn split_rope_tables(
    cfg: &TransformerConfig,
    coords: &VideoCoords,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let max_pos = [
        cfg.pos_embed_max_pos as f32,
        cfg.base_height as f32,
        cfg.base_width as f32,
    ];
    let axes: Vec<(&[[f32; 2]], f32)> = coords
        .coords
        .iter()
        .zip(max_pos)
        .map(|(c, m)| (c.as_slice(), m))
        .collect();
    rope_tables_nd(cfg, &axes, cfg.inner_dim(), cfg.num_attention_heads, device)
}

/// Split-layout tables for tokens placed on `axes` (each: per-token `[start, end)` boxes and
/// the axis' normalising extent), spanning `dim` channels split into `heads` heads: each
/// `[1, heads, tokens, dim / (2·heads)]`. Per axis there are `dim / (2·axes)` frequencies
/// `θ^linspace(0, 1)·π/2`, laid out frequency-major, axis-minor, after
/// `dim/2 − axes·(dim / (2·axes))` leading identity rotations (the reference's layout).
pub(crate) fn rope_tables_nd(
    cfg: &TransformerConfig,
    axes: &[(&[[f32; 2]], f32)],
    dim: usize,
    heads: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let n_axes = axes.len();
    let tokens = axes.first().map_or(0, |(c, _)| c.len());
    if n_axes == 0 || axes.iter().any(|(c, _)| c.len() != tokens) {
        return Err(InferenceError::Input(
            "RoPE axes must describe the same tokens".into(),
        ));
    }
    if heads == 0 || !dim.is_multiple_of(2 * heads) || dim / (2 * n_axes) == 0 {
        return Err(InferenceError::Config(format!(
            "RoPE width {dim} does not split into {heads} heads with {n_axes} axes"
        )));
    }
    let half_head = dim / (2 * heads);
    let n = dim / (2 * n_axes); // frequencies per axis
    let pad = dim / 2 - n_axes * n; // leading identity rotations
    let freqs: Vec<f32> = linspace_f64(n)
        .into_iter()
        .map(|x| {
            if cfg.rope_double_precision {
                (cfg.rope_theta.powf(x) * std::f64::consts::PI / 2.0) as f32
            } else {
                let x = x as f32;
                (cfg.rope_theta as f32).powf(x) * std::f32::consts::PI / 2.0
            }
        })
        .collect();
    // fraction of the base extent, per token and axis, mapped to [-1, 1]
    let mut frac = vec![0f32; tokens * n_axes];
    for (axis, (boxes, max)) in axes.iter().enumerate() {
        for (tok, [s, e]) in boxes.iter().enumerate() {
            frac[tok * n_axes + axis] = ((s + e) / 2.0) / max * 2.0 - 1.0;
        }
    }
    let mut cos = vec![0f32; heads * tokens * half_head];
    let mut sin = vec![0f32; heads * tokens * half_head];
    for h in 0..heads {
        for tok in 0..tokens {
            let fr = &frac[tok * n_axes..(tok + 1) * n_axes];
            let base = (h * tokens + tok) * half_head;
            for e in 0..half_head {
                let g = h * half_head + e;
                let (c, s) = if g < pad {
                    (1.0, 0.0)
                } else {
                    // reference layout: frequency-major, axis-minor
                    let j = g - pad;
                    let angle = fr[j % n_axes] * freqs[j / n_axes];
                    (angle.cos(), angle.sin())
                };
                cos[base + e] = c;
                sin[base + e] = s;
            }
        }
    }
    let shape = (1, heads, tokens, half_head);
    Ok((
        Tensor::from_vec(cos, shape, device)?,
        Tensor::from_vec(sin, shape, device)?,
    ))
}

/// Time boxes of the audio tokens, in seconds: token `f` covers mel frames
/// `[max(4f − 3, 0), max(4f + 1, 0))` (the audio VAE's causal first latent frame covers one
/// mel frame), times `hop / sampling_rate` (10 ms). The reference's `prepare_audio_coords`
/// for one batch element.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioCoords {
    /// `coords[token] = [start, end]` in seconds.
    pub coords: Vec<[f32; 2]>,
}

impl AudioCoords {
    /// Coordinates of `frames` audio latent frames, the first at latent index `shift` (0 for a
    /// fresh segment; the reference uses other shifts for overlapping windows).
    pub fn for_latent_frames(cfg: &TransformerConfig, frames: usize, shift: usize) -> Result<Self> {
        if frames == 0 {
            return Err(InferenceError::Input("no audio latent frames".into()));
        }
        let (pt, scale) = (cfg.audio_patch_size_t, cfg.audio_scale_factor as f32);
        if pt == 0 || cfg.audio_sampling_rate == 0 {
            return Err(InferenceError::Config(
                "audio patch size and sampling rate must be positive".into(),
            ));
        }
        let offset = cfg.causal_offset as f32;
        let (hop, sr) = (cfg.audio_hop_length as f32, cfg.audio_sampling_rate as f32);
        // latent index → mel frame (causal shift, clamped at 0) → seconds, in the reference's
        // f32 operation order
        let seconds = |f: f32| ((f * scale + offset - scale).max(0.0) * hop) / sr;
        let coords = (shift..shift + frames)
            .step_by(pt)
            .map(|f| [seconds(f as f32), seconds((f + pt) as f32)])
            .collect();
        Ok(Self { coords })
    }

    /// Number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.coords.len()
    }
}

/// Audio self-attention tables: 1-D over the token times, across the audio width and heads,
/// normalised by `audio_pos_embed_max_pos`. Each `[1, audio heads, tokens, audio_head_dim / 2]`.
pub fn audio_rope_tables(
    cfg: &TransformerConfig,
    coords: &AudioCoords,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    rope_tables_nd(
        cfg,
        &[(&coords.coords, cfg.audio_pos_embed_max_pos as f32)],
        cfg.audio_inner_dim(),
        cfg.audio_num_attention_heads,
        device,
    )
}

/// Audio↔video cross-attention tables, both 1-D over time in seconds across
/// `audio_cross_attention_dim` channels, normalised by the larger RoPE extent: the video side
/// (video token times) split by the video head count, the audio side split by the audio head
/// count. Returns ((video cos, sin), (audio cos, sin)).
pub fn cross_attention_rope_tables(
    cfg: &TransformerConfig,
    video: &VideoCoords,
    audio: &AudioCoords,
    device: &Device,
) -> Result<((Tensor, Tensor), (Tensor, Tensor))> {
    let max = cfg.cross_attn_pos_embed_max_pos() as f32;
    let dim = cfg.audio_cross_attention_dim;
    Ok((
        rope_tables_nd(
            cfg,
            &[(&video.coords[0], max)],
            dim,
            cfg.num_attention_heads,
            device,
        )?,
        rope_tables_nd(
            cfg,
            &[(&audio.coords, max)],
            dim,
            cfg.audio_num_attention_heads,
            device,
        )?,
    ))
}

/// Applies split RoPE to `x` of shape `[B, heads, T, head_dim]` with tables from
/// [`split_rope_tables`]: the first half of each head is rotated against the second.
pub fn apply_split_rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(3)?;
    let r = d / 2;
    let first = x.narrow(3, 0, r)?;
    let second = x.narrow(3, r, r)?;
    let out_first = (first.broadcast_mul(cos)? - second.broadcast_mul(sin)?)?;
    let out_second = (second.broadcast_mul(cos)? + first.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[out_first, out_second], 3)?)
}
