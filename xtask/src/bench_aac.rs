//! `bench aac`: our AAC-LC encoder (FDK AAC in-process, one thread, via
//! `fv_encoder::encode_audio`) against ffmpeg's native `aac` encoder (and `libfdk_aac` when the
//! local ffmpeg has it) over a pipe, on the same PCM in the same run.
//!
//! Speed is seconds of audio coded per second, on one core: CPU time of our encoding thread
//! and of the ffmpeg process (`-threads 1`; its start-up included, as a subprocess pays it),
//! median over repetitions, plus wall time. Quality: every output is decoded by the same
//! decoder (ffmpeg's), aligned to the input by the delay with the best correlation, and scored
//! as SNR over the whole clip; bitrates are printed next to it. The clip is synthetic
//! music-like stereo (five voices of harmonics with vibrato and swells, a little noise).
//! It also times the silent track: repeating the pre-encoded silent frame vs coding zeros.

use crate::bench_encoder::{children_cpu_time, ffmpeg_version, thread_cpu_time};
use anyhow::{Context, Result, bail, ensure};
use fv_core::AudioTrack;
use fv_encoder::{AacMode, encode_audio, silent_frame};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RATE: u32 = 48_000;

struct Plan {
    seconds: u32,
    reps: usize,
}

/// One encoder's result: timings over the repetitions and one output to score.
struct Outcome {
    name: String,
    cpu: Duration,
    wall: Duration,
    /// ADTS stream of the last repetition.
    adts: Vec<u8>,
}

pub fn run(args: &[&str]) -> Result<()> {
    let mut plan = Plan {
        seconds: 30,
        reps: 5,
    };
    let mut it = args.iter();
    while let Some(&arg) = it.next() {
        match arg {
            "--quick" => {
                plan.seconds = 8;
                plan.reps = 3;
            }
            "--seconds" => {
                let n = it.next().context("--seconds needs a number")?;
                plan.seconds = n.parse().with_context(|| format!("--seconds {n}"))?;
                ensure!(
                    (1..=600).contains(&plan.seconds),
                    "--seconds must be 1..=600"
                );
            }
            "--reps" => {
                let n = it.next().context("--reps needs a number")?;
                plan.reps = n.parse().with_context(|| format!("--reps {n}"))?;
                ensure!((1..=100).contains(&plan.reps), "--reps must be 1..=100");
            }
            other => bail!("unknown option {other} (try --quick, --seconds N, --reps N)"),
        }
    }
    if cfg!(debug_assertions) {
        println!("WARNING: debug build; timings are not representative. Use: cargo xbench aac");
    }
    let ffmpeg = ffmpeg_version();
    match &ffmpeg {
        Some(v) => println!("ffmpeg: {v}"),
        None => println!("NOTE: ffmpeg not found; measuring only our encoder"),
    }
    let fdk_in_ffmpeg = ffmpeg.is_some() && ffmpeg_has_encoder("libfdk_aac");
    println!(
        "clip: {} s synthetic stereo at 48 kHz, {} reps; speed = s of audio per s of CPU (one core)\n",
        plan.seconds, plan.reps
    );
    let pcm = clip(plan.seconds);
    let track = AudioTrack {
        sample_rate: RATE,
        channels: 2,
        samples: pcm.clone(),
    };
    let track_24k = AudioTrack {
        sample_rate: 24_000,
        channels: 2,
        samples: pcm
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1]])
            .collect::<Vec<f32>>(),
    };

    let mut outcomes = Vec::new();
    for _ in 0..plan.reps {
        // Interleave the contenders so machine load hits them alike.
        outcomes.push(ours(
            "ours FDK vbr4 (default)",
            &track,
            AacMode::Vbr { quality: 4 },
        )?);
        outcomes.push(ours(
            "ours FDK cbr128",
            &track,
            AacMode::Cbr {
                bitrate_bps: 128_000,
            },
        )?);
        outcomes.push(ours(
            "ours 24k->48k + vbr4",
            &track_24k,
            AacMode::Vbr { quality: 4 },
        )?);
        if ffmpeg.is_some() {
            outcomes.push(ffmpeg_encode(
                "ffmpeg aac 128k",
                &pcm,
                &["-c:a", "aac", "-b:a", "128k"],
            )?);
            if fdk_in_ffmpeg {
                outcomes.push(ffmpeg_encode(
                    "ffmpeg libfdk_aac vbr4",
                    &pcm,
                    &["-c:a", "libfdk_aac", "-vbr", "4"],
                )?);
            }
        }
    }
    let mut names: Vec<String> = Vec::new();
    for o in &outcomes {
        if !names.contains(&o.name) {
            names.push(o.name.clone());
        }
    }
    let secs = f64::from(plan.seconds);
    println!(
        "{:<26} {:>12} {:>12} {:>10} {:>9}",
        "encoder", "audio s/CPU s", "audio s/wall s", "kbit/s", "SNR dB"
    );
    let mut speed_of = std::collections::HashMap::new();
    for name in &names {
        let runs: Vec<&Outcome> = outcomes.iter().filter(|o| &o.name == name).collect();
        let cpu = median(runs.iter().map(|o| o.cpu).collect());
        let wall = median(runs.iter().map(|o| o.wall).collect());
        let last = runs.last().context("no runs")?;
        let kbps = last.adts.len() as f64 * 8.0 / secs / 1000.0;
        let snr = match &ffmpeg {
            Some(_) if !name.contains("24k") => format!("{:.2}", snr_via_ffmpeg(&last.adts, &pcm)?),
            _ => "-".into(),
        };
        let speed = secs / cpu.as_secs_f64().max(1e-9);
        speed_of.insert(name.clone(), speed);
        println!(
            "{name:<26} {speed:>12.1} {:>12.1} {kbps:>10.1} {snr:>9}",
            secs / wall.as_secs_f64().max(1e-9),
        );
    }
    if let (Some(o), Some(f)) = (
        speed_of.get("ours FDK vbr4 (default)"),
        speed_of.get("ffmpeg aac 128k"),
    ) {
        println!("\nspeed ours (vbr4) / ffmpeg aac: {:.2}x", o / f);
    }
    if let (Some(o), Some(f)) = (
        speed_of.get("ours FDK cbr128"),
        speed_of.get("ffmpeg aac 128k"),
    ) {
        println!("speed ours (cbr128) / ffmpeg aac (128k): {:.2}x", o / f);
    }
    silence(plan.seconds)?;
    Ok(())
}

