//! `bench encoder`: our encoder (RGB24 -> I420 -> openh264 -> fMP4, one thread, in-process)
//! against upstream's path (an ffmpeg libx264 process per segment, raw RGB24 over stdin, fMP4
//! over stdout), on the same synthetic frames in the same run.
//!
//! Timing is wall clock, median over repetitions, ours and ffmpeg alternating. Ours includes
//! creating the encoder and muxing; ffmpeg's includes process start-up and the pipes, as
//! upstream pays both per segment. CPU time is printed too: on a shared machine it is the
//! steadier number (ours: the encoding thread; ffmpeg: the whole process, all its threads).
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
        reps: 7,
    };
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match arg {
            "--quick" => {
                plan.sizes = vec![(1024, 576)];
                plan.frames = 48;
                plan.reps = 3;
            }
            "--size" => {
                let v = it.next().context("--size needs WxH")?;
                let (w, h) = v.split_once('x').context("--size WxH, e.g. 1280x720")?;
                plan.sizes = vec![(w.parse()?, h.parse()?)];
            }
            "--frames" => {
                let n = it.next().context("--frames needs a number")?;
                plan.frames = n.parse().with_context(|| format!("--frames {n}"))?;
                ensure!(
                    (1..=10_000).contains(&plan.frames),
                    "--frames must be 1..=10000"
                );
            }
            "--reps" => {
                let n = it.next().context("--reps needs a number")?;
                plan.reps = n.parse().with_context(|| format!("--reps {n}"))?;
                ensure!((1..=100).contains(&plan.reps), "--reps must be 1..=100");
            }
            other => {
                bail!("unknown option {other} (try --quick, --reps N, --size WxH, --frames N)")
            }
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
            "\n{w}x{h}, {} frames at {FPS} fps, {} repetitions, ours and ffmpeg alternating",
            plan.frames, plan.reps
        );
        println!(
            "  {:<44} {:>6}  {:>15}  {:>15}  {:>9}  {:>8}  {:>8}",
            "", "fps", "wall ms/frame", "CPU ms/frame", "bytes", "PSNR RGB", "PSNR YUV"
        );
        println!(
            "  {:<44} {:>6}  {:>15}  {:>15}  {:>9}  {:>8}  {:>8}",
            "", "median", "median / min", "median / min", "", "", "(ffmpeg)"
        );

        let (ours, theirs) = measure(w, h, &frames, plan.reps, ffmpeg.is_some())?;
        // RGB PSNR of ours through openh264's own decoder and YUV->RGB conversion.
        let ours_rgb = {
            let seg = inspect::parse_segment(&ours.output)?;
            let decoded = inspect::decode_segment(&seg)?;
            mean_psnr(decoded.iter().map(Vec::as_slice), &frames)?
        };
        let ours_yuv = match ffmpeg {
            Some(_) => Some(yuv_psnr_ffmpeg(&ours.output, w, h, &frames)?),
            None => None,
        };
        print_row(
            "ours: openh264 + fMP4, in-process, 1 thread",
            plan.frames,
            &ours,
            ours_rgb,
            ours_yuv,
        );

        if let Some(theirs) = theirs {
            let theirs_rgb = rgb_psnr_ffmpeg_decode(&theirs.output, w, h, &frames)?;
            let theirs_yuv = yuv_psnr_ffmpeg(&theirs.output, w, h, &frames)?;
            print_row(
                "ffmpeg: libx264 ultrafast, -threads 1, pipes",
                plan.frames,
                &theirs,
                theirs_rgb,
                Some(theirs_yuv),
            );
            let by = |a: Duration, b: Duration| b.as_secs_f64() / a.as_secs_f64();
            let ratio = by(ours.median, theirs.median);
            println!(
                "  ours/ffmpeg speed: {ratio:.2}x by median wall time, {:.2}x by fastest run, \
                 {:.2}x by median CPU time, {:.2}x by least CPU time",
                by(ours.min, theirs.min),
                by(ours.cpu_median, theirs.cpu_median),
                by(ours.cpu_min, theirs.cpu_min),
            );
            if (w, h) == (1024, 576) {
                ratio_at_576 = Some(ratio);
            }
        }
    }
    println!(
        "\nPSNR RGB: mean per-frame PSNR vs the source RGB (ours decoded by openh264, ffmpeg's \
         output by ffmpeg).\nPSNR YUV: ffmpeg's psnr filter (average of Y, U, V) vs the source \
         converted to yuv420p by ffmpeg, the same yardstick for both.\nCPU: ours = the encoding \
         thread; ffmpeg = the whole process (start-up included)."
    );
    if let Some(ratio) = ratio_at_576 {
        let verdict = if ratio >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        };
        println!(
            "target ours >= {TARGET_RATIO}x ffmpeg fps (median wall) at 1024x576: {verdict} ({ratio:.2}x)"
        );
    }
    Ok(())
}

