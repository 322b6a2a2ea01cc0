//! One whole tiny pipeline run against the reference: prompt → tokens → Gemma-3 →
//! connectors → joint audio-video denoising → video VAE decode + audio VAE decode → vocoder,
//! compared with diffusers' own `LTX2Pipeline.__call__` on a pipeline folder diffusers itself
//! saved. Fixtures made by scripts/make_pipeline_fixtures.py.
#![allow(clippy::unwrap_used)]

mod common;

use candle_core::{DType, Device, Tensor};
use common::{Reference, fixture, max_abs_diff};
use fv_core::{CancelToken, CollectingSink, GenerationRequest, Generator};
use fv_inference::Ltx2Pipeline;
use fv_inference::pipeline::{LatentGrid, PipelineOptions, Stage, StreamLatents};
use fv_inference::text::CaptionEmbeddings;

const TOLERANCE: f32 = 1e-4;

impl Reference {
    fn text_len(&self) -> usize {
        self.meta["request"]["text_len"].as_u64().unwrap() as usize
    }

    fn request(&self) -> GenerationRequest {
        let r = &self.meta["request"];
        let n = |k: &str| r[k].as_u64().unwrap() as u32;
        GenerationRequest {
            session_id: "parity".into(),
            segment_idx: 0,
            prompt: r["prompt"].as_str().unwrap().to_string(),
            negative_prompt: None,
            seed: r["seed"].as_i64().unwrap(),
            num_inference_steps: n("steps"),
            guidance_scale: 1.0,
            width: n("width"),
            height: n("height"),
            num_frames: n("num_frames"),
            fps: n("fps"),
            image_path: None,
            state: None,
        }
    }
}

fn pipeline(reference: &Reference, dtype: DType) -> Ltx2Pipeline {
    Ltx2Pipeline::load_with_options(
        &fixture("pipeline_av_tiny"),
        &Device::Cpu,
        &PipelineOptions::new()
            .with_dtype(dtype)
            .with_text_max_length(reference.text_len()),
    )
    .unwrap()
}

/// The stage-1 run of `request` with caption embeddings `text` and the given starting tokens.
fn denoise(
    p: &Ltx2Pipeline,
    request: &GenerationRequest,
    text: &CaptionEmbeddings,
    video: Tensor,
    audio: Tensor,
) -> (Tensor, Tensor) {
    let grid = grid(p, request);
    let fps = request.fps as f32;
    let frames = audio.dim(1).unwrap();
    p.denoise(
        Stage {
            video: StreamLatents {
                tokens: video,
                condition: None,
            },
            audio: StreamLatents {
                tokens: audio,
                condition: None,
            },
            video_coords: p.video_coords(grid, fps, 0.0).unwrap(),
            audio_coords: p.audio_coords(frames).unwrap(),
            scheduler: p.schedule(request.num_inference_steps, grid).unwrap(),
            text,
        },
        &mut || {},
        &CancelToken::new(),
    )
    .unwrap()
}

fn grid(p: &Ltx2Pipeline, r: &GenerationRequest) -> LatentGrid {
    p.latent_grid(r.width, r.height, r.num_frames).unwrap()
}

