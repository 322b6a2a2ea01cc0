//! Parity of the audio VAE decoder and the vocoder with the reference (diffusers 0.42.1, f32
//! CPU), from fixtures made by `scripts/make_audio_fixtures.py`: the tiny audio VAE (base 8,
//! levels (1, 2, 4), 2 latent channels, 16 mel bins, causal in time) decodes 5 normalised
//! latent frames of a batch of 2 into a [2, 2, 17, 16] stereo mel; the tiny vocoder (32
//! channels, ×4 upsampling, residual kernels 3/7) turns that mel into [2, 2, 68] samples.
#![allow(clippy::unwrap_used)]

mod common;
use common::{fixture, max_abs_diff};

use candle_core::{DType, Device, Tensor};
use fv_inference::audio_vae::CausalityAxis;
use fv_inference::vocoder::FinalActivation;
use fv_inference::{
    AudioVaeConfig, AudioVaeDecoder, Component, Vocoder, VocoderConfig, Weights, to_audio_track,
};
use std::collections::HashMap;

const TOL: f32 = 1e-4;

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn audio_vae_config() -> AudioVaeConfig {
    AudioVaeConfig::from_json(&json("audio_vae_tiny.json")["config"].to_string()).unwrap()
}

fn vocoder_config() -> VocoderConfig {
    VocoderConfig::from_json(&json("vocoder_tiny.json")["config"].to_string()).unwrap()
}

fn audio_vae(cfg: &AudioVaeConfig, t: &HashMap<String, Tensor>) -> AudioVaeDecoder {
    let w = Weights::from_audio_vae_tensors(t.iter().map(|(k, v)| (k.clone(), v.clone()))).unwrap();
    AudioVaeDecoder::new(cfg, &w).unwrap()
}

fn vocoder(cfg: &VocoderConfig, t: &HashMap<String, Tensor>) -> Vocoder {
    let w = Weights::from_vocoder_tensors(t.iter().map(|(k, v)| (k.clone(), v.clone()))).unwrap();
    Vocoder::new(cfg, &w).unwrap()
}

#[test]
fn audio_vae_decode_matches_reference() {
    let cfg = audio_vae_config();
    let t = load("audio_vae_tiny.safetensors");
    // the fixture's weights are exactly what the decoder expects (Lightricks names, renamed)
    let w = Weights::from_audio_vae_tensors(t.iter().map(|(k, v)| (k.clone(), v.clone()))).unwrap();
    let mut expected: Vec<String> = AudioVaeDecoder::expected_weights(&cfg)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    expected.sort();
    assert_eq!(w.names(), expected);
    let vae = AudioVaeDecoder::new(&cfg, &w).unwrap();

    let started = std::time::Instant::now();
    let mel = vae.decode_tokens(&t["input.tokens"]).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(mel.dims(), &[2, 2, 17, 16]);
    let err = max_abs_diff(&mel, &t["output.mel"]);
    println!("audio vae decode: max abs err {err:e}, {elapsed:?} (tiny, CPU)");
    assert!(err <= TOL, "{err}");
    // the de-normalised, unpacked latents are the reference's, and decode alone matches
    let z = vae
        .unpack_tokens(&vae.denormalize_tokens(&t["input.tokens"]).unwrap())
        .unwrap();
    assert!(max_abs_diff(&z, &t["input.z"]) <= 1e-6);
    assert!(max_abs_diff(&vae.decode(&t["input.z"]).unwrap(), &t["output.mel"]) <= TOL);
    // the same weights with `causality_axis="none"` match the reference's non-causal decode
    let non_causal = AudioVaeConfig {
        causality_axis: CausalityAxis::NonCausal,
        ..cfg.clone()
    };
    let nc = AudioVaeDecoder::new(&non_causal, &w).unwrap();
    let nc_err = max_abs_diff(
        &nc.decode_tokens(&t["input.tokens"]).unwrap(),
        &t["output.mel_noncausal"],
    );
    println!("audio vae decode, non-causal: max abs err {nc_err:e}");
    assert!(nc_err <= TOL, "{nc_err}");
    // packing and normalising invert unpacking and de-normalising
    let back = vae
        .normalize_tokens(&vae.pack_latents(&z).unwrap())
        .unwrap();
    assert!(max_abs_diff(&back, &t["input.tokens"]) <= 1e-5);
}

