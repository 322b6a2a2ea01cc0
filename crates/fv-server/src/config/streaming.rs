//! `streaming:` — FastVideo's streaming keys plus this server's own (admission, limits,
//! encoding, logs); every key is documented in `docs/config.md`.

use super::DEFAULT_WARMUP_PROMPT;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// `streaming:` — FastVideo's keys plus this server's own (see `docs/config.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Idle timeout: longest gap between client messages while no segment runs; restarts when
    /// a segment ends, paused while queued.
    #[schemars(range(min = 1, max = 86_400))]
    pub session_timeout_seconds: u64,
    /// Successful segments per session; the session ends after the last.
    #[schemars(range(min = 1, max = 10_000))]
    pub generation_segment_cap: u32,
    /// Echoed in `/health`; media is fragmented MP4 (H.264) in both modes.
    pub stream_mode: StreamMode,
    /// Warm-up run before the server reports ready.
    pub warmup: WarmupConfig,
    /// Generator worker pool.
    pub pool: PoolSection,
    /// FastVideo's prompt enhancer (plus fv-stream's provider list and budgets; see
    /// crates/fv-prompt/README.md). Off: prompts run as sent, no auto-extension, `/ws`
    /// rewrites fall back to the submitted prompts.
    pub prompt: fv_prompt::PromptConfig,
    /// FastVideo's prompt safety filter (plus fv-stream's word list and `on_unavailable`).
    /// A blocked segment prompt gets an `error` frame (`prompt_blocked`) and is skipped; a
    /// blocked initial prompt ends the session with close 1008.
    pub safety: fv_prompt::SafetyConfig,
    /// fv-stream addition: the audio track of every segment. `off`: video only; `silent`:
    /// an AAC-LC track of silence (what clients that require a track, such as the Dreamverse
    /// web app, need from a video-only generator; the mock server's default); `generator`:
    /// the generator's PCM, silence when it returns none (streaming-server's default).
    pub audio: AudioMode,
    /// fv-stream addition: the `service` name `/healthz` and `/readyz` report
    /// (`ltx2-streaming-backend`; the mock server says `ltx2-streaming-mock-server`).
    pub service_name: String,
    /// fv-stream addition: the Dreamverse product protocol on `/ws`.
    pub dreamverse: DreamverseSection,
    /// Sessions connected at once; one more is refused at accept.
    #[schemars(range(min = 1, max = 10_000))]
    pub max_sessions: usize,
    /// Sessions one client address may hold at once; one more is refused at accept.
    #[schemars(range(min = 1, max = 10_000))]
    pub max_sessions_per_ip: usize,
    /// Browser origins allowed to open `/v1/stream` (e.g. `https://app.example`); empty allows
    /// any. A request without an Origin header (not a browser) is always allowed.
    pub allowed_origins: Vec<String>,
    /// When set, clients must present it as `Authorization: Bearer <token>` or
    /// `?token=<token>`; others get HTTP 401.
    pub auth_token: Option<String>,
    /// Sessions waiting for a free worker; beyond it a session is refused.
    #[schemars(range(min = 0, max = 10_000))]
    pub max_queue: usize,
    /// Time a client has to send `session_init_v2` after connecting.
    #[schemars(range(min = 1, max = 3_600))]
    pub init_timeout_seconds: u64,
    /// Longest wait in the queue for a worker.
    #[schemars(range(min = 1, max = 86_400))]
    pub acquire_timeout_seconds: u64,
    /// Largest incoming WebSocket message; larger closes with 1009.
    #[schemars(range(min = 1024, max = 268_435_456))]
    pub max_message_bytes: usize,
    /// Largest decoded `initial_image`.
    #[schemars(range(min = 1, max = 268_435_456))]
    pub max_init_image_bytes: usize,
    /// Frames per fMP4 fragment (moof+mdat).
    #[schemars(range(min = 1, max = 1_000))]
    pub fragment_frames: u32,
    /// H.264 target bitrate, bits per second.
    #[schemars(range(min = 100_000, max = 100_000_000))]
    pub video_bitrate_bps: u32,
    /// At shutdown, time running segments get to finish.
    #[schemars(range(min = 0, max = 3_600))]
    pub shutdown_grace_seconds: u64,
    /// Directory for one JSONL log per session; null turns it off.
    pub session_log_dir: Option<String>,
    /// How often idle sessions are checked for timeouts.
    #[schemars(range(min = 10, max = 60_000))]
    pub reaper_interval_ms: u64,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            session_timeout_seconds: 300,
            generation_segment_cap: 6,
            stream_mode: StreamMode::AvFmp4,
            warmup: WarmupConfig::default(),
            pool: PoolSection::default(),
            prompt: fv_prompt::PromptConfig::default(),
            safety: fv_prompt::SafetyConfig::default(),
            audio: AudioMode::Generator,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            dreamverse: DreamverseSection::default(),
            max_sessions: 8,
            max_sessions_per_ip: 8,
            allowed_origins: Vec::new(),
            auth_token: None,
            max_queue: 64,
            init_timeout_seconds: 10,
            acquire_timeout_seconds: 300,
            max_message_bytes: 16 * 1024 * 1024,
            max_init_image_bytes: 32 * 1024 * 1024,
            fragment_frames: 12,
            video_bitrate_bps: 4_000_000,
            shutdown_grace_seconds: 30,
            session_log_dir: None,
            reaper_interval_ms: 1000,
        }
    }
}

