//! A continued segment and a two-stage continued segment against the reference (diffusers'
//! `LTX2ConditionPipeline` helpers and transformer, the conditioning of ltx2-phase2-facts §5),
//! on the whole-pipeline fixture's model. Fixtures made by scripts/make_pipeline_fixtures.py
//! (scripts/make_continuation_fixtures.py).
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{Device, Tensor};
use common::{Reference, fixture, max_abs_diff};
use fv_core::{CancelToken, CollectingSink, GenerationRequest, Generator};
use fv_inference::Ltx2Pipeline;
use fv_inference::pipeline::{Continuation, PipelineOptions, Refine, SegmentLatents};

const TOLERANCE: f32 = 1e-4;

impl Reference {
    /// The previous segment as an `ltx2.v1` continuation (its last 9 frames and its audio).
    fn previous(&self) -> Continuation {
        let frames = self.get("previous.frames"); // [9, 96, 64, 3] u8
        let (n, h, w, _) = frames.dims4().unwrap();
        let bytes: Vec<u8> = frames.flatten_all().unwrap().to_vec1().unwrap();
        let plane = h * w * 3;
        let tokens = self.get("previous.audio_tokens");
        Continuation {
            segment_index: 0,
            frames: (0..n)
                .map(|i| bytes[i * plane..(i + 1) * plane].to_vec())
                .collect(),
            width: w as u32,
            height: h as u32,
            video_strength: 1.0,
            audio: Some(unpack_audio(tokens)),
            audio_frames: 49,
            audio_strength: 1.0,
            offset_sec: Some(40.0 / 24.0),
        }
    }

    fn request(&self, case: &str, state: &Continuation) -> GenerationRequest {
        let c = &self.meta["cases"][case];
        let n = |v: &serde_json::Value| v.as_u64().unwrap() as u32;
        GenerationRequest {
            session_id: "parity".into(),
            segment_idx: 1,
            prompt: self.meta["prompt"].as_str().unwrap().into(),
            negative_prompt: None,
            seed: c["seed"].as_i64().unwrap(),
            num_inference_steps: n(&c["steps"]),
            guidance_scale: 1.0,
            width: n(&c["size"][0]),
            height: n(&c["size"][1]),
            num_frames: n(&c["num_frames"]),
            fps: 24,
            image_path: None,
            state: Some(state.to_state(serde_json::json!({}), 24_000).unwrap()),
        }
    }
}

/// Packed audio tokens `[1, L, C·M]` → `[1, C, L, M]` (the state's layout; this model has 2
/// latent channels × 4 mel bins, feature `c·4 + m`).
fn unpack_audio(tokens: &Tensor) -> Tensor {
    let (_, l, _) = tokens.dims3().unwrap();
    tokens
        .reshape((1, l, 2, 4))
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap()
}

fn pipeline(refine: bool) -> Ltx2Pipeline {
    let mut opts = PipelineOptions::new().with_text_max_length(32);
    if refine {
        opts = opts.with_refine(Refine::streaming());
    }
    Ltx2Pipeline::load_with_options(&fixture("pipeline_av_tiny"), &Device::Cpu, &opts).unwrap()
}

fn latents(p: &mut Ltx2Pipeline, r: &GenerationRequest) -> SegmentLatents {
    p.segment_latents(r, &mut |_, _| {}, &CancelToken::new())
        .unwrap()
}

#[test]
fn a_continued_segment_matches_the_reference() {
    let reference = Reference::load("continuation_tiny");
    let mut p = pipeline(false);
    let state = reference.previous();
    let request = reference.request("cond", &state);
    let out = latents(&mut p, &request);
    let e_cond = max_abs_diff(
        out.conditioning.as_ref().unwrap(),
        reference.get("cond.cond_tokens"),
    );
    let e_v = max_abs_diff(&out.video, reference.get("cond.video"));
    let e_a = max_abs_diff(&out.audio, reference.get("cond.audio"));
    println!(
        "conditioned segment: conditioning tokens {e_cond:.2e}, video {e_v:.2e}, audio {e_a:.2e}"
    );
    assert_eq!(
        out.audio_prefix,
        reference.meta["cases"]["cond"]["audio_prefix"]
            .as_u64()
            .unwrap() as usize
    );
    for (what, e) in [("conditioning", e_cond), ("video", e_v), ("audio", e_a)] {
        assert!(e <= TOLERANCE, "{what}: {e}");
    }

    // Plausible mistakes move the result far beyond the tolerance.
    let mut mutate = |edit: &dyn Fn(&mut Continuation)| -> (f32, f32) {
        let mut s = state.clone();
        edit(&mut s);
        let out = latents(&mut p, &reference.request("cond", &s));
        (
            max_abs_diff(&out.video, reference.get("cond.video")),
            max_abs_diff(&out.audio, reference.get("cond.audio")),
        )
    };
    let no_offset = mutate(&|s| s.offset_sec = Some(0.0));
    let no_audio = mutate(&|s| s.audio = None);
    let reversed = mutate(&|s| s.frames.reverse());
    println!(
        "mutations: no RoPE time offset {:.3}/{:.3}; no audio prefix {:.3}/{:.3}; frames in \
         reverse order {:.3}/{:.3}",
        no_offset.0, no_offset.1, no_audio.0, no_audio.1, reversed.0, reversed.1
    );
    assert!(no_offset.0 > 100.0 * TOLERANCE);
    assert!(no_audio.1 > 100.0 * TOLERANCE && no_audio.0 > 100.0 * TOLERANCE);
    assert!(reversed.0 > 100.0 * TOLERANCE);
}

