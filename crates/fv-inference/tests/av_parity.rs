//! Parity of the joint audio-video transformer with the reference (diffusers 0.42.1, torch
//! 2.9.1, f32 CPU), from fixtures made by `scripts/make_audio_fixtures.py`: video 4 heads × 16,
//! audio 2 heads × 12 (so the cross-attention RoPE splits by different head counts on its two
//! sides), 105 video tokens (3×5×7 grid, fps 25), 17 audio tokens, batch 2, padded text for
//! both streams, per-token timesteps for both, and a gate-timestep factor of 1/1000.
#![allow(clippy::unwrap_used)]

mod common;
use common::{fixture, max_abs_diff};

use candle_core::{D, DType, Device, Tensor};
use fv_inference::rope::{
    AudioCoords, VideoCoords, audio_rope_tables, cross_attention_rope_tables,
};
use fv_inference::transformer::{AvInputs, AvOptions, CrossTimestep, Timesteps};
use fv_inference::{
    AudioVaeConfig, AudioVaeDecoder, Component, Ltx2VideoTransformer, TransformerConfig, Vocoder,
    VocoderConfig, Weights,
};
use std::collections::HashMap;

const TOL: f32 = 1e-4;

struct Tiny {
    cfg: TransformerConfig,
    grid: (usize, usize, usize),
    fps: f32,
    audio_frames: usize,
    t: HashMap<String, Tensor>,
}

