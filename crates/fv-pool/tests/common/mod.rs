//! Helpers shared by the pool tests: requests, a probe generator that counts its steps, and a
//! guard against hangs (never a timing assertion).
#![allow(dead_code, clippy::unwrap_used)]

use fv_core::{
    CancelToken, GenerateError, GenerationRequest, GenerationResult, GenerationSink, Generator,
    MockGenerator,
};
use fv_pool::{PoolConfig, QueuePosition, RunEvent, RunHandle};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Upper bound for anything a test waits on, so a bug hangs nothing.
pub const GUARD: Duration = Duration::from_secs(10);

pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: not done within the {GUARD:?} test guard"),
    }
}

pub fn request(prompt: &str, steps: u32, frames: u32) -> GenerationRequest {
    GenerationRequest {
        session_id: "test".into(),
        seed: 7,
        num_inference_steps: steps,
        width: 16,
        height: 16,
        num_frames: frames,
        ..GenerationRequest::new(prompt)
    }
}

pub fn config() -> PoolConfig {
    PoolConfig {
        acquire_timeout: GUARD,
        ..PoolConfig::default()
    }
}

pub fn updates() -> (
    mpsc::UnboundedSender<QueuePosition>,
    mpsc::UnboundedReceiver<QueuePosition>,
) {
    mpsc::unbounded_channel()
}

pub fn pos(position: usize, queue_depth: usize) -> QueuePosition {
    QueuePosition {
        position,
        queue_depth,
    }
}

pub async fn next_update(rx: &mut mpsc::UnboundedReceiver<QueuePosition>) -> QueuePosition {
    within("queue update", rx.recv())
        .await
        .expect("update channel closed before the expected update")
}

pub async fn drain(handle: &mut RunHandle) -> Vec<RunEvent> {
    let mut events = Vec::new();
    while let Some(event) = within("run event", handle.next()).await {
        events.push(event);
    }
    events
}

/// Waits for the `Step { step: n, .. }` event, returning the events seen up to it.
pub async fn until_step(handle: &mut RunHandle, n: u32) -> Vec<RunEvent> {
    let mut seen = Vec::new();
    loop {
        let event = within("step event", handle.next())
            .await
            .expect("run ended before the awaited step");
        let reached = matches!(event, RunEvent::Step { step, .. } if step == n);
        seen.push(event);
        if reached {
            return seen;
        }
    }
}

/// A generator that counts the steps it takes. Prompt `panic` panics; prompt `warmup` is the
/// warm-up request, which can be held on a gate and made to fail or panic.
pub struct Probe {
    pub steps_taken: Arc<AtomicU32>,
    pub step_time: Duration,
    pub warmup_gate: Option<std_mpsc::Receiver<()>>,
    pub warmup_outcome: WarmupOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmupOutcome {
    Pass,
    Fail,
    Panic,
}

impl Probe {
    pub fn new(step_time: Duration) -> (Self, Arc<AtomicU32>) {
        let steps = Arc::new(AtomicU32::new(0));
        (
            Self {
                steps_taken: steps.clone(),
                step_time,
                warmup_gate: None,
                warmup_outcome: WarmupOutcome::Pass,
            },
            steps,
        )
    }

    pub fn steps(counter: &AtomicU32) -> u32 {
        counter.load(Ordering::SeqCst)
    }
}

impl Generator for Probe {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        match request.prompt.as_str() {
            "warmup" => {
                if let Some(gate) = &self.warmup_gate {
                    // Blocks until the test opens the gate (or drops it).
                    let _ = gate.recv();
                }
                if cancel.is_cancelled() {
                    return Err(GenerateError::Cancelled);
                }
                return match self.warmup_outcome {
                    WarmupOutcome::Pass => Ok(GenerationResult::default()),
                    WarmupOutcome::Fail => Err(GenerateError::Failed("warm-up broke".into())),
                    WarmupOutcome::Panic => panic!("warm-up exploded"),
                };
            }
            "panic" => panic!("boom on segment {}", request.segment_idx),
            _ => {}
        }
        let total = request.num_inference_steps;
        for step in 1..=total {
            if cancel.is_cancelled() {
                return Err(GenerateError::Cancelled);
            }
            if !self.step_time.is_zero() {
                std::thread::sleep(self.step_time);
            }
            self.steps_taken.fetch_add(1, Ordering::SeqCst);
            sink.step(step, total);
        }
        Ok(GenerationResult {
            frames: vec![MockGenerator::frame(request, 0)],
            state: None,
            audio: None,
        })
    }

    fn name(&self) -> &str {
        "probe"
    }
}
