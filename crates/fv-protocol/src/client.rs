//! Client → server control messages (JSON text frames).

use crate::error::ParseError;
use crate::lax::{self, WireEnum};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A control message sent by the client: a JSON text frame with a string `type`.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "type")]
// One message per frame, parsed and consumed at once: its size in memory does not matter, and
// boxing the init would only make every match on it clumsier.
#[allow(clippy::large_enum_variant)]
pub enum ClientMessage {
    /// Opens the session; must be the first frame.
    #[serde(rename = "session_init_v2")]
    SessionInitV2(SessionInitV2),
    /// Requests the next segment.
    #[serde(rename = "segment_prompt_source")]
    SegmentPromptSource(SegmentPromptSource),
    /// Replaces the stored curated prompts. No reply.
    #[serde(rename = "seed_prompts_updated")]
    SeedPromptsUpdated(SeedPromptsUpdated),
    /// Stores the prompt-enhancement toggle. No reply.
    #[serde(rename = "enhancement_updated")]
    EnhancementUpdated(Toggle),
    /// Stores the auto-extension toggle. No reply.
    #[serde(rename = "auto_extension_updated")]
    AutoExtensionUpdated(Toggle),
    /// Stores the loop-generation toggle. No reply.
    #[serde(rename = "loop_generation_updated")]
    LoopGenerationUpdated(Toggle),
    /// Stores the paused flag (generation is not paused by it). No reply.
    #[serde(rename = "generation_paused_updated")]
    GenerationPausedUpdated(PausedToggle),
    /// Asks for the stored continuation state; answered by `continuation_state_snapshot`
    /// or an `internal_error` error.
    #[serde(rename = "snapshot_state")]
    SnapshotState,
}

impl ClientMessage {
    /// Every client `type` value, in protocol order.
    pub const TYPES: &'static [&'static str] = &[
        "session_init_v2",
        "segment_prompt_source",
        "seed_prompts_updated",
        "enhancement_updated",
        "auto_extension_updated",
        "loop_generation_updated",
        "generation_paused_updated",
        "snapshot_state",
    ];

    /// The wire `type` of this message, e.g. `"segment_prompt_source"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::SessionInitV2(_) => "session_init_v2",
            Self::SegmentPromptSource(_) => "segment_prompt_source",
            Self::SeedPromptsUpdated(_) => "seed_prompts_updated",
            Self::EnhancementUpdated(_) => "enhancement_updated",
            Self::AutoExtensionUpdated(_) => "auto_extension_updated",
            Self::LoopGenerationUpdated(_) => "loop_generation_updated",
            Self::GenerationPausedUpdated(_) => "generation_paused_updated",
            Self::SnapshotState => "snapshot_state",
        }
    }

    /// Serializes the message as one JSON text frame (for test clients and tools).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .expect("client messages hold only string-keyed maps, so serialization cannot fail")
    }
}

/// Goes through [`parse_client_value`], so `serde_json::from_str::<ClientMessage>` accepts
/// exactly what [`parse_client_message`] accepts (its error is the [`ParseError`] text).
impl<'de> Deserialize<'de> for ClientMessage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        parse_client_value(value).map_err(serde::de::Error::custom)
    }
}

/// Parses one client text frame.
///
/// Errors name the offending field (`segment_prompt_source.seed: expected an integer, got
/// string "abc"`); see [`ParseError`].
pub fn parse_client_message(text: &str) -> Result<ClientMessage, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::not_json(&e))?;
    parse_client_value(value)
}

/// A message's `type` and the rest of its object (`type` removed, so it never lands in a
/// catch-all such as `SessionInitV2::extra`). Both protocols' parsers start here.
pub(crate) fn split_type(value: Value) -> Result<(String, Value), ParseError> {
    let mut map = match value {
        Value::Object(map) => map,
        other => {
            return Err(ParseError::NotObject {
                got: lax::describe(&other),
            });
        }
    };
    let type_name = match map.remove("type") {
        None => return Err(ParseError::MissingType),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ParseError::TypeNotString {
                got: lax::describe(&other),
            });
        }
    };
    Ok((type_name, Value::Object(map)))
}

