//! Serve configuration: FastVideo's serve schema (`generator`, `server`, `default_request`,
//! `streaming`) plus this server's own keys under `streaming:`.
//!
//! A config that `fastvideo serve --config` accepts loads here too. Loading is strict in
//! the same ways FastVideo is (unknown keys, wrong types and bad enum values are errors) and
//! stricter where FastVideo is lax: every value this server uses is range-checked, and every
//! problem is reported at once, each with the dotted path of its key.
//!
//! Loading runs in two passes. A schema walker checks the raw document (YAML or JSON turned
//! into a [`serde_json::Value`]) against one table of keys: names, types, ranges; it also records
//! which keys the user set that this server accepts but does not use
//! ([`LoadedConfig::ignored`]). Only a document that passes is deserialized into the typed
//! structs, and then the cross-field rules run. [`ServeConfig::validate`] runs the same
//! checks on a config built in code, so both paths share one table of rules.

pub use fv_runtime::config::FileError;
use fv_runtime::config::{Format, parse_str};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::Path;

/// Free-form mapping (`dict[str, Any]` in FastVideo's schema).
pub type Mapping = serde_json::Map<String, Value>;

/// Largest config file (or string) accepted, in bytes. Real configs are a few KiB; the cap
/// keeps a wrong path (a video, a log) from being read into memory whole.
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// FastVideo's default warm-up prompt.
pub const DEFAULT_WARMUP_PROMPT: &str = "A cinematic drone shot over coastal cliffs at sunrise, golden light, gentle ocean waves, ultra detailed";

// ---------------------------------------------------------------------------------------
// Errors and load result
// ---------------------------------------------------------------------------------------

/// Why a config could not be loaded or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or parsing the file or string failed: unreadable, too large, a name that is
    /// not `.yaml`/`.yml`/`.json`, not UTF-8, or not valid YAML/JSON (with line and column).
    #[error(transparent)]
    File(#[from] FileError),
    /// The document parsed but breaks the schema or a range rule. One entry per problem,
    /// each `dotted.path: what is wrong`.
    #[error("invalid config ({} problem{}):\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.join("\n  "))]
    Invalid {
        /// Every problem found, each starting with its key's dotted path.
        problems: Vec<String>,
    },
}

/// A loaded, validated config plus what the server should log once at startup.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The effective config: file values over defaults.
    pub config: ServeConfig,
    /// Dotted paths of keys the file set (to a non-null value) that are valid in FastVideo's
    /// schema but that this server does not use, e.g. `generator.engine.compile.enabled`.
    pub ignored: Vec<String>,
    /// Things worth a warning that are not errors, e.g. a missing `streaming:` block.
    pub warnings: Vec<String>,
}

// ---------------------------------------------------------------------------------------
// Typed config
// ---------------------------------------------------------------------------------------

/// The whole serve config.
///
/// Build it with [`ServeConfig::load`] / [`ServeConfig::from_yaml_str`] /
/// [`ServeConfig::from_json_str`], which apply the strict rules; the `Deserialize` impl alone
/// does not (it would take `yes` as a bool from some YAML parsers and skips the ranges).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Which model to load and how.
    pub generator: GeneratorConfig,
    /// Where to listen.
    #[serde(default)]
    pub server: ServerSection,
    /// Request values every segment starts from.
    #[serde(default)]
    pub default_request: DefaultRequest,
    /// Streaming settings. Defaults when the block is absent or null (FastVideo would start
    /// its REST server then; this binary only streams).
    #[serde(default)]
    pub streaming: StreamingConfig,
}

/// `generator:`. `model_path` is used here, `device` and `dtype` (our additions) by native
/// model backends; the rest is carried for FastVideo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Model id or local path (required).
    pub model_path: String,
    /// Hub revision.
    #[serde(default)]
    pub revision: Option<String>,
    /// Allow model repos to run their own code.
    #[serde(default)]
    pub trust_remote_code: bool,
    /// Engine settings.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Pipeline selection.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// Where a native model runs: `cpu`, `cuda` or `cuda:N` (fv-stream addition; `None`:
    /// the backend's default, the CPU for fv-inference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Weight and compute dtype of a native model (fv-stream addition; `None`: bf16 on a GPU,
    /// f32 on the CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<ModelDtype>,
}

/// `generator.dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelDtype {
    F32,
    Bf16,
    F16,
}

/// A parsed `generator.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelDevice {
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl ModelDevice {
    /// Parses `cpu`, `cuda` (ordinal 0) or `cuda:N`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .filter(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda),
        }
    }
}

impl GeneratorConfig {
    /// A generator block with FastVideo's defaults for `model_path`.
    pub fn new(model_path: impl Into<String>) -> Self {
        Self {
            model_path: model_path.into(),
            revision: None,
            trust_remote_code: false,
            engine: EngineConfig::default(),
            pipeline: PipelineConfig::default(),
            device: None,
            dtype: None,
        }
    }

    /// The parsed `device` (`None` when unset); `validate` has rejected bad spellings.
    pub fn model_device(&self) -> Option<ModelDevice> {
        self.device.as_deref().and_then(ModelDevice::parse)
    }
}

/// `generator.engine:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// GPUs for one generator; must be > 0.
    pub num_gpus: i64,
    /// Multi-GPU launcher.
    pub execution_backend: ExecutionBackend,
    /// Parallelism layout.
    pub parallelism: ParallelismConfig,
    /// CPU offload switches.
    pub offload: OffloadConfig,
    /// `torch.compile` settings.
    pub compile: CompileConfig,
    /// Check stage inputs/outputs.
    pub enable_stage_verification: bool,
    /// Shard the model with FSDP at inference.
    pub use_fsdp_inference: bool,
    /// Turn autocast off.
    pub disable_autocast: bool,
    /// Batch conditional and unconditional passes.
    pub use_batched_cfg: bool,
    /// Quantization, if any.
    pub quantization: Option<QuantizationConfig>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            num_gpus: 1,
            execution_backend: ExecutionBackend::Mp,
            parallelism: ParallelismConfig::default(),
            offload: OffloadConfig::default(),
            compile: CompileConfig::default(),
            enable_stage_verification: true,
            use_fsdp_inference: false,
            disable_autocast: false,
            use_batched_cfg: false,
            quantization: None,
        }
    }
}

/// `generator.engine.execution_backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionBackend {
    /// Python multiprocessing (FastVideo's default).
    #[serde(rename = "mp")]
    Mp,
    /// Ray.
    #[serde(rename = "ray")]
    Ray,
}

/// `generator.engine.parallelism:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParallelismConfig {
    /// Tensor-parallel size (-1: automatic).
    pub tp_size: i64,
    /// Sequence-parallel size (-1: automatic).
    pub sp_size: i64,
    /// HSDP replicate dimension.
    pub hsdp_replicate_dim: i64,
    /// HSDP shard dimension (-1: automatic).
    pub hsdp_shard_dim: i64,
    /// Distributed init timeout.
    pub dist_timeout: Option<i64>,
}

impl Default for ParallelismConfig {
    fn default() -> Self {
        Self {
            tp_size: -1,
            sp_size: -1,
            hsdp_replicate_dim: 1,
            hsdp_shard_dim: -1,
            dist_timeout: None,
        }
    }
}

/// `generator.engine.offload:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OffloadConfig {
    /// Offload the DiT.
    pub dit: bool,
    /// Offload the DiT layer by layer.
    pub dit_layerwise: bool,
    /// Offload the text encoder.
    pub text_encoder: bool,
    /// Offload the image encoder.
    pub image_encoder: bool,
    /// Offload the VAE.
    pub vae: bool,
    /// Pin host memory for offloaded weights.
    pub pin_cpu_memory: bool,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            dit: true,
            dit_layerwise: true,
            text_encoder: true,
            image_encoder: true,
            vae: true,
            pin_cpu_memory: true,
        }
    }
}

