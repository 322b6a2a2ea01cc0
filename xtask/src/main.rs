//! Project automation: `cargo xtask <command>`.
//!
//! Benchmarks must run optimised:
//! `cargo run --release -p xtask -- bench encoder [--quick] [--reps N] [--size WxH] [--frames N]`.

mod bench_aac;
mod bench_encoder;
mod bench_pool;
mod bench_router;
mod bench_server;
mod check_layers;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo run --release -p xtask -- <command>

commands:
  bench encoder [--quick] [--reps N] [--size WxH] [--frames N]
      openh264 + fMP4 (in-process, 1 thread) vs ffmpeg libx264 over a pipe, same frames:
      frames/s, CPU time, bytes and PSNR at 1024x576 and 1920x1088, 120 frames, 7 reps
      (--quick: 1024x576, 48 frames, 3 reps; --size/--frames override)
  bench aac [--quick] [--seconds N] [--reps N]
      our AAC-LC encoder (FDK, in-process, one thread) vs ffmpeg's aac (and libfdk_aac if
      present) over a pipe, same PCM: seconds of audio per CPU second, kbit/s, SNR after one
      shared decoder, ratios; and the silent track (frame repeat vs coding zeros).
      30 s clip, 5 reps (--quick: 8 s, 3 reps)
  bench latency [--quick] [--python PATH]
      (--python: a Python with the `fastvideo` package: also runs FastVideo's own mock server
      at 256x256 in the same run and prints the ratio)
      mock-server (release, own process): segment_prompt_source -> first/last media byte,
      p50/p99 at 256x256 and 1024x576
  bench load [--sessions N] [--segments N]
      N concurrent sessions (200) x N segments (3) at 256x256; every segment must arrive in
      order and decode to its 24 frames; p50/p99 latency and server peak RSS
  bench pool [--quick] [--reps N]
      how frames cross the worker-process boundary: one segment (121 frames) through a Unix
      socket vs shared memory, RGB24 and I420, 1024x576 and 1920x1088, against the 3 % budget
      of a 5.04 s segment; the encoded alternative's bytes; the mock segment through the
      in-process vs the subprocess pool (ratios, IPC cost); kill -9 -> serving again
      (median of 7 reps; --quick: 3)
  bench router [--quick] [--round-trips N]
      stream-router vs nginx (WebSocket reverse proxy) vs direct, same run on loopback:
      added latency per message (p50/p99, N=2000 round trips) and binary throughput
      (256 x 1 MiB frames); --quick: 300 round trips, 64 frames
  check-layers
      fail when a crate depends on something its layer forbids (ARCHITECTURE.md)
  help
      this text";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Asking for help never starts a command (`bench load --help` used to run the load test).
    if wants_help(&args) {
        println!("{USAGE}");
        return Ok(());
    }
    match args.as_slice() {
        ["bench", "encoder", rest @ ..] => bench_encoder::run(rest),
        ["bench", "aac", rest @ ..] => bench_aac::run(rest),
        ["bench", "latency", rest @ ..] => bench_server::latency(&root()?, rest),
        ["bench", "load", rest @ ..] => {
            let sessions = flag(rest, "--sessions")?.unwrap_or(200);
            let segments = flag(rest, "--segments")?.unwrap_or(3);
            bench_server::load(&root()?, sessions, segments as u32)
        }
        ["bench", "pool", rest @ ..] => bench_pool::run(&root()?, rest),
        ["bench", "router", rest @ ..] => {
            let mut opts = if rest.contains(&"--quick") {
                bench_router::Options::quick()
            } else {
                bench_router::Options::full()
            };
            if let Some(n) = flag(rest, "--round-trips")? {
                opts.round_trips = n;
            }
            bench_router::run(&root()?, opts)
        }
        ["check-layers"] => check_layers::run(),
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

/// No command, or `help` / `--help` / `-h` anywhere on the line.
fn wants_help(args: &[&str]) -> bool {
    args.is_empty() || args.iter().any(|a| matches!(*a, "help" | "--help" | "-h"))
}

/// The workspace root (xtask lives one level below it).
fn root() -> Result<std::path::PathBuf> {
    let manifest = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    );
    manifest
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("xtask has no parent directory"))
}

/// `--name N` from `args`, if present.
fn flag(args: &[&str], name: &str) -> Result<Option<usize>> {
    match args.iter().position(|a| *a == name) {
        None => Ok(None),
        Some(i) => match args.get(i + 1).and_then(|v| v.parse().ok()) {
            Some(v) => Ok(Some(v)),
            None => bail!("{name} needs a number"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::wants_help;

    #[test]
    fn help_anywhere_prints_usage_instead_of_running() {
        for args in [
            &[][..],
            &["help"],
            &["--help"],
            &["bench", "--help"],
            &["bench", "load", "--help"],
            &["bench", "router", "-h"],
        ] {
            assert!(wants_help(args), "{args:?}");
        }
        assert!(!wants_help(&["bench", "load", "--sessions", "2"]));
        assert!(!wants_help(&["check-layers"]));
    }
}
