//! The worker-process side of a [`crate::SubprocessPool`]: what a binary's `worker`
//! subcommand runs.
//!
//! The pool starts the same binary (by default) with the environment variables below set,
//! and the binary calls [`run`] with a closure that builds its generator from the
//! [`WorkerInit`] (which carries the application's payload, e.g. its serialized config):
//!
//! ```no_run
//! use fv_core::{Generator, MockGenerator};
//!
//! fn main() -> std::process::ExitCode {
//!     if std::env::args().nth(1).as_deref() == Some("worker") {
//!         return fv_pool::worker_process::run(|_init| {
//!             Ok(Box::new(MockGenerator::default()) as Box<dyn Generator>)
//!         });
//!     }
//!     // ... the server, which starts a SubprocessPool with `WorkerCommand::current_exe()`
//!     std::process::ExitCode::SUCCESS
//! }
//! ```
//!
//! What [`serve`] does, in order: asks the kernel to kill this process when the parent dies
//! (`PR_SET_PDEATHSIG`, SIGKILL) and exits at once if the parent is already gone; connects to
//! the pool's socket and says hello; builds the generator; runs the warm-up the pool sent;
//! then runs one request at a time, streaming steps and frames back, stopping a run at its
//! next step when the pool cancels it. It returns when the pool says shut down, and **exits
//! the process at once when the socket closes** (the pool is gone: nobody is left to serve,
//! and exiting frees the GPU).

use crate::ipc::{self, Finished, FromWorker, IpcError, ToWorker};
use crate::worker::{DiscardSink, guarded_generate};
use fv_core::{
    CancelToken, Frame, GenerationRequest, GenerationResult, GenerationSink, Generator, PixelFormat,
};
use std::io::{BufWriter, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, PoisonError};

/// Path of the pool's Unix socket the worker connects to.
pub const ENV_SOCKET: &str = "FV_POOL_SOCKET";
/// The worker's id in the pool.
pub const ENV_WORKER_ID: &str = "FV_POOL_WORKER_ID";
/// Process id of the pool's process; the worker refuses to run under another parent.
pub const ENV_PARENT_PID: &str = "FV_POOL_PARENT_PID";
/// The pool's device index for this worker (`cuda:N` in the server's numbering), when it has
/// one. `CUDA_VISIBLE_DEVICES` is set to the matching device, so in the worker it is `cuda:0`.
pub const ENV_DEVICE: &str = "FV_POOL_DEVICE";

/// What a worker process is started with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerInit {
    /// The worker's id in the pool.
    pub worker_id: u32,
    /// The pool's device index for this worker ([`ENV_DEVICE`]). The process sees only that
    /// device (`CUDA_VISIBLE_DEVICES`), as its device 0.
    pub device: Option<u32>,
    /// The application's payload (`SubprocessConfig::payload`), e.g. a serialized config.
    pub payload: Vec<u8>,
}

/// Why a worker process stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerProcessError {
    /// The environment variables a pool sets are missing or wrong: the binary was not
    /// started by a `SubprocessPool`.
    #[error("not started by a GPU pool ({0}); the `worker` subcommand is for the server only")]
    NotAWorker(String),
    /// The parent process is already gone.
    #[error("the pool's process ({expected}) is gone")]
    ParentGone { expected: u32 },
    /// Connecting to the pool or talking to it failed.
    #[error("pool IPC: {0}")]
    Ipc(#[from] IpcError),
    /// The pool sent something out of order.
    #[error("pool protocol: {0}")]
    Protocol(String),
    /// The generator could not be built.
    #[error("cannot build the generator: {0}")]
    Boot(String),
    /// The warm-up run failed.
    #[error("warm-up failed: {0}")]
    Warmup(String),
}

