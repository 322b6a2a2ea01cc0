//! One task per worker slot: starts its process, waits for boot and warm-up, sends it runs and
//! cancels, notices when it dies, fails the run it had, and starts it again after a back-off.

use super::Settings;
use super::child::{Child, Launch, visible_device};
use super::relay::{ActiveRun, Current, deliver, lock, relay};
use crate::RunEvent;
use crate::ipc::{self, FromWorker, Init, ToWorker};
use crate::state::Shared;
use crate::worker::{CANCEL_POLL, Command, RunCommand};
use fv_core::GenerateError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// Longest a write of a control message to a worker may take. A worker reads its socket on a
/// thread of its own, so only a hung process makes this expire; it is then killed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// After a worker closed its socket, how long it gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

pub(super) struct Supervisor {
    pub(super) id: u32,
    pub(super) device: Option<u32>,
    pub(super) shared: Arc<Shared>,
    pub(super) settings: Arc<Settings>,
    pub(super) commands: mpsc::UnboundedReceiver<Command>,
    pub(super) listener: UnixListener,
    pub(super) socket: PathBuf,
    /// Keeps the socket directory (and so the socket path) alive as long as the slot.
    pub(super) _dir: Arc<tempfile::TempDir>,
}

/// How one process ended.
enum Ended {
    /// The pool shut down.
    Stopped,
    /// It did not boot or warm up.
    StartFailed(String),
    /// It died while serving, with the run it had.
    Died {
        reason: String,
        run: Option<ActiveRun>,
    },
}

impl Supervisor {
    pub(super) async fn main(mut self) {
        let worker = self.id;
        // Consecutive failures; a run that succeeds starts the count over.
        let mut failures = 0u32;
        let mut first = true;
        loop {
            let succeeded = Arc::new(AtomicBool::new(false));
            let (reason, run, starting) = match self.incarnation(&succeeded).await {
                Ended::Stopped => return,
                Ended::StartFailed(reason) => (reason, None, true),
                Ended::Died { reason, run } => (reason, run, false),
            };
            if succeeded.load(Ordering::Acquire) {
                failures = 0;
            }
            failures += 1;
            let max = self.settings.max_restarts;
            // A worker that cannot even start the first time is excluded at once (a broken
            // GPU or model does not get better by retrying); one that served is restarted.
            let restart = !(first && starting) && failures <= max && !self.shared.is_closed();
            first = false;
            self.shared
                .process_down(worker, reason.clone(), restart, starting);
            if let Some(run) = run {
                fail_run(run, GenerateError::Failed(format!("GPU worker {reason}")));
            }
            if !restart {
                if starting && failures == 1 {
                    tracing::error!(worker, %reason, "worker process failed to start; excluded from service");
                } else {
                    tracing::error!(worker, %reason, failures, "worker process failed too often; excluded from service");
                }
                self.refuse_until_shutdown().await;
                return;
            }
            let delay = backoff(&self.settings, failures);
            tracing::warn!(worker, %reason, attempt = failures, ?delay, "worker process down; restarting after back-off");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = next_shutdown(&mut self.commands) => {
                    self.shared.process_stopped(worker);
                    return;
                }
            }
        }
    }

    /// Runs one process from spawn to exit.
    async fn incarnation(&mut self, succeeded: &Arc<AtomicBool>) -> Ended {
        let worker = self.id;
        let launch = Launch {
            worker_id: worker,
            socket: &self.socket,
            device: self.device,
            visible_device: self
                .device
                .map(|d| visible_device(d, self.settings.server_visible.as_deref())),
        };
        let child = match Child::spawn(&self.settings.command, launch).await {
            Ok(child) => child,
            Err(e) => return Ended::StartFailed(format!("could not be started: {e}")),
        };
        let pid = child.pid;
        self.shared.process_spawned(worker, pid);
        tracing::info!(worker, pid, "worker process started");

        let limit = self.settings.start_timeout;
        let start = tokio::time::timeout(
            limit,
            start_up(&self.listener, &self.settings, worker, &child),
        );
        tokio::pin!(start);
        let started = loop {
            tokio::select! {
                outcome = &mut start => break match outcome {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("did not boot and warm up within {limit:?}")),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Run(run)) => refuse(*run, "the worker is starting"),
                    Some(Command::Shutdown) | None => {
                        child.kill_and_wait().await;
                        self.shared.process_stopped(worker);
                        return Ended::Stopped;
                    }
                },
            }
        };
        let (reader, mut writer, generator) = match started {
            Ok(parts) => parts,
            Err(reason) => {
                // A process that broke off its start usually died: say how.
                let ended = match tokio::time::timeout(EXIT_GRACE, child.exited()).await {
                    Ok(ended) => ended,
                    Err(_) => child.kill_and_wait().await,
                };
                return Ended::StartFailed(format!("process {pid} {reason} ({ended})"));
            }
        };
        tracing::info!(worker, pid, generator, "worker process ready");
        self.shared.process_ready(worker, generator);

        let current: Current = Arc::default();
        let mut relay = tokio::spawn(relay(
            reader,
            current.clone(),
            self.shared.clone(),
            worker,
            succeeded.clone(),
        ));
        let mut next_run_id = 0u64;
        let mut broken: Option<String> = None;
        loop {
            let run_active = lock(&current).is_some();
            tokio::select! {
                ended = child.exited() => {
                    relay.abort();
                    let run = lock(&current).take();
                    let reason = match broken {
                        Some(why) => format!("process {pid} {why} ({ended})"),
                        None => format!("process {pid} {ended}"),
                    };
                    return Ended::Died { reason, run };
                }
                stopped = &mut relay => {
                    let why = match stopped {
                        Ok(crate::ipc::IpcError::Closed) => "closed its connection".to_owned(),
                        Ok(e) => e.to_string(),
                        Err(e) => format!("lost its reader: {e}"),
                    };
                    // End of stream usually means the process is dying; give it a moment.
                    let ended = match tokio::time::timeout(EXIT_GRACE, child.exited()).await {
                        Ok(ended) => ended,
                        Err(_) => child.kill_and_wait().await,
                    };
                    let run = lock(&current).take();
                    return Ended::Died { reason: format!("process {pid} {why} ({ended})"), run };
                }
                command = self.commands.recv() => match command {
                    Some(Command::Run(run)) => {
                        next_run_id += 1;
                        if let Err(why) = start_run(&mut writer, &current, &self.shared, worker, next_run_id, *run).await {
                            tracing::error!(worker, pid, %why, "worker process does not take runs; killing it");
                            broken = Some(why);
                            child.kill();
                        }
                    }
                    Some(Command::Shutdown) | None => {
                        stop(&child, &mut writer, &mut relay, &self.settings).await;
                        if let Some(run) = lock(&current).take() {
                            fail_run(run, GenerateError::Cancelled);
                        }
                        self.shared.process_stopped(worker);
                        return Ended::Stopped;
                    }
                },
                () = tokio::time::sleep(CANCEL_POLL), if run_active => {
                    let cancel = {
                        let mut guard = lock(&current);
                        match guard.as_mut() {
                            Some(run) if !run.cancel_sent && run.cancel.is_cancelled() => {
                                run.cancel_sent = true;
                                Some(run.run_id)
                            }
                            _ => None,
                        }
                    };
                    if let Some(run_id) = cancel
                        && let Err(why) = send(&mut writer, &ToWorker::Cancel { run_id }).await
                    {
                        tracing::error!(worker, pid, %why, "cannot cancel a run; killing the worker process");
                        broken = Some(why);
                        child.kill();
                    }
                }
            }
        }
    }

    /// Out of service for good: answers until the pool shuts down.
    async fn refuse_until_shutdown(&mut self) {
        next_shutdown(&mut self.commands).await;
    }
}

