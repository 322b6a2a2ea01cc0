//! The body of Dreamverse's `GET`/`POST /prompt-system-config`: the four system prompts, the
//! rewrite model and temperature, and the files the prompts are saved to.

use crate::enhancer::{PromptEnhancer, PromptState, write};
use crate::system_prompts::{
    MAX_SYSTEM_PROMPT_BYTES, SystemPromptError, SystemPromptKind, write_prompt_file,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, PoisonError};

/// Highest `rewrite_temperature` accepted (the OpenAI API's range is 0..=2).
pub const MAX_TEMPERATURE: f32 = 2.0;

/// `GET /prompt-system-config`. The web app's prompt editor reads the first three prompts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptSystemConfig {
    /// System prompt of enhance (`enhance.txt`).
    pub next_segment_system_prompt: String,
    /// System prompt of auto-extend (`auto_extend.txt`).
    pub auto_extension_system_prompt: String,
    /// System prompt of a rewrite of an existing window (`rewrite_window.txt`).
    pub rewrite_window_system_prompt: String,
    /// System prompt of a rewrite from an instruction alone (`rewrite.txt`).
    pub rewrite_user_system_prompt: String,
    /// Model rewrites try first.
    pub rewrite_model: String,
    /// Models `rewrite_model` may name: those of the registered providers, in order.
    pub rewrite_model_options: Vec<String>,
    /// Temperature of rewrites.
    pub rewrite_temperature: f32,
    /// File the enhance prompt is read from and saved to (`null` without a directory).
    pub next_segment_system_prompt_path: Option<String>,
    /// File of the auto-extension prompt.
    pub auto_extension_system_prompt_path: Option<String>,
    /// File of the rewrite-window prompt.
    pub rewrite_window_system_prompt_path: Option<String>,
    /// File of the rewrite-user prompt.
    pub rewrite_user_system_prompt_path: Option<String>,
}

/// `POST /prompt-system-config`: every key optional; absent keys keep their value. The
/// read-only keys of the GET shape (`rewrite_model_options`, `*_path`) are accepted and
/// ignored when deserializing, so a client may post back what it read; any other key is an
/// error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(from = "UpdateWire")]
pub struct PromptSystemConfigUpdate {
    /// New enhance system prompt (not blank).
    pub next_segment_system_prompt: Option<String>,
    /// New auto-extension system prompt (not blank).
    pub auto_extension_system_prompt: Option<String>,
    /// New rewrite-window system prompt (not blank).
    pub rewrite_window_system_prompt: Option<String>,
    /// New rewrite-user system prompt (not blank).
    pub rewrite_user_system_prompt: Option<String>,
    /// One of `rewrite_model_options`.
    pub rewrite_model: Option<String>,
    /// 0..=2.
    pub rewrite_temperature: Option<f32>,
}

/// The POST body as sent: the update plus the read-only keys, which are dropped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the read-only fields exist only to be accepted
struct UpdateWire {
    #[serde(default)]
    next_segment_system_prompt: Option<String>,
    #[serde(default)]
    auto_extension_system_prompt: Option<String>,
    #[serde(default)]
    rewrite_window_system_prompt: Option<String>,
    #[serde(default)]
    rewrite_user_system_prompt: Option<String>,
    #[serde(default)]
    rewrite_model: Option<String>,
    #[serde(default)]
    rewrite_temperature: Option<f32>,
    #[serde(default)]
    rewrite_model_options: serde::de::IgnoredAny,
    #[serde(default)]
    next_segment_system_prompt_path: serde::de::IgnoredAny,
    #[serde(default)]
    auto_extension_system_prompt_path: serde::de::IgnoredAny,
    #[serde(default)]
    rewrite_window_system_prompt_path: serde::de::IgnoredAny,
    #[serde(default)]
    rewrite_user_system_prompt_path: serde::de::IgnoredAny,
}

impl From<UpdateWire> for PromptSystemConfigUpdate {
    fn from(w: UpdateWire) -> Self {
        Self {
            next_segment_system_prompt: w.next_segment_system_prompt,
            auto_extension_system_prompt: w.auto_extension_system_prompt,
            rewrite_window_system_prompt: w.rewrite_window_system_prompt,
            rewrite_user_system_prompt: w.rewrite_user_system_prompt,
            rewrite_model: w.rewrite_model,
            rewrite_temperature: w.rewrite_temperature,
        }
    }
}

/// Why an update was refused; nothing was changed. The `Display` text is meant for the
/// HTTP 400 `detail`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemConfigError {
    /// A prompt is blank (Dreamverse: `"<key> cannot be empty."`).
    #[error("{key} cannot be empty.")]
    EmptyPrompt {
        /// The key.
        key: &'static str,
    },
    /// A prompt is larger than [`MAX_SYSTEM_PROMPT_BYTES`].
    #[error("{key} is larger than {max} bytes.")]
    PromptTooLarge {
        /// The key.
        key: &'static str,
        /// The limit.
        max: usize,
    },
    /// `rewrite_model` is not one of the options.
    #[error("Unknown rewrite_model {model:?}; choose one of: {}.", .options.join(", "))]
    UnknownModel {
        /// What was asked for.
        model: String,
        /// What is available.
        options: Vec<String>,
    },
    /// `rewrite_temperature` is not a number in 0..=2.
    #[error("rewrite_temperature must be between 0 and {MAX_TEMPERATURE}.")]
    BadTemperature,
    /// Saving a prompt file failed (HTTP 500 rather than 400).
    #[error(transparent)]
    Save(#[from] SystemPromptError),
}

