//! Two-track segments play through MSE in headless Chromium (`tests/browser/mse-segments.mjs`):
//! one SourceBuffer in `sequence` mode, as the Dreamverse client uses it. Needs Chromium, node
//! and `npm ci` in `tests/browser` (`.ci/run` installs them): without them the test is
//! skipped locally and fails under `CI` (the same rule as `fv_testkit::browser`, which this
//! crate cannot use: fv-testkit depends on fv-encoder).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use fv_encoder::{EncoderConfig, SegmentAudio, StreamEncoder};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CHROMIUM: &str = "/usr/bin/chromium";

fn repo_root() -> PathBuf {
    std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("../..")
}

fn browser_available() -> bool {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push("chromium");
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("node");
    }
    if !repo_root()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        missing.push("tests/browser/node_modules (npm ci)");
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "browser prerequisites missing under CI: {missing:?}"
    );
    eprintln!("\n*** SKIPPED: MSE browser test; missing {missing:?} ***\n");
    false
}

#[test]
fn two_track_segments_play_through_mse_in_sequence_mode() {
    if !browser_available() {
        return;
    }
    let cfg = EncoderConfig {
        fragment_frames: 6,
        ..EncoderConfig::new(128, 96, 24)
    };
    let mut enc = StreamEncoder::new(cfg).unwrap();
    let dir = std::env::temp_dir().join(format!("fv-encoder-mse-{}", std::process::id()));
    let tone = two_tones(24_000, 48_000, 440.0, 0.3, 660.0, 0.3);
    // Three 2 s segments: silence in every fragment; model audio arriving after all video;
    // model audio arriving early.
    let plans: [(SegmentAudio, Option<usize>); 3] = [
        (SegmentAudio::Silence, None),
        (SegmentAudio::Pcm, Some(48)),
        (SegmentAudio::Pcm, Some(3)),
    ];
    let mut dirs = Vec::new();
    let mut mime = None;
    for (i, (audio, at)) in plans.into_iter().enumerate() {
        let chunks = encode(
            &mut enc,
            &frames(128, 96, 48),
            audio,
            at.map(|a| (&tone, a)),
        );
        let m = enc.mime().unwrap();
        assert_eq!(mime.get_or_insert_with(|| m.clone()), &m, "one mime");
        let seg_dir = dir.join(format!("seg{i}"));
        std::fs::create_dir_all(&seg_dir).unwrap();
        for (j, c) in chunks.iter().enumerate() {
            std::fs::write(seg_dir.join(format!("{j:03}.mp4")), &c.data).unwrap();
        }
        dirs.push(seg_dir);
    }
    let mime = mime.unwrap();
    let out = Command::new("node")
        .arg("tests/browser/mse-segments.mjs")
        .arg(&mime)
        .args(&dirs)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "MSE playback failed:\n{stderr}\n{stdout}"
    );
    let s: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(s["supported"], true);
    assert_eq!(s["ended"], true);
    assert!(s["audioDecodedBytes"].as_u64().unwrap() > 0, "{s}");
    assert!(s["videoDecodedBytes"].as_u64().unwrap() > 0, "{s}");
    // Every segment lands right after the previous one: one buffered range throughout, and
    // no segment's end drifts by more than the AAC slack (one frame of padding per segment,
    // plus the 2048-sample priming where Chromium anchors a segment on its audio: measured
    // ends 2.000, 4.005, 6.053 s).
    for (i, ranges) in s["bufferedAfter"].as_array().unwrap().iter().enumerate() {
        let ranges = ranges.as_array().unwrap();
        assert_eq!(ranges.len(), 1, "segment {i}: {ranges:?}");
        let end = ranges[0][1].as_f64().unwrap();
        let want = 2.0 * (i + 1) as f64;
        assert!(
            end >= want - 0.001 && end <= want + 0.07 * (i + 1) as f64,
            "segment {i} ends at {end}"
        );
    }
    assert!(s["currentTime"].as_f64().unwrap() >= 5.9, "{s}");
}
