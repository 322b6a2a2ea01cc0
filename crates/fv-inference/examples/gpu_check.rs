//! Times one LTX-2 transformer forward and one VAE decode at the released stage-1 shape
//! (960×544, 121 frames, bf16, random weights) and, in a `cuda` build, checks our I420
//! kernel against the CPU reference. Runs anywhere; meant for a GPU host:
//!
//! ```text
//! cargo run --release -p fv-inference --features cuda --example gpu_check -- --device cuda
//! cargo run --release -p fv-inference --example gpu_check -- --tiny        # CPU smoke run
//! ```
//!
//! Options: `--device cpu|cuda|cuda:N`, `--dtype bf16|f16|f32`, `--size WxHxF`,
//! `--layers N` (fewer transformer blocks), `--repeat N`, `--text-tokens N`, `--no-vae`,
//! `--tiny` (the tiny random model's configs at 96x64x17), `--no-stage2`. Unless
//! `--no-stage2`, it also times what a continued segment of the two-stage streaming preset
//! adds to its steps: the VAE encode of the 9 conditioning frames at 960×544 and at
//! 1920×1088, and the latent upsampler on 16×17×30 latents (`--tiny`: 64×96 / 128×192). The
//! last line printed is one JSON object with every figure.

use candle_core::{DType, Device};
use fv_inference::timing::{self, Stage2TimingConfig, TimingConfig, TimingReport};
use fv_inference::{LatentUpsamplerConfig, TransformerConfig, VaeConfig, VaeEncoderConfig, tiny};
use std::process::ExitCode;

#[derive(Debug)]
struct Args {
    device: String,
    config: TimingConfig,
    /// The stage-2 pieces, unless `--no-stage2`.
    stage2: Option<Stage2TimingConfig>,
}

fn parse_size(s: &str) -> Result<(usize, usize, usize), String> {
    let parts: Vec<&str> = s.split('x').collect();
    let nums: Result<Vec<usize>, _> = parts.iter().map(|p| p.parse::<usize>()).collect();
    match nums.as_deref() {
        Ok([w, h, f]) => Ok((*w, *h, *f)),
        _ => Err(format!("--size wants WIDTHxHEIGHTxFRAMES, got {s:?}")),
    }
}