/// [`serve`], logging a failure: the exit code for the worker subcommand's `main`.
pub fn run<F>(build: F) -> std::process::ExitCode
where
    F: FnOnce(&WorkerInit) -> Result<Box<dyn Generator>, String>,
{
    match serve(build) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "GPU worker process stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Serves the pool that started this process until it says shut down (see the module docs).
/// `build` makes the generator from the [`WorkerInit`]; its error is reported to the pool,
/// which excludes the worker.
pub fn serve<F>(build: F) -> Result<(), WorkerProcessError>
where
    F: FnOnce(&WorkerInit) -> Result<Box<dyn Generator>, String>,
{
    let socket = env(ENV_SOCKET)?;
    let worker_id: u32 = parse_env(ENV_WORKER_ID)?;
    let parent: u32 = parse_env(ENV_PARENT_PID)?;
    let device = match std::env::var(ENV_DEVICE) {
        Ok(v) => Some(
            v.parse()
                .map_err(|_| WorkerProcessError::NotAWorker(format!("{ENV_DEVICE}={v:?}")))?,
        ),
        Err(_) => None,
    };
    die_with_parent(parent)?;
    let span = tracing::info_span!("gpu_worker", worker = worker_id, pid = std::process::id());
    let _entered = span.enter();

    let stream = UnixStream::connect(&socket).map_err(IpcError::Io)?;
    ipc::tune_socket(&stream);
    let mut reader = stream.try_clone().map_err(IpcError::Io)?;
    let mut out = BufWriter::new(stream);
    send(
        &mut out,
        &FromWorker::Hello {
            version: ipc::PROTOCOL_VERSION,
            pid: std::process::id(),
        },
    )?;
    let init = match receive(&mut reader)? {
        ToWorker::Init(init) => *init,
        other => return Err(unexpected(&other)),
    };
    if init.worker_id != worker_id {
        return Err(WorkerProcessError::Protocol(format!(
            "pool says worker {}, environment says {worker_id}",
            init.worker_id
        )));
    }
    let info = WorkerInit {
        worker_id,
        device,
        payload: init.payload,
    };

    let mut generator = match build(&info) {
        Ok(generator) => generator,
        Err(error) => {
            // Best effort: the pool reports the error; it also sees the exit.
            let _ = send(
                &mut out,
                &FromWorker::BootFailed {
                    error: error.clone(),
                },
            );
            return Err(WorkerProcessError::Boot(error));
        }
    };
    tracing::info!(generator = generator.name(), "generator built");
    send(
        &mut out,
        &FromWorker::Booted {
            generator: generator.name().to_owned(),
        },
    )?;
    if let Some(request) = &init.warmup {
        let outcome = guarded_generate(
            &mut *generator,
            request,
            &mut DiscardSink,
            &CancelToken::new(),
        );
        let error = outcome.err().map(|e| e.to_string());
        send(
            &mut out,
            &FromWorker::Warmed {
                error: error.clone(),
            },
        )?;
        if let Some(error) = error {
            return Err(WorkerProcessError::Warmup(error));
        }
        tracing::info!("warm-up passed");
    }

    // The reader thread takes the pool's messages while a run blocks this thread: runs come
    // through the channel, cancels fire the current run's token at once.
    let current: Arc<Mutex<Option<(u64, CancelToken)>>> = Arc::default();
    let (runs, queued) = std_mpsc::channel();
    {
        let current = current.clone();
        std::thread::Builder::new()
            .name("fv-worker-ipc".into())
            .spawn(move || read_commands(reader, runs, current))
            .map_err(IpcError::Io)?;
    }
    for (run_id, request) in queued {
        let cancel = CancelToken::new();
        *current.lock().unwrap_or_else(PoisonError::into_inner) = Some((run_id, cancel.clone()));
        let outcome = execute(
            &mut *generator,
            &mut out,
            run_id,
            &request,
            &cancel,
            init.frames_as_i420,
        );
        *current.lock().unwrap_or_else(PoisonError::into_inner) = None;
        outcome?;
    }
    tracing::info!("shutting down");
    Ok(())
}

/// One run: steps and frames as they come, the result's frames, then `Done`.
fn execute(
    generator: &mut dyn Generator,
    out: &mut BufWriter<UnixStream>,
    run_id: u64,
    request: &GenerationRequest,
    cancel: &CancelToken,
    frames_as_i420: bool,
) -> Result<(), WorkerProcessError> {
    let span = tracing::info_span!("generate", run_id, segment_idx = request.segment_idx);
    let _entered = span.enter();
    let mut sink = IpcSink {
        out,
        run_id,
        frames_as_i420,
        cancel,
        failed: None,
    };
    let result = guarded_generate(generator, request, &mut sink, cancel);
    if let Some(e) = sink.failed.take() {
        return Err(e.into());
    }
    let result = result.map(
        |GenerationResult {
             frames,
             state,
             audio,
         }| {
            sink.frames(frames);
            Finished { state, audio }
        },
    );
    if let Some(e) = sink.failed.take() {
        return Err(e.into());
    }
    send(out, &FromWorker::Done { run_id, result })
}

/// Streams a run's progress to the pool.
struct IpcSink<'a> {
    out: &'a mut BufWriter<UnixStream>,
    run_id: u64,
    frames_as_i420: bool,
    cancel: &'a CancelToken,
    /// The first write error; later events are dropped and the generator is stopped.
    failed: Option<IpcError>,
}

impl IpcSink<'_> {
    fn write(&mut self, write: impl FnOnce(&mut BufWriter<UnixStream>) -> Result<(), IpcError>) {
        if self.failed.is_some() {
            return;
        }
        let written = write(self.out).and_then(|()| self.out.flush().map_err(IpcError::Io));
        if let Err(e) = written {
            self.failed = Some(e);
            self.cancel.cancel();
        }
    }
}

