//! The LTX-2 video VAE encoder: RGB video → normalised latents (what continuation needs to
//! turn the last decoded frames back into conditioning latents, facts §5).
//!
//! Matches `LTX2VideoEncoder3d` of diffusers' `AutoencoderKLLTX2Video` as released: a 4×4
//! patchify whose channel index runs colour, then the width sub-position, then the height
//! sub-position; causal 3×3×3 convolutions (time padded by repeating the first frame, H/W by
//! zeros); down blocks of residual blocks (per-channel RMS norm → SiLU → conv, twice) each
//! followed by a space-to-depth downsampler (the first frame repeated once more when time
//! shrinks, conv, space-to-depth, plus the input's space-to-depth averaged over channel
//! groups); a mid block; RMS norm → SiLU → conv to `latent_channels + 1`. The posterior's mode
//! is the first `latent_channels` of those (the last, the log-variance, is dropped), then the
//! pipeline's normalisation with the latent statistics.

use crate::latent_stats::LatentStatistics;
use crate::vae::{Conv3d, ResBlock, per_channel_rms_norm};
use crate::vae_encoder_config::{DownsamplerPlan, VaeEncoderConfig};
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// Most input frames one call encodes (the continuation clip is 9; a whole 121-frame segment
/// fits). Longer clips are an input error rather than an allocation failure.
pub const MAX_ENCODE_FRAMES: usize = 257;
/// Largest side in pixels (4K is 3840).
pub const MAX_ENCODE_SIDE: usize = 4096;

/// `[B, C, T, H, W] → [B, C·s0·s1·s2, T/s0, H/s1, W/s2]`, channel-major (the stride
/// sub-positions, time then height then width, are the minor channel indices).
fn space_to_depth(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    let [s0, s1, s2] = stride;
    let (t2, h2, w2) = (t / s0, h / s1, w / s2);
    Ok(x.reshape(vec![b, c, t2, s0, h2, s1, w2, s2])?
        .permute(vec![0, 1, 3, 5, 7, 2, 4, 6])?
        .contiguous()?
        .reshape((b, c * s0 * s1 * s2, t2, h2, w2))?)
}

/// `[B, C, F, H, W] → [B, C·p·p, F, H/p, W/p]` with the reference's channel order: colour,
/// then the width sub-position, then the height sub-position (`width_major = false` is the
/// mistake of the usual height-major order, for the tests).
fn patchify(x: &Tensor, p: usize, width_major: bool) -> Result<Tensor> {
    let (b, c, f, h, w) = x.dims5()?;
    let (h2, w2) = (h / p, w / p);
    let x = x.reshape(vec![b, c, f, h2, p, w2, p])?;
    let order = if width_major {
        vec![0, 1, 6, 4, 2, 3, 5]
    } else {
        vec![0, 1, 4, 6, 2, 3, 5]
    };
    Ok(x.permute(order)?
        .contiguous()?
        .reshape((b, c * p * p, f, h2, w2))?)
}

/// A space-to-depth downsampler with its averaged residual.
#[derive(Debug, Clone)]
struct Downsampler {
    conv: Conv3d,
    plan: DownsamplerPlan,
}

impl Downsampler {
    fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let s0 = self.plan.stride[0];
        // When time shrinks, the first frame is repeated so that `1 + k·s0` frames become
        // `1 + k` (the causal first frame stays alone).
        let x = if s0 > 1 {
            Tensor::cat(&[&x.narrow(2, 0, s0 - 1)?, x], 2)?
        } else {
            x.clone()
        };
        let residual = space_to_depth(&x, self.plan.stride)?;
        let (b, _, t, h, w) = residual.dims5()?;
        let residual = residual
            .reshape(vec![b, self.plan.out_channels, self.plan.group, t, h, w])?
            .mean(2)?;
        let y = space_to_depth(&self.conv.forward(&x, causal)?, self.plan.stride)?;
        Ok((y + residual)?)
    }
}

#[derive(Debug, Clone)]
struct DownBlock {
    resnets: Vec<ResBlock>,
    downsampler: Option<Downsampler>,
}

/// The LTX-2 video VAE encoder with its latent statistics.
#[derive(Debug, Clone)]
pub struct VideoVaeEncoder {
    cfg: VaeEncoderConfig,
    conv_in: Conv3d,
    blocks: Vec<DownBlock>,
    mid: Vec<ResBlock>,
    conv_out: Conv3d,
    stats: LatentStatistics,
    dtype: DType,
}

