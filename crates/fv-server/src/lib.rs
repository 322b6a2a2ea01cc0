//! The streaming server as a library: axum routes, the session core and its protocol
//! adapters, serve config.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = fv_server::config::ServeConfig::mock_defaults();
//! let deps = fv_server::mock_deps(&config, std::time::Duration::ZERO)?;
//! let server = fv_server::Server::bind(config, deps, fv_server::ServerOptions::default()).await?;
//! println!("listening on {}", server.local_addr()?);
//! server.serve(fv_server::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod access;
mod app;
pub mod config;
mod dreamverse;
mod error;
mod http;
pub mod metrics;
mod outbox;
pub mod presets;
mod segment;
mod session;
mod time;
mod v1;
mod ws;

pub use app::{Server, ServerDeps, ServerError, ServerOptions};
pub use error::{EndReason, Failure, ProductRefusal, Refusal, WireError};
/// Resolves on SIGTERM or Ctrl-C (shared with fv-router, from fv-runtime).
pub use fv_runtime::shutdown_signal;
pub use outbox::OUTBOX_BYTES;
pub use session::{MAX_GUIDANCE, MAX_PENDING_SEGMENTS, MAX_PROMPT_BYTES, MAX_STEPS};

use config::{PoolMode, ServeConfig};
use fv_core::{Generator, MockGenerator, MockGeneratorConfig};
pub use fv_pool::WorkerCommand;
use fv_pool::{InProcessPool, PoolConfig, SubprocessConfig, SubprocessPool};
use std::time::Duration;

/// Builds the in-process pool (`streaming.pool.mode: in_process`) a config asks for, around
/// `generators`, one per worker; the stores of its `store:` section are built when the server
/// binds. When there is one generator per entry of [`ServeConfig::worker_devices`], `/status`
/// shows each worker's device.
pub fn deps_with_generators(
    config: &ServeConfig,
    generators: Vec<Box<dyn Generator>>,
) -> Result<ServerDeps, ServerError> {
    let devices = config.worker_devices();
    let devices = if devices.len() == generators.len() {
        devices
    } else {
        vec![None; generators.len()]
    };
    let pool = InProcessPool::with_devices(generators, devices, pool_config(config))?;
    with_pool(pool)
}

/// Builds the subprocess pool (`streaming.pool.mode: subprocess`) and memory stores: one
/// worker process per entry of [`ServeConfig::worker_devices`], each started with `command`
/// (usually this binary with its `worker` subcommand, which calls [`serve_worker`]) and sent
/// the config. Workers boot and warm up in the background; `/readyz` says when one is ready.
/// Must be called within a tokio runtime.
pub fn subprocess_deps(
    config: &ServeConfig,
    command: WorkerCommand,
) -> Result<ServerDeps, ServerError> {
    let p = &config.streaming.pool;
    let payload = serde_json::to_vec(config)
        .map_err(|e| ServerError::Pool(fv_pool::PoolError::InvalidConfig(e.to_string())))?;
    let subprocess = SubprocessConfig {
        payload,
        start_timeout: Duration::from_secs(config.streaming.warmup.timeout_seconds),
        stop_timeout: Duration::from_secs(p.worker_stop_timeout_seconds),
        restart_backoff: Duration::from_millis(p.restart_backoff_ms),
        restart_backoff_max: Duration::from_millis(p.restart_backoff_max_ms),
        max_restarts: p.max_restarts,
        ..SubprocessConfig::new(command, config.worker_devices())
    };
    let pool = SubprocessPool::start(pool_config(config), subprocess)?;
    with_pool(pool)
}