/// `generator.engine.compile:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompileConfig {
    /// Compile the DiT.
    pub enabled: bool,
    /// Compile backend.
    pub backend: Option<String>,
    /// Require one graph.
    pub fullgraph: Option<bool>,
    /// Compile mode.
    pub mode: Option<String>,
    /// Dynamic shapes.
    pub dynamic: Option<bool>,
    /// Other compile kwargs.
    pub extras: Mapping,
    /// Compile the text encoder.
    pub text_encoder_enabled: Option<bool>,
    /// Compile the VAE.
    pub vae_enabled: Option<bool>,
    /// Compile the audio VAE.
    pub audio_vae_enabled: Option<bool>,
    /// Per-component kwargs (DiT).
    pub dit_kwargs: Mapping,
    /// Per-component kwargs (text encoder).
    pub text_encoder_kwargs: Mapping,
    /// Per-component kwargs (VAE).
    pub vae_kwargs: Mapping,
    /// Per-component kwargs (audio VAE).
    pub audio_vae_kwargs: Mapping,
}

/// `generator.engine.quantization:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizationConfig {
    /// Text-encoder quantization scheme.
    pub text_encoder_quant: Option<String>,
    /// Transformer quantization scheme (e.g. `NVFP4`).
    pub transformer_quant: Option<String>,
}

/// `generator.pipeline:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Workload kind.
    pub workload_type: Option<WorkloadType>,
    /// Named preset.
    pub preset: Option<String>,
    /// Preset version.
    pub preset_version: Option<i64>,
    /// Component paths and overrides.
    pub components: ComponentsConfig,
    /// Tiled VAE decode (null: model default).
    pub vae_tiling: Option<bool>,
    /// Preset overrides.
    pub preset_overrides: Mapping,
    /// Experimental switches.
    pub experimental: Mapping,
}

/// `generator.pipeline.workload_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadType {
    /// Text to video.
    #[serde(rename = "t2v")]
    T2v,
    /// Image to video.
    #[serde(rename = "i2v")]
    I2v,
    /// Text to image.
    #[serde(rename = "t2i")]
    T2i,
    /// Image to image.
    #[serde(rename = "i2i")]
    I2i,
}

/// `generator.pipeline.components:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComponentsConfig {
    /// Root of component configs.
    pub config_root: Option<String>,
    /// Pipeline config file.
    pub pipeline_config_path: Option<String>,
    /// Text-encoder weights.
    pub text_encoder_weights: Option<String>,
    /// Transformer weights.
    pub transformer_weights: Option<String>,
    /// Second transformer weights.
    pub transformer_2_weights: Option<String>,
    /// VAE weights.
    pub vae_weights: Option<String>,
    /// Upsampler weights.
    pub upsampler_weights: Option<String>,
    /// LoRA weights.
    pub lora_path: Option<String>,
    /// Pipeline class override.
    pub override_pipeline_cls_name: Option<String>,
    /// Transformer class override.
    pub override_transformer_cls_name: Option<String>,
}

/// `server:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0: an ephemeral port).
    pub port: u16,
    /// FastVideo's output directory (not used by the streaming server).
    pub output_dir: String,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 8000,
            output_dir: "outputs/".to_owned(),
        }
    }
}

/// A string or a list of strings (`str | list[str]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string.
    One(String),
    /// Several strings.
    Many(Vec<String>),
}

/// `default_request:` (FastVideo's `GenerationRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultRequest {
    /// Prompt (not used: prompts come from the client).
    pub prompt: Option<StringOrList>,
    /// Negative prompt for every segment.
    pub negative_prompt: Option<String>,
    /// Input files and conditioning.
    pub inputs: InputsSection,
    /// Sampling parameters.
    pub sampling: Sampling,
    /// Runtime switches.
    pub runtime: RuntimeSection,
    /// Output handling.
    pub output: OutputSection,
    /// Per-stage overrides.
    pub stage_overrides: Mapping,
    /// Continuation state.
    pub state: Option<RequestState>,
    /// Multi-stage plan.
    pub plan: Option<GenerationPlan>,
    /// Extension data.
    pub extensions: Mapping,
}

/// `default_request.inputs:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputsSection {
    /// Prompt file.
    pub prompt_path: Option<String>,
    /// Image path(s).
    pub image_path: Option<StringOrList>,
    /// Video path(s).
    pub video_path: Option<StringOrList>,
    /// In-memory image (any value).
    pub pil_image: Option<Value>,
    /// Pose input.
    pub pose: Option<String>,
    /// Mouse conditioning (any value).
    pub mouse_cond: Option<Value>,
    /// Keyboard conditioning (any value).
    pub keyboard_cond: Option<Value>,
    /// Grid sizes (any value).
    pub grid_sizes: Option<Value>,
    /// Camera embedding (any value).
    pub c2ws_plucker_emb: Option<Value>,
    /// Action file.
    pub action_path: Option<String>,
    /// Refine source.
    pub refine_from: Option<String>,
    /// Stage-1 video (any value).
    pub stage1_video: Option<Value>,
}

/// `default_request.sampling:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Videos per prompt (not used: one per segment).
    pub num_videos_per_prompt: i64,
    /// Seed of the first segment.
    pub seed: i64,
    /// Text-encoder sequence cap.
    pub max_sequence_length: Option<i64>,
    /// Frames per segment, 1..=1000.
    pub num_frames: u32,
    /// Frame height in pixels, even, 16..=4096.
    pub height: u32,
    /// Frame width in pixels, even, 16..=4096.
    pub width: u32,
    /// Super-resolution height.
    pub height_sr: i64,
    /// Super-resolution width.
    pub width_sr: i64,
    /// Frames per second, 1..=240.
    pub fps: u32,
    /// Denoising steps per segment, 1..=1000.
    pub num_inference_steps: u32,
    /// Super-resolution steps.
    pub num_inference_steps_sr: i64,
    /// Classifier-free guidance scale, finite and >= 0.
    pub guidance_scale: f64,
    /// Second guidance scale.
    pub guidance_scale_2: Option<f64>,
    /// CFG normalization.
    pub cfg_normalization: bool,
    /// CFG truncation.
    pub cfg_truncation: Option<f64>,
    /// Guidance rescale.
    pub guidance_rescale: f64,
    /// True CFG scale.
    pub true_cfg_scale: Option<f64>,
    /// Embedded guidance.
    pub use_embedded_guidance: Option<bool>,
    /// Boundary ratio.
    pub boundary_ratio: Option<f64>,
    /// Explicit sigma schedule.
    pub sigmas: Option<Vec<f64>>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            num_videos_per_prompt: 1,
            seed: 1024,
            max_sequence_length: None,
            num_frames: 125,
            height: 720,
            width: 1280,
            height_sr: 1072,
            width_sr: 1920,
            fps: 24,
            num_inference_steps: 50,
            num_inference_steps_sr: 50,
            guidance_scale: 1.0,
            guidance_scale_2: None,
            cfg_normalization: false,
            cfg_truncation: Some(1.0),
            guidance_rescale: 0.0,
            true_cfg_scale: None,
            use_embedded_guidance: None,
            boundary_ratio: None,
            sigmas: None,
        }
    }
}

/// `default_request.runtime:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// TeaCache.
    pub enable_teacache: bool,
    /// Return trajectory latents.
    pub return_trajectory_latents: bool,
    /// Return decoded trajectory.
    pub return_trajectory_decoded: bool,
}

/// `default_request.output:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// Output directory.
    pub output_path: String,
    /// Output file name.
    pub output_video_name: Option<String>,
    /// Save the video to disk.
    pub save_video: bool,
    /// Return frames.
    pub return_frames: bool,
    /// Return continuation state.
    pub return_state: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            output_path: "outputs/".to_owned(),
            output_video_name: None,
            save_video: true,
            return_frames: true,
            return_state: false,
        }
    }
}

/// `default_request.state:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestState {
    /// State schema tag.
    pub kind: String,
    /// State data.
    pub payload: Mapping,
}

/// `default_request.plan:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationPlan {
    /// Stages in order.
    pub stages: Vec<PlannedStage>,
    /// Stage whose output is returned.
    #[serde(default)]
    pub final_stage: Option<String>,
}

/// One entry of `default_request.plan.stages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedStage {
    /// Stage name.
    pub name: String,
    /// Stage kind.
    pub kind: String,
    /// Input stage.
    #[serde(default)]
    pub source: Option<String>,
    /// Stage overrides.
    #[serde(default)]
    pub overrides: Mapping,
}

