//! The pipeline end to end on the tiny random-weight model.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use fv_core::{
    CancelToken, CollectingSink, Frame, GenerateError, GenerationRequest, GenerationSink, Generator,
};
use fv_inference::pipeline::{MAX_LATENT_TOKENS, MAX_STEPS, TEXT_EMBEDDINGS_FILE, sigmas_for};
use fv_inference::{DISTILLED_SIGMAS, Ltx2Pipeline, tiny};
use std::collections::HashMap;

fn tiny_pipeline() -> (tempfile::TempDir, Ltx2Pipeline) {
    let dir = tempfile::tempdir().unwrap();
    tiny::write_random_model(dir.path()).unwrap();
    let p = Ltx2Pipeline::load(dir.path(), &Device::Cpu).unwrap();
    (dir, p)
}

fn request(seed: i64) -> GenerationRequest {
    GenerationRequest {
        session_id: "test".into(),
        segment_idx: 0,
        prompt: "a red fox in the snow".into(),
        negative_prompt: None,
        seed,
        num_inference_steps: 2,
        guidance_scale: 1.0,
        width: 64,
        height: 96,
        num_frames: 9,
        fps: 24,
        image_path: None,
        state: None,
    }
}

fn run(p: &mut Ltx2Pipeline, r: &GenerationRequest) -> Result<CollectingSink, GenerateError> {
    let mut sink = CollectingSink::default();
    let result = p.generate(r, &mut sink, &CancelToken::new())?;
    sink.frames.extend(result.frames);
    Ok(sink)
}

fn bytes(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.rgb().to_vec()).collect()
}

#[test]
fn reports_every_step_and_makes_the_requested_frames() {
    let (_dir, mut p) = tiny_pipeline();
    assert!(!p.has_text_embeddings());
    let sink = run(&mut p, &request(1)).unwrap();
    assert_eq!(sink.steps, vec![(1, 2), (2, 2)]);
    assert_eq!(sink.frames.len(), 9);
    assert!(
        sink.frames
            .iter()
            .all(|f| (f.width(), f.height()) == (64, 96))
    );
    // Random weights still give a picture, not a constant.
    let px = bytes(&sink.frames);
    let (lo, hi) = (px.iter().min().unwrap(), px.iter().max().unwrap());
    assert!(hi - lo > 16, "output range {lo}..{hi}");
}

#[test]
fn same_seed_same_video_other_seed_or_prompt_other_video() {
    let (_dir, mut p) = tiny_pipeline();
    let a = bytes(&run(&mut p, &request(5)).unwrap().frames);
    assert_eq!(a, bytes(&run(&mut p, &request(5)).unwrap().frames));
    assert_ne!(a, bytes(&run(&mut p, &request(6)).unwrap().frames));
    assert_ne!(a, bytes(&run(&mut p, &request(-5)).unwrap().frames));
    let mut other = request(5);
    other.prompt = "a blue whale".into();
    assert_ne!(a, bytes(&run(&mut p, &other).unwrap().frames));
    // A clone shares the weights and gives the same video.
    let mut clone = p.clone();
    assert_eq!(a, bytes(&run(&mut clone, &request(5)).unwrap().frames));
}

/// Cancels the token after `after` steps.
struct CancelAfter {
    token: CancelToken,
    after: u32,
    steps: u32,
    frames: usize,
}

impl GenerationSink for CancelAfter {
    fn step(&mut self, step: u32, _total: u32) {
        self.steps = step;
        if step == self.after {
            self.token.cancel();
        }
    }
    fn frames(&mut self, frames: Vec<Frame>) {
        self.frames += frames.len();
    }
}

#[test]
fn cancel_stops_at_the_next_step() {
    let (_dir, mut p) = tiny_pipeline();
    let token = CancelToken::new();
    let mut sink = CancelAfter {
        token: token.clone(),
        after: 1,
        steps: 0,
        frames: 0,
    };
    let mut r = request(1);
    r.num_inference_steps = 4;
    assert_eq!(
        p.generate(&r, &mut sink, &token),
        Err(GenerateError::Cancelled)
    );
    assert_eq!((sink.steps, sink.frames), (1, 0));
    let fired = CancelToken::new();
    fired.cancel();
    let mut sink = CollectingSink::default();
    assert_eq!(
        p.generate(&r, &mut sink, &fired),
        Err(GenerateError::Cancelled)
    );
    assert!(sink.steps.is_empty());
}

#[test]
fn sizes_that_do_not_fit_the_compression_are_rejected() {
    let (_dir, mut p) = tiny_pipeline();
    let cases: [(u32, u32, u32, u32, &str); 8] = [
        (65, 64, 9, 2, "multiples of 32"),
        (64, 48, 9, 2, "multiples of 32"),
        (32, 64, 9, 2, "at least 64x64"),
        (0, 64, 9, 2, "multiples of 32"),
        (64, 64, 8, 2, "8·k + 1"),
        (64, 64, 0, 2, "8·k + 1"),
        (64, 64, 9, 0, "num_inference_steps"),
        (64, 64, 9, MAX_STEPS + 1, "num_inference_steps"),
    ];
    for (w, h, n, steps, want) in cases {
        let mut r = request(1);
        (r.width, r.height, r.num_frames, r.num_inference_steps) = (w, h, n, steps);
        match run(&mut p, &r) {
            Err(GenerateError::InvalidRequest(m)) => {
                assert!(m.contains(want), "{w}x{h}x{n}/{steps}: {m}")
            }
            other => panic!("{w}x{h}x{n}/{steps}: {other:?}"),
        }
    }
    // 256×256 latents per latent frame sit exactly at the token cap; two latent frames exceed it.
    let side = 32 * 256; // 256 × 256 latents = 65 536 per latent frame
    const { assert!(256 * 256 * 2 > MAX_LATENT_TOKENS) };
    assert!(p.latent_grid(side, side, 1).is_ok());
    let err = p.latent_grid(side, side, 9).unwrap_err().to_string();
    assert!(err.contains("latent tokens"), "{err}");
}

