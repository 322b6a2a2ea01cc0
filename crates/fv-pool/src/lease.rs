use crate::state::Shared;
use crate::worker::{Command, RunCommand};
use crate::{PoolError, RunEvent};
use fv_core::{CancelToken, GenerateError, GenerationRequest};
use std::sync::Arc;
use tokio::sync::mpsc;

/// A session's binding to one worker, held across segments. Dropping it (or calling
/// [`Lease::release`]) gives the worker back; a run still in progress is cancelled and the
/// worker serves the next waiter as soon as the generator returns.
pub struct Lease {
    shared: Arc<Shared>,
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
    pub(crate) fn new(shared: Arc<Shared>, worker_id: u32, session_id: &str) -> Self {
        Self {
            shared,
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
    /// on the worker thread.
    ///
    /// Fails with [`PoolError::RunInProgress`] if the previous run has not returned yet
    /// (a run has returned once its `Done` event is readable), [`PoolError::WorkerDead`] if
    /// the worker thread is gone, [`PoolError::Closed`] after shutdown.
    pub fn run(&mut self, request: GenerationRequest) -> Result<RunHandle, PoolError> {
        let (events, rx) = mpsc::channel(self.shared.event_buffer);
        let cancel = CancelToken::new();
        let command = Command::Run(Box::new(RunCommand {
            request,
            cancel: cancel.clone(),
            events,
            span: tracing::Span::current(),
        }));
        self.shared
            .start_run(self.worker_id, cancel.clone(), command)?;
        Ok(RunHandle {
            events: rx,
            cancel,
            worker_id: self.worker_id,
            finished: false,
        })
    }

    /// Gives the worker back (same as dropping the lease).
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.shared.release(self.worker_id);
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
