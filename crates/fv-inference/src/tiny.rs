//! A tiny random-weight LTX-2 model, so the real pipeline runs end to end on any CPU (the
//! video is noise; the path is the real one). Same shape family as the parity fixtures:
//! 2 transformer blocks of width 64 (4 heads × 16), 24 caption channels, 8 latent channels,
//! and a VAE decoder with blocks (8, 16, 32) and three spatiotemporal upsamplers, so the
//! compression is the released one: 8× in time, 32× in height and width.

use crate::rng::SplitMix64;
use crate::transformer::Ltx2VideoTransformer;
use crate::vae::{VaeConfig, VideoVaeDecoder};
use crate::{InferenceError, Result, TransformerConfig};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Seed of the random weights (fixed: every tiny model is the same model).
pub const TINY_SEED: u64 = 0x1f2_2024;
/// File name of each component's weights, as diffusers names it.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// The tiny transformer's `config.json`.
pub fn transformer_config_json() -> serde_json::Value {
    serde_json::json!({
        "in_channels": 8,
        "out_channels": 8,
        "patch_size": 1,
        "patch_size_t": 1,
        "num_attention_heads": 4,
        "attention_head_dim": 16,
        "cross_attention_dim": 64,
        "vae_scale_factors": [8, 32, 32],
        "num_layers": 2,
        "caption_channels": 24,
        "rope_type": "split"
    })
}

/// The tiny VAE's `config.json`.
pub fn vae_config_json() -> serde_json::Value {
    serde_json::json!({
        "latent_channels": 8,
        "out_channels": 3,
        "decoder_block_out_channels": [8, 16, 32],
        "decoder_layers_per_block": [1, 1, 1, 1],
        "decoder_spatio_temporal_scaling": [true, true, true],
        "decoder_inject_noise": [false, false, false, false],
        "upsample_type": ["spatiotemporal", "spatiotemporal", "spatiotemporal"],
        "upsample_residual": [true, true, true],
        "upsample_factor": [2, 2, 2],
        "patch_size": 4,
        "patch_size_t": 1
    })
}

/// How a random tensor named `name` of `shape` is drawn: `offset + scale · N(0, 1)`, and
/// whether to take the absolute value first (positive statistics).
fn init_rule(name: &str, shape: &[usize]) -> (f32, f32, bool) {
    if name == "latents_std" {
        (0.1, 1.0, true)
    } else if name.ends_with("timestep_scale_multiplier") {
        // diffusers' initial value; the decode timestep is multiplied by it.
        (0.0, 1000.0, false)
    } else if name == "latents_mean" || name.ends_with("scale_shift_table") {
        (0.1, 0.0, false)
    } else if name.ends_with(".bias") {
        (0.02, 0.0, false)
    } else if shape.len() <= 1 {
        (0.1, 1.0, false)
    } else {
        let fan_in: usize = shape[1..].iter().product();
        (1.0 / (fan_in.max(1) as f32).sqrt(), 0.0, false)
    }
}

/// One seeded tensor per (name, shape) on the CPU: weights ~N(0, 1/fan_in), small biases,
/// norm weights near 1, positive latent standard deviations.
fn random_tensors(
    names: &[(String, Vec<usize>)],
    rng: &mut SplitMix64,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (name, shape) in names {
        let n: usize = shape.iter().product();
        let (scale, offset, abs) = init_rule(name, shape);
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let v = scale * rng.normal();
                offset + if abs { v.abs() } else { v }
            })
            .collect();
        out.insert(
            name.clone(),
            Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?,
        );
    }
    Ok(out)
}

/// Random weights for `names` (e.g. [`Ltx2VideoTransformer::expected_weights`]) drawn by the
/// same rules as the tiny model, created directly on `device` in `dtype`. On the CPU they
/// come from our seeded generator (the same on every machine); on a GPU from the device's
/// own generator seeded with `seed` (fast enough for the 19B shapes, not bit-stable across
/// backends). For timing runs at the real size, where no weights can be downloaded.
pub fn random_weights(
    names: &[(String, Vec<usize>)],
    dtype: DType,
    device: &Device,
    seed: u64,
) -> Result<HashMap<String, Tensor>> {
    if device.is_cpu() {
        let tensors = random_tensors(names, &mut SplitMix64::new(seed))?;
        return tensors
            .into_iter()
            .map(|(k, v)| Ok((k, v.to_dtype(dtype)?)))
            .collect();
    }
    device.set_seed(seed)?;
    let mut out = HashMap::with_capacity(names.len());
    for (name, shape) in names {
        let (scale, offset, abs) = init_rule(name, shape);
        let mut t = Tensor::randn(0f32, scale, shape.as_slice(), device)?;
        if abs {
            t = t.abs()?;
        }
        out.insert(name.clone(), (t + f64::from(offset))?.to_dtype(dtype)?);
    }
    Ok(out)
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| InferenceError::Io(format!("cannot write {}: {e}", path.display())))
}

/// Writes the tiny model to `dir` in diffusers' layout (`transformer/` and `vae/`, each with
/// `config.json` and [`WEIGHTS_FILE`]), creating `dir` if needed and overwriting those files.
/// Load it with [`crate::Ltx2Pipeline::load`]; sizes are multiples of 64 pixels (2×2
/// latents at least) with `8k + 1` frames, e.g. 64×64 and 9 frames.
pub fn write_random_model(dir: &Path) -> Result<()> {
    let mut rng = SplitMix64::new(TINY_SEED);
    let tjson = transformer_config_json();
    let vjson = vae_config_json();
    let tcfg = TransformerConfig::from_json(&tjson.to_string())?;
    let vcfg = VaeConfig::from_json(&vjson.to_string())?;
    for (sub, json, names) in [
        (
            "transformer",
            tjson,
            Ltx2VideoTransformer::expected_weights(&tcfg),
        ),
        ("vae", vjson, VideoVaeDecoder::expected_weights(&vcfg)?),
    ] {
        let folder = dir.join(sub);
        std::fs::create_dir_all(&folder)
            .map_err(|e| InferenceError::Io(format!("cannot create {}: {e}", folder.display())))?;
        write(&folder.join("config.json"), &format!("{json:#}\n"))?;
        let tensors = random_tensors(&names, &mut rng)?;
        candle_core::safetensors::save(&tensors, folder.join(WEIGHTS_FILE))?;
    }
    Ok(())
}
