//! Client → server messages of the Dreamverse product protocol (`/ws`): FastVideo's product
//! web app speaks it (shared/reference/dreamverse-facts.md §3). Generation is server-driven:
//! the client opens a session or a project with its prompts and then steers with toggles,
//! appended prompts and rewrites; it never asks for a segment.
//!
//! Parsing is as lenient as [`parse_client_message`](crate::parse_client_message) (the same
//! field coercions, errors that name the field); unknown keys are ignored. Server messages
//! are rendered by the server's `/ws` adapter.

use crate::error::ParseError;
use crate::lax;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};
use serde_json::Value;

/// Every client `type` value of the product protocol.
pub const DREAMVERSE_TYPES: &[&str] = &[
    "session_init_v2",
    "project_init_v1",
    "end_project_keep_session",
    "append_prompt",
    "rewrite_seed_prompts",
    "set_auto_extension",
    "set_loop_generation",
    "set_generation_paused",
    "set_enhancement",
    "set_rewrite_model",
    "set_rewrite_temperature",
    "reset_to_seed_prompts",
    "restart_generation",
    "leave",
    "simple_generate",
];

/// A product-protocol control message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DreamverseMessage {
    /// `session_init_v2`: opens the session (first frame).
    SessionInit(Box<ProjectInit>),
    /// `project_init_v1`: a new project on the open socket, after `project_idle`.
    ProjectInit(Box<ProjectInit>),
    /// `end_project_keep_session`.
    EndProject,
    /// `append_prompt`.
    AppendPrompt(AppendPrompt),
    /// `rewrite_seed_prompts`.
    RewriteSeedPrompts(RewriteSeedPrompts),
    /// `set_auto_extension {enabled}`.
    SetAutoExtension(bool),
    /// `set_loop_generation {enabled}`.
    SetLoopGeneration(bool),
    /// `set_generation_paused {paused}`.
    SetGenerationPaused(bool),
    /// `set_enhancement {enabled}`.
    SetEnhancement(bool),
    /// `set_rewrite_model {model}`.
    SetRewriteModel(String),
    /// `set_rewrite_temperature {temperature}`.
    SetRewriteTemperature(f64),
    /// `reset_to_seed_prompts`.
    ResetToSeedPrompts,
    /// `restart_generation`.
    RestartGeneration,
    /// `leave`.
    Leave,
    /// `simple_generate` (single-clip mode).
    SimpleGenerate,
}

impl DreamverseMessage {
    /// The wire `type`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::SessionInit(_) => "session_init_v2",
            Self::ProjectInit(_) => "project_init_v1",
            Self::EndProject => "end_project_keep_session",
            Self::AppendPrompt(_) => "append_prompt",
            Self::RewriteSeedPrompts(_) => "rewrite_seed_prompts",
            Self::SetAutoExtension(_) => "set_auto_extension",
            Self::SetLoopGeneration(_) => "set_loop_generation",
            Self::SetGenerationPaused(_) => "set_generation_paused",
            Self::SetEnhancement(_) => "set_enhancement",
            Self::SetRewriteModel(_) => "set_rewrite_model",
            Self::SetRewriteTemperature(_) => "set_rewrite_temperature",
            Self::ResetToSeedPrompts => "reset_to_seed_prompts",
            Self::RestartGeneration => "restart_generation",
            Self::Leave => "leave",
            Self::SimpleGenerate => "simple_generate",
        }
    }
}

/// Body of `session_init_v2` / `project_init_v1` as the product sends it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProjectInit {
    /// Preset id (`custom_editable` for a typed prompt).
    #[serde(default, deserialize_with = "lax::opt_string")]
    pub preset_id: Option<String>,
    /// Preset label.
    #[serde(default, deserialize_with = "lax::opt_string")]
    pub preset_label: Option<String>,
    /// Seed prompts: non-empty strings, trimmed; other entries are dropped.
    #[serde(default, deserialize_with = "prompt_list")]
    pub curated_prompts: Vec<String>,
    /// Used when `curated_prompts` is empty (other init shapes send this name).
    #[serde(default, deserialize_with = "prompt_list")]
    pub segment_prompts: Vec<String>,
    /// A typed prompt the server rewrites into the seed prompts (when no curated ones).
    #[serde(default, deserialize_with = "lax::opt_string")]
    pub initial_rollout_prompt: Option<String>,
    /// `{data_url, mime_type?, name?}` or null (the web app always sends null).
    #[serde(default)]
    pub initial_image: Option<Value>,
    /// Single-clip mode (not served: generation is always a rollout).
    #[serde(default, deserialize_with = "lax::bool")]
    pub single_clip_mode: bool,
    /// Enhance appended prompts (the product's default is true).
    #[serde(default = "yes", deserialize_with = "lax::bool")]
    pub enhancement_enabled: bool,
    /// Auto-extension.
    #[serde(default, deserialize_with = "lax::bool")]
    pub auto_extension_enabled: bool,
    /// Loop generation.
    #[serde(default, deserialize_with = "lax::bool")]
    pub loop_generation_enabled: bool,
}

