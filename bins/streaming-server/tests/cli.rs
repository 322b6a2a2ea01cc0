//! The binary with no arguments: it makes the tiny model in its cache directory on first use,
//! says so, and serves it.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_streaming-server");

#[test]
fn starts_with_no_arguments_on_the_embedded_tiny_model() -> anyhow::Result<()> {
    let cache = tempfile::tempdir()?;
    // An older tiny model (the video-only layout of an earlier release) is replaced.
    let model = cache.path().join("fv-stream/tiny-ltx2");
    std::fs::create_dir_all(model.join("transformer"))?;
    std::fs::write(model.join("transformer/config.json"), "{}")?;
    for run in [
        "first start replaces the old model",
        "second start reuses it",
    ] {
        let (mut child, addr) = fv_testkit::spawn_listening(
            Command::new(BIN)
                .args(["--port", "0"])
                .env("XDG_CACHE_HOME", cache.path())
                .env("RUST_LOG", "info")
                .stderr(Stdio::piped()),
        )
        .map_err(|e| anyhow::anyhow!("{run}: {e}"))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr"))?;
        assert!(
            fv_inference::tiny::is_current(&model) && model.join("audio_vae/config.json").is_file(),
            "{run}: no current model in {}",
            model.display()
        );
        let rt = tokio::runtime::Runtime::new()?;
        let (status, body) = rt.block_on(fv_testkit::http_get(addr, "/healthz"))?;
        assert_eq!(status, 200, "{run}: {body}");
        drop(child); // killed and reaped
        // The log says what runs and how to serve real weights instead.
        let mut log = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut log)?;
        assert!(
            log.contains("no --config: serving the tiny random-weight LTX-2 model")
                && log.contains("generator.model_path"),
            "{run}: {log}"
        );
    }
    Ok(())
}

/// FastVideo's `preset_overrides.refine` in the serve YAML selects the two-stage preset: stage
/// 1 at half size, the latent upsampler, the refine at full size. Steps are numbered across
/// both stages, and the second segment continues the first (9 conditioning frames dropped).
#[test]
fn the_refine_override_serves_the_two_stage_preset() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model = dir.path().join("tiny");
    fv_inference::tiny::write_random_model(&model)?;
    let config = dir.path().join("two-stage.yaml");
    std::fs::write(
        &config,
        format!(
            "generator:\n  model_path: {}\n  pipeline:\n    preset_overrides:\n      refine:\n        \
             enabled: true\n        num_inference_steps: 2\n        guidance_scale: 1.0\n        \
             add_noise: true\n\
             default_request:\n  sampling:\n    num_frames: 17\n    width: 128\n    height: 128\n    \
             fps: 24\n    num_inference_steps: 2\n\
             streaming:\n  warmup:\n    enabled: false\n  pool:\n    num_workers: 1\n",
            model.display()
        ),
    )?;
    let (_child, addr) = fv_testkit::spawn_listening(
        Command::new(BIN)
            .args(["--port", "0", "--host", "127.0.0.1", "--config"])
            .arg(&config)
            .stderr(Stdio::null()),
    )?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut client = fv_testkit::Client::connect(&format!("ws://{addr}/v1/stream")).await?;
        client.init().await?;
        for (segment, new_frames) in [(0, 17), (1, 17 - 9)] {
            let t = client.segment("a lighthouse at dusk").await?;
            let steps: Vec<(u64, u64)> = t
                .messages
                .iter()
                .filter(|m| m["type"] == "step_complete")
                .map(|m| {
                    (
                        m["step"].as_u64().unwrap_or_default(),
                        m["total_steps"].as_u64().unwrap_or_default(),
                    )
                })
                .collect();
            assert_eq!(
                steps,
                [(1, 4), (2, 4), (3, 4), (4, 4)],
                "segment {segment}: {:?}",
                t.order
            );
            let start = t.find("ltx2_segment_start").expect("segment start");
            assert_eq!(start["total_steps"], 4, "segment {segment}");
            let decoded = fv_testkit::decode_fmp4(&t.media())?;
            assert_eq!(decoded.frames, new_frames, "segment {segment}");
            assert_eq!((decoded.width, decoded.height), (128, 128));
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
