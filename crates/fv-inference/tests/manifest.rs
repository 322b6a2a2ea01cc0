//! The real-size LTX-2 (19B) transformer expects exactly the reference model's tensors.
//!
//! `tests/fixtures/manifest_ltx2_transformer.json` is every tensor of diffusers 0.42.1's
//! `LTX2VideoTransformer3DModel` at the published config, built on torch's meta device by
//! `scripts/make_manifest.py`, as [diffusers name, Lightricks single-file name, shape, video];
//! `manifest_ltx2_vae_decoder.json`, `manifest_ltx2_audio_vae_decoder.json` and
//! `manifest_ltx2_vocoder.json` are the same ([diffusers name, Lightricks name, shape]) for the
//! video VAE decoder, the audio VAE decoder and the vocoder.
#![allow(clippy::unwrap_used)]

use fv_inference::{
    AudioVaeConfig, AudioVaeDecoder, Ltx2VideoTransformer, TransformerConfig, VaeConfig,
    VideoVaeDecoder, Vocoder, VocoderConfig, canonical_audio_vae_name, canonical_transformer_name,
    canonical_vae_name, canonical_vocoder_name,
};
use std::collections::{BTreeMap, BTreeSet};

struct Entry {
    diffusers: String,
    lightricks: String,
    shape: Vec<usize>,
    video: bool,
}

struct Manifest {
    config: serde_json::Value,
    num_parameters: u64,
    num_video_parameters: u64,
    entries: Vec<Entry>,
}

fn manifest() -> Manifest {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
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
        num_parameters: json["num_parameters"].as_u64().unwrap(),
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
fn real_size_av_model_expects_exactly_all_reference_tensors() {
    let m = manifest();
    let want: BTreeMap<String, Vec<usize>> = m
        .entries
        .iter()
        .map(|e| (e.diffusers.clone(), e.shape.clone()))
        .collect();
    let cfg = TransformerConfig::ltx2_19b();
    cfg.validate_audio().unwrap();
    let expected = Ltx2VideoTransformer::expected_av_weights(&cfg);
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "expected_av_weights lists a name twice"
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(missing.is_empty(), "not loaded by the port: {missing:?}");
    assert!(extra.is_empty(), "not in the reference model: {extra:?}");
    assert_eq!(got, want);
    let count = |m: &BTreeMap<String, Vec<usize>>| -> u64 {
        m.values().map(|s| s.iter().product::<usize>() as u64).sum()
    };
    assert_eq!(count(&got), m.num_parameters);
    // the audio stream and cross-attention: 48 blocks × 47 tensors (4 attentions × 10,
    // feed-forward 4, 3 tables) + 39 top-level
    assert_eq!(got.len(), 3510);
    assert_eq!(got.len() - (48 * 25 + 15), 48 * 47 + 39);
    let audio: BTreeMap<String, Vec<usize>> = got
        .into_iter()
        .filter(|(k, _)| !m.entries.iter().any(|e| e.video && &e.diffusers == k))
        .collect();
    println!(
        "real-size AV transformer: {} tensors, {} parameters ({} in the audio stream and \
         cross-attention)",
        expected.len(),
        m.num_parameters,
        count(&audio)
    );
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
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
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

/// A component manifest: (config, [diffusers name → shape], number of parameters), with every
/// row's two spellings checked against `rename`.
fn component_manifest(
    file: &str,
    rename: fn(&str) -> Option<String>,
) -> (serde_json::Value, BTreeMap<String, Vec<usize>>, u64) {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures")
    .join(file);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
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
                rename(spelling).as_deref(),
                Some(diffusers),
                "spelling {spelling}"
            );
        }
        assert!(
            want.insert(diffusers.to_string(), shape).is_none(),
            "{diffusers} listed twice"
        );
    }
    (
        json["config"].clone(),
        want,
        json["num_parameters"].as_u64().unwrap(),
    )
}

fn parameter_count(names: &[(String, Vec<usize>)]) -> u64 {
    names
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum()
}

/// `manifest_ltx2_audio_vae_decoder.json`: the real-size audio VAE decoder and its latent
/// statistics (`base_channels` = 128 long).
#[test]
fn real_size_audio_vae_decoder_expects_exactly_the_reference_tensors() {
    let (config, want, num) = component_manifest(
        "manifest_ltx2_audio_vae_decoder.json",
        canonical_audio_vae_name,
    );
    let cfg = AudioVaeConfig::from_json(&config.to_string()).expect("config parses");
    assert_eq!(cfg, AudioVaeConfig::ltx2());
    let expected = AudioVaeDecoder::expected_weights(&cfg).unwrap();
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(got.len(), expected.len(), "a name listed twice");
    assert_eq!(got, want);
    assert_eq!(parameter_count(&expected), num);
    println!(
        "real-size audio VAE decoder: {} tensors, {num} parameters",
        got.len()
    );
    // the encoder's tensors are skipped by the decoder's rename map
    assert_eq!(
        canonical_audio_vae_name("audio_vae.encoder.conv_in.conv.weight"),
        None
    );
}

/// `manifest_ltx2_vocoder.json`: the real-size vocoder.
#[test]
fn real_size_vocoder_expects_exactly_the_reference_tensors() {
    let (config, want, num) =
        component_manifest("manifest_ltx2_vocoder.json", canonical_vocoder_name);
    let cfg = VocoderConfig::from_json(&config.to_string()).expect("config parses");
    assert_eq!(cfg, VocoderConfig::ltx2());
    let expected = Vocoder::expected_weights(&cfg).unwrap();
    let got: BTreeMap<String, Vec<usize>> = expected.iter().cloned().collect();
    assert_eq!(got.len(), expected.len(), "a name listed twice");
    assert_eq!(got, want);
    assert_eq!(parameter_count(&expected), num);
    println!("real-size vocoder: {} tensors, {num} parameters", got.len());
    // a stand-alone vocoder file carries the original names without the prefix
    for lightricks in lightricks_names("manifest_ltx2_vocoder.json") {
        let bare = lightricks.strip_prefix("vocoder.").unwrap();
        assert!(
            want.contains_key(&canonical_vocoder_name(bare).unwrap()),
            "{bare}"
        );
    }
}

/// The Lightricks names (second column) of a component manifest.
fn lightricks_names(file: &str) -> Vec<String> {
    let path = std::path::PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("tests/fixtures")
    .join(file);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[1].as_str().unwrap().to_string())
        .collect()
}

/// In the Lightricks single file, every tensor of the four components is claimed by exactly
/// one rename map.
#[test]
fn each_single_file_tensor_belongs_to_one_component() {
    let mut single: Vec<String> = manifest()
        .entries
        .into_iter()
        .map(|e| e.lightricks)
        .collect();
    for file in [
        "manifest_ltx2_vae_decoder.json",
        "manifest_ltx2_audio_vae_decoder.json",
        "manifest_ltx2_vocoder.json",
        "manifest_ltx2_connectors.json",
    ] {
        single.extend(lightricks_names(file));
    }
    // The connectors sit under the transformer's prefix; the transformer must leave them to
    // the text encoder (~1.4 B parameters it would otherwise hold for nothing).
    assert_eq!(single.len(), 3510 + 92 + 58 + 194 + 59);
    let maps: [fn(&str) -> Option<String>; 5] = [
        canonical_transformer_name,
        canonical_vae_name,
        canonical_audio_vae_name,
        canonical_vocoder_name,
        fv_inference::text::canonical_connector_name,
    ];
    for name in &single {
        let claimed = maps.iter().filter(|f| f(name).is_some()).count();
        assert_eq!(claimed, 1, "{name} is claimed by {claimed} components");
    }
}
