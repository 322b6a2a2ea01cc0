//! The interface between video generators and the streaming server.
//!
//! `fv-core` is deliberately tiny (no tokio, no candle, no IO): model crates implement
//! [`Generator`]; the GPU pool (`fv-pool`) runs generators on its worker threads and the server
//! turns their output into a stream. Depend on this crate alone to write a model backend.
//!
//! # Main types
//!
//! * [`Generator`]: a video model. Blocking, [`Send`], one call to
//!   [`generate`](Generator::generate) per segment.
//! * [`GenerationRequest`]: everything one segment needs (prompt, seed, size, frame count,
//!   optional conditioning image and [`ContinuationState`]).
//! * [`GenerationSink`]: receives progress while a segment runs: a `step` per denoising step
//!   and decoded [`Frame`] batches. [`CollectingSink`] keeps everything (tests, whole-segment
//!   callers).
//! * [`GenerationResult`]: the frames not yet handed to the sink, the [`ContinuationState`] for
//!   the next segment, optional [`AudioTrack`].
//! * [`CancelToken`]: a shared flag the server fires when the client leaves.
//! * [`GenerateError`]: `Cancelled`, `InvalidRequest` (the request cannot be served) or
//!   `Failed` (the model broke).
//! * [`Frame`]: one video frame, RGB24 or I420 ([`PixelFormat`]), whose buffer length is
//!   checked against its size ([`FrameError`] otherwise). [`rgb_to_i420`] converts exactly as
//!   the H.264 encoder would, so a generator can hand over I420 planes (half the bytes of
//!   RGB24) and the stream stays byte-identical.
//! * [`MockGenerator`]: a deterministic, GPU-free generator with configurable speed and batch
//!   size ([`MockGeneratorConfig`]), for tests and demos.
//!
//! # The generator contract
//!
//! * `generate` is blocking and runs on a thread the pool owns, never on an async runtime
//!   thread. It may take seconds.
//! * It calls [`GenerationSink::step`] after every denoising step (1-based, with the total).
//! * It checks its [`CancelToken`] at least once per step and returns
//!   [`GenerateError::Cancelled`] once it fired, so a departed client frees the device within
//!   one step.
//! * Frames go out in order: first every batch passed to [`GenerationSink::frames`], then
//!   [`GenerationResult::frames`] as the last batch. Handing frames over early lets encoding
//!   overlap generation.
//! * A [`ContinuationState`] it returns must be accepted back in the next request's `state`
//!   (on this or another instance, possibly after a reconnect); a state it cannot use is an
//!   [`InvalidRequest`](GenerateError::InvalidRequest), not a panic.
//! * Bad input is an error, never a panic. The pool catches a panic, fails that run and keeps
//!   the same generator in service, so a generator must stay usable after a call that panicked.
//!
//! # Example
//!
//! A generator that makes black frames, driven by hand:
//!
//! ```
//! use fv_core::{
//!     CancelToken, CollectingSink, Frame, GenerateError, GenerationRequest, GenerationResult,
//!     GenerationSink, Generator,
//! };
//!
//! struct Black;
//!
//! impl Generator for Black {
//!     fn generate(
//!         &mut self,
//!         request: &GenerationRequest,
//!         sink: &mut dyn GenerationSink,
//!         cancel: &CancelToken,
//!     ) -> Result<GenerationResult, GenerateError> {
//!         for step in 1..=request.num_inference_steps {
//!             if cancel.is_cancelled() {
//!                 return Err(GenerateError::Cancelled);
//!             }
//!             sink.step(step, request.num_inference_steps);
//!         }
//!         let len = request.width as usize * request.height as usize * 3;
//!         let frames = (0..request.num_frames)
//!             .map(|_| Frame::from_rgb(request.width, request.height, vec![0; len]))
//!             .collect::<Result<Vec<_>, _>>()
//!             .map_err(|e| GenerateError::InvalidRequest(e.to_string()))?;
//!         Ok(GenerationResult { frames, ..GenerationResult::default() })
//!     }
//! }
//!
//! let request = GenerationRequest {
//!     num_inference_steps: 2,
//!     width: 8,
//!     height: 8,
//!     num_frames: 3,
//!     ..GenerationRequest::new("night")
//! };
//! let mut sink = CollectingSink::default();
//! let result = Black.generate(&request, &mut sink, &CancelToken::new())?;
//! assert_eq!(sink.steps, [(1, 2), (2, 2)]);
//! assert_eq!(result.frames.len(), 3);
//!
//! // A fired token stops the run at the next step.
//! let cancel = CancelToken::new();
//! cancel.cancel();
//! let outcome = Black.generate(&request, &mut sink, &cancel);
//! assert_eq!(outcome, Err(GenerateError::Cancelled));
//! # Ok::<(), GenerateError>(())
//! ```
//!
//! # Examples
//!
//! * `crates/fv-core/examples/mock_generator.rs` (`cargo run -p fv-core --example
//!   mock_generator`): [`MockGenerator`] driven by hand, continuation across segments, and
//!   cancellation from another thread.
//! * `crates/fv-pool/examples/custom_generator.rs` (`cargo run -p fv-pool --example
//!   custom_generator`): a model with request validation, frame batches and its own
//!   continuation state, served through the GPU pool.

mod cancel;
mod frame;
mod mock;

pub use cancel::CancelToken;
pub use frame::{Frame, FrameError, PixelFormat, rgb_to_i420};
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
///
/// Build one with [`GenerationRequest::new`] (or [`Default`]) and set what differs:
///
/// ```
/// let request = fv_core::GenerationRequest {
///     num_frames: 121,
///     ..fv_core::GenerationRequest::new("a red fox in the snow")
/// };
/// assert_eq!((request.width, request.height, request.fps), (256, 256, 24));
/// ```
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

impl GenerationRequest {
    /// A request for `prompt` with FastVideo's mock sampling defaults: 256×256, 24 frames at
    /// 24 fps, 1 step, guidance 1.0, seed 1024, segment 0, no negative prompt, image or state.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            session_id: String::new(),
            segment_idx: 0,
            prompt: prompt.into(),
            negative_prompt: None,
            seed: 1024,
            num_inference_steps: 1,
            guidance_scale: 1.0,
            width: 256,
            height: 256,
            num_frames: 24,
            fps: 24,
            image_path: None,
            state: None,
        }
    }
}

impl Default for GenerationRequest {
    /// [`GenerationRequest::new`] with an empty prompt.
    fn default() -> Self {
        Self::new("")
    }
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
