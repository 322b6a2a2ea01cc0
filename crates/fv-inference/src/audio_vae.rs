//! The LTX-2 audio VAE decoder: audio latents → stereo mel spectrogram.
//!
//! Matches the decoder of diffusers' `AutoencoderKLLTX2Audio` as the LTX-2.0 release uses it:
//! 2-D convolutions over (time, mel) that are causal in time (zero padding of `k − 1` rows
//! before, none after), pixel norm (RMS over channels, no parameters), SiLU residual blocks
//! (a 1×1 `nin_shortcut` where the width changes), nearest ×2 upsampling followed by a causal
//! convolution and dropping the first time row, then pixel norm → SiLU → `conv_out` and a crop
//! to `4L − 3` frames × `mel_bins`. The pipeline de-normalises packed latents
//! `[B, L, C·M]` with `latents_mean`/`latents_std` and unpacks them to `[B, C, L, M]` first
//! ([`AudioVaeDecoder::decode_tokens`] does all of it).

use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Tensor};
use serde::Deserialize;

/// The audio VAE's time and mel compression, hard-coded in the reference
/// (`LATENT_DOWNSAMPLE_FACTOR`).
pub const AUDIO_LATENT_DOWNSAMPLE: usize = 4;
/// `LTX2AudioPixelNorm`'s epsilon in the decoder's blocks.
const PIXEL_NORM_EPS: f64 = 1e-6;
/// Most audio latent frames one decode takes (~82 s at 25 per second). It bounds the largest
/// convolution buffer (at the released width ~6e5 im2col elements per latent frame, so
/// ~1.2e9 here, within the `u32` element count of candle's CUDA im2col); a pipeline decodes
/// one segment (5 s = 126 frames) at a time.
pub const MAX_AUDIO_LATENT_FRAMES: usize = 2048;

/// Which axis a convolution is causal along (`causality_axis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum CausalityAxis {
    /// Time (the release): pad `k − 1` rows before, none after; upsampling drops the first row.
    #[serde(rename = "height")]
    Height,
    /// Not causal: symmetric padding, no row dropped after upsampling (the output is still
    /// cropped to `4L − 3` frames, as the reference does for every axis setting).
    #[serde(rename = "none")]
    NonCausal,
    /// Causal along mel bins (not implemented; rejected by [`AudioVaeConfig::validate`]).
    #[serde(rename = "width")]
    Width,
    /// Padding variant of `width` (not implemented).
    #[serde(rename = "width-compatibility")]
    WidthCompatibility,
}

/// Decoder-side configuration of `AutoencoderKLLTX2Audio`, in diffusers' spelling (encoder
/// keys are accepted and ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct AudioVaeConfig {
    /// Width of level 0; also the length of `latents_mean`/`latents_std` (which must equal
    /// `latent_channels × mel_bins / 4`, the packed token width).
    pub base_channels: usize,
    /// Spectrogram channels out (2: stereo).
    pub output_channels: usize,
    /// Width multiplier per level; the decoder runs them top-down.
    pub ch_mult: Vec<usize>,
    /// Residual blocks per level (the decoder has one more).
    pub num_res_blocks: usize,
    pub attn_resolutions: Option<Vec<usize>>,
    pub latent_channels: usize,
    /// `"pixel"` (the release) or `"group"` (not implemented).
    pub norm_type: String,
    pub causality_axis: CausalityAxis,
    pub mid_block_add_attention: bool,
    pub sample_rate: usize,
    pub mel_hop_length: usize,
    pub mel_bins: Option<usize>,
}

impl Default for AudioVaeConfig {
    fn default() -> Self {
        Self::ltx2()
    }
}

impl AudioVaeConfig {
    /// The released LTX-2.0 audio VAE (diffusers' conversion script, version "2.0"): base 128,
    /// levels (1, 2, 4), 2 residual blocks, 8 latent channels, stereo, pixel norm, causal in
    /// time, 16 kHz, hop 160, 64 mel bins, no attention.
    pub fn ltx2() -> Self {
        Self {
            base_channels: 128,
            output_channels: 2,
            ch_mult: vec![1, 2, 4],
            num_res_blocks: 2,
            attn_resolutions: None,
            latent_channels: 8,
            norm_type: "pixel".into(),
            causality_axis: CausalityAxis::Height,
            mid_block_add_attention: false,
            sample_rate: 16000,
            mel_hop_length: 160,
            mel_bins: Some(64),
        }
    }

