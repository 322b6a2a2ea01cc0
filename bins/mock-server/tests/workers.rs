//! The mock-server binary with `streaming.pool.mode: subprocess`: real worker processes (the
//! binary re-executed with `worker`). kill -9 of a worker mid-segment reaches only its own
//! session, as a retryable `worker_failed`, and the worker comes back; SIGKILL of the server
//! leaves no worker behind, even a stopped one. Processes are found by a marker in their
//! environment.

use fv_testkit::{ChildGuard, Client, Received};
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mock-server");
/// Upper bound for anything waited on (a guard against hangs, never a timing assertion).
const GUARD: Duration = Duration::from_secs(20);

struct Server {
    child: ChildGuard,
    addr: SocketAddr,
    marker: String,
    _config: tempfile::NamedTempFile,
}

/// Starts the binary with a subprocess pool of two mock workers, 4 steps of `step_ms` each.
fn start(step_ms: u64) -> anyhow::Result<Server> {
    let mut config = tempfile::Builder::new().suffix(".yaml").tempfile()?;
    write!(
        config,
        "generator:\n  model_path: mock\nserver:\n  host: 127.0.0.1\n  port: 0\n\
         default_request:\n  sampling:\n    width: 64\n    height: 64\n    num_frames: 8\n    \
         num_inference_steps: 4\n\
         streaming:\n  warmup:\n    enabled: false\n  fragment_frames: 4\n  shutdown_grace_seconds: 2\n  \
         pool:\n    mode: subprocess\n    num_workers: 2\n    restart_backoff_ms: 50\n"
    )?;
    static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let marker = format!(
        "fv-workers-test-{}-{}-{}",
        std::process::id(),
        STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    let (child, addr) = fv_testkit::spawn_listening(
        Command::new(BIN)
            .arg("--config")
            .arg(config.path())
            .args(["--sleep-ms", &(step_ms * 4).to_string()])
            .env("FV_TEST_MARKER", &marker)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null()),
    )?;
    Ok(Server {
        child,
        addr,
        marker,
        _config: config,
    })
}