/// `streaming:` — FastVideo's keys plus this server's own (see `docs/config.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Idle timeout between client messages, seconds, 1..=86400.
    pub session_timeout_seconds: u64,
    /// Segments per session, 1..=10000.
    pub generation_segment_cap: u32,
    /// Media format (echoed in `/health`).
    pub stream_mode: StreamMode,
    /// Warm-up run before the server reports ready.
    pub warmup: WarmupConfig,
    /// Generator worker pool.
    pub pool: PoolSection,
    /// Prompt enhancer (not used).
    pub prompt: PromptSection,
    /// Prompt safety filter (not used).
    pub safety: SafetySection,
    /// Concurrently connected sessions, 1..=10000.
    pub max_sessions: usize,
    /// Sessions one client address may hold at once, 1..=10000.
    pub max_sessions_per_ip: usize,
    /// Browser origins allowed to connect; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Shared secret clients must present (None: no authentication).
    pub auth_token: Option<String>,
    /// Sessions waiting for a worker, 0..=10000.
    pub max_queue: usize,
    /// Time a client has to send `session_init_v2`, seconds, 1..=3600.
    pub init_timeout_seconds: u64,
    /// Longest wait in the queue for a worker, seconds, 1..=86400.
    pub acquire_timeout_seconds: u64,
    /// Largest incoming WebSocket message, bytes, 1024..=268435456 (larger: close 1009).
    pub max_message_bytes: usize,
    /// Largest decoded initial image, bytes, 1..=268435456.
    pub max_init_image_bytes: usize,
    /// Frames per fMP4 fragment, 1..=1000.
    pub fragment_frames: u32,
    /// H.264 target bitrate, bits/s, 100000..=100000000.
    pub video_bitrate_bps: u32,
    /// Time in-flight segments get to finish at shutdown, seconds, 0..=3600.
    pub shutdown_grace_seconds: u64,
    /// Directory for per-session JSONL logs (None: off).
    pub session_log_dir: Option<String>,
    /// Period of the idle-session reaper, milliseconds, 10..=60000.
    pub reaper_interval_ms: u64,
    /// Session/blob store bounds.
    pub store: StoreSection,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            session_timeout_seconds: 300,
            generation_segment_cap: 6,
            stream_mode: StreamMode::AvFmp4,
            warmup: WarmupConfig::default(),
            pool: PoolSection::default(),
            prompt: PromptSection::default(),
            safety: SafetySection::default(),
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
            store: StoreSection::default(),
        }
    }
}

/// `streaming.stream_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    /// Run one generation per worker before reporting ready.
    pub enabled: bool,
    /// Prompt of that generation (must not be blank when enabled).
    pub prompt: String,
    /// Longest a warm-up may take, seconds, 1..=86400.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolSection {
    /// Generator workers, 1..=1024 (None: 1). Use [`PoolSection::workers`].
    pub num_workers: Option<u32>,
    /// Re-encode audio (not used).
    pub enable_audio_reencode: bool,
    /// Conditioning frames carried between segments (not used).
    pub conditioning_num_frames: i64,
    /// Conditioning end offset (not used).
    pub conditioning_end_offset: i64,
}

impl PoolSection {
    /// Number of workers to start: `num_workers`, or 1 when unset.
    pub fn workers(&self) -> u32 {
        self.num_workers.unwrap_or(1)
    }
}

impl Default for PoolSection {
    fn default() -> Self {
        Self {
            num_workers: None,
            enable_audio_reencode: true,
            conditioning_num_frames: 9,
            conditioning_end_offset: 0,
        }
    }
}

/// `streaming.prompt:` (FastVideo's prompt enhancer; accepted, not used).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PromptSection {
    /// Enhance prompts.
    pub enabled: bool,
    /// LLM provider.
    pub provider: PromptProvider,
    /// LLM model.
    pub model: String,
    /// Request timeout, milliseconds.
    pub timeout_ms: i64,
    /// System-prompt directory.
    pub system_prompt_dir: Option<String>,
}

impl Default for PromptSection {
    fn default() -> Self {
        Self {
            enabled: false,
            provider: PromptProvider::Cerebras,
            model: "gpt-oss-120b".to_owned(),
            timeout_ms: 20000,
            system_prompt_dir: None,
        }
    }
}

/// `streaming.prompt.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PromptProvider {
    /// Cerebras.
    #[serde(rename = "cerebras")]
    Cerebras,
    /// Groq.
    #[serde(rename = "groq")]
    Groq,
}

/// `streaming.safety:` (FastVideo's prompt safety filter; accepted, not used).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetySection {
    /// Filter prompts.
    pub enabled: bool,
    /// Classifier weights.
    pub classifier_path: Option<String>,
}

/// `streaming.store:` — bounds of the in-memory session-state and blob stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Most entries kept, 1..=1000000 (oldest evicted first).
    pub capacity: usize,
    /// Entry lifetime, seconds, 1..=2592000.
    pub ttl_seconds: u64,
    /// All blobs together, bytes, 1..=17179869184.
    pub blob_max_total_bytes: usize,
    /// One blob, bytes, 1..=268435456 and at most `blob_max_total_bytes`.
    pub blob_max_bytes: usize,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            capacity: 1024,
            ttl_seconds: 3600,
            blob_max_total_bytes: 256 * 1024 * 1024,
            blob_max_bytes: 64 * 1024 * 1024,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------

impl ServeConfig {
    /// FastVideo's defaults with the given model.
    pub fn new(model_path: impl Into<String>) -> Self {
        Self {
            generator: GeneratorConfig::new(model_path),
            server: ServerSection::default(),
            default_request: DefaultRequest::default(),
            streaming: StreamingConfig::default(),
        }
    }

    /// The mock server's defaults: model `mock`, 24 frames of 256×256 at 24 fps, 1 step,
    /// seed 1024, guidance 1.0, cap 6 segments, 120 s session timeout, 8 sessions,
    /// listening on 127.0.0.1:8000.
    pub fn mock_defaults() -> ServeConfig {
        let mut config = ServeConfig::new("mock");
        config.server.host = "127.0.0.1".to_owned();
        config.server.port = 8000;
        let sampling = &mut config.default_request.sampling;
        sampling.num_frames = 24;
        sampling.height = 256;
        sampling.width = 256;
        sampling.fps = 24;
        sampling.num_inference_steps = 1;
        sampling.seed = 1024;
        sampling.guidance_scale = 1.0;
        config.streaming.generation_segment_cap = 6;
        config.streaming.session_timeout_seconds = 120;
        config.streaming.max_sessions = 8;
        // Several sessions generate at once (FastVideo's mock serves one at a time).
        config.streaming.pool.num_workers = Some(4);
        config
    }

