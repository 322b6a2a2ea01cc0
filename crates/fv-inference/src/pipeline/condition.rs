//! Conditioning a segment on the previous one (ltx2-phase2-facts §5; diffusers'
//! `LTX2ConditionPipeline.preprocess_conditions` / `apply_first_frame_conditioning`, FastVideo's
//! `build_ltx2_image_conditioning`): the previous segment's last frames, resized to the
//! stage's resolution and VAE-encoded, become the first latent frames, kept clean; its last
//! audio latents become the first audio latent frames, kept clean.

use super::LatentGrid;
use super::denoise::Conditioning;
use crate::vae_encoder::VideoVaeEncoder;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};

/// Most a conditioning frame's scaled area may exceed the target's (the part cropped away).
pub const MAX_SCALED_AREA_FACTOR: usize = 16;

/// RGB24 frames of `src_w × src_h` → `[1, 3, F, height, width]` f32 in [-1, 1], as the
/// reference prepares conditioning frames: scale by `max(height/src_h, width/src_w)` to
/// `ceil(side · scale)` with bilinear interpolation (`align_corners=False`, no antialias),
/// centre-crop, then `v / 127.5 − 1`.
pub fn preprocess_frames(
    frames: &[Vec<u8>],
    src_w: u32,
    src_h: u32,
    width: u32,
    height: u32,
    device: &Device,
) -> Result<Tensor> {
    let (sw, sh) = (src_w as usize, src_h as usize);
    let plane = sw * sh;
    if frames.is_empty() || plane == 0 || width == 0 || height == 0 {
        return Err(InferenceError::Input(format!(
            "{} conditioning frames of {src_w}x{src_h} cannot make {width}x{height}",
            frames.len()
        )));
    }
    let (new_w, new_h) = scaled_size(src_w, src_h, width, height)?;
    let (w, h) = (width as usize, height as usize);
    let n = frames.len();
    // [F, 3, h, w], channel planes, values 0..255 as f32 (the reference's `pixels`)
    let mut values = vec![0f32; n * 3 * plane];
    for (f, rgb) in frames.iter().enumerate() {
        if rgb.len() != plane * 3 {
            return Err(InferenceError::Input(format!(
                "conditioning frame {f} has {} bytes, {src_w}x{src_h} RGB24 needs {}",
                rgb.len(),
                plane * 3
            )));
        }
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                values[(f * 3 + c) * plane + i] = f32::from(v);
            }
        }
    }
    let pixels = Tensor::from_vec(values, (n, 3, sh, sw), device)?;
    let resized = if (new_h, new_w) == (sh, sw) {
        pixels
    } else {
        pixels.upsample_bilinear2d(new_h, new_w, false)?
    };
    let (top, left) = ((new_h - h) / 2, (new_w - w) / 2);
    let cropped = resized.narrow(2, top, h)?.narrow(3, left, w)?;
    let divisor = Tensor::new(127.5f32, device)?;
    Ok(cropped
        .broadcast_div(&divisor)?
        .affine(1.0, -1.0)?
        .permute((1, 0, 2, 3))?
        .unsqueeze(0)?
        .contiguous()?)
}

/// The size frames of `src_w × src_h` are scaled to before the centre crop to
/// `width × height`: by `max(height/src_h, width/src_w)`, each side rounded up (Python floats).
/// Refused when the scaled area is over [`MAX_SCALED_AREA_FACTOR`] × the target's (aspect
/// ratios far apart: a 4096×1 frame covering 1920×1088 would be 4.5 M pixels wide, more than
/// can be allocated).
pub fn scaled_size(src_w: u32, src_h: u32, width: u32, height: u32) -> Result<(usize, usize)> {
    let (sw, sh) = (src_w as usize, src_h as usize);
    let (w, h) = (width as usize, height as usize);
    if sw == 0 || sh == 0 || w == 0 || h == 0 {
        return Err(InferenceError::Input(format!(
            "conditioning frames of {src_w}x{src_h} cannot make {width}x{height}"
        )));
    }
    let scale = (f64::from(height) / sh as f64).max(f64::from(width) / sw as f64);
    let new_h = (sh as f64 * scale).ceil() as usize;
    let new_w = (sw as f64 * scale).ceil() as usize;
    if new_h < h || new_w < w {
        return Err(InferenceError::Input(format!(
            "cannot scale {src_w}x{src_h} to cover {width}x{height}"
        )));
    }
    if new_h.saturating_mul(new_w) > MAX_SCALED_AREA_FACTOR * h * w {
        return Err(InferenceError::Input(format!(
            "conditioning frames of {src_w}x{src_h} scale to {new_w}x{new_h} to cover \
             {width}x{height}: aspect ratios too far apart (more than \
             {MAX_SCALED_AREA_FACTOR}x the area)"
        )));
    }
    Ok((new_w, new_h))
}

/// How many of `available` conditioning frames a segment of `num_frames` uses: `1 + 8k`
/// (the encoder's input rule), at most the segment's length (the reference's
/// `trim_conditioning_sequence` at frame 0), the first ones.
pub fn usable_frames(available: usize, num_frames: usize, temporal: usize) -> usize {
    let n = available.min(num_frames);
    if n == 0 {
        return 0;
    }
    (n - 1) / temporal * temporal + 1
}

/// `[1, C, F, H, W]` → tokens `[1, F·H·W, C]` (frame, row, column order).
pub(crate) fn pack(z: &Tensor) -> Result<Tensor> {
    let (b, c, f, h, w) = z.dims5()?;
    Ok(z.permute((0, 2, 3, 4, 1))?
        .reshape((b, f * h * w, c))?
        .contiguous()?)
}

