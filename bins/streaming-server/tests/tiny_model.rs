//! The streaming server with the real LTX-2 pipeline on the tiny random-weight model: one
//! segment end to end, decoded back from the fMP4 it streams.
#![allow(clippy::unwrap_used)]

use fv_server::config::ServeConfig;
mod common;

use fv_testkit::decode_fmp4;
use std::path::Path;

fn repo_root() -> std::path::PathBuf {
    // The checkout the test runs in (cargo sets it at run time), not the one it was compiled
    // in: a shared target dir may hold a binary built from another checkout.
    let manifest = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    );
    manifest
        .parent()
        .and_then(Path::parent)
        .expect("bins/streaming-server sits two levels below the root")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_one_real_segment_from_the_tiny_model() {
    let (_dir, server) = common::tiny_model_server(|config| {
        let s = &mut config.default_request.sampling;
        (s.width, s.height, s.num_frames, s.num_inference_steps) = (64, 96, 9, 2);
    })
    .await;

    let mut client = server.connect().await.unwrap();
    client.init().await.unwrap();
    let segment = client.segment("a lighthouse at dusk").await.unwrap();
    let steps = segment
        .messages
        .iter()
        .filter(|m| m["type"] == "step_complete")
        .count();
    assert_eq!(
        steps, 2,
        "one step_complete per denoising step: {:?}",
        segment.order
    );
    let decoded = decode_fmp4(&segment.media()).unwrap();
    assert_eq!(decoded.frames, 9, "{:?}", segment.order);
    assert_eq!((decoded.width, decoded.height), (64, 96));
    assert_eq!(decoded.samples, 9);
    server.shutdown().await.unwrap();
}

#[test]
fn the_shipped_tiny_config_loads_and_fits_the_tiny_model() {
    let loaded = ServeConfig::load(&repo_root().join("configs/tiny-ltx2.yaml")).unwrap();
    loaded.config.validate().unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    // `--check-config` prints a config that loads back to the same one.
    let again = ServeConfig::from_yaml_str(&loaded.config.to_yaml_string()).unwrap();
    assert_eq!(again.config, loaded.config);
    let dir = tempfile::tempdir().unwrap();
    fv_inference::tiny::write_random_model(dir.path()).unwrap();
    let pipeline =
        fv_inference::Ltx2Pipeline::load(dir.path(), &fv_inference::Device::Cpu).unwrap();
    let s = &loaded.config.default_request.sampling;
    assert_eq!(loaded.config.generator.model_path, "/tmp/tiny-ltx2");
    assert!(!loaded.config.streaming.warmup.enabled);
    pipeline
        .latent_grid(s.width, s.height, s.num_frames)
        .unwrap();
}

#[test]
fn the_shipped_tiny_config_makes_frames_and_pcm_of_the_expected_length() {
    use fv_core::Generator;
    let loaded = ServeConfig::load(&repo_root().join("configs/tiny-ltx2.yaml")).unwrap();
    let s = &loaded.config.default_request.sampling;
    let dir = tempfile::tempdir().unwrap();
    fv_inference::tiny::write_random_model(dir.path()).unwrap();
    let mut pipeline =
        fv_inference::Ltx2Pipeline::load(dir.path(), &fv_inference::Device::Cpu).unwrap();
    let request = fv_core::GenerationRequest {
        width: s.width,
        height: s.height,
        num_frames: s.num_frames,
        fps: s.fps,
        num_inference_steps: s.num_inference_steps,
        seed: s.seed,
        ..fv_core::GenerationRequest::new("a lighthouse at dusk, waves on the rocks")
    };
    let mut sink = fv_core::CollectingSink::default();
    let result = pipeline
        .generate(&request, &mut sink, &fv_core::CancelToken::new())
        .unwrap();
    assert_eq!(
        sink.frames.len() + result.frames.len(),
        s.num_frames as usize
    );
    let audio = result.audio.expect("the tiny model makes audio");
    // round(frames / fps · 25) audio latent frames → 4·L − 3 mel frames of 10 ms → ×240
    // samples at 24 kHz (17 frames at 24 fps: L = 18, 69 mel frames, 16 560 samples).
    let latent = (f64::from(s.num_frames) / f64::from(s.fps) * 25.0).round_ties_even() as usize;
    let per_channel = 240 * (4 * latent - 3);
    assert_eq!((audio.sample_rate, audio.channels), (24_000, 2));
    assert_eq!(audio.samples.len(), 2 * per_channel);
    let seconds = per_channel as f64 / 24_000.0;
    let video_seconds = f64::from(s.num_frames) / f64::from(s.fps);
    assert!(
        (seconds - video_seconds).abs() < 0.05,
        "{seconds} s of audio for {video_seconds} s"
    );
}

