//! The real-size LTX-2 video VAE encoder and latent upsampler expect exactly the reference
//! models' tensors.
//!
//! `tests/fixtures/manifest_ltx2_vae_encoder.json` lists every encoder tensor (and the latent
//! statistics) of diffusers 0.42.1's `AutoencoderKLLTX2Video` at the published config, as
//! [diffusers name, Lightricks single-file name, shape]; `manifest_ltx2_latent_upsampler.json`
//! every tensor of `LTX2LatentUpsamplerModel` at the 2.0 config as [name, shape]. Both are
//! built on torch's meta device by `scripts/make_encoder_manifests.py`.
#![allow(clippy::unwrap_used)]

use fv_inference::{
    LatentUpsampler, LatentUpsamplerConfig, VaeEncoderConfig, VideoVaeEncoder,
    canonical_upsampler_name, canonical_vae_encoder_name,
};
use std::collections::BTreeMap;

fn load(name: &str) -> serde_json::Value {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures")
    .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("manifest is committed")).unwrap()
}

fn shape(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn count(m: &BTreeMap<String, Vec<usize>>) -> u64 {
    m.values().map(|s| s.iter().product::<usize>() as u64).sum()
}

#[test]
fn real_size_vae_encoder_expects_exactly_the_reference_tensors() {
    let m = load("manifest_ltx2_vae_encoder.json");
    // The manifest's config (the whole VAE's) parses to the released encoder config.
    let cfg = VaeEncoderConfig::from_json(&m["config"].to_string()).unwrap();
    assert_eq!(cfg, VaeEncoderConfig::ltx2());
    assert_eq!(cfg.compression().unwrap(), [8, 32, 32]);
    let rows = m["parameters"].as_array().unwrap();
    let want: BTreeMap<String, Vec<usize>> = rows
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), shape(&r[2])))
        .collect();
    let expected = VideoVaeEncoder::expected_weights(&cfg).unwrap();
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(got.len(), expected.len(), "duplicate names");
    assert_eq!(got, want);
    assert_eq!(count(&got), m["num_parameters"].as_u64().unwrap());
    println!(
        "real-size VAE encoder: {} tensors, {:.1} M parameters",
        got.len(),
        count(&got) as f64 / 1e6
    );
    // Every Lightricks single-file name maps to its diffusers name, and back to itself.
    for r in rows {
        let (d, l) = (r[0].as_str().unwrap(), r[1].as_str().unwrap());
        assert_eq!(canonical_vae_encoder_name(l).as_deref(), Some(d), "{l}");
        assert_eq!(canonical_vae_encoder_name(d).as_deref(), Some(d), "{d}");
    }
}

#[test]
fn real_size_latent_upsampler_expects_exactly_the_reference_tensors() {
    let m = load("manifest_ltx2_latent_upsampler.json");
    let cfg = LatentUpsamplerConfig::from_json(&m["config"].to_string()).unwrap();
    assert_eq!(cfg, LatentUpsamplerConfig::ltx2());
    let want: BTreeMap<String, Vec<usize>> = m["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), shape(&r[1])))
        .collect();
    let expected = LatentUpsampler::expected_weights(&cfg).unwrap();
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(got.len(), expected.len(), "duplicate names");
    assert_eq!(got, want);
    assert_eq!(count(&got), m["num_parameters"].as_u64().unwrap());
    println!(
        "real-size latent upsampler: {} tensors, {:.1} M parameters",
        got.len(),
        count(&got) as f64 / 1e6
    );
    for name in want.keys() {
        assert_eq!(
            canonical_upsampler_name(name).as_deref(),
            Some(name.as_str())
        );
        assert_eq!(
            canonical_upsampler_name(&format!("model.{name}")).as_deref(),
            Some(name.as_str())
        );
    }
}
