//! The real-size LTX-2 (19B) transformer expects exactly the reference model's tensors.
//!
//! `tests/fixtures/manifest_ltx2_transformer.json` is every tensor of diffusers 0.42.1's
//! `LTX2VideoTransformer3DModel` at the published config, built on torch's meta device by
//! `scripts/make_manifest.py`, as [diffusers name, Lightricks single-file name, shape, video];
//! `manifest_ltx2_vae_decoder.json` is the same for the video VAE decoder.
#![allow(clippy::unwrap_used)]

use fv_inference::{
    Ltx2VideoTransformer, TransformerConfig, VaeConfig, VideoVaeDecoder,
    canonical_transformer_name, canonical_vae_name,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

struct Entry {
    diffusers: String,
    lightricks: String,
    shape: Vec<usize>,
    video: bool,
}

struct Manifest {
    config: serde_json::Value,
    num_video_parameters: u64,
    entries: Vec<Entry>,
}

fn manifest() -> Manifest {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/manifest_ltx2_transformer.json");
    let text = std::fs::read_to_string(path).expect("manifest fixture is committed");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    let entries = json["parameters"]
        .as_array()
        .expect("parameters list")
        .iter()
        .map(|row| Entry {
            diffusers: row[0].as_str().unwrap().to_string(),
            lightricks: row[1].as_str().unwrap().to_string(),
            shape: row[2]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            video: row[3].as_u64().unwrap() == 1,
        })
        .collect();
    Manifest {
        config: json["config"].clone(),
        num_video_parameters: json["num_video_parameters"].as_u64().unwrap(),
        entries,
    }
}

#[test]
fn manifest_config_is_the_ltx2_19b_config() {
    let m = manifest();
    let parsed = TransformerConfig::from_json(&m.config.to_string()).expect("config parses");
    assert_eq!(parsed, TransformerConfig::ltx2_19b());
    assert_eq!(TransformerConfig::default(), TransformerConfig::ltx2_19b());
    let cfg = TransformerConfig::ltx2_19b();
    assert_eq!((cfg.num_layers, cfg.inner_dim()), (48, 4096));
}

#[test]
fn real_size_model_expects_exactly_the_reference_video_stream_tensors() {
    let m = manifest();
    let want: BTreeMap<String, Vec<usize>> = m
        .entries
        .iter()
        .filter(|e| e.video)
        .map(|e| (e.diffusers.clone(), e.shape.clone()))
        .collect();
    let expected = Ltx2VideoTransformer::expected_weights(&TransformerConfig::ltx2_19b());
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "expected_weights lists a name twice"
    );

    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(missing.is_empty(), "not loaded by the port: {missing:?}");
    assert!(extra.is_empty(), "not in the reference model: {extra:?}");
    for (name, shape) in &want {
        assert_eq!(&got[name], shape, "shape of {name}");
    }
    let count: u64 = got
        .values()
        .map(|s| s.iter().product::<usize>() as u64)
        .sum();
    assert_eq!(count, m.num_video_parameters);
    // 48 blocks × 25 tensors (2 attentions × 10, feed-forward 4, scale table) + 15 top-level.
    assert_eq!(got.len(), 48 * 25 + 15);
}

#[test]
fn every_manifest_name_goes_through_the_rename_map() {
    let m = manifest();
    assert!(m.entries.len() > 3000, "the full model, audio included");
    let mut seen = BTreeSet::new();
    for e in &m.entries {
        assert!(seen.insert(&e.diffusers), "{} listed twice", e.diffusers);
        let original = e
            .lightricks
            .strip_prefix("model.diffusion_model.")
            .expect("Lightricks names carry the model.diffusion_model. prefix");
        let spellings = [
            e.diffusers.clone(),
            e.lightricks.clone(),
            original.to_string(),
            format!("diffusion_model.{original}"),
            format!("model.{original}"),
        ];
        for s in &spellings {
            assert_eq!(
                canonical_transformer_name(s).as_deref(),
                Some(e.diffusers.as_str()),
                "spelling {s}"
            );
        }
    }
}

/// `manifest_ltx2_vae_decoder.json`: the real-size video VAE decoder's tensors and latent
/// statistics as [diffusers name, Lightricks name, shape].
#[test]
fn real_size_vae_decoder_expects_exactly_the_reference_tensors() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/manifest_ltx2_vae_decoder.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cfg = VaeConfig::from_json(&json["config"].to_string()).expect("config parses");
    assert_eq!(cfg, VaeConfig::ltx2());

    let mut want = BTreeMap::new();
    for row in json["parameters"].as_array().unwrap() {
        let (diffusers, lightricks) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        let shape: Vec<usize> = row[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        for spelling in [diffusers, lightricks] {
            assert_eq!(
                canonical_vae_name(spelling).as_deref(),
                Some(diffusers),
                "spelling {spelling}"
            );
        }
        assert!(
            want.insert(diffusers.to_string(), shape).is_none(),
            "{diffusers} listed twice"
        );
    }
    let expected = VideoVaeDecoder::expected_weights(&cfg).unwrap();
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "expected_weights lists a name twice"
    );
    assert_eq!(got, want);
    let count: u64 = got
        .values()
        .map(|s| s.iter().product::<usize>() as u64)
        .sum();
    assert_eq!(count, json["num_parameters"].as_u64().unwrap());
}