/// Runs the real binary with the tiny model and `extra` lines under `generator:`.
fn run_with_generator_lines(extra: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    fv_inference::tiny::write_random_model(dir.path()).unwrap();
    let config = dir.path().join("serve.yaml");
    std::fs::write(
        &config,
        format!(
            "generator:\n  model_path: {}\n{extra}server:\n  host: 127.0.0.1\n  port: 0\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_streaming-server"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap()
}

#[cfg(not(feature = "cuda"))]
#[test]
fn asking_for_cuda_in_a_cpu_build_says_how_to_get_it() {
    let out = run_with_generator_lines("  device: cuda\n  dtype: bf16\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("generator.device") && stderr.contains("--features cuda"),
        "{stderr}"
    );
}

#[test]
fn a_bad_device_spelling_is_a_config_error_naming_the_key() {
    let out = run_with_generator_lines("  device: gpu0\n");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("generator.device"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(64),
        "config errors exit 64: {stderr}"
    );
}

/// `/ws`, the Dreamverse product protocol, on the tiny model: the rollout's first segment
/// carries the model's own audio beside its video (decoded back: 48 kHz stereo, not silence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_product_protocol_with_the_models_audio() {
    use fv_testkit::{Client, Received};
    let (_dir, server) = common::tiny_model_server(|config| {
        let s = &mut config.default_request.sampling;
        (s.width, s.height, s.num_frames, s.num_inference_steps) = (64, 64, 17, 2);
        // What streaming-server's own configs default to (the test config is the mock's).
        config.streaming.audio = fv_server::config::AudioMode::Generator;
    })
    .await;
    let mut c = Client::connect_product(&format!("ws://{}/ws", server.addr))
        .await
        .unwrap();
    c.send_json(
        &serde_json::json!({"type": "session_init_v2", "preset_id": "custom_editable",
        "preset_label": "Custom rollout", "curated_prompts": [],
        "initial_rollout_prompt": "waves on a pebble beach", "initial_image": null,
        "single_clip_mode": false, "enhancement_enabled": false,
        "auto_extension_enabled": false, "loop_generation_enabled": false}),
    )
    .await
    .unwrap();
    let mut media = Vec::new();
    loop {
        match c.recv().await.unwrap() {
            Received::Json(v) => {
                assert_ne!(v["type"], "error", "{v}");
                if v["type"] == "media_init" {
                    assert!(
                        v["mime"].as_str().is_some_and(|m| m.contains("mp4a.40.2")),
                        "{v}"
                    );
                }
                if v["type"] == "ltx2_segment_complete" {
                    break;
                }
            }
            Received::Binary(b) => media.extend(b),
            other => panic!("segment ended by {other:?}"),
        }
    }
    let segment = fv_encoder::inspect::parse_segment(&media).unwrap();
    assert_eq!(segment.sample_count(), 17);
    let audio = fv_encoder::inspect::decode_audio(&segment).unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 2));
    // 17 frames at 24 fps is 0.708 s: the track covers it.
    assert!(
        audio.samples.len() / 2 >= 17 * 48_000 / 24 - 1024,
        "{}",
        audio.samples.len()
    );
    let rms =
        (audio.samples.iter().map(|s| s * s).sum::<f32>() / audio.samples.len() as f32).sqrt();
    assert!(rms > 1e-3, "the model's audio, not silence: rms {rms}");
    server.shutdown().await.unwrap();
}
