//! Driving a `Generator` by hand, the way the pool's worker threads do: `MockGenerator` with a
//! sink that prints progress, continuation from one segment to the next, and cancellation from
//! another thread.
//!
//! Run with `cargo run -p fv-core --example mock_generator`; it finishes in well under a second.

use fv_core::{
    CancelToken, Frame, GenerateError, GenerationRequest, GenerationSink, Generator, MockGenerator,
    MockGeneratorConfig,
};
use std::time::Duration;

/// Prints every step and batch; counts frames.
#[derive(Debug, Default)]
struct PrintingSink {
    frames: usize,
}

impl GenerationSink for PrintingSink {
    fn step(&mut self, step: u32, total: u32) {
        println!("  step {step}/{total}");
    }

    fn frames(&mut self, frames: Vec<Frame>) {
        self.frames += frames.len();
        println!(
            "  batch of {} frames ({} so far)",
            frames.len(),
            self.frames
        );
    }
}

fn main() -> Result<(), GenerateError> {
    let mut generator = MockGenerator::new(MockGeneratorConfig {
        segment_time: Duration::from_millis(40),
        frame_batch: 8,
    });
    let mut request = GenerationRequest {
        session_id: "example".into(),
        seed: 42,
        num_inference_steps: 4,
        width: 64,
        height: 32,
        num_frames: 20,
        ..GenerationRequest::new("a red fox in the snow")
    };

    // Two segments; each feeds its continuation state into the next request.
    for segment_idx in 0..2 {
        request.segment_idx = segment_idx;
        println!("segment {segment_idx} on {:?}:", generator.name());
        let mut sink = PrintingSink::default();
        let result = generator.generate(&request, &mut sink, &CancelToken::new())?;
        // Frames the generator kept back count as the last batch.
        let total = sink.frames + result.frames.len();
        let state = result.state.as_ref().map(|s| {
            let payload = serde_json::Value::Object(s.payload.clone());
            format!("{} {payload}", s.kind)
        });
        println!(
            "  returned {} frames, {total} in all; state: {}",
            result.frames.len(),
            state.as_deref().unwrap_or("none")
        );
        request.state = result.state;
    }

    // Cancellation: the token is shared with another thread, which fires it mid-run. The
    // generator notices at its next step and returns `Cancelled`.
    let cancel = CancelToken::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(15));
            cancel.cancel();
        })
    };
    println!("segment 2, cancelled after ~15 ms:");
    let outcome = generator.generate(&request, &mut PrintingSink::default(), &cancel);
    println!("  outcome: {outcome:?}");
    if canceller.join().is_err() {
        return Err(GenerateError::Failed(
            "the cancelling thread panicked".into(),
        ));
    }
    Ok(())
}
