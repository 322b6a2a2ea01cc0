//! Decoded video → bytes for the H.264 encoder.
//!
//! The VAE decodes to a float tensor `[1, 3, F, H, W]` (or `[3, F, H, W]`) with values
//! nominally in `[-1, 1]`. The encoder wants I420 (planar YUV 4:2:0). This module holds the
//! CPU reference of that conversion, always compiled:
//!
//! 1. each channel value to a byte, exactly as the pipeline always did it with candle's f32
//!    ops: `round_half_away_from_zero((clamp(x, -1, 1) + 1) * 127.5)` ([`video_to_rgb`]);
//! 2. RGB24 → I420 with openh264's integer BT.601 maths ([`fv_core::rgb_to_i420`]).
//!
//! With the `cuda` feature, [`crate::cuda::video_to_i420`] does both steps in one kernel on the
//! GPU and copies back only the I420 bytes (1.5 B/pixel instead of 12 B/pixel of f32 or 3 B of
//! RGB). Its output equals [`video_to_i420`] byte for byte; [`video_to_i420_auto`] picks it
//! when it can.

use candle_core::{DType, Device, Tensor};

use crate::{InferenceError, Result};

/// Largest width or height (in pixels) the converters accept. Far above any size the H.264
/// encoder takes; it keeps every index of the GPU kernel within its 32-bit arguments.
pub const MAX_SIDE: usize = 16_384;

/// Sizes of a decoded video tensor, as the converters read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoShape {
    /// Number of frames `F`.
    pub frames: usize,
    /// Frame height `H` in pixels.
    pub height: usize,
    /// Frame width `W` in pixels.
    pub width: usize,
}

impl VideoShape {
    /// Bytes of one RGB24 frame: `W * H * 3`.
    pub fn rgb_len(&self) -> usize {
        self.width * self.height * 3
    }

    /// Bytes of one I420 frame: `W * H` of Y, then `W/2 * H/2` each of U and V.
    pub fn i420_len(&self) -> usize {
        let pixels = self.width * self.height;
        pixels + pixels / 2
    }
}

/// Checks a decoded video tensor and returns its sizes: rank 5 with batch 1 or rank 4,
/// 3 channels, at least one frame, sides in `1..=`[`MAX_SIDE`] (and even when `even`), and a
/// float dtype (BF16, F16, F32 or F64).
fn check(video: &Tensor, even: bool) -> Result<VideoShape> {
    let bad = |why: String| {
        InferenceError::Input(format!("decoded video of shape {:?}: {why}", video.dims()))
    };
    let (c, frames, height, width) = match *video.dims() {
        [1, c, f, h, w] | [c, f, h, w] => (c, f, h, w),
        [_, _, _, _, _] => return Err(bad("the batch size must be 1".into())),
        _ => return Err(bad("expected [1, 3, F, H, W] or [3, F, H, W]".into())),
    };
    if c != 3 {
        return Err(bad(format!("expected 3 (RGB) channels, found {c}")));
    }
    if frames == 0 {
        return Err(bad("it has no frames".into()));
    }
    if height == 0 || width == 0 || height > MAX_SIDE || width > MAX_SIDE {
        return Err(bad(format!(
            "frame size {width}x{height} is outside 1..={MAX_SIDE} per side"
        )));
    }
    if even && (height % 2 != 0 || width % 2 != 0) {
        return Err(bad(format!(
            "frame size {width}x{height} is odd; I420 (4:2:0) needs an even width and height"
        )));
    }
    if !matches!(
        video.dtype(),
        DType::F32 | DType::BF16 | DType::F16 | DType::F64
    ) {
        return Err(bad(format!(
            "dtype {:?} is not a float type (f32, bf16, f16, f64)",
            video.dtype()
        )));
    }
    Ok(VideoShape {
        frames,
        height,
        width,
    })
}

