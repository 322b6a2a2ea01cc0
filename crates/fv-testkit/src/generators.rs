//! Generators with test hooks, built on [`fv_core::MockGenerator`].

use fv_core::{
    CancelToken, GenerateError, GenerationRequest, GenerationResult, GenerationSink, Generator,
    MockGenerator, MockGeneratorConfig,
};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Everything the test wants to know about the requests a generator saw.
#[derive(Debug, Default)]
pub struct Observed {
    pub requests: Mutex<Vec<GenerationRequest>>,
    /// Whether `image_path` existed on disk when the request ran.
    pub image_existed: Mutex<Vec<bool>>,
    /// Denoising steps actually executed, over all requests.
    pub steps: AtomicU32,
    /// Segments that ended with `Cancelled`.
    pub cancelled: AtomicU32,
    /// For [`Behaviour::GatedFrames`]: opened by the test.
    gate: (Mutex<bool>, Condvar),
}

impl Observed {
    pub fn requests(&self) -> Vec<GenerationRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Lets a [`Behaviour::GatedFrames`] generator go on past its first frame batch.
    pub fn open_gate(&self) {
        if let Ok(mut open) = self.gate.0.lock() {
            *open = true;
        }
        self.gate.1.notify_all();
    }

    /// Waits up to `limit` for the gate; `false` when it stayed shut.
    fn wait_gate(&self, limit: Duration) -> bool {
        let Ok(guard) = self.gate.0.lock() else {
            return false;
        };
        match self.gate.1.wait_timeout_while(guard, limit, |open| !*open) {
            Ok((open, _)) => *open,
            Err(_) => false,
        }
    }
}

/// What [`TestGenerator`] does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The mock gradient.
    Normal,
    /// Fails every request whose prompt contains `"fail"`.
    FailOnPromptFail,
    /// Returns zero frames.
    NoFrames,
    /// Hands over the first frame batch, then blocks (up to 10 s) until the test calls
    /// [`Observed::open_gate`]; fails the segment if the gate never opens. Proves that media
    /// leaves the server before generation has finished.
    GatedFrames,
    /// For prompts containing `"badframe"`: first hands over a frame of the wrong size
    /// (the encoder rejects it mid-segment), then keeps generating normally.
    BadFrameOnPromptBadframe,
    /// Random pixels: incompressible, so segments are megabytes of H.264.
    Noise,
}

/// A [`MockGenerator`] that records what it sees and can be told to misbehave.
#[derive(Debug)]
pub struct TestGenerator {
    inner: MockGenerator,
    step_time: Duration,
    behaviour: Behaviour,
    observed: Arc<Observed>,
}

impl TestGenerator {
    pub fn new(step_time: Duration, behaviour: Behaviour, observed: Arc<Observed>) -> Self {
        Self {
            inner: MockGenerator::new(MockGeneratorConfig {
                segment_time: Duration::ZERO,
                frame_batch: 4,
            }),
            step_time,
            behaviour,
            observed,
        }
    }
}

struct CountingSink<'a> {
    inner: &'a mut dyn GenerationSink,
    observed: &'a Observed,
    step_time: Duration,
    gated: bool,
    batches: u32,
    gate_failed: bool,
}

impl GenerationSink for CountingSink<'_> {
    fn step(&mut self, step: u32, total: u32) {
        // Simulate the step's work before reporting it, like a model would.
        std::thread::sleep(self.step_time);
        self.observed.steps.fetch_add(1, Ordering::SeqCst);
        self.inner.step(step, total);
    }

    fn frames(&mut self, frames: Vec<fv_core::Frame>) {
        if self.gated && self.batches == 1 && !self.observed.wait_gate(Duration::from_secs(10)) {
            self.gate_failed = true;
        }
        self.batches += 1;
        self.inner.frames(frames);
    }
}

impl Generator for TestGenerator {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        if let Ok(mut r) = self.observed.requests.lock() {
            r.push(request.clone());
        }
        let existed = request.image_path.as_ref().is_some_and(|p| p.exists());
        if let Ok(mut e) = self.observed.image_existed.lock() {
            e.push(existed);
        }
        if self.behaviour == Behaviour::FailOnPromptFail && request.prompt.contains("fail") {
            return Err(GenerateError::Failed("the test asked for a failure".into()));
        }
        if self.behaviour == Behaviour::BadFrameOnPromptBadframe
            && request.prompt.contains("badframe")
        {
            let w = request.width.max(16) / 2;
            let h = request.height.max(16) / 2;
            if let Ok(small) = fv_core::Frame::from_rgb(w, h, vec![0; (w * h * 3) as usize]) {
                sink.frames(vec![small]);
            }
        }
        if self.behaviour == Behaviour::Noise {
            let total = request.num_inference_steps.max(1);
            for step in 1..=total {
                if cancel.is_cancelled() {
                    return Err(GenerateError::Cancelled);
                }
                sink.step(step, total);
            }
            let (w, h) = (request.width.max(16), request.height.max(16));
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(request.segment_idx);
            for _ in 0..request.num_frames.max(1) {
                if cancel.is_cancelled() {
                    return Err(GenerateError::Cancelled);
                }
                let rgb = (0..w * h * 3)
                    .map(|_| {
                        // xorshift64: cheap, deterministic noise.
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                let frame = fv_core::Frame::from_rgb(w, h, rgb)
                    .map_err(|e| GenerateError::Failed(e.to_string()))?;
                sink.frames(vec![frame]);
            }
            return Ok(GenerationResult::default());
        }
        if self.behaviour == Behaviour::NoFrames {
            for step in 1..=request.num_inference_steps.max(1) {
                sink.step(step, request.num_inference_steps.max(1));
            }
            return Ok(GenerationResult::default());
        }
        let mut counting = CountingSink {
            inner: sink,
            observed: &self.observed,
            step_time: self.step_time,
            gated: self.behaviour == Behaviour::GatedFrames,
            batches: 0,
            gate_failed: false,
        };
        let result = self.inner.generate(request, &mut counting, cancel);
        if counting.gate_failed {
            return Err(GenerateError::Failed(
                "the gate was never opened: no media reached the client early".into(),
            ));
        }
        if result == Err(GenerateError::Cancelled) {
            self.observed.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        result
    }

    fn name(&self) -> &str {
        "test"
    }
}

/// `n` test generators sharing one [`Observed`].
pub fn test_generators(
    n: usize,
    step_time: Duration,
    behaviour: Behaviour,
) -> (Vec<Box<dyn Generator>>, Arc<Observed>) {
    let observed = Arc::new(Observed::default());
    let gens = (0..n)
        .map(|_| {
            Box::new(TestGenerator::new(step_time, behaviour, observed.clone()))
                as Box<dyn Generator>
        })
        .collect();
    (gens, observed)
}
