//! `bench encoder`: our encoder (RGB24 -> I420 -> openh264 -> fMP4, one thread, in-process)
//! against upstream's path (an ffmpeg libx264 process per segment, raw RGB24 over stdin, fMP4
//! over stdout), on the same synthetic frames in the same run.
//!
//! Timing is wall clock, median over repetitions. Ours includes creating the encoder and
//! muxing; ffmpeg's includes process start-up and the pipes, as upstream pays both per segment.
//! PSNR is against the source RGB; both outputs are also decoded by ffmpeg so the two numbers
//! share one decoder and one YUV->RGB conversion.

use anyhow::{Context, Result, bail, ensure};
use fv_core::Frame;
use fv_encoder::testing::{psnr, test_pattern};
use fv_encoder::{EncoderConfig, StreamEncoder, inspect};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FPS: u32 = 24;
/// The goal for ours/ffmpeg frames per second at 1024x576.
const TARGET_RATIO: f64 = 1.5;

struct Plan {
    sizes: Vec<(u32, u32)>,
    frames: u32,
    reps: usize,
}

pub fn run(args: &[&str]) -> Result<()> {
    let mut plan = Plan {
        sizes: vec![(1024, 576), (1920, 1088)],
        frames: 120,
        reps: 5,
    };
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match arg {
            "--quick" => {
                plan.sizes = vec![(1024, 576)];
                plan.frames = 48;
                plan.reps = 3;
            }
            "--reps" => {
                let n = it.next().context("--reps needs a number")?;
                plan.reps = n.parse().with_context(|| format!("--reps {n}"))?;
                ensure!((1..=100).contains(&plan.reps), "--reps must be 1..=100");
            }
            other => bail!("unknown option {other} (try --quick, --reps N)"),
        }
    }
    if cfg!(debug_assertions) {
        println!(
            "WARNING: debug build; timings are not representative. \
             Use: cargo run --release -p xtask -- bench encoder"
        );
    }
    let ffmpeg = ffmpeg_version();
    match &ffmpeg {
        Some(v) => println!("ffmpeg: {v}"),
        None => println!("NOTE: ffmpeg not found; measuring only our encoder"),
    }

    let mut ratio_at_576 = None;
    for &(w, h) in &plan.sizes {
        let frames: Vec<Frame> = (0..plan.frames)
            .map(|i| test_pattern(w, h, i))
            .collect::<Result<_, _>>()?;
        println!(
            "\n{w}x{h}, {} frames at {FPS} fps, {} repetitions (median wall time)",
            plan.frames, plan.reps
        );

        let ours = bench_ours(w, h, &frames, plan.reps)?;
        let ours_fps = fps(plan.frames, ours.median);
        let ours_psnr_openh264 = {
            let seg = inspect::parse_segment(&ours.output)?;
            let decoded = inspect::decode_segment(&seg)?;
            mean_psnr(decoded.iter().map(Vec::as_slice), &frames)?
        };
        let ours_psnr_ffmpeg = match ffmpeg {
            Some(_) => Some(psnr_via_ffmpeg(&ours.output, w, h, &frames)?),
            None => None,
        };
        println!(
            "  ours   openh264+fMP4, 1 thread : {:>7.1} fps  {:>6.2} ms/frame  {:>9} B  \
             PSNR {:.2} dB (openh264 decode){}",
            ours_fps,
            ms_per_frame(plan.frames, ours.median),
            ours.output.len(),
            ours_psnr_openh264,
            ours_psnr_ffmpeg
                .map(|p| format!(", {p:.2} dB (ffmpeg decode)"))
                .unwrap_or_default()
        );

        if ffmpeg.is_some() {
            let theirs = bench_ffmpeg(w, h, &frames, plan.reps)?;
            let theirs_fps = fps(plan.frames, theirs.median);
            let theirs_psnr = psnr_via_ffmpeg(&theirs.output, w, h, &frames)?;
            println!(
                "  ffmpeg libx264 ultrafast -threads 1, pipe: {:>7.1} fps  {:>6.2} ms/frame  {:>9} B  \
                 PSNR {:.2} dB (ffmpeg decode)",
                theirs_fps,
                ms_per_frame(plan.frames, theirs.median),
                theirs.output.len(),
                theirs_psnr
            );
            let ratio = ours_fps / theirs_fps;
            println!(
                "  ratio ours/ffmpeg fps: {ratio:.2}x   (min ours {:.1} ms, ffmpeg {:.1} ms per run)",
                ours.min.as_secs_f64() * 1e3,
                theirs.min.as_secs_f64() * 1e3
            );
            if (w, h) == (1024, 576) {
                ratio_at_576 = Some(ratio);
            }
        }
    }
    if let Some(ratio) = ratio_at_576 {
        let verdict = if ratio >= TARGET_RATIO { "met" } else { "NOT met" };
        println!("\ntarget ours >= {TARGET_RATIO}x ffmpeg fps at 1024x576: {verdict} ({ratio:.2}x)");
    }
    Ok(())
}