impl VideoVaeEncoder {
    /// Builds the encoder from weights in canonical names (`encoder.…`, `latents_mean`,
    /// `latents_std`; see [`canonical_vae_encoder_name`](crate::canonical_vae_encoder_name)).
    /// Every tensor is shape-checked against `cfg`; the encoder computes in the weights'
    /// dtype.
    pub fn new(cfg: &VaeEncoderConfig, w: &Weights) -> Result<Self> {
        let plan = cfg.plan()?;
        let pad = cfg.encoder_spatial_padding_mode;
        let resnets = |prefix: &str, n: usize, ch: usize| {
            (0..n)
                .map(|j| ResBlock::load(w, &format!("{prefix}.resnets.{j}"), ch, pad, false))
                .collect::<Result<Vec<_>>>()
        };
        let mut blocks = Vec::with_capacity(plan.blocks.len());
        for (i, bp) in plan.blocks.iter().enumerate() {
            let prefix = format!("encoder.down_blocks.{i}");
            let downsampler = match &bp.downsampler {
                None => None,
                Some(d) => Some(Downsampler {
                    conv: Conv3d::load(
                        w,
                        &format!("{prefix}.downsamplers.0.conv.conv"),
                        d.in_channels,
                        d.conv_out,
                        pad,
                    )?,
                    plan: d.clone(),
                }),
            };
            blocks.push(DownBlock {
                resnets: resnets(&prefix, bp.layers, bp.channels)?,
                downsampler,
            });
        }
        let (cin, cout) = plan.conv_in;
        let conv_in = Conv3d::load(w, "encoder.conv_in.conv", cin, cout, pad)?;
        let dtype = w.get("encoder.conv_in.conv.bias", &[cout])?.dtype();
        Ok(Self {
            cfg: cfg.clone(),
            conv_in,
            blocks,
            mid: resnets("encoder.mid_block", plan.mid_layers, plan.mid_channels)?,
            conv_out: Conv3d::load(
                w,
                "encoder.conv_out.conv",
                plan.mid_channels,
                cfg.latent_channels + 1,
                pad,
            )?,
            stats: LatentStatistics::from_weights(w, cfg.latent_channels, cfg.scaling_factor)?,
            dtype,
        })
    }

