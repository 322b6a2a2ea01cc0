//! Continuous streams on the tiny model: each segment continues the last through the
//! `ltx2.v1` state, in one worker (hot) or after a snapshot (hydrated anywhere).
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use fv_core::{
    CancelToken, CollectingSink, ContinuationState, Frame, GenerateError, GenerationRequest,
    GenerationResult, GenerationSink, Generator,
};
use fv_inference::pipeline::condition::preprocess_frames;
use fv_inference::pipeline::{Continuation, PipelineOptions, Refine};
use fv_inference::{Ltx2Pipeline, tiny};

fn model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tiny::write_random_model(dir.path()).unwrap();
    dir
}

fn load(dir: &tempfile::TempDir, two_stage: bool) -> Ltx2Pipeline {
    let mut opts = PipelineOptions::new().with_text_max_length(32);
    if two_stage {
        opts = opts.with_refine(Refine::streaming());
    }
    Ltx2Pipeline::load_with_options(dir.path(), &Device::Cpu, &opts).unwrap()
}

fn request(segment: u32, state: Option<ContinuationState>, two_stage: bool) -> GenerationRequest {
    let side = if two_stage { 128 } else { 64 };
    GenerationRequest {
        session_id: "continuity".into(),
        segment_idx: segment,
        prompt: "waves crash against the rocks".into(),
        negative_prompt: None,
        seed: 40 + i64::from(segment),
        num_inference_steps: 2,
        guidance_scale: 1.0,
        width: side,
        height: side,
        num_frames: 17,
        fps: 24,
        image_path: None,
        state,
    }
}

fn run(p: &mut Ltx2Pipeline, r: &GenerationRequest) -> (Vec<Frame>, GenerationResult) {
    let mut sink = CollectingSink::default();
    let mut result = p.generate(r, &mut sink, &CancelToken::new()).unwrap();
    sink.frames.append(&mut result.frames);
    (sink.frames, result)
}

fn bytes(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.rgb().to_vec()).collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Segment 2's conditioning is segment 1's last frames encoded, and its audio prefix is
/// segment 1's last audio latents; both stay exactly as they are through every step.
fn conditioning_carries_over(two_stage: bool) {
    let dir = model();
    let mut p = load(&dir, two_stage);
    let r1 = request(0, None, two_stage);
    let (frames1, result1) = run(&mut p, &r1);
    assert_eq!(frames1.len(), 17);
    let state1 = result1.state.unwrap();

    let r2 = request(1, Some(state1.clone()), two_stage);
    let out = p
        .segment_latents(&r2, &mut |_, _| {}, &CancelToken::new())
        .unwrap();
    // The encoding of segment 1's last 9 frames, at segment 2's size.
    let last: Vec<Vec<u8>> = frames1[8..].iter().map(|f| f.rgb().into_owned()).collect();
    let pixels = preprocess_frames(
        &last,
        r1.width,
        r1.height,
        r2.width,
        r2.height,
        &Device::Cpu,
    )
    .unwrap();
    let z = p.vae_encoder().encode(&pixels).unwrap();
    let (_, c, f, h, w) = z.dims5().unwrap();
    let encoded = z
        .permute((0, 2, 3, 4, 1))
        .unwrap()
        .reshape((1, f * h * w, c))
        .unwrap();
    let cond = out.conditioning.as_ref().unwrap();
    assert_eq!(values(cond), values(&encoded));
    // ... and the final latents start with exactly those tokens.
    let head = out.video.narrow(1, 0, f * h * w).unwrap();
    assert_eq!(values(&head), values(&encoded));
    let total = out.video.dim(1).unwrap();
    let rest = out.video.narrow(1, f * h * w, total - f * h * w).unwrap();
    assert!(
        values(&rest).iter().any(|v| v.abs() > 1e-3),
        "the rest is generated"
    );

    // The audio prefix: segment 1's last audio latents.
    let prev = Continuation::from_state(&state1, 2, 4, &Device::Cpu).unwrap();
    let prev = prev.audio.unwrap(); // [1, 2, L, 4]
    let (_, _, l, _) = prev.dims4().unwrap();
    let n = out.audio_prefix;
    // 49 frames at 24 fps → 51 audio latent frames, at most what segment 1 has (18)
    assert_eq!(n, 18.min(l));
    let packed = prev
        .transpose(1, 2)
        .unwrap()
        .reshape((1, l, 8))
        .unwrap()
        .narrow(1, l - n, n)
        .unwrap();
    assert_eq!(values(&out.audio.narrow(1, 0, n).unwrap()), values(&packed));
}

