//! [`InProcessPool`]: one OS thread per generator in this process.

use crate::binding;
use crate::state::{CommandSink, Shared, SlotInit, Start};
use crate::worker::Worker;
use crate::{GpuPool, Lease, PoolConfig, PoolError, PoolStatus, QueuePosition};
use fv_core::{CancelToken, Generator};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use tokio::sync::mpsc;

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
        let devices = vec![None; generators.len()];
        Self::with_devices(generators, devices, config)
    }

    /// [`new`](Self::new), with the GPU each generator runs on (`cuda:N`, reported in
    /// [`WorkerStatus::device`](crate::WorkerStatus::device)); one entry per generator.
    pub fn with_devices(
        generators: Vec<Box<dyn Generator>>,
        devices: Vec<Option<u32>>,
        config: PoolConfig,
    ) -> Result<Arc<Self>, PoolError> {
        if devices.len() != generators.len() {
            return Err(PoolError::InvalidConfig(format!(
                "{} devices for {} generators",
                devices.len(),
                generators.len()
            )));
        }
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

        let slots = generators
            .iter()
            .zip(devices)
            .map(|(g, device)| SlotInit {
                generator: g.name().to_owned(),
                device,
            })
            .collect();
        let warmup_tokens: Option<Vec<CancelToken>> = config
            .warmup
            .as_ref()
            .map(|_| generators.iter().map(|_| CancelToken::new()).collect());
        let (senders, receivers): (Vec<_>, Vec<_>) =
            generators.iter().map(|_| std_mpsc::channel()).unzip();
        let sinks = senders
            .into_iter()
            .map(|tx| Box::new(tx) as Box<dyn CommandSink>)
            .collect();
        let shared = Arc::new(Shared::new(
            slots,
            sinks,
            &config,
            Start::Threads {
                warmup: warmup_tokens.clone(),
            },
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

#[async_trait::async_trait]
impl GpuPool for InProcessPool {
    async fn acquire(
        &self,
        session_id: &str,
        updates: mpsc::UnboundedSender<QueuePosition>,
    ) -> Result<Lease, PoolError> {
        binding::acquire(&self.shared, session_id, updates).await
    }

    fn status(&self) -> PoolStatus {
        self.shared.status()
    }

    fn is_ready(&self) -> bool {
        self.shared.is_ready()
    }

    async fn ready(&self) -> bool {
        binding::ready(&self.shared).await
    }

    async fn shutdown(&self) {
        InProcessPool::shutdown(self).await;
    }
}
