//! [`MockGenerator`]: a deterministic, GPU-free generator (FastVideo mock's moving gradient)
//! with configurable speed and frame batches, for tests, demos and the mock server.

use crate::{
    CancelToken, ContinuationState, Frame, GenerateError, GenerationRequest, GenerationResult,
    GenerationSink, Generator,
};
use std::time::Duration;

/// Settings of [`MockGenerator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockGeneratorConfig {
    /// Simulated generation time per segment, spread evenly over the denoising steps.
    pub segment_time: Duration,
    /// Frames are handed to the sink in batches of this many (at least 1), the way a model
    /// that decodes its latents in chunks would.
    pub frame_batch: usize,
}

impl Default for MockGeneratorConfig {
    fn default() -> Self {
        Self {
            segment_time: Duration::ZERO,
            frame_batch: 12,
        }
    }
}

/// A GPU-free generator: a horizontal RGB gradient that shifts every frame, deterministic per
/// seed and segment. It honours steps and cancellation exactly like a real model would, so the
/// whole server can be exercised without a GPU.
#[derive(Debug, Clone, Default)]
pub struct MockGenerator {
    config: MockGeneratorConfig,
    extra_steps: u32,
}

impl MockGenerator {
    pub fn new(config: MockGeneratorConfig) -> Self {
        Self {
            config,
            extra_steps: 0,
        }
    }

    /// Reports `steps` more steps after the request's own, numbered on from them, the way a
    /// model with a second stage does (the LTX-2 two-stage preset's refine), so a server
    /// configured for it announces and reports the same count on the mock.
    pub fn with_extra_steps(mut self, steps: u32) -> Self {
        self.extra_steps = steps;
        self
    }

    /// Frame `index` (0-based, within the segment) of the segment `request` describes.
    pub fn frame(request: &GenerationRequest, index: u32) -> Frame {
        let width = request.width.max(16);
        let height = request.height.max(16);
        let frames_per_segment = u64::from(request.num_frames.max(1));
        // Continue the motion across segments so a stream looks like one clip.
        let global = u64::from(request.segment_idx) * frames_per_segment + u64::from(index);
        let base = (17 * global as i128 + 3 * i128::from(request.seed)).rem_euclid(256) as u32;
        let end = (base + 64) % 256;
        let row: Vec<u8> = (0..width)
            .map(|x| {
                if width == 1 {
                    return base as u8;
                }
                let t = f64::from(x) / f64::from(width - 1);
                (f64::from(base) + (f64::from(end) - f64::from(base)) * t) as u8
            })
            .collect();
        let w = width as usize;
        let mut line = Vec::with_capacity(w * 3);
        for x in 0..w {
            line.push(row[x]);
            line.push(row[(x + w - 8 % w) % w]);
            line.push(row[(x + w - 16 % w) % w]);
        }
        let rgb = line.repeat(height as usize);
        // Sizes are clamped above and the buffer is built to match, so this cannot fail.
        Frame::from_rgb(width, height, rgb).expect("buffer built to match the clamped size")
    }
}

impl Generator for MockGenerator {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        let total = request.num_inference_steps.max(1) + self.extra_steps;
        let per_step = self.config.segment_time / total;
        for step in 1..=total {
            if cancel.is_cancelled() {
                return Err(GenerateError::Cancelled);
            }
            if !per_step.is_zero() {
                std::thread::sleep(per_step);
            }
            sink.step(step, total);
        }
        let n = request.num_frames.max(1);
        let batch = self.config.frame_batch.max(1);
        let mut pending = Vec::with_capacity(batch);
        for i in 0..n {
            if cancel.is_cancelled() {
                return Err(GenerateError::Cancelled);
            }
            pending.push(Self::frame(request, i));
            if pending.len() == batch {
                sink.frames(std::mem::take(&mut pending));
            }
        }
        let mut payload = serde_json::Map::new();
        payload.insert("schema_version".into(), 1.into());
        payload.insert("segment_index".into(), request.segment_idx.into());
        payload.insert("source_prompt".into(), request.prompt.clone().into());
        Ok(GenerationResult {
            frames: pending,
            state: Some(ContinuationState {
                kind: "ltx2.v1".into(),
                payload,
            }),
            audio: None,
        })
    }

    fn name(&self) -> &str {
        "mock"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CollectingSink;

    fn request(segment_idx: u32) -> GenerationRequest {
        GenerationRequest {
            session_id: "s".into(),
            segment_idx,
            num_inference_steps: 3,
            width: 32,
            height: 16,
            num_frames: 5,
            ..GenerationRequest::new("a cat")
        }
    }

    #[test]
    fn reports_every_step_and_every_frame_in_batches() {
        let mut g = MockGenerator::new(MockGeneratorConfig {
            segment_time: Duration::ZERO,
            frame_batch: 2,
        });
        let mut sink = CollectingSink::default();
        let result = g
            .generate(&request(0), &mut sink, &CancelToken::new())
            .expect("mock never fails");
        assert_eq!(sink.steps, vec![(1, 3), (2, 3), (3, 3)]);
        assert_eq!(sink.frames.len(), 4, "two full batches through the sink");
        assert_eq!(
            result.frames.len(),
            1,
            "the remainder comes with the result"
        );
        let state = result.state.expect("mock returns state");
        assert_eq!(state.kind, "ltx2.v1");
        assert_eq!(state.payload["segment_index"], 0);
        assert_eq!(state.payload["source_prompt"], "a cat");
    }

    #[test]
    fn extra_steps_are_numbered_on_after_the_requests() {
        let mut g = MockGenerator::default().with_extra_steps(2);
        let mut sink = CollectingSink::default();
        g.generate(&request(0), &mut sink, &CancelToken::new())
            .expect("mock never fails");
        assert_eq!(sink.steps, vec![(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]);
    }

    #[test]
    fn gradient_matches_the_reference_formula() {
        let req = request(0);
        let f = MockGenerator::frame(&req, 0);
        // base = 3 * 1024 mod 256 = 0; row = linspace(0, 64, 32)
        assert_eq!(f.rgb()[0], 0);
        let last_r = f.rgb()[(32 - 1) * 3];
        assert_eq!(last_r, 64);
        // G is the row rolled by 8: G[8] == R[0]
        assert_eq!(f.rgb()[8 * 3 + 1], f.rgb()[0]);
        // every row is the same
        assert_eq!(&f.rgb()[..96], &f.rgb()[96..192]);
        // frames move and segments continue the motion
        assert_ne!(MockGenerator::frame(&req, 1), f);
        assert_eq!(
            MockGenerator::frame(&request(1), 0),
            MockGenerator::frame(&req, 5)
        );
    }

    #[test]
    fn stops_at_the_next_step_when_cancelled() {
        let mut g = MockGenerator::default();
        let cancel = CancelToken::new();
        cancel.cancel();
        let mut sink = CollectingSink::default();
        let err = g
            .generate(&request(0), &mut sink, &cancel)
            .expect_err("a cancelled token stops generation");
        assert_eq!(err, GenerateError::Cancelled);
        assert!(sink.steps.is_empty());
    }

    #[test]
    fn clamps_tiny_sizes() {
        let mut req = request(0);
        req.width = 1;
        req.height = 0;
        let f = MockGenerator::frame(&req, 0);
        assert_eq!((f.width(), f.height()), (16, 16));
    }
}