fn print_row(name: &str, frames: u32, t: &Timed, rgb: f64, yuv: Option<f64>) {
    let ms = |d: Duration| ms_per_frame(frames, d);
    println!(
        "  {:<44} {:>6.1}  {:>6.2} / {:>6.2}  {:>6.2} / {:>6.2}  {:>9}  {:>8.2}  {:>8}",
        name,
        fps(frames, t.median),
        ms(t.median),
        ms(t.min),
        ms(t.cpu_median),
        ms(t.cpu_min),
        t.output.len(),
        rgb,
        yuv.map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into()),
    );
}

struct Timed {
    median: Duration,
    min: Duration,
    /// CPU time: ours on the encoding thread, ffmpeg's whole process (user + system).
    cpu_median: Duration,
    cpu_min: Duration,
    /// Output of the last repetition.
    output: Vec<u8>,
}

#[derive(Default)]
struct Runs {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    output: Vec<u8>,
}

impl Runs {
    fn summarize(mut self) -> Result<Timed> {
        self.wall.sort();
        self.cpu.sort();
        Ok(Timed {
            median: *self
                .wall
                .get(self.wall.len() / 2)
                .context("no repetitions")?,
            min: *self.wall.first().context("no repetitions")?,
            cpu_median: *self.cpu.get(self.cpu.len() / 2).context("no repetitions")?,
            cpu_min: *self.cpu.first().context("no repetitions")?,
            output: self.output,
        })
    }
}

/// Runs ours and (optionally) ffmpeg alternately, so load from other processes on a shared
/// machine hits both sides alike.
fn measure(
    w: u32,
    h: u32,
    frames: &[Frame],
    reps: usize,
    with_ffmpeg: bool,
) -> Result<(Timed, Option<Timed>)> {
    let mut ours = Runs::default();
    let mut theirs = Runs::default();
    for _ in 0..reps {
        run_ours(w, h, frames, &mut ours)?;
        if with_ffmpeg {
            run_ffmpeg(w, h, frames, &mut theirs)?;
        }
    }
    let theirs = if with_ffmpeg {
        Some(theirs.summarize()?)
    } else {
        None
    };
    Ok((ours.summarize()?, theirs))
}

fn run_ours(w: u32, h: u32, frames: &[Frame], runs: &mut Runs) -> Result<()> {
    runs.output.clear();
    let cpu_start = thread_cpu_time()?;
    let start = Instant::now();
    // A fresh encoder per run, like a fresh session: creation is part of the cost.
    let mut encoder = StreamEncoder::new(EncoderConfig::new(w, h, FPS))?;
    let mut segment = encoder.begin_segment();
    for frame in frames {
        for chunk in segment.push(frame)? {
            runs.output.extend_from_slice(&chunk.data);
        }
    }
    for chunk in segment.finish()? {
        runs.output.extend_from_slice(&chunk.data);
    }
    runs.wall.push(start.elapsed());
    runs.cpu.push(thread_cpu_time()?.saturating_sub(cpu_start));
    Ok(())
}

