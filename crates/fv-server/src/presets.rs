//! Curated presets for the Dreamverse web app (`GET /curated-presets`,
//! `POST /curated-presets/append`): a JSON file of `{id, label, segment_prompts}` entries,
//! `streaming.dreamverse.presets_file`, or the list built into the server
//! (`configs/dreamverse-presets.json`).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The presets built into the server.
pub const BUILT_IN_PRESETS: &str = include_str!("../../../configs/dreamverse-presets.json");
/// Most presets a store keeps (appends beyond it are refused).
pub const MAX_PRESETS: usize = 1000;
/// Most prompts in one preset.
pub const MAX_PRESET_PROMPTS: usize = 64;
/// Longest preset id, after sanitizing, and longest label, in characters.
pub const MAX_PRESET_NAME_CHARS: usize = 128;
/// Largest presets file read.
pub const MAX_PRESETS_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One preset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preset {
    pub id: String,
    pub label: String,
    pub segment_prompts: Vec<String>,
}

impl Preset {
    /// What the web app keeps: a non-empty id and label and at least two non-empty prompts.
    fn usable(&self) -> bool {
        !self.id.trim().is_empty()
            && !self.label.trim().is_empty()
            && self
                .segment_prompts
                .iter()
                .filter(|p| !p.trim().is_empty())
                .count()
                >= 2
    }
}

#[derive(Debug, Deserialize)]
struct PresetFile {
    presets: Vec<Preset>,
}

/// Why an append was refused: the HTTP status and Dreamverse's `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendError {
    pub status: u16,
    pub detail: String,
}

fn refuse(status: u16, detail: impl Into<String>) -> AppendError {
    AppendError {
        status,
        detail: detail.into(),
    }
}

/// The presets a server serves.
#[derive(Debug)]
pub struct PresetStore {
    presets: Mutex<Vec<Preset>>,
    file: Option<PathBuf>,
}

fn parse(text: &str, origin: &str) -> Result<Vec<Preset>, String> {
    let file: PresetFile =
        serde_json::from_str(text).map_err(|e| format!("{origin}: not a presets file: {e}"))?;
    Ok(file.presets.into_iter().filter(Preset::usable).collect())
}

/// `[a-z0-9_]` only: lowercase letters and digits kept, anything else becomes `_`.
pub fn sanitize_id(id: &str) -> String {
    id.trim()
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect()
}

