//! End-to-end: the player page served at `/` plays the mock stream in headless Chromium.
//!
//! Starts the real server in-process on 127.0.0.1:0 and plays its page with
//! `fv_testkit::browser` (headless Chromium through `tests/browser/play.mjs`).
//! `FV_SCREENSHOT=/tmp/player.png` keeps a screenshot of the page.

use fv_testkit::{TestServer, browser, test_config};
use std::time::Duration;

/// Stream size the page must report back as the decoded video size.
const WIDTH: u32 = 256;
const HEIGHT: u32 = 144;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_page_plays_the_stream_in_headless_chromium() {
    if !browser::available() {
        return;
    }
    let mut config = test_config();
    let sampling = &mut config.default_request.sampling;
    sampling.width = WIDTH;
    sampling.height = HEIGHT;
    // One second of video per segment: two segments are needed before playback passes 1 s.
    sampling.fps = 24;
    sampling.num_frames = 24;
    config.streaming.fragment_frames = 8;
    // A little generation time so the page sees real gaps between segments.
    let server = TestServer::start_mock(config, Duration::from_millis(200))
        .await
        .expect("start the mock server");

    // play.mjs checks playback; the summary ties it back to this config.
    let summary = browser::play(server.addr)
        .await
        .expect("the page plays the stream");
    assert_eq!(summary["videoWidth"], WIDTH, "{summary}");
    assert_eq!(summary["videoHeight"], HEIGHT, "{summary}");
    server.shutdown().await.expect("clean shutdown");
}
