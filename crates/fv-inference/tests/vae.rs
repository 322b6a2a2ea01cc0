//! Parity of the video VAE decoder with the reference (diffusers 0.42.1, torch 2.9.1, f32
//! CPU), from the fixture made by `scripts/make_vae_fixtures.py`.
#![allow(clippy::unwrap_used)]

mod common;
use common::{fixture, max_abs_diff};

use candle_core::{Device, Tensor};
use fv_inference::{VaeConfig, VideoVaeDecoder, Weights, canonical_vae_name};
use std::collections::HashMap;

struct Tiny {
    cfg: VaeConfig,
    grid: (usize, usize, usize),
    names: Vec<(String, String)>,
    tensors: HashMap<String, Tensor>,
}

fn tiny() -> Tiny {
    load_tiny("vae_tiny")
}

/// `{name}.json` + `{name}.safetensors` from tests/fixtures.
fn load_tiny(name: &str) -> Tiny {
    let text = std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg = VaeConfig::from_json(&json["model"].to_string()).expect("config parses");
    let d = &json["decode"];
    let get = |k: &str| d[k].as_u64().unwrap() as usize;
    let names = json["names"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    Tiny {
        cfg,
        grid: (get("num_frames"), get("height"), get("width")),
        names,
        tensors: candle_core::safetensors::load(
            fixture(&format!("{name}.safetensors")),
            &Device::Cpu,
        )
        .unwrap(),
    }
}

fn weights(t: &Tiny) -> Weights {
    Weights::from_vae_tensors(
        t.tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("input.") && !k.starts_with("output."))
            .map(|(k, v)| (k.clone(), v.clone())),
    )
    .unwrap()
}

#[test]
fn vae_decode_matches_reference() {
    let t = tiny();
    let vae = VideoVaeDecoder::new(&t.cfg, &weights(&t)).unwrap();
    let (f, h, w) = t.grid;
    let out = vae
        .decode_tokens(&t.tensors["input.tokens"], f, h, w)
        .unwrap();
    let err = max_abs_diff(&out, &t.tensors["output.sample"]);
    println!("vae decode max abs error: {err:e}");
    assert!(err <= 1e-4, "max abs error {err}");
}

#[test]
fn vae_parity_is_sensitive_to_causality_and_denormalisation() {
    let t = tiny();
    let (f, h, w) = t.grid;
    let want = &t.tensors["output.sample"];
    let mut causal = t.cfg.clone();
    causal.decoder_causal = true;
    let vae = VideoVaeDecoder::new(&causal, &weights(&t)).unwrap();
    let out = vae
        .decode_tokens(&t.tensors["input.tokens"], f, h, w)
        .unwrap();
    assert!(
        max_abs_diff(&out, want) > 1e-2,
        "causal decoding must differ"
    );

    // Skipping de-normalisation (decoding the tokens as they are) must differ too.
    let vae = VideoVaeDecoder::new(&t.cfg, &weights(&t)).unwrap();
    let z = t.tensors["input.tokens"]
        .reshape((1, f, h, w, t.cfg.latent_channels))
        .unwrap()
        .permute((0, 4, 1, 2, 3))
        .unwrap()
        .contiguous()
        .unwrap();
    let out = vae.decode(&z).unwrap();
    assert!(max_abs_diff(&out, want) > 1e-2, "de-normalisation matters");
}

#[test]
fn vae_loads_from_lightricks_names() {
    let t = tiny();
    assert!(!t.names.is_empty());
    let renamed: Vec<(String, Tensor)> = t
        .names
        .iter()
        .map(|(diffusers, lightricks)| (lightricks.clone(), t.tensors[diffusers].clone()))
        .collect();
    for (diffusers, lightricks) in &t.names {
        assert_eq!(
            canonical_vae_name(lightricks).as_deref(),
            Some(diffusers.as_str())
        );
        assert_eq!(
            canonical_vae_name(diffusers).as_deref(),
            Some(diffusers.as_str())
        );
    }
    // Tensors of other components in the single file are skipped.
    let mut all = renamed.clone();
    let z = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    for other in [
        "vae.encoder.conv_in.conv.weight",
        "vae.per_channel_statistics.mean-of-stds",
        "model.diffusion_model.proj_out.weight",
        "audio_vae.decoder.conv_in.weight",
    ] {
        assert_eq!(canonical_vae_name(other), None, "{other}");
        all.push((other.to_string(), z.clone()));
    }
    let w = Weights::from_vae_tensors(all).unwrap();
    let vae = VideoVaeDecoder::new(&t.cfg, &w).unwrap();
    let (f, h, g) = t.grid;
    let out = vae
        .decode_tokens(&t.tensors["input.tokens"], f, h, g)
        .unwrap();
    assert!(max_abs_diff(&out, &t.tensors["output.sample"]) <= 1e-4);
}