/// `streaming.stream_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StreamMode {
    /// Fragmented MP4 with H.264 video.
    #[serde(rename = "av_fmp4")]
    AvFmp4,
    /// FastVideo's JPEG mode (accepted; this server streams fMP4 either way).
    #[serde(rename = "legacy_jpeg")]
    LegacyJpeg,
}

impl StreamMode {
    /// The config/wire spelling (`av_fmp4`, `legacy_jpeg`).
    pub fn as_str(self) -> &'static str {
        match self {
            StreamMode::AvFmp4 => "av_fmp4",
            StreamMode::LegacyJpeg => "legacy_jpeg",
        }
    }
}

impl fmt::Display for StreamMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `streaming.warmup:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    /// Run one generation per worker before `/readyz` says ready.
    pub enabled: bool,
    /// Prompt of the warm-up generation (not blank when enabled).
    pub prompt: String,
    /// Longest the warm-up may take; after it (or as soon as every worker failed its warm-up)
    /// `/readyz` reports `warmup_failed` (still 503) and an error is logged. With
    /// `streaming.pool.mode: subprocess` it is also each worker process's limit from start to
    /// ready (boot plus warm-up, warm-up on or off); a worker past it is killed and reported.
    #[schemars(range(min = 1, max = 86_400))]
    pub timeout_seconds: u64,
}

impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prompt: DEFAULT_WARMUP_PROMPT.to_owned(),
            timeout_seconds: 2400,
        }
    }
}

/// `streaming.pool:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSection {
    /// Generator workers; null means one per GPU (`generator.engine.num_gpus`) with
    /// `generator.device: cuda[:N]`, else 1. Workers are placed one per GPU, round-robin when
    /// there are more workers than GPUs.
    #[schemars(range(min = 1, max = 1_024))]
    pub num_workers: Option<u32>,
    /// fv-stream addition: where generators run. `in_process`: worker threads of the server
    /// process (one model per GPU; on the CPU, workers share one copy). `subprocess`: one
    /// worker process per worker (the binary re-executed with `worker`), each loading its own
    /// model on its GPU (`CUDA_VISIBLE_DEVICES`), started and warmed up before it counts as
    /// ready, restarted after a crash (docs/operations.md, "GPU workers").
    pub mode: PoolMode,
    /// fv-stream addition (`subprocess`): wait before restarting a worker process that died;
    /// doubles with each consecutive failure, up to `restart_backoff_max_ms`.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub restart_backoff_ms: u64,
    /// fv-stream addition (`subprocess`): longest wait between restarts; at least
    /// `restart_backoff_ms`.
    #[schemars(range(min = 1, max = 3_600_000))]
    pub restart_backoff_max_ms: u64,
    /// fv-stream addition (`subprocess`): consecutive failures (crashes or failed restarts with
    /// no successful segment between them) after which a worker stays out of service. A
    /// worker whose first start fails is never restarted.
    #[schemars(range(min = 0, max = 1_000))]
    pub max_restarts: u32,
    /// fv-stream addition (`subprocess`): at shutdown, time a worker process gets to finish
    /// its current step and exit before it is killed.
    #[schemars(range(min = 1, max = 3_600))]
    pub worker_stop_timeout_seconds: u64,
    /// Re-encode audio.
    #[schemars(extend("x-unused" = true))]
    pub enable_audio_reencode: bool,
    /// Conditioning frames carried between segments.
    #[schemars(extend("x-unused" = true))]
    pub conditioning_num_frames: i64,
    /// Conditioning end offset.
    #[schemars(extend("x-unused" = true))]
    pub conditioning_end_offset: i64,
}