/// Accepts the worker's connection (from its pid only), says `Init`, and waits for boot and
/// warm-up. Returns the socket halves and the generator's name, or why not.
async fn start_up(
    listener: &UnixListener,
    settings: &Settings,
    worker: u32,
    child: &Child,
) -> Result<(OwnedReadHalf, OwnedWriteHalf, String), String> {
    let stream = loop {
        let (stream, _) = listener
            .accept()
            .await
            .map_err(|e| format!("could not be accepted: {e}"))?;
        match stream.peer_cred() {
            Ok(cred) if cred.pid() == Some(child.pid as i32) => break stream,
            other => {
                // Only our own child may talk to us (the socket's directory is private too).
                tracing::warn!(worker, peer = ?other.map(|c| c.pid()), "refused a connection from another process");
            }
        }
    };
    ipc::tune_socket(&stream);
    let (mut reader, mut writer) = stream.into_split();
    let closed = |e: crate::ipc::IpcError| format!("broke off its start: {e}");
    match receive(&mut reader).await.map_err(closed)? {
        FromWorker::Hello { version, .. } if version == ipc::PROTOCOL_VERSION => {}
        FromWorker::Hello { version, .. } => {
            return Err(format!(
                "speaks IPC version {version}, the pool {}",
                ipc::PROTOCOL_VERSION
            ));
        }
        other => return Err(format!("said {other:?} instead of hello")),
    }
    let init = ToWorker::Init(Box::new(Init {
        worker_id: worker,
        frames_as_i420: settings.frames_as_i420,
        warmup: settings.warmup.clone(),
        payload: settings.payload.clone(),
    }));
    send(&mut writer, &init).await?;
    let generator = match receive(&mut reader).await.map_err(closed)? {
        FromWorker::Booted { generator } => generator,
        FromWorker::BootFailed { error } => return Err(format!("failed to boot: {error}")),
        other => return Err(format!("said {other:?} instead of booted")),
    };
    if settings.warmup.is_some() {
        match receive(&mut reader).await.map_err(closed)? {
            FromWorker::Warmed { error: None } => {}
            FromWorker::Warmed { error: Some(e) } => {
                return Err(format!("failed its warm-up: {e}"));
            }
            other => return Err(format!("said {other:?} instead of warmed")),
        }
    }
    Ok((reader, writer, generator))
}