/// The `worker` subcommand of a server binary: serves the subprocess pool that started this
/// process. `build` makes the generator from the config the server sent and the worker's
/// device (`Some(n)`: the server's `cuda:n`, which this process sees as `cuda:0` through
/// `CUDA_VISIBLE_DEVICES`). Returns the process exit code.
pub fn serve_worker<F>(build: F) -> std::process::ExitCode
where
    F: FnOnce(&ServeConfig, Option<u32>) -> Result<Box<dyn Generator>, String>,
{
    fv_pool::worker_process::run(|init| {
        let text = std::str::from_utf8(&init.payload)
            .map_err(|e| format!("the server sent a config that is not UTF-8: {e}"))?;
        let config = ServeConfig::from_json_str(text)
            .map_err(|e| format!("the server sent a config this worker refuses: {e}"))?
            .config;
        build(&config, init.device)
    })
}

/// The server's pool and stores for `config`, mock generators in either mode: in-process
/// ones taking `segment_time` per segment, or worker processes started with `worker`
/// (this binary's `worker` subcommand, serving [`mock_generator`]).
pub fn mock_deps_for(
    config: &ServeConfig,
    segment_time: Duration,
    worker: impl FnOnce() -> std::io::Result<WorkerCommand>,
) -> Result<ServerDeps, ServerError> {
    match config.streaming.pool.mode {
        PoolMode::InProcess => mock_deps(config, segment_time),
        PoolMode::Subprocess => subprocess_deps(config, worker()?),
    }
}

/// Dependencies for a GPU-free server with in-process workers: one mock generator per worker,
/// each taking `segment_time` per segment.
pub fn mock_deps(config: &ServeConfig, segment_time: Duration) -> Result<ServerDeps, ServerError> {
    let generators = config
        .worker_devices()
        .iter()
        .map(|_| Box::new(mock_generator(config, segment_time)) as Box<dyn Generator>)
        .collect();
    deps_with_generators(config, generators)
}

/// The mock generator a config asks for: `segment_time` per segment, frames handed over in
/// batches of `streaming.fragment_frames`, the preset's refine steps reported as extra steps.
pub fn mock_generator(config: &ServeConfig, segment_time: Duration) -> MockGenerator {
    MockGenerator::new(MockGeneratorConfig {
        segment_time,
        frame_batch: config.streaming.fragment_frames as usize,
    })
    .with_extra_steps(config.generator.refine_steps())
}

fn pool_config(config: &ServeConfig) -> PoolConfig {
    let s = &config.streaming;
    PoolConfig {
        acquire_timeout: Duration::from_secs(s.acquire_timeout_seconds),
        max_queue: s.max_queue,
        warmup: s.warmup.enabled.then(|| warmup_request(config)),
        ..PoolConfig::default()
    }
}

/// The server's dependencies around `pool`; the stores are built from `store:` at bind time.
fn with_pool(pool: std::sync::Arc<dyn fv_pool::GpuPool>) -> Result<ServerDeps, ServerError> {
    Ok(ServerDeps { pool, stores: None })
}

/// The request each worker runs once before it is reported ready.
fn warmup_request(config: &ServeConfig) -> fv_core::GenerationRequest {
    let sampling = &config.default_request.sampling;
    fv_core::GenerationRequest {
        session_id: "warmup".into(),
        negative_prompt: config.default_request.negative_prompt.clone(),
        seed: sampling.seed,
        num_inference_steps: sampling.num_inference_steps,
        guidance_scale: sampling.guidance_scale,
        width: sampling.width,
        height: sampling.height,
        num_frames: sampling.num_frames,
        fps: sampling.fps,
        ..fv_core::GenerationRequest::new(config.streaming.warmup.prompt.clone())
    }
}

/// The process exit code for an error that ended a server binary: 64 (EX_USAGE) when the
/// configuration was refused before anything was bound, 1 otherwise.
pub fn exit_code(error: &(dyn std::error::Error + 'static)) -> std::process::ExitCode {
    let config_error = error.downcast_ref::<config::ConfigError>().is_some()
        || matches!(
            error.downcast_ref::<ServerError>(),
            Some(ServerError::Config(_) | ServerError::Limits(_))
        );
    fv_runtime::exit_code(config_error)
}
