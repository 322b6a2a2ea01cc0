//! Parity of the latent upsampler (stage 2) with the reference (diffusers 0.42.1, torch
//! 2.9.1, f32 CPU), from the fixtures made by `scripts/make_upsampler_fixtures.py`.
#![allow(clippy::unwrap_used)]

mod common;
use common::{fixture, max_abs_diff};

use candle_core::{DType, Device, Tensor};
use fv_inference::upsampler::MAX_UPSAMPLE_TOKENS;
use fv_inference::{
    LatentStatistics, LatentUpsampler, LatentUpsamplerConfig, Weights, canonical_upsampler_name,
};
use std::collections::HashMap;
use std::time::Instant;

struct Variant {
    cfg: LatentUpsamplerConfig,
    scaling: f64,
    tensors: HashMap<String, Tensor>,
}

fn variant(name: &str) -> Variant {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("upsampler_tiny.json")).unwrap())
            .unwrap();
    Variant {
        cfg: LatentUpsamplerConfig::from_json(&json["variants"][name].to_string()).unwrap(),
        scaling: json["scaling_factor"].as_f64().unwrap(),
        tensors: candle_core::safetensors::load(
            fixture(&format!("upsampler_tiny_{name}.safetensors")),
            &Device::Cpu,
        )
        .unwrap(),
    }
}

impl Variant {
    /// The model's own tensors (no statistics, inputs or outputs), under `prefix`.
    fn model_tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter(|(k, _)| {
                !k.starts_with("latents_") && !k.starts_with("input.") && k.as_str() != "output"
            })
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect()
    }

    fn stats(&self, scaling: f64) -> LatentStatistics {
        LatentStatistics::new(
            &self.tensors["latents_mean"],
            &self.tensors["latents_std"],
            scaling,
        )
        .unwrap()
    }

    fn upsampler(&self) -> LatentUpsampler {
        let w =
            Weights::from_named_tensors(self.model_tensors(""), canonical_upsampler_name).unwrap();
        LatentUpsampler::new(&self.cfg, &w, self.stats(self.scaling)).unwrap()
    }

    fn input(&self) -> &Tensor {
        &self.tensors["input.latents"]
    }

    fn want(&self) -> &Tensor {
        &self.tensors["output"]
    }
}

#[test]
fn upsampler_matches_reference() {
    // x2: the released structure; x1_5: the rational 3/2 resampler with its strided blur;
    // plain: LTX-2.3's conv + pixel shuffle (`upsampler.0`).
    for name in ["x2", "x1_5", "plain"] {
        let v = variant(name);
        let up = v.upsampler();
        let start = Instant::now();
        let out = up.upsample(v.input()).unwrap();
        let took = start.elapsed();
        let err = max_abs_diff(&out, v.want());
        let (_, _, f, h, w) = v.input().dims5().unwrap();
        let (f2, h2, w2) = up.output_grid(f, h, w);
        assert_eq!(out.dims(), &[2, 8, f2, h2, w2]);
        println!(
            "latent upsampler {name} ({f}x{h}x{w} -> {f2}x{h2}x{w2}, batch 2) max abs error \
             {err:e}; {took:?} on this CPU (debug test build)"
        );
        assert!(err <= 1e-4, "{name}: {err}");
    }
}

#[test]
fn upsampler_mistakes_move_the_output_far() {
    let v = variant("x2");
    let up = v.upsampler();
    let mut figures = Vec::new();
    // Running the network on the normalised latents as they come.
    figures.push((
        "no de-normalisation / normalisation",
        max_abs_diff(&up.upsample_denormalized(v.input()).unwrap(), v.want()),
    ));
    // Normalising as FastVideo's statistics do, without the scaling factor (0.8 here).
    let w = Weights::from_named_tensors(v.model_tensors(""), canonical_upsampler_name).unwrap();
    let unscaled = LatentUpsampler::new(&v.cfg, &w, v.stats(1.0)).unwrap();
    figures.push((
        "scaling factor ignored",
        max_abs_diff(&unscaled.upsample(v.input()).unwrap(), v.want()),
    ));
    // Only the un-normalised result (forgetting to normalise for stage 2).
    let z = up.statistics().denormalize(v.input()).unwrap();
    figures.push((
        "output not normalised",
        max_abs_diff(&up.upsample_denormalized(&z).unwrap(), v.want()),
    ));
    for (what, err) in &figures {
        println!("upsampler mutation: {what}: max abs err {err:.3e}");
        assert!(*err > 1e-2, "{what} moved the output by only {err}");
    }
}