/// Parses a client message that is already a JSON value.
pub fn parse_client_value(value: Value) -> Result<ClientMessage, ParseError> {
    let (type_name, body) = split_type(value)?;
    match type_name.as_str() {
        "session_init_v2" => body_of(body, "session_init_v2").map(ClientMessage::SessionInitV2),
        "segment_prompt_source" => {
            body_of(body, "segment_prompt_source").map(ClientMessage::SegmentPromptSource)
        }
        "seed_prompts_updated" => {
            body_of(body, "seed_prompts_updated").map(ClientMessage::SeedPromptsUpdated)
        }
        "enhancement_updated" => {
            body_of(body, "enhancement_updated").map(ClientMessage::EnhancementUpdated)
        }
        "auto_extension_updated" => {
            body_of(body, "auto_extension_updated").map(ClientMessage::AutoExtensionUpdated)
        }
        "loop_generation_updated" => {
            body_of(body, "loop_generation_updated").map(ClientMessage::LoopGenerationUpdated)
        }
        "generation_paused_updated" => {
            body_of(body, "generation_paused_updated").map(ClientMessage::GenerationPausedUpdated)
        }
        // No fields; extra keys are ignored like on every other non-init message.
        "snapshot_state" => Ok(ClientMessage::SnapshotState),
        _ => Err(ParseError::UnknownType {
            got: lax::quote(&type_name),
        }),
    }
}

fn body_of<T: serde::de::DeserializeOwned>(
    body: Value,
    message_type: &'static str,
) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(body)
        .map_err(|e| ParseError::from_field_error(message_type, &e))
}

/// Requested media format. Only fMP4 is produced; `legacy_jpeg` is accepted for old clients
/// and ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamMode {
    /// Fragmented MP4 (H.264) over binary frames.
    #[default]
    AvFmp4,
    /// Accepted, but the server still streams fMP4.
    LegacyJpeg,
}

impl WireEnum for StreamMode {
    const VARIANTS: &'static [&'static str] = &["av_fmp4", "legacy_jpeg"];
    fn from_wire(s: &str) -> Option<Self> {
        match s {
            "av_fmp4" => Some(Self::AvFmp4),
            "legacy_jpeg" => Some(Self::LegacyJpeg),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for StreamMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lax::wire_enum(d)
    }
}

/// Where a segment prompt came from. Validated, otherwise informational.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromptSource {
    /// One of the session's curated prompts.
    Curated,
    /// Output of the prompt enhancer.
    Enhanced,
    /// Typed by the user.
    #[default]
    User,
    /// Generated to extend the video automatically.
    AutoExtension,
}

impl WireEnum for PromptSource {
    const VARIANTS: &'static [&'static str] = &["curated", "enhanced", "user", "auto_extension"];
    fn from_wire(s: &str) -> Option<Self> {
        match s {
            "curated" => Some(Self::Curated),
            "enhanced" => Some(Self::Enhanced),
            "user" => Some(Self::User),
            "auto_extension" => Some(Self::AutoExtension),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for PromptSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lax::wire_enum(d)
    }
}

/// Generator state carried across segments and reconnects: `{kind, payload}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContinuationStateWire {
    /// Schema tag of the payload, e.g. `ltx2.v1`.
    pub kind: String,
    /// Generator-specific JSON object.
    pub payload: Map<String, Value>,
}

