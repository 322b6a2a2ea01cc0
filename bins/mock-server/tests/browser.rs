//! End-to-end: the player page served at `/` plays the mock stream in headless Chromium.
//!
//! Starts the real server in-process on 127.0.0.1:0 and runs `tests/browser/play.mjs`
//! (playwright-core driving `/usr/bin/chromium`), which opens the page with three auto-sent
//! prompts and checks MSE playback. Needs Chromium, node and `npm ci` in `tests/browser`:
//! without them the test is skipped locally and fails under `CI`.
//! `FV_SCREENSHOT=/tmp/player.png` keeps a screenshot of the page.

use fv_testkit::{TestServer, test_config};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on the whole node run; play.mjs has its own 60 s bound on waiting for playback, the
/// rest is browser start-up on a loaded machine.
const NODE_TIMEOUT: Duration = Duration::from_secs(150);
/// Stream size the page must report back as the decoded video size.
const WIDTH: u32 = 256;
const HEIGHT: u32 = 144;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Names every missing prerequisite; empty when the test can run.
fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install chromium)"));
    }
    let node_ok = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        missing.push("node on PATH (apt-get install nodejs)".into());
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing
            .push("tests/browser/node_modules/playwright-core (cd tests/browser && npm ci)".into());
    }
    missing
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_page_plays_the_stream_in_headless_chromium() {
    let root = repo_root();
    let missing = missing_prerequisites(&root);
    if !missing.is_empty() {
        let list = missing.join(", ");
        if std::env::var_os("CI").is_some() {
            panic!("browser e2e prerequisites missing under CI: {list}; .ci/run must install them");
        }
        eprintln!("\n*** SKIPPED: browser e2e test; missing {list} ***\n");
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

    let run = tokio::process::Command::new("node")
        .arg("tests/browser/play.mjs")
        .arg(format!("http://{}", server.addr))
        .current_dir(&root)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(NODE_TIMEOUT, run)
        .await
        .expect("play.mjs did not finish within NODE_TIMEOUT")
        .expect("spawn node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "play.mjs failed ({}):\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
        output.status
    );

    // play.mjs already checked these; re-check the parts that tie back to this config.
    let summary: serde_json::Value =
        serde_json::from_str(&stdout).expect("play.mjs prints a JSON summary");
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(summary["videoWidth"], WIDTH, "{summary}");
    assert_eq!(summary["videoHeight"], HEIGHT, "{summary}");
    assert!(
        summary["segmentsComplete"].as_u64().is_some_and(|n| n >= 2),
        "{summary}"
    );
    assert_eq!(summary["mseErrors"], serde_json::json!([]), "{summary}");
    assert_eq!(summary["errors"], serde_json::json!([]), "{summary}");
    server.shutdown().await.expect("clean shutdown");
}
