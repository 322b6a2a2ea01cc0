//! Plugging your own model into the pool: implement `fv_core::Generator`, hand it to an
//! `InProcessPool`, and sessions can run segments on it.
//!
//! `FadeGenerator` below is a toy model that shows every duty of a generator:
//! * validate the request up front and fail with `InvalidRequest` (the worker stays in service);
//! * report every denoising step through the sink and check the cancel token once per step;
//! * hand decoded frames over in batches while it is still running;
//! * return the last partial batch and a `ContinuationState`, and accept that state back so the
//!   next segment continues where this one stopped (possibly on another worker or server).
//!
//! Run with `cargo run -p fv-pool --example custom_generator`; it finishes in well under a second.

use fv_core::{
    CancelToken, CollectingSink, ContinuationState, Frame, GenerateError, GenerationRequest,
    GenerationResult, GenerationSink, Generator,
};
use fv_pool::{GpuPool, InProcessPool, PoolConfig, RunEvent};
use std::time::Duration;
use tokio::sync::mpsc;

/// Schema tag of `FadeGenerator`'s continuation state. Bump it when the payload changes so an
/// old state is refused instead of misread.
const STATE_KIND: &str = "fade.v1";
/// Largest frame side accepted; bounds the memory one request can make the model allocate.
const MAX_SIDE: u32 = 4096;
/// Most frames per segment.
const MAX_FRAMES: u32 = 1024;
/// Brightness added per frame.
const FADE_STEP: u64 = 4;

/// A solid grey frame that gets brighter every frame, wrapping at 256.
#[derive(Debug)]
struct FadeGenerator {
    /// Simulated model time per denoising step.
    step_time: Duration,
    /// Frames per batch handed to the sink.
    batch: usize,
}

impl FadeGenerator {
    /// Checks everything that can be checked before any (expensive) work starts, and finds the
    /// brightness the segment starts at.
    fn start_level(request: &GenerationRequest) -> Result<u64, GenerateError> {
        let (w, h) = (request.width, request.height);
        if w == 0 || h == 0 || w > MAX_SIDE || h > MAX_SIDE {
            return Err(GenerateError::InvalidRequest(format!(
                "size {w}x{h} is outside 1..={MAX_SIDE} per side"
            )));
        }
        if w % 2 != 0 || h % 2 != 0 {
            // Like a real model whose latent grid needs even sizes.
            return Err(GenerateError::InvalidRequest(format!(
                "size {w}x{h} must be even on both sides"
            )));
        }
        if request.num_frames == 0 || request.num_frames > MAX_FRAMES {
            return Err(GenerateError::InvalidRequest(format!(
                "num_frames {} is outside 1..={MAX_FRAMES}",
                request.num_frames
            )));
        }
        match &request.state {
            // A fresh session starts from its seed.
            None => Ok(request.seed.rem_euclid(256) as u64),
            Some(state) if state.kind == STATE_KIND => state
                .payload
                .get("next_level")
                .and_then(serde_json::Value::as_u64)
                .filter(|level| *level < 256)
                .ok_or_else(|| {
                    GenerateError::InvalidRequest("fade.v1 state needs next_level in 0..256".into())
                }),
            Some(state) => Err(GenerateError::InvalidRequest(format!(
                "cannot continue from a {:?} state (expected {STATE_KIND:?})",
                state.kind
            ))),
        }
    }
}

impl Generator for FadeGenerator {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Result<GenerationResult, GenerateError> {
        let mut level = Self::start_level(request)?;

        // "Denoising": check the token before each step, report the step after it.
        let total = request.num_inference_steps.max(1);
        for step in 1..=total {
            if cancel.is_cancelled() {
                return Err(GenerateError::Cancelled);
            }
            std::thread::sleep(self.step_time);
            sink.step(step, total);
        }

        // "Decoding": frames go to the sink in batches so encoding can start early.
        let pixels = request.width as usize * request.height as usize;
        let batch_size = self.batch.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        for _ in 0..request.num_frames {
            if cancel.is_cancelled() {
                return Err(GenerateError::Cancelled);
            }
            let rgb = vec![level as u8; pixels * 3];
            let frame = Frame::from_rgb(request.width, request.height, rgb)
                .map_err(|e| GenerateError::Failed(e.to_string()))?;
            batch.push(frame);
            level = (level + FADE_STEP) % 256;
            if batch.len() == batch_size {
                sink.frames(std::mem::take(&mut batch));
            }
        }