#[test]
fn segment_two_continues_segment_one() {
    conditioning_carries_over(false);
}

#[test]
fn segment_two_continues_segment_one_with_the_two_stage_preset() {
    conditioning_carries_over(true);
}

/// Max abs difference of `wave` `[2, S]` and the interleaved stereo `pcm` over their first
/// `n` samples per channel.
fn pcm_diff(wave: &Tensor, pcm: &[f32], n: usize) -> f32 {
    let w: Vec<Vec<f32>> = wave.narrow(1, 0, n).unwrap().to_vec2().unwrap();
    (0..n)
        .flat_map(|i| {
            [
                (w[0][i] - pcm[2 * i]).abs(),
                (w[1][i] - pcm[2 * i + 1]).abs(),
            ]
        })
        .fold(0.0, f32::max)
}

/// Segment 2's audio starts with segment 1's: its prefix decodes to the PCM segment 1
/// emitted (the audio VAE is causal, and the prefix is all of segment 1's 18 audio latents
/// here), where an unconditioned segment's audio is unrelated. (The tiny model's VAE is
/// random, so decoding an encoding does not give the frames back: in pixels a conditioned
/// segment is no closer to its predecessor than an unconditioned one; the video's
/// continuity is checked on the latents above.)
#[test]
fn segment_two_audio_starts_with_segment_one_audio() {
    let dir = model();
    let mut p = load(&dir, false);
    let (_, result1) = run(&mut p, &request(0, None, false));
    let pcm1 = result1.audio.unwrap().samples; // 17 frames: 18 latents → 16 560 samples
    let state1 = result1.state.unwrap();
    // A 17-frame segment hands over all its audio: 17 frames' worth, the video starting
    // 17 − 9 frames into it.
    assert_eq!(state1.payload["audio_conditioning_num_frames"], 17);
    let offset = state1.payload["video_position_offset_sec"]
        .as_f64()
        .unwrap();
    assert!((offset - 8.0 / 24.0).abs() < 1e-6, "{offset}");

    let wave = |p: &mut Ltx2Pipeline, state: Option<ContinuationState>| {
        let out = p
            .segment_latents(
                &request(1, state, false),
                &mut |_, _| {},
                &CancelToken::new(),
            )
            .unwrap();
        p.decode_audio(&out.audio).unwrap()
    };
    let continued = wave(&mut p, Some(state1));
    let fresh = wave(&mut p, None);
    // Up to ~2 latent frames before the prefix ends (the vocoder looks ahead).
    let n = 16_560 - 2 * 960;
    let (c, u) = (pcm_diff(&continued, &pcm1, n), pcm_diff(&fresh, &pcm1, n));
    println!("segment 2's audio vs segment 1's PCM: continued {c:.2e}, unconditioned {u:.2e}");
    assert!(c < 1e-5, "{c}");
    assert!(u > 1e-2, "{u}");
}