/// Times a silent track both ways: repeating the silent frame vs FDK coding zeros.
fn silence(seconds: u32) -> Result<()> {
    let frames = (u64::from(seconds) * u64::from(RATE)).div_ceil(1024) as usize;
    let frame = silent_frame()?;
    // Far below the CPU clock's resolution for one track: time 100 tracks by the wall clock.
    let start = Instant::now();
    for _ in 0..100 {
        std::hint::black_box((0..frames).map(|_| frame.to_vec()).collect::<Vec<_>>());
    }
    let repeat = start.elapsed() / 100;
    let bytes = frames * frame.len();
    let zeros = AudioTrack {
        sample_rate: RATE,
        channels: 2,
        samples: vec![0.0; frames * 1024 * 2],
    };
    let start = Instant::now();
    let coded = encode_audio(&zeros, AacMode::Vbr { quality: 4 })?;
    let encode = start.elapsed();
    let coded_bytes: usize = coded.frames.iter().map(Vec::len).sum();
    println!(
        "\nsilence, {seconds} s (wall clock): repeat the {}-byte frame {:.3} ms ({bytes} B), \
         code zeros with FDK {:.1} ms ({coded_bytes} B): repeating is {:.0}x cheaper",
        frame.len(),
        repeat.as_secs_f64() * 1e3,
        encode.as_secs_f64() * 1e3,
        encode.as_secs_f64() / repeat.as_secs_f64().max(1e-9)
    );
    Ok(())
}

fn ours(name: &str, track: &AudioTrack, mode: AacMode) -> Result<Outcome> {
    let wall = Instant::now();
    let cpu = thread_cpu_time()?;
    let coded = encode_audio(track, mode)?;
    let cpu = thread_cpu_time()?.saturating_sub(cpu);
    let wall = wall.elapsed();
    // Priming stays in, as in ffmpeg's output; the SNR alignment finds each encoder's delay.
    let mut adts = Vec::new();
    for f in &coded.frames {
        adts.extend_from_slice(&adts_header(f.len())?);
        adts.extend_from_slice(f);
    }
    Ok(Outcome {
        name: name.into(),
        cpu,
        wall,
        adts,
    })
}

/// 7-byte ADTS header for one AAC-LC 48 kHz stereo frame (no CRC).
fn adts_header(payload: usize) -> Result<[u8; 7]> {
    let len = payload + 7;
    ensure!(len < 1 << 13, "AAC frame of {payload} bytes");
    let (profile, freq_index, channels) = (1u8, 3u8, 2u8); // LC = object type 2 - 1
    Ok([
        0xff,
        0xf1,
        (profile << 6) | (freq_index << 2) | (channels >> 2),
        ((channels & 3) << 6) | ((len >> 11) as u8 & 3),
        (len >> 3) as u8,
        (((len & 7) as u8) << 5) | 0x1f,
        0xfc,
    ])
}