        let mut payload = serde_json::Map::new();
        payload.insert("next_level".into(), level.into());
        payload.insert("segment_idx".into(), request.segment_idx.into());
        Ok(GenerationResult {
            // The remainder; the pool forwards it as the last `Frames` event.
            frames: batch,
            state: Some(ContinuationState {
                kind: STATE_KIND.into(),
                payload,
            }),
            audio: None,
        })
    }

    fn name(&self) -> &str {
        "fade"
    }
}

fn request(segment_idx: u32, state: Option<ContinuationState>) -> GenerationRequest {
    GenerationRequest {
        session_id: "demo".into(),
        segment_idx,
        seed: 40,
        num_inference_steps: 3,
        width: 32,
        height: 16,
        num_frames: 10,
        state,
        ..GenerationRequest::new("a slow fade")
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A generator is plain blocking code: it can be tested without the pool or a runtime.
    let mut model = FadeGenerator {
        step_time: Duration::ZERO,
        batch: 4,
    };
    let mut sink = CollectingSink::default();
    let result = model.generate(&request(0, None), &mut sink, &CancelToken::new())?;
    let state_json = match &result.state {
        Some(state) => format!("{} {}", state.kind, serde_json::to_string(&state.payload)?),
        None => "none".into(),
    };
    println!(
        "direct call: steps {:?}, {} frames through the sink + {} returned, state {state_json}",
        sink.steps,
        sink.frames.len(),
        result.frames.len(),
    );
    let cancelled = CancelToken::new();
    cancelled.cancel();
    let err = model.generate(
        &request(0, None),
        &mut CollectingSink::default(),
        &cancelled,
    );
    println!("direct call with a fired token: {err:?}");

    // Serve it through the pool. The warm-up request runs once before the worker is handed out;
    // a worker whose warm-up fails is excluded from service.
    let pool = InProcessPool::new(
        vec![Box::new(FadeGenerator {
            step_time: Duration::from_millis(20),
            batch: 4,
        })],
        PoolConfig {
            acquire_timeout: Duration::from_secs(5),
            warmup: Some(request(0, None)),
            ..PoolConfig::default()
        },
    )?;
    let ready = pool.ready().await;
    let status = pool.status();
    let worker = status.workers.first().ok_or("the pool has no worker")?;
    println!(
        "pool ready: {ready}; worker 0 runs {:?}, warm-up ok: {:?}",
        worker.generator, worker.warmup_ok
    );

    let mut lease = pool.acquire("demo", mpsc::unbounded_channel().0).await?;
    let mut state = None;
    for segment_idx in 0..2 {
        let (levels, next) = run_segment(&mut lease, request(segment_idx, state.take())).await?;
        println!("segment {segment_idx}: frame brightness {levels:?}");
        state = next;
    }

    // Bad requests fail the run, not the worker.
    let mut odd = request(2, state.clone());
    odd.width = 33;
    match run_segment(&mut lease, odd).await {
        Err(e) => println!("odd width: {e}"),
        Ok(_) => println!("odd width was accepted"),
    }
    let foreign = ContinuationState {
        kind: "ltx2.v1".into(),
        payload: serde_json::Map::new(),
    };
    match run_segment(&mut lease, request(2, Some(foreign))).await {
        Err(e) => println!("foreign state: {e}"),
        Ok(_) => println!("foreign state was accepted"),
    }
    let (levels, _) = run_segment(&mut lease, request(2, state)).await?;
    println!("segment 2 after the failures: frame brightness {levels:?}");
    drop(lease);

    let status = pool.status();
    let worker = status.workers.first().ok_or("the pool has no worker")?;
    println!(
        "worker 0: segments_run={} ready={} (warm-up and failed runs are not counted)",
        worker.segments_run, worker.ready
    );
    pool.shutdown().await;
    Ok(())
}

/// Runs one segment and returns the brightness of every frame and the continuation state.
async fn run_segment(
    lease: &mut fv_pool::Lease,
    request: GenerationRequest,
) -> Result<(Vec<u8>, Option<ContinuationState>), BoxError> {
    let mut run = lease.run(request)?;
    let mut levels = Vec::new();
    while let Some(event) = run.next().await {
        match event {
            RunEvent::Step { .. } => {}
            RunEvent::Frames(frames) => {
                levels.extend(frames.iter().filter_map(|f| f.rgb().first().copied()));
            }
            RunEvent::Done(result) => return Ok((levels, result?.state)),
            _ => {}
        }
    }
    Err("the run ended without a Done event".into())
}
