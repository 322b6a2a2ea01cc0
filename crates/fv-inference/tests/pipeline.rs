//! The pipeline end to end on the tiny random-weight model.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};
use fv_core::{
    AudioTrack, CancelToken, CollectingSink, Frame, GenerateError, GenerationRequest,
    GenerationSink, Generator,
};
use fv_inference::pipeline::{MAX_LATENT_TOKENS, MAX_STEPS, sigmas_for};
use fv_inference::{Ltx2Pipeline, tiny};

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
    Ok(run_av(p, r)?.0)
}

/// The frames (in the sink) and the audio of one run.
fn run_av(
    p: &mut Ltx2Pipeline,
    r: &GenerationRequest,
) -> Result<(CollectingSink, AudioTrack), GenerateError> {
    let mut sink = CollectingSink::default();
    let result = p.generate(r, &mut sink, &CancelToken::new())?;
    sink.frames.extend(result.frames);
    Ok((sink, result.audio.expect("the pipeline returns audio")))
}

fn bytes(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.rgb().to_vec()).collect()
}

#[test]
fn reports_every_step_and_makes_the_requested_frames_and_audio() {
    let (_dir, mut p) = tiny_pipeline();
    let (sink, audio) = run_av(&mut p, &request(1)).unwrap();
    // 9 frames at 24 fps = 0.375 s → round(9.375) = 9 audio latent frames → 4·9 − 3 = 33 mel
    // frames of 10 ms → ×240 = 7920 samples per channel at 24 kHz, stereo, interleaved.
    assert_eq!((audio.sample_rate, audio.channels), (24_000, 2));
    assert_eq!(audio.samples.len(), 2 * 240 * 33);
    assert!(
        audio
            .samples
            .iter()
            .all(|s| s.is_finite() && s.abs() <= 1.0)
    );
    let (lo, hi) = audio
        .samples
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), &s| (a.min(s), b.max(s)));
    assert!(hi - lo > 1e-3, "the waveform is not flat: {lo}..{hi}");
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
    let (sink, audio) = run_av(&mut p, &request(5)).unwrap();
    let a = bytes(&sink.frames);
    let (again, again_audio) = run_av(&mut p, &request(5)).unwrap();
    assert_eq!(a, bytes(&again.frames));
    assert_eq!(audio, again_audio);
    assert_ne!(audio, run_av(&mut p, &request(6)).unwrap().1);
    assert_ne!(a, bytes(&run(&mut p, &request(6)).unwrap().frames));
    assert_ne!(a, bytes(&run(&mut p, &request(-5)).unwrap().frames));
    let mut other = request(5);
    other.prompt = "a blue whale".into();
    let (other_sink, other_audio) = run_av(&mut p, &other).unwrap();
    assert_ne!(a, bytes(&other_sink.frames), "the prompt reaches the video");
    assert_ne!(audio, other_audio, "the prompt reaches the audio");
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
fn step_counts_take_fastvideos_distilled_subsets() {
    assert_eq!(sigmas_for(4), vec![1.0, 0.909375, 0.725, 0.421875]);
    let many = sigmas_for(MAX_STEPS);
    assert!(many.windows(2).all(|w| w[0] >= w[1] && w[1] > 0.0));
}

#[test]
fn the_text_encoder_runs_once_per_distinct_prompt() {
    let (_dir, mut p) = tiny_pipeline();
    let clone = p.clone();
    let mut r = request(1);
    run(&mut p, &r).unwrap();
    r.seed = 2;
    // Same tokens (the pipeline strips the prompt): a hit.
    r.prompt = format!("  {} ", r.prompt);
    run(&mut p, &r).unwrap();
    r.prompt = "a different prompt".into();
    run(&mut p, &r).unwrap();
    let stats = p.text_cache_stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
    // Clones (other workers) share the cache.
    assert_eq!(clone.text_cache_stats(), stats);
    // The cached embeddings are what the encoder gives.
    let direct = p.text_encoder().encode(&["a different prompt"]).unwrap();
    let cached = p.captions("a different prompt").unwrap();
    let diff = (direct.video - cached.video)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
}

/// Cancels the token when the first frames arrive (so before the audio decode).
struct CancelOnFrames {
    token: CancelToken,
    frames: usize,
}

impl GenerationSink for CancelOnFrames {
    fn step(&mut self, _step: u32, _total: u32) {}
    fn frames(&mut self, frames: Vec<Frame>) {
        self.frames += frames.len();
        self.token.cancel();
    }
}

#[test]
fn cancel_is_checked_before_the_audio_decode() {
    let (_dir, mut p) = tiny_pipeline();
    let token = CancelToken::new();
    let mut sink = CancelOnFrames {
        token: token.clone(),
        frames: 0,
    };
    assert_eq!(
        p.generate(&request(1), &mut sink, &token),
        Err(GenerateError::Cancelled)
    );
    assert_eq!(sink.frames, 9, "frames go out before the audio is decoded");
}

#[test]
fn missing_or_mismatched_components_are_named() {
    let (dir, _) = tiny_pipeline();
    std::fs::rename(dir.path().join("audio_vae"), dir.path().join("moved")).unwrap();
    let err = Ltx2Pipeline::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audio_vae"), "{err}");
    std::fs::rename(dir.path().join("moved"), dir.path().join("audio_vae")).unwrap();

    // A vocoder file with one tensor of the wrong shape: the error names the file and tensor.
    let file = dir.path().join("vocoder").join(tiny::WEIGHTS_FILE);
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    tensors.insert(
        "conv_out.bias".into(),
        Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let err = Ltx2Pipeline::load(dir.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv_out.bias") && err.contains("vocoder"),
        "{err}"
    );

    // A transformer whose caption width differs from the connectors': a config error.
    let (dir, _) = tiny_pipeline();
    let cfg = dir.path().join("connectors").join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "\"connector_rope_base_seq_len\": 32",
        "\"connector_rope_base_seq_len\": 0",
    );
    std::fs::write(&cfg, text).unwrap();
    assert!(Ltx2Pipeline::load(dir.path(), &Device::Cpu).is_err());
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
    let file = dir.path().join("vae").join(tiny::WEIGHTS_FILE);
    // Keep the encoder's tensors, replace the decoder's by a conditioned decoder's.
    let mut tensors: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(&file, &Device::Cpu)
            .unwrap()
            .into_iter()
            .filter(|(k, _)| k.starts_with("encoder."))
            .collect();
    tensors.extend(tiny::random_weights(&names, candle_core::DType::F32, &Device::Cpu, 9).unwrap());
    tensors.insert(
        "decoder.timestep_scale_multiplier".into(),
        Tensor::new(1000f32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &file).unwrap();
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
