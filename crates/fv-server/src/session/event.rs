//! The vocabulary between the session core and a protocol adapter: what the client said
//! ([`ClientInput`]) and what the session tells the client ([`Event`]), both independent of
//! the wire format (`/v1/stream` today, `/ws` next).

use bytes::Bytes;
use fv_core::ContinuationState;
use fv_protocol::{ErrorCode, ParseError, StreamCompleteReason};
use fv_session::{SessionSettings, Toggle};

/// One client frame as the adapter understood it.
#[derive(Debug)]
pub(crate) enum ClientInput {
    /// A valid message of the protocol; `wire_name` is its `type` (for error messages).
    Message {
        msg: ClientMsg,
        wire_name: &'static str,
    },
    /// A text frame that is not a valid message of the protocol.
    Invalid(ParseError),
    /// A binary frame (clients send none).
    Binary,
    /// A frame over the size limit.
    TooBig,
    /// A text frame that is not UTF-8.
    BadUtf8,
    /// The client closed the socket (close frame or EOF).
    Closed,
}

/// What a client can ask of a session, whatever the protocol.
#[derive(Debug)]
pub(crate) enum ClientMsg {
    /// Opens the session (`session_init_v2`).
    Init(Box<InitRequest>),
    /// Asks for the next segment (`segment_prompt_source`).
    Segment(SegmentAsk),
    /// Changes a stored setting.
    Toggle(Toggle),
    /// Asks for the stored continuation state.
    Snapshot,
}

/// The protocol-neutral content of an init message.
#[derive(Debug, Default)]
pub(crate) struct InitRequest {
    pub settings: SessionSettings,
    /// `initial_image` as sent (validated and persisted by the runtime).
    pub initial_image: Option<serde_json::Value>,
    /// State to continue from, stored before the first segment.
    pub continuation_state: Option<ContinuationState>,
    /// A `resume_token` from an earlier session's `ltx2_stream_start`: continue that stream.
    pub resume_token: Option<String>,
}

/// A segment request as sent; the session core validates it against the config.
#[derive(Debug, Clone, Default)]
pub(crate) struct SegmentAsk {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seed: Option<i64>,
    pub num_inference_steps: Option<i64>,
    pub guidance_scale: Option<f64>,
}

/// What a session tells its client. Adapters render each event as zero or more frames of
/// their protocol (field names, index base, message order are theirs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// Where the session waits for a worker (`position` 0 = granted).
    QueueStatus { position: u32, queue_depth: u32 },
    /// A worker is bound to the session.
    GpuAssigned {
        worker_id: u32,
        session_timeout: u64,
    },
    /// The stream's fixed parameters, once per session.
    StreamStart {
        preset: Option<String>,
        width: u32,
        height: u32,
        fps: u32,
        num_frames: u32,
        /// Token a new connection can present to continue this stream.
        resume_token: Option<String>,
    },
    /// A segment starts (`segment_idx` is 0-based here).
    SegmentStart {
        segment_idx: u32,
        prompt: String,
        total_steps: u32,
    },
    /// One denoising step finished.
    Step {
        segment_idx: u32,
        step: u32,
        total_steps: u32,
    },
    /// The segment's init segment follows as the next [`Event::Media`].
    MediaInit {
        segment_idx: u32,
        mime: String,
        stream_id: String,
    },
    /// fMP4 bytes (init segment or one fragment).
    Media(Bytes),
    /// The segment's media is complete; `binaries` counts every media frame sent for it.
    MediaComplete {
        segment_idx: u32,
        stream_id: String,
        binaries: u32,
        duration_ms: f64,
        pts_base_ms: f64,
    },
    /// The segment is done.
    SegmentComplete {
        segment_idx: u32,
        generation_ms: f64,
        e2e_ms: f64,
    },
    /// No more segments in this stream.
    StreamComplete(StreamCompleteReason),
    /// The session timed out after `timeout_seconds`.
    SessionTimeout { timeout_seconds: u64 },
    /// The stored continuation state, as asked.
    Snapshot(ContinuationState),
    /// An error frame.
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
    },
}

impl Event {
    /// A short name for transcript tests and logs.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Event::QueueStatus { .. } => "queue_status",
            Event::GpuAssigned { .. } => "gpu_assigned",
            Event::StreamStart { .. } => "stream_start",
            Event::SegmentStart { .. } => "segment_start",
            Event::Step { .. } => "step",
            Event::MediaInit { .. } => "media_init",
            Event::Media(_) => "media",
            Event::MediaComplete { .. } => "media_complete",
            Event::SegmentComplete { .. } => "segment_complete",
            Event::StreamComplete(_) => "stream_complete",
            Event::SessionTimeout { .. } => "session_timeout",
            Event::Snapshot(_) => "snapshot",
            Event::Error { .. } => "error",
        }
    }
}