impl ProjectInit {
    /// The seed prompts: `curated_prompts`, or `segment_prompts` when that is empty.
    pub fn seed_prompts(&self) -> &[String] {
        if self.curated_prompts.is_empty() {
            &self.segment_prompts
        } else {
            &self.curated_prompts
        }
    }

    /// The typed prompt, trimmed; `None` when absent or blank.
    pub fn rollout_prompt(&self) -> Option<&str> {
        self.initial_rollout_prompt
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
}

impl Default for ProjectInit {
    fn default() -> Self {
        Self {
            preset_id: None,
            preset_label: None,
            curated_prompts: Vec::new(),
            segment_prompts: Vec::new(),
            initial_rollout_prompt: None,
            initial_image: None,
            single_clip_mode: false,
            enhancement_enabled: true,
            auto_extension_enabled: false,
            loop_generation_enabled: false,
        }
    }
}

fn yes() -> bool {
    true
}

/// Body of `append_prompt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AppendPrompt {
    /// The client's id for the prompt (a UUID); echoed in the prompt events.
    #[serde(default, deserialize_with = "lax::opt_string")]
    pub prompt_id: Option<String>,
    /// The prompt; an empty one is refused by the server.
    #[serde(default, deserialize_with = "lax::opt_string")]
    pub prompt: Option<String>,
}

/// Body of `rewrite_seed_prompts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RewriteSeedPrompts {
    /// What to change.
    #[serde(default, deserialize_with = "lax::opt_string")]
    pub rewrite_instruction: Option<String>,
    /// The prompts the client shows (its prompt window); empty: the server's seed prompts.
    #[serde(default, deserialize_with = "prompt_list")]
    pub prompt_window_prompts: Vec<String>,
}

#[derive(Deserialize)]
struct Enabled {
    #[serde(deserialize_with = "lax::bool")]
    enabled: bool,
}

#[derive(Deserialize)]
struct Paused {
    #[serde(deserialize_with = "lax::bool")]
    paused: bool,
}

#[derive(Deserialize)]
struct Model {
    #[serde(deserialize_with = "lax::string")]
    model: String,
}

#[derive(Deserialize)]
struct Temperature {
    #[serde(deserialize_with = "lax::opt_float")]
    temperature: Option<f64>,
}

/// A list of prompts: null or a list; non-strings and blank strings are dropped, the rest
/// trimmed (Dreamverse's init parsing).
fn prompt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|v| match v {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                _ => None,
            })
            .collect()),
        other => Err(D::Error::custom(format!(
            "expected a list of strings, got {}",
            lax::describe(&other)
        ))),
    }
}

/// Parses one product-protocol text frame. Errors name the field, as
/// [`parse_client_message`](crate::parse_client_message)'s do; an unknown `type` lists the
/// product's types.
pub fn parse_dreamverse_message(text: &str) -> Result<DreamverseMessage, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::not_json(&e))?;
    let (type_name, body) = crate::client::split_type(value)?;
    use DreamverseMessage as M;
    Ok(match type_name.as_str() {
        "session_init_v2" => M::SessionInit(Box::new(body_of(body, "session_init_v2")?)),
        "project_init_v1" => M::ProjectInit(Box::new(body_of(body, "project_init_v1")?)),
        "end_project_keep_session" => M::EndProject,
        "append_prompt" => M::AppendPrompt(body_of(body, "append_prompt")?),
        "rewrite_seed_prompts" => M::RewriteSeedPrompts(body_of(body, "rewrite_seed_prompts")?),
        "set_auto_extension" => {
            M::SetAutoExtension(body_of::<Enabled>(body, "set_auto_extension")?.enabled)
        }
        "set_loop_generation" => {
            M::SetLoopGeneration(body_of::<Enabled>(body, "set_loop_generation")?.enabled)
        }
        "set_generation_paused" => {
            M::SetGenerationPaused(body_of::<Paused>(body, "set_generation_paused")?.paused)
        }
        "set_enhancement" => {
            M::SetEnhancement(body_of::<Enabled>(body, "set_enhancement")?.enabled)
        }
        "set_rewrite_model" => {
            M::SetRewriteModel(body_of::<Model>(body, "set_rewrite_model")?.model)
        }
        "set_rewrite_temperature" => {
            let t = body_of::<Temperature>(body, "set_rewrite_temperature")?;
            match t.temperature {
                Some(t) if t.is_finite() => M::SetRewriteTemperature(t),
                _ => {
                    return Err(ParseError::MissingField {
                        message_type: "set_rewrite_temperature",
                        field: "temperature".into(),
                    });
                }
            }
        }
        "reset_to_seed_prompts" => M::ResetToSeedPrompts,
        "restart_generation" => M::RestartGeneration,
        "leave" => M::Leave,
        "simple_generate" => M::SimpleGenerate,
        _ => {
            return Err(ParseError::UnknownProductType {
                got: lax::quote(&type_name),
            });
        }
    })
}

