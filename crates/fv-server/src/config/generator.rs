//! `generator:` — which model to load and how. Only `model_path`, `device` and `dtype` are
//! read by this server; the rest is FastVideo's schema, accepted so its configs load.

use super::Mapping;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `generator:`. `model_path` is used here, `device` and `dtype` (our additions) by native
/// model backends; the rest is carried for FastVideo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Model id or path handed to the generator (required, not empty).
    pub model_path: String,
    /// Hub revision.
    #[serde(default)]
    #[schemars(extend("x-unused" = true))]
    pub revision: Option<String>,
    /// Allow model repos to run their own code.
    #[serde(default)]
    #[schemars(extend("x-unused" = true))]
    pub trust_remote_code: bool,
    /// Engine settings (only `num_gpus` is used here).
    #[serde(default)]
    pub engine: EngineConfig,
    /// Pipeline selection. Of it, streaming-server reads `preset_overrides.refine` (the
    /// two-stage preset); the other keys are FastVideo's, accepted so its configs load.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// fv-stream addition: where the native model (streaming-server) runs: `cpu` (default),
    /// `cuda` or `cuda:N` (a build with `--features cuda`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// fv-stream addition: weight and compute dtype of the native model: `f32`, `bf16` or
    /// `f16`; unset: `bf16` on a GPU (the released weights), `f32` on the CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<ModelDtype>,
    /// fv-stream addition: where the native model's text encoder (Gemma-3-12B, 23.5 GB in
    /// bf16) runs: `cpu`, `cuda` or `cuda:N`; unset: with the model (`device`). `cpu` keeps
    /// it off a GPU that is tight; it runs once per distinct prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder_device: Option<String>,
}

/// `generator.dtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
            text_encoder_device: None,
        }
    }

    /// The parsed `device` (`None` when unset); `validate` has rejected bad spellings.
    pub fn model_device(&self) -> Option<ModelDevice> {
        self.device.as_deref().and_then(ModelDevice::parse)
    }

    /// The two-stage preset's refine, from `pipeline.preset_overrides.refine` the way
    /// FastVideo's `streaming_demo.yaml` writes it (`enabled`, `num_inference_steps`,
    /// `guidance_scale`, `add_noise`); `None` when absent or not enabled. `validate` has
    /// reported bad values; here they read as "no refine".
    pub fn refine(&self) -> Option<RefineSettings> {
        RefineSettings::parse(&self.pipeline.preset_overrides)
            .ok()
            .flatten()
    }

    /// Denoising steps the refine adds after the request's own (0 without it): every
    /// segment reports `num_inference_steps + refine_steps()` steps.
    pub fn refine_steps(&self) -> u32 {
        self.refine().map_or(0, |r| r.steps)
    }

    /// The parsed `text_encoder_device` (`None` when unset: with the model).
    pub fn text_encoder_device(&self) -> Option<ModelDevice> {
        self.text_encoder_device
            .as_deref()
            .and_then(ModelDevice::parse)
    }
}

/// `generator.pipeline.preset_overrides.refine`: after stage 1 at half the width and height,
/// the latent upsampler doubles the latents and a short refine runs at full size
/// (ltx2-phase2-facts §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefineSettings {
    /// Refine steps: 2 (FastVideo's streaming preset, the default) or 3 (the distilled refine).
    pub steps: u32,
    /// Re-noise the upsampled video and audio latents before the refine (default true).
    pub add_noise: bool,
}

impl RefineSettings {
    const KEYS: [&str; 4] = [
        "enabled",
        "num_inference_steps",
        "guidance_scale",
        "add_noise",
    ];

