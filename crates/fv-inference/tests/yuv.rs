//! Decoded video → I420: the CPU reference (`yuv`) against an independent computation, its
//! input checks, and (feature `cuda`, on a machine with a GPU) the fused CUDA kernel against
//! the CPU reference byte for byte.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor};
use fv_inference::InferenceError;
use fv_inference::yuv::{self, MAX_SIDE, VideoShape};

/// Small deterministic generator (SplitMix64) so the test needs no rand crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1.25, 1.25): about a fifth of the values fall outside [-1, 1].
    fn value(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.5 - 1.25
    }
}

/// Values where rounding is decided: for every byte k, the f32 inputs around the one that
/// lands on k + 0.5 after `(x + 1) * 127.5`, and the ends and non-finite values.
fn edge_values() -> Vec<f32> {
    let mut v = vec![
        -1.0,
        1.0,
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1.0 + f32::EPSILON,
        -1.0 - f32::EPSILON,
        f32::MAX,
        f32::MIN,
    ];
    for k in 0..255u32 {
        let exact = ((f64::from(k) + 0.5) / 127.5 - 1.0) as f32;
        let bits = exact.to_bits() as i64;
        for d in -3i64..=3 {
            v.push(f32::from_bits((bits + d) as u32));
        }
    }
    v
}

/// A seeded `[1, 3, frames, height, width]` f32 video: random values, with the edge values
/// written over the start of the buffer.
fn video(seed: u64, frames: usize, height: usize, width: usize) -> Tensor {
    let mut rng = SplitMix(seed);
    let n = 3 * frames * height * width;
    let mut values: Vec<f32> = (0..n).map(|_| rng.value()).collect();
    for (slot, edge) in values.iter_mut().zip(edge_values()) {
        *slot = edge;
    }
    Tensor::from_vec(values, (1, 3, frames, height, width), &Device::Cpu).unwrap()
}

/// The byte of one channel value, written out in plain Rust (not candle): the pipeline's
/// `clamp, + 1, * 127.5, round, as u8` in f32.
fn byte(x: f32) -> u8 {
    // candle's clamp is maximum-then-minimum with `<`/`>` compares, so NaN passes through
    // and `NaN as u8` is 0.
    let c = if x < -1.0 { -1.0 } else { x };
    let c = if c > 1.0 { 1.0 } else { c };
    ((c + 1.0) * 127.5).round() as u8
}

/// Expected I420 frames of a `[1, 3, F, H, W]` f32 video: RGB bytes by [`byte`], then
/// fv-core's RGB → I420.
fn expected_i420(video: &Tensor) -> Vec<Vec<u8>> {
    let (_, _, f, h, w) = video.dims5().unwrap();
    let data = video.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let at = |c: usize, t: usize, y: usize, x: usize| data[((c * f + t) * h + y) * w + x];
    (0..f)
        .map(|t| {
            let mut rgb = Vec::with_capacity(h * w * 3);
            for y in 0..h {
                for x in 0..w {
                    for c in 0..3 {
                        rgb.push(byte(at(c, t, y, x)));
                    }
                }
            }
            fv_core::rgb_to_i420(w as u32, h as u32, &rgb).unwrap()
        })
        .collect()
}

fn input_error(result: fv_inference::Result<Vec<Vec<u8>>>) -> String {
    match result {
        Err(InferenceError::Input(msg)) => msg,
        other => panic!("expected an input error, got {other:?}"),
    }
}

#[test]
fn byte_rule_matches_the_contract_on_edges() {
    assert_eq!(byte(-1.0), 0);
    assert_eq!(byte(1.0), 255);
    assert_eq!(byte(f32::NAN), 0);
    assert_eq!(byte(f32::INFINITY), 255);
    assert_eq!(byte(f32::NEG_INFINITY), 0);
    assert_eq!(byte(0.0), 128); // 127.5 rounds half away from zero
    // x = -1 + 1/127.5 * 0.5 lands on 0.5 (up to f32 rounding): one side 0, the other 1
    let e = edge_values();
    assert!(e.iter().any(|&x| byte(x) == 0) && e.iter().any(|&x| byte(x) == 1));
}

