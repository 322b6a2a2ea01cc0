//! GPU worker pool: a FIFO queue of sessions in front of a fixed set of workers, each worker
//! owning one [`fv_core::Generator`] on its own OS thread, or in its own process.
//!
//! Embed it to share a few devices among many streaming sessions: build an [`InProcessPool`]
//! from one generator per device (or a [`SubprocessPool`] that starts one worker process per
//! device), hand `Arc<dyn GpuPool>` to your connection handlers, and let each session acquire
//! a worker, run segments on it and give it back.
//!
//! # Main types
//!
//! * [`GpuPool`]: the trait sessions use (`acquire`, `status`, `is_ready`), so a server can be
//!   tested against another implementation.
//! * [`InProcessPool`]: one OS thread per generator. Configured by [`PoolConfig`] (acquire
//!   timeout, queue bound, event buffer, optional warm-up request).
//! * [`SubprocessPool`]: one worker process per GPU (the production shape), configured by
//!   [`PoolConfig`] and [`SubprocessConfig`] (the [`WorkerCommand`] to start, devices, start
//!   deadline, restart back-off). The process side is [`worker_process`]: a binary's `worker`
//!   subcommand calls [`worker_process::run`] with a closure that builds its generator. Frames
//!   cross a Unix socket in a compact framed encoding (I420 by default); see docs/ipc.md.
//! * [`Lease`]: a session's binding to one worker, held across segments.
//! * [`RunHandle`]: one running segment; yields [`RunEvent`]s.
//! * [`QueuePosition`]: progress updates while a session waits.
//! * [`PoolStatus`] / [`WorkerStatus`]: snapshots for `/status` and `/readyz`.
//! * [`PoolError`]: why a request could not be served.
//!
//! # The flow for one session
//!
//! 1. [`GpuPool::acquire`] waits (FIFO, bounded, with a timeout) for a free worker and streams
//!    [`QueuePosition`] updates while it waits.
//! 2. The returned [`Lease`] binds the session to that worker for as long as it is held, across
//!    segments. [`Lease::run`] starts one segment and returns a [`RunHandle`] that yields
//!    [`RunEvent`]s: a `Step` per denoising step, `Frames` batches as they are decoded, then one
//!    `Done`.
//! 3. Dropping the `RunHandle` or the `Lease` cancels the run; the generator stops at its next
//!    step. Dropping the `Lease` (or [`Lease::release`]) gives the worker back.
//!
//! # Invariants
//!
//! * **A worker is free only when its lease is gone and its run has returned.** A cancelled
//!   generator may still be finishing its current step after the lease is dropped; the worker
//!   serves the next waiter only once it has returned, so two sessions never share a device.
//! * One run at a time per lease: [`Lease::run`] fails with [`PoolError::RunInProgress`] until
//!   the previous run's `Done` is readable (or, after dropping its handle, until the generator
//!   has stopped).
//! * Every run ends with exactly one [`RunEvent::Done`], even when the worker could not send it
//!   (it is synthesised). On success every frame has arrived as `Frames` events before `Done`.
//! * Waiters are served strictly first come, first served; at most
//!   [`PoolConfig::max_queue`] wait at once ([`PoolError::QueueFull`] beyond) and each waits at
//!   most [`PoolConfig::acquire_timeout`] ([`PoolError::AcquireTimeout`]). Dropping an
//!   `acquire` future leaves the queue without leaking a worker granted in the same instant.
//! * A generator blocks when its consumer falls [`PoolConfig::event_buffer`] events behind
//!   (back-pressure), but stops waiting once the run is cancelled, so a consumer that stopped
//!   reading cannot pin a worker.
//! * GPU work never runs on tokio threads: each worker is a plain OS thread looping on a
//!   command channel, or another process. A generator panic is caught and reported as a failed run; the worker
//!   stays in service (see [`InProcessPool`]). A worker whose warm-up fails is excluded from
//!   service; if none is left, waiters fail with [`PoolError::NoWorkers`].
//! * Dropping the pool closes it (waiters get [`PoolError::Closed`], runs are cancelled);
//!   [`InProcessPool::shutdown`] also joins the worker threads, [`SubprocessPool::shutdown`]
//!   stops the worker processes.
//! * A worker process that dies ends its run with `Done(Err(Failed(..)))` (retryable for the
//!   server), keeps its lease, and restarts with back-off; [`Lease::idle`] waits for it.
//!
//! # Example
//!
//! ```
//! use fv_core::{GenerationRequest, Generator, MockGenerator};
//! use fv_pool::{GpuPool, InProcessPool, PoolConfig, RunEvent};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // One generator per device; the mock needs none.
//! let generators: Vec<Box<dyn Generator>> = vec![Box::new(MockGenerator::default())];
//! let pool = InProcessPool::new(generators, PoolConfig::default())?;
//!
//! // Queue positions arrive here while acquire waits (forward them to the client).
//! let (updates, _positions) = tokio::sync::mpsc::unbounded_channel();
//! let mut lease = pool.acquire("session-1", updates).await?;
//!
//! let request = GenerationRequest {
//!     session_id: "session-1".into(),
//!     seed: 1,
//!     num_inference_steps: 4,
//!     width: 64,
//!     height: 32,
//!     num_frames: 20,
//!     ..GenerationRequest::new("a cat")
//! };
//! let mut run = lease.run(request)?;
//! let mut frames = 0;
//! while let Some(event) = run.next().await {
//!     match event {
//!         RunEvent::Step { step, total } => println!("step {step}/{total}"),
//!         RunEvent::Frames(batch) => frames += batch.len(), // encode and send
//!         RunEvent::Done(result) => {
//!             // Keep `result?.state` for the next segment's request.
//!             assert!(result?.state.is_some());
//!         }
//!         _ => {} // RunEvent is non-exhaustive
//!     }
//! }
//! assert_eq!(frames, 20);
//!
//! drop(lease); // the worker is free again
//! assert_eq!(pool.status().available_workers, 1);
//! pool.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Examples
//!
//! * `crates/fv-pool/examples/pool.rs` (`cargo run -p fv-pool --example pool`): two workers,
//!   three concurrent sessions with queue positions, step and frame events, cancellation by
//!   dropping a [`RunHandle`], and [`GpuPool::status`] snapshots.
//! * `crates/fv-pool/examples/custom_generator.rs` (`cargo run -p fv-pool --example
//!   custom_generator`): implementing [`fv_core::Generator`] for your own model (steps, cancel
//!   checks, frame batches, continuation state) and serving it with a warm-up request.
//! * `crates/fv-pool/examples/custom_pool.rs`: a [`GpuPool`] written against the public API.
//! * `crates/fv-pool/src/bin/fv-pool-worker.rs`: a worker process (`worker_process::run`
//!   around the mock generator), used by the subprocess tests and `cargo xbench pool`.