#[test]
fn step_counts_resample_the_distilled_schedule() {
    assert_eq!(sigmas_for(8), DISTILLED_SIGMAS.to_vec());
    assert_eq!(sigmas_for(1), vec![1.0]);
    let four = sigmas_for(4);
    assert_eq!(four, vec![1.0, 0.9875, 0.975, 0.725]);
    let many = sigmas_for(MAX_STEPS);
    assert!(many.windows(2).all(|w| w[0] >= w[1] && w[1] > 0.0));
}

#[test]
fn stored_text_embeddings_are_used_for_every_prompt() {
    let (dir, _) = tiny_pipeline();
    let embeds = Tensor::from_vec(
        (0..5 * 24)
            .map(|i| (i as f32 * 0.37).sin())
            .collect::<Vec<_>>(),
        (5, 24),
        &Device::Cpu,
    )
    .unwrap();
    let mask = Tensor::new(&[1f32, 1., 1., 0., 0.], &Device::Cpu).unwrap();
    let file = dir.path().join(TEXT_EMBEDDINGS_FILE);
    let tensors = HashMap::from([
        ("prompt_embeds".to_string(), embeds),
        ("prompt_attention_mask".to_string(), mask),
    ]);
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let mut p = Ltx2Pipeline::load(dir.path(), &Device::Cpu).unwrap();
    assert!(p.has_text_embeddings());
    let a = bytes(&run(&mut p, &request(3)).unwrap().frames);
    let mut other = request(3);
    other.prompt = "something else entirely".into();
    assert_eq!(a, bytes(&run(&mut p, &other).unwrap().frames));

    // Wrong caption width is a load error, not a panic later.
    let bad = Tensor::zeros((5, 23), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("prompt_embeds".to_string(), bad)]), &file)
        .unwrap();
    let err = Ltx2Pipeline::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("prompt_embeds"), "{err}");
}

#[test]
fn bad_model_paths_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ltx2Pipeline::load(&dir.path().join("nope"), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("neither a directory nor a file"), "{err}");
    let err = Ltx2Pipeline::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("config.json"), "{err}");
}

#[test]
fn a_timestep_conditioned_vae_decodes_at_the_chosen_timestep() {
    // The tiny model with FastVideo's VAE setting: timestep embedders and scale/shift tables.
    let (dir, _) = tiny_pipeline();
    let mut vcfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("vae/config.json")).unwrap())
            .unwrap();
    vcfg["timestep_conditioning"] = serde_json::json!(true);
    std::fs::write(dir.path().join("vae/config.json"), vcfg.to_string()).unwrap();
    let cfg = fv_inference::VaeConfig::from_json(&vcfg.to_string()).unwrap();
    let names = fv_inference::VideoVaeDecoder::expected_weights(&cfg).unwrap();
    let mut tensors =
        tiny::random_weights(&names, candle_core::DType::F32, &Device::Cpu, 9).unwrap();
    tensors.insert(
        "decoder.timestep_scale_multiplier".into(),
        Tensor::new(1000f32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, dir.path().join("vae").join(tiny::WEIGHTS_FILE))
        .unwrap();
    let load = || Ltx2Pipeline::load(dir.path(), &Device::Cpu).unwrap();

    let at = |t: f32, s: Option<f32>| {
        let mut p = load().with_decode_timestep(t, s).unwrap();
        bytes(&run(&mut p, &request(4)).unwrap().frames)
    };
    let plain = bytes(&run(&mut load(), &request(4)).unwrap().frames);
    assert_eq!(
        plain,
        at(0.0, None),
        "the default is timestep 0 without noise"
    );
    let t = at(0.05, Some(0.0));
    assert_ne!(plain, t, "the timestep reaches the decoder");
    assert_eq!(t, at(0.05, Some(0.0)), "deterministic");
    assert_ne!(
        t,
        at(0.05, None),
        "noise scale defaults to the timestep and changes the video"
    );
    for bad in [-0.1, 1.5, f32::NAN] {
        assert!(load().with_decode_timestep(bad, None).is_err(), "{bad}");
    }
}

#[test]
fn an_unconditioned_vae_ignores_the_decode_timestep() {
    let (_dir, p) = tiny_pipeline();
    let mut q = p.clone().with_decode_timestep(0.5, Some(0.5)).unwrap();
    let mut p = p;
    assert_eq!(
        bytes(&run(&mut p, &request(2)).unwrap().frames),
        bytes(&run(&mut q, &request(2)).unwrap().frames)
    );
}