fn tiny() -> Tiny {
    let text = std::fs::read_to_string(fixture("transformer_av_tiny.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg = TransformerConfig::from_json(&json["model"].to_string()).expect("config parses");
    cfg.validate_audio().expect("audio config is valid");
    let f = &json["forward"];
    let get = |k: &str| f[k].as_u64().unwrap() as usize;
    Tiny {
        cfg,
        grid: (get("num_frames"), get("height"), get("width")),
        fps: f["fps"].as_f64().unwrap() as f32,
        audio_frames: get("audio_frames"),
        t: candle_core::safetensors::load(fixture("transformer_av_tiny.safetensors"), &Device::Cpu)
            .unwrap(),
    }
}

impl Tiny {
    fn weights(&self) -> Weights {
        self.weights_edited(|_, t| t.clone())
    }

    /// The fixture's weights (Lightricks names), each passed through `edit(canonical name, tensor)`.
    fn weights_edited(&self, edit: impl Fn(&str, &Tensor) -> Tensor) -> Weights {
        Weights::from_tensors(
            self.t
                .iter()
                .filter(|(k, _)| k.starts_with("model.diffusion_model."))
                .map(|(k, v)| {
                    let canonical = fv_inference::canonical_transformer_name(k).unwrap();
                    (k.clone(), edit(&canonical, v))
                }),
        )
        .unwrap()
    }

    fn coords(&self) -> (VideoCoords, AudioCoords) {
        let (f, h, w) = self.grid;
        (
            VideoCoords::for_latent_grid(&self.cfg, f, h, w, self.fps).unwrap(),
            AudioCoords::for_latent_frames(&self.cfg, self.audio_frames, 0).unwrap(),
        )
    }

    fn timesteps(&self, key: &str) -> Timesteps {
        Timesteps::PerToken(self.t[key].to_vec2().unwrap())
    }

    fn cross(&self) -> CrossTimestep {
        CrossTimestep::Cross {
            video: self.t["input.sigma"].to_vec1().unwrap(),
            audio: self.t["input.audio_sigma"].to_vec1().unwrap(),
        }
    }

    /// Runs `model` on the fixture inputs with `options` and audio `coords`.
    fn run(
        &self,
        model: &Ltx2VideoTransformer,
        options: &AvOptions,
        audio: &AudioCoords,
    ) -> (Tensor, Tensor) {
        let (video, _) = self.coords();
        let rope = model.av_rope_tables(&video, audio).unwrap();
        let (vt, at) = (
            self.timesteps("input.timestep"),
            self.timesteps("input.audio_timestep"),
        );
        let inputs = AvInputs {
            video: &self.t["input.video"],
            video_timesteps: &vt,
            video_text: &self.t["input.video_text"],
            video_text_mask: Some(&self.t["input.video_mask"]),
            audio: &self.t["input.audio"],
            audio_timesteps: &at,
            audio_text: &self.t["input.audio_text"],
            audio_text_mask: Some(&self.t["input.audio_mask"]),
        };
        model.forward_av(&inputs, &rope, options).unwrap()
    }

    /// Max abs error of (video, audio) against reference case `case`.
    fn err(&self, out: &(Tensor, Tensor), case: &str) -> (f32, f32) {
        (
            max_abs_diff(&out.0, &self.t[&format!("output.{case}.video")]),
            max_abs_diff(&out.1, &self.t[&format!("output.{case}.audio")]),
        )
    }
}

fn options(isolate: bool, cross: CrossTimestep) -> AvOptions {
    AvOptions {
        isolate_modalities: isolate,
        cross_timestep: cross,
    }
}

#[test]
fn audio_and_cross_attention_rope_match_reference() {
    let t = tiny();
    let (video, audio) = t.coords();
    let want: Vec<Vec<f32>> = t.t["rope.audio_coords"].to_vec2().unwrap();
    let got: Vec<Vec<f32>> = audio.coords.iter().map(|c| c.to_vec()).collect();
    assert_eq!(got, want, "audio coordinates (seconds) must match exactly");
    let (a_cos, a_sin) = audio_rope_tables(&t.cfg, &audio, &Device::Cpu).unwrap();
    let ((v_cos, v_sin), (c_cos, c_sin)) =
        cross_attention_rope_tables(&t.cfg, &video, &audio, &Device::Cpu).unwrap();
    for (key, cos, sin) in [
        ("audio", a_cos, a_sin),
        ("ca_video", v_cos, v_sin),
        ("ca_audio", c_cos, c_sin),
    ] {
        let ec = max_abs_diff(&cos, &t.t[&format!("rope.{key}.cos")]);
        let es = max_abs_diff(&sin, &t.t[&format!("rope.{key}.sin")]);
        println!("rope {key}: cos {ec:e}, sin {es:e}");
        assert!(ec <= 1e-6 && es <= 1e-6, "{key}: cos {ec}, sin {es}");
    }
}

#[test]
fn av_transformer_forward_matches_reference() {
    let t = tiny();
    let w = t.weights();
    // every fixture weight is consumed, none is missing
    let mut expected: Vec<String> = Ltx2VideoTransformer::expected_av_weights(&t.cfg)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    expected.sort();
    assert_eq!(w.names(), expected);
    let model = Ltx2VideoTransformer::new_av(&t.cfg, &w, &Device::Cpu).unwrap();
    assert!(model.has_audio());
    let (_, audio) = t.coords();
    for (case, opts) in [
        ("own", options(false, CrossTimestep::Own)),
        ("cross", options(false, t.cross())),
        ("isolated", options(true, CrossTimestep::Own)),
    ] {
        let started = std::time::Instant::now();
        let out = t.run(&model, &opts, &audio);
        let elapsed = started.elapsed();
        let (ev, ea) = t.err(&out, case);
        println!(
            "av transformer ({case}): max abs err video {ev:e}, audio {ea:e}, {elapsed:?} (tiny, CPU)"
        );
        assert!(ev <= TOL && ea <= TOL, "{case}: video {ev}, audio {ea}");
        assert_eq!(out.1.dims(), &[2, t.audio_frames, 8]);
    }
}

#[test]
fn video_only_model_equals_the_isolated_reference() {
    // The video-only path (what the pipeline runs today) is the reference's isolate_modalities
    // video output, here from a model whose weights include the audio stream.
    let t = tiny();
    let model = Ltx2VideoTransformer::new(&t.cfg, &t.weights(), &Device::Cpu).unwrap();
    assert!(!model.has_audio());
    let (video, _) = t.coords();
    let out = model
        .forward(
            &t.t["input.video"],
            &t.timesteps("input.timestep"),
            &t.t["input.video_text"],
            Some(&t.t["input.video_mask"]),
            &video,
        )
        .unwrap();
    let err = max_abs_diff(&out, &t.t["output.isolated.video"]);
    println!("video-only forward vs isolated reference: {err:e}");
    assert!(err <= TOL, "{err}");
}

/// Swaps rows (0, 1) and (2, 3) of a `[n, d]` table, or the matching `d`-row chunks of an
/// AdaLN linear producing `4·d` values: what reading "shift, scale" instead of "scale, shift"
/// amounts to.
fn swap_scale_shift(x: &Tensor, chunk: usize) -> Tensor {
    let part = |i: usize| x.narrow(0, i * chunk, chunk).unwrap();
    let mut parts = vec![part(1), part(0), part(3), part(2)];
    let n = x.dim(0).unwrap() / chunk;
    parts.extend((4..n).map(part));
    Tensor::cat(&parts, 0).unwrap()
}

#[test]
fn av_parity_catches_plausible_mistakes() {
    let t = tiny();
    let model = Ltx2VideoTransformer::new_av(&t.cfg, &t.weights(), &Device::Cpu).unwrap();
    let (_, audio) = t.coords();
    let own = options(false, CrossTimestep::Own);
    let mut report = Vec::new();
    let mut check = |what: &str, out: (Tensor, Tensor), case: &str| {
        let (ev, ea) = t.err(&out, case);
        report.push(format!("{what}: video {ev:.3e}, audio {ea:.3e}"));
        assert!(
            ev.max(ea) > 1e-2,
            "{what} moved the output by only {ev} / {ea}"
        );
    };

    // 1. shift before scale in the a2v/v2a modulation (tables and global AdaLN outputs)
    let (dim, adim) = (t.cfg.inner_dim(), t.cfg.audio_inner_dim());
    let swapped = t.weights_edited(|name, x| {
        if name.ends_with("a2v_cross_attn_scale_shift_table") {
            swap_scale_shift(x, 1)
        } else if name.starts_with("av_cross_attn_video_scale_shift.linear") {
            swap_scale_shift(x, dim)
        } else if name.starts_with("av_cross_attn_audio_scale_shift.linear") {
            swap_scale_shift(x, adim)
        } else {
            x.clone()
        }
    });
    let m = Ltx2VideoTransformer::new_av(&t.cfg, &swapped, &Device::Cpu).unwrap();
    check("shift before scale", t.run(&m, &own, &audio), "own");

    // 2. audio RoPE positions in latent frames instead of seconds
    let frames = AudioCoords {
        coords: (0..t.audio_frames)
            .map(|f| [f as f32, f as f32 + 1.0])
            .collect(),
    };
    check("audio RoPE in frames", t.run(&model, &own, &frames), "own");

    // 3. use_cross_timestep with the two modalities' sigmas swapped
    let CrossTimestep::Cross { video, audio: a } = t.cross() else {
        unreachable!()
    };
    let swapped_sigmas = options(
        false,
        CrossTimestep::Cross {
            video: a,
            audio: video,
        },
    );
    check(
        "cross timestep swapped",
        t.run(&model, &swapped_sigmas, &audio),
        "cross",
    );

    // 4. use_cross_timestep ignored (own timesteps where the reference used the other sigma)
    check(
        "cross timestep ignored",
        t.run(&model, &own, &audio),
        "cross",
    );

    // 5. the a2v/v2a gate timestep factor (1/1000 here) not applied
    let mut unit = t.cfg.clone();
    unit.cross_attn_timestep_scale_multiplier = unit.timestep_scale_multiplier;
    let m = Ltx2VideoTransformer::new_av(&unit, &t.weights(), &Device::Cpu).unwrap();
    check("gate factor ignored", t.run(&m, &own, &audio), "own");

    // 6. cross-attention left out (isolated) where the reference ran it
    check(
        "cross-attention skipped",
        t.run(&model, &options(true, CrossTimestep::Own), &audio),
        "own",
    );
    for line in report {
        println!("mutation {line}");
    }
}

#[test]
fn forward_av_rejects_inputs_that_disagree() {
    let t = tiny();
    let model = Ltx2VideoTransformer::new_av(&t.cfg, &t.weights(), &Device::Cpu).unwrap();
    let (video, audio) = t.coords();
    let rope = model.av_rope_tables(&video, &audio).unwrap();
    let vt = Timesteps::PerSample(vec![500.0, 20.0]);
    let at = Timesteps::PerSample(vec![400.0, 30.0]);
    let good = AvInputs {
        video: &t.t["input.video"],
        video_timesteps: &vt,
        video_text: &t.t["input.video_text"],
        video_text_mask: None,
        audio: &t.t["input.audio"],
        audio_timesteps: &at,
        audio_text: &t.t["input.audio_text"],
        audio_text_mask: None,
    };
    let (v, a) = model
        .forward_av(&good, &rope, &AvOptions::default())
        .unwrap();
    assert_eq!(v.dims(), good.video.dims());
    assert_eq!(a.dims(), good.audio.dims());
    let finite = |x: &Tensor| {
        x.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .all(|v| v.is_finite())
    };
    assert!(finite(&v) && finite(&a));

    let short_audio = t.t["input.audio"].narrow(1, 0, 5).unwrap();
    let wide_audio = Tensor::zeros((2, t.audio_frames, 9), DType::F32, &Device::Cpu).unwrap();
    let bad_ts = Timesteps::PerToken(vec![vec![1.0; 3]; 2]);
    let nan_ts = Timesteps::PerSample(vec![f32::NAN, 1.0]);
    let bad_mask = Tensor::ones((2, 4), DType::F32, &Device::Cpu).unwrap();
    let narrow_text = t.t["input.audio_text"].narrow(D::Minus1, 0, 8).unwrap();
    let cases: Vec<(&str, AvInputs, AvOptions)> = vec![
        (
            "audio tokens",
            AvInputs {
                audio: &short_audio,
                ..good
            },
            AvOptions::default(),
        ),
        (
            "audio channels",
            AvInputs {
                audio: &wide_audio,
                ..good
            },
            AvOptions::default(),
        ),
        (
            "audio timesteps",
            AvInputs {
                audio_timesteps: &bad_ts,
                ..good
            },
            AvOptions::default(),
        ),
        (
            "audio nan",
            AvInputs {
                audio_timesteps: &nan_ts,
                ..good
            },
            AvOptions::default(),
        ),
        (
            "audio mask",
            AvInputs {
                audio_text_mask: Some(&bad_mask),
                ..good
            },
            AvOptions::default(),
        ),
        (
            "audio text",
            AvInputs {
                audio_text: &narrow_text,
                ..good
            },
            AvOptions::default(),
        ),
        (
            "cross sigma",
            good,
            options(
                false,
                CrossTimestep::Cross {
                    video: vec![1.0],
                    audio: vec![1.0, 2.0],
                },
            ),
        ),
    ];
    for (what, inputs, opts) in cases {
        let err = model.forward_av(&inputs, &rope, &opts);
        assert!(err.is_err(), "{what} accepted");
    }
    // a video-only model says how to get the audio stream
    let video_only = Ltx2VideoTransformer::new(&t.cfg, &t.weights(), &Device::Cpu).unwrap();
    let err = video_only
        .forward_av(&good, &rope, &AvOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("new_av"), "{err}");
    assert!(AudioCoords::for_latent_frames(&t.cfg, 0, 0).is_err());
}

#[test]
fn audio_configs_the_joint_forward_cannot_honour_are_rejected() {
    let t = tiny();
    type Edit = Box<dyn Fn(&mut TransformerConfig)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "odd audio head",
            Box::new(|c| c.audio_attention_head_dim = 7),
        ),
        (
            "audio text width",
            Box::new(|c| c.audio_cross_attention_dim += 2),
        ),
        ("gated", Box::new(|c| c.audio_gated_attn = true)),
        ("ff bias", Box::new(|c| c.audio_ff_bias = false)),
        (
            "multiplier",
            Box::new(|c| c.timestep_scale_multiplier = 0.0),
        ),
        ("hop", Box::new(|c| c.audio_hop_length = 0)),
        // 24 channels cannot split into an even width per head for 8 video heads
        (
            "cross rope split",
            Box::new(|c| {
                c.num_attention_heads = 8;
                c.attention_head_dim = 8;
                c.cross_attention_dim = 64;
            }),
        ),
    ];
    for (what, edit) in cases {
        let mut c = t.cfg.clone();
        edit(&mut c);
        assert!(c.validate_audio().is_err(), "{what} accepted");
        assert!(Ltx2VideoTransformer::new_av(&c, &t.weights(), &Device::Cpu).is_err());
    }
    TransformerConfig::ltx2_19b().validate_audio().unwrap();
}