    /// Reads `preset_overrides` (`Ok(None)`: no refine, or `enabled` is not true); errors are
    /// `(key under refine, message)`.
    pub(crate) fn parse(overrides: &super::Mapping) -> Result<Option<Self>, Vec<(String, String)>> {
        use serde_json::Value;
        let Some(refine) = overrides.get("refine") else {
            return Ok(None);
        };
        let map = match refine {
            Value::Null => return Ok(None),
            Value::Object(map) => map,
            _ => return Err(vec![(String::new(), "must be a mapping".into())]),
        };
        let mut problems = Vec::new();
        for key in map.keys() {
            if !Self::KEYS.contains(&key.as_str()) {
                problems.push((
                    key.clone(),
                    format!("unknown key; known: {}", Self::KEYS.join(", ")),
                ));
            }
        }
        let flag =
            |key: &str, default: bool, problems: &mut Vec<(String, String)>| match map.get(key) {
                None | Some(Value::Null) => default,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    problems.push((key.into(), "must be true or false".into()));
                    default
                }
            };
        let enabled = flag("enabled", true, &mut problems);
        let add_noise = flag("add_noise", true, &mut problems);
        let steps = match map.get("num_inference_steps") {
            None | Some(Value::Null) => 2,
            Some(v) => match v.as_u64() {
                Some(n @ (2 | 3)) => n as u32,
                _ => {
                    problems.push((
                        "num_inference_steps".into(),
                        format!("must be 2 or 3 (the distilled refine schedules), got {v}"),
                    ));
                    2
                }
            },
        };
        match map.get("guidance_scale") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64() == Some(1.0) => {}
            Some(v) => problems.push((
                "guidance_scale".into(),
                format!(
                    "must be 1.0: the refine runs the distilled model without guidance, got {v}"
                ),
            )),
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(enabled.then_some(Self { steps, add_noise }))
    }
}

/// `generator.engine:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// GPUs to use: with `generator.device: cuda[:N]`, the workers go on devices N to
    /// N + num_gpus - 1, one per GPU unless `streaming.pool.num_workers` says otherwise
    /// (FastVideo: GPUs for one generator; a native model uses one GPU per worker).
    #[schemars(range(min = 1, max = 1_024))]
    pub num_gpus: i64,
    /// Multi-GPU launcher.
    #[schemars(extend("x-unused" = true))]
    pub execution_backend: ExecutionBackend,
    /// Parallelism layout.
    #[schemars(extend("x-unused" = true))]
    pub parallelism: ParallelismConfig,
    /// CPU offload switches.
    #[schemars(extend("x-unused" = true))]
    pub offload: OffloadConfig,
    /// `torch.compile` settings.
    #[schemars(extend("x-unused" = true))]
    pub compile: CompileConfig,
    /// Check stage inputs/outputs.
    #[schemars(extend("x-unused" = true))]
    pub enable_stage_verification: bool,
    /// Shard the model with FSDP at inference.
    #[schemars(extend("x-unused" = true))]
    pub use_fsdp_inference: bool,
    /// Turn autocast off.
    #[schemars(extend("x-unused" = true))]
    pub disable_autocast: bool,
    /// Batch conditional and unconditional passes.
    #[schemars(extend("x-unused" = true))]
    pub use_batched_cfg: bool,
    /// Quantization, if any.
    #[schemars(extend("x-unused" = true))]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ExecutionBackend {
    /// Python multiprocessing (FastVideo's default).
    #[serde(rename = "mp")]
    Mp,
    /// Ray.
    #[serde(rename = "ray")]
    Ray,
}

/// `generator.engine.parallelism:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QuantizationConfig {
    /// Text-encoder quantization scheme.
    pub text_encoder_quant: Option<String>,
    /// Transformer quantization scheme (e.g. `NVFP4`).
    pub transformer_quant: Option<String>,
}

/// `generator.pipeline:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Workload kind.
    #[schemars(extend("x-unused" = true))]
    pub workload_type: Option<WorkloadType>,
    /// Named preset.
    #[schemars(extend("x-unused" = true))]
    pub preset: Option<String>,
    /// Preset version.
    #[schemars(extend("x-unused" = true))]
    pub preset_version: Option<i64>,
    /// Component paths and overrides.
    #[schemars(extend("x-unused" = true))]
    pub components: ComponentsConfig,
    /// Tiled VAE decode (null: model default).
    #[schemars(extend("x-unused" = true))]
    pub vae_tiling: Option<bool>,
    /// Preset overrides; fv-stream reads `refine` (the two-stage preset) and ignores the rest.
    pub preset_overrides: Mapping,
    /// Experimental switches.
    #[schemars(extend("x-unused" = true))]
    pub experimental: Mapping,
}

/// `generator.pipeline.workload_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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
