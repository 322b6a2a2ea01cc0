//! The interface between video generators and the streaming server.
//!
//! `fv-core` is deliberately tiny (no tokio, no candle): model crates implement
//! [`Generator`], the server and the pool consume it. A generator is blocking code
//! that runs on a thread the pool owns; it reports every denoising step through a
//! [`GenerationSink`], may hand over decoded frames in batches before it returns,
//! and stops at its next step once its [`CancelToken`] fires.

mod cancel;
mod frame;
mod mock;

pub use cancel::CancelToken;
pub use frame::{Frame, FrameError};
pub use mock::{MockGenerator, MockGeneratorConfig};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Opaque state a generator hands back after a segment so the next segment (possibly on
/// another server, after a reconnect) can continue from it. Wire shape: `{kind, payload}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinuationState {
    /// Schema tag, e.g. `ltx2.v1`.
    pub kind: String,
    /// Generator-specific JSON object.
    pub payload: serde_json::Map<String, serde_json::Value>,
}

/// Everything a generator needs for one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    /// Id of the session the segment belongs to (for logs and traces only).
    pub session_id: String,
    /// 0-based index of the segment within its session.
    pub segment_idx: u32,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub seed: i64,
    pub num_inference_steps: u32,
    pub guidance_scale: f64,
    pub width: u32,
    pub height: u32,
    pub num_frames: u32,
    pub fps: u32,
    /// Conditioning image persisted from `session_init_v2.initial_image`.
    pub image_path: Option<PathBuf>,
    /// State returned by the previous segment (or hydrated from the client).
    pub state: Option<ContinuationState>,
}

/// Interleaved PCM audio produced alongside the video.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioTrack {
    pub sample_rate: u32,
    pub channels: u16,
    /// Interleaved samples in [-1, 1].
    pub samples: Vec<f32>,
}

/// What a generator returns once a segment is done.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationResult {
    /// Frames not already handed to [`GenerationSink::frames`]; the consumer treats them as
    /// the last batch. A generator may deliver every frame through the sink and leave this empty.
    pub frames: Vec<Frame>,
    /// State for the next segment, if the generator supports continuation.
    pub state: Option<ContinuationState>,
    /// Audio for the segment, if the generator makes any.
    pub audio: Option<AudioTrack>,
}

/// Receives progress from a running generator. Called on the generator's thread.
pub trait GenerationSink {
    /// Denoising step `step` (1-based) of `total` has finished.
    fn step(&mut self, step: u32, total: u32);
    /// A batch of decoded frames, in order, ready to encode.
    fn frames(&mut self, frames: Vec<Frame>);
}

/// Why a generation did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// The cancel token fired; the generator stopped at a step boundary.
    #[error("generation cancelled")]
    Cancelled,
    /// The request cannot be served by this generator (bad size, missing input, ...).
    #[error("invalid generation request: {0}")]
    InvalidRequest(String),
    /// The model failed while running.
    #[error("generation failed: {0}")]
    Failed(String),
}

/// A video model. Blocking; runs on a worker thread, never on an async runtime thread.
pub trait Generator: Send {
    /// Generates one segment. Must call `sink.step` after every denoising step and must check
    /// `cancel` at least once per step, returning [`GenerateError::Cancelled`] when it fired.
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError>;

    /// Short name for logs and `/status`.
    fn name(&self) -> &str {
        "generator"
    }
}

impl<G: Generator + ?Sized> Generator for Box<G> {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        (**self).generate(request, sink, cancel)
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}

/// A sink that collects everything; handy in tests and for callers that want whole segments.
#[derive(Debug, Default)]
pub struct CollectingSink {
    pub steps: Vec<(u32, u32)>,
    pub frames: Vec<Frame>,
}

impl GenerationSink for CollectingSink {
    fn step(&mut self, step: u32, total: u32) {
        self.steps.push((step, total));
    }

    fn frames(&mut self, frames: Vec<Frame>) {
        self.frames.extend(frames);
    }
}