    /// Loads the encoder from `path`: a diffusers model folder (its `vae/` subfolder) or a
    /// `vae/` folder itself (`config.json` + safetensors, diffusers or single-file names), or
    /// one Lightricks checkpoint file (`vae.encoder.…` tensors) read with the released config
    /// [`VaeEncoderConfig::ltx2`]. Weights are converted to `dtype` (`F32`, `BF16` or
    /// `F16`); only the encoder's tensors and the latent statistics are kept.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(InferenceError::Config(format!(
                "encoder dtype must be f32, bf16 or f16, got {dtype:?}"
            )));
        }
        let (cfg, files): (VaeEncoderConfig, Vec<PathBuf>) = if path.is_dir() {
            let dir = if path.join("vae").join("config.json").is_file() {
                path.join("vae")
            } else {
                path.to_path_buf()
            };
            (
                VaeEncoderConfig::from_json(&crate::files::read_text(&dir.join("config.json"))?)?,
                crate::files::safetensors_files(&dir)?,
            )
        } else if path.is_file() {
            (VaeEncoderConfig::ltx2(), vec![path.to_path_buf()])
        } else {
            return Err(InferenceError::Config(format!(
                "encoder path {} is neither a directory nor a file",
                path.display()
            )));
        };
        let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        let w = Weights::load_named(
            &paths,
            dtype,
            device,
            crate::vae_encoder_config::canonical_vae_encoder_name,
        )?;
        Self::new(&cfg, &w)
    }

    /// Canonical (name, shape) of every tensor the encoder reads, in load order.
    pub fn expected_weights(cfg: &VaeEncoderConfig) -> Result<Vec<(String, Vec<usize>)>> {
        let plan = cfg.plan()?;
        let mut v: Vec<(String, Vec<usize>)> = Vec::new();
        let conv = |v: &mut Vec<(String, Vec<usize>)>, p: &str, cin: usize, cout: usize| {
            v.push((format!("{p}.weight"), vec![cout, cin, 3, 3, 3]));
            v.push((format!("{p}.bias"), vec![cout]));
        };
        let res = |v: &mut Vec<(String, Vec<usize>)>, p: &str, n: usize, ch: usize| {
            for j in 0..n {
                conv(v, &format!("{p}.resnets.{j}.conv1.conv"), ch, ch);
                conv(v, &format!("{p}.resnets.{j}.conv2.conv"), ch, ch);
            }
        };
        let (cin, cout) = plan.conv_in;
        conv(&mut v, "encoder.conv_in.conv", cin, cout);
        for (i, bp) in plan.blocks.iter().enumerate() {
            let prefix = format!("encoder.down_blocks.{i}");
            res(&mut v, &prefix, bp.layers, bp.channels);
            if let Some(d) = &bp.downsampler {
                conv(
                    &mut v,
                    &format!("{prefix}.downsamplers.0.conv.conv"),
                    d.in_channels,
                    d.conv_out,
                );
            }
        }
        res(
            &mut v,
            "encoder.mid_block",
            plan.mid_layers,
            plan.mid_channels,
        );
        conv(
            &mut v,
            "encoder.conv_out.conv",
            plan.mid_channels,
            cfg.latent_channels + 1,
        );
        v.push(("latents_mean".into(), vec![cfg.latent_channels]));
        v.push(("latents_std".into(), vec![cfg.latent_channels]));
        Ok(v)
    }

    /// The config the encoder was built with.
    pub fn config(&self) -> &VaeEncoderConfig {
        &self.cfg
    }

    /// The latent statistics the encoder normalises with.
    pub fn statistics(&self) -> &LatentStatistics {
        &self.stats
    }

    /// The dtype of the weights, which encoding computes in (norms in f32).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The latent grid (frames, height, width) a clip of `frames × height × width` pixels
    /// encodes to, or the reason it cannot be encoded: frames must number `1 + 8k` and sides
    /// be positive multiples of 32 (for the released compression), within
    /// [`MAX_ENCODE_FRAMES`] and [`MAX_ENCODE_SIDE`].
    pub fn latent_grid(
        &self,
        frames: usize,
        height: usize,
        width: usize,
    ) -> Result<(usize, usize, usize)> {
        let [ct, ch, cw] = self.cfg.compression()?;
        let bad = |m: String| Err(InferenceError::Input(m));
        if frames == 0 || !(frames - 1).is_multiple_of(ct) {
            return bad(format!(
                "the encoder takes 1 + {ct}k frames (1, {}, {}, ...), got {frames}",
                1 + ct,
                1 + 2 * ct
            ));
        }
        if frames > MAX_ENCODE_FRAMES {
            return bad(format!(
                "at most {MAX_ENCODE_FRAMES} frames per encode call, got {frames}"
            ));
        }
        if height == 0 || width == 0 || !height.is_multiple_of(ch) || !width.is_multiple_of(cw) {
            return bad(format!(
                "frame size {width}x{height} must be positive multiples of {cw}x{ch}"
            ));
        }
        if height > MAX_ENCODE_SIDE || width > MAX_ENCODE_SIDE {
            return bad(format!(
                "frame size {width}x{height} exceeds {MAX_ENCODE_SIDE} pixels per side"
            ));
        }
        Ok((1 + (frames - 1) / ct, height / ch, width / cw))
    }

    /// Checks a video tensor `[B, 3, F, H, W]` against the encoder.
    fn check_video(&self, video: &Tensor) -> Result<()> {
        if video.rank() != 5 || video.dim(1)? != self.cfg.in_channels {
            return Err(InferenceError::Input(format!(
                "video is {:?}, expected [B, {}, F, H, W]",
                video.dims(),
                self.cfg.in_channels
            )));
        }
        if video.dim(0)? == 0 {
            return Err(InferenceError::Input("video batch is empty".into()));
        }
        if !video.dtype().is_float() {
            return Err(InferenceError::Input(format!(
                "video must be a float tensor in [-1, 1], got {:?} (RGB bytes go through \
                 encode_rgb)",
                video.dtype()
            )));
        }
        let (_, _, f, h, w) = video.dims5()?;
        self.latent_grid(f, h, w).map(|_| ())
    }

    /// Encodes video `[B, 3, F, H, W]` in [-1, 1] (any float dtype, any device the weights
    /// are on) into normalised latents `[B, C, F', H', W']`, f32: what the pipeline writes
    /// into its conditioning latents (diffusers: `vae.encode(x).latent_dist.mode()`, then
    /// `_normalize_latents`).
    pub fn encode(&self, video: &Tensor) -> Result<Tensor> {
        self.stats.normalize(&self.encode_means(video)?)
    }

    /// The posterior's mode `[B, C, F', H', W']`, f32, not normalised (diffusers'
    /// `vae.encode(x).latent_dist.mode()`; the latent upsample pipeline's input).
    pub fn encode_means(&self, video: &Tensor) -> Result<Tensor> {
        self.check_video(video)?;
        let x = patchify(&video.to_dtype(self.dtype)?, self.cfg.patch_size, true)?;
        let moments = self.forward_patched(&x, self.cfg.encoder_causal)?;
        // conv_out gives C means and one log-variance channel; the mode is the means.
        Ok(moments
            .narrow(1, 0, self.cfg.latent_channels)?
            .to_dtype(DType::F32)?)
    }

    /// RGB24 frames (rows top to bottom, `R, G, B` per pixel, `width·height·3` bytes each) of
    /// one clip → normalised latents `[1, C, F', H', W']`, f32, on `device`. Bytes map to
    /// [-1, 1] as `v / 127.5 − 1` in f32, as the reference pipeline does.
    pub fn encode_rgb(
        &self,
        frames: &[&[u8]],
        width: usize,
        height: usize,
        device: &Device,
    ) -> Result<Tensor> {
        self.encode(&rgb_frames_to_video(frames, width, height, device)?)
    }

    /// [`encode_rgb`](Self::encode_rgb) for [`fv_core::Frame`]s of one size. RGB24 frames
    /// (the pipeline's CPU output) are encoded as they are; I420 frames (its GPU output) go
    /// through [`fv_core::Frame::rgb`] first, which loses chroma detail, so where the decoded
    /// video tensor is still at hand, [`encode`](Self::encode) its last frames instead.
    pub fn encode_frames(&self, frames: &[fv_core::Frame], device: &Device) -> Result<Tensor> {
        let Some(first) = frames.first() else {
            return Err(InferenceError::Input("no frames to encode".into()));
        };
        let (w, h) = (first.width(), first.height());
        let mut rgb = Vec::with_capacity(frames.len());
        for (i, f) in frames.iter().enumerate() {
            if f.width() != w || f.height() != h {
                return Err(InferenceError::Input(format!(
                    "frame {i} is {}x{}, frame 0 is {w}x{h}; one clip has one size",
                    f.width(),
                    f.height()
                )));
            }
            rgb.push(f.rgb());
        }
        let bytes: Vec<&[u8]> = rgb.iter().map(|c| c.as_ref()).collect();
        self.encode_rgb(&bytes, w as usize, h as usize, device)
    }

    /// Everything after the patchify: `[B, 3·p², F, H, W] → [B, C + 1, F', H', W']` in the
    /// model's dtype.
    fn forward_patched(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let mut x = self.conv_in.forward(x, causal)?;
        for block in &self.blocks {
            for r in &block.resnets {
                x = r.forward(&x, causal, None)?;
            }
            if let Some(d) = &block.downsampler {
                x = d.forward(&x, causal)?;
            }
        }
        for r in &self.mid {
            x = r.forward(&x, causal, None)?;
        }
        let x = per_channel_rms_norm(&x)?.silu()?;
        self.conv_out.forward(&x, causal)
    }
}