impl PresetStore {
    /// Reads `file` (a missing file is an empty list, created at the first append), or the
    /// built-in presets when `None`.
    pub fn open(file: Option<&str>) -> Result<Self, String> {
        let (presets, file) = match file {
            None => (parse(BUILT_IN_PRESETS, "built-in presets")?, None),
            Some(path) => {
                let path = PathBuf::from(path);
                let presets = match std::fs::metadata(&path) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                    Ok(meta) if meta.len() > MAX_PRESETS_FILE_BYTES => {
                        return Err(format!(
                            "{}: larger than {MAX_PRESETS_FILE_BYTES} bytes",
                            path.display()
                        ));
                    }
                    Ok(_) => {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        parse(&text, &path.display().to_string())?
                    }
                };
                (presets, Some(path))
            }
        };
        Ok(Self {
            presets: Mutex::new(presets),
            file,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Preset>> {
        // A panic while holding the lock cannot leave the list half-written (pushes only).
        self.presets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn paths(&self) -> (Value, Value) {
        let file = self
            .file
            .as_deref()
            .map(|p| Value::String(p.display().to_string()))
            .unwrap_or(Value::Null);
        (file, Value::Null)
    }

    /// The `GET /curated-presets` body.
    pub fn list(&self) -> Value {
        let presets = self.lock().clone();
        let (file_path, fallback_file_path) = self.paths();
        json!({
            "presets": presets,
            "count": presets.len(),
            "file_path": file_path,
            "fallback_file_path": fallback_file_path,
        })
    }

    /// `POST /curated-presets/append`: checks the body, saves the file (temporary file +
    /// rename) when there is one, and returns Dreamverse's answer.
    pub fn append(&self, body: &Value) -> Result<Value, AppendError> {
        let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("").trim();
        let id = sanitize_id(text("id"));
        let label = text("label").to_owned();
        if id.trim_matches('_').is_empty() {
            return Err(refuse(400, "id cannot be empty."));
        }
        if label.is_empty() {
            return Err(refuse(400, "label cannot be empty."));
        }
        if id.chars().count() > MAX_PRESET_NAME_CHARS
            || label.chars().count() > MAX_PRESET_NAME_CHARS
        {
            return Err(refuse(
                400,
                format!("id and label must be at most {MAX_PRESET_NAME_CHARS} characters."),
            ));
        }
        let prompts: Vec<String> = match body.get("segment_prompts") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        if prompts.len() < 2 {
            return Err(refuse(400, "segment_prompts needs at least 2 prompts."));
        }
        if prompts.len() > MAX_PRESET_PROMPTS {
            return Err(refuse(
                400,
                format!("segment_prompts has more than {MAX_PRESET_PROMPTS} prompts."),
            ));
        }
        if prompts
            .iter()
            .any(|p| p.len() > crate::session::MAX_PROMPT_BYTES)
        {
            return Err(refuse(
                400,
                format!(
                    "a prompt is longer than {} bytes.",
                    crate::session::MAX_PROMPT_BYTES
                ),
            ));
        }
        let preset = Preset {
            id,
            label,
            segment_prompts: prompts,
        };
        let mut presets = self.lock();
        if presets.iter().any(|p| p.id == preset.id) {
            return Err(refuse(
                409,
                format!("A preset with id {:?} already exists.", preset.id),
            ));
        }
        if presets.len() >= MAX_PRESETS {
            return Err(refuse(
                409,
                format!("The preset list is full ({MAX_PRESETS})."),
            ));
        }
        let mut next = presets.clone();
        next.push(preset.clone());
        if let Some(file) = &self.file {
            save(file, &next).map_err(|e| refuse(500, e))?;
        }
        *presets = next;
        let count = presets.len();
        drop(presets);
        let (file_path, fallback_file_path) = self.paths();
        Ok(json!({
            "type": "curated_preset_appended",
            "preset": preset,
            "count": count,
            "file_path": file_path,
            "fallback_file_path": fallback_file_path,
        }))
    }
}

fn save(file: &Path, presets: &[Preset]) -> Result<(), String> {
    let text = serde_json::to_string_pretty(&json!({ "presets": presets }))
        .map_err(|e| format!("cannot write the presets: {e}"))?;
    let tmp = file.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| format!("cannot save {}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_presets_are_usable() {
        let store = PresetStore::open(None).expect("built-in presets parse");
        let list = store.list();
        let presets = list["presets"].as_array().expect("a list");
        assert!(presets.len() >= 3, "{list}");
        for p in presets {
            assert!(
                p["segment_prompts"].as_array().expect("prompts").len() >= 2,
                "{p}"
            );
        }
        assert_eq!(list["count"], presets.len());
        assert_eq!(list["file_path"], Value::Null);
    }

    #[test]
    fn appends_are_checked_sanitized_and_saved() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("presets.json");
        let store = PresetStore::open(Some(file.to_str().expect("utf-8"))).expect("open");
        assert_eq!(store.list()["count"], 0);
        let ok = store
            .append(
                &json!({"id": "My Story!", "label": "Mine", "segment_prompts": ["a", " b ", ""]}),
            )
            .expect("appended");
        assert_eq!(ok["type"], "curated_preset_appended");
        assert_eq!(ok["preset"]["id"], "my_story_");
        assert_eq!(ok["preset"]["segment_prompts"], json!(["a", "b"]));
        assert_eq!(ok["count"], 1);
        let dup =
            store.append(&json!({"id": "my story!", "label": "x", "segment_prompts": ["a", "b"]}));
        assert_eq!(dup.map_err(|e| e.status), Err(409));
        let short = store.append(&json!({"id": "s", "label": "x", "segment_prompts": ["a"]}));
        assert_eq!(short.map_err(|e| e.status), Err(400));
        let unlabelled =
            store.append(&json!({"id": "s", "label": " ", "segment_prompts": ["a", "b"]}));
        assert_eq!(
            unlabelled.map_err(|e| e.detail),
            Err("label cannot be empty.".to_owned())
        );
        // The file holds the preset; a new store reads it back.
        let again = PresetStore::open(Some(file.to_str().expect("utf-8"))).expect("reopen");
        assert_eq!(again.list()["presets"][0]["id"], "my_story_");
    }

    #[test]
    fn a_broken_file_is_an_error_and_unusable_entries_are_dropped() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("p.json");
        std::fs::write(&file, "{not json").expect("write");
        assert!(PresetStore::open(Some(file.to_str().expect("utf-8"))).is_err());
        std::fs::write(
            &file,
            r#"{"presets":[{"id":"a","label":"A","segment_prompts":["x","y"]},{"id":"b","label":"B","segment_prompts":["x"]}]}"#,
        )
        .expect("write");
        let store = PresetStore::open(Some(file.to_str().expect("utf-8"))).expect("open");
        assert_eq!(store.list()["count"], 1);
    }
}
