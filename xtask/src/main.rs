//! Project automation: `cargo xtask <command>`.
//!
//! Benchmarks must run optimised:
//! `cargo run --release -p xtask -- bench encoder [--quick] [--reps N]`.

mod bench_encoder;

use anyhow::{Result, bail};

const USAGE: &str = "\
usage: cargo run --release -p xtask -- <command>

commands:
  bench encoder [--quick] [--reps N]
      openh264 + fMP4 (in-process, 1 thread) vs ffmpeg libx264 over a pipe, same frames:
      frames/s, bytes and PSNR at 1024x576 and 1920x1088 (--quick: one small run)
  help
      this text";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["bench", "encoder", rest @ ..] => bench_encoder::run(rest),
        [] | ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}