    /// Loads and validates a config file; `.yaml`/`.yml` is YAML, `.json` is JSON
    /// (case-insensitive). Nothing is bound or started.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        from_value(fv_runtime::config::load(path, MAX_CONFIG_BYTES)?)
    }

    /// Loads and validates YAML text.
    pub fn from_yaml_str(text: &str) -> Result<LoadedConfig, ConfigError> {
        from_value(parse_str(text, Format::Yaml, MAX_CONFIG_BYTES)?)
    }

    /// Loads and validates JSON text.
    pub fn from_json_str(text: &str) -> Result<LoadedConfig, ConfigError> {
        from_value(parse_str(text, Format::Json, MAX_CONFIG_BYTES)?)
    }

    /// Checks every rule `load` applies (types, ranges, cross-field rules) on a config that
    /// may have been built or changed in code. Reports every problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check_semantics(&mut problems);
        match serde_json::to_value(self) {
            Ok(Value::Object(root)) => {
                let mut walk = Walk::default();
                walk.check_struct(ROOT, &root, "");
                for problem in walk.problems {
                    // A NaN serializes as null; its cross-field message already names it.
                    if !problems.iter().any(|p: &Problem| p.path == problem.path) {
                        problems.push(problem);
                    }
                }
            }
            Ok(other) => problems.push(Problem::new(
                "",
                format!("expected a mapping, got {}", describe(&other)),
            )),
            Err(e) => problems.push(Problem::new("", format!("cannot be represented: {e}"))),
        }
        into_result(problems)
    }

    /// The effective config as YAML, every key written out (for `--check-config`).
    pub fn to_yaml_string(&self) -> String {
        match serde_saphyr::to_string(self) {
            Ok(text) => text,
            // JSON is valid YAML; this fallback is only reachable through a serializer bug.
            Err(_) => serde_json::to_string_pretty(self).unwrap_or_default(),
        }
    }

    /// Rules that involve more than one key, or float values the schema walker cannot see.
    fn check_semantics(&self, problems: &mut Vec<Problem>) {
        if self.generator.model_path.trim().is_empty() {
            problems.push(Problem::new(
                "generator.model_path",
                "must not be empty".to_owned(),
            ));
        }
        if let Some(device) = &self.generator.device
            && ModelDevice::parse(device).is_none()
        {
            problems.push(Problem::new(
                "generator.device",
                format!("must be cpu, cuda or cuda:N, got {device:?}"),
            ));
        }
        if self.server.host.trim().is_empty() {
            problems.push(Problem::new("server.host", "must not be empty".to_owned()));
        }
        let s = &self.default_request.sampling;
        let p = "default_request.sampling";
        let floats = [
            ("guidance_scale", Some(s.guidance_scale)),
            ("guidance_scale_2", s.guidance_scale_2),
            ("cfg_truncation", s.cfg_truncation),
            ("guidance_rescale", Some(s.guidance_rescale)),
            ("true_cfg_scale", s.true_cfg_scale),
            ("boundary_ratio", s.boundary_ratio),
        ];
        for (name, value) in floats {
            if let Some(v) = value
                && !v.is_finite()
            {
                problems.push(Problem::new(
                    &format!("{p}.{name}"),
                    format!("must be a finite number (got {v})"),
                ));
            }
        }
        if let Some(sigmas) = &s.sigmas {
            for (i, v) in sigmas.iter().enumerate() {
                if !v.is_finite() {
                    problems.push(Problem::new(
                        &format!("{p}.sigmas[{i}]"),
                        format!("must be a finite number (got {v})"),
                    ));
                }
            }
        }
        let st = &self.streaming;
        if st.warmup.enabled && st.warmup.prompt.trim().is_empty() {
            problems.push(Problem::new(
                "streaming.warmup.prompt",
                "must not be blank while streaming.warmup.enabled is true".to_owned(),
            ));
        }
        if let Some(dir) = &st.session_log_dir
            && dir.trim().is_empty()
        {
            problems.push(Problem::new(
                "streaming.session_log_dir",
                "must not be empty (use null to turn session logs off)".to_owned(),
            ));
        }
        if st.store.blob_max_bytes > st.store.blob_max_total_bytes {
            problems.push(Problem::new(
                "streaming.store.blob_max_bytes",
                format!(
                    "must not exceed streaming.store.blob_max_total_bytes ({} > {})",
                    st.store.blob_max_bytes, st.store.blob_max_total_bytes
                ),
            ));
        }
    }
}

fn from_value(root: Value) -> Result<LoadedConfig, ConfigError> {
    // An empty document is an empty mapping (then `generator` is missing), as in FastVideo.
    let mut root = match root {
        Value::Null => Mapping::new(),
        Value::Object(map) => map,
        other => {
            return Err(invalid(vec![Problem::new(
                "",
                format!(
                    "expected a mapping at the top level, got {}",
                    describe(&other)
                ),
            )]));
        }
    };
    let mut walk = Walk::default();
    walk.check_struct(ROOT, &root, "");
    if !walk.problems.is_empty() {
        return Err(invalid(walk.problems));
    }
    let mut warnings = Vec::new();
    if matches!(root.get("streaming"), None | Some(Value::Null)) {
        root.remove("streaming");
        warnings.push(
            "streaming: block absent or null; `fastvideo serve` would start its REST server \
             instead, this server streams with the default streaming settings"
                .to_owned(),
        );
    }
    let config: ServeConfig =
        serde_path_to_error::deserialize(Value::Object(root)).map_err(|e| {
            // Unreachable when the schema table and the structs agree (a unit test checks it).
            ConfigError::File(FileError::Parse {
                message: format!("{}: {}", e.path(), e.inner()),
            })
        })?;
    let mut problems = Vec::new();
    config.check_semantics(&mut problems);
    into_result(problems)?;
    Ok(LoadedConfig {
        config,
        ignored: walk.ignored,
        warnings,
    })
}

// ---------------------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
struct Problem {
    path: String,
    message: String,
}

impl Problem {
    fn new(path: &str, message: String) -> Self {
        Self {
            path: path.to_owned(),
            message,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(top level): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

fn invalid(problems: Vec<Problem>) -> ConfigError {
    ConfigError::Invalid {
        problems: problems.iter().map(Problem::to_string).collect(),
    }
}

fn into_result(problems: Vec<Problem>) -> Result<(), ConfigError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(invalid(problems))
    }
}

// ---------------------------------------------------------------------------------------
// Schema table
// ---------------------------------------------------------------------------------------

/// The type and rule of one key.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Bool,
    /// Inclusive range; `even` for H.264 4:2:0 frame sizes.
    Int {
        min: i128,
        max: i128,
        even: bool,
    },
    /// Finite; `min` inclusive where set.
    Float {
        min: Option<f64>,
    },
    Enum(&'static [&'static str]),
    /// Free-form mapping.
    Map,
    /// Anything, null included.
    Any,
    StrOrList,
    StrList,
    FloatList,
    Struct(&'static [Field]),
    /// A list of mappings with these fields.
    List(&'static [Field]),
}

/// One key of the schema.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    kind: Kind,
    nullable: bool,
    required: bool,
    /// This server reads the value (otherwise a set value lands in `ignored`).
    used: bool,
    doc: &'static str,
}

impl Field {
    const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    /// Marks the key as read by this server and documents it.
    const fn used(mut self, doc: &'static str) -> Self {
        self.used = true;
        self.doc = doc;
        self
    }
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        kind,
        nullable: false,
        required: false,
        used: false,
        doc: "",
    }
}

const fn int(min: i128, max: i128) -> Kind {
    Kind::Int {
        min,
        max,
        even: false,
    }
}

const I64: Kind = int(i64::MIN as i128, i64::MAX as i128);
const FLOAT: Kind = Kind::Float { min: None };

const ROOT: &[Field] = &[
    f("generator", Kind::Struct(GENERATOR)).required(),
    f("server", Kind::Struct(SERVER)),
    f("default_request", Kind::Struct(REQUEST)),
    f("streaming", Kind::Struct(STREAMING)).nullable(),
];

const GENERATOR: &[Field] = &[
    f("model_path", Kind::Str)
        .required()
        .used("Model id or path handed to the generator (required, not empty)."),
    f("revision", Kind::Str).nullable(),
    f("trust_remote_code", Kind::Bool),
    f("engine", Kind::Struct(ENGINE)),
    f("pipeline", Kind::Struct(PIPELINE)),
    f("device", Kind::Str).used(
        "fv-stream addition: where the native model (streaming-server) runs: `cpu` (default), \
         `cuda` or `cuda:N` (a build with `--features cuda`).",
    ),
    f("dtype", Kind::Enum(&["f32", "bf16", "f16"])).used(
        "fv-stream addition: weight and compute dtype of the native model: `f32`, `bf16` or \
         `f16`; unset: `bf16` on a GPU (the released weights), `f32` on the CPU.",
    ),
];

const ENGINE: &[Field] = &[
    f("num_gpus", int(1, i64::MAX as i128)),
    f("execution_backend", Kind::Enum(&["mp", "ray"])),
    f("parallelism", Kind::Struct(PARALLELISM)),
    f("offload", Kind::Struct(OFFLOAD)),
    f("compile", Kind::Struct(COMPILE)),
    f("enable_stage_verification", Kind::Bool),
    f("use_fsdp_inference", Kind::Bool),
    f("disable_autocast", Kind::Bool),
    f("use_batched_cfg", Kind::Bool),
    f("quantization", Kind::Struct(QUANTIZATION)).nullable(),
];

const PARALLELISM: &[Field] = &[
    f("tp_size", I64),
    f("sp_size", I64),
    f("hsdp_replicate_dim", I64),
    f("hsdp_shard_dim", I64),
    f("dist_timeout", I64).nullable(),
];

