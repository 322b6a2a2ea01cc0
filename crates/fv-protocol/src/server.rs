//! Server → client control messages (JSON text frames). Optional fields that are `None` are
//! omitted from the JSON, never sent as `null`.

use crate::client::ContinuationStateWire;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `step_complete.stage` for denoising steps (the only stage reported today).
pub const STAGE_DENOISE: &str = "denoise";

fn default_stage() -> String {
    STAGE_DENOISE.to_owned()
}

/// A control message sent by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// Queue position after a valid init; sent again whenever it changes.
    #[serde(rename = "queue_status")]
    QueueStatus(QueueStatus),
    /// A worker is bound to the session.
    #[serde(rename = "gpu_assigned")]
    GpuAssigned(GpuAssigned),
    /// The stream is ready; carries the fixed output geometry.
    #[serde(rename = "ltx2_stream_start")]
    Ltx2StreamStart(StreamStart),
    /// A segment started generating.
    #[serde(rename = "ltx2_segment_start")]
    Ltx2SegmentStart(SegmentStart),
    /// One denoising step finished.
    #[serde(rename = "step_complete")]
    StepComplete(StepComplete),
    /// Media for a segment follows as binary frames.
    #[serde(rename = "media_init")]
    MediaInit(MediaInit),
    /// All binary frames of a segment were sent.
    #[serde(rename = "media_segment_complete")]
    MediaSegmentComplete(MediaSegmentComplete),
    /// A segment finished.
    #[serde(rename = "ltx2_segment_complete")]
    Ltx2SegmentComplete(SegmentComplete),
    /// The stream ended; the socket closes next.
    #[serde(rename = "ltx2_stream_complete")]
    Ltx2StreamComplete(StreamComplete),
    /// The session timed out; the socket closes next.
    #[serde(rename = "session_timeout")]
    SessionTimeout(SessionTimeout),
    /// Reply to `snapshot_state`.
    #[serde(rename = "continuation_state_snapshot")]
    ContinuationStateSnapshot(ContinuationStateSnapshot),
    /// Something went wrong; `code` says what.
    #[serde(rename = "error")]
    Error(ErrorMessage),
}

impl ServerMessage {
    /// Every server `type` value, in protocol order.
    pub const TYPES: &'static [&'static str] = &[
        "queue_status",
        "gpu_assigned",
        "ltx2_stream_start",
        "ltx2_segment_start",
        "step_complete",
        "media_init",
        "media_segment_complete",
        "ltx2_segment_complete",
        "ltx2_stream_complete",
        "session_timeout",
        "continuation_state_snapshot",
        "error",
    ];

    /// The wire `type` of this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::QueueStatus(_) => "queue_status",
            Self::GpuAssigned(_) => "gpu_assigned",
            Self::Ltx2StreamStart(_) => "ltx2_stream_start",
            Self::Ltx2SegmentStart(_) => "ltx2_segment_start",
            Self::StepComplete(_) => "step_complete",
            Self::MediaInit(_) => "media_init",
            Self::MediaSegmentComplete(_) => "media_segment_complete",
            Self::Ltx2SegmentComplete(_) => "ltx2_segment_complete",
            Self::Ltx2StreamComplete(_) => "ltx2_stream_complete",
            Self::SessionTimeout(_) => "session_timeout",
            Self::ContinuationStateSnapshot(_) => "continuation_state_snapshot",
            Self::Error(_) => "error",
        }
    }

    /// Serializes the message as one JSON text frame, omitting `None` fields.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .expect("server messages hold only string-keyed maps, so serialization cannot fail")
    }

    /// Parses a server text frame (for test clients). Unknown extra fields are ignored.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `error{code, message, retryable}`.
    pub fn error(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        Self::Error(ErrorMessage {
            code,
            message: message.into(),
            retryable,
        })
    }

    /// `queue_status{position, queue_depth}`.
    pub fn queue_status(position: u32, queue_depth: u32) -> Self {
        Self::QueueStatus(QueueStatus {
            position,
            queue_depth,
        })
    }

    /// `gpu_assigned{gpu_id, session_timeout}`.
    pub fn gpu_assigned(gpu_id: u32, session_timeout: u64) -> Self {
        Self::GpuAssigned(GpuAssigned {
            gpu_id,
            session_timeout,
        })
    }

    /// `step_complete` for a denoising step.
    pub fn step_complete(segment_idx: u32, step: u32, total_steps: u32) -> Self {
        Self::StepComplete(StepComplete {
            segment_idx,
            step,
            total_steps,
            stage: default_stage(),
        })
    }

    /// `ltx2_stream_complete{reason}`.
    pub fn stream_complete(reason: StreamCompleteReason) -> Self {
        Self::Ltx2StreamComplete(StreamComplete { reason })
    }

    /// `session_timeout{timeout_seconds}`.
    pub fn session_timeout(timeout_seconds: u64) -> Self {
        Self::SessionTimeout(SessionTimeout { timeout_seconds })
    }

    /// `continuation_state_snapshot{state}`.
    pub fn snapshot(state: ContinuationStateWire) -> Self {
        Self::ContinuationStateSnapshot(ContinuationStateSnapshot { state })
    }
}

macro_rules! into_server_message {
    ($($payload:ident => $variant:ident),* $(,)?) => {
        $(impl From<$payload> for ServerMessage {
            fn from(m: $payload) -> Self {
                ServerMessage::$variant(m)
            }
        })*
    };
}