impl GenerationSink for IpcSink<'_> {
    fn step(&mut self, step: u32, total: u32) {
        let run_id = self.run_id;
        self.write(|out| {
            let message = ipc::encode_from_worker(&FromWorker::Step {
                run_id,
                step,
                total,
            })?;
            ipc::write_message_sync(out, &message)
        });
    }

    fn frames(&mut self, frames: Vec<Frame>) {
        let last = frames.len().saturating_sub(1);
        for (i, frame) in frames.into_iter().enumerate() {
            let frame = if self.frames_as_i420 {
                to_i420(frame)
            } else {
                frame
            };
            let run_id = self.run_id;
            self.write(|out| ipc::write_frame_sync(out, run_id, i == last, &frame));
        }
    }
}

/// RGB24 frames travel as I420: half the bytes, and exactly the planes the H.264 encoder would
/// make from them (docs/ipc.md). Odd sizes (no 4:2:0 form) travel as they are.
fn to_i420(frame: Frame) -> Frame {
    if frame.format() != PixelFormat::Rgb24 {
        return frame;
    }
    match frame
        .i420()
        .map(std::borrow::Cow::into_owned)
        .and_then(|planes| Frame::from_i420(frame.width(), frame.height(), planes))
    {
        Ok(converted) => converted,
        Err(_) => frame,
    }
}

/// The reader thread: runs go to the main thread, cancels fire the current run's token. On
/// end of stream the pool is gone, and so is this process.
fn read_commands(
    mut reader: UnixStream,
    runs: std_mpsc::Sender<(u64, Box<GenerationRequest>)>,
    current: Arc<Mutex<Option<(u64, CancelToken)>>>,
) {
    let cancel_current = |run_id: Option<u64>| {
        if let Some((id, token)) = &*current.lock().unwrap_or_else(PoisonError::into_inner)
            && run_id.is_none_or(|r| r == *id)
        {
            token.cancel();
        }
    };
    loop {
        match receive(&mut reader) {
            Ok(ToWorker::Run { run_id, request }) => {
                if runs.send((run_id, request)).is_err() {
                    return;
                }
            }
            Ok(ToWorker::Cancel { run_id }) => cancel_current(Some(run_id)),
            Ok(ToWorker::Shutdown) => {
                cancel_current(None);
                // Dropping `runs` ends the main loop once the current run returned.
                return;
            }
            Ok(other) => {
                tracing::error!(message = ?other, "unexpected message from the pool; exiting");
                std::process::exit(1);
            }
            Err(WorkerProcessError::Ipc(IpcError::Closed)) => {
                // The pool closed the socket (or died): nobody is left to serve.
                tracing::info!("pool connection closed; exiting");
                std::process::exit(0);
            }
            Err(e) => {
                tracing::error!(error = %e, "reading from the pool failed; exiting");
                std::process::exit(1);
            }
        }
    }
}

fn send(out: &mut BufWriter<UnixStream>, message: &FromWorker) -> Result<(), WorkerProcessError> {
    let bytes = ipc::encode_from_worker(message)?;
    ipc::write_message_sync(out, &bytes)?;
    out.flush().map_err(IpcError::Io)?;
    Ok(())
}

fn receive(reader: &mut UnixStream) -> Result<ToWorker, WorkerProcessError> {
    let (tag, body) = ipc::read_message_sync(reader)?;
    Ok(ipc::decode_to_worker(tag, &body)?)
}

fn unexpected(message: &ToWorker) -> WorkerProcessError {
    WorkerProcessError::Protocol(format!("unexpected message {message:?}"))
}

fn env(name: &str) -> Result<String, WorkerProcessError> {
    std::env::var(name).map_err(|_| WorkerProcessError::NotAWorker(format!("{name} is not set")))
}

fn parse_env<T: std::str::FromStr>(name: &str) -> Result<T, WorkerProcessError> {
    let value = env(name)?;
    value
        .parse()
        .map_err(|_| WorkerProcessError::NotAWorker(format!("{name}={value:?}")))
}

/// No orphans: the kernel kills this process when the thread that started it exits (the
/// pool keeps that thread alive exactly as long as this process). The parent may have died
/// between the fork and this call, so check it is still the one that started us.
fn die_with_parent(parent: u32) -> Result<(), WorkerProcessError> {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
    {
        tracing::warn!(error = %e, "cannot ask to die with the parent; relying on IPC EOF");
    }
    let current = rustix::process::getppid().map(|p| p.as_raw_nonzero().get() as u32);
    if current != Some(parent) {
        return Err(WorkerProcessError::ParentGone { expected: parent });
    }
    Ok(())
}