#[test]
fn whole_pipeline_matches_the_reference_step_by_step() {
    let reference = Reference::load("pipeline_av_tiny");
    let p = pipeline(&reference, DType::F32);
    let request = reference.request();
    let grid = grid(&p, &request);
    let frames = p
        .audio_frames(request.num_frames, request.fps as f32)
        .unwrap();
    assert_eq!(
        frames,
        reference.meta["audio_latent_frames"].as_u64().unwrap() as usize
    );

    // The schedule: the 4-step subset shifted by the token count, as diffusers computed it.
    let sched = p.schedule(request.num_inference_steps, grid).unwrap();
    let want: Vec<f32> = reference.meta["sigmas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    for (a, b) in sched.sigmas().iter().zip(&want) {
        assert!((a - b).abs() <= 1e-6, "{:?} vs {want:?}", sched.sigmas());
    }

    let text = p.captions(&request.prompt).unwrap();
    let e_cv = max_abs_diff(&text.video, reference.get("captions.video"));
    let e_ca = max_abs_diff(&text.audio, reference.get("captions.audio"));
    let noise = p.initial_noise(request.seed, grid).unwrap();
    let audio_noise = p.initial_audio_noise(request.seed, frames).unwrap();
    assert!(max_abs_diff(&noise, reference.get("noise")) <= 1e-6);
    assert!(max_abs_diff(&audio_noise, reference.get("audio_noise")) <= 1e-6);

    let (video, audio) = denoise(&p, &request, &text, noise.clone(), audio_noise.clone());
    let e_tv = max_abs_diff(&video, reference.get("tokens.video"));
    let e_ta = max_abs_diff(&audio, reference.get("tokens.audio"));
    let decoded = p.decode(&video, grid, request.seed).unwrap();
    let e_video = max_abs_diff(&decoded, reference.get("video"));
    let wave = p.decode_audio(&audio).unwrap();
    let e_wave = max_abs_diff(&wave, reference.get("waveform"));
    println!(
        "captions video {e_cv:.2e} audio {e_ca:.2e}; final tokens video {e_tv:.2e} audio \
         {e_ta:.2e}; decoded video {e_video:.2e}; waveform {e_wave:.2e}"
    );
    for (what, e) in [
        ("captions (video)", e_cv),
        ("captions (audio)", e_ca),
        ("video tokens", e_tv),
        ("audio tokens", e_ta),
        ("decoded video", e_video),
        ("waveform", e_wave),
    ] {
        assert!(e <= TOLERANCE, "{what}: {e}");
    }

    // Plausible mistakes move the outputs far beyond the tolerance.
    let swapped = CaptionEmbeddings {
        video: text.audio.clone(),
        audio: text.video.clone(),
        mask: text.mask.clone(),
    };
    let (v, a) = denoise(&p, &request, &swapped, noise.clone(), audio_noise.clone());
    let m_swap = (
        max_abs_diff(&v, reference.get("tokens.video")),
        max_abs_diff(&a, reference.get("tokens.audio")),
    );
    // The audio stream feeds the video stream: other audio noise alone moves the video.
    let other_audio = p.initial_audio_noise(request.seed ^ 1, frames).unwrap();
    let (v, _) = denoise(&p, &request, &text, noise.clone(), other_audio);
    let m_audio_noise = max_abs_diff(&v, reference.get("tokens.video"));
    // 1024 caption slots instead of the reference's 32: other registers, other captions.
    let long = Ltx2Pipeline::load_with_options(
        &fixture("pipeline_av_tiny"),
        &Device::Cpu,
        &PipelineOptions::new(),
    )
    .unwrap();
    let long_text = long.captions(&request.prompt).unwrap();
    let (v, a) = denoise(&long, &request, &long_text, noise, audio_noise);
    let m_len = (
        max_abs_diff(&v, reference.get("tokens.video")),
        max_abs_diff(&a, reference.get("tokens.audio")),
    );
    println!(
        "mutations: caption streams swapped {:.3}/{:.3}; other audio noise (video) \
         {m_audio_noise:.3}; 1024 caption slots {:.3}/{:.3}",
        m_swap.0, m_swap.1, m_len.0, m_len.1
    );
    for (what, e) in [
        ("swapped captions (video)", m_swap.0),
        ("swapped captions (audio)", m_swap.1),
        ("audio noise → video", m_audio_noise),
        ("text length (video)", m_len.0),
        ("text length (audio)", m_len.1),
    ] {
        assert!(e > 100.0 * TOLERANCE, "{what} moved the output only {e}");
    }
}

