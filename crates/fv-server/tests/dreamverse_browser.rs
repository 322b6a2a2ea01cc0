//! `/ws` in headless Chromium with media handled the way the Dreamverse web app handles it
//! (`tests/browser/dreamverse.mjs`): one MediaSource per rollout in `sequence` mode, the mime
//! fallback list, binaries appended in arrival order, a second project on the same socket.
//! Checks: playback passes 1 s in both rollouts, audio is decoded, no MSE error, and each
//! archived segment alone is an MP4 with both tracks. Skipped locally without Chromium/node
//! (`fv_testkit::browser`), required under `CI`.

use base64::Engine;
use fv_testkit::{TestServer, browser, test_config};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_page_plays_two_projects_with_audio() -> anyhow::Result<()> {
    if !browser::available() {
        return Ok(());
    }
    let mut config = test_config();
    // One-second segments, two per rollout (the cap completes each rollout).
    config.default_request.sampling.num_frames = 24;
    config.streaming.fragment_frames = 8;
    config.streaming.generation_segment_cap = 2;
    // A little generation time, as the real mock has, so media arrives in real time.
    let server = TestServer::start_mock(config, Duration::from_millis(200)).await?;
    let s = browser::dreamverse(server.addr).await?;
    let playback = s["playback"].as_array().cloned().unwrap_or_default();
    eprintln!("playback per rollout: {}", s["playback"]);
    assert_eq!(playback.len(), 2, "{s}");
    for p in &playback {
        assert!(p["currentTime"].as_f64().is_some_and(|t| t > 1.0), "{p}");
        assert!(
            p["audioDecodedBytes"].as_u64().is_some_and(|n| n > 0),
            "{p}"
        );
    }
    // One MediaSource per rollout, each opened with the server's two-track mime.
    assert_eq!(s["mediaSources"], 2, "{}", s["resolvedMimes"]);
    for mime in s["resolvedMimes"].as_array().into_iter().flatten() {
        assert!(
            mime.as_str().is_some_and(|m| m.contains("mp4a.40.2")),
            "{mime}"
        );
    }
    // Every archived segment alone: a whole MP4 with both tracks.
    let archive = s["archive"].as_array().cloned().unwrap_or_default();
    assert_eq!(archive.len(), 4, "two rollouts of two segments");
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, a) in archive.iter().enumerate() {
        assert_eq!(a["complete"], true, "segment {i}");
        let bytes = b64.decode(a["base64"].as_str().unwrap_or_default())?;
        let seg = fv_encoder::inspect::parse_segment(&bytes)?;
        assert_eq!(seg.sample_count(), 24, "segment {i}");
        assert!(seg.audio_sample_count() > 0, "segment {i}");
        assert_eq!(fv_encoder::inspect::decode_segment(&seg)?.len(), 24);
        assert!(!fv_encoder::inspect::decode_audio(&seg)?.samples.is_empty());
    }
    // The socket carried both projects.
    let messages: Vec<&str> = s["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    assert_eq!(
        messages
            .iter()
            .filter(|m| **m == "ltx2_stream_complete")
            .count(),
        2
    );
    assert!(messages.contains(&"project_idle"));
    server.shutdown().await?;
    Ok(())
}
