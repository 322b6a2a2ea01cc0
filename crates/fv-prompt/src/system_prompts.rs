//! System prompts: built-in defaults, optionally overridden by files in a directory.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest system-prompt file read, in bytes. Real system prompts are a few KiB; the cap
/// keeps a wrong file (a log, a model) out of every request.
pub const MAX_SYSTEM_PROMPT_BYTES: usize = 256 * 1024;

/// The four system prompts. FastVideo has the first three (`enhance.txt`, `auto_extend.txt`,
/// `rewrite.txt`); the fourth is the Dreamverse rewrite of an existing prompt window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SystemPromptKind {
    /// [`PromptEnhancer::enhance`](crate::PromptEnhancer::enhance): one user prompt made
    /// detailed.
    Enhance,
    /// [`PromptEnhancer::auto_extend`](crate::PromptEnhancer::auto_extend): the next prompt of
    /// a story.
    AutoExtend,
    /// [`PromptEnhancer::rewrite`](crate::PromptEnhancer::rewrite) from a seed alone.
    Rewrite,
    /// [`PromptEnhancer::rewrite`](crate::PromptEnhancer::rewrite) of an existing window.
    RewriteWindow,
}

impl SystemPromptKind {
    /// Every kind, in file order.
    pub const ALL: [Self; 4] = [
        Self::Enhance,
        Self::AutoExtend,
        Self::Rewrite,
        Self::RewriteWindow,
    ];

    /// File name inside the system-prompt directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Enhance => "enhance.txt",
            Self::AutoExtend => "auto_extend.txt",
            Self::Rewrite => "rewrite.txt",
            Self::RewriteWindow => "rewrite_window.txt",
        }
    }

    /// Key in Dreamverse's `/prompt-system-config` (`<key>_path` names the file).
    pub fn config_key(self) -> &'static str {
        match self {
            Self::Enhance => "next_segment_system_prompt",
            Self::AutoExtend => "auto_extension_system_prompt",
            Self::Rewrite => "rewrite_user_system_prompt",
            Self::RewriteWindow => "rewrite_window_system_prompt",
        }
    }

    /// The built-in prompt.
    pub fn default_text(self) -> &'static str {
        match self {
            Self::Enhance => DEFAULT_ENHANCE,
            Self::AutoExtend => DEFAULT_AUTO_EXTEND,
            Self::Rewrite => DEFAULT_REWRITE,
            Self::RewriteWindow => DEFAULT_REWRITE_WINDOW,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Enhance => 0,
            Self::AutoExtend => 1,
            Self::Rewrite => 2,
            Self::RewriteWindow => 3,
        }
    }
}

const DEFAULT_ENHANCE: &str = "You write prompts for a text-to-video model that generates \
5-second clips. Rewrite the user's idea as one vivid, concrete prompt of 40 to 80 words: name \
the subject, the action, the setting, the lighting, and the camera framing and movement. Keep \
every detail the user gave and add nothing that contradicts it. Answer with the prompt only: \
no preamble, no quotes, no list.";

const DEFAULT_AUTO_EXTEND: &str = "You continue a story told as consecutive 5-second video \
clips. The user message lists the prompts used so far, oldest first, one per line. Write the \
prompt for the next clip: keep the same characters, setting and visual style, move the action \
one natural step forward, and describe the camera. One paragraph of 40 to 80 words. Answer \
with the prompt only.";

const DEFAULT_REWRITE: &str = "You turn one idea into prompts for consecutive 5-second video \
clips that tell a coherent story. Keep the characters, setting and visual style consistent \
from clip to clip and let the action progress. Write each prompt as one line of 30 to 70 \
words. Answer with the prompts only, one per line, numbered 1., 2., and so on, with no other \
text.";

const DEFAULT_REWRITE_WINDOW: &str = "You edit a sequence of prompts for consecutive 5-second \
video clips. The user message lists the current prompts, then an instruction. Apply the \
instruction to the prompts while keeping the story, the characters and the order, and change \
nothing the instruction does not ask for. Write the number of prompts asked for, one per line, \
numbered 1., 2., and so on, with no other text.";

