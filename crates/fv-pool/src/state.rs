//! The pool's bookkeeping: workers, the free list and the waiting queue, behind one mutex.
//! Shared by both pools: [`crate::InProcessPool`] (worker threads) and
//! [`crate::SubprocessPool`] (worker processes, which also restart).
//!
//! Every transition happens under the lock and none of them blocks or awaits (channel sends
//! here are unbounded or oneshot), so the lock is only ever held for a few instructions.

use crate::worker::Command;
use crate::{PoolError, PoolStatus, QueuePosition, WorkerPhase, WorkerStatus};
use fv_core::CancelToken;
use std::collections::VecDeque;
use std::sync::mpsc as std_mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What a waiter is told when it leaves the queue other than by dropping out.
pub(crate) type Grant = Result<u32, PoolError>;

/// Where the pool sends a worker its commands: a worker thread's channel or a process
/// supervisor's. Never blocks.
pub(crate) trait CommandSink: Send + Sync + std::fmt::Debug {
    /// Hands `command` over; `false` when the receiving side is gone.
    fn send(&self, command: Command) -> bool;
}

impl CommandSink for std_mpsc::Sender<Command> {
    fn send(&self, command: Command) -> bool {
        std_mpsc::Sender::send(self, command).is_ok()
    }
}

impl CommandSink for mpsc::UnboundedSender<Command> {
    fn send(&self, command: Command) -> bool {
        mpsc::UnboundedSender::send(self, command).is_ok()
    }
}

/// How the workers start.
pub(crate) enum Start {
    /// Worker threads: in service at once, or after the warm-up each runs (whose tokens let
    /// `close` interrupt it).
    Threads { warmup: Option<Vec<CancelToken>> },
    /// Worker processes: each must boot (and warm up, if `warmup`) before it serves.
    Processes { warmup: bool },
}

/// One worker at construction: its generator's name (or a placeholder until a process says)
/// and its device.
pub(crate) struct SlotInit {
    pub(crate) generator: String,
    pub(crate) device: Option<u32>,
}

/// State shared by the pool handle, its leases and its workers.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// One command sink per worker, indexed by worker id.
    commands: Vec<Box<dyn CommandSink>>,
    /// Number of workers still in their first start (boot / warm-up); readiness waits on it.
    warmup_pending: watch::Sender<usize>,
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
    device: Option<u32>,
    /// The thread or process runs.
    alive: bool,
    phase: Phase,
    /// Still in its first start: counted in `warmup_pending`.
    first_start: bool,
    leased: bool,
    session_id: Option<String>,
    running: bool,
    /// Token of the run (or in-process warm-up) in progress, so release and shutdown can
    /// stop it.
    cancel: Option<CancelToken>,
    warmup: Warmup,
    segments_run: u64,
    pid: Option<u32>,
    restarts: u32,
    last_error: Option<String>,
    /// `true` while the worker can take a run or never will again: `Lease::idle` waits on it.
    idle: watch::Sender<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Booting and/or warming up.
    Starting,
    Serving,
    /// A worker process died; a new one starts after a back-off.
    Restarting,
    /// Out of service for good (failed start, gave up restarting, thread died).
    Failed,
    /// Stopped by shutdown.
    Stopped,
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
        self.alive && self.phase == Phase::Serving
    }

    /// In service, or may be after a start or restart in progress.
    fn may_serve(&self) -> bool {
        matches!(
            self.phase,
            Phase::Starting | Phase::Serving | Phase::Restarting
        )
    }

    fn is_idle(&self, closed: bool) -> bool {
        closed || (!self.running && !matches!(self.phase, Phase::Starting | Phase::Restarting))
    }
}