    /// Parses a diffusers-style `audio_vae/config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("audio vae config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Mel bins of the decoded spectrogram.
    pub fn mel_bins(&self) -> usize {
        self.mel_bins.unwrap_or(64)
    }

    /// Mel bins of the latents (`mel_bins / 4`).
    pub fn latent_mel_bins(&self) -> usize {
        self.mel_bins() / AUDIO_LATENT_DOWNSAMPLE
    }

    /// Features of one packed audio token (`latent_channels × latent mel bins`), what the
    /// transformer's `audio_in_channels` must be.
    pub fn token_channels(&self) -> usize {
        self.latent_channels * self.latent_mel_bins()
    }

    /// Audio latent frames per second of audio: `sample_rate / hop / 4` (25 for the release).
    pub fn latents_per_second(&self) -> f64 {
        self.sample_rate as f64 / self.mel_hop_length as f64 / AUDIO_LATENT_DOWNSAMPLE as f64
    }

    /// Audio latent frames for `num_frames` video frames at `fps`, as the reference pipeline
    /// counts them: `round(num_frames / fps · 25)`, ties to even like Python's `round` (121
    /// frames at 24 fps → 126).
    pub fn latent_frames_for(&self, num_frames: usize, fps: f64) -> Result<usize> {
        if !(fps.is_finite() && fps > 0.0) {
            return Err(InferenceError::Input(format!(
                "fps must be positive, got {fps}"
            )));
        }
        let n = (num_frames as f64 / fps * self.latents_per_second()).round_ties_even();
        Ok(n as usize)
    }

    /// Spectrogram frames the decoder returns for `latent_frames`: `max(4L − 3, 1)` (the
    /// causal first latent frame covers one mel frame).
    pub fn mel_frames_for(&self, latent_frames: usize) -> usize {
        (latent_frames * AUDIO_LATENT_DOWNSAMPLE)
            .saturating_sub(AUDIO_LATENT_DOWNSAMPLE - 1)
            .max(1)
    }

    /// Rejects values the decoder cannot honour, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(InferenceError::Config(m));
        if self.ch_mult.len() != 3 {
            return bad(format!(
                "ch_mult needs 3 levels (the reference hard-codes a ×4 time and mel ratio and \
                 silently zero-pads other depths), got {:?}",
                self.ch_mult
            ));
        }
        if self.ch_mult.contains(&0)
            || self.base_channels == 0
            || self.latent_channels == 0
            || self.output_channels == 0
        {
            return bad("channel counts and multipliers must be positive".into());
        }
        let mel = self.mel_bins();
        if mel == 0 || !mel.is_multiple_of(AUDIO_LATENT_DOWNSAMPLE) {
            return bad(format!(
                "mel_bins must be a positive multiple of 4, got {mel}"
            ));
        }
        if self.base_channels != self.token_channels() {
            return bad(format!(
                "base_channels ({}) must equal latent_channels × mel_bins / 4 ({}): it sizes \
                 latents_mean/latents_std, which de-normalise the packed tokens",
                self.base_channels,
                self.token_channels()
            ));
        }
        if self.norm_type != "pixel" {
            return bad(format!(
                "norm_type {:?} is not implemented (the release uses \"pixel\")",
                self.norm_type
            ));
        }
        if !matches!(
            self.causality_axis,
            CausalityAxis::Height | CausalityAxis::NonCausal
        ) {
            return bad(
                "causality along mel bins (\"width\") is not implemented; the release is causal \
                 in time (\"height\")"
                    .into(),
            );
        }
        if self.mid_block_add_attention
            || self
                .attn_resolutions
                .as_ref()
                .is_some_and(|a| !a.is_empty())
        {
            return bad(
                "audio VAE attention blocks are not implemented (the release has none)".into(),
            );
        }
        if self.sample_rate == 0 || self.mel_hop_length == 0 {
            return bad("sample_rate and mel_hop_length must be positive".into());
        }
        Ok(())
    }
}

