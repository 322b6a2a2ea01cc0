//! Parity of the video VAE encoder with the reference (diffusers 0.42.1, torch 2.9.1, f32
//! CPU), from the fixture made by `scripts/make_vae_encoder_fixtures.py`.
#![allow(clippy::unwrap_used)]

mod common;
use common::{fixture, max_abs_diff};

use candle_core::{DType, Device, Tensor};
use fv_inference::vae_encoder::{MAX_ENCODE_FRAMES, MAX_ENCODE_SIDE, rgb_frames_to_video};
use fv_inference::{
    VaeConfig, VaeEncoderConfig, VideoVaeDecoder, VideoVaeEncoder, Weights,
    canonical_vae_encoder_name,
};
use std::collections::HashMap;
use std::time::Instant;

/// A mutation must move the output by at least this much (100 × the tolerance).
const FAR: f32 = 1e-2;

struct Tiny {
    cfg: VaeEncoderConfig,
    names: Vec<(String, String)>,
    tensors: HashMap<String, Tensor>,
    /// The clip as RGB24 bytes, one buffer per frame.
    frames: Vec<Vec<u8>>,
    width: usize,
    height: usize,
}

fn tiny() -> Tiny {
    let text = std::fs::read_to_string(fixture("vae_encoder_tiny.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg = VaeEncoderConfig::from_json(&json["model"].to_string()).expect("config parses");
    let names = json["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let tensors =
        candle_core::safetensors::load(fixture("vae_encoder_tiny.safetensors"), &Device::Cpu)
            .unwrap();
    let (f, h, w, _) = tensors["input.frames"].dims4().unwrap();
    let bytes: Vec<u8> = tensors["input.frames"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let frames: Vec<Vec<u8>> = bytes.chunks_exact(h * w * 3).map(<[u8]>::to_vec).collect();
    assert_eq!(frames.len(), f);
    Tiny {
        cfg,
        names,
        tensors,
        frames,
        width: w,
        height: h,
    }
}

impl Tiny {
    fn weights(&self) -> Weights {
        Weights::from_named_tensors(
            self.tensors
                .iter()
                .filter(|(k, _)| !k.starts_with("input.") && !k.starts_with("output."))
                .map(|(k, v)| (k.clone(), v.clone())),
            canonical_vae_encoder_name,
        )
        .unwrap()
    }

    fn clip(&self) -> Vec<&[u8]> {
        self.frames.iter().map(Vec::as_slice).collect()
    }

    fn video(&self) -> Tensor {
        rgb_frames_to_video(&self.clip(), self.width, self.height, &Device::Cpu).unwrap()
    }

    fn want(&self) -> &Tensor {
        &self.tensors["output.latents"]
    }
}

#[test]
fn vae_encoder_matches_reference() {
    let t = tiny();
    let enc = VideoVaeEncoder::new(&t.cfg, &t.weights()).unwrap();
    assert_eq!(
        enc.latent_grid(t.frames.len(), t.height, t.width).unwrap(),
        (3, 3, 5)
    );
    let start = Instant::now();
    let out = enc
        .encode_rgb(&t.clip(), t.width, t.height, &Device::Cpu)
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.dims(), t.want().dims());
    let err = max_abs_diff(&out, t.want());
    let means = enc.encode_means(&t.video()).unwrap();
    let err_means = max_abs_diff(&means, &t.tensors["output.means"]);
    println!(
        "vae encoder (17x96x160 RGB bytes -> 3x3x5 latents) max abs error: normalised {err:e}, \
         means {err_means:e}; {took:?} on this CPU (debug test build)"
    );
    assert!(err <= 1e-4 && err_means <= 1e-4, "{err} {err_means}");
    // The float path is the byte path.
    let float = enc.encode(&t.video()).unwrap();
    assert_eq!(max_abs_diff(&float, &out), 0.0);
    // fv_core frames (RGB24) give the same; so does an I420 frame's RGB for RGB24 input.
    let frames: Vec<fv_core::Frame> = t
        .frames
        .iter()
        .map(|f| fv_core::Frame::from_rgb(t.width as u32, t.height as u32, f.clone()).unwrap())
        .collect();
    let via_frames = enc.encode_frames(&frames, &Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&via_frames, &out), 0.0);
}

#[test]
fn vae_encoder_mistakes_move_the_output_far() {
    let t = tiny();
    let video = t.video();
    let mut figures = Vec::new();
    let mut c = t.cfg.clone();
    c.encoder_causal = false;
    let non_causal = VideoVaeEncoder::new(&c, &t.weights())
        .unwrap()
        .encode(&video)
        .unwrap();
    figures.push((
        "non-causal time padding",
        max_abs_diff(&non_causal, t.want()),
    ));
    let enc = VideoVaeEncoder::new(&t.cfg, &t.weights()).unwrap();
    figures.push((
        "no normalisation (the raw means)",
        max_abs_diff(&enc.encode_means(&video).unwrap(), t.want()),
    ));
    let mut c = t.cfg.clone();
    c.encoder_spatial_padding_mode = fv_inference::vae::PaddingMode::Reflect;
    let reflect = VideoVaeEncoder::new(&c, &t.weights())
        .unwrap()
        .encode(&video)
        .unwrap();
    figures.push(("reflect spatial padding", max_abs_diff(&reflect, t.want())));
    // Bytes mapped by / 255 to [0, 1] instead of [-1, 1].
    let unit = ((&video + 1.0).unwrap() / 2.0).unwrap();
    figures.push((
        "pixels in [0, 1]",
        max_abs_diff(&enc.encode(&unit).unwrap(), t.want()),
    ));
    for (what, err) in &figures {
        println!("vae encoder mutation: {what}: max abs err {err:.3e}");
        assert!(*err > FAR, "{what} moved the output by only {err}");
    }
}

#[test]
fn vae_encoder_loads_from_lightricks_names() {
    let t = tiny();
    assert_eq!(t.names.len(), t.weights().len());
    let mut file: Vec<(String, Tensor)> = Vec::new();
    for (diffusers, lightricks) in &t.names {
        assert_eq!(
            canonical_vae_encoder_name(lightricks).as_deref(),
            Some(diffusers.as_str())
        );
        assert_eq!(
            canonical_vae_encoder_name(diffusers).as_deref(),
            Some(diffusers.as_str())
        );
        file.push((lightricks.clone(), t.tensors[diffusers].clone()));
    }
    // The single file's other tensors are skipped by the encoder's map.
    let z = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
    for other in [
        "vae.decoder.conv_in.conv.weight",
        "vae.decoder.up_blocks.0.res_blocks.0.conv1.conv.weight",
        "vae.per_channel_statistics.mean-of-stds",
        "vae.per_channel_statistics.channel",
        "model.diffusion_model.proj_out.weight",
        "audio_vae.encoder.conv_in.weight",
    ] {
        assert_eq!(canonical_vae_encoder_name(other), None, "{other}");
        file.push((other.to_string(), z.clone()));
    }
    let w = Weights::from_named_tensors(file.clone(), canonical_vae_encoder_name).unwrap();
    let out = VideoVaeEncoder::new(&t.cfg, &w)
        .unwrap()
        .encode(&t.video())
        .unwrap();
    assert!(max_abs_diff(&out, t.want()) <= 1e-4);
    // Through a file on disk, with both spellings of one tensor rejected.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ltx-2-tiny.safetensors");
    let map: HashMap<String, Tensor> = file.into_iter().collect();
    candle_core::safetensors::save(&map, &path).unwrap();
    let loaded = Weights::load_named(
        &[path.as_path()],
        DType::F32,
        &Device::Cpu,
        canonical_vae_encoder_name,
    )
    .unwrap();
    assert_eq!(loaded.len(), t.names.len());
    let mut both = map.clone();
    both.insert(
        "encoder.conv_in.conv.bias".into(),
        t.tensors["encoder.conv_in.conv.bias"].clone(),
    );
    let err = Weights::from_named_tensors(both, canonical_vae_encoder_name)
        .unwrap_err()
        .to_string();
    assert!(err.contains("appears twice"), "{err}");
}

#[test]
fn encoder_expects_exactly_the_reference_tensors_and_checks_shapes() {
    let t = tiny();
    let mut expected: Vec<String> = VideoVaeEncoder::expected_weights(&t.cfg)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    expected.sort();
    let mut present: Vec<String> = t.names.iter().map(|(d, _)| d.clone()).collect();
    present.sort();
    assert_eq!(expected, present);
    // A missing tensor and a wrong shape are named.
    let partial = Weights::from_named_tensors(
        t.tensors
            .iter()
            .filter(|(k, _)| k.as_str() != "encoder.conv_out.conv.bias")
            .map(|(k, v)| (k.clone(), v.clone())),
        canonical_vae_encoder_name,
    )
    .unwrap();
    let err = VideoVaeEncoder::new(&t.cfg, &partial)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder.conv_out.conv.bias"), "{err}");
    let mut wrong = t.cfg.clone();
    wrong.latent_channels = 16;
    let err = VideoVaeEncoder::new(&wrong, &t.weights())
        .unwrap_err()
        .to_string();
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn vae_encoder_rejects_bad_inputs() {
    let t = tiny();
    let enc = VideoVaeEncoder::new(&t.cfg, &t.weights()).unwrap();
    let dev = Device::Cpu;
    let zeros = |f: usize, h: usize, w: usize| Tensor::zeros((1, 3, f, h, w), DType::F32, &dev);
    for (f, h, w, needle) in [
        (16, 96, 160, "1 + 8k"),
        (10, 96, 160, "1 + 8k"),
        (9, 90, 160, "multiples of 32"),
        (9, 96, 100, "multiples of 32"),
    ] {
        let err = enc
            .encode(&zeros(f, h, w).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{f}x{h}x{w}: {err}");
    }
    // The limits have numbers.
    assert!(enc.latent_grid(MAX_ENCODE_FRAMES, 32, 32).is_ok());
    assert!(enc.latent_grid(MAX_ENCODE_FRAMES + 8, 32, 32).is_err());
    assert!(enc.latent_grid(1, MAX_ENCODE_SIDE, 32).is_ok());
    assert!(enc.latent_grid(1, MAX_ENCODE_SIDE + 32, 32).is_err());
    assert!(enc.latent_grid(0, 32, 32).is_err());
    // Wrong channel count, integer video, empty batch.
    let four = Tensor::zeros((1, 4, 9, 32, 32), DType::F32, &dev).unwrap();
    assert!(enc.encode(&four).is_err());
    let bytes = Tensor::zeros((1, 3, 9, 32, 32), DType::U8, &dev).unwrap();
    assert!(
        enc.encode(&bytes)
            .unwrap_err()
            .to_string()
            .contains("float")
    );
    let empty = Tensor::zeros((0, 3, 9, 32, 32), DType::F32, &dev).unwrap();
    assert!(enc.encode(&empty).is_err());
    // Byte buffers that do not match the size, frames of two sizes.
    let short = vec![0u8; 32 * 32 * 3 - 1];
    assert!(enc.encode_rgb(&[&short], 32, 32, &dev).is_err());
    let a = fv_core::Frame::from_rgb(32, 32, vec![0; 32 * 32 * 3]).unwrap();
    let b = fv_core::Frame::from_rgb(64, 32, vec![0; 64 * 32 * 3]).unwrap();
    assert!(enc.encode_frames(&[a, b], &dev).is_err());
    assert!(enc.encode_frames(&[], &dev).is_err());
}

#[test]
fn a_batch_encodes_like_its_samples() {
    let t = tiny();
    let enc = VideoVaeEncoder::new(&t.cfg, &t.weights()).unwrap();
    let video = t.video().narrow(2, 0, 9).unwrap().contiguous().unwrap();
    let other = (video.flip(&[3]).unwrap() * 0.5).unwrap();
    let batch = Tensor::cat(&[&video, &other], 0).unwrap();
    let out = enc.encode(&batch).unwrap();
    let a = enc.encode(&video).unwrap();
    let b = enc.encode(&other).unwrap();
    assert!(max_abs_diff(&out.narrow(0, 0, 1).unwrap(), &a) <= 1e-5);
    assert!(max_abs_diff(&out.narrow(0, 1, 1).unwrap(), &b) <= 1e-5);
}

#[test]
fn decode_of_encode_round_trips_the_shape() {
    // The tiny model's decoder has the released 8x/32x compression, like the fixture's
    // encoder; both have 8 latent channels.
    let t = tiny();
    let dir = tempfile::tempdir().unwrap();
    fv_inference::tiny::write_random_model(dir.path()).unwrap();
    let vae_dir = dir.path().join("vae");
    let vcfg = VaeConfig::from_json(&std::fs::read_to_string(vae_dir.join("config.json")).unwrap())
        .unwrap();
    let vw = Weights::load_vae(
        &[vae_dir.join(fv_inference::tiny::WEIGHTS_FILE).as_path()],
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dec = VideoVaeDecoder::new(&vcfg, &vw).unwrap();
    let enc = VideoVaeEncoder::new(&t.cfg, &t.weights()).unwrap();
    assert_eq!(
        enc.config().compression().unwrap(),
        vcfg.compression().unwrap()
    );
    for frames in [1, 9, 17] {
        let video = t.video().narrow(2, 0, frames).unwrap();
        let z = enc.encode(&video).unwrap();
        let (f, h, w) = enc.latent_grid(frames, t.height, t.width).unwrap();
        assert_eq!(z.dims(), &[1, 8, f, h, w]);
        let back = dec.decode_normalized(&z).unwrap();
        assert_eq!(back.dims(), video.dims(), "{frames} frames");
    }
}

#[test]
fn bf16_encoder_stays_near_the_f32_reference() {
    let t = tiny();
    let w = Weights::from_named_tensors(
        t.tensors
            .iter()
            .filter(|(k, _)| !k.starts_with("input.") && !k.starts_with("output."))
            .map(|(k, v)| (k.clone(), v.to_dtype(DType::BF16).unwrap())),
        canonical_vae_encoder_name,
    )
    .unwrap();
    let enc = VideoVaeEncoder::new(&t.cfg, &w).unwrap();
    assert_eq!(enc.dtype(), DType::BF16);
    let out = enc.encode(&t.video()).unwrap();
    assert_eq!(out.dtype(), DType::F32);
    let err = max_abs_diff(&out, t.want());
    let scale = t
        .want()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    println!("vae encoder in bf16: max abs error {err:.3e} (values up to {scale:.2})");
    assert!(err < 0.1 * scale, "{err}");
}

#[test]
fn encoder_loads_from_folders_and_shares_one_single_file_read_with_the_decoder() {
    let t = tiny();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("vae_encoder_tiny.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // diffusers' layout: <model>/vae/config.json + weights under diffusers names.
    let vae_dir = dir.path().join("vae");
    std::fs::create_dir_all(&vae_dir).unwrap();
    std::fs::write(vae_dir.join("config.json"), json["model"].to_string()).unwrap();
    let own: HashMap<String, Tensor> = t
        .tensors
        .iter()
        .filter(|(k, _)| !k.starts_with("input.") && !k.starts_with("output."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    candle_core::safetensors::save(&own, vae_dir.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    for path in [dir.path(), vae_dir.as_path()] {
        let enc = VideoVaeEncoder::load(path, &Device::Cpu, DType::F32).unwrap();
        assert!(max_abs_diff(&enc.encode(&t.video()).unwrap(), t.want()) <= 1e-4);
    }
    let bf16 = VideoVaeEncoder::load(dir.path(), &Device::Cpu, DType::BF16).unwrap();
    assert_eq!(bf16.dtype(), DType::BF16);
    assert!(VideoVaeEncoder::load(dir.path(), &Device::Cpu, DType::U8).is_err());
    assert!(VideoVaeEncoder::load(&dir.path().join("nope"), &Device::Cpu, DType::F32).is_err());

    // A Lightricks single file with the decoder (vae_tiny fixture) and the encoder: one read
    // feeds both, and both use the file's one set of statistics.
    let text = std::fs::read_to_string(fixture("vae_tiny.json")).unwrap();
    let dec_json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let dec_tensors =
        candle_core::safetensors::load(fixture("vae_tiny.safetensors"), &Device::Cpu).unwrap();
    let mut single: HashMap<String, Tensor> = HashMap::new();
    for pair in dec_json["names"].as_array().unwrap() {
        let (d, l) = (pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
        if d.starts_with("decoder.") {
            single.insert(l.to_string(), dec_tensors[d].clone());
        }
    }
    for (d, l) in &t.names {
        single.insert(l.clone(), t.tensors[d].clone());
    }
    let file = dir.path().join("ltx-2-tiny.safetensors");
    candle_core::safetensors::save(&single, &file).unwrap();
    let mut stores = Weights::load_components(
        &[file.as_path()],
        DType::F32,
        &Device::Cpu,
        &[fv_inference::canonical_vae_name, canonical_vae_encoder_name],
    )
    .unwrap();
    let ew = stores.pop().unwrap();
    let dw = stores.pop().unwrap();
    assert_eq!(ew.len(), t.names.len());
    let enc = VideoVaeEncoder::new(&t.cfg, &ew).unwrap();
    assert!(max_abs_diff(&enc.encode(&t.video()).unwrap(), t.want()) <= 1e-4);
    let dcfg = VaeConfig::from_json(&dec_json["model"].to_string()).unwrap();
    let dec = VideoVaeDecoder::new(&dcfg, &dw).unwrap();
    let (dm, ds) = (dec.statistics().unwrap(), enc.statistics().clone());
    assert_eq!(max_abs_diff(dm.mean_and_std().0, ds.mean_and_std().0), 0.0);
    assert_eq!(max_abs_diff(dm.mean_and_std().1, ds.mean_and_std().1), 0.0);
    // A single file is read with the released config: the tiny tensors are named in the error.
    let err = VideoVaeEncoder::load(&file, &Device::Cpu, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("has shape"), "{err}");
}
