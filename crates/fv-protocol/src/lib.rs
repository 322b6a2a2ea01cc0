//! Wire types of the fv-stream `/v1/stream` WebSocket protocol.
//!
//! * Client → server: JSON text frames, parsed with [`parse_client_message`] into
//!   [`ClientMessage`]. Parsing is lenient the way the upstream pydantic server was (booleans
//!   from `"true"`/`"on"`/`1`, integers from `5.0` or `"5"`, numbers from `"2.5"`; strings are
//!   never made from numbers, lists never from strings) and errors name the field:
//!   `segment_prompt_source.seed: expected an integer, got string "abc"`.
//! * Server → client: [`ServerMessage`], serialized with [`ServerMessage::to_json`]; `None`
//!   fields are omitted, never sent as `null`. Media goes in binary frames (fMP4) and has no
//!   type here.
//! * [`dreamverse`]: client messages of the Dreamverse product protocol (`/ws`).
//! * [`close`]: close codes and reason strings.
//! * [`json_schema`]: the JSON Schema of both directions (committed as
//!   `docs/protocol.schema.json`).
//!
//! The contract, including message order and error handling, is in `docs/protocol.md`.
//! No IO and no async runtime here.

mod client;
pub mod close;
pub mod dreamverse;
mod error;
mod lax;
mod schema;
mod server;

pub use client::{
    ClientMessage, ContinuationStateWire, PausedToggle, PromptSource, SeedPromptsUpdated,
    SegmentPromptSource, SessionInitV2, StreamMode, Toggle, parse_client_message,
    parse_client_value,
};
pub use dreamverse::{DreamverseMessage, parse_dreamverse_message};
pub use error::ParseError;
pub use lax::MAX_ECHO_CHARS;
pub use schema::json_schema;
pub use server::{
    ContinuationStateSnapshot, ErrorCode, ErrorMessage, GpuAssigned, MediaInit, MediaMode,
    MediaSegmentComplete, QueueStatus, STAGE_DENOISE, SegmentComplete, SegmentStart, ServerMessage,
    SessionTimeout, StepComplete, StreamComplete, StreamCompleteReason, StreamStart,
};