#[test]
fn generator_gives_the_reference_frames_and_pcm() {
    let reference = Reference::load("pipeline_av_tiny");
    let mut p = pipeline(&reference, DType::F32);
    let request = reference.request();
    let mut sink = CollectingSink::default();
    let result = p
        .generate(&request, &mut sink, &CancelToken::new())
        .unwrap();
    assert_eq!(
        sink.steps,
        (1..=request.num_inference_steps)
            .map(|s| (s, request.num_inference_steps))
            .collect::<Vec<_>>()
    );
    sink.frames.extend(result.frames);
    let want = reference.get("frames"); // [F, H, W, 3] u8
    assert_eq!(sink.frames.len(), want.dim(0).unwrap());
    let want: Vec<u8> = want.flatten_all().unwrap().to_vec1().unwrap();
    let got: Vec<u8> = sink.frames.iter().flat_map(|f| f.rgb().to_vec()).collect();
    assert_eq!(got.len(), want.len());
    // The reference rounds x·255 of (x+1)/2 from the same float video, which we match to
    // ~1e-5: a value on a rounding boundary may land one level off.
    let off: Vec<i16> = got
        .iter()
        .zip(&want)
        .map(|(&a, &b)| i16::from(a) - i16::from(b))
        .filter(|d| *d != 0)
        .collect();
    assert!(
        off.iter().all(|d| d.abs() == 1),
        "a pixel differs by more than one level"
    );
    assert!(
        off.len() * 1000 < got.len(),
        "{} of {} values off",
        off.len(),
        got.len()
    );
    println!(
        "u8 frames: {} of {} values one level off",
        off.len(),
        got.len()
    );

    let audio = result.audio.unwrap();
    let wave: Vec<Vec<f32>> = reference.get("waveform").to_vec2().unwrap();
    assert_eq!((audio.sample_rate, audio.channels), (24_000, 2));
    assert_eq!(audio.samples.len(), 2 * wave[0].len());
    let err = audio
        .samples
        .chunks_exact(2)
        .enumerate()
        .map(|(i, lr)| (lr[0] - wave[0][i]).abs().max((lr[1] - wave[1][i]).abs()))
        .fold(0f32, f32::max);
    println!("PCM (interleaved) max abs error {err:.2e}");
    assert!(err <= TOLERANCE, "PCM {err}");
}

#[test]
fn bf16_stays_close_to_the_f32_reference() {
    let reference = Reference::load("pipeline_av_tiny");
    let p = pipeline(&reference, DType::BF16);
    assert_eq!(p.dtype(), DType::BF16);
    let request = reference.request();
    let grid = grid(&p, &request);
    let frames = p
        .audio_frames(request.num_frames, request.fps as f32)
        .unwrap();
    let text = p.captions(&request.prompt).unwrap();
    let noise = p.initial_noise(request.seed, grid).unwrap();
    let audio_noise = p.initial_audio_noise(request.seed, frames).unwrap();
    let (video, audio) = denoise(&p, &request, &text, noise, audio_noise);
    let decoded = p.decode(&video, grid, request.seed).unwrap();
    assert_eq!(decoded.dtype(), DType::F32);
    let range = |t: &Tensor| max_abs_diff(t, &t.zeros_like().unwrap());
    let want = reference.get("video");
    let err = max_abs_diff(&decoded, want);
    let wave = p.decode_audio(&audio).unwrap();
    let werr = max_abs_diff(&wave, reference.get("waveform"));
    println!(
        "bf16: decoded video max abs error {err:.3e} (values up to {:.2}); waveform {werr:.3e} \
         (values up to {:.2})",
        range(want),
        range(reference.get("waveform"))
    );
    // bf16 keeps 8 bits of mantissa: the error is real but small against the signal, and
    // clearly not zero (so the weights really were bf16).
    assert!(
        err > 1e-4,
        "bf16 output equals f32 ({err}): dtype not applied"
    );
    assert!(err < 0.1 * range(want), "bf16 video drifted by {err}");
    assert!(
        werr < 0.25 * range(reference.get("waveform")),
        "bf16 audio drifted by {werr}"
    );
    let bad = Ltx2Pipeline::load_with(&fixture("pipeline_av_tiny"), &Device::Cpu, DType::U8)
        .unwrap_err()
        .to_string();
    assert!(bad.contains("dtype"), "{bad}");
}