/// RGB24 frames → `[1, 3, F, H, W]` f32 in [-1, 1] (`v / 127.5 − 1`, computed in f32 as the
/// reference does, once per byte value).
pub fn rgb_frames_to_video(
    frames: &[&[u8]],
    width: usize,
    height: usize,
    device: &Device,
) -> Result<Tensor> {
    if frames.is_empty() {
        return Err(InferenceError::Input("no frames to encode".into()));
    }
    if frames.len() > MAX_ENCODE_FRAMES || width > MAX_ENCODE_SIDE || height > MAX_ENCODE_SIDE {
        return Err(InferenceError::Input(format!(
            "{} frames of {width}x{height}: at most {MAX_ENCODE_FRAMES} frames of \
             {MAX_ENCODE_SIDE} pixels per side",
            frames.len()
        )));
    }
    let plane = width * height;
    if plane == 0 {
        return Err(InferenceError::Input(format!(
            "frame size {width}x{height} is empty"
        )));
    }
    let lut: Vec<f32> = (0..=255u8).map(|v| f32::from(v) / 127.5 - 1.0).collect();
    let n = frames.len();
    let mut out = vec![0f32; 3 * n * plane];
    for (f, rgb) in frames.iter().enumerate() {
        if rgb.len() != plane * 3 {
            return Err(InferenceError::Input(format!(
                "frame {f} has {} bytes, {width}x{height} RGB24 needs {}",
                rgb.len(),
                plane * 3
            )));
        }
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out[(c * n + f) * plane + i] = lut[usize::from(v)];
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, 3, n, height, width), device)?)
}