#[test]
fn a_continued_segment_drops_the_repeated_head() {
    let reference = Reference::load("continuation_tiny");
    let mut p = pipeline(false);
    let state = reference.previous();
    let request = reference.request("cond", &state);
    let mut sink = CollectingSink::default();
    let result = p
        .generate(&request, &mut sink, &CancelToken::new())
        .unwrap();
    // 25 frames, the first 9 repeat the previous segment's last ones: 16 new.
    assert_eq!(sink.frames.len() + result.frames.len(), 16);
    // 68 audio latent frames → 269 mel frames → 64 560 samples, minus 49/24 s = 49 000.
    let audio = result.audio.unwrap();
    assert_eq!(audio.samples.len(), 2 * (240 * (4 * 68 - 3) - 49_000));
    // The next state: the last 9 frames of this segment and its audio latents.
    let next = Continuation::from_state(&result.state.unwrap(), 2, 4, &Device::Cpu).unwrap();
    assert_eq!((next.frames.len(), next.segment_index), (9, 1));
    assert_eq!(next.audio.unwrap().dims(), &[1, 2, 68, 4]);
    // Its audio covers 49 + 16 frames: the next segment starts from the last 49.
    assert_eq!(next.audio_frames, 49);
    assert_eq!(next.offset_sec, Some(40.0 / 24.0));
}

#[test]
fn a_two_stage_continued_segment_matches_the_reference() {
    let reference = Reference::load("continuation_tiny");
    let mut p = pipeline(true);
    let state = reference.previous();
    let request = reference.request("two_stage", &state);
    let mut steps = Vec::new();
    let out = p
        .segment_latents(
            &request,
            &mut |s, t| steps.push((s, t)),
            &CancelToken::new(),
        )
        .unwrap();
    // 4 stage-1 steps then 2 refine steps, numbered across both stages.
    assert_eq!(steps, (1..=6).map(|s| (s, 6)).collect::<Vec<_>>());
    let s1 = out.stage1.as_ref().unwrap();
    let errs = [
        (
            "stage-1 conditioning",
            max_abs_diff(
                s1.conditioning.as_ref().unwrap(),
                reference.get("two_stage.cond_tokens"),
            ),
        ),
        (
            "stage-1 video",
            max_abs_diff(&s1.video, reference.get("two_stage.stage1_video")),
        ),
        (
            "stage-1 audio",
            max_abs_diff(&s1.audio, reference.get("two_stage.stage1_audio")),
        ),
        (
            "upsampled",
            max_abs_diff(&s1.upsampled, reference.get("two_stage.upsampled")),
        ),
        (
            "stage-2 conditioning",
            max_abs_diff(
                out.conditioning.as_ref().unwrap(),
                reference.get("two_stage.cond_tokens_stage2"),
            ),
        ),
        (
            "video",
            max_abs_diff(&out.video, reference.get("two_stage.video")),
        ),
        (
            "audio",
            max_abs_diff(&out.audio, reference.get("two_stage.audio")),
        ),
    ];
    for (what, e) in errs {
        println!("two-stage continued segment: {what} {e:.2e}");
    }
    for (what, e) in errs {
        assert!(e <= TOLERANCE, "{what}: {e}");
    }
    // The refine re-noises: without it the result moves far.
    let mut plain = Ltx2Pipeline::load_with_options(
        &fixture("pipeline_av_tiny"),
        &Device::Cpu,
        &PipelineOptions::new()
            .with_text_max_length(32)
            .with_refine(Refine {
                steps: 2,
                add_noise: false,
            }),
    )
    .unwrap();
    let m = max_abs_diff(
        &latents(&mut plain, &request).video,
        reference.get("two_stage.video"),
    );
    println!("mutation: refine without re-noise {m:.3}");
    assert!(m > 100.0 * TOLERANCE);
}