/// Zero-pads and convolves `x [B, C, T, M]` with `w [O, C, kh, kw]`, on the CPU in f32 (candle's
/// CPU convolution has no bf16/f16 matmul), elsewhere in the weights' dtype.
fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, pads: [usize; 4]) -> Result<Tensor> {
    let [top, bottom, left, right] = pads;
    let x = x
        .pad_with_zeros(2, top, bottom)?
        .pad_with_zeros(3, left, right)?;
    let dtype = x.dtype();
    let upcast = x.device().is_cpu() && dtype != DType::F32;
    let (x, w) = if upcast {
        (x.to_dtype(DType::F32)?, w.to_dtype(DType::F32)?)
    } else {
        (x, w.clone())
    };
    let y = x.conv2d(&w, 0, 1, 1, 1)?.to_dtype(dtype)?;
    let c = b.dim(0)?;
    Ok(y.broadcast_add(&b.reshape((1, c, 1, 1))?)?)
}

/// `LTX2AudioCausalConv2d`: a 2-D convolution padded causally along time (or symmetrically).
#[derive(Debug, Clone)]
struct CausalConv2d {
    weight: Tensor,
    bias: Tensor,
    pads: [usize; 4],
}

impl CausalConv2d {
    fn load(
        w: &Weights,
        prefix: &str,
        cin: usize,
        cout: usize,
        k: usize,
        axis: CausalityAxis,
    ) -> Result<Self> {
        let p = k - 1;
        let pads = match axis {
            CausalityAxis::NonCausal => [p / 2, p - p / 2, p / 2, p - p / 2],
            _ => [p, 0, p / 2, p - p / 2],
        };
        Ok(Self {
            weight: w.get(&format!("{prefix}.conv.weight"), &[cout, cin, k, k])?,
            bias: w.get(&format!("{prefix}.conv.bias"), &[cout])?,
            pads,
        })
    }

    fn expected(
        v: &mut Vec<(String, Vec<usize>)>,
        prefix: &str,
        cin: usize,
        cout: usize,
        k: usize,
    ) {
        v.push((format!("{prefix}.conv.weight"), vec![cout, cin, k, k]));
        v.push((format!("{prefix}.conv.bias"), vec![cout]));
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(x, &self.weight, &self.bias, self.pads)
    }
}

/// `x / sqrt(mean_c(x²) + 1e-6)` over the channel axis, in f32.
fn pixel_norm(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let rms = (x.sqr()?.mean_keepdim(1)? + PIXEL_NORM_EPS)?.sqrt()?;
    Ok(x.broadcast_div(&rms)?.to_dtype(dtype)?)
}

/// Residual block: (pixel norm → SiLU → 3×3 conv) × 2, plus the input (through a 1×1
/// `nin_shortcut` where the width changes).
#[derive(Debug, Clone)]
struct ResBlock {
    conv1: CausalConv2d,
    conv2: CausalConv2d,
    shortcut: Option<CausalConv2d>,
}

impl ResBlock {
    fn load(w: &Weights, p: &str, cin: usize, cout: usize, axis: CausalityAxis) -> Result<Self> {
        Ok(Self {
            conv1: CausalConv2d::load(w, &format!("{p}.conv1"), cin, cout, 3, axis)?,
            conv2: CausalConv2d::load(w, &format!("{p}.conv2"), cout, cout, 3, axis)?,
            shortcut: (cin != cout)
                .then(|| CausalConv2d::load(w, &format!("{p}.nin_shortcut"), cin, cout, 1, axis))
                .transpose()?,
        })
    }

    fn expected(v: &mut Vec<(String, Vec<usize>)>, p: &str, cin: usize, cout: usize) {
        CausalConv2d::expected(v, &format!("{p}.conv1"), cin, cout, 3);
        CausalConv2d::expected(v, &format!("{p}.conv2"), cout, cout, 3);
        if cin != cout {
            CausalConv2d::expected(v, &format!("{p}.nin_shortcut"), cin, cout, 1);
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&pixel_norm(x)?.silu()?)?;
        let h = self.conv2.forward(&pixel_norm(&h)?.silu()?)?;
        let x = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        Ok((x + h)?)
    }
}

