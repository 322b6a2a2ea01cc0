//! LTX-2's fractional 3-D rotary position embedding, split layout.
//!
//! Each video token is placed at the midpoint of the pixel-space box its latent patch covers
//! (time in seconds, height and width in pixels), as a fraction of a base extent; angles are
//! `(2·fraction − 1) · θ^(k/(n−1)) · π/2`. The angles reach ~1.5e4 rad, where one f32 ulp is
//! ~1e-3 rad, so every step here follows the reference's precision exactly: the frequency
//! grid in f64 (when `rope_double_precision`) rounded once to f32, everything else in f32 in
//! the reference's operation order. The tables are built on the host: they are computed once
//! per generation and cost O(tokens × width / 2).

use crate::config::TransformerConfig;
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

/// `torch.linspace(0, 1, steps)` in f64, with torch's symmetric evaluation.
fn linspace_f64(steps: usize) -> Vec<f64> {
    if steps == 1 {
        return vec![0.0];
    }
    let step = 1.0 / (steps - 1) as f64;
    let half = steps / 2;
    (0..steps)
        .map(|i| {
            if i < half {
                step * i as f64
            } else {
                1.0 - step * (steps - i - 1) as f64
            }
        })
        .collect()
}

/// Per-head cos/sin tables for the split layout, each `[1, heads, tokens, head_dim / 2]`.
pub fn split_rope_tables(
    cfg: &TransformerConfig,
    coords: &VideoCoords,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let dim = cfg.inner_dim();
    let heads = cfg.num_attention_heads;
    let half_head = cfg.attention_head_dim / 2;
    let n = dim / 6; // frequencies per axis
    let pad = dim / 2 - 3 * n; // leading identity rotations
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
    let max_pos = [
        cfg.pos_embed_max_pos as f32,
        cfg.base_height as f32,
        cfg.base_width as f32,
    ];
    let tokens = coords.num_tokens();
    // fraction of the base extent, per token and axis, mapped to [-1, 1]
    let mut frac = vec![[0f32; 3]; tokens];
    for (axis, max) in max_pos.iter().enumerate() {
        for (tok, [s, e]) in coords.coords[axis].iter().enumerate() {
            frac[tok][axis] = ((s + e) / 2.0) / max * 2.0 - 1.0;
        }
    }
    let mut cos = vec![0f32; heads * tokens * half_head];
    let mut sin = vec![0f32; heads * tokens * half_head];
    for h in 0..heads {
        for (tok, fr) in frac.iter().enumerate() {
            let base = (h * tokens + tok) * half_head;
            for e in 0..half_head {
                let g = h * half_head + e;
                let (c, s) = if g < pad {
                    (1.0, 0.0)
                } else {
                    // reference layout: frequency-major, axis-minor
                    let j = g - pad;
                    let angle = fr[j % 3] * freqs[j / 3];
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