#[test]
fn upsampler_loads_both_spellings_from_files() {
    let v = variant("x2");
    let want = v.upsampler().upsample(v.input()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // diffusers' latent_upsampler/ folder (config.json + weights) and FastVideo's (`model.`).
    for (sub, prefix) in [("latent_upsampler", ""), ("spatial_upsampler", "model.")] {
        let folder = dir.path().join(sub);
        std::fs::create_dir_all(&folder).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture("upsampler_tiny.json")).unwrap())
                .unwrap();
        std::fs::write(
            folder.join("config.json"),
            json["variants"]["x2"].to_string(),
        )
        .unwrap();
        let tensors: HashMap<String, Tensor> = v.model_tensors(prefix).into_iter().collect();
        candle_core::safetensors::save(
            &tensors,
            folder.join("diffusion_pytorch_model.safetensors"),
        )
        .unwrap();
        let up =
            LatentUpsampler::load(&folder, v.stats(v.scaling), &Device::Cpu, DType::F32).unwrap();
        assert_eq!(max_abs_diff(&up.upsample(v.input()).unwrap(), &want), 0.0);
    }
    // A single file is read with the released config: the tiny weights do not fit it, and
    // the error names a tensor and both shapes.
    let file = dir.path().join("ltx-2-spatial-upscaler-x2-1.0.safetensors");
    let tensors: HashMap<String, Tensor> = v.model_tensors("").into_iter().collect();
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let stats128 = LatentStatistics::new(
        &Tensor::zeros(128, DType::F32, &Device::Cpu).unwrap(),
        &Tensor::ones(128, DType::F32, &Device::Cpu).unwrap(),
        1.0,
    )
    .unwrap();
    let err = LatentUpsampler::load(&file, stats128, &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has shape") && err.contains("1024"), "{err}");
    assert!(
        LatentUpsampler::load(
            &dir.path().join("missing"),
            v.stats(1.0),
            &Device::Cpu,
            DType::F32
        )
        .is_err()
    );
}

#[test]
fn upsampler_expects_exactly_the_reference_tensors_and_rejects_bad_inputs() {
    for name in ["x2", "x1_5", "plain"] {
        let v = variant(name);
        let mut expected: Vec<String> = LatentUpsampler::expected_weights(&v.cfg)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        expected.sort();
        let mut present: Vec<String> = v.model_tensors("").into_iter().map(|(n, _)| n).collect();
        present.sort();
        assert_eq!(expected, present, "{name}");
    }
    let v = variant("x2");
    let up = v.upsampler();
    let dev = Device::Cpu;
    let z = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &dev).unwrap();
    assert!(up.upsample(&z(&[1, 4, 2, 3, 3])).is_err(), "channels");
    assert!(up.upsample(&z(&[1, 8, 2, 3])).is_err(), "rank");
    assert!(up.upsample(&z(&[1, 8, 0, 3, 3])).is_err(), "no frames");
    // The token limit has a number.
    let side = 256; // 1 × 256 × 256 = 65 536 tokens: at the limit, 2 frames over it.
    assert_eq!(side * side, MAX_UPSAMPLE_TOKENS);
    let err = up
        .upsample(&z(&[1, 8, 2, side, side]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most"), "{err}");
    // Statistics of another channel count are refused at construction.
    let w = Weights::from_named_tensors(v.model_tensors(""), canonical_upsampler_name).unwrap();
    let four = LatentStatistics::new(
        &Tensor::zeros(4, DType::F32, &dev).unwrap(),
        &Tensor::ones(4, DType::F32, &dev).unwrap(),
        1.0,
    )
    .unwrap();
    assert!(LatentUpsampler::new(&v.cfg, &w, four).is_err());
}

#[test]
fn bf16_upsampler_stays_near_the_f32_reference() {
    let v = variant("x2");
    let w = Weights::from_named_tensors(
        v.model_tensors("")
            .into_iter()
            .map(|(k, t)| (k, t.to_dtype(DType::BF16).unwrap())),
        canonical_upsampler_name,
    )
    .unwrap();
    let up = LatentUpsampler::new(&v.cfg, &w, v.stats(v.scaling)).unwrap();
    assert_eq!(up.dtype(), DType::BF16);
    let out = up.upsample(v.input()).unwrap();
    let err = max_abs_diff(&out, v.want());
    println!("latent upsampler in bf16: max abs error {err:.3e}");
    assert!(err < 0.25, "{err}");
}