impl Server {
    async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let (code, body) = fv_testkit::http_get(self.addr, path).await?;
        Ok((code, serde_json::from_str(&body)?))
    }

    async fn until_ready(&self) -> anyhow::Result<Value> {
        let deadline = Instant::now() + GUARD;
        loop {
            let (code, body) = self.get("/readyz").await?;
            if code == 200 {
                return Ok(body);
            }
            anyhow::ensure!(Instant::now() < deadline, "never ready: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn worker(&self, id: u64) -> anyhow::Result<Value> {
        Ok(self.get("/status").await?.1["gpu_status"][id.to_string()].clone())
    }

    async fn connect(&self) -> anyhow::Result<(Client, u64)> {
        let mut c = Client::connect(&format!("ws://{}/v1/stream", self.addr)).await?;
        let seen = c.init().await?;
        let worker = seen
            .iter()
            .find(|m| m["type"] == "gpu_assigned")
            .and_then(|m| m["gpu_id"].as_u64())
            .ok_or_else(|| anyhow::anyhow!("no gpu_assigned in {seen:?}"))?;
        Ok((c, worker))
    }
}

/// Live processes with this test's marker.
fn marked_processes(marker: &str) -> Vec<u32> {
    fv_testkit::processes_with_env("FV_TEST_MARKER", marker)
}

fn kill(pid: u64, signal: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
    Ok(())
}

/// The next `error` frame, skipping step and media messages.
async fn next_error(c: &mut Client) -> anyhow::Result<Value> {
    loop {
        match c.recv().await? {
            Received::Json(v) if v["type"] == "error" => return Ok(v),
            Received::Json(_) | Received::Binary(_) => {}
            other => anyhow::bail!("connection ended before an error: {other:?}"),
        }
    }
}

async fn wait_until_gone(marker: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + GUARD;
    loop {
        let left = marked_processes(marker);
        if left.is_empty() {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "processes left behind: {left:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_worker_mid_segment_fails_only_its_session_and_the_worker_comes_back()
-> anyhow::Result<()> {
    let mut server = start(150)?;
    let ready = server.until_ready().await?;
    assert_eq!(ready["ready_gpu_workers"], 2, "{ready}");
    assert_eq!(
        marked_processes(&server.marker).len(),
        3,
        "server + 2 workers"
    );

    let (mut a, a_worker) = server.connect().await?;
    let (mut b, b_worker) = server.connect().await?;
    assert_ne!(a_worker, b_worker);
    let victim = server.worker(a_worker).await?["pid"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("worker {a_worker} has no pid"))?;
    a.send_json(&serde_json::json!({"type": "segment_prompt_source", "prompt": "a"}))
        .await?;
    b.send_json(&serde_json::json!({"type": "segment_prompt_source", "prompt": "b"}))
        .await?;
    a.recv_until("step_complete").await?;
    kill(victim, "-KILL")?;

    let err = next_error(&mut a).await?;
    assert_eq!(err["code"], "worker_failed", "{err}");
    assert_eq!(err["retryable"], true, "{err}");
    // The other session's segment is untouched.
    let b_segment = b.collect_segment().await?;
    assert_eq!(
        b_segment
            .find("ltx2_segment_complete")
            .map(|m| m["segment_idx"].clone()),
        Some(0.into())
    );

    // The same session's next segment runs on the restarted worker.
    let again = a.segment("a again").await?;
    assert!(again.find("ltx2_segment_complete").is_some());
    let w = server.worker(a_worker).await?;
    assert_eq!(w["state"], "ready", "{w}");
    assert_eq!(w["restarts"], 1, "{w}");
    assert_ne!(w["pid"], victim, "{w}");
    assert!(
        w["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("killed by signal 9")),
        "{w}"
    );

    drop((a, b));
    kill(u64::from(server.child.id()), "-TERM")?;
    let deadline = Instant::now() + GUARD;
    while server.child.try_wait()?.is_none() {
        anyhow::ensure!(Instant::now() < deadline, "server did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until_gone(&server.marker).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_server_mid_segment_leaves_no_worker_behind() -> anyhow::Result<()> {
    let mut server = start(500)?;
    server.until_ready().await?;
    let (mut a, _) = server.connect().await?;
    a.send_json(&serde_json::json!({"type": "segment_prompt_source", "prompt": "a"}))
        .await?;
    a.recv_until("step_complete").await?;
    let workers: Vec<u32> = marked_processes(&server.marker)
        .into_iter()
        .filter(|&p| p != server.child.id())
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    // A stopped worker cannot notice its socket closing: only the kernel's parent-death
    // signal (SIGKILL, which even a stopped process obeys) can take it down.
    kill(u64::from(workers[0]), "-STOP")?;

    kill(u64::from(server.child.id()), "-KILL")?;
    server.child.wait()?;
    wait_until_gone(&server.marker).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_every_worker_process() -> anyhow::Result<()> {
    let server = start(0)?;
    server.until_ready().await?;
    let (code, status) = server.get("/status").await?;
    assert_eq!(code, 200);
    let pids: Vec<u64> = (0..2)
        .map(|i| {
            let w = &status["gpu_status"][i.to_string()];
            assert_eq!(
                (
                    &w["state"],
                    &w["process_alive"],
                    &w["ready"],
                    &w["generator"]
                ),
                (&"ready".into(), &true.into(), &true.into(), &"mock".into()),
                "{w}"
            );
            w["pid"].as_u64().unwrap_or(0)
        })
        .collect();
    let mut marked: Vec<u64> = marked_processes(&server.marker)
        .into_iter()
        .map(u64::from)
        .filter(|&p| p != u64::from(server.child.id()))
        .collect();
    marked.sort_unstable();
    let mut pids = pids;
    pids.sort_unstable();
    assert_eq!(marked, pids, "/status names the worker processes");
    Ok(())
}