#[test]
fn audio_vae_parity_catches_plausible_mistakes() {
    let cfg = audio_vae_config();
    let t = load("audio_vae_tiny.safetensors");
    let want = &t["output.mel"];
    let vae = audio_vae(&cfg, &t);
    let mut report = Vec::new();
    let mut check = |what: &str, got: Tensor| {
        let err = max_abs_diff(&got, want);
        report.push(format!("{what}: {err:.3e}"));
        assert!(err > 1e-2, "{what} moved the mel by only {err}");
    };
    // non-causal convolutions (and no dropped row after upsampling)
    let non_causal = AudioVaeConfig {
        causality_axis: CausalityAxis::NonCausal,
        ..cfg.clone()
    };
    let nc = audio_vae(&non_causal, &t);
    check("non-causal", nc.decode_tokens(&t["input.tokens"]).unwrap());
    // no de-normalisation
    check(
        "no de-normalisation",
        vae.decode(&vae.unpack_tokens(&t["input.tokens"]).unwrap())
            .unwrap(),
    );
    // tokens unpacked mel-major (feature m·C + c instead of c·M + m)
    let (b, l, _) = t["input.tokens"].dims3().unwrap();
    let wrong = t["input.tokens"]
        .reshape((b, l, 4, 2))
        .unwrap()
        .permute((0, 3, 1, 2))
        .unwrap()
        .contiguous()
        .unwrap();
    check(
        "mel-major unpacking",
        vae.decode(
            &vae.unpack_tokens(
                &vae.denormalize_tokens(&vae.pack_latents(&wrong).unwrap())
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap(),
    );
    for line in report {
        println!("audio vae mutation {line}");
    }
}

#[test]
fn vocoder_matches_reference() {
    let cfg = vocoder_config();
    let t = load("vocoder_tiny.safetensors");
    let w = Weights::from_vocoder_tensors(t.iter().map(|(k, v)| (k.clone(), v.clone()))).unwrap();
    let mut expected: Vec<String> = Vocoder::expected_weights(&cfg)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    expected.sort();
    assert_eq!(w.names(), expected);
    let voc = Vocoder::new(&cfg, &w).unwrap();
    let started = std::time::Instant::now();
    let wave = voc.forward(&t["input.mel"]).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(wave.dims(), &[2, 2, 17 * 4]);
    let err = max_abs_diff(&wave, &t["output.waveform"]);
    println!("vocoder: max abs err {err:e}, {elapsed:?} (tiny, CPU)");
    assert!(err <= TOL, "{err}");
}

#[test]
fn vocoder_parity_catches_plausible_mistakes() {
    let cfg = vocoder_config();
    let t = load("vocoder_tiny.safetensors");
    let want = &t["output.waveform"];
    let mut report = Vec::new();
    for (what, edited) in [
        (
            "inner LeakyReLU slope 0.01",
            VocoderConfig {
                leaky_relu_negative_slope: 0.01,
                ..cfg.clone()
            },
        ),
        (
            "no tanh",
            VocoderConfig {
                final_act_fn: None,
                ..cfg.clone()
            },
        ),
        (
            "clamp for tanh",
            VocoderConfig {
                final_act_fn: Some(FinalActivation::Clamp),
                ..cfg.clone()
            },
        ),
    ] {
        let err = max_abs_diff(
            &vocoder(&edited, &t).forward(&t["input.mel"]).unwrap(),
            want,
        );
        report.push(format!("{what}: {err:.3e}"));
        assert!(err > 1e-2, "{what} moved the waveform by only {err}");
    }
    // mel bins read time-major (no transpose before flattening)
    let mel = &t["input.mel"];
    let (b, c, tt, m) = mel.dims4().unwrap();
    let wrong = mel
        .reshape((b, c, m, tt))
        .unwrap()
        .transpose(2, 3)
        .unwrap()
        .contiguous()
        .unwrap();
    let err = max_abs_diff(&vocoder(&cfg, &t).forward(&wrong).unwrap(), want);
    report.push(format!("mel read time-major: {err:.3e}"));
    assert!(err > 1e-2);
    for line in report {
        println!("vocoder mutation {line}");
    }
}

#[test]
fn latents_to_audio_track() {
    // The whole audio decode a pipeline runs: tokens → mel → waveform → AudioTrack.
    let vae_t = load("audio_vae_tiny.safetensors");
    let voc_t = load("vocoder_tiny.safetensors");
    let vae = audio_vae(&audio_vae_config(), &vae_t);
    let voc = vocoder(&vocoder_config(), &voc_t);
    let wave = voc
        .forward(&vae.decode_tokens(&vae_t["input.tokens"]).unwrap())
        .unwrap();
    let err = max_abs_diff(&wave, &voc_t["output.waveform"]);
    assert!(err <= TOL, "chained decode differs by {err}");
    let track = to_audio_track(&wave.get(1).unwrap(), voc.sample_rate()).unwrap();
    assert_eq!((track.sample_rate, track.channels), (24000, 2));
    assert_eq!(track.samples.len(), 2 * 68);
    let want: Vec<Vec<f32>> = voc_t["output.waveform"].get(1).unwrap().to_vec2().unwrap();
    for (i, pair) in track.samples.chunks(2).enumerate() {
        assert!((pair[0] - want[0][i]).abs() <= TOL && (pair[1] - want[1][i]).abs() <= TOL);
    }
}

#[test]
fn audio_components_load_from_files_in_every_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let vae_t = load("audio_vae_tiny.safetensors");
    let voc_t = load("vocoder_tiny.safetensors");
    let (vae_cfg, voc_cfg) = (audio_vae_config(), vocoder_config());

    // the Lightricks single file: transformer-free here, audio VAE and vocoder side by side,
    // plus a video-VAE tensor both loaders must skip
    let mut single: HashMap<String, Tensor> = HashMap::new();
    single.extend(
        vae_t
            .iter()
            .filter(|(k, _)| k.starts_with("audio_vae."))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    single.extend(
        voc_t
            .iter()
            .filter(|(k, _)| k.starts_with("vocoder."))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    single.insert(
        "vae.per_channel_statistics.mean-of-means".into(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    );
    let single_path = dir.path().join("ltx-2.safetensors");
    candle_core::safetensors::save(&single, &single_path).unwrap();
    let mut stores = Weights::load_many(
        &[single_path.as_path()],
        DType::F32,
        &Device::Cpu,
        &[Component::AudioVae, Component::Vocoder],
    )
    .unwrap();
    let voc_w = stores.pop().unwrap();
    let vae_w = stores.pop().unwrap();
    let vae = AudioVaeDecoder::new(&vae_cfg, &vae_w).unwrap();
    let voc = Vocoder::new(&voc_cfg, &voc_w).unwrap();
    let mel = vae.decode_tokens(&vae_t["input.tokens"]).unwrap();
    assert!(max_abs_diff(&mel, &vae_t["output.mel"]) <= TOL);
    assert!(max_abs_diff(&voc.forward(&mel).unwrap(), &voc_t["output.waveform"]) <= TOL);

    // diffusers folders: audio_vae/ and vocoder/ with diffusers names
    let rename =
        |t: &HashMap<String, Tensor>, f: fn(&str) -> Option<String>| -> HashMap<String, Tensor> {
            t.iter()
                .filter_map(|(k, v)| f(k).map(|n| (n, v.clone())))
                .collect()
        };
    for (sub, tensors) in [
        (
            "audio_vae",
            rename(&vae_t, fv_inference::canonical_audio_vae_name),
        ),
        (
            "vocoder",
            rename(&voc_t, fv_inference::canonical_vocoder_name),
        ),
    ] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        candle_core::safetensors::save(
            &tensors,
            dir.path()
                .join(sub)
                .join("diffusion_pytorch_model.safetensors"),
        )
        .unwrap();
    }
    let vae_path = dir
        .path()
        .join("audio_vae/diffusion_pytorch_model.safetensors");
    let voc_path = dir
        .path()
        .join("vocoder/diffusion_pytorch_model.safetensors");
    let vae_w = Weights::load_audio_vae(&[vae_path.as_path()], DType::F32, &Device::Cpu).unwrap();
    let voc_w = Weights::load_vocoder(&[voc_path.as_path()], DType::F32, &Device::Cpu).unwrap();
    AudioVaeDecoder::new(&vae_cfg, &vae_w).unwrap();
    Vocoder::new(&voc_cfg, &voc_w).unwrap();

    // a config that disagrees with the file names the tensor, a missing tensor is named
    let wide = AudioVaeConfig {
        base_channels: 16,
        latent_channels: 4,
        ..vae_cfg.clone()
    };
    let err = AudioVaeDecoder::new(&wide, &vae_w).unwrap_err().to_string();
    assert!(
        err.contains("`decoder.") && err.contains("has shape"),
        "{err}"
    );
    let deeper = VocoderConfig {
        resnet_kernel_sizes: vec![3, 7, 11],
        resnet_dilations: vec![vec![1, 3, 5]; 3],
        ..voc_cfg.clone()
    };
    let err = Vocoder::new(&deeper, &voc_w).unwrap_err().to_string();
    assert!(err.contains("resnets.2.convs1.0.weight"), "{err}");
    // the same tensor in two spellings is refused
    let twice = Weights::from_vocoder_tensors([
        (
            "vocoder.conv_pre.bias".to_string(),
            Tensor::zeros(32, DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "conv_in.bias".to_string(),
            Tensor::zeros(32, DType::F32, &Device::Cpu).unwrap(),
        ),
    ]);
    assert!(twice.unwrap_err().to_string().contains("conv_in.bias"));
    // a file that is not safetensors is named
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a checkpoint").unwrap();
    let err = Weights::load_vocoder(&[junk.as_path()], DType::F32, &Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("junk.safetensors"), "{err}");
}

#[test]
fn decoders_reject_inputs_that_disagree() {
    let vae_t = load("audio_vae_tiny.safetensors");
    let voc_t = load("vocoder_tiny.safetensors");
    let vae = audio_vae(&audio_vae_config(), &vae_t);
    let voc = vocoder(&vocoder_config(), &voc_t);
    let z = |dims: &[usize]| Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap();
    assert!(vae.decode_tokens(&z(&[1, 5, 7])).is_err(), "token width");
    assert!(vae.decode(&z(&[1, 3, 5, 4])).is_err(), "latent channels");
    assert!(vae.decode(&z(&[1, 2, 0, 4])).is_err(), "no frames");
    let too_long = fv_inference::audio_vae::MAX_AUDIO_LATENT_FRAMES + 1;
    let err = vae.decode(&z(&[1, 2, too_long, 4])).unwrap_err();
    assert!(err.to_string().contains("2048"), "{err}");
    assert!(voc.forward(&z(&[1, 2, 5, 15])).is_err(), "mel width");
    assert!(voc.forward(&z(&[1, 2, 0, 16])).is_err(), "no frames");
    let too_long = fv_inference::vocoder::MAX_MEL_FRAMES + 1;
    let err = voc.forward(&z(&[1, 2, too_long, 16])).unwrap_err();
    assert!(err.to_string().contains("8192"), "{err}");
}