impl PromptEnhancer {
    /// The current `/prompt-system-config`.
    pub fn system_config(&self) -> PromptSystemConfig {
        let state = self.state();
        let options = self.model_options();
        let path = |kind: SystemPromptKind| {
            self.inner
                .dir
                .as_ref()
                .map(|d| d.join(kind.file_name()).display().to_string())
        };
        let prompt = |kind| state.prompts.get(kind).to_owned();
        PromptSystemConfig {
            next_segment_system_prompt: prompt(SystemPromptKind::Enhance),
            auto_extension_system_prompt: prompt(SystemPromptKind::AutoExtend),
            rewrite_window_system_prompt: prompt(SystemPromptKind::RewriteWindow),
            rewrite_user_system_prompt: prompt(SystemPromptKind::Rewrite),
            rewrite_model: state
                .rewrite_model
                .clone()
                .or_else(|| options.first().cloned())
                .unwrap_or_default(),
            rewrite_model_options: options,
            rewrite_temperature: state.rewrite_temperature,
            next_segment_system_prompt_path: path(SystemPromptKind::Enhance),
            auto_extension_system_prompt_path: path(SystemPromptKind::AutoExtend),
            rewrite_window_system_prompt_path: path(SystemPromptKind::RewriteWindow),
            rewrite_user_system_prompt_path: path(SystemPromptKind::Rewrite),
        }
    }

    /// Applies a `POST /prompt-system-config` body and returns the new GET shape. Everything
    /// is checked before anything changes. With a system-prompt directory, changed prompts
    /// are saved to their files (temporary file + rename; blocking IO) so a reload or a
    /// restart keeps them; without one they live in memory. `rewrite_model` reorders
    /// rewrites only: providers with that model are tried first.
    pub fn update_system_config(
        &self,
        update: &PromptSystemConfigUpdate,
    ) -> Result<PromptSystemConfig, SystemConfigError> {
        let edits: Vec<(SystemPromptKind, &String)> = [
            (
                SystemPromptKind::Enhance,
                &update.next_segment_system_prompt,
            ),
            (
                SystemPromptKind::AutoExtend,
                &update.auto_extension_system_prompt,
            ),
            (
                SystemPromptKind::RewriteWindow,
                &update.rewrite_window_system_prompt,
            ),
            (
                SystemPromptKind::Rewrite,
                &update.rewrite_user_system_prompt,
            ),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        for (kind, text) in &edits {
            if text.trim().is_empty() {
                return Err(SystemConfigError::EmptyPrompt {
                    key: kind.config_key(),
                });
            }
            if text.len() > MAX_SYSTEM_PROMPT_BYTES {
                return Err(SystemConfigError::PromptTooLarge {
                    key: kind.config_key(),
                    max: MAX_SYSTEM_PROMPT_BYTES,
                });
            }
        }
        let model = match &update.rewrite_model {
            Some(model) => {
                let options = self.model_options();
                let model = model.trim();
                if !options.iter().any(|o| o == model) {
                    return Err(SystemConfigError::UnknownModel {
                        model: model.to_owned(),
                        options,
                    });
                }
                Some(model.to_owned())
            }
            None => None,
        };
        if let Some(t) = update.rewrite_temperature
            && !(t.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&t))
        {
            return Err(SystemConfigError::BadTemperature);
        }

        // One writer at a time, and the watcher must not read a file half-way through.
        let mut files = self
            .inner
            .files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next: PromptState = (*self.state()).clone();
        for (kind, text) in &edits {
            let text = text.trim().to_owned();
            let source = match &self.inner.dir {
                Some(dir) => {
                    let path = dir.join(kind.file_name());
                    write_prompt_file(&path, &text)?;
                    Some(path)
                }
                None => None,
            };
            next.prompts.set(*kind, text, source);
        }
        if let Some(model) = model {
            next.rewrite_model = Some(model);
        }
        if let Some(t) = update.rewrite_temperature {
            next.rewrite_temperature = t;
        }
        if let Some(dir) = &self.inner.dir {
            // Our own writes are not a change the watcher should re-read.
            *files = crate::system_prompts::fingerprint(dir);
        }
        *write(&self.inner.state) = Arc::new(next);
        drop(files);
        if !edits.is_empty() {
            self.bump_reloads();
        }
        Ok(self.system_config())
    }

    /// Distinct models of the registered providers, in try order.
    fn model_options(&self) -> Vec<String> {
        let mut options: Vec<String> = Vec::new();
        for p in self.providers() {
            if !options.contains(&p.model) {
                options.push(p.model);
            }
        }
        options
    }
}
