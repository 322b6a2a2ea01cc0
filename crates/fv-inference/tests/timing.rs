//! The timing harness behind examples/gpu_check.rs, run at a tiny size on the CPU.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device};
use fv_inference::timing::{
    AudioTimingConfig, Stage2TimingConfig, TimingConfig, TimingReport, run, run_audio, run_stage2,
};
use fv_inference::{LatentUpsamplerConfig, TransformerConfig, VaeConfig, VaeEncoderConfig, tiny};

fn tiny_config() -> TimingConfig {
    TimingConfig {
        transformer: TransformerConfig::from_json(&tiny::transformer_config_json().to_string())
            .unwrap(),
        vae: VaeConfig::from_json(&tiny::vae_config_json().to_string()).unwrap(),
        width: 96,
        height: 64,
        num_frames: 17,
        text_tokens: 5,
        repeat: 2,
        dtype: DType::F32,
        vae_decode: true,
        seed: 1,
    }
}

#[test]
fn times_each_piece_the_asked_number_of_times() {
    let report = run(&tiny_config(), &Device::Cpu).unwrap();
    assert_eq!(report.grid, (3, 2, 3));
    assert_eq!(report.tokens, 18);
    assert_eq!(report.transformer_ms.len(), 2);
    assert_eq!(report.vae_ms.len(), 2);
    assert_eq!(report.video_dims, vec![1, 3, 17, 64, 96]);
    assert!(report.transformer_params > 0 && report.vae_params > 0);
    // Every entry is a real measurement: a forward, a decode, building the weights and the
    // RoPE tables all take time, so a zero (or NaN) means the harness timed nothing.
    let measured = |ms: &f64| ms.is_finite() && *ms > 0.0;
    assert!(report.transformer_ms.iter().all(measured), "{report:?}");
    assert!(report.vae_ms.iter().all(measured), "{report:?}");
    assert!(
        measured(&report.weights_ms) && measured(&report.rope_ms),
        "{report:?}"
    );

    let mut no_vae = tiny_config();
    no_vae.vae_decode = false;
    no_vae.dtype = DType::BF16;
    let report = run(&no_vae, &Device::Cpu).unwrap();
    assert!(report.vae_ms.is_empty() && report.video_dims.is_empty());
    assert_eq!(report.vae_params, 0);
}

#[test]
fn sizes_that_do_not_fit_and_empty_runs_are_errors() {
    let mut c = tiny_config();
    c.width = 100;
    assert!(
        run(&c, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("does not fit")
    );
    let mut c = tiny_config();
    c.num_frames = 16;
    assert!(c.grid().is_err());
    let mut c = tiny_config();
    c.repeat = 0;
    assert!(
        run(&c, &Device::Cpu)
            .unwrap_err()
            .to_string()
            .contains("repeat")
    );
}

#[test]
fn released_stage1_shape_is_16_by_17_by_30_latents() {
    let c = TimingConfig::ltx2_stage1();
    assert_eq!(c.grid().unwrap(), (16, 17, 30));
    assert_eq!(TimingReport::median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(TimingReport::median(&[]), 0.0);
}

#[test]
fn times_the_audio_decode_at_a_tiny_size() {
    let mut cfg = AudioTimingConfig::ltx2_segment();
    // the tiny parity configs' shape family: base 8, 2 latent channels × 4 mel, 32-wide vocoder
    cfg.audio_vae = fv_inference::AudioVaeConfig {
        base_channels: 8,
        latent_channels: 2,
        mel_bins: Some(16),
        ..cfg.audio_vae
    };
    cfg.vocoder = fv_inference::VocoderConfig {
        in_channels: 32,
        hidden_channels: 32,
        upsample_kernel_sizes: vec![4, 4],
        upsample_factors: vec![2, 2],
        resnet_kernel_sizes: vec![3, 7],
        resnet_dilations: vec![vec![1, 3, 5]; 2],
        ..cfg.vocoder
    };
    cfg.latent_frames = 7;
    cfg.repeat = 2;
    cfg.dtype = DType::F32;
    let report = run_audio(&cfg, &Device::Cpu).unwrap();
    assert_eq!(report.mel_dims, vec![1, 2, 25, 16]);
    assert_eq!(report.waveform_dims, vec![1, 2, 100]);
    assert_eq!((report.audio_vae_ms.len(), report.vocoder_ms.len()), (2, 2));
    assert!(report.audio_vae_params > 0 && report.vocoder_params > 0);
    cfg.latent_frames = 0;
    assert!(run_audio(&cfg, &Device::Cpu).is_err());
    let released = AudioTimingConfig::ltx2_segment();
    assert_eq!(
        released.audio_vae.mel_frames_for(released.latent_frames),
        501
    );
}

#[test]
fn times_the_stage2_pieces_at_a_tiny_size() {
    let cfg = Stage2TimingConfig {
        encoder: VaeEncoderConfig::from_json(&tiny::vae_config_json().to_string()).unwrap(),
        upsampler: LatentUpsamplerConfig::from_json(&tiny::upsampler_config_json().to_string())
            .unwrap(),
        width: 128,
        height: 192,
        num_frames: 17,
        cond_frames: 9,
        repeat: 2,
        dtype: DType::F32,
        seed: 3,
    };
    let r = run_stage2(&cfg, &Device::Cpu).unwrap();
    // 9 frames → 2 latent frames at 64×96 (2×3) and at 128×192 (4×6); 3×3×2 → 3×6×4.
    assert_eq!(r.cond_half_dims, vec![1, 8, 2, 3, 2]);
    assert_eq!(r.cond_full_dims, vec![1, 8, 2, 6, 4]);
    assert_eq!(r.upsampled_dims, vec![1, 8, 3, 6, 4]);
    assert!(r.encoder_params > 0 && r.upsampler_params > 0);
    let measured = |ms: &f64| ms.is_finite() && *ms > 0.0;
    for v in [&r.encode_half_ms, &r.encode_full_ms, &r.upsample_ms] {
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(measured), "{r:?}");
    }
    println!(
        "tiny stage-2 pieces: encode 9 frames at 64x96 {:.0} ms, at 128x192 {:.0} ms, \
         upsample {:.0} ms",
        TimingReport::median(&r.encode_half_ms),
        TimingReport::median(&r.encode_full_ms),
        TimingReport::median(&r.upsample_ms)
    );
    // Odd sizes are refused, not run.
    let mut odd = cfg;
    odd.width = 96;
    assert!(run_stage2(&odd, &Device::Cpu).is_err());
}
