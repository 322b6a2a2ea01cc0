//! The real-size text side expects exactly the reference models' tensors.
//!
//! `tests/fixtures/manifest_gemma3_12b.json` is every tensor of transformers 5.25's
//! `Gemma3ForConditionalGeneration` at `google/gemma-3-12b-it`'s config, and
//! `manifest_ltx2_connectors.json` every tensor of diffusers 0.42.1's `LTX2TextConnectors` at
//! the LTX-2.0 config (with its Lightricks single-file name), both built on torch's meta
//! device by `scripts/make_text_manifests.py`.
#![allow(clippy::unwrap_used)]

mod common;
use common::fixture;

use fv_inference::text::{
    ConnectorsConfig, Gemma3TextEncoder, GemmaConfig, Ltx2TextConnectors, canonical_connector_name,
    canonical_gemma_name,
};
use std::collections::BTreeMap;

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn shape(v: &serde_json::Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn count(v: &[(String, Vec<usize>)]) -> u64 {
    v.iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum()
}

#[test]
fn gemma3_12b_config_is_what_transformers_resolves() {
    let m = json("manifest_gemma3_12b.json");
    let resolved = GemmaConfig::from_json(&m["text_config"].to_string()).unwrap();
    assert_eq!(resolved, GemmaConfig::gemma3_12b());
    let google = serde_json::json!({ "text_config": m["google_text_config"] });
    assert_eq!(
        GemmaConfig::from_json(&google.to_string()).unwrap(),
        GemmaConfig::gemma3_12b()
    );
}

#[test]
fn real_size_gemma_expects_exactly_the_reference_language_model() {
    let m = json("manifest_gemma3_12b.json");
    let mut want: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for row in m["parameters"].as_array().unwrap() {
        let name = row[0].as_str().unwrap();
        let lm = row[2].as_u64().unwrap() == 1;
        let canonical = canonical_gemma_name(name);
        if !lm {
            assert_eq!(canonical, None, "{name} is not the language model's");
            continue;
        }
        let canonical = canonical.unwrap_or_else(|| panic!("{name} is not mapped"));
        // Google's checkpoints and transformers 5's save_pretrained spell it this way.
        let saved = name.replace("model.language_model.", "language_model.model.");
        assert_eq!(
            canonical_gemma_name(&saved).as_deref(),
            Some(canonical.as_str())
        );
        assert!(
            want.insert(canonical, shape(&row[1])).is_none(),
            "{name} twice"
        );
    }
    let expected = Gemma3TextEncoder::expected_weights(&GemmaConfig::gemma3_12b());
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(got.len(), expected.len(), "no duplicates");
    assert_eq!(got, want);
    let params = count(&expected);
    assert_eq!(params, m["num_language_model_parameters"].as_u64().unwrap());
    println!(
        "Gemma-3-12B language model: {} tensors, {params} parameters ({:.3} B)",
        expected.len(),
        params as f64 / 1e9
    );
}

#[test]
fn real_size_connectors_expect_exactly_the_reference_tensors() {
    let m = json("manifest_ltx2_connectors.json");
    let cfg = ConnectorsConfig::from_json(&m["config"].to_string()).unwrap();
    assert_eq!(cfg, ConnectorsConfig::ltx2());
    let mut want: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for row in m["parameters"].as_array().unwrap() {
        let (diffusers, lightricks) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        assert_eq!(
            canonical_connector_name(diffusers).as_deref(),
            Some(diffusers)
        );
        assert_eq!(
            canonical_connector_name(lightricks).as_deref(),
            Some(diffusers),
            "{lightricks}"
        );
        want.insert(diffusers.to_string(), shape(&row[2]));
    }
    let expected = Ltx2TextConnectors::expected_weights(&ConnectorsConfig::ltx2());
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(got.len(), expected.len(), "no duplicates");
    assert_eq!(got, want);
    let params = count(&expected);
    assert_eq!(params, m["num_parameters"].as_u64().unwrap());
    println!(
        "LTX-2.0 connectors: {} tensors, {params} parameters ({:.3} B)",
        expected.len(),
        params as f64 / 1e9
    );
}