into_server_message! {
    QueueStatus => QueueStatus,
    GpuAssigned => GpuAssigned,
    StreamStart => Ltx2StreamStart,
    SegmentStart => Ltx2SegmentStart,
    StepComplete => StepComplete,
    MediaInit => MediaInit,
    MediaSegmentComplete => MediaSegmentComplete,
    SegmentComplete => Ltx2SegmentComplete,
    StreamComplete => Ltx2StreamComplete,
    SessionTimeout => SessionTimeout,
    ContinuationStateSnapshot => ContinuationStateSnapshot,
    ErrorMessage => Error,
}

/// `queue_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct QueueStatus {
    /// 0: a worker is free now. While waiting: N means N−1 sessions are ahead.
    pub position: u32,
    /// Number of sessions waiting for a worker.
    pub queue_depth: u32,
}

/// `gpu_assigned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GpuAssigned {
    /// Index of the worker/GPU serving the session.
    pub gpu_id: u32,
    /// Idle timeout in seconds: the session ends after this long without a client frame
    /// (no timer runs while a segment is generating).
    pub session_timeout: u64,
}

/// `ltx2_stream_start`. Geometry is fixed by the server config for the whole session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamStart {
    /// The preset the client sent in `session_init_v2`; omitted when it sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Frames per segment.
    pub num_frames: u32,
    /// fv-stream addition: a token the client may send back as `session_init_v2.resume_token`
    /// on a new connection (to this server or a replica sharing its store) to continue this
    /// stream with the next segment. Omitted when the server keeps no snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
}

/// `ltx2_segment_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentStart {
    /// 0-based segment index within the session.
    pub segment_idx: u32,
    /// The prompt being generated.
    pub prompt: String,
    /// Effective number of denoising steps.
    pub total_steps: u32,
}

/// `step_complete`: sent once per denoising step, `step` = 1..=`total_steps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StepComplete {
    /// 0-based segment index.
    pub segment_idx: u32,
    /// 1-based step that just finished.
    pub step: u32,
    /// Steps in this segment.
    pub total_steps: u32,
    /// Pipeline stage; `denoise`.
    #[serde(default = "default_stage")]
    pub stage: String,
}

/// How the media of a segment is packaged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MediaMode {
    /// Fragmented MP4: one init segment (ftyp+moov), then moof+mdat fragments.
    #[default]
    AvFmp4,
}

/// `media_init`: binary frames of this segment follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MediaInit {
    /// 0-based segment index.
    pub segment_idx: u32,
    /// MSE type with the real codec string, e.g. `video/mp4; codecs="avc1.42c01f"`.
    pub mime: String,
    /// Id of this segment's media stream (32 hex digits), new for every segment.
    pub stream_id: String,
    /// Packaging; always `av_fmp4`.
    #[serde(default)]
    pub mode: MediaMode,
}

/// `media_segment_complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MediaSegmentComplete {
    /// 0-based segment index.
    pub segment_idx: u32,
    /// Same as in `media_init`.
    pub stream_id: String,
    /// Binary frames sent after the first (init) one, i.e. the number of fragments.
    pub chunks: u32,
    /// Media duration of the segment in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// Stream time (ms) at which this segment starts: the sum of earlier segments' durations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pts_base_ms: Option<f64>,
}

/// `ltx2_segment_complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SegmentComplete {
    /// 0-based segment index.
    pub segment_idx: u32,
    /// Time the generator spent on the segment, in milliseconds.
    pub generation_time_ms: f64,
    /// From receiving `segment_prompt_source` to sending the segment's last byte, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_latency_ms: Option<f64>,
}

/// Why the stream ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamCompleteReason {
    /// The session reached its segment cap.
    SegmentCap,
    /// The stream was stopped (client, server or timeout).
    #[default]
    StopRequested,
    /// The stream ended because of an error.
    Error,
}

/// `ltx2_stream_complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StreamComplete {
    /// Why the stream ended.
    #[serde(default)]
    pub reason: StreamCompleteReason,
}

/// `session_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionTimeout {
    /// The timeout that expired, in seconds.
    pub timeout_seconds: u64,
}

/// `continuation_state_snapshot`: the state is nested under `state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContinuationStateSnapshot {
    /// The stored continuation state.
    pub state: ContinuationStateWire,
}

/// Error codes of the `error` message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The server is at its session limit.
    SessionRejected,
    /// A client frame could not be parsed or was not allowed at this point.
    InvalidMessage,
    /// No worker became available (acquire timeout, full queue, no healthy replica).
    GpuUnavailable,
    /// Generating or encoding a segment failed.
    WorkerFailed,
    /// Anything else, e.g. `snapshot_state` with no stored state.
    #[default]
    InternalError,
    /// The prompt safety filter blocked a prompt (fv-stream addition); the segment is
    /// skipped, or, for a prompt of `session_init_v2`, the session closes with 1008.
    PromptBlocked,
    /// Declared for compatibility; not emitted.
    PresetMismatch,
    /// Declared for compatibility; not emitted.
    UpstreamTimeout,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 8] = [
        Self::SessionRejected,
        Self::InvalidMessage,
        Self::GpuUnavailable,
        Self::WorkerFailed,
        Self::InternalError,
        Self::PromptBlocked,
        Self::PresetMismatch,
        Self::UpstreamTimeout,
    ];

    /// The wire spelling, e.g. `"gpu_unavailable"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionRejected => "session_rejected",
            Self::InvalidMessage => "invalid_message",
            Self::GpuUnavailable => "gpu_unavailable",
            Self::WorkerFailed => "worker_failed",
            Self::InternalError => "internal_error",
            Self::PromptBlocked => "prompt_blocked",
            Self::PresetMismatch => "preset_mismatch",
            Self::UpstreamTimeout => "upstream_timeout",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorMessage {
    /// What kind of error.
    #[serde(default)]
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Whether the same request may succeed if sent again later.
    #[serde(default)]
    pub retryable: bool,
}