/// A snapshot (the state as JSON, its big fields moved to a blob store and back) hydrated
/// into a fresh worker gives the segment the original worker (hot state) gives.
async fn snapshot_then_hydrate(two_stage: bool) {
    use fv_store::{MemoryBlobConfig, MemoryBlobStore};
    let dir = model();
    let mut original = load(&dir, two_stage);
    let (_, result1) = run(&mut original, &request(0, None, two_stage));
    let state1 = result1.state.unwrap();

    // The state's bulk is exactly the two fields the store moves to blobs.
    let blobs = MemoryBlobStore::new(MemoryBlobConfig::default()).unwrap();
    let moved = fv_store::payload::dehydrate(&state1.payload, &blobs, "s1", 0)
        .await
        .unwrap();
    assert_eq!(moved.fields, vec!["video", "audio"]);
    let small = serde_json::to_string(&moved.payload).unwrap();
    let whole = serde_json::to_string(&state1.payload).unwrap();
    println!(
        "state: {} bytes of JSON inline, {} with the frames and audio in blobs",
        whole.len(),
        small.len()
    );
    assert!(small.len() < 1024, "{small}");
    // ... what session_init_v2 hydrates on another server:
    let hydrated = fv_store::payload::hydrate(&moved.payload, &blobs)
        .await
        .unwrap();
    let wire: ContinuationState = serde_json::from_str(
        &serde_json::to_string(&ContinuationState {
            kind: state1.kind.clone(),
            payload: hydrated,
        })
        .unwrap(),
    )
    .unwrap();

    let (frames_a, result_a) = run(&mut original, &request(1, Some(state1), two_stage));
    let mut fresh = load(&dir, two_stage);
    let (frames_b, result_b) = run(&mut fresh, &request(1, Some(wire), two_stage));
    assert_eq!(frames_a.len(), 17 - 9);
    assert_eq!(bytes(&frames_a), bytes(&frames_b));
    assert_eq!(result_a.audio, result_b.audio);
    assert_eq!(result_a.state, result_b.state);
    // The original worker used its own decoded state, the fresh one decoded the payload.
    assert_eq!(
        (
            original.continuation_stats().hot,
            original.continuation_stats().decoded
        ),
        (1, 0)
    );
    assert_eq!(
        (
            fresh.continuation_stats().hot,
            fresh.continuation_stats().decoded
        ),
        (0, 1)
    );
}

#[tokio::test]
async fn a_hydrated_snapshot_continues_like_the_original_worker() {
    snapshot_then_hydrate(false).await;
}

#[tokio::test]
async fn a_hydrated_snapshot_continues_like_the_original_worker_two_stage() {
    snapshot_then_hydrate(true).await;
}

#[test]
fn malformed_foreign_or_unusable_states_are_invalid_requests() {
    let dir = model();
    let mut p = load(&dir, false);
    let (_, result) = run(&mut p, &request(0, None, false));
    let good = result.state.unwrap();
    let try_with = |p: &mut Ltx2Pipeline, state: ContinuationState, frames: u32| {
        let mut r = request(1, Some(state), false);
        r.num_frames = frames;
        match p.generate(&r, &mut CollectingSink::default(), &CancelToken::new()) {
            Err(GenerateError::InvalidRequest(m)) => m,
            other => panic!("expected an invalid request, got {other:?}"),
        }
    };
    let foreign = ContinuationState {
        kind: "mock.v1".into(),
        payload: serde_json::Map::new(),
    };
    assert!(try_with(&mut p, foreign, 17).contains("is not \"ltx2.v1\""));
    let mut v2 = good.clone();
    v2.payload["schema_version"] = serde_json::json!(2);
    assert!(try_with(&mut p, v2, 17).contains("schema_version 2"));
    let mut broken = good.clone();
    broken.payload["video"]["frames_b64"][0] = serde_json::json!("not base64!");
    assert!(try_with(&mut p, broken, 17).contains("frames_b64[0]"));
    // Frames whose aspect ratio is far from the segment's (they would scale to 4.5 M × 64).
    let mut wide = Continuation::from_state(&good, 2, 4, &Device::Cpu).unwrap();
    (wide.width, wide.height) = (4096, 1);
    wide.frames = vec![vec![0; 4096 * 3]; 9];
    let wide = wide.to_state(serde_json::json!({}), 24_000).unwrap();
    assert!(try_with(&mut p, wide, 17).contains("aspect ratios too far apart"));
    // A segment no longer than the frames it repeats has nothing new to show.
    assert!(try_with(&mut p, good.clone(), 9).contains("more than 9 frames"));
    // The worker still works afterwards.
    let (frames, _) = run(&mut p, &request(1, Some(good), false));
    assert_eq!(frames.len(), 8);
}