const OFFLOAD: &[Field] = &[
    f("dit", Kind::Bool),
    f("dit_layerwise", Kind::Bool),
    f("text_encoder", Kind::Bool),
    f("image_encoder", Kind::Bool),
    f("vae", Kind::Bool),
    f("pin_cpu_memory", Kind::Bool),
];

const COMPILE: &[Field] = &[
    f("enabled", Kind::Bool),
    f("backend", Kind::Str).nullable(),
    f("fullgraph", Kind::Bool).nullable(),
    f("mode", Kind::Str).nullable(),
    f("dynamic", Kind::Bool).nullable(),
    f("extras", Kind::Map),
    f("text_encoder_enabled", Kind::Bool).nullable(),
    f("vae_enabled", Kind::Bool).nullable(),
    f("audio_vae_enabled", Kind::Bool).nullable(),
    f("dit_kwargs", Kind::Map),
    f("text_encoder_kwargs", Kind::Map),
    f("vae_kwargs", Kind::Map),
    f("audio_vae_kwargs", Kind::Map),
];

const QUANTIZATION: &[Field] = &[
    f("text_encoder_quant", Kind::Str).nullable(),
    f("transformer_quant", Kind::Str).nullable(),
];

const PIPELINE: &[Field] = &[
    f("workload_type", Kind::Enum(&["t2v", "i2v", "t2i", "i2i"])).nullable(),
    f("preset", Kind::Str).nullable(),
    f("preset_version", I64).nullable(),
    f("components", Kind::Struct(COMPONENTS)),
    f("vae_tiling", Kind::Bool).nullable(),
    f("preset_overrides", Kind::Map),
    f("experimental", Kind::Map),
];

const COMPONENTS: &[Field] = &[
    f("config_root", Kind::Str).nullable(),
    f("pipeline_config_path", Kind::Str).nullable(),
    f("text_encoder_weights", Kind::Str).nullable(),
    f("transformer_weights", Kind::Str).nullable(),
    f("transformer_2_weights", Kind::Str).nullable(),
    f("vae_weights", Kind::Str).nullable(),
    f("upsampler_weights", Kind::Str).nullable(),
    f("lora_path", Kind::Str).nullable(),
    f("override_pipeline_cls_name", Kind::Str).nullable(),
    f("override_transformer_cls_name", Kind::Str).nullable(),
];

const SERVER: &[Field] = &[
    f("host", Kind::Str).used("Address to bind (not empty)."),
    f("port", int(0, u16::MAX as i128)).used("Port to bind; 0 picks a free port."),
    f("output_dir", Kind::Str),
];

const REQUEST: &[Field] = &[
    f("prompt", Kind::StrOrList).nullable(),
    f("negative_prompt", Kind::Str)
        .nullable()
        .used("Negative prompt of a segment whose request sends none (or an empty one)."),
    f("inputs", Kind::Struct(INPUTS)),
    f("sampling", Kind::Struct(SAMPLING)),
    f("runtime", Kind::Struct(RUNTIME)),
    f("output", Kind::Struct(OUTPUT)),
    f("stage_overrides", Kind::Map),
    f("state", Kind::Struct(STATE)).nullable(),
    f("plan", Kind::Struct(PLAN)).nullable(),
    f("extensions", Kind::Map),
];

const INPUTS: &[Field] = &[
    f("prompt_path", Kind::Str).nullable(),
    f("image_path", Kind::StrOrList).nullable(),
    f("video_path", Kind::StrOrList).nullable(),
    f("pil_image", Kind::Any).nullable(),
    f("pose", Kind::Str).nullable(),
    f("mouse_cond", Kind::Any).nullable(),
    f("keyboard_cond", Kind::Any).nullable(),
    f("grid_sizes", Kind::Any).nullable(),
    f("c2ws_plucker_emb", Kind::Any).nullable(),
    f("action_path", Kind::Str).nullable(),
    f("refine_from", Kind::Str).nullable(),
    f("stage1_video", Kind::Any).nullable(),
];

const FRAME_SIDE: Kind = Kind::Int {
    min: 16,
    max: 4096,
    even: true,
};

const SAMPLING: &[Field] = &[
    f("num_videos_per_prompt", I64),
    f("seed", I64).used("Seed of a segment whose request sends none; used unchanged."),
    f("max_sequence_length", I64).nullable(),
    f("num_frames", int(1, 1000)).used("Frames per segment."),
    f("height", FRAME_SIDE).used("Frame height in pixels; even for H.264 4:2:0."),
    f("width", FRAME_SIDE).used("Frame width in pixels; even for H.264 4:2:0."),
    f("height_sr", I64),
    f("width_sr", I64),
    f("fps", int(1, 240)).used("Frames per second of the stream."),
    f("num_inference_steps", int(1, 1000)).used(
        "Denoising steps of a segment whose request sends none (clients may ask for 1..=1000).",
    ),
    f("num_inference_steps_sr", I64),
    f("guidance_scale", Kind::Float { min: Some(0.0) }).used(
        "Guidance scale of a segment whose request sends none (clients may ask for 0..=100).",
    ),
    f("guidance_scale_2", FLOAT).nullable(),
    f("cfg_normalization", Kind::Bool),
    f("cfg_truncation", FLOAT).nullable(),
    f("guidance_rescale", FLOAT),
    f("true_cfg_scale", FLOAT).nullable(),
    f("use_embedded_guidance", Kind::Bool).nullable(),
    f("boundary_ratio", FLOAT).nullable(),
    f("sigmas", Kind::FloatList).nullable(),
];

const RUNTIME: &[Field] = &[
    f("enable_teacache", Kind::Bool),
    f("return_trajectory_latents", Kind::Bool),
    f("return_trajectory_decoded", Kind::Bool),
];

const OUTPUT: &[Field] = &[
    f("output_path", Kind::Str),
    f("output_video_name", Kind::Str).nullable(),
    f("save_video", Kind::Bool),
    f("return_frames", Kind::Bool),
    f("return_state", Kind::Bool),
];

const STATE: &[Field] = &[
    f("kind", Kind::Str).required(),
    f("payload", Kind::Map).required(),
];

const PLAN: &[Field] = &[
    f("stages", Kind::List(STAGE)).required(),
    f("final_stage", Kind::Str).nullable(),
];

const STAGE: &[Field] = &[
    f("name", Kind::Str).required(),
    f("kind", Kind::Str).required(),
    f("source", Kind::Str).nullable(),
    f("overrides", Kind::Map),
];

const STREAMING: &[Field] = &[
    f("session_timeout_seconds", int(1, 86_400))
        .used("Idle timeout: longest gap between client messages while no segment runs; restarts when a segment ends, paused while queued."),
    f("generation_segment_cap", int(1, 10_000))
        .used("Successful segments per session; the session ends after the last."),
    f("stream_mode", Kind::Enum(&["av_fmp4", "legacy_jpeg"]))
        .used("Echoed in `/health`; media is fragmented MP4 (H.264) in both modes."),
    f("warmup", Kind::Struct(WARMUP)),
    f("pool", Kind::Struct(POOL)),
    f("prompt", Kind::Struct(PROMPT)),
    f("safety", Kind::Struct(SAFETY)),
    f("max_sessions", int(1, 10_000))
        .used("Sessions connected at once; one more is refused at accept."),
    f("max_sessions_per_ip", int(1, 10_000))
        .used("Sessions one client address may hold at once; one more is refused at accept."),
    f("allowed_origins", Kind::StrList).used(
        "Browser origins allowed to open `/v1/stream` (e.g. `https://app.example`); empty allows any. A request without an Origin header (not a browser) is always allowed.",
    ),
    f("auth_token", Kind::Str).nullable().used(
        "When set, clients must present it as `Authorization: Bearer <token>` or `?token=<token>`; others get HTTP 401.",
    ),
    f("max_queue", int(0, 10_000))
        .used("Sessions waiting for a free worker; beyond it a session is refused."),
    f("init_timeout_seconds", int(1, 3_600))
        .used("Time a client has to send `session_init_v2` after connecting."),
    f("acquire_timeout_seconds", int(1, 86_400)).used("Longest wait in the queue for a worker."),
    f("max_message_bytes", int(1024, 268_435_456))
        .used("Largest incoming WebSocket message; larger closes with 1009."),
    f("max_init_image_bytes", int(1, 268_435_456)).used("Largest decoded `initial_image`."),
    f("fragment_frames", int(1, 1_000)).used("Frames per fMP4 fragment (moof+mdat)."),
    f("video_bitrate_bps", int(100_000, 100_000_000))
        .used("H.264 target bitrate, bits per second."),
    f("shutdown_grace_seconds", int(0, 3_600))
        .used("At shutdown, time running segments get to finish."),
    f("session_log_dir", Kind::Str)
        .nullable()
        .used("Directory for one JSONL log per session; null turns it off."),
    f("reaper_interval_ms", int(10, 60_000))
        .used("How often idle sessions are checked for timeouts."),
    f("store", Kind::Struct(STORE)),
];

