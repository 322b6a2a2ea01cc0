//! What both pools share above their bookkeeping: the cancel-safe `acquire`, readiness, and
//! the lease backend that sends runs to a worker through its command sink.

use crate::state::{Admission, Grant, Shared};
use crate::worker::{Command, RunCommand};
use crate::{Lease, LeaseBackend, PoolError, QueuePosition, RunHandle};
use fv_core::{CancelToken, GenerationRequest};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// [`crate::GpuPool::acquire`] over `shared`.
pub(crate) async fn acquire(
    shared: &Arc<Shared>,
    session_id: &str,
    updates: mpsc::UnboundedSender<QueuePosition>,
) -> Result<Lease, PoolError> {
    let (id, grant) = match shared.admit(session_id, updates)? {
        Admission::Granted(worker) => return Ok(lease(shared, worker, session_id)),
        Admission::Queued(id, grant) => (id, grant),
    };
    let mut waiting = Waiting {
        shared: shared.clone(),
        id,
        grant,
        settled: false,
    };
    let timeout = shared.acquire_timeout;
    let grant = match tokio::time::timeout(timeout, &mut waiting.grant).await {
        Ok(Ok(grant)) => {
            waiting.settled = true;
            grant
        }
        // The sender went away without a word: only when the pool itself is gone.
        Ok(Err(_)) => {
            waiting.settled = true;
            Err(PoolError::Closed)
        }
        Err(_elapsed) => waiting
            .leave()
            .unwrap_or(Err(PoolError::AcquireTimeout(timeout))),
    };
    grant.map(|worker| lease(shared, worker, session_id))
}

/// [`crate::GpuPool::ready`] over `shared`.
pub(crate) async fn ready(shared: &Shared) -> bool {
    let mut pending = shared.warmup_watch();
    // The sender lives in `shared`, so this cannot fail while `shared` is borrowed.
    let _ = pending.wait_for(|n| *n == 0).await;
    shared.is_ready()
}

fn lease(shared: &Arc<Shared>, worker: u32, session_id: &str) -> Lease {
    Lease::new(
        worker,
        session_id,
        SharedLease {
            shared: shared.clone(),
            worker,
        },
    )
}

/// A queued acquire; dropping it leaves the queue and returns a worker granted in the race.
struct Waiting {
    shared: Arc<Shared>,
    id: u64,
    grant: oneshot::Receiver<Grant>,
    settled: bool,
}

impl Waiting {
    /// Leaves the queue now; returns the grant if one arrived first.
    fn leave(&mut self) -> Option<Grant> {
        self.settled = true;
        self.shared.leave_queue(self.id, &mut self.grant)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Some(Ok(worker)) = self.shared.leave_queue(self.id, &mut self.grant) {
            self.shared.release(worker);
        }
    }
}

/// [`LeaseBackend`] of both pools: runs go to the worker's command sink (a thread's channel or
/// a process supervisor's).
struct SharedLease {
    shared: Arc<Shared>,
    worker: u32,
}

#[async_trait::async_trait]
impl LeaseBackend for SharedLease {
    fn run(&mut self, request: GenerationRequest) -> Result<RunHandle, PoolError> {
        let (events, rx) = mpsc::channel(self.shared.event_buffer);
        let cancel = CancelToken::new();
        let command = Command::Run(Box::new(RunCommand {
            request,
            cancel: cancel.clone(),
            events,
            span: tracing::Span::current(),
        }));
        self.shared
            .start_run(self.worker, cancel.clone(), command)?;
        Ok(RunHandle::new(self.worker, rx, cancel))
    }

    async fn idle(&self) {
        self.shared.idle(self.worker).await;
    }
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        self.shared.release(self.worker);
    }
}
