//! Parity with the reference implementation (diffusers 0.42.1, torch 2.9.1, f32 CPU), from
//! fixtures made by `scripts/make_fixtures.py`.
#![allow(clippy::unwrap_used)]

mod common;
use common::{fixture, max_abs_diff};

use candle_core::{DType, Device, Tensor};
use fv_inference::rope::{VideoCoords, split_rope_tables};
use fv_inference::transformer::Timesteps;
use fv_inference::{
    FlowMatchEulerScheduler, Ltx2VideoTransformer, SchedulerConfig, TransformerConfig, Weights,
    canonical_transformer_name,
};
use std::collections::HashMap;

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).expect("fixture loads")
}

struct Tiny {
    cfg: TransformerConfig,
    frames: usize,
    height: usize,
    width: usize,
    fps: f32,
    tensors: HashMap<String, Tensor>,
}

fn tiny() -> Tiny {
    let text = std::fs::read_to_string(fixture("transformer_tiny.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg = TransformerConfig::from_json(&json["model"].to_string()).expect("config parses");
    let f = &json["forward"];
    let get = |k: &str| f[k].as_u64().unwrap() as usize;
    Tiny {
        cfg,
        frames: get("num_frames"),
        height: get("height"),
        width: get("width"),
        fps: f["fps"].as_f64().unwrap() as f32,
        tensors: load("transformer_tiny.safetensors"),
    }
}

#[test]
fn rope_coords_and_tables_match_reference() {
    let t = tiny();
    let coords = VideoCoords::for_latent_grid(&t.cfg, t.frames, t.height, t.width, t.fps).unwrap();
    // reference coords: [B, 3, T, 2]
    let want = t.tensors["rope.coords"].get(0).unwrap();
    let mut got = Vec::new();
    for axis in &coords.coords {
        for [s, e] in axis {
            got.extend([*s, *e]);
        }
    }
    let got = Tensor::from_vec(got, want.dims(), &Device::Cpu).unwrap();
    let coord_err = max_abs_diff(&got, &want);
    assert_eq!(coord_err, 0.0, "coordinates must match exactly");

    let (cos, sin) = split_rope_tables(&t.cfg, &coords, &Device::Cpu).unwrap();
    let want_cos = t.tensors["rope.cos"].narrow(0, 0, 1).unwrap();
    let want_sin = t.tensors["rope.sin"].narrow(0, 0, 1).unwrap();
    let (ec, es) = (max_abs_diff(&cos, &want_cos), max_abs_diff(&sin, &want_sin));
    println!("rope: max abs err cos {ec:e}, sin {es:e}");
    assert!(
        ec <= 1e-6 && es <= 1e-6,
        "rope tables differ: cos {ec}, sin {es}"
    );
}

#[test]
fn transformer_forward_matches_reference() {
    let t = tiny();
    let weights = Weights::from_tensors(
        t.tensors
            .iter()
            .filter(|(k, _)| k.starts_with("model.diffusion_model."))
            .map(|(k, v)| (k.clone(), v.clone())),
    )
    .unwrap();
    // every fixture weight is consumed, none is missing
    let expected = Ltx2VideoTransformer::expected_weights(&t.cfg);
    let mut expected_names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    expected_names.sort_unstable();
    assert_eq!(weights.names(), expected_names);

    let model = Ltx2VideoTransformer::new(&t.cfg, &weights, &Device::Cpu).unwrap();
    let coords = VideoCoords::for_latent_grid(&t.cfg, t.frames, t.height, t.width, t.fps).unwrap();
    let ts: Vec<Vec<f32>> = t.tensors["input.timestep"].to_vec2().unwrap();
    let started = std::time::Instant::now();
    let out = model
        .forward(
            &t.tensors["input.hidden_states"],
            &Timesteps::PerToken(ts),
            &t.tensors["input.encoder_hidden_states"],
            Some(&t.tensors["input.encoder_attention_mask"]),
            &coords,
        )
        .unwrap();
    let elapsed = started.elapsed();
    let err = max_abs_diff(&out, &t.tensors["output.sample"]);
    println!("transformer forward: max abs err {err:e}, {elapsed:?} (tiny, CPU)");
    assert!(err <= 1e-4, "transformer output differs by {err}");
}

#[test]
fn transformer_parity_is_sensitive_to_the_text_mask() {
    // Guards the test above against a mask that does nothing: dropping it must move the
    // output far beyond the tolerance.
    let t = tiny();
    let weights = Weights::from_tensors(
        t.tensors
            .iter()
            .filter(|(k, _)| k.starts_with("model.diffusion_model."))
            .map(|(k, v)| (k.clone(), v.clone())),
    )
    .unwrap();
    let model = Ltx2VideoTransformer::new(&t.cfg, &weights, &Device::Cpu).unwrap();
    let coords = VideoCoords::for_latent_grid(&t.cfg, t.frames, t.height, t.width, t.fps).unwrap();
    let ts: Vec<Vec<f32>> = t.tensors["input.timestep"].to_vec2().unwrap();
    let out = model
        .forward(
            &t.tensors["input.hidden_states"],
            &Timesteps::PerToken(ts),
            &t.tensors["input.encoder_hidden_states"],
            None,
            &coords,
        )
        .unwrap();
    let err = max_abs_diff(&out, &t.tensors["output.sample"]);
    assert!(
        err > 1e-2,
        "ignoring the mask changed the output by only {err}"
    );
}

fn sched_case(name: &str) -> (SchedulerConfig, Vec<f32>, Option<f64>) {
    let text = std::fs::read_to_string(fixture("scheduler.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = &json[name];
    let cfg: SchedulerConfig = serde_json::from_value(case.clone()).unwrap();
    let sigmas: Vec<f32> = case["sigmas_in"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let mu = case["seq_len"]
        .as_u64()
        .map(|n| cfg.mu_for_seq_len(n as usize));
    if let Some(mu) = mu {
        let want = case["mu"].as_f64().unwrap();
        assert!((mu - want).abs() < 1e-12, "mu {mu} vs {want}");
    }
    (cfg, sigmas, mu)
}

fn check_scheduler(name: &str) {
    let (cfg, sigmas, mu) = sched_case(name);
    let sched = FlowMatchEulerScheduler::new(&cfg, &sigmas, mu).unwrap();
    let t = load("scheduler.safetensors");
    let want_sigmas: Vec<f32> = t[&format!("{name}.sigmas")].to_vec1().unwrap();
    let want_ts: Vec<f32> = t[&format!("{name}.timesteps")].to_vec1().unwrap();
    assert_eq!(sched.sigmas(), want_sigmas.as_slice(), "{name} sigmas");
    assert_eq!(sched.timesteps(), want_ts.as_slice(), "{name} timesteps");
    let mut sample = t[&format!("{name}.sample0")].clone();
    let mut worst = 0f32;
    for i in 0..sched.num_steps() {
        sample = sched
            .step(i, &sample, &t[&format!("{name}.velocity{i}")])
            .unwrap();
        worst = worst.max(max_abs_diff(
            &sample,
            &t[&format!("{name}.sample{}", i + 1)],
        ));
    }
    println!(
        "scheduler {name}: {} steps, max abs err {worst:e}",
        sched.num_steps()
    );
    assert!(worst <= 1e-6, "{name}: steps differ by {worst}");
}

#[test]
fn distilled_scheduler_matches_reference() {
    check_scheduler("distilled");
    let d = FlowMatchEulerScheduler::distilled().unwrap();
    assert_eq!(d.num_steps(), 8);
    assert_eq!(d.timesteps()[0], 1000.0);
    assert_eq!(d.sigmas().last(), Some(&0.0));
}

#[test]
fn shifted_scheduler_matches_reference() {
    check_scheduler("shifted");
}

#[test]
fn model_loads_from_a_safetensors_file_in_lightricks_names() {
    let t = tiny();
    let path = fixture("transformer_tiny.safetensors");
    let w = Weights::load_transformer(&[path.as_path()], DType::F32, &Device::Cpu).unwrap();
    let model = Ltx2VideoTransformer::new(&t.cfg, &w, &Device::Cpu).unwrap();
    assert_eq!(model.config(), &t.cfg);
    // a config that disagrees with the file fails with the tensor's name, not a panic
    let mut wide = t.cfg.clone();
    wide.caption_channels += 1;
    let err = Ltx2VideoTransformer::new(&wide, &w, &Device::Cpu).unwrap_err();
    assert!(
        err.to_string()
            .contains("caption_projection.linear_1.weight"),
        "{err}"
    );
    let mut deep = t.cfg.clone();
    deep.num_layers += 1;
    let err = Ltx2VideoTransformer::new(&deep, &w, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("transformer_blocks.2."), "{err}");
}

#[test]
fn rename_map_accepts_every_spelling_of_every_reference_name() {
    // [diffusers name, Lightricks name, shape] for every parameter of the reference class
    // (audio included); the Lightricks names were checked against diffusers' converter.
    let text = std::fs::read_to_string(fixture("transformer_names.json")).unwrap();
    let rows: Vec<(String, String, Vec<usize>)> = serde_json::from_str(&text).unwrap();
    assert!(rows.len() > 100);
    for (diffusers, lightricks, _) in &rows {
        let bare = lightricks.strip_prefix("model.diffusion_model.").unwrap();
        for spelling in [
            diffusers.clone(),
            lightricks.clone(),
            bare.to_string(),
            format!("diffusion_model.{bare}"),
            format!("model.{bare}"),
        ] {
            assert_eq!(
                canonical_transformer_name(&spelling).as_deref(),
                Some(diffusers.as_str()),
                "{spelling}"
            );
        }
    }
    // the video stream reads a subset of the reference's names, with the same shapes
    let t = tiny();
    let by_name: HashMap<&str, &Vec<usize>> =
        rows.iter().map(|(d, _, s)| (d.as_str(), s)).collect();
    for (name, shape) in Ltx2VideoTransformer::expected_weights(&t.cfg) {
        assert_eq!(by_name.get(name.as_str()), Some(&&shape), "{name}");
    }
    // other components of the single file are skipped
    for other in [
        "vae.decoder.conv_in.conv.weight",
        "audio_vae.per_channel_statistics.mean-of-means",
    ] {
        assert_eq!(canonical_transformer_name(other), None);
    }
}

#[test]
fn two_spellings_of_one_tensor_are_rejected() {
    let z = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
    let err = Weights::from_tensors([
        (
            "model.diffusion_model.patchify_proj.bias".to_string(),
            z.clone(),
        ),
        ("proj_in.bias".to_string(), z),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("proj_in.bias"), "{err}");
}

#[test]
fn configs_the_video_path_cannot_honour_are_rejected() {
    let t = tiny();
    type Edit = Box<dyn Fn(&mut TransformerConfig)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "interleaved",
            Box::new(|c| c.rope_type = fv_inference::config::RopeType::Interleaved),
        ),
        ("gated", Box::new(|c| c.gated_attn = true)),
        (
            "cross_attention_dim",
            Box::new(|c| c.cross_attention_dim += 1),
        ),
        ("odd head", Box::new(|c| c.attention_head_dim = 15)),
        ("eps", Box::new(|c| c.norm_eps = 0.0)),
    ];
    for (what, edit) in cases {
        let mut c = t.cfg.clone();
        edit(&mut c);
        assert!(c.validate().is_err(), "{what} accepted");
    }
    assert!(TransformerConfig::from_json("{\"rope_type\": \"spiral\"}").is_err());
    // the released defaults are valid
    TransformerConfig::default().validate().unwrap();
}

#[test]
fn forward_rejects_inputs_that_disagree() {
    let t = tiny();
    let path = fixture("transformer_tiny.safetensors");
    let w = Weights::load_transformer(&[path.as_path()], DType::F32, &Device::Cpu).unwrap();
    let model = Ltx2VideoTransformer::new(&t.cfg, &w, &Device::Cpu).unwrap();
    let coords = VideoCoords::for_latent_grid(&t.cfg, t.frames, t.height, t.width, t.fps).unwrap();
    let x = &t.tensors["input.hidden_states"];
    let text = &t.tensors["input.encoder_hidden_states"];
    let short = VideoCoords::for_latent_grid(&t.cfg, 1, t.height, t.width, t.fps).unwrap();
    let ok_ts = Timesteps::PerSample(vec![500.0, 10.0]);
    assert!(model.forward(x, &ok_ts, text, None, &short).is_err());
    assert!(
        model
            .forward(x, &Timesteps::PerSample(vec![1.0]), text, None, &coords)
            .is_err()
    );
    assert!(
        model
            .forward(
                x,
                &Timesteps::PerSample(vec![f32::NAN, 1.0]),
                text,
                None,
                &coords
            )
            .is_err()
    );
    let bad_mask = Tensor::ones((2, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(
        model
            .forward(x, &ok_ts, text, Some(&bad_mask), &coords)
            .is_err()
    );
    assert!(VideoCoords::for_latent_grid(&t.cfg, 0, 1, 1, 24.0).is_err());
    assert!(VideoCoords::for_latent_grid(&t.cfg, 1, 1, 1, 0.0).is_err());
    // per-sample timesteps are accepted and give a finite result
    let out = model.forward(x, &ok_ts, text, None, &coords).unwrap();
    assert_eq!(out.dims(), x.dims());
}

#[test]
fn scheduler_rejects_bad_settings() {
    let cfg = SchedulerConfig::default();
    assert!(FlowMatchEulerScheduler::new(&cfg, &[], None).is_err());
    assert!(FlowMatchEulerScheduler::new(&cfg, &[1.5], None).is_err());
    let dynamic = SchedulerConfig {
        use_dynamic_shifting: true,
        ..SchedulerConfig::default()
    };
    assert!(FlowMatchEulerScheduler::new(&dynamic, &[1.0], None).is_err());
    let karras = SchedulerConfig {
        use_karras_sigmas: true,
        ..SchedulerConfig::default()
    };
    assert!(FlowMatchEulerScheduler::new(&karras, &[1.0], None).is_err());
    let d = FlowMatchEulerScheduler::distilled().unwrap();
    let x = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    assert!(d.step(8, &x, &x).is_err());
    let y = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    assert!(d.step(0, &x, &y).is_err());
}