/// Why a system prompt could not be read, checked or saved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemPromptError {
    /// The directory does not exist or is not a directory.
    #[error("system prompt directory {}: {message}", .path.display())]
    BadDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file exists but could not be read.
    #[error("{}: {message}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
    /// A file is larger than [`MAX_SYSTEM_PROMPT_BYTES`].
    #[error("{}: larger than {max} bytes", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
    /// A file is not UTF-8.
    #[error("{}: not UTF-8 text", .path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// Saving an edited prompt failed.
    #[error("saving {}: {message}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        message: String,
    },
}

/// The four system prompts in force, and where each came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPrompts {
    texts: [String; 4],
    sources: [Option<PathBuf>; 4],
}

impl Default for SystemPrompts {
    fn default() -> Self {
        Self::defaults()
    }
}

impl SystemPrompts {
    /// The built-in prompts.
    pub fn defaults() -> Self {
        Self {
            texts: SystemPromptKind::ALL.map(|k| k.default_text().to_owned()),
            sources: [None, None, None, None],
        }
    }

    /// The built-in prompts overridden by the files of `dir`; a missing or blank file keeps
    /// the default. Errors name the file: a directory that is missing, an unreadable file,
    /// one over [`MAX_SYSTEM_PROMPT_BYTES`], one that is not UTF-8.
    pub fn load_dir(dir: &Path) -> Result<Self, SystemPromptError> {
        check_dir(dir)?;
        let mut prompts = Self::defaults();
        for kind in SystemPromptKind::ALL {
            let path = dir.join(kind.file_name());
            if let Some(text) = read_prompt_file(&path)? {
                prompts.set(kind, text, Some(path));
            }
        }
        Ok(prompts)
    }

    /// The prompt of `kind`.
    pub fn get(&self, kind: SystemPromptKind) -> &str {
        &self.texts[kind.index()]
    }

    /// The file the prompt of `kind` was read from; `None` for the built-in one.
    pub fn source(&self, kind: SystemPromptKind) -> Option<&Path> {
        self.sources[kind.index()].as_deref()
    }

    pub(crate) fn set(&mut self, kind: SystemPromptKind, text: String, source: Option<PathBuf>) {
        self.texts[kind.index()] = text;
        self.sources[kind.index()] = source;
    }
}

fn check_dir(dir: &Path) -> Result<(), SystemPromptError> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SystemPromptError::BadDir {
            path: dir.to_owned(),
            message: "not a directory".into(),
        }),
        Err(e) => Err(SystemPromptError::BadDir {
            path: dir.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// The trimmed text of `path`; `None` when it is missing or blank.
fn read_prompt_file(path: &Path) -> Result<Option<String>, SystemPromptError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(SystemPromptError::Read {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
    };
    let mut bytes = Vec::new();
    // One byte past the cap tells "too large" from "exactly at the cap".
    file.take(MAX_SYSTEM_PROMPT_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| SystemPromptError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if bytes.len() > MAX_SYSTEM_PROMPT_BYTES {
        return Err(SystemPromptError::TooLarge {
            path: path.to_owned(),
            max: MAX_SYSTEM_PROMPT_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| SystemPromptError::NotUtf8 {
        path: path.to_owned(),
    })?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader (the watcher)
/// never sees half a prompt.
pub(crate) fn write_prompt_file(path: &Path, text: &str) -> Result<(), SystemPromptError> {
    let err = |e: io::Error| SystemPromptError::Write {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    fs::write(&tmp, format!("{text}\n")).map_err(err)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })
}

/// What the files of a directory looked like at one poll: modification time and length of
/// each (`None`: missing). A change of either means "re-read".
pub(crate) type Fingerprint = [Option<(Option<SystemTime>, u64)>; 4];

pub(crate) fn fingerprint(dir: &Path) -> Fingerprint {
    SystemPromptKind::ALL.map(|kind| {
        fs::metadata(dir.join(kind.file_name()))
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_files_are_distinct() {
        let files: std::collections::BTreeSet<_> = SystemPromptKind::ALL
            .iter()
            .map(|k| k.file_name())
            .collect();
        let keys: std::collections::BTreeSet<_> = SystemPromptKind::ALL
            .iter()
            .map(|k| k.config_key())
            .collect();
        assert_eq!(files.len(), 4);
        assert_eq!(keys.len(), 4);
        for k in SystemPromptKind::ALL {
            assert!(!k.default_text().trim().is_empty());
            assert_eq!(SystemPrompts::defaults().get(k), k.default_text());
            assert_eq!(SystemPrompts::defaults().source(k), None);
        }
    }
}