fn parse_args() -> Result<Args, String> {
    let mut device = "cuda".to_string();
    let mut config = TimingConfig::ltx2_stage1();
    let mut stage2 = Some(Stage2TimingConfig::ltx2_streaming());
    let mut tiny_model = false;
    let mut args = std::env::args().skip(1);
    let value = |args: &mut dyn Iterator<Item = String>, flag: &str| {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    };
    let number = |v: String, flag: &str| {
        v.parse::<usize>()
            .map_err(|_| format!("{flag} wants a number, got {v:?}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--device" => device = value(&mut args, "--device")?,
            "--dtype" => {
                config.dtype = match value(&mut args, "--dtype")?.as_str() {
                    "bf16" => DType::BF16,
                    "f16" => DType::F16,
                    "f32" => DType::F32,
                    other => return Err(format!("--dtype: bf16, f16 or f32, not {other:?}")),
                }
            }
            "--size" => {
                (config.width, config.height, config.num_frames) =
                    parse_size(&value(&mut args, "--size")?)?
            }
            "--layers" => {
                config.transformer.num_layers = number(value(&mut args, "--layers")?, "--layers")?
            }
            "--repeat" => config.repeat = number(value(&mut args, "--repeat")?, "--repeat")?,
            "--text-tokens" => {
                config.text_tokens = number(value(&mut args, "--text-tokens")?, "--text-tokens")?
            }
            "--no-vae" => config.vae_decode = false,
            "--no-stage2" => stage2 = None,
            "--tiny" => {
                let t = TransformerConfig::from_json(&tiny::transformer_config_json().to_string());
                let v = VaeConfig::from_json(&tiny::vae_config_json().to_string());
                config.transformer = t.map_err(|e| e.to_string())?;
                config.vae = v.map_err(|e| e.to_string())?;
                (config.width, config.height, config.num_frames) = (96, 64, 17);
                config.text_tokens = 8;
                device = "cpu".into();
                tiny_model = true;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: gpu_check [--device cpu|cuda|cuda:N] [--dtype bf16|f16|f32] \
                            [--size WxHxF] [--layers N] [--repeat N] [--text-tokens N] \
                            [--no-vae] [--no-stage2] [--tiny]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if let Some(s) = stage2.as_mut() {
        s.dtype = config.dtype;
        s.repeat = config.repeat;
        if tiny_model {
            let e = VaeEncoderConfig::from_json(&tiny::vae_config_json().to_string());
            let u = LatentUpsamplerConfig::from_json(&tiny::upsampler_config_json().to_string());
            s.encoder = e.map_err(|e| e.to_string())?;
            s.upsampler = u.map_err(|e| e.to_string())?;
            (s.width, s.height, s.num_frames) = (128, 192, 17);
        }
    }
    Ok(Args {
        device,
        config,
        stage2,
    })
}

fn open_device(name: &str) -> Result<Device, String> {
    if name == "cpu" {
        return Ok(Device::Cpu);
    }
    let ordinal = match name.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad device {name:?}"))?,
        None => return Err(format!("device must be cpu, cuda or cuda:N, got {name:?}")),
    };
    fv_inference::open_cuda(ordinal).map_err(|e| e.to_string())
}

#[cfg(feature = "cuda")]
fn kernel_check(device: &Device) -> Result<serde_json::Value, String> {
    use candle_core::Tensor;
    use std::time::Instant;
    let mut results = Vec::new();
    // Warm-up: the first launch loads (JIT-compiles) the PTX module; keep that out of the timings.
    let warm = Tensor::zeros((1, 3, 1, 2, 2), candle_core::DType::F32, device)
        .map_err(|e| e.to_string())?;
    fv_inference::cuda::video_to_i420(&warm).map_err(|e| e.to_string())?;
    // The released segment, odd frame counts, 1080p, and the smallest legal frame.
    for (w, h, f) in [
        (960usize, 544usize, 121usize),
        (1920, 1080, 2),
        (64, 48, 3),
        (2, 2, 1),
    ] {
        let video = Tensor::randn(0f32, 0.7, (1, 3, f, h, w), device).map_err(|e| e.to_string())?;
        device.synchronize().map_err(|e| e.to_string())?;
        let start = Instant::now();
        let gpu = fv_inference::cuda::video_to_i420(&video).map_err(|e| e.to_string())?;
        let gpu_ms = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        let cpu = fv_inference::yuv::video_to_i420(&video).map_err(|e| e.to_string())?;
        let cpu_ms = start.elapsed().as_secs_f64() * 1e3;
        let equal = gpu == cpu;
        println!(
            "kernel {w}x{h}x{f}: GPU == CPU reference: {equal}; GPU {gpu_ms:.2} ms \
             (incl. copy back), CPU path {cpu_ms:.2} ms (incl. copy back)"
        );
        if !equal {
            return Err(format!(
                "the I420 kernel differs from the CPU reference at {w}x{h}x{f}"
            ));
        }
        results.push(serde_json::json!({"size": [w, h, f], "gpu_ms": gpu_ms, "cpu_ms": cpu_ms}));
    }
    Ok(serde_json::Value::Array(results))
}

#[cfg(not(feature = "cuda"))]
fn kernel_check(_device: &Device) -> Result<serde_json::Value, String> {
    println!("kernel: not built (needs --features cuda)");
    Ok(serde_json::Value::Null)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            return ExitCode::from(2);
        }
    };
    let device = match open_device(&args.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("gpu_check: {e}");
            return ExitCode::from(1);
        }
    };
    let kernel = if device.is_cuda() {
        match kernel_check(&device) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("gpu_check: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        serde_json::Value::Null
    };
    let c = &args.config;
    println!(
        "timing on {}: {}x{}x{} frames, {:?}, {} blocks, {} caption tokens, {} runs each",
        args.device,
        c.width,
        c.height,
        c.num_frames,
        c.dtype,
        c.transformer.num_layers,
        c.text_tokens,
        c.repeat
    );
    let report = match timing::run(c, &device) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gpu_check: timing failed: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "latent grid {:?} = {} tokens; transformer {:.2} B params, VAE decoder {:.1} M params; \
         random weights made in {:.0} ms; RoPE tables {:.1} ms (once per run)",
        report.grid,
        report.tokens,
        report.transformer_params as f64 / 1e9,
        report.vae_params as f64 / 1e6,
        report.weights_ms,
        report.rope_ms
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|ms| format!("{ms:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "transformer forward: median {:.1} ms ({} ms)",
        TimingReport::median(&report.transformer_ms),
        fmt(&report.transformer_ms)
    );
    if !report.vae_ms.is_empty() {
        println!(
            "VAE decode to {:?}: median {:.1} ms ({} ms)",
            report.video_dims,
            TimingReport::median(&report.vae_ms),
            fmt(&report.vae_ms)
        );
    }
    let stage2 = match &args.stage2 {
        None => serde_json::Value::Null,
        Some(s) => match timing::run_stage2(s, &device) {
            Ok(r) => {
                println!(
                    "stage-2 pieces ({:?}): VAE encoder {:.1} M params, upsampler {:.1} M params; \
                     encode {} frames to {:?}: median {:.1} ms ({} ms); to {:?}: median {:.1} ms \
                     ({} ms); upsample to {:?}: median {:.1} ms ({} ms)",
                    s.dtype,
                    r.encoder_params as f64 / 1e6,
                    r.upsampler_params as f64 / 1e6,
                    s.cond_frames,
                    r.cond_half_dims,
                    TimingReport::median(&r.encode_half_ms),
                    fmt(&r.encode_half_ms),
                    r.cond_full_dims,
                    TimingReport::median(&r.encode_full_ms),
                    fmt(&r.encode_full_ms),
                    r.upsampled_dims,
                    TimingReport::median(&r.upsample_ms),
                    fmt(&r.upsample_ms)
                );
                serde_json::json!({
                    "size": [s.width, s.height, s.num_frames],
                    "cond_frames": s.cond_frames,
                    "weights_ms": r.weights_ms,
                    "encode_half_ms": r.encode_half_ms,
                    "encode_half_median_ms": TimingReport::median(&r.encode_half_ms),
                    "encode_full_ms": r.encode_full_ms,
                    "encode_full_median_ms": TimingReport::median(&r.encode_full_ms),
                    "upsample_ms": r.upsample_ms,
                    "upsample_median_ms": TimingReport::median(&r.upsample_ms),
                })
            }
            Err(e) => {
                eprintln!("gpu_check: stage-2 timing failed: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let summary = serde_json::json!({
        "device": args.device,
        "dtype": format!("{:?}", c.dtype),
        "size": [c.width, c.height, c.num_frames],
        "layers": c.transformer.num_layers,
        "tokens": report.tokens,
        "weights_ms": report.weights_ms,
        "rope_ms": report.rope_ms,
        "transformer_ms": report.transformer_ms,
        "transformer_median_ms": TimingReport::median(&report.transformer_ms),
        "vae_ms": report.vae_ms,
        "vae_median_ms": TimingReport::median(&report.vae_ms),
        "kernel": kernel,
        "stage2": stage2,
    });
    println!("{summary}");
    ExitCode::SUCCESS
}
