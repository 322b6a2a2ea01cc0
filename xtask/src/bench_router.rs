//! `cargo xtask bench router`: what the router adds to a session, next to nginx as a WebSocket
//! reverse proxy, in the same run on loopback.
//!
//! * Latency: `snapshot_state` → `error` round trips against a release mock-server (its reply
//!   needs no generation), directly, through stream-router (release, its own process) and
//!   through nginx; p50/p99 and what each proxy adds over the direct path.
//! * Throughput: a scripted replica (in this process) blasts large binary frames; MB/s
//!   received by the client over each path.
//!
//! `FV_BENCH_ROUTER_BIN=path` runs another router build in the router's place (same CLI:
//! `--config`, `--port`, `listening on ...` first on stdout), to compare designs.
//!
//! Paths take turns (one round trip each, then throughput runs in rotation) so machine noise
//! hits all three alike.

use crate::bench_server::{Listening, build_release, percentile};
use anyhow::{Context, anyhow, bail};
use fv_testkit::router::ScriptedReplica;
use fv_testkit::{Client, Received};
use serde_json::json;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Benchmark sizes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Round trips per path.
    pub round_trips: usize,
    /// Binary frames per throughput run.
    pub frames: usize,
    /// Bytes per binary frame.
    pub frame_bytes: usize,
    /// Throughput runs per path (the median is reported).
    pub runs: usize,
}

impl Options {
    pub fn full() -> Self {
        Self {
            round_trips: 2000,
            frames: 256,
            frame_bytes: 1024 * 1024,
            runs: 5,
        }
    }

    pub fn quick() -> Self {
        Self {
            round_trips: 300,
            frames: 64,
            frame_bytes: 1024 * 1024,
            runs: 3,
        }
    }
}