/// `session_init_v2`: opens a session; must be the first frame. Unknown keys are accepted
/// and kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionInitV2 {
    /// Free-form client id; stored only.
    #[serde(
        default,
        deserialize_with = "lax::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
    /// Preset name; echoed back in `ltx2_stream_start.preset`.
    #[serde(
        default,
        deserialize_with = "lax::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub preset: Option<String>,
    /// Human label of the preset; stored only.
    #[serde(
        default,
        deserialize_with = "lax::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub preset_label: Option<String>,
    /// Curated prompts; stored only (the server never generates from them on its own).
    #[serde(default, deserialize_with = "lax::string_list")]
    pub curated_prompts: Vec<String>,
    /// Conditioning image `{mime, name?, data}` with base64 `data`. `null` and `{}` mean no
    /// image; any other non-object is an error. Always a JSON object when present here; its
    /// content is validated by the session layer.
    #[serde(
        default,
        deserialize_with = "lax::opt_object_falsy_none",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "initial_image_schema")]
    pub initial_image: Option<Value>,
    /// Prompt-enhancement toggle; stored only.
    #[serde(default, deserialize_with = "lax::bool")]
    pub enhancement_enabled: bool,
    /// Auto-extension toggle; stored only.
    #[serde(default, deserialize_with = "lax::bool")]
    pub auto_extension_enabled: bool,
    /// Loop-generation toggle; stored only.
    #[serde(default, deserialize_with = "lax::bool")]
    pub loop_generation_enabled: bool,
    /// Single-clip mode toggle; stored only.
    #[serde(default, deserialize_with = "lax::bool")]
    pub single_clip_mode: bool,
    /// Requested media format; the server always streams fMP4.
    #[serde(default)]
    pub stream_mode: StreamMode,
    /// State to continue from (e.g. after a reconnect). `null` and `{}` mean none; any other
    /// shape than `{kind: string, payload: object}` is an error.
    #[serde(
        default,
        deserialize_with = "lax::opt_continuation_state",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "continuation_state_schema")]
    pub continuation_state: Option<ContinuationStateWire>,
    /// Any other keys, accepted and ignored. Must not repeat a known key when serializing.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn initial_image_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "Conditioning image. null or {} mean no image.",
        "anyOf": [
            { "type": "null" },
            { "type": "object", "maxProperties": 0 },
            {
                "type": "object",
                "properties": {
                    "mime": {
                        "description": "image/png, image/jpeg, image/jpg or image/webp",
                        "type": "string"
                    },
                    "name": { "description": "file name, for logs only", "type": ["string", "null"] },
                    "data": { "description": "strict base64 of the image bytes", "type": "string" }
                },
                "required": ["mime", "data"]
            }
        ]
    })
}

fn continuation_state_schema(generator: &mut SchemaGenerator) -> Schema {
    let state = generator.subschema_for::<ContinuationStateWire>();
    json_schema!({
        "description": "State to continue from. null or {} mean none.",
        "anyOf": [
            { "type": "null" },
            { "type": "object", "maxProperties": 0 },
            state
        ]
    })
}

/// `segment_prompt_source`: requests the next segment. Unset numbers take the server's
/// defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentPromptSource {
    /// Prompt for the segment; may be empty.
    #[serde(deserialize_with = "lax::string")]
    pub prompt: String,
    /// Negative prompt; absent, null or empty: the server default.
    #[serde(
        default,
        deserialize_with = "lax::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub negative_prompt: Option<String>,
    /// Where the prompt came from.
    #[serde(default)]
    pub source: PromptSource,
    /// Sampling seed; absent or null: the server default.
    #[serde(
        default,
        deserialize_with = "lax::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub seed: Option<i64>,
    /// Denoising steps; absent or null: the server default. Range-checked by the server, not here.
    #[serde(
        default,
        deserialize_with = "lax::opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub num_inference_steps: Option<i64>,
    /// Classifier-free guidance scale; absent or null: the server default.
    #[serde(
        default,
        deserialize_with = "lax::opt_float",
        skip_serializing_if = "Option::is_none"
    )]
    pub guidance_scale: Option<f64>,
}

/// `seed_prompts_updated`: replaces the stored curated prompts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SeedPromptsUpdated {
    /// New curated prompts.
    #[serde(default, deserialize_with = "lax::string_list")]
    pub seed_prompts: Vec<String>,
}

/// Body of `enhancement_updated`, `auto_extension_updated` and `loop_generation_updated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Toggle {
    /// New value of the toggle.
    #[serde(deserialize_with = "lax::bool")]
    pub enabled: bool,
}

/// Body of `generation_paused_updated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PausedToggle {
    /// New value of the paused flag.
    #[serde(deserialize_with = "lax::bool")]
    pub paused: bool,
}