#[test]
fn cpu_reference_matches_independent_conversion() {
    for (seed, f, h, w) in [(1, 1, 2, 2), (2, 3, 4, 6), (3, 2, 18, 34), (4, 5, 16, 16)] {
        let v = video(seed, f, h, w);
        let got = yuv::video_to_i420(&v).unwrap();
        assert_eq!(got, expected_i420(&v), "seed {seed} {f}x{h}x{w}");
        assert_eq!(got.len(), f);
        assert!(got.iter().all(|frame| frame.len() == h * w * 3 / 2));
    }
}

#[test]
fn edge_values_all_reach_the_output() {
    // 3 * 1 * 44 * 44 = 5808 samples: every edge value (1798) lands in the video.
    let v = video(9, 1, 44, 44);
    assert!(edge_values().len() <= 3 * 44 * 44);
    assert_eq!(yuv::video_to_i420(&v).unwrap(), expected_i420(&v));
}

#[test]
fn rank4_and_other_float_dtypes_are_accepted() {
    let v = video(5, 2, 6, 8);
    let want = yuv::video_to_i420(&v).unwrap();
    assert_eq!(yuv::video_to_i420(&v.squeeze(0).unwrap()).unwrap(), want);
    // f64 holding f32 values narrows back exactly
    assert_eq!(
        yuv::video_to_i420(&v.to_dtype(DType::F64).unwrap()).unwrap(),
        want
    );
    // bf16/f16: converted to f32 first, i.e. equal to the f32 path on the widened values
    for dtype in [DType::BF16, DType::F16] {
        let low = v.to_dtype(dtype).unwrap();
        let widened = low.to_dtype(DType::F32).unwrap();
        assert_eq!(
            yuv::video_to_i420(&low).unwrap(),
            expected_i420(&widened),
            "{dtype:?}"
        );
    }
    // a non-contiguous view (frames 1..2 of a [1, 3, 2, H, W] video) converts like a copy
    let narrowed = v.narrow(2, 1, 1).unwrap();
    assert_eq!(
        yuv::video_to_i420(&narrowed).unwrap(),
        expected_i420(&narrowed.contiguous().unwrap())
    );
}

#[test]
fn rgb_matches_the_byte_rule_and_allows_odd_sizes() {
    let v = video(6, 2, 3, 5);
    let rgb = yuv::video_to_rgb(&v).unwrap();
    let data = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(rgb.len(), 2);
    for (t, frame) in rgb.iter().enumerate() {
        assert_eq!(frame.len(), 3 * 5 * 3);
        for (i, &b) in frame.iter().enumerate() {
            let (pixel, c) = (i / 3, i % 3);
            assert_eq!(
                b,
                byte(data[(c * 2 + t) * 15 + pixel]),
                "frame {t} byte {i}"
            );
        }
    }
}

#[test]
fn i420_shape_reports_sizes() {
    let v = Tensor::zeros((1, 3, 4, 6, 10), DType::F32, &Device::Cpu).unwrap();
    let shape = yuv::i420_shape(&v).unwrap();
    assert_eq!(
        shape,
        VideoShape {
            frames: 4,
            height: 6,
            width: 10
        }
    );
    assert_eq!(shape.rgb_len(), 180);
    assert_eq!(shape.i420_len(), 90);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let zeros = |dims: &[usize], dtype| Tensor::zeros(dims, dtype, &Device::Cpu).unwrap();
    let cases: [(&[usize], DType, &str); 10] = [
        (&[3, 2, 2], DType::F32, "expected [1, 3, F, H, W]"),
        (&[1, 1, 3, 1, 2, 2], DType::F32, "expected [1, 3, F, H, W]"),
        (&[2, 3, 1, 2, 2], DType::F32, "batch size must be 1"),
        (&[1, 4, 1, 2, 2], DType::F32, "3 (RGB) channels, found 4"),
        (&[1, 3, 0, 2, 2], DType::F32, "no frames"),
        (&[1, 3, 1, 0, 2], DType::F32, "outside 1..=16384"),
        (&[1, 3, 1, 2, MAX_SIDE + 2], DType::F32, "outside 1..=16384"),
        (&[1, 3, 1, 3, 4], DType::F32, "is odd"),
        (&[3, 1, 4, 5], DType::F32, "is odd"),
        (&[1, 3, 1, 2, 2], DType::U8, "not a float type"),
    ];
    for (dims, dtype, want) in cases {
        let msg = input_error(yuv::video_to_i420(&zeros(dims, dtype)));
        assert!(msg.contains(want), "{dims:?} {dtype:?}: {msg}");
        let msg = input_error(yuv::video_to_i420_auto(&zeros(dims, dtype)));
        assert!(msg.contains(want), "auto {dims:?} {dtype:?}: {msg}");
    }
    // the largest side is accepted
    let wide = zeros(&[1, 3, 1, 2, MAX_SIDE], DType::F32);
    assert_eq!(yuv::video_to_i420(&wide).unwrap()[0].len(), MAX_SIDE * 3);
    // RGB allows odd sizes but not the rest
    assert!(yuv::video_to_rgb(&zeros(&[1, 3, 1, 3, 5], DType::F32)).is_ok());
    let msg = input_error(yuv::video_to_rgb(&zeros(&[1, 3, 1, 2, 2], DType::I64)));
    assert!(msg.contains("not a float type"), "{msg}");
}

