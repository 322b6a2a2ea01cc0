//! Per-session JSONL event log.
//!
//! One file per session, `<dir>/session-<sanitized id>.jsonl`; one JSON object per line:
//! `{"session_id": str, "event": str, "ts": str, "payload": any}`. `ts` is an RFC 3339 UTC
//! timestamp with millisecond precision, e.g. `2026-08-21T12:34:56.789Z`.
//!
//! Writes are synchronous `std::fs` appends of one small line each (one `write` call per line
//! on a file opened with `O_APPEND`, then a flush). That is cheap enough to call from async
//! code; a session logs a handful of lines per segment. Logging never fails the session: IO
//! errors are reported once through `tracing` and further errors are silent.

use crate::session::SessionSettings;
use serde::Serialize;
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

/// Longest session id kept in a file name (longer ids are cut; real ids are 32 chars).
pub const MAX_FILE_ID_LEN: usize = 128;
/// Prompts longer than this many bytes are cut (at a char boundary) in `segment` events and
/// marked `prompt_truncated: true`, so one huge prompt cannot bloat the log.
pub const MAX_LOGGED_PROMPT_BYTES: usize = 8192;

/// Creates [`SessionLog`]s. Cheap to clone; with no directory every log is a no-op.
#[derive(Debug, Clone, Default)]
pub struct SessionLogger {
    dir: Option<Arc<PathBuf>>,
}

impl SessionLogger {
    /// `None` disables logging (every [`SessionLog`] it opens does nothing).
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir: dir.map(Arc::new),
        }
    }

    /// Whether a directory is configured.
    pub fn is_enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// The file a session's events go to, if logging is enabled.
    pub fn path_for(&self, session_id: &str) -> Option<PathBuf> {
        self.dir
            .as_deref()
            .map(|dir| dir.join(format!("session-{}.jsonl", sanitize_id(session_id))))
    }

    /// Opens (creating the directory and file if needed, appending otherwise) the log for
    /// `session_id`. On an IO error it warns once and returns a disabled log.
    pub fn open(&self, session_id: &str) -> SessionLog {
        let file = self.dir.as_deref().and_then(|dir| {
            let path = self.path_for(session_id)?;
            match open_append(dir, &path) {
                Ok(file) => Some(file),
                Err(err) => {
                    tracing::warn!(
                        session_id,
                        path = %path.display(),
                        error = %err,
                        "cannot open session log; events for this session are not logged"
                    );
                    None
                }
            }
        });
        SessionLog {
            session_id: session_id.to_string(),
            file: file.map(Mutex::new),
            warned: AtomicBool::new(false),
        }
    }
}

fn open_append(dir: &Path, path: &Path) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    OpenOptions::new().create(true).append(true).open(path)
}

