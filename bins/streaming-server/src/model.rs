//! What the server runs: the configured LTX-2 weights on the configured device, or, with no
//! `--config`, the tiny random-weight model made on first use in a cache directory.

use anyhow::Context;
use fv_inference::pipeline::{PipelineOptions, Refine};
use fv_inference::{DType, Device, Ltx2Pipeline};
use fv_server::ServerDeps;
use fv_server::config::{ModelDevice, ModelDtype, PoolMode, ServeConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `configs/tiny-ltx2.yaml`, the config used when none is given (its `model_path` is
/// replaced by the cache directory).
const DEFAULT_CONFIG: &str = include_str!("../../../configs/tiny-ltx2.yaml");

/// The embedded default: the tiny model (written to `dir` if it is not there yet) on the CPU.
pub fn default_config(dir: &Path) -> anyhow::Result<ServeConfig> {
    if !fv_inference::tiny::is_current(dir) {
        // Written next to its final place, then renamed, so a half-written model (a server
        // killed mid-write) is never picked up.
        let parent = dir.parent().context("the model directory has no parent")?;
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let staging = tempfile::tempdir_in(parent)?;
        fv_inference::tiny::write_random_model(staging.path())?;
        if dir.exists() {
            // An older tiny model (another layout version): replaced.
            tracing::info!(model = %dir.display(), "replacing an older tiny model");
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing the old model in {}", dir.display()))?;
        }
        match std::fs::rename(staging.path(), dir) {
            Ok(()) => {}
            // Another server made it at the same time.
            Err(_) if fv_inference::tiny::is_current(dir) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("moving the model to {}", dir.display()));
            }
        }
    }
    let mut config = ServeConfig::from_yaml_str(DEFAULT_CONFIG)?.config;
    config.generator.model_path = dir.display().to_string();
    tracing::info!(
        model = %dir.display(),
        "no --config: serving the tiny random-weight LTX-2 model on the CPU (its video is \
         noise; the pipeline is real). To serve real weights, pass --config with a serve YAML \
         whose generator.model_path names them (see configs/serve.yaml, docs/cuda.md)"
    );
    Ok(config)
}

/// Where the default model lives: `$XDG_CACHE_HOME/fv-stream/tiny-ltx2`, else
/// `$HOME/.cache/fv-stream/tiny-ltx2`, else the temp directory.
pub fn default_model_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("fv-stream").join("tiny-ltx2")
}

/// The server's workers for `config`: with `streaming.pool.mode: subprocess`, one process per
/// worker (this binary's `worker` subcommand, each loading its own model); in process, one
/// pipeline per GPU of [`ServeConfig::worker_devices`] (workers on the same GPU, and all
/// workers on the CPU, share one copy of the weights).
pub fn deps(config: &ServeConfig) -> anyhow::Result<ServerDeps> {
    if config.streaming.pool.mode == PoolMode::Subprocess {
        let worker = fv_server::WorkerCommand::current_exe()?.arg("worker");
        return Ok(fv_server::subprocess_deps(config, worker)?);
    }
    let mut loaded: BTreeMap<Option<u32>, Ltx2Pipeline> = BTreeMap::new();
    let mut generators = Vec::new();
    for device in config.worker_devices() {
        let pipeline = match loaded.get(&device) {
            Some(pipeline) => pipeline.clone(),
            None => {
                let pipeline = load(config, device, false)?;
                loaded.insert(device, pipeline.clone());
                pipeline
            }
        };
        generators.push(Box::new(pipeline) as Box<dyn fv_core::Generator>);
    }
    Ok(fv_server::deps_with_generators(config, generators)?)
}

/// The generator of a worker process (`worker` subcommand): the model on the worker's GPU,
/// which this process sees as `cuda:0` (`CUDA_VISIBLE_DEVICES`), or on the CPU.
pub fn worker_generator(
    config: &ServeConfig,
    device: Option<u32>,
) -> Result<Box<dyn fv_core::Generator>, String> {
    let visible = device.map(|_| 0);
    load(config, visible, true)
        .map(|pipeline| Box::new(pipeline) as Box<dyn fv_core::Generator>)
        .map_err(|e| format!("{e:#}"))
}

fn open(device: Option<ModelDevice>, key: &str) -> anyhow::Result<Device> {
    Ok(match device {
        None | Some(ModelDevice::Cpu) => Device::Cpu,
        Some(ModelDevice::Cuda(ordinal)) => {
            fv_inference::open_cuda(ordinal).context(key.to_string())?
        }
    })
}

/// Loads `generator.model_path` in `generator.dtype` on `cuda:N` (`gpu: Some(N)`), or on the
/// CPU when `generator.device` is unset or `cpu`; the text encoder on
/// `generator.text_encoder_device`. In a worker process (`in_worker`), which sees only its own
/// GPU, a CUDA text encoder goes on that GPU too.
pub fn load(
    config: &ServeConfig,
    gpu: Option<u32>,
    in_worker: bool,
) -> anyhow::Result<Ltx2Pipeline> {
    let model = Path::new(&config.generator.model_path);
    let device = match (config.generator.model_device(), gpu) {
        (Some(ModelDevice::Cuda(_)), Some(ordinal)) => open(
            Some(ModelDevice::Cuda(ordinal as usize)),
            "generator.device",
        )?,
        _ => Device::Cpu,
    };
    let dtype = match config.generator.dtype {
        // The released weights are bf16, and f32 does not fit an 80 GB GPU (52 GB of
        // transformer weights alone); on the CPU f32 is both exact and fastest.
        None if device.is_cuda() => DType::BF16,
        None | Some(ModelDtype::F32) => DType::F32,
        Some(ModelDtype::Bf16) => DType::BF16,
        Some(ModelDtype::F16) => DType::F16,
    };
    let mut options = PipelineOptions::new().with_dtype(dtype);
    if let Some(text_device) = config.generator.text_encoder_device() {
        let text_device = match (text_device, gpu) {
            (ModelDevice::Cuda(_), Some(ordinal)) if in_worker => {
                ModelDevice::Cuda(ordinal as usize)
            }
            (other, _) => other,
        };
        let d = open(Some(text_device), "generator.text_encoder_device")?;
        if d.is_cpu() && dtype != DType::F32 {
            // candle's CPU matmuls are fastest in f32; the 12B encoder then takes 47 GB of RAM.
            options = options.with_text_encoder_dtype(DType::F32);
        }
        options = options.with_text_encoder_device(d);
    }
    if let Some(refine) = config.generator.refine() {
        // Stage 1 at half size, the latent upsampler (`latent_upsampler/` in the model
        // folder), then the refine at full size.
        options = options.with_refine(Refine {
            steps: refine.steps,
            add_noise: refine.add_noise,
        });
    }
    let pipeline = Ltx2Pipeline::load_with_options(model, &device, &options)
        .with_context(|| format!("loading the model from {}", model.display()))?;
    tracing::info!(?device, ?dtype, model = %model.display(), "model loaded");
    Ok(pipeline)
}
