//! `streaming.pool.mode: subprocess` with the real binary: worker processes (`streaming-server
//! worker`) load the tiny LTX-2 model themselves and stream its segments; workers that cannot
//! load the model are excluded and reported, never ready; SIGTERM stops every worker.

use fv_testkit::{ChildGuard, Client, decode_fmp4};
use serde_json::Value;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_streaming-server");
/// Upper bound for anything waited on (a guard against hangs, never a timing assertion).
const GUARD: Duration = Duration::from_secs(120);

struct Server {
    child: ChildGuard,
    addr: SocketAddr,
    marker: String,
    _dir: tempfile::TempDir,
}

/// The binary on `model` with a subprocess pool of `workers`, 64x96, 9 frames, 2 steps.
fn start(model: &str, workers: u32, dir: tempfile::TempDir) -> anyhow::Result<Server> {
    let config = dir.path().join("serve.yaml");
    std::fs::write(
        &config,
        format!(
            "generator:\n  model_path: {model}\nserver:\n  host: 127.0.0.1\n  port: 0\n\
             default_request:\n  sampling:\n    width: 64\n    height: 96\n    num_frames: 9\n    \
             num_inference_steps: 2\n\
             streaming:\n  warmup:\n    enabled: true\n    prompt: warm\n    timeout_seconds: 600\n  \
             shutdown_grace_seconds: 5\n  pool:\n    mode: subprocess\n    num_workers: {workers}\n"
        ),
    )?;
    let marker = format!("fv-ss-workers-{}-{}", std::process::id(), workers);
    let (child, addr) = fv_testkit::spawn_listening(
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("FV_TEST_MARKER", &marker)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null()),
    )?;
    Ok(Server {
        child,
        addr,
        marker,
        _dir: dir,
    })
}

impl Server {
    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let (code, body) = fv_testkit::http_get(self.addr, path).await?;
        Ok((code, serde_json::from_str(&body)?))
    }

    /// Polls `/readyz` until its `status` is not `warming`.
    async fn settled(&self) -> anyhow::Result<(u16, Value)> {
        let deadline = Instant::now() + GUARD;
        loop {
            let (code, body) = self.get("/readyz").await?;
            if body["status"] != "warming" {
                return Ok((code, body));
            }
            anyhow::ensure!(Instant::now() < deadline, "still warming: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the server and every worker to be gone.
    async fn terminate(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill failed");
        let deadline = Instant::now() + GUARD;
        while self.child.try_wait()?.is_none()
            || !fv_testkit::processes_with_env("FV_TEST_MARKER", &self.marker).is_empty()
        {
            anyhow::ensure!(Instant::now() < deadline, "server or workers still running");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_processes_load_the_model_and_stream_its_segments() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let model = dir.path().join("model");
    fv_inference::tiny::write_random_model(&model)?;
    let server = start(&model.display().to_string(), 1, dir)?;
    let (code, ready) = server.settled().await?;
    assert_eq!((code, &ready["status"]), (200, &"ready".into()), "{ready}");
    let (_, status) = server.get("/status").await?;
    let w = &status["gpu_status"]["0"];
    assert_eq!(
        (&w["state"], &w["warmup_success"]),
        (&"ready".into(), &true.into()),
        "{w}"
    );
    let pid = w["pid"].as_u64().unwrap_or(0) as u32;
    assert!(
        fv_testkit::processes_with_env("FV_TEST_MARKER", &server.marker).contains(&pid),
        "the worker is a live process carrying the server's environment: {w}"
    );

    let mut client = Client::connect(&format!("ws://{}/v1/stream", server.addr)).await?;
    client.init().await?;
    let segment = client.segment("a lighthouse at dusk").await?;
    let steps = segment
        .messages
        .iter()
        .filter(|m| m["type"] == "step_complete")
        .count();
    assert_eq!(steps, 2, "{:?}", segment.order);
    let decoded = decode_fmp4(&segment.media())?;
    assert_eq!((decoded.frames, decoded.width, decoded.height), (9, 64, 96));
    drop(client);
    server.terminate().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_that_cannot_load_the_model_are_reported_and_never_ready() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-model").display().to_string();
    let server = start(&missing, 2, dir)?;
    let (code, ready) = server.settled().await?;
    assert_eq!(code, 503, "{ready}");
    assert_eq!(ready["status"], "warmup_failed", "{ready}");
    assert_eq!(
        (&ready["ready_gpu_workers"], &ready["warmup_failed_gpus"]),
        (&0.into(), &2.into()),
        "{ready}"
    );
    let (_, status) = server.get("/status").await?;
    for id in ["0", "1"] {
        let w = &status["gpu_status"][id];
        assert_eq!(
            (
                &w["ready"],
                &w["state"],
                &w["process_alive"],
                &w["warmup_success"]
            ),
            (
                &false.into(),
                &"failed".into(),
                &false.into(),
                &false.into()
            ),
            "{w}"
        );
        let error = w["warmup_error"].as_str().unwrap_or_default();
        assert!(
            error.contains("failed to boot") && error.contains("loading the model from"),
            "{error}"
        );
    }
    // Nothing was left running for the failed workers.
    assert_eq!(
        fv_testkit::processes_with_env("FV_TEST_MARKER", &server.marker),
        [server.child.id()]
    );
    server.terminate().await
}