mod binding;
mod error;
mod inprocess;
mod ipc;
mod lease;
mod state;
mod subprocess;
mod worker;
pub mod worker_process;

pub use error::PoolError;
pub use inprocess::InProcessPool;
pub use ipc::{IpcError, MAX_MESSAGE_BYTES, SOCKET_BUFFER_BYTES, tune_socket};
pub use lease::{Lease, LeaseBackend, RunHandle};
pub use subprocess::{SubprocessConfig, SubprocessPool, WorkerCommand};

use fv_core::{Frame, GenerateError, GenerationRequest, GenerationResult};
use std::time::Duration;

/// Settings of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// How long [`GpuPool::acquire`] waits in the queue before failing with
    /// [`PoolError::AcquireTimeout`]. Default 300 s.
    pub acquire_timeout: Duration,
    /// Most sessions allowed to wait at once; one more fails fast with
    /// [`PoolError::QueueFull`]. `0` means nobody may wait. Default 64.
    pub max_queue: usize,
    /// Capacity of each run's event channel (at least 1). A generator blocks when its consumer
    /// falls this many events behind. Default 64.
    pub event_buffer: usize,
    /// A request every worker runs once at start-up before it serves sessions. A worker whose
    /// warm-up fails (error or panic) is excluded from service.
    pub warmup: Option<GenerationRequest>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_secs(300),
            max_queue: 64,
            event_buffer: 64,
            warmup: None,
        }
    }
}

/// Where a session stands in the queue.
///
/// `position == 0`: a worker is yours now, and `queue_depth` is how many sessions are still
/// waiting behind. `position == N > 0`: you are waiting with `N - 1` sessions ahead of you, and
/// `queue_depth` sessions wait in all (you included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePosition {
    pub position: usize,
    pub queue_depth: usize,
}

/// One event of a running segment.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RunEvent {
    /// Denoising step `step` (1-based) of `total` finished.
    Step { step: u32, total: u32 },
    /// Decoded frames, in order. Every frame of a segment arrives this way.
    Frames(Vec<Frame>),
    /// The run is over; always the last event. On success `GenerationResult::frames` is empty
    /// (the pool forwards any frames the generator returned as a final `Frames` event first).
    Done(Result<GenerationResult, GenerateError>),
}

/// A snapshot of the pool for `/status` and `/readyz`. Pools build it with
/// [`PoolStatus::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    pub total_workers: usize,
    /// Workers that would be handed to the next `acquire` immediately.
    pub available_workers: usize,
    /// Sessions waiting in the queue.
    pub queue_depth: usize,
    /// Whether the pool was configured with a warm-up request.
    pub warmup_enabled: bool,
    pub workers: Vec<WorkerStatus>,
}

