//! Why the pool could not serve a request.

use std::time::Duration;

/// Why the pool could not serve a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No worker became free within the acquire timeout.
    #[error("no GPU worker became free within {0:?}")]
    AcquireTimeout(Duration),
    /// `max` sessions are already waiting.
    #[error("GPU queue is full ({max} sessions waiting)")]
    QueueFull { max: usize },
    /// The pool was shut down.
    #[error("GPU pool is shut down")]
    Closed,
    /// Every worker failed warm-up or died, so waiting cannot help.
    #[error("no GPU worker is in service (all failed warm-up or stopped)")]
    NoWorkers,
    /// [`crate::Lease::run`] while the previous run on this lease has not returned.
    #[error("a run is still in progress on worker {worker_id}")]
    RunInProgress { worker_id: u32 },
    /// The worker's thread is gone.
    #[error("GPU worker {worker_id} is not running")]
    WorkerDead { worker_id: u32 },
    /// The pool cannot be built with these settings.
    #[error("invalid pool config: {0}")]
    InvalidConfig(String),
    /// The OS refused to start a worker thread.
    #[error("cannot start GPU worker {worker_id}: {reason}")]
    Spawn { worker_id: u32, reason: String },
}
