//! End-to-end: the player page plays the REAL LTX-2 pipeline's stream (tiny random-weight
//! model on the CPU: seeded noise → transformer steps → VAE decode → H.264 fMP4) in headless
//! Chromium, through `fv_testkit::browser`. Skipped locally without Chromium/node, required
//! under `CI`.
#![allow(clippy::unwrap_used)]

mod common;

use fv_testkit::browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_page_plays_the_real_pipeline_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let (_dir, server) = common::tiny_model_server(|config| {
        let s = &mut config.default_request.sampling;
        // 25 frames (8k + 1) at 24 fps: just over a second per segment, so playback passes 1 s
        // only once a second segment has arrived. 96x64 is 3x2 latents.
        (
            s.width,
            s.height,
            s.num_frames,
            s.fps,
            s.num_inference_steps,
        ) = (96, 64, 25, 24, 2);
        config.streaming.fragment_frames = 8;
    })
    .await;

    let summary = browser::play(server.addr)
        .await
        .expect("the page plays the pipeline's stream");
    assert_eq!(summary["videoWidth"], 96, "{summary}");
    assert_eq!(summary["videoHeight"], 64, "{summary}");
    server.shutdown().await.unwrap();
}