#[test]
fn vae_rejects_bad_inputs() {
    let t = tiny();
    let vae = VideoVaeDecoder::new(&t.cfg, &weights(&t)).unwrap();
    let (f, h, w) = t.grid;
    let tokens = &t.tensors["input.tokens"];
    assert!(vae.decode_tokens(tokens, f, h, w + 1).is_err());
    let one_row = Tensor::zeros(
        (1, t.cfg.latent_channels, 2, 1, 4),
        candle_core::DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert!(vae.decode(&one_row).is_err(), "reflect padding needs 2×2");
    let mut w2 = weights(&t);
    w2 = Weights::from_vae_tensors(
        w2.names()
            .into_iter()
            .filter(|n| *n != "latents_std")
            .map(|n| (n.to_string(), t.tensors[n].clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(VideoVaeDecoder::new(&t.cfg, &w2).is_err(), "missing weight");
}

#[test]
fn one_single_file_checkpoint_feeds_both_the_transformer_and_the_vae() {
    // A Lightricks-style single file: transformer tensors under `model.diffusion_model.`, VAE
    // tensors under `vae.`, plus tensors of other components that both loads must skip.
    let t = tiny();
    let transformer_file =
        candle_core::safetensors::load(fixture("transformer_tiny.safetensors"), &Device::Cpu)
            .unwrap();
    let mut single: HashMap<String, Tensor> = transformer_file
        .into_iter()
        .filter(|(k, _)| k.starts_with("model.diffusion_model."))
        .collect();
    let transformer_count = single.len();
    for (diffusers, lightricks) in &t.names {
        single.insert(lightricks.clone(), t.tensors[diffusers].clone());
    }
    let z = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
    single.insert("audio_vae.decoder.conv_in.weight".into(), z.clone());
    single.insert("vae.encoder.conv_in.conv.weight".into(), z);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ltx-2-tiny.safetensors");
    candle_core::safetensors::save(&single, &path).unwrap();

    let (tw, vw) =
        Weights::load_transformer_and_vae(&[path.as_path()], candle_core::DType::F32, &Device::Cpu)
            .unwrap();
    assert_eq!(tw.len(), transformer_count);
    assert_eq!(vw.len(), t.names.len());
    // The VAE half decodes exactly like the fixture's own weights.
    let vae = VideoVaeDecoder::new(&t.cfg, &vw).unwrap();
    let (f, h, g) = t.grid;
    let out = vae
        .decode_tokens(&t.tensors["input.tokens"], f, h, g)
        .unwrap();
    assert!(max_abs_diff(&out, &t.tensors["output.sample"]) <= 1e-4);
    // Reading both from one file equals reading each on its own, and bf16 conversion happens
    // on the way in.
    let alone =
        Weights::load_vae(&[path.as_path()], candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(alone.len(), vw.len());
    let (tb, _) = Weights::load_transformer_and_vae(
        &[path.as_path()],
        candle_core::DType::BF16,
        &Device::Cpu,
    )
    .unwrap();
    // The tiny transformer is 4 heads x 16 = 64 wide.
    let bias = tb.get("proj_in.bias", &[64]).unwrap();
    assert_eq!(bias.dtype(), candle_core::DType::BF16);
    // A file that is not safetensors is a clear error naming it.
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a safetensors file").unwrap();
    let err = Weights::load_vae(&[bad.as_path()], candle_core::DType::F32, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.safetensors"), "{err}");
}

#[test]
fn timestep_conditioned_decoder_matches_reference() {
    // FastVideo's setting: per-block timestep embedders, per-resnet scale/shift tables, a final
    // table and the timestep multiplier.
    let t = load_tiny("vae_tiny_tc");
    assert!(t.cfg.timestep_conditioning);
    let text = std::fs::read_to_string(fixture("vae_tiny_tc.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let timestep = json["decode"]["timestep"].as_f64().unwrap() as f32;
    let w = weights(&t);
    // The decoder reads exactly the reference's decoder tensors, no more, no fewer.
    let mut expected: Vec<String> = VideoVaeDecoder::expected_weights(&t.cfg)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    expected.sort();
    let mut present: Vec<String> = w.names().into_iter().map(str::to_string).collect();
    present.sort();
    assert_eq!(expected, present);

    let (f, h, g) = t.grid;
    let decode = |ts: f32| {
        VideoVaeDecoder::new(&t.cfg, &w)
            .unwrap()
            .with_decode_timestep(ts)
            .unwrap()
            .decode_tokens(&t.tensors["input.tokens"], f, h, g)
            .unwrap()
    };
    let out = decode(timestep);
    let err = max_abs_diff(&out, &t.tensors["output.sample"]);
    println!("vae (timestep-conditioned, t = {timestep}) decode max abs error: {err:e}");
    assert!(err <= 1e-4, "differs by {err}");
    let at_zero = decode(0.0);
    assert!(max_abs_diff(&at_zero, &t.tensors["output.sample_t0"]) <= 1e-4);
    assert!(
        max_abs_diff(&out, &at_zero) > 1e-2,
        "the timestep must matter"
    );
    assert!(
        VideoVaeDecoder::new(&t.cfg, &w)
            .unwrap()
            .with_decode_timestep(f32::NAN)
            .is_err()
    );
    // A conditioned config without its embedder weights is a load error naming the tensor.
    let partial = Weights::from_vae_tensors(
        t.tensors
            .iter()
            .filter(|(k, _)| k.starts_with("decoder.") && !k.contains("time_embedder"))
            .map(|(k, v)| (k.clone(), v.clone())),
    )
    .unwrap();
    let err = VideoVaeDecoder::new(&t.cfg, &partial)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("time_embedder") || err.contains("latents"),
        "{err}"
    );
    // The original checkpoints' `last_*` names map onto the decoder-level embedder and table.
    assert_eq!(
        canonical_vae_name("vae.decoder.last_time_embedder.timestep_embedder.linear_1.weight")
            .as_deref(),
        Some("decoder.time_embedder.timestep_embedder.linear_1.weight")
    );
    assert_eq!(
        canonical_vae_name("vae.decoder.last_scale_shift_table").as_deref(),
        Some("decoder.scale_shift_table")
    );
    assert_eq!(
        canonical_vae_name("vae.decoder.up_blocks.2.res_blocks.0.scale_shift_table").as_deref(),
        Some("decoder.up_blocks.0.resnets.0.scale_shift_table")
    );
}