/// Tokens `[1, F·H·W, C]` on `grid` → `[1, C, F, H, W]`.
pub(crate) fn unpack(tokens: &Tensor, grid: LatentGrid) -> Result<Tensor> {
    let (b, _, c) = tokens.dims3()?;
    let (f, h, w) = grid;
    Ok(tokens
        .reshape((b, f, h, w, c))?
        .permute((0, 4, 1, 2, 3))?
        .contiguous()?)
}

/// The video conditioning of a stage on `grid`: the `frames` (`[1, 3, F, H, W]` in [-1, 1]
/// at the stage's resolution) encoded into the first latent frames, kept at `strength`;
/// elsewhere `base` (`None`: zeros, the reference's stage-1 `clean_latent`; the upsampled
/// latents at stage 2). Returns the conditioning and the encoded tokens.
pub fn video_conditioning(
    encoder: &VideoVaeEncoder,
    frames: &Tensor,
    grid: LatentGrid,
    strength: f32,
    base: Option<&Tensor>,
) -> Result<(Conditioning, Tensor)> {
    let z = encoder.encode(frames)?; // [1, C, F', H, W], normalised
    let (_, c, f, h, w) = z.dims5()?;
    if (h, w) != (grid.1, grid.2) || f > grid.0 {
        return Err(InferenceError::Input(format!(
            "the conditioning frames encode to {f}×{h}×{w} latents, the segment is {}×{}×{}",
            grid.0, grid.1, grid.2
        )));
    }
    let cond = pack(&z)?;
    let total = grid.0 * grid.1 * grid.2;
    let n = f * h * w;
    let rest = match base {
        Some(b) => b.narrow(1, n, total - n)?.to_dtype(DType::F32)?,
        None => Tensor::zeros((1, total - n, c), DType::F32, z.device())?,
    };
    let clean = Tensor::cat(&[&cond, &rest], 1)?;
    let mut mask = vec![1.0 - strength; n];
    mask.resize(total, 1.0);
    Ok((Conditioning { clean, mask }, cond))
}

/// The audio conditioning of a stage with `frames` audio tokens: the last `prefix` frames of
/// `cached` (packed tokens `[1, Tc, C·M]`) as the first ones, kept at `strength`; elsewhere
/// `base` (`None`: zeros).
pub fn audio_conditioning(
    cached: &Tensor,
    frames: usize,
    prefix: usize,
    strength: f32,
    base: Option<&Tensor>,
) -> Result<Conditioning> {
    let (_, tc, d) = cached.dims3()?;
    let n = prefix.min(tc).min(frames);
    let head = cached.narrow(1, tc - n, n)?.to_dtype(DType::F32)?;
    let rest = match base {
        Some(b) => b.narrow(1, n, frames - n)?.to_dtype(DType::F32)?,
        None => Tensor::zeros((1, frames - n, d), DType::F32, cached.device())?,
    };
    let mut mask = vec![1.0 - strength; n];
    mask.resize(frames, 1.0);
    Ok(Conditioning {
        clean: Tensor::cat(&[&head, &rest], 1)?,
        mask,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_scale_then_centre_crop() {
        // 4×2 → 2×2: scale max(2/2, 2/4) = 1 → no resize, crop one column each side.
        let frame: Vec<u8> = (0..4 * 2 * 3).map(|i| i as u8).collect();
        let t = preprocess_frames(std::slice::from_ref(&frame), 4, 2, 2, 2, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 2, 2]);
        let got: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        // red channel of pixels (x=1, y=0), (2, 0), (1, 1), (2, 1)
        let want: Vec<f32> = [3u8, 6, 15, 18]
            .iter()
            .map(|&v| f32::from(v) / 127.5 - 1.0)
            .collect();
        assert_eq!(&got[..4], want.as_slice());
        // 2×2 → 4×4: bilinear upscale, values stay within the source range.
        let t = preprocess_frames(&[frame[..12].to_vec()], 2, 2, 4, 4, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 4, 4]);
        assert!(preprocess_frames(&[vec![0; 5]], 2, 2, 4, 4, &Device::Cpu).is_err());
        // A 4096×1 frame would scale to 4.5 M × 1088 to cover 1920×1088: refused.
        let e =
            preprocess_frames(&[vec![0; 4096 * 3]], 4096, 1, 1920, 1088, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("aspect ratios too far apart"), "{e}");
        // 16:9 frames covering 9:16 (a stream that turns) are fine: 3.2× the area.
        let t = preprocess_frames(&[vec![0; 64 * 36 * 3]], 64, 36, 36, 64, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 1, 64, 36]);
    }

    #[test]
    fn frame_counts_follow_the_encoder_rule() {
        assert_eq!(usable_frames(9, 121, 8), 9);
        assert_eq!(usable_frames(9, 5, 8), 1);
        assert_eq!(usable_frames(12, 121, 8), 9);
        assert_eq!(usable_frames(0, 121, 8), 0);
    }

    #[test]
    fn audio_prefix_takes_the_last_cached_frames() {
        let cached = Tensor::arange(0f32, 10.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 5, 2))
            .unwrap();
        let c = audio_conditioning(&cached, 4, 2, 1.0, None).unwrap();
        let v: Vec<f32> = c.clean.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(c.mask, vec![0.0, 0.0, 1.0, 1.0]);
    }
}
