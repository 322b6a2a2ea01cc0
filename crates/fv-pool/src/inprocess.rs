//! [`InProcessPool`]: one OS thread per generator in this process, and its lease backend.

use crate::state::{Admission, Grant, Shared};
use crate::worker::{Command, RunCommand, Worker};
use crate::{
    GpuPool, Lease, LeaseBackend, PoolConfig, PoolError, PoolStatus, QueuePosition, RunHandle,
};
use fv_core::{CancelToken, GenerationRequest, Generator};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::{mpsc, oneshot};

/// A pool of generators in this process, one OS thread per generator.
///
/// Panic policy: a generator that panics inside `generate` fails that run with
/// `GenerateError::Failed("generator panicked: …")` and the worker **stays in service** with the
/// same generator; a panic during warm-up counts as a failed warm-up and excludes the worker.
/// A worker whose thread is gone is reported with `alive: false` and never handed out again.
///
/// Dropping the pool closes it (waiters get [`PoolError::Closed`], runs are cancelled, threads
/// exit after their current step) without waiting; call [`InProcessPool::shutdown`] to also
/// join the threads.
pub struct InProcessPool {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for InProcessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessPool")
            .field("status", &self.shared.status())
            .finish_non_exhaustive()
    }
}

impl InProcessPool {
    /// Starts one worker thread per generator (worker ids are the indices into
    /// `generators`). With `config.warmup` set, each worker runs it before serving.
    pub fn new(
        generators: Vec<Box<dyn Generator>>,
        config: PoolConfig,
    ) -> Result<Arc<Self>, PoolError> {
        if generators.is_empty() {
            return Err(PoolError::InvalidConfig(
                "at least one generator is required".into(),
            ));
        }
        if u32::try_from(generators.len()).is_err() {
            return Err(PoolError::InvalidConfig(format!(
                "{} generators is more than a pool can address",
                generators.len()
            )));
        }
        if config.event_buffer == 0 {
            return Err(PoolError::InvalidConfig(
                "event_buffer must be at least 1".into(),
            ));
        }

        let names: Vec<String> = generators.iter().map(|g| g.name().to_owned()).collect();
        let warmup_tokens: Option<Vec<CancelToken>> = config
            .warmup
            .as_ref()
            .map(|_| generators.iter().map(|_| CancelToken::new()).collect());
        let (senders, receivers): (Vec<_>, Vec<_>) =
            generators.iter().map(|_| std_mpsc::channel()).unzip();
        let shared = Arc::new(Shared::new(
            names,
            senders,
            config.acquire_timeout,
            config.max_queue,
            config.event_buffer,
            warmup_tokens.as_deref(),
        ));
        let pool = Arc::new(Self {
            shared: shared.clone(),
            threads: Mutex::new(Vec::with_capacity(generators.len())),
        });

        for (i, (generator, commands)) in generators.into_iter().zip(receivers).enumerate() {
            let id = i as u32;
            let spawn_error = |e: std::io::Error| PoolError::Spawn {
                worker_id: id,
                reason: e.to_string(),
            };
            // Dropping `pool` on an error path closes the pool, so threads already started exit.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(spawn_error)?;
            let warmup = match (&config.warmup, &warmup_tokens) {
                (Some(request), Some(tokens)) => {
                    tokens.get(i).map(|token| (request.clone(), token.clone()))
                }
                _ => None,
            };
            let worker = Worker {
                id,
                generator,
                commands,
                shared: shared.clone(),
                runtime,
                warmup,
            };
            let handle = std::thread::Builder::new()
                .name(format!("fv-gpu-worker-{id}"))
                .spawn(move || worker.main())
                .map_err(spawn_error)?;
            pool.threads
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        tracing::info!(
            workers = pool.shared.status().total_workers,
            warmup = pool.shared.warmup_enabled,
            "GPU pool started"
        );
        Ok(pool)
    }

    /// Closes the pool (see [`PoolError::Closed`]), cancels every run and joins the worker
    /// threads on the blocking pool. Returns once all threads have exited. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.close();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        if threads.is_empty() {
            return;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("GPU worker thread panicked");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "joining GPU worker threads failed");
        }
    }
}

impl Drop for InProcessPool {
    fn drop(&mut self) {
        self.shared.close();
    }
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

#[async_trait::async_trait]
impl GpuPool for InProcessPool {
    async fn acquire(
        &self,
        session_id: &str,
        updates: mpsc::UnboundedSender<QueuePosition>,
    ) -> Result<Lease, PoolError> {
        let (id, grant) = match self.shared.admit(session_id, updates)? {
            Admission::Granted(worker) => return Ok(self.lease(worker, session_id)),
            Admission::Queued(id, grant) => (id, grant),
        };
        let mut waiting = Waiting {
            shared: self.shared.clone(),
            id,
            grant,
            settled: false,
        };
        let timeout = self.shared.acquire_timeout;
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
        grant.map(|worker| self.lease(worker, session_id))
    }

    fn status(&self) -> PoolStatus {
        self.shared.status()
    }

    fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    async fn ready(&self) -> bool {
        let mut pending = self.shared.warmup_watch();
        // The sender lives in `self.shared`, so this cannot fail while `self` is borrowed.
        let _ = pending.wait_for(|n| *n == 0).await;
        self.shared.is_ready()
    }
}

impl InProcessPool {
    fn lease(&self, worker: u32, session_id: &str) -> Lease {
        Lease::new(
            worker,
            session_id,
            InProcessLease {
                shared: self.shared.clone(),
                worker,
            },
        )
    }
}

/// [`LeaseBackend`] of an in-process worker: runs go to the worker thread's command channel.
struct InProcessLease {
    shared: Arc<Shared>,
    worker: u32,
}

#[async_trait::async_trait]
impl LeaseBackend for InProcessLease {
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

impl Drop for InProcessLease {
    fn drop(&mut self) {
        self.shared.release(self.worker);
    }
}