fn run_ffmpeg(w: u32, h: u32, frames: &[Frame], runs: &mut Runs) -> Result<()> {
    let size = format!("{w}x{h}");
    let fps = FPS.to_string();
    let cpu_start = children_cpu_time()?;
    let start = Instant::now();
    let mut child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "rawvideo"])
        .args(["-pix_fmt", "rgb24", "-s", &size, "-r", &fps, "-i", "pipe:0"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
        ])
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
    runs.output = std::thread::scope(|s| -> Result<Vec<u8>> {
        // Feed on another thread while this one drains stdout, so neither pipe fills up.
        let feeder = s.spawn(move || -> std::io::Result<()> {
            for frame in frames {
                stdin.write_all(&frame.rgb())?;
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
    runs.wall.push(start.elapsed());
    runs.cpu
        .push(children_cpu_time()?.saturating_sub(cpu_start));
    ensure!(status.success(), "ffmpeg encode failed: {status}");
    Ok(())
}

/// CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds).
pub(crate) fn thread_cpu_time() -> Result<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .context("reading /proc/thread-self/schedstat (Linux only)")?;
    let ns: u64 = text
        .split_whitespace()
        .next()
        .context("empty schedstat")?
        .parse()
        .context("schedstat run time")?;
    Ok(Duration::from_nanos(ns))
}

/// User + system CPU time of this process's waited-for children (`/proc/self/stat` fields
/// cutime and cstime, in clock ticks of 1/100 s, the Linux x86_64 USER_HZ).
pub(crate) fn children_cpu_time() -> Result<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = text
        .rsplit_once(')')
        .context("malformed /proc/self/stat")?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); cutime and cstime are fields 16 and 17.
    let tick = |i: usize| -> Result<u64> {
        fields
            .get(i - 3)
            .context("short /proc/self/stat")?
            .parse::<u64>()
            .context("parsing /proc/self/stat")
    };
    Ok(Duration::from_millis((tick(16)? + tick(17)?) * 10))
}

/// Writes `mp4` to a temporary file for ffmpeg to read (the mp4 demuxer wants to seek).
struct TempMp4(std::path::PathBuf);

impl TempMp4 {
    fn new(mp4: &[u8], tag: &str) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("fv-xtask-bench-{}-{tag}.mp4", std::process::id()));
        std::fs::write(&path, mp4).with_context(|| format!("writing {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempMp4 {
    fn drop(&mut self) {
        std::fs::remove_file(&self.0).ok();
    }
}

/// Decodes an MP4 byte stream with ffmpeg to RGB24; mean per-frame PSNR against `source`.
fn rgb_psnr_ffmpeg_decode(mp4: &[u8], w: u32, h: u32, source: &[Frame]) -> Result<f64> {
    let file = TempMp4::new(mp4, "rgb")?;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(&file.0)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .stderr(Stdio::inherit())
        .output()
        .context("running ffmpeg to decode")?;
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

/// ffmpeg's psnr filter between `mp4` and the source frames converted to yuv420p by ffmpeg:
/// the "average" (Y, U, V) figure.
fn yuv_psnr_ffmpeg(mp4: &[u8], w: u32, h: u32, source: &[Frame]) -> Result<f64> {
    let file = TempMp4::new(mp4, "yuv")?;
    let mut child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostats",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
        ])
        .args([
            "-s",
            &format!("{w}x{h}"),
            "-r",
            &FPS.to_string(),
            "-i",
            "pipe:0",
            "-i",
        ])
        .arg(&file.0)
        .args([
            "-lavfi",
            "[0]format=yuv420p[ref];[ref][1]psnr",
            "-f",
            "null",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ffmpeg psnr")?;
    let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
    let mut stderr = child.stderr.take().context("ffmpeg stderr")?;
    let log = std::thread::scope(|s| -> Result<String> {
        let feeder = s.spawn(move || -> std::io::Result<()> {
            for frame in source {
                stdin.write_all(&frame.rgb())?;
            }
            Ok(())
        });
        let mut log = String::new();
        stderr.read_to_string(&mut log)?;
        match feeder.join() {
            Ok(r) => r.context("writing frames to ffmpeg")?,
            Err(_) => bail!("feeder thread panicked"),
        }
        Ok(log)
    })?;
    let status = child.wait()?;
    ensure!(status.success(), "ffmpeg psnr failed: {status}\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("Parsed_psnr") && l.contains("average:"))
        .with_context(|| format!("no PSNR summary in ffmpeg output:\n{log}"))?;
    let value = line
        .split_once("average:")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .context("malformed PSNR line")?;
    // "inf" when identical, which ffmpeg prints for lossless streams.
    value
        .parse::<f64>()
        .with_context(|| format!("PSNR value {value:?}"))
}

/// Mean per-frame PSNR; identical frames count as 100 dB so one cannot make the mean infinite.
fn mean_psnr<'a>(decoded: impl Iterator<Item = &'a [u8]>, source: &[Frame]) -> Result<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for (d, s) in decoded.zip(source) {
        let p = psnr(d, &s.rgb()).context("decoded frame has the wrong size")?;
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

pub(crate) fn ffmpeg_version() -> Option<String> {
    let out = Command::new("ffmpeg").arg("-version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}