#[test]
fn auto_uses_the_cpu_for_cpu_tensors() {
    let v = video(7, 3, 8, 12);
    assert_eq!(
        yuv::video_to_i420_auto(&v).unwrap(),
        yuv::video_to_i420(&v).unwrap()
    );
}

/// nvcc flags of kernels/build-ptx.sh; change both together.
const NVCC_FLAGS: [&str; 5] = ["--ptx", "-arch=compute_80", "-O3", "-fmad=false", "-o"];
/// The nvcc the committed PTX is made with.
const PINNED_NVCC: &str = "V13.0.88";

/// The committed PTX is what the pinned nvcc makes of the committed source. Skips (with the
/// reason printed) when `nvcc` is not on PATH or is another version. Needs no GPU.
#[test]
fn committed_ptx_matches_pinned_nvcc() {
    let source = include_str!("../kernels/video_to_i420.cu");
    let committed = include_str!("../kernels/video_to_i420.ptx");
    let version = match std::process::Command::new("nvcc").arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            eprintln!("skipped: `nvcc --version` failed: {}", out.status);
            return;
        }
        Err(e) => {
            eprintln!("skipped: no nvcc on PATH ({e}); see scripts/cuda-toolkit.sh");
            return;
        }
    };
    if !version.contains(PINNED_NVCC) {
        eprintln!("skipped: nvcc is not {PINNED_NVCC}: {version}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cu = dir.path().join("video_to_i420.cu");
    let ptx = dir.path().join("video_to_i420.ptx");
    std::fs::write(&cu, source).unwrap();
    let status = std::process::Command::new("nvcc")
        .args(NVCC_FLAGS)
        .arg(&ptx)
        .arg(&cu)
        .status()
        .unwrap();
    assert!(status.success(), "nvcc failed: {status}");
    let fresh = std::fs::read_to_string(&ptx).unwrap();
    assert!(
        fresh == committed,
        "kernels/video_to_i420.ptx is stale: run crates/fv-inference/kernels/build-ptx.sh"
    );
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use fv_inference::cuda;

    /// The first CUDA device, or `None` (with the reason printed) on a machine without one.
    /// With `FV_REQUIRE_GPU` set (on a GPU host) a missing device fails the test instead.
    fn gpu() -> Option<Device> {
        match Device::new_cuda(0) {
            Ok(device) => Some(device),
            Err(e) => {
                assert!(
                    std::env::var_os("FV_REQUIRE_GPU").is_none(),
                    "FV_REQUIRE_GPU is set but there is no CUDA device: {e}"
                );
                eprintln!("skipped: no CUDA device: {e}");
                None
            }
        }
    }

    #[test]
    fn cpu_tensor_is_rejected() {
        let v = video(1, 1, 2, 2);
        let msg = input_error(cuda::video_to_i420(&v));
        assert!(msg.contains("needs a tensor on a CUDA device"), "{msg}");
    }

    #[test]
    fn kernel_matches_cpu_reference() {
        let Some(device) = gpu() else { return };
        let sizes = [
            (11, 1, 2, 2),
            (12, 1, 544, 960),
            (13, 3, 34, 18),
            (14, 5, 64, 96),
            (15, 1, 44, 44), // every edge value in one frame
            (16, 9, 2, 6),
            (17, 2, 1080, 1920),
        ];
        for (seed, f, h, w) in sizes {
            let cpu = video(seed, f, h, w);
            let want = yuv::video_to_i420(&cpu).unwrap();
            let on_gpu = cpu.to_device(&device).unwrap();
            let got = cuda::video_to_i420(&on_gpu).unwrap();
            assert_eq!(got.len(), want.len(), "{f}x{h}x{w}: frame count");
            for (t, (g, c)) in got.iter().zip(&want).enumerate() {
                if let Some(i) = g.iter().zip(c).position(|(a, b)| a != b) {
                    panic!(
                        "{f}x{h}x{w} frame {t}: first difference at byte {i} of {}: gpu {} cpu {}",
                        c.len(),
                        g[i],
                        c[i]
                    );
                }
            }
            // the dispatcher picks the kernel for a GPU tensor and gives the same bytes
            assert_eq!(yuv::video_to_i420_auto(&on_gpu).unwrap(), want);
            // the CPU reference also accepts the GPU tensor (copies it back)
            assert_eq!(yuv::video_to_i420(&on_gpu).unwrap(), want);
        }
    }

    /// Prints how long the kernel path and the CPU path take for 25 frames of 544x960 (a
    /// report for docs/cuda.md, nothing is asserted on time) and checks they agree.
    #[test]
    fn kernel_and_cpu_path_timings() {
        use std::time::Instant;
        let Some(device) = gpu() else { return };
        let on_gpu = video(31, 25, 544, 960).to_device(&device).unwrap();
        // the first call JIT-compiles the PTX and loads the module
        let start = Instant::now();
        let first = cuda::video_to_i420(&on_gpu).unwrap();
        let first_call = start.elapsed();
        let start = Instant::now();
        let kernel = cuda::video_to_i420(&on_gpu).unwrap();
        let kernel_time = start.elapsed();
        // what the CPU path must do at least: bring the f32 video to the host
        let start = Instant::now();
        let host = on_gpu.to_device(&Device::Cpu).unwrap();
        let copy_time = start.elapsed();
        let start = Instant::now();
        let cpu = yuv::video_to_i420(&host).unwrap();
        let convert_time = start.elapsed();
        assert_eq!(first, kernel);
        assert_eq!(kernel, cpu);
        eprintln!(
            "25 frames 544x960: kernel path {kernel_time:?} (first call incl. PTX JIT \
             {first_call:?}); CPU path: f32 copy to host {copy_time:?} + conversion \
             {convert_time:?} (conversion timed in this test build's profile)"
        );
    }

    #[test]
    fn kernel_handles_layouts_and_dtypes() {
        let Some(device) = gpu() else { return };
        let cpu = video(21, 4, 6, 10);
        let gpu = cpu.to_device(&device).unwrap();
        // rank 4
        assert_eq!(
            cuda::video_to_i420(&gpu.squeeze(0).unwrap()).unwrap(),
            yuv::video_to_i420(&cpu).unwrap()
        );
        // a view with a storage offset and a non-contiguous one
        for view in [
            gpu.narrow(2, 1, 2).unwrap(),
            gpu.narrow(4, 2, 6).unwrap(),
            gpu.narrow(3, 2, 4).unwrap(),
        ] {
            let host = view.to_device(&Device::Cpu).unwrap();
            assert_eq!(
                cuda::video_to_i420(&view).unwrap(),
                yuv::video_to_i420(&host).unwrap(),
                "{:?}",
                view.dims()
            );
        }
        // bf16/f16/f64: converted to f32 on the GPU, same as the CPU reference
        for dtype in [DType::BF16, DType::F16, DType::F64] {
            let low = cpu.to_dtype(dtype).unwrap();
            assert_eq!(
                cuda::video_to_i420(&low.to_device(&device).unwrap()).unwrap(),
                yuv::video_to_i420(&low).unwrap(),
                "{dtype:?}"
            );
        }
    }

    #[test]
    fn kernel_rejects_bad_input_like_the_cpu_path() {
        let Some(device) = gpu() else { return };
        for dims in [
            &[1usize, 3, 1, 3, 4][..],
            &[1, 4, 1, 2, 2],
            &[2, 3, 1, 2, 2],
        ] {
            let v = Tensor::zeros(dims, DType::F32, &device).unwrap();
            let gpu_msg = input_error(cuda::video_to_i420(&v));
            let cpu_msg = input_error(yuv::video_to_i420(&v));
            assert_eq!(gpu_msg, cpu_msg);
        }
        let v = Tensor::zeros((1, 3, 1, 2, 2), DType::U32, &device).unwrap();
        assert!(input_error(cuda::video_to_i420(&v)).contains("not a float type"));
    }
}