/// One worker in a [`PoolStatus`]. Pools build it with [`WorkerStatus::new`] and set the
/// fields that differ from its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStatus {
    pub id: u32,
    /// In service: thread or process alive, booted, and warm-up passed (or none configured).
    pub ready: bool,
    /// Bound to a session (a lease is held).
    pub busy: bool,
    /// A generator call is in progress (may briefly outlive the lease while a cancelled run
    /// reaches its next step).
    pub running: bool,
    /// The session holding the lease.
    pub session_id: Option<String>,
    /// [`fv_core::Generator::name`].
    pub generator: String,
    /// `None` while warm-up is pending or when none is configured.
    pub warmup_ok: Option<bool>,
    pub warmup_error: Option<String>,
    /// Runs that finished successfully.
    pub segments_run: u64,
    /// The worker thread or process is running (`process_alive` in `/status`). `false` after
    /// shutdown, while a worker process restarts, or if the thread died.
    pub alive: bool,
    /// Where the worker is in its life.
    pub phase: WorkerPhase,
    /// OS process id of a worker process.
    pub pid: Option<u32>,
    /// The GPU the worker runs on (`cuda:N`; for a process, what `CUDA_VISIBLE_DEVICES` names),
    /// when it runs on one.
    pub device: Option<u32>,
    /// How many times the worker process was started again after it died.
    pub restarts: u32,
    /// Why the worker last stopped or failed to start (exit status, signal, timeout, protocol
    /// error), if it ever did.
    pub last_error: Option<String>,
}

/// Where a worker is in its life ([`WorkerStatus::phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerPhase {
    /// Booting and/or warming up; not in service yet.
    Starting,
    /// In service.
    Ready,
    /// The worker process died; a new one starts after a back-off.
    Restarting,
    /// Out of service for good: failed to boot or warm up, stopped restarting, or its thread
    /// died.
    Failed,
    /// Stopped by shutdown.
    Stopped,
}

impl WorkerPhase {
    /// Lower-case name for `/status` and logs (`starting`, `ready`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

impl PoolStatus {
    /// A snapshot of `workers` with `queue_depth` sessions waiting; `total_workers` and
    /// `available_workers` (ready and not bound to a session) are derived from `workers`.
    pub fn new(workers: Vec<WorkerStatus>, queue_depth: usize, warmup_enabled: bool) -> Self {
        Self {
            total_workers: workers.len(),
            available_workers: workers.iter().filter(|w| w.ready && !w.busy).count(),
            queue_depth,
            warmup_enabled,
            workers,
        }
    }
}

impl WorkerStatus {
    /// Worker `id` running `generator`: alive and ready, idle, no warm-up, nothing run yet.
    pub fn new(id: u32, generator: impl Into<String>) -> Self {
        Self {
            id,
            ready: true,
            busy: false,
            running: false,
            session_id: None,
            generator: generator.into(),
            warmup_ok: None,
            warmup_error: None,
            segments_run: 0,
            alive: true,
            phase: WorkerPhase::Ready,
            pid: None,
            device: None,
            restarts: 0,
            last_error: None,
        }
    }
}

/// A pool of workers that sessions queue for.
///
/// Implementable outside this crate: a pool hands out [`Lease`]s built with [`Lease::new`]
/// around its own [`LeaseBackend`], whose runs are [`RunHandle`]s built with
/// [`RunHandle::new`] (see `examples/custom_pool.rs`).
#[async_trait::async_trait]
pub trait GpuPool: Send + Sync + 'static {
    /// Waits, first come first served, for a free worker and binds it to `session_id`.
    ///
    /// Sends a [`QueuePosition`] on `updates` at once and again whenever this waiter's position
    /// or the queue depth changes; the last one sent has `position == 0` when a worker is
    /// granted. Dropping the future leaves the queue (cancel-safe: a worker granted in the same
    /// instant is returned to the pool, never leaked).
    ///
    /// Errors: [`PoolError::AcquireTimeout`] after `acquire_timeout`,
    /// [`PoolError::QueueFull`] when `max_queue` sessions already wait, [`PoolError::Closed`]
    /// after shutdown, [`PoolError::NoWorkers`] when no worker can ever serve.
    async fn acquire(
        &self,
        session_id: &str,
        updates: tokio::sync::mpsc::UnboundedSender<QueuePosition>,
    ) -> Result<Lease, PoolError>;

    /// A snapshot of workers and queue.
    fn status(&self) -> PoolStatus;

    /// `true` once every worker finished warm-up and at least one is in service. Workers that
    /// failed warm-up are excluded from service and not counted as ready.
    fn is_ready(&self) -> bool;

    /// Resolves once every worker has finished its warm-up (at once when none is
    /// configured), with [`is_ready`](Self::is_ready) at that moment. Callers put their own
    /// deadline around it.
    async fn ready(&self) -> bool;

    /// Closes the pool and returns once its workers have stopped (threads joined, processes
    /// exited). A server calls it after its drain. Idempotent. The default does nothing, for
    /// pools whose workers need no stopping.
    async fn shutdown(&self) {}
}