struct Timed {
    median: Duration,
    min: Duration,
    /// Output of the last repetition.
    output: Vec<u8>,
}

fn summarize(mut times: Vec<Duration>, output: Vec<u8>) -> Result<Timed> {
    times.sort();
    let median = *times.get(times.len() / 2).context("no repetitions")?;
    let min = *times.first().context("no repetitions")?;
    Ok(Timed {
        median,
        min,
        output,
    })
}

fn bench_ours(w: u32, h: u32, frames: &[Frame], reps: usize) -> Result<Timed> {
    let config = EncoderConfig::new(w, h, FPS);
    let mut times = Vec::with_capacity(reps);
    let mut output = Vec::new();
    for _ in 0..reps {
        output.clear();
        let start = Instant::now();
        // A fresh encoder per run, like a fresh session: creation is part of the cost.
        let mut encoder = StreamEncoder::new(config.clone())?;
        let mut segment = encoder.begin_segment();
        for frame in frames {
            for chunk in segment.push(frame)? {
                output.extend_from_slice(&chunk.data);
            }
        }
        for chunk in segment.finish()? {
            output.extend_from_slice(&chunk.data);
        }
        times.push(start.elapsed());
    }
    summarize(times, output)
}

fn bench_ffmpeg(w: u32, h: u32, frames: &[Frame], reps: usize) -> Result<Timed> {
    let size = format!("{w}x{h}");
    let fps = FPS.to_string();
    let mut times = Vec::with_capacity(reps);
    let mut output = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-f", "rawvideo"])
            .args(["-pix_fmt", "rgb24", "-s", &size, "-r", &fps, "-i", "pipe:0"])
            .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency"])
            .args(["-threads", "1", "-pix_fmt", "yuv420p"])
            .args(["-movflags", "empty_moov+default_base_moof+frag_keyframe"])
            .args(["-f", "mp4", "pipe:1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning ffmpeg")?;
        let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
        let mut stdout = child.stdout.take().context("ffmpeg stdout")?;
        output = std::thread::scope(|s| -> Result<Vec<u8>> {
            // Feed on another thread while this one drains stdout, so neither pipe fills up.
            let feeder = s.spawn(move || -> std::io::Result<()> {
                for frame in frames {
                    stdin.write_all(frame.rgb())?;
                }
                Ok(())
            });
            let mut out = Vec::new();
            stdout.read_to_end(&mut out)?;
            match feeder.join() {
                Ok(r) => r.context("writing frames to ffmpeg")?,
                Err(_) => bail!("feeder thread panicked"),
            }
            Ok(out)
        })?;
        let status = child.wait()?;
        times.push(start.elapsed());
        ensure!(status.success(), "ffmpeg encode failed: {status}");
    }
    summarize(times, output)
}

/// Decodes an MP4 byte stream with ffmpeg to RGB24 and returns the mean per-frame PSNR.
fn psnr_via_ffmpeg(mp4: &[u8], w: u32, h: u32, source: &[Frame]) -> Result<f64> {
    let path = std::env::temp_dir().join(format!(
        "fv-xtask-bench-{}-{w}x{h}.mp4",
        std::process::id()
    ));
    std::fs::write(&path, mp4)?;
    let result = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .stderr(Stdio::inherit())
        .output();
    std::fs::remove_file(&path).ok();
    let out = result.context("running ffmpeg to decode")?;
    ensure!(out.status.success(), "ffmpeg decode failed: {}", out.status);
    let frame_len = w as usize * h as usize * 3;
    ensure!(
        out.stdout.len() == frame_len * source.len(),
        "ffmpeg decoded {} bytes, expected {} frames of {frame_len}",
        out.stdout.len(),
        source.len()
    );
    mean_psnr(out.stdout.chunks_exact(frame_len), source)
}

/// Mean per-frame PSNR; identical frames count as 100 dB so one cannot make the mean infinite.
fn mean_psnr<'a>(decoded: impl Iterator<Item = &'a [u8]>, source: &[Frame]) -> Result<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (d, s) in decoded.zip(source) {
        let p = psnr(d, s.rgb()).context("decoded frame has the wrong size")?;
        sum += p.min(100.0);
        n += 1;
    }
    ensure!(n == source.len(), "decoded {n} of {} frames", source.len());
    Ok(sum / n as f64)
}

fn fps(frames: u32, t: Duration) -> f64 {
    f64::from(frames) / t.as_secs_f64()
}

fn ms_per_frame(frames: u32, t: Duration) -> f64 {
    t.as_secs_f64() * 1e3 / f64::from(frames)
}

fn ffmpeg_version() -> Option<String> {
    let out = Command::new("ffmpeg").arg("-version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}