impl Shared {
    pub(crate) fn new(
        slots: Vec<SlotInit>,
        commands: Vec<Box<dyn CommandSink>>,
        config: &crate::PoolConfig,
        start: Start,
    ) -> Self {
        let (warmup_enabled, processes, tokens) = match start {
            Start::Threads { warmup } => (warmup.is_some(), false, warmup),
            Start::Processes { warmup } => (warmup, true, None),
        };
        let starting = processes || warmup_enabled;
        let workers: Vec<Slot> = slots
            .into_iter()
            .enumerate()
            .map(|(i, init)| Slot {
                generator: init.generator,
                device: init.device,
                // A process is alive once spawned; a thread from the start.
                alive: !processes,
                phase: if starting {
                    Phase::Starting
                } else {
                    Phase::Serving
                },
                first_start: starting,
                leased: false,
                session_id: None,
                running: false,
                cancel: tokens.as_ref().and_then(|t| t.get(i).cloned()),
                warmup: if warmup_enabled {
                    Warmup::Pending
                } else {
                    Warmup::None
                },
                segments_run: 0,
                pid: None,
                restarts: 0,
                last_error: None,
                idle: watch::Sender::new(!starting),
            })
            .collect();
        let pending = if starting { workers.len() } else { 0 };
        let free = if starting {
            VecDeque::new()
        } else {
            (0..workers.len() as u32).collect()
        };
        Self {
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
            acquire_timeout: config.acquire_timeout,
            max_queue: config.max_queue,
            event_buffer: config.event_buffer,
            warmup_enabled,
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
        if slot.running {
            return Err(PoolError::RunInProgress { worker_id: worker });
        }
        if !slot.in_service() {
            return Err(PoolError::WorkerDead { worker_id: worker });
        }
        // Sent under the lock: a worker that stops (and drains its channel under this lock)
        // sees every command sent before it stopped.
        let sent = self
            .commands
            .get(worker as usize)
            .is_some_and(|sink| sink.send(command));
        if !sent {
            // The worker is gone without telling us; make that visible.
            st.thread_gone(worker);
            return Err(PoolError::WorkerDead { worker_id: worker });
        }
        if let Some(slot) = st.slot(worker) {
            slot.running = true;
            slot.cancel = Some(cancel);
        }
        st.sync_idle(worker);
        Ok(())
    }

    /// Resolves once `worker` has no run in progress and is not (re)starting, or can never
    /// run again.
    pub(crate) async fn idle(&self, worker: u32) {
        let mut rx = {
            let st = self.lock();
            match st.workers.get(worker as usize) {
                Some(slot) => slot.idle.subscribe(),
                None => return,
            }
        };
        // The sender lives in `self`, so `wait_for` cannot fail while `self` is borrowed.
        let _ = rx.wait_for(|idle| *idle).await;
    }

    /// The generator on `worker` returned. Called before the final events are sent, so a
    /// consumer that sees `Done` can start the next run at once.
    pub(crate) fn run_finished(&self, worker: u32, succeeded: bool) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        if !slot.running {
            return;
        }
        slot.running = false;
        slot.cancel = None;
        if succeeded {
            slot.segments_run += 1;
        }
        st.maybe_free(worker);
        // Under the lock, so a run started right after cannot be overtaken by this update.
        st.sync_idle(worker);
    }

