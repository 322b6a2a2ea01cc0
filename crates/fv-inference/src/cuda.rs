//! The GPU side of [`crate::yuv`] (feature `cuda`): one fused kernel turns the VAE's decoded
//! video straight into I420 bytes on the GPU.
//!
//! Why: the CPU path copies the whole f32 video to the host (12 B/pixel), converts it to RGB
//! there, and the encoder then converts RGB to YUV again. The kernel does clamp → u8 →
//! BT.601 4:2:0 in one pass on the tensor's own device and stream, and only the I420 bytes
//! (1.5 B/pixel) cross PCIe; the encoder takes them as they are (`fv_core::Frame::from_i420`).
//!
//! The kernel ships as PTX compiled ahead of time (`kernels/video_to_i420.cu` →
//! `kernels/video_to_i420.ptx`, nvcc 13.0.88, `compute_80`; `kernels/build-ptx.sh`), embedded
//! in the binary and loaded through candle's device, so the GPU host needs only the driver to
//! JIT it: no nvcc, no NVRTC. Its output equals the CPU reference
//! [`crate::yuv::video_to_i420`] byte for byte (tests/yuv.rs checks this on a GPU).

// Launching a kernel is `unsafe` in cudarc; this module is the only place that does it.
#![allow(unsafe_code)]

use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::{Storage, Tensor};

use crate::yuv::{as_f32_cfhw, i420_shape, side_u32};
use crate::{InferenceError, Result};

/// CUDA C source of the kernel (for reference and the PTX freshness test).
pub const KERNEL_SOURCE: &str = include_str!("../kernels/video_to_i420.cu");
/// The kernel compiled to PTX by `kernels/build-ptx.sh`; the driver JITs it on first use.
pub const KERNEL_PTX: &str = include_str!("../kernels/video_to_i420.ptx");
/// Entry point in [`KERNEL_PTX`].
const FUNCTION: &str = "video_to_i420";
/// Key under which candle caches the loaded module per device.
const MODULE: &str = "fv_inference_video_to_i420";
/// Threads per CUDA block (one thread per 2x2 pixel block).
const THREADS_PER_BLOCK: u32 = 256;

/// Converts a decoded video on a CUDA device to one I420 buffer per frame (Y plane, then U,
/// then V; `W * H * 3 / 2` bytes), on the tensor's own device and stream.
///
/// Accepts what [`crate::yuv::video_to_i420`] accepts (BF16/F16/F64 are converted to f32 on
/// the GPU first) and gives the same bytes. Errors with [`InferenceError::Input`] when the
/// tensor is not on a CUDA device or its shape/dtype is wrong, and with
/// [`InferenceError::Candle`] when loading or launching the kernel fails.
pub fn video_to_i420(video: &Tensor) -> Result<Vec<Vec<u8>>> {
    let shape = i420_shape(video)?;
    let candle_core::Device::Cuda(device) = video.device() else {
        return Err(InferenceError::Input(format!(
            "cuda::video_to_i420 needs a tensor on a CUDA device, this one is on {:?}",
            video.device().location()
        )));
    };
    let (frames, height, width) = (
        u32::try_from(shape.frames)
            .map_err(|_| InferenceError::Input(format!("{} frames are too many", shape.frames)))?,
        side_u32(shape.height)?,
        side_u32(shape.width)?,
    );
    let samples = 3 * shape.frames * shape.height * shape.width;
    let frame_bytes = shape.i420_len();
    let out_len = shape.frames * frame_bytes;
    let chroma_blocks = shape.frames * (shape.height / 2) * (shape.width / 2);
    let grid = u32::try_from(chroma_blocks.div_ceil(THREADS_PER_BLOCK as usize))
        .ok()
        .filter(|&g| g <= i32::MAX as u32) // CUDA's grid x limit is 2^31 - 1
        .ok_or_else(|| {
            InferenceError::Input(format!(
                "{} frames of {}x{} are too many for one launch",
                shape.frames, shape.width, shape.height
            ))
        })?;

    // [3, F, H, W] f32, packed row-major: the layout the kernel indexes.
    let video = as_f32_cfhw(video)?.contiguous()?;
    let (guard, layout) = video.storage_and_layout();
    let Storage::Cuda(storage) = &*guard else {
        return Err(InferenceError::Input(
            "the video's storage is not on a CUDA device".into(),
        ));
    };
    let (start, end) = layout.contiguous_offsets().ok_or_else(|| {
        InferenceError::Input("the video is not contiguous after .contiguous()".into())
    })?;
    let input = storage.as_cuda_slice::<f32>()?;
    if end - start != samples || end > input.len() {
        return Err(InferenceError::Input(format!(
            "the video's storage holds {} f32 from offset {start}, the kernel reads {samples}",
            input.len()
        )));
    }
    let input = input.slice(start..end);
    let mut output = device.alloc_zeros::<u8>(out_len)?;

    let function = device.get_or_load_custom_func(FUNCTION, MODULE, KERNEL_PTX)?;
    let mut launch = function.builder();
    launch
        .arg(&input)
        .arg(&mut output)
        .arg(&frames)
        .arg(&height)
        .arg(&width);
    let config = LaunchConfig {
        grid_dim: (grid, 1, 1),
        block_dim: (THREADS_PER_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the arguments match the kernel's signature `(const float*, unsigned char*,
    // unsigned int, unsigned int, unsigned int)` in order and type. The input view holds
    // exactly 3*F*H*W f32 (checked above) and the output 3/2*F*H*W bytes (allocated above);
    // the kernel reads and writes only inside those for its F*(H/2)*(W/2) threads and skips
    // threads past the end of the last block. cudarc records the read/write events on both
    // buffers, so neither is freed or reused before the kernel is done.
    unsafe { launch.launch(config) }.w()?;
    // The launch has recorded its use of the input; the storage lock is no longer needed.
    drop(launch);
    drop(guard);

    // Waits for the kernel on this stream, then copies only the I420 bytes.
    let bytes = device.clone_dtoh(&output)?;
    Ok(bytes
        .chunks_exact(frame_bytes)
        .map(<[u8]>::to_vec)
        .collect())
}