fn body_of<T: serde::de::DeserializeOwned>(
    body: Value,
    message_type: &'static str,
) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(body)
        .map_err(|e| ParseError::from_field_error(message_type, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_web_apps_init_parses_with_its_defaults() {
        let m = parse_dreamverse_message(
            r#"{"type":"session_init_v2","preset_id":"custom_editable","preset_label":"Custom rollout",
                "curated_prompts":[],"initial_rollout_prompt":"A glass whale","initial_image":null,
                "single_clip_mode":false,"auto_extension_enabled":false,"loop_generation_enabled":false}"#,
        )
        .expect("parses");
        let DreamverseMessage::SessionInit(init) = m else {
            panic!("not an init: {m:?}")
        };
        assert_eq!(init.preset_id.as_deref(), Some("custom_editable"));
        assert_eq!(init.rollout_prompt(), Some("A glass whale"));
        assert!(init.enhancement_enabled, "the product's default");
        assert!(init.seed_prompts().is_empty());
    }

    #[test]
    fn prompt_lists_keep_non_blank_strings_trimmed() {
        let m = parse_dreamverse_message(
            r#"{"type":"project_init_v1","curated_prompts":[" a ", "", 5, null, "b"]}"#,
        )
        .expect("parses");
        let DreamverseMessage::ProjectInit(init) = m else {
            panic!("{m:?}")
        };
        assert_eq!(init.seed_prompts(), ["a", "b"]);
        let m =
            parse_dreamverse_message(r#"{"type":"session_init_v2","segment_prompts":["x","y"]}"#)
                .expect("parses");
        let DreamverseMessage::SessionInit(init) = m else {
            panic!("{m:?}")
        };
        assert_eq!(init.seed_prompts(), ["x", "y"]);
    }

    #[test]
    fn toggles_and_commands() {
        let cases = [
            (
                r#"{"type":"set_auto_extension","enabled":true}"#,
                DreamverseMessage::SetAutoExtension(true),
            ),
            (
                r#"{"type":"set_loop_generation","enabled":"off"}"#,
                DreamverseMessage::SetLoopGeneration(false),
            ),
            (
                r#"{"type":"set_generation_paused","paused":1}"#,
                DreamverseMessage::SetGenerationPaused(true),
            ),
            (
                r#"{"type":"reset_to_seed_prompts"}"#,
                DreamverseMessage::ResetToSeedPrompts,
            ),
            (
                r#"{"type":"restart_generation","extra":1}"#,
                DreamverseMessage::RestartGeneration,
            ),
            (
                r#"{"type":"end_project_keep_session"}"#,
                DreamverseMessage::EndProject,
            ),
            (
                r#"{"type":"append_prompt","prompt_id":"u1","prompt":"a fox"}"#,
                DreamverseMessage::AppendPrompt(AppendPrompt {
                    prompt_id: Some("u1".into()),
                    prompt: Some("a fox".into()),
                }),
            ),
            (
                r#"{"type":"rewrite_seed_prompts","rewrite_instruction":"night","prompt_window_prompts":["a","b"]}"#,
                DreamverseMessage::RewriteSeedPrompts(RewriteSeedPrompts {
                    rewrite_instruction: Some("night".into()),
                    prompt_window_prompts: vec!["a".into(), "b".into()],
                }),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_dreamverse_message(text).expect(text), want, "{text}");
        }
    }

    #[test]
    fn errors_name_the_field_and_the_product_types() {
        let e = parse_dreamverse_message(r#"{"type":"set_auto_extension"}"#).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "set_auto_extension: missing required field \"enabled\""
        );
        let e = parse_dreamverse_message(r#"{"type":"set_loop_generation","enabled":"maybe"}"#)
            .expect_err("refused");
        assert!(
            e.to_string().starts_with("set_loop_generation.enabled: "),
            "{e}"
        );
        let e = parse_dreamverse_message(r#"{"type":"segment_prompt_source","prompt":"x"}"#)
            .expect_err("refused");
        assert!(e.to_string().contains("append_prompt"), "{e}");
        assert!(!e.to_string().contains("snapshot_state"), "{e}");
        let e = parse_dreamverse_message("[1]").expect_err("refused");
        assert!(matches!(e, ParseError::NotObject { .. }));
        let e = parse_dreamverse_message(r#"{"type":"session_init_v2","curated_prompts":"a"}"#)
            .expect_err("refused");
        assert_eq!(e.field(), Some("curated_prompts"));
        let e =
            parse_dreamverse_message(r#"{"type":"set_rewrite_temperature"}"#).expect_err("refused");
        assert_eq!(e.field(), Some("temperature"));
    }
}
