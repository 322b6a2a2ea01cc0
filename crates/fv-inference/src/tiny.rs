//! A tiny random-weight LTX-2 model, so the real pipeline runs end to end on any CPU (the
//! video is noise and the audio is noise; the path is the real one, prompt to PCM). Every
//! component of a diffusers pipeline folder is written: a Gemma-format tokenizer (BPE with
//! byte fallback, 458 tokens), a 3-layer Gemma-3 (width 32, sliding and global layers), the
//! text connectors (2 × 16 heads, 4 registers), the joint audio-video transformer (2 blocks,
//! video 4 heads × 16, audio 2 heads × 12, 32 caption channels), a video VAE (decoder blocks
//! (8, 16, 32), encoder blocks (8, 16, 16, 32): the released 8× / 32× compression), an audio
//! VAE (2 latent channels × 4 mel bins, stereo), a vocoder with the released ×240 upsampling
//! (24 kHz PCM, width 64) and a latent upsampler (×2, width 32) for the two-stage preset.

use crate::audio_vae::{AudioVaeConfig, AudioVaeDecoder};
use crate::rng::SplitMix64;
use crate::text::{ConnectorsConfig, Gemma3TextEncoder, GemmaConfig, Ltx2TextConnectors};
use crate::transformer::Ltx2VideoTransformer;
use crate::upsampler::{LatentUpsampler, LatentUpsamplerConfig};
use crate::vae::{VaeConfig, VideoVaeDecoder};
use crate::vae_encoder::VideoVaeEncoder;
use crate::vae_encoder_config::VaeEncoderConfig;
use crate::vocoder::{Vocoder, VocoderConfig};
use crate::{InferenceError, Result, TransformerConfig};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Seed of the random weights (fixed: every tiny model is the same model).
pub const TINY_SEED: u64 = 0x1f2_2024;
/// Written last into a tiny model folder, naming what was written: a folder without it (a
/// half-written model) or with another version (an older tiny model, e.g. video only) is
/// not the current tiny model.
pub const MARKER_FILE: &str = "fv-tiny-model.json";
/// The tiny model's layout version (bumped whenever the written components change).
pub const TINY_MODEL_VERSION: &str = "ltx2-av-text-2";

/// Whether `dir` holds the current tiny model (see [`MARKER_FILE`]).
pub fn is_current(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(MARKER_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["version"] == TINY_MODEL_VERSION)
}

/// File name of each component's weights, as diffusers names it (Gemma's is
/// `model.safetensors`, as transformers names it).
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// The tiny transformer's `config.json` (video and audio streams).
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
        "caption_channels": 32,
        "rope_type": "split",
        "audio_in_channels": 8,
        "audio_out_channels": 8,
        "audio_num_attention_heads": 2,
        "audio_attention_head_dim": 12,
        "audio_cross_attention_dim": 24,
        "audio_sampling_rate": 16000,
        "audio_hop_length": 160
    })
}

/// The tiny video VAE's `config.json` (decoder and encoder).
pub fn vae_config_json() -> serde_json::Value {
    serde_json::json!({
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 8,
        "block_out_channels": [8, 16, 16, 32],
        "layers_per_block": [1, 1, 1, 1, 1],
        "spatio_temporal_scaling": [true, true, true, true],
        "down_block_types": ["LTX2VideoDownBlock3D", "LTX2VideoDownBlock3D",
                             "LTX2VideoDownBlock3D", "LTX2VideoDownBlock3D"],
        "downsample_type": ["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
        "encoder_causal": true,
        "encoder_spatial_padding_mode": "zeros",
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

/// The tiny audio VAE's `config.json`: 2 latent channels × 4 latent mel bins (16 mel bins),
/// stereo, causal in time, 16 kHz with hop 160 (25 latent frames per second, as released).
pub fn audio_vae_config_json() -> serde_json::Value {
    serde_json::json!({
        "base_channels": 8,
        "output_channels": 2,
        "ch_mult": [1, 2, 4],
        "num_res_blocks": 1,
        "latent_channels": 2,
        "norm_type": "pixel",
        "causality_axis": "height",
        "mid_block_add_attention": false,
        "sample_rate": 16000,
        "mel_hop_length": 160,
        "mel_bins": 16
    })
}

/// The tiny vocoder's `config.json`: the released ×240 upsampling (factors 6, 5, 2, 2, 2,
/// so the PCM is 24 kHz like the release's) at width 64.
pub fn vocoder_config_json() -> serde_json::Value {
    serde_json::json!({
        "in_channels": 32,
        "hidden_channels": 64,
        "out_channels": 2,
        "upsample_kernel_sizes": [16, 15, 8, 4, 4],
        "upsample_factors": [6, 5, 2, 2, 2],
        "resnet_kernel_sizes": [3],
        "resnet_dilations": [[1, 3]],
        "leaky_relu_negative_slope": 0.1,
        "output_sampling_rate": 24000
    })
}

/// The tiny Gemma-3's `config.json`, nested as transformers writes it.
pub fn gemma_config_json() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {
            "model_type": "gemma3_text",
            "vocab_size": 458,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "query_pre_attn_scalar": 24,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            "rms_norm_eps": 1e-6,
            "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 64,
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}
            }
        }
    })
}

/// The tiny text connectors' `config.json`.
pub fn connectors_config_json() -> serde_json::Value {
    serde_json::json!({
        "caption_channels": 32,
        "text_proj_in_factor": 4,
        "video_connector_num_attention_heads": 2,
        "video_connector_attention_head_dim": 16,
        "video_connector_num_layers": 2,
        "video_connector_num_learnable_registers": 4,
        "audio_connector_num_attention_heads": 2,
        "audio_connector_attention_head_dim": 16,
        "audio_connector_num_layers": 2,
        "audio_connector_num_learnable_registers": 4,
        "connector_rope_base_seq_len": 32,
        "rope_theta": 10000.0,
        "rope_double_precision": true,
        "rope_type": "split"
    })
}

