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
    /// A message of the server-driven product protocol (`/ws`).
    Product(ProductMsg),
}

/// What a client of the server-driven product protocol can ask (dreamverse-facts §3).
#[derive(Debug)]
pub(crate) enum ProductMsg {
    /// A new project on the open socket (`project_init_v1`).
    ProjectInit(Box<InitRequest>),
    /// `end_project_keep_session`.
    EndProject,
    /// `append_prompt`.
    Append {
        prompt_id: Option<String>,
        prompt: String,
    },
    /// `rewrite_seed_prompts`.
    Rewrite {
        instruction: String,
        window: Vec<String>,
    },
    SetAutoExtension(bool),
    SetLoop(bool),
    SetPaused(bool),
    SetEnhancement(bool),
    SetRewriteModel(String),
    SetRewriteTemperature(f64),
    /// `reset_to_seed_prompts`.
    ResetToSeeds,
    /// `restart_generation`.
    Restart,
    /// `leave`: the client is done.
    Leave,
    /// A message this server does not serve (e.g. `simple_generate`).
    Unsupported(&'static str),
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
    /// Product protocol: a typed prompt the server rewrites into seed prompts.
    pub rollout_prompt: Option<String>,
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
    QueueStatus {
        position: u32,
        queue_depth: u32,
        total_workers: u32,
        available_workers: u32,
    },
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
    /// A segment starts (`segment_idx` is 0-based here; on `/ws` within the rollout).
    SegmentStart {
        segment_idx: u32,
        prompt: String,
        total_steps: u32,
        meta: Option<SegmentMeta>,
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
        meta: Option<SegmentMeta>,
    },
    /// No more segments in this stream.
    StreamComplete(StreamCompleteReason),
    /// The session timed out after `timeout_seconds`.
    SessionTimeout { timeout_seconds: u64 },
    /// The stored continuation state, as asked.
    Snapshot(ContinuationState),
    /// An error frame; `product_code` is its `/ws` `error_code`.
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
        product_code: &'static str,
    },
    /// An event of the server-driven product protocol.
    Product(ProductEvent),
}

/// Where a server-driven segment's prompt came from (the product's `source` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PromptOrigin {
    /// A seed (curated or rewritten) prompt.
    Curated,
    /// An appended prompt, enhanced.
    UserEnhanced,
    /// An appended prompt as typed.
    UserRaw,
    /// Written by auto-extension.
    AutoLlm,
}

impl PromptOrigin {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PromptOrigin::Curated => "curated",
            PromptOrigin::UserEnhanced => "user_enhanced",
            PromptOrigin::UserRaw => "user_raw",
            PromptOrigin::AutoLlm => "auto_llm",
        }
    }
}

/// What the product protocol says about a segment besides its index.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SegmentMeta {
    pub total_segments: u32,
    pub source: PromptOrigin,
    pub seed_prompt_index: Option<u32>,
    pub loop_iteration: u32,
}

/// Why the seed prompts were reset (the product's `reason` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetReason {
    InitialRewrite,
    ProjectInit,
    RewriteRollout,
    RewriteDuringGeneration,
    ManualReset,
    CapRestart,
}

impl ResetReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResetReason::InitialRewrite => "initial_rewrite",
            ResetReason::ProjectInit => "project_init",
            ResetReason::RewriteRollout => "rewrite_rollout",
            ResetReason::RewriteDuringGeneration => "rewrite_during_generation",
            ResetReason::ManualReset => "manual_reset",
            ResetReason::CapRestart => "cap_restart",
        }
    }
}

/// Prompts dropped from the queues by a reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Dropped {
    pub raw: u32,
    pub ready: u32,
}

/// The result of a seed-prompt rewrite, as both rewrite messages report it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RewriteReport {
    pub prompts: Vec<String>,
    pub preset_id: String,
    pub preset_label: String,
    pub fallback_used: bool,
    pub error: Option<String>,
    pub model: String,
    pub latency_ms: f64,
    pub raw_llm_output: Option<String>,
    pub instruction: String,
}

