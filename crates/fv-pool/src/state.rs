//! The pool's bookkeeping: workers, the free list and the waiting queue, behind one mutex.
//!
//! Every transition happens under the lock and none of them blocks or awaits (channel sends
//! here are unbounded or oneshot), so the lock is only ever held for a few instructions.

use crate::worker::Command;
use crate::{PoolError, PoolStatus, QueuePosition, WorkerStatus};
use fv_core::CancelToken;
use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What a waiter is told when it leaves the queue other than by dropping out.
pub(crate) type Grant = Result<u32, PoolError>;

/// State shared by the pool handle, its leases and its worker threads.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// One command channel per worker, indexed by worker id.
    commands: Vec<std_mpsc::Sender<Command>>,
    /// Number of workers still warming up; readiness waits on it.
    warmup_pending: watch::Sender<usize>,
    /// Per worker: a generator call is in progress. `Lease::idle` waits on it.
    running: Vec<watch::Sender<bool>>,
    pub(crate) acquire_timeout: Duration,
    pub(crate) max_queue: usize,
    pub(crate) event_buffer: usize,
    pub(crate) warmup_enabled: bool,
}

#[derive(Debug)]
struct State {
    closed: bool,
    workers: Vec<Slot>,
    /// Workers in service with no lease and no run, in the order they became free.
    free: VecDeque<u32>,
    waiters: VecDeque<Waiter>,
    next_waiter: u64,
    warmup_pending: usize,
}

#[derive(Debug)]
struct Slot {
    generator: String,
    alive: bool,
    leased: bool,
    session_id: Option<String>,
    running: bool,
    /// Token of the run (or warm-up) in progress, so release and shutdown can stop it.
    cancel: Option<CancelToken>,
    warmup: Warmup,
    segments_run: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Warmup {
    None,
    Pending,
    Passed,
    Failed(String),
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    session_id: String,
    grant: oneshot::Sender<Grant>,
    updates: mpsc::UnboundedSender<QueuePosition>,
    last_sent: Option<QueuePosition>,
}

/// Outcome of trying to take a worker without waiting.
pub(crate) enum Admission {
    Granted(u32),
    Queued(u64, oneshot::Receiver<Grant>),
}

impl Slot {
    fn in_service(&self) -> bool {
        self.alive && matches!(self.warmup, Warmup::None | Warmup::Passed)
    }
}

impl Shared {
    pub(crate) fn new(
        generator_names: Vec<String>,
        commands: Vec<std_mpsc::Sender<Command>>,
        acquire_timeout: Duration,
        max_queue: usize,
        event_buffer: usize,
        warmup: Option<&[CancelToken]>,
    ) -> Self {
        let workers: Vec<Slot> = generator_names
            .into_iter()
            .enumerate()
            .map(|(i, generator)| Slot {
                generator,
                alive: true,
                leased: false,
                session_id: None,
                running: false,
                cancel: warmup.and_then(|tokens| tokens.get(i).cloned()),
                warmup: if warmup.is_some() {
                    Warmup::Pending
                } else {
                    Warmup::None
                },
                segments_run: 0,
            })
            .collect();
        let pending = if warmup.is_some() { workers.len() } else { 0 };
        let free = if warmup.is_some() {
            VecDeque::new()
        } else {
            (0..workers.len() as u32).collect()
        };
        let running = workers.iter().map(|_| watch::Sender::new(false)).collect();
        Self {
            running,
            state: Mutex::new(State {
                closed: false,
                workers,
                free,
                waiters: VecDeque::new(),
                next_waiter: 0,
                warmup_pending: pending,
            }),
            commands,
            warmup_pending: watch::Sender::new(pending),
            acquire_timeout,
            max_queue,
            event_buffer,
            warmup_enabled: warmup.is_some(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock can panic half-way through a transition, so a poisoned lock
        // (a panic elsewhere while holding it) still guards consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a free worker at once if nobody waits, or joins the queue.
    pub(crate) fn admit(
        &self,
        session_id: &str,
        updates: mpsc::UnboundedSender<QueuePosition>,
    ) -> Result<Admission, PoolError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PoolError::Closed);
        }
        if st.no_service() {
            return Err(PoolError::NoWorkers);
        }
        if st.waiters.is_empty()
            && let Some(worker) = st.free.pop_front()
        {
            st.bind(worker, session_id);
            let _ = updates.send(QueuePosition {
                position: 0,
                queue_depth: 0,
            });
            tracing::debug!(worker, session_id, "worker granted without waiting");
            return Ok(Admission::Granted(worker));
        }
        if st.waiters.len() >= self.max_queue {
            return Err(PoolError::QueueFull {
                max: self.max_queue,
            });
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_waiter;
        st.next_waiter += 1;
        st.waiters.push_back(Waiter {
            id,
            session_id: session_id.to_owned(),
            grant: tx,
            updates,
            last_sent: None,
        });
        st.publish_positions();
        tracing::debug!(session_id, depth = st.waiters.len(), "queued for a worker");
        Ok(Admission::Queued(id, rx))
    }

    /// Takes waiter `id` out of the queue. If it was already granted a worker, returns what it
    /// was sent; the caller either uses it or hands the worker back with [`Self::release`].
    /// Runs under the lock so no grant can slip in between the check and the receive.
    pub(crate) fn leave_queue(
        &self,
        id: u64,
        grant: &mut oneshot::Receiver<Grant>,
    ) -> Option<Grant> {
        let mut st = self.lock();
        if let Some(index) = st.waiters.iter().position(|w| w.id == id) {
            st.waiters.remove(index);
            st.publish_positions();
            return None;
        }
        grant.try_recv().ok()
    }

    /// Ends the binding of `worker`; cancels its run if one is in progress.
    pub(crate) fn release(&self, worker: u32) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        slot.leased = false;
        slot.session_id = None;
        if slot.running
            && let Some(cancel) = &slot.cancel
        {
            cancel.cancel();
        }
        tracing::debug!(worker, "lease released");
        st.maybe_free(worker);
    }