/// One decoder level: residual blocks, then (except at level 0) the upsampler.
#[derive(Debug, Clone)]
struct Level {
    blocks: Vec<ResBlock>,
    upsample: Option<CausalConv2d>,
}

/// The widths of the decoder: (top width, per level (in, out) of each block, top-down).
struct Plan {
    top: usize,
    /// Indexed by level; each level's blocks as (in, out).
    levels: Vec<Vec<(usize, usize)>>,
    out: usize,
}

impl AudioVaeConfig {
    fn plan(&self) -> Result<Plan> {
        self.validate()?;
        let n = self.ch_mult.len();
        let top = self.base_channels * self.ch_mult[n - 1];
        let mut levels = vec![Vec::new(); n];
        let mut cin = top;
        for level in (0..n).rev() {
            let cout = self.base_channels * self.ch_mult[level];
            for _ in 0..=self.num_res_blocks {
                levels[level].push((cin, cout));
                cin = cout;
            }
        }
        Ok(Plan {
            top,
            levels,
            out: cin,
        })
    }
}

/// The LTX-2 audio VAE decoder with its latent statistics.
#[derive(Debug, Clone)]
pub struct AudioVaeDecoder {
    cfg: AudioVaeConfig,
    conv_in: CausalConv2d,
    mid: [ResBlock; 2],
    levels: Vec<Level>,
    conv_out: CausalConv2d,
    latents_mean: Tensor,
    latents_std: Tensor,
}

impl AudioVaeDecoder {
    /// Builds the decoder from weights in diffusers names (`decoder.…`, `latents_mean`,
    /// `latents_std`; see [`crate::weights::canonical_audio_vae_name`]). Every tensor is
    /// shape-checked against `cfg`.
    pub fn new(cfg: &AudioVaeConfig, w: &Weights) -> Result<Self> {
        let plan = cfg.plan()?;
        let axis = cfg.causality_axis;
        let res = |p: &str, cin, cout| ResBlock::load(w, p, cin, cout, axis);
        let n = cfg.ch_mult.len();
        let levels = (0..n)
            .map(|level| {
                let blocks = plan.levels[level]
                    .iter()
                    .enumerate()
                    .map(|(j, &(cin, cout))| {
                        res(&format!("decoder.up.{level}.block.{j}"), cin, cout)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let width = plan.levels[level].last().map_or(plan.top, |&(_, c)| c);
                let upsample = (level != 0)
                    .then(|| {
                        CausalConv2d::load(
                            w,
                            &format!("decoder.up.{level}.upsample.conv"),
                            width,
                            width,
                            3,
                            axis,
                        )
                    })
                    .transpose()?;
                Ok(Level { blocks, upsample })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            conv_in: CausalConv2d::load(
                w,
                "decoder.conv_in",
                cfg.latent_channels,
                plan.top,
                3,
                axis,
            )?,
            mid: [
                res("decoder.mid.block_1", plan.top, plan.top)?,
                res("decoder.mid.block_2", plan.top, plan.top)?,
            ],
            levels,
            conv_out: CausalConv2d::load(
                w,
                "decoder.conv_out",
                plan.out,
                cfg.output_channels,
                3,
                axis,
            )?,
            latents_mean: w.get("latents_mean", &[cfg.base_channels])?,
            latents_std: w.get("latents_std", &[cfg.base_channels])?,
        })
    }

    /// Canonical (name, shape) of every tensor the decoder reads, in load order.
    pub fn expected_weights(cfg: &AudioVaeConfig) -> Result<Vec<(String, Vec<usize>)>> {
        let plan = cfg.plan()?;
        let mut v = Vec::new();
        CausalConv2d::expected(&mut v, "decoder.conv_in", cfg.latent_channels, plan.top, 3);
        for b in ["block_1", "block_2"] {
            ResBlock::expected(&mut v, &format!("decoder.mid.{b}"), plan.top, plan.top);
        }
        for (level, blocks) in plan.levels.iter().enumerate() {
            for (j, &(cin, cout)) in blocks.iter().enumerate() {
                ResBlock::expected(&mut v, &format!("decoder.up.{level}.block.{j}"), cin, cout);
            }
            if level != 0 {
                let width = blocks.last().map_or(plan.top, |&(_, c)| c);
                CausalConv2d::expected(
                    &mut v,
                    &format!("decoder.up.{level}.upsample.conv"),
                    width,
                    width,
                    3,
                );
            }
        }
        CausalConv2d::expected(&mut v, "decoder.conv_out", plan.out, cfg.output_channels, 3);
        v.push(("latents_mean".into(), vec![cfg.base_channels]));
        v.push(("latents_std".into(), vec![cfg.base_channels]));
        Ok(v)
    }

    /// The config the decoder was built with.
    pub fn config(&self) -> &AudioVaeConfig {
        &self.cfg
    }

    /// The dtype of the weights, which decoding computes in (norms in f32).
    pub fn dtype(&self) -> DType {
        self.latents_std.dtype()
    }

    fn check_tokens(&self, tokens: &Tensor) -> Result<(usize, usize)> {
        let (b, l, c) = tokens.dims3()?;
        if c != self.cfg.token_channels() {
            return Err(InferenceError::Input(format!(
                "audio tokens are [{b}, {l}, {c}], expected [B, L, {}] (latent channels × latent \
                 mel bins)",
                self.cfg.token_channels()
            )));
        }
        Ok((b, l))
    }

    /// Normalised packed tokens `[B, L, C·M]` → latent space: `x · std + mean` per feature
    /// (the pipeline's `_denormalize_audio_latents`), in f32.
    pub fn denormalize_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        self.check_tokens(tokens)?;
        let (mean, std) = self.stats()?;
        Ok(tokens
            .to_dtype(DType::F32)?
            .broadcast_mul(&std)?
            .broadcast_add(&mean)?)
    }

    /// Latent-space packed tokens → normalised: `(x − mean) / std` (what the reference pipeline
    /// applies to audio latents a caller passes in, e.g. a continuation's cached latents).
    pub fn normalize_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        self.check_tokens(tokens)?;
        let (mean, std) = self.stats()?;
        Ok(tokens
            .to_dtype(DType::F32)?
            .broadcast_sub(&mean)?
            .broadcast_div(&std)?)
    }

