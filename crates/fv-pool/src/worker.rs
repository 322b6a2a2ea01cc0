//! The worker thread: owns one generator, runs the optional warm-up, then serves run commands
//! one at a time until told to stop.

use crate::RunEvent;
use crate::state::Shared;
use fv_core::{
    CancelToken, Frame, GenerateError, GenerationRequest, GenerationResult, GenerationSink,
    Generator,
};
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// How often a generator blocked on a full event channel re-checks its cancel token. Only
/// matters when the consumer stopped reading; a cancelled run then frees the worker within
/// this delay instead of waiting for the consumer forever.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(10);

/// What the pool asks a worker thread to do.
#[derive(Debug)]
pub(crate) enum Command {
    Run(Box<RunCommand>),
    Shutdown,
}

#[derive(Debug)]
pub(crate) struct RunCommand {
    pub(crate) request: GenerationRequest,
    pub(crate) cancel: CancelToken,
    pub(crate) events: mpsc::Sender<RunEvent>,
    /// The caller's span (the session's), entered on the worker thread.
    pub(crate) span: tracing::Span,
}

pub(crate) struct Worker {
    pub(crate) id: u32,
    pub(crate) generator: Box<dyn Generator>,
    pub(crate) commands: std_mpsc::Receiver<Command>,
    pub(crate) shared: Arc<Shared>,
    /// A tiny current-thread runtime, used only to wait on a full event channel and on the
    /// cancel poll timer at the same time.
    pub(crate) runtime: Runtime,
    pub(crate) warmup: Option<(GenerationRequest, CancelToken)>,
}

/// Tells the pool when the thread ends, however it ends.
struct ExitGuard {
    id: u32,
    shared: Arc<Shared>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.shared.worker_exited(self.id);
    }
}

impl Worker {
    pub(crate) fn main(mut self) {
        let _exit = ExitGuard {
            id: self.id,
            shared: self.shared.clone(),
        };
        if let Some((request, cancel)) = self.warmup.take() {
            self.warm_up(&request, &cancel);
        }
        while let Ok(command) = self.commands.recv() {
            match command {
                Command::Run(run) => self.execute(*run),
                Command::Shutdown => break,
            }
        }
        tracing::debug!(worker = self.id, "GPU worker thread exiting");
    }

    fn warm_up(&mut self, request: &GenerationRequest, cancel: &CancelToken) {
        let span = tracing::info_span!("warmup", worker = self.id);
        let _entered = span.enter();
        let outcome = guarded_generate(&mut *self.generator, request, &mut DiscardSink, cancel);
        let outcome = match outcome {
            Ok(_) => {
                tracing::info!("warm-up passed");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "warm-up failed; worker excluded from service");
                Err(e.to_string())
            }
        };
        self.shared.warmup_finished(self.id, outcome);
    }

    fn execute(&mut self, run: RunCommand) {
        let RunCommand {
            request,
            cancel,
            events,
            span,
        } = run;
        let _session = span.enter();
        let generate_span = tracing::info_span!(
            "generate",
            worker = self.id,
            segment_idx = request.segment_idx
        );
        let _generate = generate_span.enter();
        let mut sink = ChannelSink {
            events: &events,
            cancel: &cancel,
            runtime: &self.runtime,
            open: true,
        };
        let result = guarded_generate(&mut *self.generator, &request, &mut sink, &cancel);
        if let Err(e) = &result {
            if *e == GenerateError::Cancelled {
                tracing::debug!("run cancelled");
            } else {
                tracing::warn!(error = %e, "run failed");
            }
        }
        // Free the worker before the last events go out: a consumer that sees `Done` may start
        // its next run immediately and must not find this one still marked running.
        self.shared.run_finished(self.id, result.is_ok());
        match result {
            Ok(mut result) => {
                let tail = std::mem::take(&mut result.frames);
                if !tail.is_empty() {
                    sink.deliver(RunEvent::Frames(tail));
                }
                sink.deliver(RunEvent::Done(Ok(result)));
            }
            Err(e) => sink.deliver(RunEvent::Done(Err(e))),
        }
    }
}

/// Runs the generator, turning a panic into [`GenerateError::Failed`].
pub(crate) fn guarded_generate(
    generator: &mut dyn Generator,
    request: &GenerationRequest,
    sink: &mut dyn GenerationSink,
    cancel: &CancelToken,
) -> Result<GenerationResult, GenerateError> {
    // The generator is only reused after a panic if it panicked inside `generate`; generators
    // must not rely on state left half-updated by an earlier call.
    match catch_unwind(AssertUnwindSafe(|| {
        generator.generate(request, sink, cancel)
    })) {
        Ok(result) => result,
        Err(payload) => {
            let message = panic_message(payload.as_ref());
            tracing::error!(panic = message, "generator panicked");
            Err(GenerateError::Failed(format!(
                "generator panicked: {message}"
            )))
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

pub(crate) struct DiscardSink;

impl GenerationSink for DiscardSink {
    fn step(&mut self, _step: u32, _total: u32) {}
    fn frames(&mut self, _frames: Vec<Frame>) {}
}

/// Forwards generator progress to the run's event channel.
struct ChannelSink<'a> {
    events: &'a mpsc::Sender<RunEvent>,
    cancel: &'a CancelToken,
    runtime: &'a Runtime,
    /// False once the receiver is gone; later events are dropped.
    open: bool,
}

enum Delivery {
    Sent,
    /// Dropped because the run is cancelled and the consumer is not keeping up.
    Dropped,
    /// The receiver is gone.
    Gone,
}

impl ChannelSink<'_> {
    fn deliver(&mut self, event: RunEvent) {
        if !self.open {
            return;
        }
        let delivery = if self.cancel.is_cancelled() {
            try_deliver(self.events, event)
        } else {
            self.runtime
                .block_on(send_unless_cancelled(self.events, event, self.cancel))
        };
        match delivery {
            Delivery::Sent | Delivery::Dropped => {}
            Delivery::Gone => {
                // Nobody listens any more: stop the generator at its next step.
                self.open = false;
                self.cancel.cancel();
            }
        }
    }
}

impl GenerationSink for ChannelSink<'_> {
    fn step(&mut self, step: u32, total: u32) {
        self.deliver(RunEvent::Step { step, total });
    }

    fn frames(&mut self, frames: Vec<Frame>) {
        if !frames.is_empty() {
            self.deliver(RunEvent::Frames(frames));
        }
    }
}

fn try_deliver(events: &mpsc::Sender<RunEvent>, event: RunEvent) -> Delivery {
    match events.try_send(event) {
        Ok(()) => Delivery::Sent,
        Err(TrySendError::Full(_)) => Delivery::Dropped,
        Err(TrySendError::Closed(_)) => Delivery::Gone,
    }
}

/// Waits for room in the channel (back-pressure on the generator), but gives up once the run
/// is cancelled so a consumer that stopped reading cannot pin the worker.
async fn send_unless_cancelled(
    events: &mpsc::Sender<RunEvent>,
    event: RunEvent,
    cancel: &CancelToken,
) -> Delivery {
    loop {
        tokio::select! {
            permit = events.reserve() => {
                return match permit {
                    Ok(permit) => {
                        permit.send(event);
                        Delivery::Sent
                    }
                    Err(_) => Delivery::Gone,
                };
            }
            () = tokio::time::sleep(CANCEL_POLL) => {
                if cancel.is_cancelled() {
                    return try_deliver(events, event);
                }
            }
        }
    }
}