    /// Marks `worker` running and hands it the command, or says why not.
    pub(crate) fn start_run(
        &self,
        worker: u32,
        cancel: CancelToken,
        command: Command,
    ) -> Result<(), PoolError> {
        let mut st = self.lock();
        if st.closed {
            return Err(PoolError::Closed);
        }
        let Some(slot) = st.slot(worker) else {
            return Err(PoolError::WorkerDead { worker_id: worker });
        };
        if !slot.alive {
            return Err(PoolError::WorkerDead { worker_id: worker });
        }
        if slot.running {
            return Err(PoolError::RunInProgress { worker_id: worker });
        }
        let sent = self
            .commands
            .get(worker as usize)
            .is_some_and(|tx| tx.send(command).is_ok());
        if !sent {
            // The thread is gone without telling us; make that visible.
            st.worker_gone(worker);
            self.set_running(worker, false);
            return Err(PoolError::WorkerDead { worker_id: worker });
        }
        if let Some(slot) = st.slot(worker) {
            slot.running = true;
            slot.cancel = Some(cancel);
        }
        self.set_running(worker, true);
        Ok(())
    }

    fn set_running(&self, worker: u32, running: bool) {
        if let Some(tx) = self.running.get(worker as usize) {
            tx.send_replace(running);
        }
    }

    /// Resolves once `worker` has no generator call in progress.
    pub(crate) async fn idle(&self, worker: u32) {
        let Some(tx) = self.running.get(worker as usize) else {
            return;
        };
        let mut rx = tx.subscribe();
        // The sender lives in `self`, so `wait_for` cannot fail while `self` is borrowed.
        let _ = rx.wait_for(|running| !*running).await;
    }

    /// The generator on `worker` returned. Called before the final events are sent, so a
    /// consumer that sees `Done` can start the next run at once.
    pub(crate) fn run_finished(&self, worker: u32, succeeded: bool) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        slot.running = false;
        slot.cancel = None;
        if succeeded {
            slot.segments_run += 1;
        }
        st.maybe_free(worker);
        // Under the lock, so a run started right after cannot be overtaken by this update.
        self.set_running(worker, false);
    }

