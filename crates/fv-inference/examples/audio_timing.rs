//! Times one audio decode of a streaming segment — the released audio VAE decoder (tokens →
//! stereo mel) and vocoder (mel → 24 kHz stereo) with random weights — on the CPU or a GPU:
//!
//! ```text
//! cargo run --release -p fv-inference --example audio_timing                     # CPU, f32
//! cargo run --release -p fv-inference --features cuda --example audio_timing -- --device cuda --dtype bf16
//! ```
//!
//! Options: `--device cpu|cuda|cuda:N`, `--dtype f32|bf16|f16`, `--frames N` (audio latent
//! frames, 126 = one 121-frame segment at 24 fps), `--repeat N`. Prints one JSON object.

use candle_core::{DType, Device};
use fv_inference::timing::{AudioTimingConfig, TimingReport, run_audio};
use std::process::ExitCode;

fn parse() -> Result<(String, AudioTimingConfig), String> {
    let mut device = "cpu".to_string();
    let mut cfg = AudioTimingConfig::ltx2_segment();
    cfg.dtype = DType::F32;
    cfg.repeat = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--device" => device = value()?,
            "--dtype" => {
                cfg.dtype = match value()?.as_str() {
                    "f32" => DType::F32,
                    "bf16" => DType::BF16,
                    "f16" => DType::F16,
                    other => return Err(format!("unknown dtype {other:?}")),
                }
            }
            "--frames" => {
                cfg.latent_frames = value()?.parse().map_err(|e| format!("--frames: {e}"))?
            }
            "--repeat" => cfg.repeat = value()?.parse().map_err(|e| format!("--repeat: {e}"))?,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok((device, cfg))
}

fn main() -> ExitCode {
    let (device, cfg) = match parse() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("audio_timing: {e}");
            return ExitCode::from(2);
        }
    };
    let dev = match device.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" => fv_inference::open_cuda(0),
        d => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => fv_inference::open_cuda(n),
            None => {
                eprintln!("audio_timing: unknown device {d:?}");
                return ExitCode::from(2);
            }
        },
    };
    let report = dev.and_then(|dev| run_audio(&cfg, &dev));
    match report {
        Ok(r) => {
            let json = serde_json::json!({
                "device": device,
                "dtype": format!("{:?}", cfg.dtype),
                "latent_frames": cfg.latent_frames,
                "audio_vae_params": r.audio_vae_params,
                "vocoder_params": r.vocoder_params,
                "weights_ms": r.weights_ms,
                "audio_vae_ms_median": TimingReport::median(&r.audio_vae_ms),
                "vocoder_ms_median": TimingReport::median(&r.vocoder_ms),
                "mel": r.mel_dims,
                "waveform": r.waveform_dims,
            });
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audio_timing: {e}");
            ExitCode::FAILURE
        }
    }
}