const WARMUP: &[Field] = &[
    f("enabled", Kind::Bool).used("Run one generation per worker before `/readyz` says ready."),
    f("prompt", Kind::Str).used("Prompt of the warm-up generation (not blank when enabled)."),
    f("timeout_seconds", int(1, 86_400))
        .used("Longest the warm-up may take; after it (or as soon as every worker failed its warm-up) `/readyz` reports `warmup_failed` (still 503) and an error is logged."),
];

const POOL: &[Field] = &[
    f("num_workers", int(1, 1_024))
        .nullable()
        .used("Generator workers; null means 1."),
    f("enable_audio_reencode", Kind::Bool),
    f("conditioning_num_frames", I64),
    f("conditioning_end_offset", I64),
];

const PROMPT: &[Field] = &[
    f("enabled", Kind::Bool),
    f("provider", Kind::Enum(&["cerebras", "groq"])),
    f("model", Kind::Str),
    f("timeout_ms", I64),
    f("system_prompt_dir", Kind::Str).nullable(),
];

const SAFETY: &[Field] = &[
    f("enabled", Kind::Bool),
    f("classifier_path", Kind::Str).nullable(),
];

const STORE: &[Field] = &[
    f("capacity", int(1, 1_000_000))
        .used("Most saved session states kept; the oldest is evicted first."),
    f("ttl_seconds", int(1, 2_592_000)).used("Lifetime of a saved state or blob."),
    f("blob_max_total_bytes", int(1, 17_179_869_184))
        .used("All stored blobs together (the blob store is bounded; nothing writes blobs yet)."),
    f("blob_max_bytes", int(1, 268_435_456))
        .used("One stored blob; at most `blob_max_total_bytes`."),
];

// ---------------------------------------------------------------------------------------
// Schema walker
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Walk {
    problems: Vec<Problem>,
    ignored: Vec<String>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

impl Walk {
    fn check_struct(&mut self, fields: &[Field], obj: &Mapping, path: &str) {
        for key in obj.keys() {
            if !fields.iter().any(|field| field.name == key) {
                let message = format!("unknown field{}", suggestion(key, fields));
                self.problems.push(Problem::new(&join(path, key), message));
            }
        }
        for field in fields {
            let field_path = join(path, field.name);
            match obj.get(field.name) {
                None if field.required => {
                    self.problems.push(Problem::new(
                        &field_path,
                        "missing required field".to_owned(),
                    ));
                }
                None => {}
                Some(Value::Null) if field.nullable || matches!(field.kind, Kind::Any) => {}
                Some(value) => self.check_value(field, value, &field_path),
            }
        }
    }

    fn check_value(&mut self, field: &Field, value: &Value, path: &str) {
        let ok = match field.kind {
            Kind::Struct(fields) => {
                if let Value::Object(obj) = value {
                    self.check_struct(fields, obj, path);
                    // Leaves inside report themselves.
                    return;
                }
                false
            }
            Kind::List(fields) => {
                if let Value::Array(items) = value {
                    for (i, item) in items.iter().enumerate() {
                        let item_path = format!("{path}[{i}]");
                        match item {
                            Value::Object(obj) => self.check_struct(fields, obj, &item_path),
                            other => self.problems.push(Problem::new(
                                &item_path,
                                format!("expected a mapping, got {}", describe(other)),
                            )),
                        }
                    }
                    if items.is_empty() && !field.used {
                        self.ignored.push(path.to_owned());
                    }
                    return;
                }
                false
            }
            Kind::Str => value.is_string(),
            Kind::Bool => value.is_boolean(),
            Kind::Int { min, max, even } => {
                match int_of(value) {
                    Some(v) if v < min || v > max => {
                        self.problems.push(Problem::new(
                            path,
                            format!("must be in {min}..={max} (got {v})"),
                        ));
                        return;
                    }
                    Some(v) if even && v % 2 != 0 => {
                        self.problems.push(Problem::new(
                        path,
                        format!("must be even (got {v}): H.264 with 4:2:0 chroma needs even frame sizes"),
                    ));
                        return;
                    }
                    Some(_) => true,
                    None => false,
                }
            }
            Kind::Float { min } => match value.as_f64() {
                Some(v) if !v.is_finite() => {
                    self.problems.push(Problem::new(
                        path,
                        format!("must be a finite number (got {v})"),
                    ));
                    return;
                }
                Some(v) if min.is_some_and(|m| v < m) => {
                    let m = min.unwrap_or_default();
                    self.problems
                        .push(Problem::new(path, format!("must be >= {m} (got {v})")));
                    return;
                }
                Some(_) => true,
                None => false,
            },
            Kind::Enum(allowed) => value.as_str().is_some_and(|s| allowed.contains(&s)),
            Kind::Map => value.is_object(),
            Kind::Any => true,
            Kind::StrOrList => match value {
                Value::String(_) => true,
                Value::Array(items) => {
                    if !self.check_items(items, path, Value::is_string, "a string") {
                        return;
                    }
                    true
                }
                _ => false,
            },
            Kind::StrList => match value {
                Value::Array(items) => {
                    if !self.check_items(items, path, Value::is_string, "a string") {
                        return;
                    }
                    true
                }
                _ => false,
            },
            Kind::FloatList => match value {
                Value::Array(items) => {
                    if !self.check_items(items, path, Value::is_number, "a number") {
                        return;
                    }
                    true
                }
                _ => false,
            },
        };
        if !ok {
            let mut message = format!("expected {}, got {}", expected(field), describe(value));
            if matches!(field.kind, Kind::Bool)
                && value.as_str().is_some_and(|s| {
                    ["yes", "no", "on", "off", "y", "n", "true", "false"]
                        .contains(&s.to_ascii_lowercase().as_str())
                })
            {
                message.push_str(" (write true or false without quotes)");
            }
            self.problems.push(Problem::new(path, message));
        } else if !field.used {
            self.ignored.push(path.to_owned());
        }
    }

    /// Reports every bad item; true when all are fine.
    fn check_items(
        &mut self,
        items: &[Value],
        path: &str,
        ok: fn(&Value) -> bool,
        what: &str,
    ) -> bool {
        let mut all_ok = true;
        for (i, item) in items.iter().enumerate() {
            if !ok(item) {
                all_ok = false;
                self.problems.push(Problem::new(
                    &format!("{path}[{i}]"),
                    format!("expected {what}, got {}", describe(item)),
                ));
            }
        }
        all_ok
    }
}

/// The value as an integer, if it is one (floats such as `1.0` are not).
fn int_of(value: &Value) -> Option<i128> {
    let n = value.as_number()?;
    n.as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
}

/// Short description of a value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_f64() => format!("float {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(s) => {
            const SHOWN: usize = 40;
            let mut shown: String = s.chars().take(SHOWN).collect();
            if s.chars().count() > SHOWN {
                shown.push_str("...");
            }
            format!("string {shown:?}")
        }
        Value::Array(items) => format!(
            "a list of {} item{}",
            items.len(),
            if items.len() == 1 { "" } else { "s" }
        ),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn is_full_i64(min: i128, max: i128) -> bool {
    min == i128::from(i64::MIN) && max == i128::from(i64::MAX)
}

/// The allowed values of an integer key, e.g. `1..=1000`, `>= 1`.
fn int_range_text(min: i128, max: i128) -> String {
    if is_full_i64(min, max) {
        "any".to_owned()
    } else if max == i128::from(i64::MAX) {
        format!(">= {min}")
    } else {
        format!("{min}..={max}")
    }
}

