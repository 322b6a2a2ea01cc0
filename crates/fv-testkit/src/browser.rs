//! Headless Chromium against a server: `tests/browser/play.mjs` plays the player page;
//! `tests/browser/dreamverse.mjs` speaks `/ws` with the Dreamverse web app's media handling.
//! play.mjs
//! (playwright-core driving `/usr/bin/chromium`) opens the page with three auto-sent prompts,
//! waits until two segments have completed and playback passed one second, and prints a
//! JSON summary. Needs Chromium, node and `npm ci` in `tests/browser` (`.ci/run` installs
//! them): without them a test is skipped locally and fails under `CI`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The browser binary play.mjs drives.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Bound on the whole node run; play.mjs has its own 60 s bound on waiting for playback, the
/// rest is browser start-up on a loaded machine.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(150);

/// The workspace root (where `tests/browser` lives).
pub fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

/// Names every missing prerequisite; empty when the browser can run.
pub fn missing_prerequisites() -> Vec<String> {
    let root = repo_root();
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

/// Whether a browser test can run here. Missing prerequisites skip it (with a loud line on
/// stderr) locally and fail it under `CI`, where `.ci/run` must have installed them.
pub fn available() -> bool {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        return true;
    }
    let list = missing.join(", ");
    assert!(
        std::env::var_os("CI").is_none(),
        "browser e2e prerequisites missing under CI: {list}; .ci/run must install them"
    );
    eprintln!("\n*** SKIPPED: browser e2e test; missing {list} ***\n");
    false
}

/// Runs play.mjs against the server at `http://{addr}` and returns its JSON summary after
/// checking what every caller needs: the run succeeded, `ok` is true, at least two segments
/// completed, and there were no MSE or page errors.
pub async fn play(addr: std::net::SocketAddr) -> anyhow::Result<serde_json::Value> {
    let summary = run_script("tests/browser/play.mjs", addr).await?;
    let complete = summary["segmentsComplete"].as_u64().unwrap_or(0);
    if summary["ok"] != true
        || complete < 2
        || summary["mseErrors"] != serde_json::json!([])
        || summary["errors"] != serde_json::json!([])
    {
        bail!("playback did not pass: {summary}");
    }
    Ok(summary)
}

/// Runs `tests/browser/dreamverse.mjs` (the `/ws` product protocol with the Dreamverse web
/// app's media handling) against `http://{addr}` and returns its summary; the script itself
/// fails on MSE or server errors, playback not passing 1 s, or no decoded audio.
pub async fn dreamverse(addr: std::net::SocketAddr) -> anyhow::Result<serde_json::Value> {
    run_script("tests/browser/dreamverse.mjs", addr).await
}

/// Runs a node script of `tests/browser` with `http://{addr}` and parses its JSON stdout.
async fn run_script(script: &str, addr: std::net::SocketAddr) -> anyhow::Result<serde_json::Value> {
    let run = tokio::process::Command::new("node")
        .arg(script)
        .arg(format!("http://{addr}"))
        .current_dir(repo_root())
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(NODE_TIMEOUT, run)
        .await
        .with_context(|| format!("{script} did not finish within NODE_TIMEOUT"))?
        .context("spawn node")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{script} failed ({}):\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}",
            output.status
        );
    }
    serde_json::from_str(&stdout).with_context(|| format!("{script} prints a JSON summary"))
}
