//! JSONL session log: file name, line shape, helpers, disabled mode, failures.

use fv_session::{
    MAX_LOGGED_PROMPT_BYTES, SegmentRecord, SessionLog, SessionLogger, SessionSettings,
};
use serde_json::{Value, json};
use std::path::Path;

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("log file exists")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn assert_ts(v: &Value) {
    let ts = v["ts"].as_str().expect("ts is a string");
    // YYYY-MM-DDTHH:MM:SS.mmmZ
    assert_eq!(ts.len(), 24, "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
}

#[test]
fn writes_one_json_object_per_line_in_a_sanitized_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_dir = dir.path().join("logs/nested");
    let logger = SessionLogger::new(Some(log_dir.clone()));
    assert!(logger.is_enabled());

    let id = "../ab c/d:e";
    let expected = log_dir.join("session-.._ab_c_d_e.jsonl");
    assert_eq!(logger.path_for(id), Some(expected.clone()));

    let log = logger.open(id);
    assert!(log.is_enabled());
    log.event("custom", json!({ "k": [1, 2] }));

    let lines = read_lines(&expected);
    assert_eq!(lines.len(), 1);
    let line = lines[0].as_object().expect("object");
    let mut keys: Vec<_> = line.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["event", "payload", "session_id", "ts"]);
    assert_eq!(
        line["session_id"], id,
        "the original id is kept inside the file"
    );
    assert_eq!(line["event"], "custom");
    assert_eq!(line["payload"], json!({ "k": [1, 2] }));
    assert_ts(&lines[0]);
    // Nothing but the log file in the directory.
    assert_eq!(std::fs::read_dir(&log_dir).expect("dir").count(), 1);
}

#[test]
fn helpers_write_the_documented_payloads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logger = SessionLogger::new(Some(dir.path().to_path_buf()));
    let log = logger.open("s1");

    let settings = SessionSettings {
        client_id: Some("client".into()),
        preset: Some("p1".into()),
        curated_prompts: vec!["a".into(), "b".into()],
        enhancement_enabled: true,
        ..SessionSettings::default()
    };
    log.session_start(&settings);
    log.segment(&SegmentRecord {
        segment_idx: 0,
        prompt: "a cat".into(),
        queue_ms: Some(1.5),
        generate_ms: 200.0,
        encode_ms: 10.25,
        first_media_ms: Some(35.5),
        e2e_ms: 220.0,
        frames: 121,
        chunks: 5,
        bytes: 65_536,
    });
    log.error("worker_failed", "boom");
    log.session_end("segment_cap", 1);

    let lines = read_lines(&dir.path().join("session-s1.jsonl"));
    let events: Vec<_> = lines
        .iter()
        .map(|l| l["event"].as_str().expect("event"))
        .collect();
    assert_eq!(events, ["session_start", "segment", "error", "session_end"]);
    for l in &lines {
        assert_eq!(l["session_id"], "s1");
        assert_ts(l);
    }
    assert_eq!(
        lines[0]["payload"],
        json!({
            "client_id": "client", "preset": "p1", "preset_label": null,
            "curated_prompts": 2, "enhancement_enabled": true,
            "auto_extension_enabled": false, "loop_generation_enabled": false,
            "single_clip_mode": false,
        })
    );
    assert_eq!(
        lines[1]["payload"],
        json!({
            "segment_idx": 0, "prompt": "a cat", "queue_ms": 1.5, "generate_ms": 200.0,
            "encode_ms": 10.25, "first_media_ms": 35.5, "e2e_ms": 220.0, "frames": 121,
            "chunks": 5, "bytes": 65_536,
        })
    );
    assert_eq!(
        lines[2]["payload"],
        json!({ "code": "worker_failed", "message": "boom" })
    );
    assert_eq!(
        lines[3]["payload"],
        json!({ "reason": "segment_cap", "segments": 1 })
    );
}

#[test]
fn long_prompts_are_truncated_and_marked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = SessionLogger::new(Some(dir.path().to_path_buf())).open("s");
    log.segment(&SegmentRecord {
        prompt: "é".repeat(MAX_LOGGED_PROMPT_BYTES),
        ..SegmentRecord::default()
    });
    let lines = read_lines(&dir.path().join("session-s.jsonl"));
    let prompt = lines[0]["payload"]["prompt"].as_str().expect("prompt");
    assert_eq!(prompt.len(), MAX_LOGGED_PROMPT_BYTES);
    assert_eq!(lines[0]["payload"]["prompt_truncated"], true);
    // No queue wait to report: the key is left out rather than logged as 0.
    assert!(lines[0]["payload"].get("queue_ms").is_none());
}

#[test]
fn reopening_appends() {
    let dir = tempfile::tempdir().expect("temp dir");
    let logger = SessionLogger::new(Some(dir.path().to_path_buf()));
    logger.open("s").event("a", Value::Null);
    logger.open("s").event("b", Value::Null);
    let lines = read_lines(&dir.path().join("session-s.jsonl"));
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["event"], "b");
}

#[test]
fn disabled_logger_writes_nothing() {
    let logger = SessionLogger::new(None);
    assert!(!logger.is_enabled());
    assert_eq!(logger.path_for("s"), None);
    let log = logger.open("s");
    assert!(!log.is_enabled());
    log.event("x", json!(1));
    log.session_end("stop_requested", 0);

    let log = SessionLog::disabled("s");
    assert!(!log.is_enabled());
    log.error("internal_error", "nothing happens");
}

#[test]
fn unopenable_directory_gives_a_disabled_log_not_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").expect("write blocker");
    let logger = SessionLogger::new(Some(blocker.join("sub")));
    let log = logger.open("s");
    assert!(!log.is_enabled());
    log.event("x", Value::Null);
    assert_eq!(std::fs::read(&blocker).expect("unchanged"), b"x");
}

#[test]
fn concurrent_writers_never_interleave_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = std::sync::Arc::new(SessionLogger::new(Some(dir.path().to_path_buf())).open("s"));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.event("e", json!({ "t": t, "i": i, "pad": "x".repeat(512) }));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    assert_eq!(read_lines(&dir.path().join("session-s.jsonl")).len(), 200);
}
