//! [`SubprocessPool`]: one worker process per GPU, framed IPC over a Unix socket, boot and
//! warm-up before service, restart with back-off after a crash.

mod child;
mod relay;
mod supervisor;

use crate::binding;
use crate::state::{CommandSink, Shared, SlotInit, Start};
use crate::{GpuPool, Lease, PoolConfig, PoolError, PoolStatus, QueuePosition};
use fv_core::GenerationRequest;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use supervisor::Supervisor;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The program a [`SubprocessPool`] starts for each worker, usually this binary with a
/// `worker` subcommand ([`WorkerCommand::current_exe`]). The pool adds the environment
/// variables of [`crate::worker_process`] (socket, worker id, parent pid, device) and
/// `CUDA_VISIBLE_DEVICES`; the program calls [`crate::worker_process::run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Extra environment variables (the server's own environment is inherited).
    pub env: Vec<(OsString, OsString)>,
}

impl WorkerCommand {
    /// `program` with no arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// The running binary (re-executed), with no arguments yet.
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?))
    }

    /// Appends an argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Settings of a [`SubprocessPool`] beyond [`PoolConfig`]. Build with
/// [`SubprocessConfig::new`] and change what differs.
#[derive(Debug, Clone, PartialEq)]
pub struct SubprocessConfig {
    /// How to start a worker.
    pub command: WorkerCommand,
    /// One entry per worker: the GPU it runs on (the process gets `CUDA_VISIBLE_DEVICES` for
    /// it, mapped through the server's own `CUDA_VISIBLE_DEVICES` when that is set), or
    /// `None` (CPU, or a generator that picks its own device).
    pub devices: Vec<Option<u32>>,
    /// Handed to every worker as [`crate::worker_process::WorkerInit::payload`] (the server
    /// sends its serialized config).
    pub payload: Vec<u8>,
    /// Longest a worker may take from spawn to ready (boot plus warm-up); past it the process
    /// is killed and counts as failed to start. Default 2400 s (FastVideo's warm-up timeout).
    pub start_timeout: Duration,
    /// At shutdown, how long a worker gets to finish its current step and exit before it is
    /// killed. Default 10 s.
    pub stop_timeout: Duration,
    /// Wait before the first restart of a worker that died; doubles with each consecutive
    /// failure. Default 1 s.
    pub restart_backoff: Duration,
    /// Longest wait between restarts. Default 60 s.
    pub restart_backoff_max: Duration,
    /// Consecutive failures (deaths or failed restarts, with no successful run between them)
    /// after which a worker is left out of service. A worker whose very first start fails is
    /// never restarted. Default 5.
    pub max_restarts: u32,
    /// Workers send RGB24 frames as I420: half the bytes, and exactly the planes the H.264
    /// encoder would make from them (docs/ipc.md). Default `true`.
    pub frames_as_i420: bool,
}

impl SubprocessConfig {
    /// `devices.len()` workers started with `command`, defaults for the rest.
    pub fn new(command: WorkerCommand, devices: Vec<Option<u32>>) -> Self {
        Self {
            command,
            devices,
            payload: Vec::new(),
            start_timeout: Duration::from_secs(2400),
            stop_timeout: Duration::from_secs(10),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(60),
            max_restarts: 5,
            frames_as_i420: true,
        }
    }
}

/// What every supervisor of a pool reads.
#[derive(Debug)]
struct Settings {
    command: WorkerCommand,
    payload: Vec<u8>,
    warmup: Option<GenerationRequest>,
    frames_as_i420: bool,
    start_timeout: Duration,
    stop_timeout: Duration,
    restart_backoff: Duration,
    restart_backoff_max: Duration,
    max_restarts: u32,
    /// The server's own `CUDA_VISIBLE_DEVICES`, which worker devices index into.
    server_visible: Option<String>,
}

/// A pool of worker processes, one per GPU: the production shape.
///
/// Each worker is a child process (by default this binary, re-executed with a `worker`
/// subcommand that calls [`crate::worker_process::run`]) that builds its own generator on its
/// own device, warms up, and serves runs over a Unix socket with a framed binary protocol.
/// The server process stays free of GPU state; a crash in a model takes down one worker, not
/// the server.
///
/// * **Start**: a worker counts as ready only after it booted and passed its warm-up within
///   [`SubprocessConfig::start_timeout`]. One that fails its first start is excluded and
///   reported (`/status`: `ready: false`, `warmup_success: false`, `warmup_error`), never
///   handed out; [`GpuPool::is_ready`] needs at least one ready worker.
/// * **Crash** (exit, signal, closed socket, protocol error): the run it had ends with
///   `Done(Err(Failed("GPU worker process … killed by signal 9 …")))` (the server's
///   `worker_failed`, retryable), the lease stays bound, and the worker restarts after
///   [`SubprocessConfig::restart_backoff`] (doubling per consecutive failure, capped at
///   [`SubprocessConfig::restart_backoff_max`], given up after
///   [`SubprocessConfig::max_restarts`]). [`crate::Lease::idle`] waits for the restart, so
///   the session's next segment runs on the new process.
/// * **Cancel**: dropping a [`crate::RunHandle`] or the lease sends a cancel message within
///   10 ms; the worker stops at its generator's next step.
/// * **No orphans**: workers ask the kernel to kill them when the server dies (even by
///   SIGKILL), exit when their socket closes, and are killed when the pool (or its runtime)
///   is dropped. [`SubprocessPool::shutdown`] asks each to stop, waits
///   [`SubprocessConfig::stop_timeout`], then kills.
///
/// Linux only (pidfds, `PR_SET_PDEATHSIG`, `SO_PEERCRED`).
pub struct SubprocessPool {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SubprocessPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubprocessPool")
            .field("status", &self.shared.status())
            .finish_non_exhaustive()
    }
}

