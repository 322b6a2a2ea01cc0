//! The stream router as a library: a capacity-aware WebSocket router in front of fv-stream
//! (or FastVideo) streaming-server replicas.
//!
//! * [`config`]: the `router:` YAML block, validated with key paths.
//! * Health loop: every replica probed concurrently each interval; `unknown → healthy` on the
//!   first success, `unhealthy` after `failure_threshold` failures in a row, back after
//!   `recovery_threshold` successes. Each replica's `/status` gives its capacity.
//! * [`select`]: the [`Selector`] trait and [`CapacityWeighted`] (primary tier first, then
//!   the most free capacity × weight, ties round-robin); `client_id` stickiness on top.
//! * Bridge: the client's first message is read (for `client_id`), a replica is chosen and
//!   connected (failing over while the client has seen nothing), then frames are relayed both
//!   ways exactly as they are on the wire, close codes included.
//! * Endpoints: `WS /v1/stream`, `GET /status`, `/healthz`, `/readyz`, `/metrics`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fv_router::config::{ReplicaConfig, RouterConfig};
//! let config = RouterConfig::new(vec![
//!     ReplicaConfig::new("http://127.0.0.1:8001"),
//!     ReplicaConfig::new("http://127.0.0.1:8002"),
//! ]);
//! let router = fv_router::Router::bind(config).await?;
//! println!("listening on {}", router.local_addr()?);
//! router.serve(fv_router::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod app;
mod bridge;
mod client;
pub mod config;
mod error;
mod health;
mod http;
pub mod metrics;
mod registry;
mod relay;
mod report;
pub mod select;
mod ws;

pub use app::{Router, run};
pub use bridge::{CLOSE_WAIT, MAX_REPLAY_BYTES};
pub use client::MAX_PROBE_RESPONSE_BYTES;
pub use error::{REASON_REPLICA_REFUSED, REASON_WORKER_FAILED, RouterError, WireError};
pub use health::{Health, HealthTracker};
pub use report::{ReplicaStatus, Reported};
pub use select::{Candidate, CapacityWeighted, Free, Selector};

/// Resolves on SIGTERM or Ctrl-C (shared with fv-server, from fv-runtime).
pub use fv_runtime::shutdown_signal;

/// The process exit code for an error that ended a router binary: 64 (EX_USAGE) when the
/// configuration was refused before anything was bound, 1 otherwise.
pub fn exit_code(error: &(dyn std::error::Error + 'static)) -> std::process::ExitCode {
    let config_error = error.downcast_ref::<config::ConfigError>().is_some()
        || matches!(
            error.downcast_ref::<RouterError>(),
            Some(RouterError::Config(_))
        );
    fv_runtime::exit_code(config_error)
}
