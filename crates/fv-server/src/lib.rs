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

use config::ServeConfig;
use fv_core::{Generator, MockGenerator, MockGeneratorConfig};
use fv_pool::{InProcessPool, PoolConfig};
use std::time::Duration;

/// Builds the in-process pool a config asks for, around `generators` (one per worker); the
/// stores of its `store:` section are built when the server binds.
pub fn deps_with_generators(
    config: &ServeConfig,
    generators: Vec<Box<dyn Generator>>,
) -> Result<ServerDeps, ServerError> {
    let s = &config.streaming;
    let warmup = s.warmup.enabled.then(|| warmup_request(config));
    let pool = InProcessPool::new(
        generators,
        PoolConfig {
            acquire_timeout: Duration::from_secs(s.acquire_timeout_seconds),
            max_queue: s.max_queue,
            warmup,
            ..PoolConfig::default()
        },
    )?;
    Ok(ServerDeps { pool, stores: None })
}

/// Dependencies for a GPU-free server: `streaming.pool.num_workers` mock generators, each
/// taking `segment_time` per segment.
pub fn mock_deps(config: &ServeConfig, segment_time: Duration) -> Result<ServerDeps, ServerError> {
    let workers = config.streaming.pool.workers();
    let generators = (0..workers)
        .map(|_| {
            Box::new(
                MockGenerator::new(MockGeneratorConfig {
                    segment_time,
                    frame_batch: config.streaming.fragment_frames as usize,
                })
                .with_extra_steps(config.generator.refine_steps()),
            ) as Box<dyn Generator>
        })
        .collect();
    deps_with_generators(config, generators)
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
