//! ffprobe/ffmpeg cross-checks of two-track segments: both streams seen with matching
//! durations, the whole file decodes without errors, and the A/V offset measured on ffmpeg's
//! decode (an implementation independent of ours) is within a millisecond or two.
//! Skipped locally without ffmpeg; `.ci/run` installs it, and under `CI` a missing ffmpeg fails.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_encoder::{EncoderConfig, SegmentAudio, StreamEncoder};
use std::path::Path;
use std::process::Command;

fn ffmpeg_available() -> bool {
    let ok = ["ffprobe", "ffmpeg"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "ffmpeg/ffprobe missing under CI"
    );
    if !ok {
        println!("NOTE: ffmpeg not found; skipping the ffmpeg cross-checks");
    }
    ok
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed: {stderr}");
    assert!(stderr.trim().is_empty(), "{cmd:?} complained: {stderr}");
    out.stdout
}

/// `key=value` lines of one ffprobe stream section.
fn probe_stream(path: &Path, stream: &str) -> std::collections::HashMap<String, String> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-show_entries"])
        .arg("stream=codec_name,profile,sample_rate,channels,start_time,duration,width,height")
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path));
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ffprobe_sees_both_streams_and_ffmpeg_decodes_them_in_sync() {
    if !ffmpeg_available() {
        return;
    }
    // 3 s at 24 fps; frame 30 is white and a 1 kHz burst starts at 1.25 s. The PCM (24 kHz,
    // like LTX-2) arrives after the video, the way a generator hands it over.
    let cfg = EncoderConfig {
        fragment_frames: 12,
        ..EncoderConfig::new(64, 48, 24)
    };
    let mut enc = StreamEncoder::new(cfg).unwrap();
    let (video, track) = flash_and_burst(64, 48, 24, 72, 30, 24_000);
    let chunks = encode(&mut enc, &video, SegmentAudio::Pcm, Some((&track, 72)));
    let dir = std::env::temp_dir().join(format!("fv-encoder-ffaudio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("segment.mp4");
    std::fs::write(&path, concat(&chunks)).unwrap();

    let v = probe_stream(&path, "v:0");
    let a = probe_stream(&path, "a:0");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["profile"], "LC");
    assert_eq!(
        (a["sample_rate"].as_str(), a["channels"].as_str()),
        ("48000", "2")
    );
    let num =
        |m: &std::collections::HashMap<String, String>, k: &str| -> f64 { m[k].parse().unwrap() };
    // ffmpeg reads the edit list: the audio's first decoded sample is the encoder's priming,
    // presented before 0.
    let (v_start, a_start) = (num(&v, "start_time"), num(&a, "start_time"));
    assert_eq!(v_start, 0.0);
    assert!(
        (a_start + 2048.0 / 48_000.0).abs() < 1e-5,
        "audio start {a_start}"
    );
    let v_end = v_start + num(&v, "duration");
    let a_end = a_start + num(&a, "duration");
    println!("video ends {v_end:.6} s, audio ends {a_end:.6} s");
    assert!(
        a_end >= v_end - 1e-6 && a_end - v_end < 1024.0 / 48_000.0,
        "durations: video {v_end}, audio {a_end}"
    );

    // Decode both streams with ffmpeg (-xerror: any decode error fails).
    let gray = run(Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-map", "0:v", "-fps_mode", "passthrough"])
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"]));
    let frames: Vec<Vec<u8>> = gray.chunks_exact(64 * 48).map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), 72);
    let pcm = run(Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-map", "0:a", "-f", "f32le", "-"]));
    let pcm: Vec<f32> = pcm
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    let (left, _) = split(&pcm);
    let flash_s = v_start + brightest(&frames) as f64 / 24.0;
    let onset_s = a_start + onset(&left, 48_000) as f64 / 48_000.0;
    let offset_ms = (onset_s - flash_s) * 1000.0;
    println!("A/V offset in ffmpeg's decode: {offset_ms:+.2} ms (flash {flash_s:.4} s)");
    assert!((flash_s - 1.25).abs() < 1e-9);
    assert!(
        offset_ms.abs() < 2.0,
        "audio onset vs flash: {offset_ms} ms"
    );
    // The burst is the 1 kHz tone at the input's level.
    let start = ((onset_s - a_start) * 48_000.0) as usize + 480;
    let burst = &left[start..start + 9_600];
    assert!((frequency(burst, 48_000.0) - 1000.0).abs() < 2.0);
    assert!(
        (dbfs(burst) - (-6.02 - 3.01)).abs() < 0.5,
        "{}",
        dbfs(burst)
    );
}

#[test]
fn ffprobe_reads_silent_segments_with_matching_durations() {
    if !ffmpeg_available() {
        return;
    }
    let cfg = EncoderConfig::new(64, 48, 30);
    let mut enc = StreamEncoder::new(cfg).unwrap();
    let chunks = encode(&mut enc, &frames(64, 48, 50), SegmentAudio::Silence, None);
    let dir = std::env::temp_dir().join(format!("fv-encoder-ffsilent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("segment.mp4");
    std::fs::write(&path, concat(&chunks)).unwrap();
    let v = probe_stream(&path, "v:0");
    let a = probe_stream(&path, "a:0");
    let pcm = run(Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&path)
        .args(["-map", "0:a", "-f", "f32le", "-"]));
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["start_time"].parse::<f64>().unwrap(), 0.0);
    let (vd, ad): (f64, f64) = (
        v["duration"].parse().unwrap(),
        a["duration"].parse().unwrap(),
    );
    assert!((vd - 50.0 / 30.0).abs() < 1e-6, "video {vd}");
    assert!(
        ad >= vd && ad - vd < 1024.0 / 48_000.0,
        "video {vd}, audio {ad}"
    );
    assert!(
        pcm.chunks_exact(4)
            .all(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) == 0.0),
        "ffmpeg decodes digital silence"
    );
}