    fn stats(&self) -> Result<(Tensor, Tensor)> {
        Ok((
            self.latents_mean.to_dtype(DType::F32)?,
            self.latents_std.to_dtype(DType::F32)?,
        ))
    }

    /// `[B, L, C·M] → [B, C, L, M]` (feature index `c·M + m`).
    pub fn unpack_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, l) = self.check_tokens(tokens)?;
        let (c, m) = (self.cfg.latent_channels, self.cfg.latent_mel_bins());
        Ok(tokens
            .reshape((b, l, c, m))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// `[B, C, L, M] → [B, L, C·M]` (the pipeline's `_pack_audio_latents`).
    pub fn pack_latents(&self, z: &Tensor) -> Result<Tensor> {
        let (b, c, l, m) = z.dims4()?;
        if (c, m) != (self.cfg.latent_channels, self.cfg.latent_mel_bins()) {
            return Err(InferenceError::Input(format!(
                "audio latents are {:?}, expected [B, {}, L, {}]",
                z.dims(),
                self.cfg.latent_channels,
                self.cfg.latent_mel_bins()
            )));
        }
        Ok(z.transpose(1, 2)?.contiguous()?.reshape((b, l, c * m))?)
    }

    /// Decodes normalised packed tokens `[B, L, C·M]` (as the transformer works with them):
    /// de-normalise → unpack → [`decode`](Self::decode). Returns the mel spectrogram
    /// `[B, output_channels, 4L − 3, mel_bins]` in f32.
    pub fn decode_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let z = self.denormalize_tokens(tokens)?;
        self.decode(&self.unpack_tokens(&z)?)
    }

    /// Decodes de-normalised latents `[B, C, L, M]` (diffusers' `audio_vae.decode`) of any
    /// float dtype; computes in the model's [`dtype`](Self::dtype) and returns f32
    /// `[B, output_channels, 4L − 3, mel_bins]`.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let (_, c, l, m) = z.dims4()?;
        if c != self.cfg.latent_channels || m == 0 {
            return Err(InferenceError::Input(format!(
                "audio latents are {:?}, expected [B, {}, L, M]",
                z.dims(),
                self.cfg.latent_channels
            )));
        }
        if l == 0 || l > MAX_AUDIO_LATENT_FRAMES {
            return Err(InferenceError::Input(format!(
                "audio latents have {l} frames; one decode takes 1 to {MAX_AUDIO_LATENT_FRAMES}"
            )));
        }
        let causal = self.cfg.causality_axis == CausalityAxis::Height;
        let mut x = self.conv_in.forward(&z.to_dtype(self.dtype())?)?;
        for r in &self.mid {
            x = r.forward(&x)?;
        }
        for level in self.levels.iter().rev() {
            for r in &level.blocks {
                x = r.forward(&x)?;
            }
            if let Some(conv) = &level.upsample {
                let (_, _, t, f) = x.dims4()?;
                x = conv.forward(&x.upsample_nearest2d(2 * t, 2 * f)?)?;
                if causal {
                    // the causal first latent frame covers one frame, not two
                    x = x.narrow(2, 1, 2 * t - 1)?;
                }
            }
        }
        let x = self.conv_out.forward(&pixel_norm(&x)?.silu()?)?;
        // crop (or zero-pad) to the frames and mel bins the latents stand for
        let (t, f) = (self.cfg.mel_frames_for(l), self.cfg.mel_bins());
        let (_, _, xt, xf) = x.dims4()?;
        let x = x.narrow(2, 0, xt.min(t))?.narrow(3, 0, xf.min(f))?;
        let x = x.pad_with_zeros(2, 0, t.saturating_sub(xt))?;
        let x = x.pad_with_zeros(3, 0, f.saturating_sub(xf))?;
        Ok(x.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn released_config_plans_three_levels_down_to_128_channels() {
        let cfg = AudioVaeConfig::ltx2();
        let plan = cfg.plan().unwrap();
        assert_eq!(plan.top, 512);
        assert_eq!(plan.levels[2], vec![(512, 512); 3]);
        assert_eq!(plan.levels[1], vec![(512, 256), (256, 256), (256, 256)]);
        assert_eq!(plan.levels[0], vec![(256, 128), (128, 128), (128, 128)]);
        assert_eq!(plan.out, 128);
        assert_eq!(cfg.token_channels(), 128);
        assert_eq!(cfg.mel_frames_for(126), 501);
    }

    #[test]
    fn latent_frames_follow_the_reference_rounding() {
        let cfg = AudioVaeConfig::ltx2();
        assert_eq!(cfg.latents_per_second(), 25.0);
        assert_eq!(cfg.latent_frames_for(121, 24.0).unwrap(), 126);
        assert_eq!(cfg.latent_frames_for(49, 24.0).unwrap(), 51);
        assert_eq!(cfg.latent_frames_for(161, 24.0).unwrap(), 168);
        // 0.5 ties go to even, like Python's round: 1 frame at 50 fps is 0.5 latents
        assert_eq!(cfg.latent_frames_for(1, 50.0).unwrap(), 0);
        assert_eq!(cfg.latent_frames_for(3, 50.0).unwrap(), 2);
        assert!(cfg.latent_frames_for(1, 0.0).is_err());
    }

    #[test]
    fn unimplemented_variants_are_rejected() {
        type Edit = Box<dyn Fn(&mut AudioVaeConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("two levels", Box::new(|c| c.ch_mult = vec![1, 2])),
            ("group norm", Box::new(|c| c.norm_type = "group".into())),
            (
                "width causal",
                Box::new(|c| c.causality_axis = CausalityAxis::Width),
            ),
            ("attention", Box::new(|c| c.mid_block_add_attention = true)),
            ("stats width", Box::new(|c| c.base_channels = 64)),
            ("mel bins", Box::new(|c| c.mel_bins = Some(62))),
        ];
        for (what, edit) in cases {
            let mut c = AudioVaeConfig::ltx2();
            edit(&mut c);
            assert!(c.validate().is_err(), "{what} accepted");
        }
        assert!(AudioVaeConfig::from_json("{\"causality_axis\": \"diagonal\"}").is_err());
        AudioVaeConfig::ltx2().validate().unwrap();
    }
}