/// Test hooks for the mutation checks in this module's tests and in tests/vae_encoder.rs.
#[cfg(test)]
impl VideoVaeEncoder {
    fn encode_mutated(&self, video: &Tensor, width_major: bool, keep: usize) -> Result<Tensor> {
        let x = patchify(
            &video.to_dtype(self.dtype)?,
            self.cfg.patch_size,
            width_major,
        )?;
        let moments = self.forward_patched(&x, self.cfg.encoder_causal)?;
        let c = self.cfg.latent_channels;
        self.stats
            .normalize(&moments.narrow(1, keep, c)?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::max_diff;

    fn fixture() -> (VideoVaeEncoder, Tensor, Tensor) {
        let dir = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures");
        let text = std::fs::read_to_string(dir.join("vae_encoder_tiny.json")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cfg = VaeEncoderConfig::from_json(&json["model"].to_string()).unwrap();
        let t =
            candle_core::safetensors::load(dir.join("vae_encoder_tiny.safetensors"), &Device::Cpu)
                .unwrap();
        let w = Weights::from_named_tensors(
            t.iter().map(|(k, v)| (k.clone(), v.clone())),
            crate::vae_encoder_config::canonical_vae_encoder_name,
        )
        .unwrap();
        let frames = &t["input.frames"];
        let (f, h, wd, _) = frames.dims4().unwrap();
        let bytes: Vec<u8> = frames.flatten_all().unwrap().to_vec1().unwrap();
        let per = h * wd * 3;
        let clip: Vec<&[u8]> = bytes.chunks_exact(per).collect();
        assert_eq!(clip.len(), f);
        let video = rgb_frames_to_video(&clip, wd, h, &Device::Cpu).unwrap();
        (
            VideoVaeEncoder::new(&cfg, &w).unwrap(),
            video,
            t["output.latents"].clone(),
        )
    }

    /// Internal mistakes the public API cannot make: the usual height-major patchify order,
    /// and keeping the log-variance channel (taking channels 1..=C instead of 0..C).
    #[test]
    fn patchify_order_and_log_var_channel_matter() {
        let (enc, video, want) = fixture();
        let good = enc.encode_mutated(&video, true, 0).unwrap();
        assert!(max_diff(&good, &want) <= 1e-4);
        let swapped = max_diff(&enc.encode_mutated(&video, false, 0).unwrap(), &want);
        let log_var = max_diff(&enc.encode_mutated(&video, true, 1).unwrap(), &want);
        println!(
            "vae encoder mutation: patchify height-major {swapped:.3e}; log-var channel kept \
             {log_var:.3e}"
        );
        assert!(swapped > 1e-2 && log_var > 1e-2);
    }

    #[test]
    fn space_to_depth_puts_the_width_sub_position_last() {
        // [1, 1, 2, 2, 2] with values 0..8 at (t, h, w) = 4t + 2h + w.
        let x = Tensor::arange(0f32, 8., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 2, 2, 2))
            .unwrap();
        let y = space_to_depth(&x, [2, 2, 2]).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 1., 2., 3., 4., 5., 6., 7.]
        );
        // The patchify instead runs width before height: channel 1 is (h 0, w 1).
        let x = Tensor::arange(0f32, 4., &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 1, 2, 2))
            .unwrap();
        let p = patchify(&x, 2, true).unwrap();
        assert_eq!(
            p.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 2., 1., 3.]
        );
    }

    #[test]
    fn rgb_bytes_map_to_minus_one_to_one() {
        let frame = [0u8, 255, 128, 1, 2, 3];
        let v = rgb_frames_to_video(&[&frame], 2, 1, &Device::Cpu).unwrap();
        assert_eq!(v.dims(), &[1, 3, 1, 1, 2]);
        let vals = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Channel-first: R of both pixels, then G, then B.
        assert_eq!(vals[0], -1.0);
        assert_eq!(vals[1], 1f32 / 127.5 - 1.0);
        assert_eq!(vals[2], 1.0);
        assert!(rgb_frames_to_video(&[&frame[..5]], 2, 1, &Device::Cpu).is_err());
        assert!(rgb_frames_to_video(&[], 2, 1, &Device::Cpu).is_err());
    }
}