/// Cancels when step `at` is reported.
struct CancelAt {
    token: CancelToken,
    at: u32,
    steps: Vec<(u32, u32)>,
    frames: usize,
}

impl GenerationSink for CancelAt {
    fn step(&mut self, step: u32, total: u32) {
        self.steps.push((step, total));
        if step == self.at {
            self.token.cancel();
        }
    }
    fn frames(&mut self, frames: Vec<Frame>) {
        self.frames += frames.len();
    }
}

#[test]
fn every_step_of_both_stages_is_reported_and_cancellable() {
    let dir = model();
    let mut p = load(&dir, true);
    let (_, result) = run(&mut p, &request(0, None, true));
    let r = request(1, result.state, true);
    // 2 stage-1 steps + 2 refine steps, numbered 1..=4.
    for at in 1..=4 {
        let token = CancelToken::new();
        let mut sink = CancelAt {
            token: token.clone(),
            at,
            steps: Vec::new(),
            frames: 0,
        };
        assert_eq!(
            p.generate(&r, &mut sink, &token),
            Err(GenerateError::Cancelled),
            "cancelled at step {at}"
        );
        assert_eq!(sink.steps, (1..=at).map(|s| (s, 4)).collect::<Vec<_>>());
        assert_eq!(sink.frames, 0);
    }
}

/// Records when each step and each frame batch arrives.
struct Clock {
    start: std::time::Instant,
    events: Vec<(&'static str, f64)>,
}

impl GenerationSink for Clock {
    fn step(&mut self, _: u32, _: u32) {
        self.events
            .push(("step", self.start.elapsed().as_secs_f64() * 1e3));
    }
    fn frames(&mut self, _: Vec<Frame>) {
        self.events
            .push(("frames", self.start.elapsed().as_secs_f64() * 1e3));
    }
}

/// Tiny-model timings of a continued segment (printed, not asserted: the machine is shared):
/// time to the first frames handed to the encoder, i.e. the first media, and in all. Frames
/// only follow the last step of the last stage.
#[test]
fn continued_segment_timings_on_the_tiny_model() {
    let dir = model();
    for two_stage in [false, true] {
        let mut p = load(&dir, two_stage);
        let (_, result) = run(&mut p, &request(0, None, two_stage));
        let r = request(1, result.state, two_stage);
        let mut clock = Clock {
            start: std::time::Instant::now(),
            events: Vec::new(),
        };
        let result = p.generate(&r, &mut clock, &CancelToken::new()).unwrap();
        let total = clock.start.elapsed().as_secs_f64() * 1e3;
        let first = |what: &str| clock.events.iter().find(|e| e.0 == what).unwrap().1;
        let last_step = clock.events.iter().rev().find(|e| e.0 == "step").unwrap().1;
        println!(
            "continued segment ({}, {}x{}, 17 frames, 2 + {} steps): first step {:.0} ms, \
             last step {last_step:.0} ms, first frames (first media) {:.0} ms, done with the \
             audio and the next state {total:.0} ms",
            if two_stage { "two-stage" } else { "one stage" },
            r.width,
            r.height,
            if two_stage { 2 } else { 0 },
            first("step"),
            first("frames"),
        );
        let kinds: Vec<&str> = clock.events.iter().map(|e| e.0).collect();
        let steps = if two_stage { 4 } else { 2 };
        assert_eq!(&kinds[..steps], vec!["step"; steps].as_slice());
        assert_eq!(
            &kinds[steps..],
            ["frames"].as_slice(),
            "8 new frames, one batch"
        );
        assert!(result.state.is_some() && result.audio.is_some());
    }
}