    /// An in-process worker finished its warm-up.
    pub(crate) fn warmup_finished(&self, worker: u32, outcome: Result<(), String>) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        if slot.warmup != Warmup::Pending {
            return;
        }
        slot.cancel = None;
        match outcome {
            Ok(()) => {
                slot.warmup = Warmup::Passed;
                slot.phase = Phase::Serving;
            }
            Err(e) => {
                slot.warmup = Warmup::Failed(e);
                slot.phase = Phase::Failed;
            }
        }
        self.end_first_start(&mut st, worker);
        st.maybe_free(worker);
        st.sync_idle(worker);
        st.fail_waiters_if_no_service();
    }

    /// An in-process worker thread is exiting (shutdown, or a bug in the pool itself).
    pub(crate) fn worker_exited(&self, worker: u32) {
        let mut st = self.lock();
        if let Some(slot) = st.slot(worker)
            && slot.warmup == Warmup::Pending
        {
            slot.warmup = Warmup::Failed("worker stopped during warm-up".into());
        }
        self.end_first_start(&mut st, worker);
        if !st.closed {
            tracing::error!(worker, "GPU worker thread stopped unexpectedly");
        }
        st.thread_gone(worker);
    }

    /// A worker process was started (first start or restart).
    pub(crate) fn process_spawned(&self, worker: u32, pid: u32) {
        let mut st = self.lock();
        let warmup = self.warmup_enabled;
        let Some(slot) = st.slot(worker) else { return };
        if !slot.first_start {
            slot.restarts += 1;
        }
        slot.alive = true;
        slot.pid = Some(pid);
        slot.phase = Phase::Starting;
        slot.warmup = if warmup {
            Warmup::Pending
        } else {
            Warmup::None
        };
        st.sync_idle(worker);
    }

    /// A worker process booted (and passed its warm-up, if one is configured): in service.
    pub(crate) fn process_ready(&self, worker: u32, generator: String) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        if slot.phase != Phase::Starting {
            return;
        }
        slot.generator = generator;
        slot.phase = Phase::Serving;
        if slot.warmup == Warmup::Pending {
            slot.warmup = Warmup::Passed;
        }
        self.end_first_start(&mut st, worker);
        st.maybe_free(worker);
        st.sync_idle(worker);
    }

    /// A worker process failed to boot or warm up (`error` says which and why), or died.
    /// With `restart` it starts again after a back-off; without, it is out of service for
    /// good. A run in progress is over (the caller ends it).
    pub(crate) fn process_down(&self, worker: u32, error: String, restart: bool, starting: bool) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        if starting {
            // Reported like upstream's warm-up failures (`warmup_success: false`).
            slot.warmup = Warmup::Failed(error.clone());
        }
        slot.alive = false;
        slot.pid = None;
        slot.running = false;
        slot.cancel = None;
        slot.last_error = Some(error);
        slot.phase = if restart {
            Phase::Restarting
        } else {
            Phase::Failed
        };
        self.end_first_start(&mut st, worker);
        st.free.retain(|&w| w != worker);
        st.sync_idle(worker);
        st.fail_waiters_if_no_service();
    }

    /// A worker process stopped because the pool shut down.
    pub(crate) fn process_stopped(&self, worker: u32) {
        let mut st = self.lock();
        let Some(slot) = st.slot(worker) else { return };
        slot.alive = false;
        slot.pid = None;
        slot.running = false;
        slot.cancel = None;
        if slot.warmup == Warmup::Pending {
            slot.warmup = Warmup::Failed("pool shut down during start".into());
        }
        if slot.phase != Phase::Failed {
            slot.phase = Phase::Stopped;
        }
        self.end_first_start(&mut st, worker);
        st.free.retain(|&w| w != worker);
        st.sync_idle(worker);
    }

    /// Counts `worker`'s first start as over (once).
    fn end_first_start(&self, st: &mut State, worker: u32) {
        if let Some(slot) = st.slot(worker)
            && slot.first_start
        {
            slot.first_start = false;
            st.warmup_pending = st.warmup_pending.saturating_sub(1);
            self.warmup_pending.send_replace(st.warmup_pending);
        }
    }

    /// Stops admitting, fails every waiter with `Closed`, cancels all runs and tells every
    /// worker to stop once its current command is done. Idempotent.
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
        for sink in &self.commands {
            let _ = sink.send(Command::Shutdown);
        }
        for worker in 0..st.workers.len() as u32 {
            st.sync_idle(worker);
        }
        tracing::info!("GPU pool closed");
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
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
                    phase: match slot.phase {
                        Phase::Starting => WorkerPhase::Starting,
                        Phase::Serving if slot.alive => WorkerPhase::Ready,
                        Phase::Serving | Phase::Failed => WorkerPhase::Failed,
                        Phase::Restarting => WorkerPhase::Restarting,
                        Phase::Stopped => WorkerPhase::Stopped,
                    },
                    pid: slot.pid,
                    device: slot.device,
                    restarts: slot.restarts,
                    last_error: slot.last_error.clone(),
                })
                .collect(),
        }
    }
}

impl State {
    fn slot(&mut self, worker: u32) -> Option<&mut Slot> {
        self.workers.get_mut(worker as usize)
    }

    /// No worker can serve now or later: waiting would only end in a timeout.
    fn no_service(&self) -> bool {
        !self.workers.iter().any(Slot::may_serve)
    }

    fn sync_idle(&self, worker: u32) {
        if let Some(slot) = self.workers.get(worker as usize) {
            slot.idle.send_replace(slot.is_idle(self.closed));
        }
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

    /// A worker thread is gone for good.
    fn thread_gone(&mut self, worker: u32) {
        let closed = self.closed;
        if let Some(slot) = self.slot(worker) {
            slot.alive = false;
            slot.running = false;
            slot.cancel = None;
            slot.phase = if closed {
                Phase::Stopped
            } else {
                Phase::Failed
            };
        }
        self.free.retain(|&w| w != worker);
        // A dead worker runs nothing: whoever waits for it to be idle learns at once.
        self.sync_idle(worker);
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