fn ffmpeg_encode(name: &str, pcm: &[f32], codec: &[&str]) -> Result<Outcome> {
    let wall = Instant::now();
    let cpu = children_cpu_time()?;
    let mut child = Command::new("ffmpeg")
        .args([
            "-v", "error", "-threads", "1", "-f", "f32le", "-ar", "48000", "-ac", "2",
        ])
        .args(["-i", "pipe:0"])
        .args(codec)
        .args(["-f", "adts", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning ffmpeg")?;
    let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
    let input: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let mut adts = Vec::new();
    child
        .stdout
        .take()
        .context("ffmpeg stdout")?
        .read_to_end(&mut adts)?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    let status = child.wait()?;
    ensure!(status.success(), "ffmpeg {name} failed: {status}");
    let cpu = children_cpu_time()?.saturating_sub(cpu);
    Ok(Outcome {
        name: name.into(),
        cpu,
        wall: wall.elapsed(),
        adts,
    })
}

fn ffmpeg_has_encoder(name: &str) -> bool {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w == name)
        })
}

/// Decodes an ADTS stream with ffmpeg and returns the SNR against `pcm` at the best delay.
fn snr_via_ffmpeg(adts: &[u8], pcm: &[f32]) -> Result<f64> {
    let path = std::env::temp_dir().join(format!("fv-xtask-aac-{}.aac", std::process::id()));
    std::fs::write(&path, adts)?;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "f32le", "-ar", "48000", "-ac", "2", "-"])
        .output();
    std::fs::remove_file(&path).ok();
    let out = out.context("running ffmpeg to decode")?;
    ensure!(out.status.success(), "ffmpeg decode failed");
    let decoded: Vec<f32> = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // Delay: the lag (frames, 0..4096) with the best correlation over the first 5 s of left.
    let window = (5 * RATE as usize).min(pcm.len() / 2 - 1);
    let mut best = (0usize, f64::MIN);
    for lag in 0..4096usize {
        if 2 * (lag + window) > decoded.len() {
            break;
        }
        let c: f64 = (0..window)
            .step_by(3)
            .map(|i| f64::from(pcm[2 * i]) * f64::from(decoded[2 * (i + lag)]))
            .sum();
        if c > best.1 {
            best = (lag, c);
        }
    }
    let lag = best.0;
    // Score all but the last second (encoders pad the tail differently).
    let n = (pcm.len() / 2)
        .min(decoded.len() / 2 - lag)
        .saturating_sub(RATE as usize);
    let (mut s, mut e) = (0.0f64, 0.0f64);
    for i in 0..2 * n {
        let x = f64::from(pcm[i]);
        let y = f64::from(decoded[i + 2 * lag]);
        s += x * x;
        e += (x - y) * (x - y);
    }
    Ok(10.0 * (s / e.max(1e-30)).log10())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Music-like stereo test clip: five voices of five harmonics with vibrato and slow swells,
/// panned apart, plus noise 34 dB down. Deterministic.
fn clip(seconds: u32) -> Vec<f32> {
    let n = (seconds * RATE) as usize;
    let mut seed = 0x1234_5678_u64;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    let notes = [220.0f32, 277.18, 329.63, 440.0, 554.37];
    let tau = 2.0 * std::f32::consts::PI;
    let mut out = Vec::with_capacity(n * 2);
    for i in 0..n {
        let t = i as f32 / RATE as f32;
        let (mut l, mut r) = (0.0f32, 0.0f32);
        for (k, f) in notes.iter().enumerate() {
            let k = k as f32;
            let swell = 0.5 + 0.5 * (tau * (0.3 + 0.1 * k) * t).sin();
            let vibrato = 1.0 + 0.003 * (tau * 5.0 * t).sin();
            for h in 1..6 {
                let a = 0.08 / h as f32 * swell;
                let phase = tau * f * vibrato * h as f32 * t;
                l += a * phase.sin() * (1.0 - 0.15 * k);
                r += a * (phase + 0.3 * k).sin() * (0.4 + 0.15 * k);
            }
        }
        let z = 0.02 * noise();
        out.push((l + z).clamp(-1.0, 1.0));
        out.push((r + 0.7 * z).clamp(-1.0, 1.0));
    }
    out
}