/// Replaces every character outside `[A-Za-z0-9._-]` with `_` and cuts the result to
/// [`MAX_FILE_ID_LEN`] characters. With the `session-` prefix the name can never be `.`, `..`
/// or contain a path separator.
fn sanitize_id(session_id: &str) -> String {
    session_id
        .chars()
        .take(MAX_FILE_ID_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Timings and sizes of one delivered segment, logged as the `segment` event's payload.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SegmentRecord {
    pub segment_idx: u32,
    pub prompt: String,
    /// Time this segment waited for a worker; `None` (omitted from the log) when the session
    /// already held one, as fv-server's sessions do from `gpu_assigned` on.
    pub queue_ms: Option<f64>,
    /// Time the generator ran.
    pub generate_ms: f64,
    /// Time spent encoding that did not overlap generation.
    pub encode_ms: f64,
    /// Request received → first media byte sent, when any was.
    pub first_media_ms: Option<f64>,
    /// Request received → last media byte sent.
    pub e2e_ms: f64,
    pub frames: u32,
    /// Binary media messages (init segment + fragments) sent.
    pub chunks: u32,
    /// Media bytes sent to the client.
    pub bytes: u64,
}

/// The event log of one session. Disabled logs accept every call and do nothing.
#[derive(Debug)]
pub struct SessionLog {
    session_id: String,
    file: Option<Mutex<File>>,
    warned: AtomicBool,
}

impl SessionLog {
    /// A log that drops everything.
    pub fn disabled(session_id: &str) -> Self {
        Self {
            session_id: session_id.to_string(),
            file: None,
            warned: AtomicBool::new(false),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Appends one line `{"session_id", "event", "ts", "payload"}`.
    pub fn event(&self, event: &str, payload: Value) {
        let Some(file) = &self.file else { return };
        let line = json!({
            "session_id": self.session_id,
            "event": event,
            "ts": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "payload": payload,
        });
        // Serializing a `Value` cannot fail (all keys are strings); stay silent if it ever does.
        let Ok(mut bytes) = serde_json::to_vec(&line) else {
            return;
        };
        bytes.push(b'\n');
        let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
        let result = file.write_all(&bytes).and_then(|()| file.flush());
        if let Err(err) = result
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                session_id = %self.session_id,
                error = %err,
                "session log write failed; further failures for this session are not reported"
            );
        }
    }

    /// `session_start`: the client's init settings.
    pub fn session_start(&self, s: &SessionSettings) {
        self.event(
            "session_start",
            json!({
                "client_id": s.client_id,
                "preset": s.preset,
                "preset_label": s.preset_label,
                "curated_prompts": s.curated_prompts.len(),
                "enhancement_enabled": s.enhancement_enabled,
                "auto_extension_enabled": s.auto_extension_enabled,
                "loop_generation_enabled": s.loop_generation_enabled,
                "single_clip_mode": s.single_clip_mode,
            }),
        );
    }

    /// `segment`: one delivered segment (prompt cut to [`MAX_LOGGED_PROMPT_BYTES`]).
    pub fn segment(&self, record: &SegmentRecord) {
        if !self.is_enabled() {
            return;
        }
        let (prompt, truncated) = truncate_at_char(&record.prompt, MAX_LOGGED_PROMPT_BYTES);
        let mut payload = json!({
            "segment_idx": record.segment_idx,
            "prompt": prompt,
            "generate_ms": record.generate_ms,
            "encode_ms": record.encode_ms,
            "first_media_ms": record.first_media_ms,
            "e2e_ms": record.e2e_ms,
            "frames": record.frames,
            "chunks": record.chunks,
            "bytes": record.bytes,
        });
        if let Value::Object(map) = &mut payload {
            if let Some(q) = record.queue_ms {
                map.insert("queue_ms".into(), json!(q));
            }
            if truncated {
                map.insert("prompt_truncated".into(), Value::Bool(true));
            }
        }
        self.event("segment", payload);
    }

    /// `error`: a wire error code and its message.
    pub fn error(&self, code: &str, message: &str) {
        self.event("error", json!({ "code": code, "message": message }));
    }

    /// `session_end`: why the session ended and how many segments it delivered.
    pub fn session_end(&self, reason: &str, segments: u32) {
        self.event(
            "session_end",
            json!({ "reason": reason, "segments": segments }),
        );
    }
}

fn truncate_at_char(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = SessionLogger::new(Some(dir.path().to_path_buf())).open("s1");
        log.event("e", json!({}));
        let path = dir.path().join("session-s1.jsonl");
        let line: Value =
            serde_json::from_str(std::fs::read_to_string(path).expect("log file").trim())
                .expect("one JSON line");
        let ts = line["ts"].as_str().expect("ts");
        // 2026-08-21T11:14:56.789Z: millisecond precision, UTC.
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        humantime::parse_rfc3339(ts).expect("parses back as RFC 3339");
    }

    #[test]
    fn sanitize_keeps_safe_chars_only() {
        assert_eq!(sanitize_id("abc-DEF_1.2"), "abc-DEF_1.2");
        assert_eq!(sanitize_id("../etc/passwd"), ".._etc_passwd");
        assert_eq!(sanitize_id("a b\\c\u{e9}"), "a_b_c_");
        assert_eq!(sanitize_id(&"x".repeat(500)).len(), MAX_FILE_ID_LEN);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_at_char("héllo", 2), ("h", true));
        assert_eq!(truncate_at_char("héllo", 3), ("hé", true));
        assert_eq!(truncate_at_char("hi", 2), ("hi", false));
    }
}