impl Default for PoolSection {
    fn default() -> Self {
        Self {
            num_workers: None,
            mode: PoolMode::InProcess,
            restart_backoff_ms: 1_000,
            restart_backoff_max_ms: 60_000,
            max_restarts: 5,
            worker_stop_timeout_seconds: 10,
            enable_audio_reencode: true,
            conditioning_num_frames: 9,
            conditioning_end_offset: 0,
        }
    }
}

/// `streaming.pool.mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PoolMode {
    /// Worker threads in the server process.
    #[default]
    #[serde(rename = "in_process")]
    InProcess,
    /// One worker process per worker, talking to the server over a Unix socket.
    #[serde(rename = "subprocess")]
    Subprocess,
}

/// `/healthz`'s `service` unless `streaming.service_name` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "ltx2-streaming-backend";
/// The mock server's `service` (Dreamverse tooling tells mock from backend by it).
pub const MOCK_SERVICE_NAME: &str = "ltx2-streaming-mock-server";

/// `streaming.audio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudioMode {
    /// Video only; the mime names no `mp4a`.
    Off,
    /// AAC-LC 48 kHz stereo silence as long as the video.
    Silent,
    /// The generator's audio (resampled to 48 kHz stereo AAC-LC); silence when it has none.
    Generator,
}

impl AudioMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioMode::Off => "off",
            AudioMode::Silent => "silent",
            AudioMode::Generator => "generator",
        }
    }
}

/// `streaming.dreamverse:` — the Dreamverse product protocol (`/ws`; docs/dreamverse.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DreamverseSection {
    /// Serve `/ws`.
    pub enabled: bool,
    /// Wall-clock length of a `/ws` session from `gpu_assigned` on, whatever the activity
    /// (Dreamverse's `SESSION_TIMEOUT_SECONDS`); then `session_timeout` and close 1000.
    #[schemars(range(min = 1, max = 86_400))]
    pub session_limit_seconds: u64,
    /// JSON file of curated presets for `/curated-presets` (`{"presets": [{id, label,
    /// segment_prompts}]}`); `/curated-presets/append` saves into it. Null: the presets
    /// built into the server (configs/dreamverse-presets.json), appends kept in memory.
    pub presets_file: Option<String>,
    /// Segments of a `/ws` session that may fail in a row before the session ends with an
    /// error (a generator that always fails would otherwise loop through every prompt).
    #[schemars(range(min = 1, max = 1_000))]
    pub max_consecutive_failures: u32,
}

impl Default for DreamverseSection {
    fn default() -> Self {
        Self {
            enabled: true,
            session_limit_seconds: 300,
            presets_file: None,
            max_consecutive_failures: 3,
        }
    }
}
