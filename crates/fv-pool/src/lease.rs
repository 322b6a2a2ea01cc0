//! A session's binding to one worker ([`Lease`]) and one running segment ([`RunHandle`]).
//!
//! Both are plain public types that any [`GpuPool`](crate::GpuPool) implementation can build:
//! a pool hands out `Lease::new(worker_id, session_id, backend)` where `backend` is its own
//! [`LeaseBackend`], and its backend answers `run` with `RunHandle::new(worker_id, events,
//! cancel)` over a channel its worker feeds.

use crate::{PoolError, RunEvent};
use fv_core::{CancelToken, GenerateError, GenerationRequest};
use std::time::Duration;
use tokio::sync::mpsc;

/// The pool's side of a [`Lease`]: what a [`GpuPool`](crate::GpuPool) implementation provides
/// for one bound worker. Dropping the backend gives the worker back (cancelling a run still in
/// progress).
#[async_trait::async_trait]
pub trait LeaseBackend: Send + Sync + 'static {
    /// Starts one segment on the bound worker. Fails with [`PoolError::RunInProgress`] while
    /// the previous run has not returned, [`PoolError::WorkerDead`] when the worker is gone,
    /// [`PoolError::Closed`] after shutdown.
    fn run(&mut self, request: GenerationRequest) -> Result<RunHandle, PoolError>;

    /// Resolves once the bound worker has no run in progress (or can never run again), so a
    /// new [`run`](Self::run) will not fail with [`PoolError::RunInProgress`]. A cancelled run
    /// keeps the worker until the generator reaches its next step.
    async fn idle(&self);
}

/// A session's binding to one worker, held across segments. Dropping it (or calling
/// [`Lease::release`]) gives the worker back; a run still in progress is cancelled and the
/// worker serves the next waiter as soon as the generator returns.
pub struct Lease {
    backend: Box<dyn LeaseBackend>,
    worker_id: u32,
    session_id: String,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("worker_id", &self.worker_id)
            .field("session_id", &self.session_id)
            .finish()
    }
}

impl Lease {
    /// Binds `session_id` to worker `worker_id` through a pool's `backend`.
    pub fn new(worker_id: u32, session_id: &str, backend: impl LeaseBackend) -> Self {
        Self {
            backend: Box::new(backend),
            worker_id,
            session_id: session_id.to_owned(),
        }
    }

    /// The worker this lease is bound to.
    pub fn worker_id(&self) -> u32 {
        self.worker_id
    }

    /// The session the lease was acquired for.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Starts one segment on the worker. The current tracing span goes with it and is entered
    /// on the worker (in-process pools).
    ///
    /// Fails with [`PoolError::RunInProgress`] if the previous run has not returned yet
    /// (a run has returned once its `Done` event is readable, or once [`idle`](Self::idle)
    /// resolved), [`PoolError::WorkerDead`] if the worker is gone, [`PoolError::Closed`] after
    /// shutdown.
    pub fn run(&mut self, request: GenerationRequest) -> Result<RunHandle, PoolError> {
        self.backend.run(request)
    }

    /// Resolves once the worker has no run in progress: after a run was cancelled (its
    /// [`RunHandle`] dropped), the generator may need up to one step to return.
    pub async fn idle(&self) {
        self.backend.idle().await;
    }

    /// Waits (at most `limit`) for the worker to be idle, then starts `request`. Past `limit`
    /// the run is attempted anyway and fails with [`PoolError::RunInProgress`] if the old run
    /// is still going.
    pub async fn run_when_idle(
        &mut self,
        request: GenerationRequest,
        limit: Duration,
    ) -> Result<RunHandle, PoolError> {
        if tokio::time::timeout(limit, self.backend.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                worker = self.worker_id,
                ?limit,
                "worker still busy with a cancelled run"
            );
        }
        self.run(request)
    }

    /// Gives the worker back (same as dropping the lease).
    pub fn release(self) {
        drop(self);
    }
}

/// The events of one run. Dropping it cancels the run.
pub struct RunHandle {
    events: mpsc::Receiver<RunEvent>,
    cancel: CancelToken,
    worker_id: u32,
    finished: bool,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle")
            .field("worker_id", &self.worker_id)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("finished", &self.finished)
            .finish()
    }
}

impl RunHandle {
    /// A run on `worker_id` whose worker sends its events on the other end of `events` and
    /// watches `cancel` (fired when the handle is dropped or [`cancel`](Self::cancel)led).
    /// The worker's contract: `Step` per denoising step, `Frames` batches in order, then one
    /// `Done`; a worker that vanishes without `Done` is reported by [`next`](Self::next).
    pub fn new(worker_id: u32, events: mpsc::Receiver<RunEvent>, cancel: CancelToken) -> Self {
        Self {
            events,
            cancel,
            worker_id,
            finished: false,
        }
    }

    /// The next event; `None` after `Done`. Cancel-safe (usable in `select!`).
    ///
    /// Always ends with exactly one [`RunEvent::Done`]: if the worker could not deliver one
    /// (a cancelled run whose consumer lagged, or a worker that stopped), it is synthesised as
    /// `Err(Cancelled)` when this run was cancelled and `Err(Failed(..))` otherwise.
    pub async fn next(&mut self) -> Option<RunEvent> {
        if self.finished {
            return None;
        }
        let event = match self.events.recv().await {
            Some(event) => event,
            None => RunEvent::Done(Err(if self.cancel.is_cancelled() {
                GenerateError::Cancelled
            } else {
                GenerateError::Failed("GPU worker stopped before the run finished".into())
            })),
        };
        if matches!(event, RunEvent::Done(_)) {
            self.finished = true;
        }
        Some(event)
    }

    /// Asks the generator to stop at its next step; `next` then ends with
    /// `Done(Err(Cancelled))` (or `Done(Ok)` if it had already finished).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The run's cancel token, for code that must stop the run without owning the handle.
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// The worker executing the run.
    pub fn worker_id(&self) -> u32 {
        self.worker_id
    }
}

impl Drop for RunHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
