//! A worker process for fv-pool's own tests and benchmarks (`SubprocessPool` needs a binary to
//! start): serves [`MockGenerator`], or a probe whose behaviour the payload sets. Started by a
//! pool only; run by hand it says so and exits 1.
//!
//! Payload (JSON object, every key optional):
//! * `segment_ms`, `frame_batch`: the mock generator's speed and batch size (defaults 0, 12);
//! * `step_ms`: sleep this long per step (a slow model), and count steps taken into the file
//!   `steps_dir/steps-<worker id>` after each one, so a test can see where a cancel landed;
//! * `boot_ms`: take this long to build the generator;
//! * `fail_boot` / `fail_warmup`: worker ids whose boot / warm-up fails.
//!
//! Prompts with a meaning: `abort` aborts the process during the run (a crash), `exit` exits 3.

use fv_core::{
    CancelToken, GenerateError, GenerationRequest, GenerationResult, GenerationSink, Generator,
    MockGenerator, MockGeneratorConfig,
};
use fv_pool::worker_process::{self, WorkerInit};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn main() -> std::process::ExitCode {
    worker_process::run(build)
}

fn build(init: &WorkerInit) -> Result<Box<dyn Generator>, String> {
    let payload: Value = if init.payload.is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&init.payload).map_err(|e| format!("bad payload: {e}"))?
    };
    let ms = |key: &str| Duration::from_millis(payload[key].as_u64().unwrap_or(0));
    let listed = |key: &str| {
        payload[key].as_array().is_some_and(|ids| {
            ids.iter()
                .any(|id| id.as_u64() == Some(u64::from(init.worker_id)))
        })
    };
    std::thread::sleep(ms("boot_ms"));
    if listed("fail_boot") {
        return Err(format!(
            "worker {} was told to fail its boot",
            init.worker_id
        ));
    }
    let mock = MockGenerator::new(MockGeneratorConfig {
        segment_time: ms("segment_ms"),
        frame_batch: payload["frame_batch"].as_u64().unwrap_or(12) as usize,
    });
    Ok(Box::new(Probe {
        mock,
        step_time: ms("step_ms"),
        steps_file: payload["steps_dir"]
            .as_str()
            .map(|dir| PathBuf::from(dir).join(format!("steps-{}", init.worker_id))),
        steps_taken: 0,
        fail_warmup: listed("fail_warmup"),
    }))
}

struct Probe {
    mock: MockGenerator,
    step_time: Duration,
    steps_file: Option<PathBuf>,
    steps_taken: u64,
    fail_warmup: bool,
}

impl Generator for Probe {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        match request.prompt.as_str() {
            "warmup" if self.fail_warmup => {
                return Err(GenerateError::Failed("told to fail its warm-up".into()));
            }
            "abort" => std::process::abort(),
            "exit" => std::process::exit(3),
            _ => {}
        }
        if self.step_time.is_zero() {
            return self.mock.generate(request, sink, cancel);
        }
        let total = request.num_inference_steps;
        for step in 1..=total {
            if cancel.is_cancelled() {
                return Err(GenerateError::Cancelled);
            }
            std::thread::sleep(self.step_time);
            self.steps_taken += 1;
            if let Some(file) = &self.steps_file {
                std::fs::write(file, self.steps_taken.to_string())
                    .map_err(|e| GenerateError::Failed(e.to_string()))?;
            }
            sink.step(step, total);
        }
        let frames = (0..request.num_frames)
            .map(|i| MockGenerator::frame(request, i))
            .collect();
        Ok(GenerationResult {
            frames,
            ..GenerationResult::default()
        })
    }

    fn name(&self) -> &str {
        "probe"
    }
}