impl SubprocessPool {
    /// Starts one worker process per entry of `config.devices` (worker ids are the indices).
    /// Returns at once; workers boot and warm up in the background ([`GpuPool::ready`]).
    /// With `pool.warmup` set, each worker runs it before serving (and after each restart).
    /// Must be called within a tokio runtime.
    pub fn start(pool: PoolConfig, config: SubprocessConfig) -> Result<Arc<Self>, PoolError> {
        let workers = config.devices.len();
        if workers == 0 {
            return Err(PoolError::InvalidConfig(
                "at least one worker is required".into(),
            ));
        }
        if u32::try_from(workers).is_err() {
            return Err(PoolError::InvalidConfig(format!(
                "{workers} workers is more than a pool can address"
            )));
        }
        if pool.event_buffer == 0 {
            return Err(PoolError::InvalidConfig(
                "event_buffer must be at least 1".into(),
            ));
        }
        if config.restart_backoff > config.restart_backoff_max {
            return Err(PoolError::InvalidConfig(
                "restart_backoff must not exceed restart_backoff_max".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            PoolError::InvalidConfig(
                "a SubprocessPool must be started within a tokio runtime".into(),
            )
        })?;
        let spawn_error = |worker_id: u32, e: std::io::Error| PoolError::Spawn {
            worker_id,
            reason: e.to_string(),
        };
        // Private (0700) directory for the sockets: only this user can even reach them, and a
        // worker's connection is also checked against its pid.
        let dir = Arc::new(
            tempfile::Builder::new()
                .prefix("fv-pool-")
                .tempdir()
                .map_err(|e| spawn_error(0, e))?,
        );

        let slots = config
            .devices
            .iter()
            .map(|&device| SlotInit {
                generator: "starting".to_owned(),
                device,
            })
            .collect();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let sinks = senders
            .into_iter()
            .map(|tx| Box::new(tx) as Box<dyn CommandSink>)
            .collect();
        let shared = Arc::new(Shared::new(
            slots,
            sinks,
            &pool,
            Start::Processes {
                warmup: pool.warmup.is_some(),
            },
        ));
        let settings = Arc::new(Settings {
            command: config.command,
            payload: config.payload,
            warmup: pool.warmup.clone(),
            frames_as_i420: config.frames_as_i420,
            start_timeout: config.start_timeout,
            stop_timeout: config.stop_timeout,
            restart_backoff: config.restart_backoff,
            restart_backoff_max: config.restart_backoff_max,
            max_restarts: config.max_restarts,
            server_visible: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        });
        let this = Arc::new(Self {
            shared: shared.clone(),
            supervisors: Mutex::new(Vec::with_capacity(workers)),
        });
        for (i, (commands, device)) in receivers.into_iter().zip(config.devices).enumerate() {
            let id = i as u32;
            let socket = dir.path().join(format!("worker-{id}.sock"));
            // Bound inside the runtime (the listener registers with its reactor). Dropping
            // `this` on an error path closes the pool, so supervisors already started stop.
            let listener = {
                let _guard = runtime.enter();
                tokio::net::UnixListener::bind(&socket).map_err(|e| spawn_error(id, e))?
            };
            let supervisor = Supervisor {
                id,
                device,
                shared: shared.clone(),
                settings: settings.clone(),
                commands,
                listener,
                socket,
                _dir: dir.clone(),
            };
            let handle = runtime.spawn(supervisor.main());
            this.supervisors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        tracing::info!(
            workers,
            warmup = shared.warmup_enabled,
            "GPU worker processes starting"
        );
        Ok(this)
    }

    /// Closes the pool ([`PoolError::Closed`] for waiters, runs cancelled) and stops every
    /// worker process: asked to exit, killed after [`SubprocessConfig::stop_timeout`].
    /// Returns once all are gone. Idempotent.
    pub async fn shutdown(&self) {
        self.shared.close();
        let supervisors = std::mem::take(
            &mut *self
                .supervisors
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for supervisor in supervisors {
            if let Err(e) = supervisor.await {
                tracing::error!(error = %e, "GPU worker supervisor failed");
            }
        }
    }
}

impl Drop for SubprocessPool {
    /// Closes the pool; the supervisors stop their processes (and kill them if the runtime
    /// goes away first).
    fn drop(&mut self) {
        self.shared.close();
    }
}

#[async_trait::async_trait]
impl GpuPool for SubprocessPool {
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
        SubprocessPool::shutdown(self).await;
    }
}