/// The tiny latent upsampler's `config.json` (the released ×2 rational resampler at width 32),
/// for the two-stage preset.
pub fn upsampler_config_json() -> serde_json::Value {
    serde_json::json!({
        "in_channels": 8,
        "mid_channels": 32,
        "num_blocks_per_stage": 1,
        "dims": 3,
        "spatial_upsample": true,
        "temporal_upsample": false,
        "rational_spatial_scale": 2.0,
        "use_rational_resampler": true
    })
}

/// The tiny tokenizer (a Gemma-format BPE with byte fallback, made by
/// `scripts/make_text_fixtures.py`).
pub const TOKENIZER_JSON: &[u8] = include_bytes!("../assets/tiny_tokenizer.json");

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

fn write(path: &Path, text: &[u8]) -> Result<()> {
    std::fs::write(path, text)
        .map_err(|e| InferenceError::Io(format!("cannot write {}: {e}", path.display())))
}

/// Writes one component folder: `config.json` and `file` with random tensors for `names`
/// (each name written as `prefix` + name).
fn write_component(
    dir: &Path,
    json: &serde_json::Value,
    file: &str,
    prefix: &str,
    names: &[(String, Vec<usize>)],
    rng: &mut SplitMix64,
) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| InferenceError::Io(format!("cannot create {}: {e}", dir.display())))?;
    write(&dir.join("config.json"), format!("{json:#}\n").as_bytes())?;
    let tensors: HashMap<String, Tensor> = random_tensors(names, rng)?
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect();
    candle_core::safetensors::save(&tensors, dir.join(file))?;
    Ok(())
}

/// Writes the tiny model to `dir` in diffusers' pipeline layout (`text_encoder/`,
/// `tokenizer/`, `connectors/`, `transformer/`, `vae/`, `audio_vae/`, `vocoder/`,
/// `latent_upsampler/`, each with its config and weights) and the version marker, creating
/// `dir` if needed and overwriting those files. Load it with [`crate::Ltx2Pipeline::load`];
/// sizes are multiples of 32 pixels with 2×2 latents at least (64 and 128 with the two-stage
/// preset) and `8k + 1` frames, e.g. 64×64 and 9 frames.
pub fn write_random_model(dir: &Path) -> Result<()> {
    let mut rng = SplitMix64::new(TINY_SEED);
    let tjson = transformer_config_json();
    let vjson = vae_config_json();
    let ajson = audio_vae_config_json();
    let ojson = vocoder_config_json();
    let gjson = gemma_config_json();
    let cjson = connectors_config_json();
    let tcfg = TransformerConfig::from_json(&tjson.to_string())?;
    let vcfg = VaeConfig::from_json(&vjson.to_string())?;
    let ecfg = VaeEncoderConfig::from_json(&vjson.to_string())?;
    let acfg = AudioVaeConfig::from_json(&ajson.to_string())?;
    let ocfg = VocoderConfig::from_json(&ojson.to_string())?;
    let gcfg = GemmaConfig::from_json(&gjson.to_string())?;
    let ccfg = ConnectorsConfig::from_json(&cjson.to_string())?;
    let ujson = upsampler_config_json();
    let ucfg = LatentUpsamplerConfig::from_json(&ujson.to_string())?;
    let mut vae_names = VideoVaeDecoder::expected_weights(&vcfg)?;
    // The encoder shares latents_mean/latents_std with the decoder.
    vae_names.extend(
        VideoVaeEncoder::expected_weights(&ecfg)?
            .into_iter()
            .filter(|(n, _)| n.starts_with("encoder.")),
    );
    let st = WEIGHTS_FILE;
    write_component(
        &dir.join("transformer"),
        &tjson,
        st,
        "",
        &Ltx2VideoTransformer::expected_av_weights(&tcfg),
        &mut rng,
    )?;
    write_component(&dir.join("vae"), &vjson, st, "", &vae_names, &mut rng)?;
    write_component(
        &dir.join("audio_vae"),
        &ajson,
        st,
        "",
        &AudioVaeDecoder::expected_weights(&acfg)?,
        &mut rng,
    )?;
    write_component(
        &dir.join("vocoder"),
        &ojson,
        st,
        "",
        &Vocoder::expected_weights(&ocfg)?,
        &mut rng,
    )?;
    write_component(
        &dir.join("text_encoder"),
        &gjson,
        "model.safetensors",
        // transformers 5's spelling of the language model inside Gemma3ForConditionalGeneration
        "model.language_model.",
        &Gemma3TextEncoder::expected_weights(&gcfg),
        &mut rng,
    )?;
    write_component(
        &dir.join("connectors"),
        &cjson,
        st,
        "",
        &Ltx2TextConnectors::expected_weights(&ccfg),
        &mut rng,
    )?;
    write_component(
        &dir.join("latent_upsampler"),
        &ujson,
        st,
        "",
        &LatentUpsampler::expected_weights(&ucfg)?,
        &mut rng,
    )?;
    let tok = dir.join("tokenizer");
    std::fs::create_dir_all(&tok)
        .map_err(|e| InferenceError::Io(format!("cannot create {}: {e}", tok.display())))?;
    write(&tok.join("tokenizer.json"), TOKENIZER_JSON)?;
    let marker = serde_json::json!({"version": TINY_MODEL_VERSION, "seed": TINY_SEED});
    write(&dir.join(MARKER_FILE), format!("{marker:#}\n").as_bytes())
}
