//! The pool side of a serving worker's socket: a task that reads the worker's messages and
//! hands each run's events to its consumer.
//!
//! Back-pressure is end to end: while a consumer is behind, this task waits to deliver and
//! stops reading, the socket fills up, and the worker blocks in its next write, so a slow
//! client slows the generator instead of growing memory. A cancelled run's events are
//! dropped rather than waited for, so a consumer that stopped reading cannot pin a worker.

use crate::RunEvent;
use crate::ipc::{self, FromWorker, IpcError};
use crate::state::Shared;
use crate::worker::CANCEL_POLL;
use fv_core::{CancelToken, Frame, GenerationResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;

/// The run a worker is executing, shared by the supervisor (which starts it and fails it if
/// the worker dies) and the relay (which delivers its events and ends it on `Done`).
#[derive(Debug)]
pub(super) struct ActiveRun {
    pub(super) run_id: u64,
    pub(super) events: mpsc::Sender<RunEvent>,
    pub(super) cancel: CancelToken,
    pub(super) span: tracing::Span,
    /// Frames of the batch being received.
    pub(super) batch: Vec<Frame>,
    /// The supervisor told the worker to cancel.
    pub(super) cancel_sent: bool,
}

pub(super) type Current = Arc<Mutex<Option<ActiveRun>>>;

pub(super) fn lock(current: &Current) -> std::sync::MutexGuard<'_, Option<ActiveRun>> {
    current.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads until the socket ends or breaks; returns why. `succeeded` is set once a run ends
/// well (the supervisor's restart back-off starts over after that).
pub(super) async fn relay(
    mut socket: OwnedReadHalf,
    current: Current,
    shared: Arc<Shared>,
    worker: u32,
    succeeded: Arc<AtomicBool>,
) -> IpcError {
    loop {
        let message = match ipc::read_message(&mut socket).await {
            Ok((tag, body)) => ipc::decode_from_worker(tag, body),
            Err(e) => return e,
        };
        let message = match message {
            Ok(message) => message,
            Err(e) => return e,
        };
        let (run_id, event) = match message {
            FromWorker::Step {
                run_id,
                step,
                total,
            } => (run_id, Some(RunEvent::Step { step, total })),
            FromWorker::Frame {
                run_id,
                end_of_batch,
                frame,
            } => {
                let mut guard = lock(&current);
                let Some(run) = guard.as_mut().filter(|r| r.run_id == run_id) else {
                    return stray(run_id);
                };
                run.batch.push(frame);
                let batch = end_of_batch.then(|| std::mem::take(&mut run.batch));
                (run_id, batch.map(RunEvent::Frames))
            }
            FromWorker::Done { run_id, result } => {
                let Some(mut run) = lock(&current).take_if(|r| r.run_id == run_id) else {
                    return stray(run_id);
                };
                // Free the worker before `Done` goes out: a consumer that sees it may start
                // its next run at once.
                shared.run_finished(worker, result.is_ok());
                if result.is_ok() {
                    succeeded.store(true, Ordering::Release);
                }
                if !run.batch.is_empty() {
                    let batch = std::mem::take(&mut run.batch);
                    deliver(&run.events, &run.cancel, RunEvent::Frames(batch)).await;
                }
                let done = result.map(|finished| GenerationResult {
                    frames: Vec::new(),
                    state: finished.state,
                    audio: finished.audio,
                });
                if let Err(e) = &done {
                    run.span
                        .in_scope(|| tracing::debug!(error = %e, "run ended without a result"));
                }
                deliver(&run.events, &run.cancel, RunEvent::Done(done)).await;
                continue;
            }
            other => {
                return IpcError::malformed(format!("unexpected message while serving: {other:?}"));
            }
        };
        let Some(event) = event else { continue };
        let target = lock(&current)
            .as_ref()
            .filter(|r| r.run_id == run_id)
            .map(|r| (r.events.clone(), r.cancel.clone()));
        let Some((events, cancel)) = target else {
            return stray(run_id);
        };
        deliver(&events, &cancel, event).await;
    }
}

fn stray(run_id: u64) -> IpcError {
    IpcError::malformed(format!("event for run {run_id}, which is not running"))
}

/// Hands `event` to the consumer, waiting while it is behind, but not once the run is
/// cancelled (the event is then dropped if there is no room). A consumer that is gone
/// cancels the run.
pub(super) async fn deliver(
    events: &mpsc::Sender<RunEvent>,
    cancel: &CancelToken,
    event: RunEvent,
) {
    if cancel.is_cancelled() {
        if let Err(mpsc::error::TrySendError::Closed(_)) = events.try_send(event) {
            cancel.cancel();
        }
        return;
    }
    loop {
        tokio::select! {
            permit = events.reserve() => {
                match permit {
                    Ok(permit) => permit.send(event),
                    // Nobody listens any more: stop the generator at its next step.
                    Err(_) => cancel.cancel(),
                }
                return;
            }
            () = tokio::time::sleep(CANCEL_POLL) => {
                if cancel.is_cancelled() {
                    let _ = events.try_send(event);
                    return;
                }
            }
        }
    }
}