/// nginx as a WebSocket reverse proxy to `backend`, from a config written to a temp dir.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(backend: SocketAddr) -> anyhow::Result<Self> {
        let nginx = which("nginx").ok_or_else(|| {
            anyhow!("nginx not found; install it first: sudo apt-get install -y nginx")
        })?;
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let d = dir.path().display();
        let conf = format!(
            "worker_processes auto;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 location / {{\n\
                   proxy_pass http://{backend};\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Upgrade $http_upgrade;\n\
                   proxy_set_header Connection $connection_upgrade;\n\
                   proxy_set_header Host $host;\n\
                   proxy_read_timeout 3600s;\n\
                   proxy_send_timeout 3600s;\n\
                   proxy_buffering off;\n\
                   tcp_nodelay on;\n\
                 }}\n\
               }}\n\
             }}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting nginx")?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut nginx = Self { child, addr, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = nginx.child.try_wait()? {
                let log =
                    std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
                bail!("nginx exited with {status}: {log}");
            }
            if Instant::now() > deadline {
                bail!("nginx did not start listening on {addr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }

    fn version() -> String {
        Command::new("nginx")
            .arg("-v")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
            .unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master take its workers down with it (SIGKILL would orphan them).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn router_yaml(backend: SocketAddr) -> String {
    format!(
        "router:\n  host: 127.0.0.1\n  port: 0\n  replicas:\n    - url: http://{backend}\n      name: bench\n  health_check:\n    interval_seconds: 0.5\n    timeout_seconds: 2.0\n"
    )
}

const MOCK_YAML: &str = "generator:\n  model_path: mock\nserver:\n  host: 127.0.0.1\n  port: 0\nstreaming:\n  session_timeout_seconds: 600\n  max_sessions: 8\n  pool:\n    num_workers: 4\n  warmup:\n    enabled: false\n";

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((200, _)) = fv_testkit::http_get(addr, "/readyz").await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("router at {addr} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `count` snapshot_state round trips on an initialized session, in milliseconds.
async fn round_trips(client: &mut Client, count: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        client.send_json(&json!({"type": "snapshot_state"})).await?;
        let reply = client.recv_json().await?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
        if reply["type"] != "error" && reply["type"] != "continuation_state_snapshot" {
            bail!("unexpected reply to snapshot_state: {reply}");
        }
    }
    Ok(out)
}

/// One blast of `frames` x `bytes` through `url`; MB/s (10^6 bytes) as the client sees it.
async fn blast(url: &str, frames: usize, bytes: usize) -> anyhow::Result<f64> {
    let mut c = Client::connect(url).await?;
    c.init().await?;
    let start = Instant::now();
    c.send_json(
        &json!({"type": "segment_prompt_source", "prompt": format!("blast {frames} {bytes}")}),
    )
    .await?;
    let mut got = 0usize;
    loop {
        match c.recv_within(Duration::from_secs(120)).await? {
            Received::Binary(b) => got += b.len(),
            Received::Json(m) if m["type"] == "ltx2_segment_complete" => break,
            Received::Json(_) => {}
            other => bail!("blast ended early: {other:?}"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if got != frames * bytes {
        bail!("received {got} bytes, expected {}", frames * bytes);
    }
    c.close(1000, "").await?;
    Ok(got as f64 / secs / 1e6)
}

struct Path3 {
    name: &'static str,
    url: String,
}

pub fn run(root: &Path, opts: Options) -> anyhow::Result<()> {
    let bin = build_release(root, &["mock-server", "stream-router"])?;
    // Another router build to compare against (same CLI: --config, --port, "listening on").
    let router_bin = std::env::var_os("FV_BENCH_ROUTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin.join("stream-router"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "router bench on loopback: stream-router (release, own process) vs {} (worker_processes auto)",
        Nginx::version()
    );

    // --- latency: mock-server replica -----------------------------------------------------
    let mock = Listening::start(&bin.join("mock-server"), MOCK_YAML)?;
    let router = Listening::start(&router_bin, &router_yaml(mock.addr))?;
    let nginx = Nginx::start(mock.addr)?;
    rt.block_on(wait_ready(router.addr))?;
    let paths = [
        Path3 {
            name: "direct",
            url: format!("ws://{}/v1/stream", mock.addr),
        },
        Path3 {
            name: "router",
            url: format!("ws://{}/v1/stream", router.addr),
        },
        Path3 {
            name: "nginx",
            url: format!("ws://{}/v1/stream", nginx.addr),
        },
    ];
    // One round trip per path in turn, so load from elsewhere on the machine hits the three
    // paths alike.
    let rounds = opts.round_trips;
    let per_round = 1;
    let samples: Vec<Vec<f64>> = rt.block_on(async {
        let mut clients = Vec::new();
        for p in &paths {
            let mut c = Client::connect(&p.url)
                .await
                .with_context(|| format!("connecting {}", p.name))?;
            c.init().await?;
            // Warm-up: connection buffers, branch predictors, nginx's worker.
            round_trips(&mut c, 100).await?;
            clients.push(c);
        }
        let mut samples = vec![Vec::new(); paths.len()];
        let n = clients.len();
        for round in 0..rounds {
            // The order rotates too, so no path always follows the same one.
            for k in 0..n {
                let i = (round + k) % n;
                samples[i].extend(round_trips(&mut clients[i], per_round).await?);
            }
        }
        anyhow::Ok(samples)
    })?;
    println!(
        "\nlatency: snapshot_state -> error round trip, {} per path, paths taking turns",
        per_round * rounds
    );
    println!(
        "{:>8} {:>10} {:>10} {:>12} {:>12}",
        "path", "p50", "p99", "added p50", "added p99"
    );
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for (p, s) in paths.iter().zip(samples) {
        let mut s = s;
        s.sort_by(f64::total_cmp);
        p50.push(percentile(&s, 50.0));
        p99.push(percentile(&s, 99.0));
        let i = p50.len() - 1;
        let (a50, a99) = if i == 0 {
            (String::new(), String::new())
        } else {
            (
                format!("{:+.1} us", (p50[i] - p50[0]) * 1000.0),
                format!("{:+.1} us", (p99[i] - p99[0]) * 1000.0),
            )
        };
        println!(
            "{:>8} {:>7.1} us {:>7.1} us {:>12} {:>12}",
            p.name,
            p50[i] * 1000.0,
            p99[i] * 1000.0,
            a50,
            a99
        );
    }
    let router_added = p50[1] - p50[0];
    let nginx_added = p50[2] - p50[0];
    let ratio = router_added / nginx_added;
    println!(
        "router added p50 / nginx added p50 = {ratio:.2} (target <= 1.00: {})",
        if router_added <= nginx_added {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(nginx);
    drop(router);
    drop(mock);

    // --- throughput: scripted blast replica ------------------------------------------------
    let replica = rt.block_on(ScriptedReplica::start(0))?;
    let router = Listening::start(&router_bin, &router_yaml(replica.addr))?;
    let nginx = Nginx::start(replica.addr)?;
    rt.block_on(wait_ready(router.addr))?;
    let urls = [
        ("direct", format!("ws://{}/v1/stream", replica.addr)),
        ("router", format!("ws://{}/v1/stream", router.addr)),
        ("nginx", format!("ws://{}/v1/stream", nginx.addr)),
    ];
    let mb = (opts.frames * opts.frame_bytes) as f64 / 1e6;
    let rates: Vec<Vec<f64>> = rt.block_on(async {
        let mut rates = vec![Vec::new(); urls.len()];
        // One unmeasured run per path first.
        for (_, url) in &urls {
            blast(url, opts.frames.min(16), opts.frame_bytes).await?;
        }
        for _ in 0..opts.runs {
            for ((_, url), r) in urls.iter().zip(rates.iter_mut()) {
                r.push(blast(url, opts.frames, opts.frame_bytes).await?);
            }
        }
        anyhow::Ok(rates)
    })?;
    println!(
        "\nthroughput: {} binary frames of {} bytes ({mb:.0} MB) per run, median of {} runs",
        opts.frames, opts.frame_bytes, opts.runs
    );
    let mut medians = Vec::new();
    for ((name, _), r) in urls.iter().zip(rates) {
        let mut r = r;
        r.sort_by(f64::total_cmp);
        let m = percentile(&r, 50.0);
        medians.push(m);
        println!(
            "{name:>8} {m:>9.0} MB/s   (runs: {})",
            r.iter()
                .map(|v| format!("{v:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let tput = medians[1] / medians[2];
    println!(
        "router / nginx throughput = {tput:.2} (target >= 0.90: {}); router / direct = {:.2}",
        if tput >= 0.9 { "met" } else { "MISSED" },
        medians[1] / medians[0]
    );
    Ok(())
}
