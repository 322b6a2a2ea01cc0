//! `cargo xtask bench latency` and `cargo xtask bench load`: the release mock-server in its own
//! process, driven over loopback by protocol clients in this one.

use anyhow::{Context, anyhow, bail};
use fv_testkit::{Client, Received, decode_fmp4};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Builds `packages` with `cargo build --release` and returns the directory their binaries
/// are in (`$CARGO_TARGET_DIR/release`, else `target/release`). Shared with `bench router`.
pub(crate) fn build_release(root: &Path, packages: &[&str]) -> anyhow::Result<PathBuf> {
    let mut args = vec!["build", "--release", "--quiet"];
    for p in packages {
        args.extend(["-p", p]);
    }
    let what = packages.join(" and ");
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(root)
        .status()
        .with_context(|| format!("building {what}"))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release"))
}

/// A server binary (mock-server, stream-router) in its own process, started with
/// `--config <temp yaml> --port 0`; its first stdout line, `listening on http://ADDR/`, gives
/// the address. Killed on drop. Shared with `bench router`.
pub(crate) struct Listening {
    child: Child,
    pub(crate) addr: SocketAddr,
    _config: tempfile::NamedTempFile,
}

impl Listening {
    pub(crate) fn start(binary: &Path, yaml: &str) -> anyhow::Result<Self> {
        let mut config = tempfile::Builder::new().suffix(".yaml").tempfile()?;
        config.write_all(yaml.as_bytes())?;
        let mut child = Command::new(binary)
            .arg("--config")
            .arg(config.path())
            .args(["--port", "0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .and_then(|s| s.trim_end_matches('/').parse().ok())
            .ok_or_else(|| anyhow!("unexpected output from {}: {line:?}", binary.display()))?;
        Ok(Self {
            child,
            addr,
            _config: config,
        })
    }

    /// Peak resident set size of the process so far (VmHWM), in MiB.
    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM in /proc status"))?;
        Ok(kb / 1024.0)
    }

    fn url(&self) -> String {
        format!("ws://{}/v1/stream", self.addr)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The release mock-server, built first, running `yaml`.
fn start_mock_server(root: &Path, yaml: &str) -> anyhow::Result<Listening> {
    let release = build_release(root, &["mock-server"])?;
    Listening::start(&release.join("mock-server"), yaml)
}

fn config_yaml(width: u32, height: u32, frames: u32, sessions: usize, workers: usize) -> String {
    format!(
        "generator:\n  model_path: mock\n\
         server:\n  host: 127.0.0.1\n  port: 0\n\
         default_request:\n  sampling:\n    width: {width}\n    height: {height}\n    num_frames: {frames}\n    fps: 24\n    num_inference_steps: 1\n\
         streaming:\n  session_timeout_seconds: 600\n  generation_segment_cap: 1000\n  max_sessions: {sessions}\n  max_sessions_per_ip: {sessions}\n  max_queue: {sessions}\n  warmup:\n    enabled: false\n  pool:\n    num_workers: {workers}\n"
    )
}

/// Timings of one segment as a client sees them.
#[derive(Debug, Clone, Copy)]
struct SegmentTiming {
    first_byte_ms: f64,
    last_byte_ms: f64,
    frames: usize,
}

/// Requests a segment and reads it through `ltx2_segment_complete`, checking order and media.
async fn timed_segment(
    client: &mut Client,
    idx: u32,
    expect_frames: usize,
) -> anyhow::Result<SegmentTiming> {
    let start = Instant::now();
    client
        .send_json(&json!({"type": "segment_prompt_source", "prompt": format!("bench {idx}")}))
        .await?;
    let mut first_byte = None;
    let mut last_byte = 0.0;
    let mut media = Vec::new();
    loop {
        match client.recv_within(Duration::from_secs(120)).await? {
            Received::Binary(b) => {
                let t = start.elapsed().as_secs_f64() * 1000.0;
                first_byte.get_or_insert(t);
                last_byte = t;
                media.extend_from_slice(&b);
            }
            Received::Json(m) => {
                if m["type"] == "error" {
                    bail!("segment {idx} failed: {m}");
                }
                if let Some(seen) = m.get("segment_idx").and_then(|v| v.as_u64())
                    && seen != u64::from(idx)
                {
                    bail!("out of order: expected segment {idx}, got {m}");
                }
                if m["type"] == "ltx2_segment_complete" {
                    break;
                }
            }
            other => bail!("connection ended mid-segment {idx}: {other:?}"),
        }
    }
    let decoded = decode_fmp4(&media_boxes_only(&media)?)?;
    if decoded.frames != expect_frames {
        bail!(
            "segment {idx} decoded to {} frames, expected {expect_frames}",
            decoded.frames
        );
    }
    Ok(SegmentTiming {
        first_byte_ms: first_byte.ok_or_else(|| anyhow!("segment {idx} had no media"))?,
        last_byte_ms: last_byte,
        frames: decoded.frames,
    })
}

/// Drops top-level boxes a fragmented stream may carry besides the media (upstream's ffmpeg adds
/// an `mfra` index), so both servers' output goes through the same decoder.
fn media_boxes_only(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    for b in fv_encoder::inspect::top_level(data)? {
        if matches!(b.kind.as_str(), "ftyp" | "moov" | "moof" | "mdat") {
            out.extend_from_slice(&data[b.offset..b.offset + b.size]);
        }
    }
    Ok(out)
}

/// The `p`th percentile (nearest rank) of sorted values; NaN when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// FastVideo's Python mock server (`python -m fastvideo.entrypoints.streaming.mock_server`),
/// for a same-run comparison. Killed on drop.
struct PythonMock {
    child: Child,
    url: String,
}

impl PythonMock {
    fn start(python: &Path) -> anyhow::Result<Self> {
        // Pick a free port: the upstream CLI has no port 0 report.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "fastvideo.entrypoints.streaming.mock_server",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting FastVideo's mock server")?;
        let mut mock = Self {
            child,
            url: format!("ws://127.0.0.1:{port}/v1/stream"),
        };
        for _ in 0..600 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(mock);
            }
            if let Some(status) = mock.child.try_wait()? {
                bail!("FastVideo's mock server exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = mock.child.kill();
        bail!("FastVideo's mock server did not listen within 60 s")
    }
}

impl Drop for PythonMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `segments` segments, opening a new session whenever `cap` segments were served (the
/// upstream mock ends a session after 6 and serves one session at a time).
async fn run_segments(
    url: &str,
    segments: u32,
    cap: u32,
    frames: usize,
) -> anyhow::Result<Vec<SegmentTiming>> {
    let mut out = Vec::new();
    while (out.len() as u32) < segments {
        let mut c = Client::connect(url).await?;
        c.init().await?;
        let in_session = cap.min(segments - out.len() as u32);
        for i in 0..in_session {
            out.push(timed_segment(&mut c, i, frames).await?);
        }
        drop(c);
        // Upstream frees its single slot only after the handler returns.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(out)
}

fn print_row(label: &str, timings: &[SegmentTiming]) -> (f64, f64) {
    let first = sorted(timings.iter().map(|t| t.first_byte_ms).collect());
    let last = sorted(timings.iter().map(|t| t.last_byte_ms).collect());
    println!(
        "{:>28} {:>5} {:>10.1}ms {:>10.1}ms {:>10.1}ms {:>10.1}ms",
        label,
        timings.len(),
        percentile(&first, 50.0),
        percentile(&first, 99.0),
        percentile(&last, 50.0),
        percentile(&last, 99.0)
    );
    (percentile(&first, 50.0), percentile(&last, 50.0))
}

/// Segment latency of the mock server at 256x256 and 1024x576, one session at a time, and of
/// FastVideo's own mock at 256x256 when `--python PATH` is given.
pub fn latency(root: &Path, args: &[&str]) -> anyhow::Result<()> {
    let quick = args.contains(&"--quick");
    let python = args
        .iter()
        .position(|a| *a == "--python")
        .map(|i| {
            args.get(i + 1)
                .map(PathBuf::from)
                .ok_or_else(|| anyhow!("--python needs a path"))
        })
        .transpose()?;
    let segments = if quick { 6 } else { 30 };
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "segment latency: segment_prompt_source -> first / last media byte (24 frames, 1 step,"
    );
    println!("no simulated generation time: server + encoder overhead), one session at a time");
    println!(
        "{:>28} {:>5} {:>12} {:>12} {:>12} {:>12}",
        "server", "segs", "first p50", "first p99", "last p50", "last p99"
    );
    let mut ours_256 = None;
    for (w, h) in [(256u32, 256u32), (1024, 576)] {
        let server = start_mock_server(root, &config_yaml(w, h, 24, 4, 1))?;
        let timings = rt.block_on(run_segments(&server.url(), segments, 1000, 24))?;
        let row = print_row(&format!("fv-stream mock {w}x{h}"), &timings);
        if w == 256 {
            ours_256 = Some(row);
        }
    }
    if let Some(python) = python {
        let mock = PythonMock::start(&python)?;
        // The upstream mock's media carries x264 output; decode checks stay on.
        let timings = rt.block_on(run_segments(&mock.url, segments, 6, 24))?;
        let (first, last) = print_row("FastVideo mock 256x256", &timings);
        if let Some((our_first, our_last)) = ours_256 {
            println!(
                "  FastVideo / fv-stream at 256x256: first byte {:.1}x, last byte {:.1}x slower",
                first / our_first,
                last / our_last
            );
        }
    }
    Ok(())
}

/// `sessions` concurrent sessions x `per_session` segments at 256x256: every segment must
/// arrive complete, in order, and decode to its 24 frames.
pub fn load(root: &Path, sessions: usize, per_session: u32) -> anyhow::Result<()> {
    let server = start_mock_server(root, &config_yaml(256, 256, 24, sessions, sessions))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let url = server.url();
    let started = Instant::now();
    let results: Vec<anyhow::Result<Vec<SegmentTiming>>> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..sessions {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = Client::connect(&url).await?;
                c.init().await?;
                let mut out = Vec::new();
                for i in 0..per_session {
                    out.push(timed_segment(&mut c, i, 24).await?);
                }
                anyhow::Ok(out)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(
                t.await
                    .map_err(|e| anyhow!("client task: {e}"))
                    .and_then(|r| r),
            );
        }
        out
    });
    let wall = started.elapsed();
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    let mut frames = 0usize;
    for r in results {
        match r {
            Ok(t) => {
                frames += t.iter().map(|s| s.frames).sum::<usize>();
                latencies.extend(t.iter().map(|s| s.last_byte_ms));
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    let lat = sorted(latencies);
    let expected = sessions * per_session as usize;
    println!(
        "load: {sessions} concurrent sessions x {per_session} segments at 256x256, 24 frames each"
    );
    println!(
        "  segments ok {}/{expected}, frames decoded {frames}, failures {}",
        lat.len(),
        failures.len()
    );
    println!(
        "  segment latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; wall {:.2} s; server peak RSS {:.1} MiB",
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
        wall.as_secs_f64(),
        server.peak_rss_mib()?
    );
    if let Some(first) = failures.first() {
        bail!("{} sessions failed; first: {first}", failures.len());
    }
    if lat.len() != expected {
        bail!("lost segments: {} of {expected} arrived", lat.len());
    }
    Ok(())
}
