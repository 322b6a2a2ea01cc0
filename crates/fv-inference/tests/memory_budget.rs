//! What the released model takes in GPU memory, computed from the real-size manifests (the
//! manifest tests pin every tensor of each component); docs/cuda.md "What fits one GPU"
//! states these figures, and this test keeps them from drifting.
#![allow(clippy::unwrap_used)]

mod common;

use common::fixture;

/// Parameters of one manifest (`num_language_model_parameters` for Gemma: its SigLIP tower
/// is never loaded).
fn params(file: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(file)).unwrap()).unwrap();
    json.get("num_language_model_parameters")
        .unwrap_or(&json["num_parameters"])
        .as_u64()
        .unwrap()
}

const GIB: f64 = (1u64 << 30) as f64;

/// bf16 bytes of `n` parameters, in GiB, rounded to 0.1.
fn bf16_gib(n: u64) -> f64 {
    (n as f64 * 2.0 / GIB * 10.0).round() / 10.0
}

#[test]
fn weights_in_bf16_are_what_docs_cuda_md_states() {
    let gemma = params("manifest_gemma3_12b.json");
    let connectors = params("manifest_ltx2_connectors.json");
    let transformer = params("manifest_ltx2_transformer.json");
    let vae = params("manifest_ltx2_vae_decoder.json") + params("manifest_ltx2_vae_encoder.json");
    let audio =
        params("manifest_ltx2_audio_vae_decoder.json") + params("manifest_ltx2_vocoder.json");
    let upsampler = params("manifest_ltx2_latent_upsampler.json");
    let text = gemma + connectors;
    let model = transformer + vae + audio + upsampler;
    let rows = [
        ("Gemma-3-12B language model", gemma, 21.9),
        ("text connectors", connectors, 2.7),
        ("audio-video transformer", transformer, 35.2),
        ("video VAE decoder + encoder", vae, 2.3),
        ("audio VAE decoder + vocoder", audio, 0.2),
        ("latent upsampler", upsampler, 0.9),
        ("text side (Gemma + connectors)", text, 24.6),
        ("everything but the text side", model, 38.5),
        ("everything", text + model, 63.1),
    ];
    for (what, n, documented) in rows {
        let gib = bf16_gib(n);
        println!(
            "{what}: {:.2} B parameters, {gib:.1} GiB in bf16",
            n as f64 / 1e9
        );
        assert_eq!(
            gib, documented,
            "{what}: docs/cuda.md says {documented} GiB"
        );
    }
    // The budgets docs/cuda.md derives: the largest activation is the full-resolution video
    // VAE decode (≈ 24 GiB computed: the last up block at [128, 121, 272, 480]); the whole
    // model plus that needs the 141 GB class (≈ 139 GiB usable), an 80 GB GPU (79.6 GiB)
    // holds it with the text side on the CPU.
    const FULL_RES_DECODE_GIB: f64 = 24.0;
    assert!(bf16_gib(text + model) + FULL_RES_DECODE_GIB < 139.0);
    assert!(bf16_gib(text + model) + FULL_RES_DECODE_GIB > 79.6);
    assert!(bf16_gib(model) + FULL_RES_DECODE_GIB < 79.6);
}