    pub(crate) fn warmup_finished(&self, worker: u32, outcome: Result<(), String>) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        if slot.warmup != Warmup::Pending {
            return;
        }
        slot.cancel = None;
        slot.warmup = match outcome {
            Ok(()) => Warmup::Passed,
            Err(e) => Warmup::Failed(e),
        };
        st.warmup_pending = st.warmup_pending.saturating_sub(1);
        self.warmup_pending.send_replace(st.warmup_pending);
        st.maybe_free(worker);
        st.fail_waiters_if_no_service();
    }

    /// The worker thread is exiting (shutdown, or a bug in the pool itself).
    pub(crate) fn worker_exited(&self, worker: u32) {
        let mut st = self.lock();
        if let Some(slot) = st.slot(worker)
            && slot.warmup == Warmup::Pending
        {
            slot.warmup = Warmup::Failed("worker stopped during warm-up".into());
            st.warmup_pending = st.warmup_pending.saturating_sub(1);
            self.warmup_pending.send_replace(st.warmup_pending);
        }
        if !st.closed {
            tracing::error!(worker, "GPU worker thread stopped unexpectedly");
        }
        st.worker_gone(worker);
        // A dead worker runs nothing: whoever waits for it to be idle learns at once.
        self.set_running(worker, false);
    }

    /// Stops admitting, fails every waiter with `Closed`, cancels all runs and tells every
    /// worker thread to exit once its current command is done. Idempotent.
    pub(crate) fn close(&self) {
        let mut st = self.lock();
        if st.closed {
            return;
        }
        st.closed = true;
        st.free.clear();
        for waiter in st.waiters.drain(..) {
            let _ = waiter.grant.send(Err(PoolError::Closed));
        }
        for slot in &st.workers {
            if let Some(cancel) = &slot.cancel {
                cancel.cancel();
            }
        }
        for tx in &self.commands {
            let _ = tx.send(Command::Shutdown);
        }
        tracing::info!("GPU pool closed");
    }

    pub(crate) fn is_ready(&self) -> bool {
        let st = self.lock();
        st.warmup_pending == 0 && st.workers.iter().any(Slot::in_service)
    }

    pub(crate) fn warmup_watch(&self) -> watch::Receiver<usize> {
        self.warmup_pending.subscribe()
    }

    pub(crate) fn status(&self) -> PoolStatus {
        let st = self.lock();
        PoolStatus {
            total_workers: st.workers.len(),
            available_workers: st.free.len(),
            queue_depth: st.waiters.len(),
            warmup_enabled: self.warmup_enabled,
            workers: st
                .workers
                .iter()
                .enumerate()
                .map(|(i, slot)| WorkerStatus {
                    id: i as u32,
                    ready: slot.in_service(),
                    busy: slot.leased,
                    running: slot.running,
                    session_id: slot.session_id.clone(),
                    generator: slot.generator.clone(),
                    warmup_ok: match slot.warmup {
                        Warmup::None | Warmup::Pending => None,
                        Warmup::Passed => Some(true),
                        Warmup::Failed(_) => Some(false),
                    },
                    warmup_error: match &slot.warmup {
                        Warmup::Failed(e) => Some(e.clone()),
                        _ => None,
                    },
                    segments_run: slot.segments_run,
                    alive: slot.alive,
                })
                .collect(),
        }
    }
}

impl State {
    fn slot(&mut self, worker: u32) -> Option<&mut Slot> {
        self.workers.get_mut(worker as usize)
    }

    /// Warm-up is over and no worker can serve: waiting would only end in a timeout.
    fn no_service(&self) -> bool {
        self.warmup_pending == 0 && !self.workers.iter().any(Slot::in_service)
    }

    fn bind(&mut self, worker: u32, session_id: &str) {
        if let Some(slot) = self.slot(worker) {
            slot.leased = true;
            slot.session_id = Some(session_id.to_owned());
        }
    }

    /// Hands `worker` to the next waiter, or puts it on the free list, if it has neither a
    /// lease nor a run and is in service.
    fn maybe_free(&mut self, worker: u32) {
        if self.closed {
            return;
        }
        let Some(slot) = self.workers.get(worker as usize) else {
            return;
        };
        if slot.leased || slot.running || !slot.in_service() || self.free.contains(&worker) {
            return;
        }
        while let Some(waiter) = self.waiters.pop_front() {
            self.bind(worker, &waiter.session_id);
            if waiter.grant.send(Ok(worker)).is_err() {
                // The waiter's future is gone (it removes itself under this lock first, so
                // this is only defensive); try the next one.
                if let Some(slot) = self.slot(worker) {
                    slot.leased = false;
                    slot.session_id = None;
                }
                continue;
            }
            let _ = waiter.updates.send(QueuePosition {
                position: 0,
                queue_depth: self.waiters.len(),
            });
            tracing::debug!(worker, session_id = %waiter.session_id, "worker granted to waiter");
            self.publish_positions();
            return;
        }
        self.free.push_back(worker);
    }

    /// Sends every waiter its position if it changed since the last update.
    fn publish_positions(&mut self) {
        let depth = self.waiters.len();
        for (index, waiter) in self.waiters.iter_mut().enumerate() {
            let now = QueuePosition {
                position: index + 1,
                queue_depth: depth,
            };
            if waiter.last_sent != Some(now) {
                let _ = waiter.updates.send(now);
                waiter.last_sent = Some(now);
            }
        }
    }

    fn worker_gone(&mut self, worker: u32) {
        if let Some(slot) = self.slot(worker) {
            slot.alive = false;
            slot.running = false;
            slot.cancel = None;
        }
        self.free.retain(|&w| w != worker);
        self.fail_waiters_if_no_service();
    }

    fn fail_waiters_if_no_service(&mut self) {
        if self.closed || !self.no_service() {
            return;
        }
        if !self.waiters.is_empty() {
            tracing::error!(
                waiting = self.waiters.len(),
                "no GPU worker in service; failing all waiters"
            );
        }
        for waiter in self.waiters.drain(..) {
            let _ = waiter.grant.send(Err(PoolError::NoWorkers));
        }
    }
}