async fn receive(reader: &mut OwnedReadHalf) -> Result<FromWorker, crate::ipc::IpcError> {
    let (tag, body) = ipc::read_message(reader).await?;
    ipc::decode_from_worker(tag, body)
}

async fn send(writer: &mut OwnedWriteHalf, message: &ToWorker) -> Result<(), String> {
    let bytes = ipc::encode_to_worker(message).map_err(|e| e.to_string())?;
    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("could not be written to: {e}")),
        Err(_) => Err(format!("did not read its socket for {WRITE_TIMEOUT:?}")),
    }
}

/// Makes `run` the worker's current run and sends it. A request that cannot be encoded
/// fails on its own; an error returned means the worker cannot be talked to.
async fn start_run(
    writer: &mut OwnedWriteHalf,
    current: &Current,
    shared: &Shared,
    worker: u32,
    run_id: u64,
    run: RunCommand,
) -> Result<(), String> {
    let RunCommand {
        request,
        cancel,
        events,
        span,
    } = run;
    let message = ToWorker::Run {
        run_id,
        request: Box::new(request),
    };
    let bytes = match ipc::encode_to_worker(&message) {
        Ok(bytes) => bytes,
        Err(e) => {
            shared.run_finished(worker, false);
            let error = GenerateError::InvalidRequest(format!("cannot be sent to the worker: {e}"));
            tokio::spawn(
                async move { deliver(&events, &cancel, RunEvent::Done(Err(error))).await },
            );
            return Ok(());
        }
    };
    *lock(current) = Some(ActiveRun {
        run_id,
        events,
        cancel,
        span,
        batch: Vec::new(),
        cancel_sent: false,
    });
    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("could not be written to: {e}")),
        Err(_) => Err(format!("did not read its socket for {WRITE_TIMEOUT:?}")),
    }
}

/// Graceful stop: ask, wait `stop_timeout`, then kill. The relay delivers the `Done` the
/// worker sends for a run it cancels on the way out.
async fn stop(
    child: &Child,
    writer: &mut OwnedWriteHalf,
    relay: &mut tokio::task::JoinHandle<crate::ipc::IpcError>,
    settings: &Settings,
) {
    let _ = send(writer, &ToWorker::Shutdown).await;
    if tokio::time::timeout(settings.stop_timeout, child.exited())
        .await
        .is_err()
    {
        tracing::warn!(pid = child.pid, timeout = ?settings.stop_timeout, "worker process did not stop; killing it");
        child.kill_and_wait().await;
    }
    if tokio::time::timeout(EXIT_GRACE, &mut *relay).await.is_err() {
        relay.abort();
    }
}

/// Ends a run the worker will never finish.
fn fail_run(run: ActiveRun, error: GenerateError) {
    run.span
        .in_scope(|| tracing::warn!(error = %error, "run ended by the pool"));
    // Delivery may wait for a slow consumer; the supervisor must not.
    tokio::spawn(
        async move { deliver(&run.events, &run.cancel, RunEvent::Done(Err(error))).await },
    );
}

/// A run sent to a worker that cannot take it (only possible in a race with its death).
fn refuse(run: RunCommand, why: &str) {
    let error = GenerateError::Failed(format!("GPU worker unavailable: {why}"));
    tokio::spawn(
        async move { deliver(&run.events, &run.cancel, RunEvent::Done(Err(error))).await },
    );
}

/// Waits for `Shutdown` (or the pool's end), refusing runs meanwhile.
async fn next_shutdown(commands: &mut mpsc::UnboundedReceiver<Command>) {
    while let Some(command) = commands.recv().await {
        match command {
            Command::Run(run) => refuse(*run, "the worker is not running"),
            Command::Shutdown => return,
        }
    }
}

/// `restart_backoff` doubled per consecutive failure, at most `restart_backoff_max`.
pub(super) fn backoff(settings: &Settings, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(30);
    settings
        .restart_backoff
        .saturating_mul(1u32 << doublings)
        .min(settings.restart_backoff_max)
}