/// Events of the product protocol (`/ws`); `segment_idx` values are 0-based within the
/// rollout, the adapter adds 1.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProductEvent {
    LoopUpdated(bool),
    PausedUpdated(bool),
    AutoExtensionUpdated(bool),
    EnhancementUpdated(bool),
    RewriteModelUpdated(String),
    RewriteTemperatureUpdated(f64),
    /// `ltx2_stream_start` of a rollout.
    RolloutStart {
        total_segments: u32,
        preset_id: String,
        loop_enabled: bool,
        loop_iteration: u32,
        segment_cap: u32,
    },
    /// `seed_prompts_updated{reason: init}`.
    SeedsInit {
        prompts: Vec<String>,
        preset_id: String,
        preset_label: String,
    },
    /// `seed_prompts_updated{reason: rewrite}`.
    SeedsRewritten(Box<RewriteReport>),
    RewriteStarted {
        model: String,
    },
    RewriteComplete(Box<RewriteReport>),
    ResetPending {
        seed_count: u32,
    },
    ResetApplied {
        reason: ResetReason,
        loop_iteration: u32,
        seed_count: u32,
        dropped: Dropped,
    },
    LoopRestarted {
        loop_iteration: u32,
        seed_count: u32,
        dropped: Dropped,
    },
    Restarted {
        segment_cap: u32,
    },
    PromptSource {
        segment_idx: u32,
        source: PromptOrigin,
        prompt_id: Option<String>,
        seed_prompt_index: Option<u32>,
        loop_iteration: u32,
    },
    PromptReceived {
        prompt_id: String,
        queue_depth: u32,
    },
    PromptEnhancing {
        prompt_id: String,
    },
    PromptReady {
        prompt_id: String,
        prompt: String,
        source: PromptOrigin,
        latency_ms: f64,
    },
    PromptFallbackUsed {
        prompt_id: String,
        latency_ms: f64,
        error: String,
    },
    SourcesBlocked {
        segment_idx: u32,
    },
    SourcesResumed {
        segment_idx: u32,
        source: PromptOrigin,
        prompt_id: Option<String>,
    },
    AutoPromptFailed {
        segment_idx: u32,
        latency_ms: f64,
        error: String,
    },
    ProjectIdle {
        dropped: Dropped,
    },
}

impl ProductEvent {
    /// The message `type` it is rendered as (transcripts, logs).
    pub(crate) fn name(&self) -> &'static str {
        use ProductEvent::*;
        match self {
            LoopUpdated(_) => "loop_generation_updated",
            PausedUpdated(_) => "generation_paused_updated",
            AutoExtensionUpdated(_) => "auto_extension_updated",
            EnhancementUpdated(_) => "enhancement_updated",
            RewriteModelUpdated(_) => "rewrite_model_updated",
            RewriteTemperatureUpdated(_) => "rewrite_temperature_updated",
            RolloutStart { .. } => "ltx2_stream_start",
            SeedsInit { .. } | SeedsRewritten(_) => "seed_prompts_updated",
            RewriteStarted { .. } => "rewrite_seed_prompts_started",
            RewriteComplete(_) => "rewrite_seed_prompts_complete",
            ResetPending { .. } => "seed_prompts_reset_pending",
            ResetApplied { .. } => "seed_prompts_reset_applied",
            LoopRestarted { .. } => "loop_restarted",
            Restarted { .. } => "generation_restarted",
            PromptSource { .. } => "segment_prompt_source",
            PromptReceived { .. } => "prompt_received",
            PromptEnhancing { .. } => "prompt_enhancing",
            PromptReady { .. } => "prompt_ready",
            PromptFallbackUsed { .. } => "prompt_fallback_used",
            SourcesBlocked { .. } => "prompt_sources_blocked",
            SourcesResumed { .. } => "prompt_sources_resumed",
            AutoPromptFailed { .. } => "auto_prompt_failed",
            ProjectIdle { .. } => "project_idle",
        }
    }
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
            Event::Product(p) => p.name(),
        }
    }
}