/// The video as `[3, F, H, W]` after [`check`] (drops the batch axis if there is one).
fn squeeze_batch(video: &Tensor) -> Result<Tensor> {
    Ok(if video.rank() == 5 {
        video.squeeze(0)?
    } else {
        video.clone()
    })
}

/// Checks `video` for the I420 converters and returns its sizes (see [`video_to_i420`] for
/// what is accepted). Shared with the CUDA path so both reject the same inputs.
pub fn i420_shape(video: &Tensor) -> Result<VideoShape> {
    check(video, true)
}

/// The video as `[3, F, H, W]` f32 on its own device, after [`i420_shape`].
#[cfg(feature = "cuda")]
pub(crate) fn as_f32_cfhw(video: &Tensor) -> Result<Tensor> {
    Ok(squeeze_batch(video)?.to_dtype(DType::F32)?)
}

/// CPU conversion to RGB24 bytes, one `W * H * 3` buffer per frame (rows top to bottom,
/// `R, G, B` per pixel): `round_half_away_from_zero((clamp(x, -1, 1) + 1) * 127.5)` in f32.
///
/// Accepts `[1, 3, F, H, W]` or `[3, F, H, W]` in any float dtype on any device (BF16/F16/F64
/// are converted to f32 first; a GPU tensor is copied to the CPU). Sides may be odd here.
pub fn video_to_rgb(video: &Tensor) -> Result<Vec<Vec<u8>>> {
    let shape = check(video, false)?;
    rgb_bytes(video, shape)
}

/// All frames' RGB24 bytes back to back; `video` has passed [`check`].
fn rgb_bytes(video: &Tensor, shape: VideoShape) -> Result<Vec<Vec<u8>>> {
    // Device first, then f32: widening is exact, so the order does not change a bit, and f64
    // narrows with the same round-to-nearest-even on either device.
    let video = squeeze_batch(video)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?;
    // The same candle ops, in the same order, as the pipeline's first RGB conversion: the
    // CUDA kernel mirrors exactly these f32 steps.
    let bytes = ((video.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?
        .round()?
        .permute((1, 2, 3, 0))?
        .contiguous()?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    Ok(bytes
        .chunks_exact(shape.rgb_len())
        .map(<[u8]>::to_vec)
        .collect())
}

/// CPU reference: the decoded video to one I420 buffer per frame (Y plane, then U, then V;
/// `W * H * 3 / 2` bytes), i.e. [`video_to_rgb`] followed by [`fv_core::rgb_to_i420`].
///
/// Accepts `[1, 3, F, H, W]` or `[3, F, H, W]`, F ≥ 1, H and W even and at most
/// [`MAX_SIDE`], in f32 (BF16/F16/F64 are converted to f32 first), on any device (a GPU
/// tensor is copied to the CPU). Anything else is an [`InferenceError::Input`].
pub fn video_to_i420(video: &Tensor) -> Result<Vec<Vec<u8>>> {
    let shape = i420_shape(video)?;
    let (width, height) = (side_u32(shape.width)?, side_u32(shape.height)?);
    rgb_bytes(video, shape)?
        .iter()
        .map(|rgb| {
            fv_core::rgb_to_i420(width, height, rgb)
                .map_err(|e| InferenceError::Input(format!("RGB → I420: {e}")))
        })
        .collect()
}

/// [`video_to_i420`] on the GPU when `video` lives on a CUDA device and the crate was built
/// with the `cuda` feature ([`crate::cuda::video_to_i420`]); the CPU reference otherwise.
/// Both give the same bytes.
pub fn video_to_i420_auto(video: &Tensor) -> Result<Vec<Vec<u8>>> {
    #[cfg(feature = "cuda")]
    if video.device().is_cuda() {
        return crate::cuda::video_to_i420(video);
    }
    video_to_i420(video)
}

/// A side already checked against [`MAX_SIDE`] as the `u32` the frame APIs take.
pub(crate) fn side_u32(side: usize) -> Result<u32> {
    u32::try_from(side).map_err(|_| InferenceError::Input(format!("frame side {side} too large")))
}