#[test]
fn av_model_loads_from_files_in_both_layouts_and_names_bad_ones() {
    let t = tiny();
    let dir = tempfile::tempdir().unwrap();
    let (_, audio) = t.coords();
    let own = options(false, CrossTimestep::Own);
    let transformer: HashMap<String, Tensor> =
        t.t.iter()
            .filter(|(k, _)| k.starts_with("model.diffusion_model."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

    // diffusers folder: transformer/ with diffusers names
    let diffusers: HashMap<String, Tensor> = transformer
        .iter()
        .map(|(k, v)| {
            (
                fv_inference::canonical_transformer_name(k).unwrap(),
                v.clone(),
            )
        })
        .collect();
    std::fs::create_dir_all(dir.path().join("transformer")).unwrap();
    let folder = dir
        .path()
        .join("transformer/diffusion_pytorch_model.safetensors");
    candle_core::safetensors::save(&diffusers, &folder).unwrap();
    let w = Weights::load_transformer(&[folder.as_path()], DType::F32, &Device::Cpu).unwrap();
    let model = Ltx2VideoTransformer::new_av(&t.cfg, &w, &Device::Cpu).unwrap();
    let (ev, ea) = t.err(&t.run(&model, &own, &audio), "own");
    assert!(ev <= TOL && ea <= TOL, "diffusers folder: {ev} / {ea}");

    // the Lightricks single file: transformer, audio VAE and vocoder side by side, read once
    let mut single = transformer.clone();
    let fixture_tensors =
        |name: &str| candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap();
    let (vae_t, voc_t) = (
        fixture_tensors("audio_vae_tiny.safetensors"),
        fixture_tensors("vocoder_tiny.safetensors"),
    );
    single.extend(
        vae_t
            .into_iter()
            .filter(|(k, _)| k.starts_with("audio_vae.")),
    );
    single.extend(voc_t.into_iter().filter(|(k, _)| k.starts_with("vocoder.")));
    let file = dir.path().join("ltx-2-tiny.safetensors");
    candle_core::safetensors::save(&single, &file).unwrap();
    let stores = Weights::load_many(
        &[file.as_path()],
        DType::F32,
        &Device::Cpu,
        &[
            Component::Transformer,
            Component::AudioVae,
            Component::Vocoder,
        ],
    )
    .unwrap();
    let model = Ltx2VideoTransformer::new_av(&t.cfg, &stores[0], &Device::Cpu).unwrap();
    let (ev, ea) = t.err(&t.run(&model, &own, &audio), "own");
    assert!(ev <= TOL && ea <= TOL, "single file: {ev} / {ea}");
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
    };
    let vae_cfg =
        AudioVaeConfig::from_json(&json("audio_vae_tiny.json")["config"].to_string()).unwrap();
    let voc_cfg =
        VocoderConfig::from_json(&json("vocoder_tiny.json")["config"].to_string()).unwrap();
    AudioVaeDecoder::new(&vae_cfg, &stores[1]).unwrap();
    Vocoder::new(&voc_cfg, &stores[2]).unwrap();
    assert_eq!(stores[0].len(), transformer.len());

    // a wrong-shaped audio tensor and a missing one are named
    let key = "model.diffusion_model.transformer_blocks.1.audio_to_video_attn.to_k.weight";
    let mut bad = transformer.clone();
    bad.insert(
        key.into(),
        Tensor::zeros((24, 23), DType::F32, &Device::Cpu).unwrap(),
    );
    let w = Weights::from_tensors(bad).unwrap();
    let err = Ltx2VideoTransformer::new_av(&t.cfg, &w, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transformer_blocks.1.audio_to_video_attn.to_k.weight")
            && err.contains("[24, 23]"),
        "{err}"
    );
    let mut missing = transformer;
    missing.remove("model.diffusion_model.audio_adaln_single.linear.bias");
    let w = Weights::from_tensors(missing).unwrap();
    let err = Ltx2VideoTransformer::new_av(&t.cfg, &w, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("audio_time_embed.linear.bias"), "{err}");
    // ... but the video-only model does not need it
    Ltx2VideoTransformer::new(&t.cfg, &w, &Device::Cpu).unwrap();
}