/// What a key accepts, for "expected ..." messages.
fn expected(field: &Field) -> String {
    let base = match field.kind {
        Kind::Str => "a string".to_owned(),
        Kind::Bool => "a boolean (true or false)".to_owned(),
        Kind::Int { min, max, even } => {
            let mut text = "an integer".to_owned();
            if !is_full_i64(min, max) {
                text.push_str(&format!(" ({})", int_range_text(min, max)));
            }
            if even {
                text.push_str(", even");
            }
            text
        }
        Kind::Float { min: Some(m) } => format!("a number >= {m}"),
        Kind::Float { min: None } => "a number".to_owned(),
        Kind::Enum(allowed) => format!("one of {}", allowed.join(", ")),
        Kind::Map | Kind::Struct(_) => "a mapping".to_owned(),
        Kind::Any => "any value".to_owned(),
        Kind::StrOrList => "a string or a list of strings".to_owned(),
        Kind::StrList => "a list of strings".to_owned(),
        Kind::FloatList => "a list of numbers".to_owned(),
        Kind::List(_) => "a list of mappings".to_owned(),
    };
    if field.nullable {
        format!("{base} or null")
    } else {
        base
    }
}

/// Case and `-`/`_` differences are the commonest typos; compare without them.
fn normalize(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// Edit distance counting an adjacent swap as one edit (optimal string alignment).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// ` (did you mean X?)` for an unknown key: a close name in the same block, else the same
/// name in another block (a key put under the wrong section).
fn suggestion(key: &str, fields: &[Field]) -> String {
    let key = normalize(key);
    let closest = fields
        .iter()
        .map(|field| (edit_distance(&key, field.name), field.name))
        .min_by_key(|(distance, _)| *distance);
    if let Some((distance, name)) = closest
        && distance <= (name.len() / 4).max(1)
    {
        return format!(" (did you mean {name}?)");
    }
    let mut elsewhere = Vec::new();
    paths_named(ROOT, "", &key, &mut elsewhere);
    // A name found in many blocks (`enabled`) says nothing about which one was meant.
    if !elsewhere.is_empty() && elsewhere.len() <= 3 {
        return format!(" (did you mean {}?)", elsewhere.join(" or "));
    }
    String::new()
}

fn paths_named(fields: &[Field], path: &str, name: &str, out: &mut Vec<String>) {
    for field in fields {
        let field_path = join(path, field.name);
        if field.name == name {
            out.push(field_path.clone());
        }
        match field.kind {
            Kind::Struct(inner) => paths_named(inner, &field_path, name, out),
            Kind::List(inner) => paths_named(inner, &format!("{field_path}[]"), name, out),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reference table
// ---------------------------------------------------------------------------------------

/// A Markdown table of every key: type, default, allowed values, whether this server uses
/// it, and what it does. Generated from the same table the loader checks against;
/// `docs/config.md` embeds it and a test keeps the two equal.
pub fn reference_markdown() -> String {
    let defaults = serde_json::to_value(ServeConfig::new("")).unwrap_or(Value::Null);
    let mut out = String::from(
        "| key | type | default | allowed | used | description |\n|---|---|---|---|---|---|\n",
    );
    reference_rows(ROOT, "", Some(&defaults), &mut out);
    out
}

fn reference_rows(fields: &[Field], path: &str, defaults: Option<&Value>, out: &mut String) {
    for field in fields {
        let field_path = join(path, field.name);
        let default = defaults.and_then(|d| d.get(field.name));
        match field.kind {
            Kind::Struct(inner) => {
                if field.nullable {
                    reference_row(field, &field_path, default, out);
                }
                reference_rows(inner, &field_path, default.filter(|d| d.is_object()), out);
            }
            Kind::List(inner) => {
                reference_row(field, &field_path, default, out);
                reference_rows(inner, &format!("{field_path}[]"), None, out);
            }
            _ => reference_row(field, &field_path, default, out),
        }
    }
}

fn reference_row(field: &Field, path: &str, default: Option<&Value>, out: &mut String) {
    let type_text = match field.kind {
        Kind::Str => "string".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::Int { .. } => "int".to_owned(),
        Kind::Float { .. } => "float".to_owned(),
        Kind::Enum(_) => "enum".to_owned(),
        Kind::Map | Kind::Struct(_) => "mapping".to_owned(),
        Kind::Any => "any".to_owned(),
        Kind::StrOrList => "string or list of strings".to_owned(),
        Kind::StrList => "list of strings".to_owned(),
        Kind::FloatList => "list of floats".to_owned(),
        Kind::List(_) => "list of mappings".to_owned(),
    };
    let type_text = if field.nullable && !matches!(field.kind, Kind::Any) {
        format!("{type_text} or null")
    } else {
        type_text
    };
    let default_text = if field.required {
        "required".to_owned()
    } else if matches!(field.kind, Kind::Struct(_)) && default.is_some_and(Value::is_object) {
        "defaults".to_owned()
    } else {
        match default {
            Some(value) => format!("`{}`", value.to_string().replace('|', "\\|")),
            None => "—".to_owned(),
        }
    };
    let allowed = match field.kind {
        Kind::Int { min, max, even } => {
            let range = int_range_text(min, max);
            if even {
                format!("{range}, even")
            } else {
                range
            }
        }
        Kind::Float { min: Some(m) } => format!("finite, >= {m}"),
        Kind::Float { min: None } | Kind::FloatList => "finite".to_owned(),
        Kind::Enum(values) => values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    let (used, doc) = if field.used {
        ("yes", field.doc)
    } else if matches!(field.kind, Kind::Struct(_) | Kind::List(_)) {
        ("—", "A block: see its keys.")
    } else {
        ("no", "FastVideo key; accepted, not used.")
    };
    out.push_str(&format!(
        "| `{path}` | {type_text} | {default_text} | {allowed} | {used} | {doc} |\n"
    ));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A value of the right type for every key (non-default where possible), built from the
    /// schema table alone.
    fn sample(fields: &[Field]) -> Value {
        let mut obj = Mapping::new();
        for field in fields {
            let value = match field.kind {
                // The one string the semantic checks constrain.
                Kind::Str if field.name == "device" => json!("cuda:1"),
                Kind::Str => json!(format!("{}-value", field.name)),
                Kind::Bool => json!(true),
                Kind::Int { min, max, .. } => json!(i64::try_from(16i128.clamp(min, max)).unwrap()),
                Kind::Float { min } => json!(min.unwrap_or(0.0) + 0.5),
                Kind::Enum(values) => json!(values[values.len() - 1]),
                Kind::Map => json!({"key": [1, "two"]}),
                Kind::Any => json!({"anything": [true]}),
                Kind::StrOrList => json!(["a", "b"]),
                Kind::StrList => json!(["a", "b"]),
                Kind::FloatList => json!([0.25, 1.5]),
                Kind::Struct(inner) => sample(inner),
                Kind::List(inner) => json!([sample(inner)]),
            };
            obj.insert(field.name.to_owned(), value);
        }
        Value::Object(obj)
    }

    #[test]
    fn schema_table_and_structs_agree_in_both_directions() {
        let full = sample(ROOT);
        let loaded = from_value(full.clone()).unwrap();
        // Every key of the table deserializes into a struct field and comes back unchanged:
        // the table has no key the structs lack, and the structs none the table lacks.
        assert_eq!(serde_json::to_value(&loaded.config).unwrap(), full);
        loaded.config.validate().unwrap();
    }

    #[test]
    fn defaults_pass_the_schema_walker() {
        let config = ServeConfig::new("model");
        let Value::Object(root) = serde_json::to_value(&config).unwrap() else {
            panic!("not a mapping")
        };
        let mut walk = Walk::default();
        walk.check_struct(ROOT, &root, "");
        assert!(walk.problems.is_empty(), "{:?}", walk.problems);
        config.validate().unwrap();
        ServeConfig::mock_defaults().validate().unwrap();
    }

    #[test]
    fn used_keys_are_exactly_the_ones_the_server_reads() {
        let loaded = from_value(sample(ROOT)).unwrap();
        let mut all = Vec::new();
        leaf_paths(ROOT, "", &mut all);
        let used: Vec<&String> = all.iter().filter(|p| !loaded.ignored.contains(p)).collect();
        let expected = [
            "generator.model_path",
            "generator.device",
            "generator.dtype",
            "server.host",
            "server.port",
            "default_request.negative_prompt",
            "default_request.sampling.seed",
            "default_request.sampling.num_frames",
            "default_request.sampling.height",
            "default_request.sampling.width",
            "default_request.sampling.fps",
            "default_request.sampling.num_inference_steps",
            "default_request.sampling.guidance_scale",
            "streaming.session_timeout_seconds",
            "streaming.generation_segment_cap",
            "streaming.stream_mode",
            "streaming.warmup.enabled",
            "streaming.warmup.prompt",
            "streaming.warmup.timeout_seconds",
            "streaming.pool.num_workers",
            "streaming.max_sessions",
            "streaming.max_sessions_per_ip",
            "streaming.allowed_origins",
            "streaming.auth_token",
            "streaming.max_queue",
            "streaming.init_timeout_seconds",
            "streaming.acquire_timeout_seconds",
            "streaming.max_message_bytes",
            "streaming.max_init_image_bytes",
            "streaming.fragment_frames",
            "streaming.video_bitrate_bps",
            "streaming.shutdown_grace_seconds",
            "streaming.session_log_dir",
            "streaming.reaper_interval_ms",
            "streaming.store.capacity",
            "streaming.store.ttl_seconds",
            "streaming.store.blob_max_total_bytes",
            "streaming.store.blob_max_bytes",
        ];
        assert_eq!(
            used,
            expected
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .iter()
                .collect::<Vec<_>>()
        );
        // Every used key is documented.
        let mut undocumented = Vec::new();
        documented(ROOT, "", &mut undocumented);
        assert!(
            undocumented.is_empty(),
            "used keys without doc text: {undocumented:?}"
        );
    }

    fn leaf_paths(fields: &[Field], path: &str, out: &mut Vec<String>) {
        for field in fields {
            let p = join(path, field.name);
            match field.kind {
                Kind::Struct(inner) => leaf_paths(inner, &p, out),
                Kind::List(inner) => leaf_paths(inner, &format!("{p}[0]"), out),
                _ => out.push(p),
            }
        }
    }

    fn documented(fields: &[Field], path: &str, out: &mut Vec<String>) {
        for field in fields {
            let p = join(path, field.name);
            match field.kind {
                Kind::Struct(inner) | Kind::List(inner) => documented(inner, &p, out),
                _ if field.used && field.doc.is_empty() => out.push(p),
                _ => {}
            }
        }
    }

    #[test]
    fn generator_device_and_dtype_parse_and_bad_spellings_name_the_key() {
        let text = "generator:\n  model_path: m\n  device: cuda:1\n  dtype: bf16\n";
        let c = ServeConfig::from_yaml_str(text).expect("valid").config;
        assert_eq!(c.generator.model_device(), Some(ModelDevice::Cuda(1)));
        assert_eq!(c.generator.dtype, Some(ModelDtype::Bf16));
        assert_eq!(ServeConfig::new("m").generator.model_device(), None);
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:1234", "CPU"] {
            let text = format!("generator:\n  model_path: m\n  device: \"{bad}\"\n");
            let err = ServeConfig::from_yaml_str(&text)
                .expect_err(bad)
                .to_string();
            assert!(err.contains("generator.device"), "{bad}: {err}");
        }
        let err = ServeConfig::from_yaml_str("generator:\n  model_path: m\n  dtype: f8\n")
            .expect_err("f8")
            .to_string();
        assert!(err.contains("generator.dtype"), "{err}");
        assert_eq!(ModelDevice::parse("cpu"), Some(ModelDevice::Cpu));
        assert_eq!(ModelDevice::parse("cuda"), Some(ModelDevice::Cuda(0)));
    }

    #[test]
    fn defaults_match_fastvideo_and_our_additions() {
        let c = ServeConfig::new("m");
        assert_eq!(
            (
                c.server.host.as_str(),
                c.server.port,
                c.server.output_dir.as_str()
            ),
            ("0.0.0.0", 8000, "outputs/")
        );
        let s = &c.default_request.sampling;
        assert_eq!(
            (
                s.num_frames,
                s.height,
                s.width,
                s.fps,
                s.num_inference_steps,
                s.seed
            ),
            (125, 720, 1280, 24, 50, 1024)
        );
        assert_eq!(
            (s.guidance_scale, s.cfg_truncation, s.num_videos_per_prompt),
            (1.0, Some(1.0), 1)
        );
        let st = &c.streaming;
        assert_eq!(
            (
                st.session_timeout_seconds,
                st.generation_segment_cap,
                st.stream_mode
            ),
            (300, 6, StreamMode::AvFmp4)
        );
        assert_eq!(
            (
                st.warmup.enabled,
                st.warmup.prompt.as_str(),
                st.warmup.timeout_seconds
            ),
            (true, DEFAULT_WARMUP_PROMPT, 2400)
        );
        assert_eq!(
            (
                st.pool.num_workers,
                st.pool.workers(),
                st.pool.conditioning_num_frames
            ),
            (None, 1, 9)
        );
        assert_eq!(
            (
                st.prompt.enabled,
                st.prompt.provider,
                st.prompt.model.as_str(),
                st.prompt.timeout_ms
            ),
            (false, PromptProvider::Cerebras, "gpt-oss-120b", 20000)
        );
        assert_eq!(
            (
                st.max_sessions,
                st.max_queue,
                st.init_timeout_seconds,
                st.acquire_timeout_seconds
            ),
            (8, 64, 10, 300)
        );
        assert_eq!(
            (
                st.max_message_bytes,
                st.max_init_image_bytes,
                st.fragment_frames,
                st.video_bitrate_bps
            ),
            (16_777_216, 33_554_432, 12, 4_000_000)
        );
        assert_eq!(
            (
                st.shutdown_grace_seconds,
                st.session_log_dir.clone(),
                st.reaper_interval_ms
            ),
            (30, None, 1000)
        );
        assert_eq!(
            (
                st.store.capacity,
                st.store.ttl_seconds,
                st.store.blob_max_total_bytes,
                st.store.blob_max_bytes
            ),
            (1024, 3600, 268_435_456, 67_108_864)
        );
        let e = &c.generator.engine;
        assert_eq!(
            (
                e.num_gpus,
                e.execution_backend,
                e.enable_stage_verification,
                e.offload.dit
            ),
            (1, ExecutionBackend::Mp, true, true)
        );
        assert_eq!(
            c.default_request.output,
            OutputSection {
                output_path: "outputs/".into(),
                output_video_name: None,
                save_video: true,
                return_frames: true,
                return_state: false
            }
        );
    }

    #[test]
    fn edit_distance_counts_swaps_once() {
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(
            edit_distance("sesion_timeout_seconds", "session_timeout_seconds"),
            1
        );
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggestions_cover_typos_case_and_misplaced_keys() {
        assert_eq!(suggestion("prot", SERVER), " (did you mean port?)");
        assert_eq!(
            suggestion("Session-Timeout-Seconds", STREAMING),
            " (did you mean session_timeout_seconds?)"
        );
        assert_eq!(
            suggestion("max_sessions", SERVER),
            " (did you mean streaming.max_sessions?)"
        );
        assert_eq!(suggestion("completely_different", SERVER), "");
        // `enabled` lives in many blocks: no guess.
        assert_eq!(suggestion("enabled", SERVER), "");
    }

    #[test]
    fn describe_and_expected_texts() {
        assert_eq!(describe(&json!(1.5)), "float 1.5");
        assert_eq!(describe(&json!(3)), "integer 3");
        assert_eq!(
            describe(&json!("x".repeat(50))),
            format!("string \"{}...\"", "x".repeat(40))
        );
        assert_eq!(
            expected(&f("x", int(1, 5)).nullable()),
            "an integer (1..=5) or null"
        );
        assert_eq!(expected(&f("x", I64)), "an integer");
    }

    #[test]
    fn reference_table_lists_every_leaf_once() {
        let table = reference_markdown();
        let mut all = Vec::new();
        leaf_paths(ROOT, "", &mut all);
        for path in all {
            let path = path.replace("[0]", "[]");
            assert_eq!(table.matches(&format!("| `{path}` |")).count(), 1, "{path}");
        }
        assert!(
            table.contains("| `server.port` | int | `8000` | 0..=65535 | yes |"),
            "{table}"
        );
    }
}
