//! The LTX-2.0 vocoder (HiFi-GAN style): stereo mel spectrogram → 24 kHz stereo waveform, and
//! the step from a waveform to `fv_core::AudioTrack`.
//!
//! Matches diffusers' `LTX2Vocoder`: the mel `[B, 2, T, 64]` is read as 128 channels over time
//! (`c·64 + m`), `conv_in` (k7) → per upsampler: LeakyReLU(0.1) → transposed convolution
//! (factors 6, 5, 2, 2, 2: ×240) → the mean of three residual blocks (kernels 3/7/11, dilations
//! 1/3/5, each LeakyReLU → dilated conv → LeakyReLU → conv, added to the input) → a final
//! LeakyReLU with slope **0.01** (the reference's fixed `nn.LeakyReLU()`, not the configured
//! slope) → `conv_out` (k7) → tanh.

use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Tensor};
use fv_core::AudioTrack;
use serde::Deserialize;

/// The slope of the LeakyReLU before `conv_out`: PyTorch's `nn.LeakyReLU()` default, which the
/// reference uses regardless of `leaky_relu_negative_slope`.
const FINAL_LEAKY_SLOPE: f64 = 0.01;
/// Kernel of `conv_in` and `conv_out`.
const IO_KERNEL: usize = 7;
/// Most spectrogram frames one call takes (~82 s of audio at 100 frames per second); the
/// waveform is 240× longer, and the widest activation (the first upsampler's 512 channels ×
/// 6T samples) stays ~5e8 elements per sample.
pub const MAX_MEL_FRAMES: usize = 8192;

/// What follows `conv_out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalActivation {
    /// `tanh` (the LTX-2.0 release).
    Tanh,
    /// Clamp to [-1, 1].
    Clamp,
}

/// `LTX2Vocoder`'s configuration, in diffusers' spelling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VocoderConfig {
    /// Mel channels × mel bins (2 × 64).
    pub in_channels: usize,
    pub hidden_channels: usize,
    pub out_channels: usize,
    pub upsample_kernel_sizes: Vec<usize>,
    pub upsample_factors: Vec<usize>,
    pub resnet_kernel_sizes: Vec<usize>,
    pub resnet_dilations: Vec<Vec<usize>>,
    /// `"leaky_relu"` (the release); the snake activations of later vocoders are not here.
    pub act_fn: String,
    pub leaky_relu_negative_slope: f64,
    pub antialias: bool,
    /// `None` (JSON `null`) leaves the waveform unbounded; [`to_audio_track`] clamps it.
    pub final_act_fn: Option<FinalActivation>,
    pub final_bias: bool,
    pub output_sampling_rate: u32,
}

impl Default for VocoderConfig {
    fn default() -> Self {
        Self::ltx2()
    }
}

impl VocoderConfig {
    /// The released LTX-2.0 vocoder (diffusers' conversion script, version "2.0"): 128 → 1024
    /// channels, upsample factors (6, 5, 2, 2, 2) with kernels (16, 15, 8, 4, 4), residual
    /// kernels (3, 7, 11) with dilations (1, 3, 5), LeakyReLU 0.1, tanh, 24 kHz.
    pub fn ltx2() -> Self {
        Self {
            in_channels: 128,
            hidden_channels: 1024,
            out_channels: 2,
            upsample_kernel_sizes: vec![16, 15, 8, 4, 4],
            upsample_factors: vec![6, 5, 2, 2, 2],
            resnet_kernel_sizes: vec![3, 7, 11],
            resnet_dilations: vec![vec![1, 3, 5]; 3],
            act_fn: "leaky_relu".into(),
            leaky_relu_negative_slope: 0.1,
            antialias: false,
            final_act_fn: Some(FinalActivation::Tanh),
            final_bias: true,
            output_sampling_rate: 24000,
        }
    }

    /// Parses a diffusers-style `vocoder/config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("vocoder config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Waveform samples per spectrogram frame (the product of the upsample factors: 240).
    pub fn upsample_factor(&self) -> usize {
        self.upsample_factors.iter().product()
    }

    /// Rejects values the vocoder cannot honour, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(InferenceError::Config(m));
        let n = self.upsample_factors.len();
        if n == 0 || self.upsample_kernel_sizes.len() != n {
            return bad(format!(
                "upsample_kernel_sizes and upsample_factors must be non-empty lists of one length, \
                 got {} and {n}",
                self.upsample_kernel_sizes.len()
            ));
        }
        if self.resnet_kernel_sizes.is_empty()
            || self.resnet_kernel_sizes.len() != self.resnet_dilations.len()
        {
            return bad("resnet_kernel_sizes and resnet_dilations must match in length".into());
        }
        if self
            .resnet_dilations
            .iter()
            .any(|d| d.is_empty() || d.contains(&0))
            || self.resnet_kernel_sizes.contains(&0)
        {
            return bad("residual kernels and dilations must be positive".into());
        }
        for (&k, &s) in self
            .upsample_kernel_sizes
            .iter()
            .zip(&self.upsample_factors)
        {
            if s == 0 || k < s {
                return bad(format!(
                    "an upsampler needs 0 < factor <= kernel, got factor {s}, kernel {k}"
                ));
            }
        }
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad("in_channels and out_channels must be positive".into());
        }
        if self.hidden_channels >> n == 0 || !self.hidden_channels.is_multiple_of(1 << n) {
            return bad(format!(
                "hidden_channels ({}) must halve cleanly {n} times",
                self.hidden_channels
            ));
        }
        if self.act_fn != "leaky_relu" || self.antialias {
            return bad(format!(
                "act_fn {:?} / antialias {} is not implemented (LTX-2.0 uses leaky_relu without \
                 antialiasing)",
                self.act_fn, self.antialias
            ));
        }
        let slope = self.leaky_relu_negative_slope;
        if !(slope.is_finite() && (0.0..1.0).contains(&slope)) {
            return bad(format!(
                "leaky_relu_negative_slope must be in [0, 1), got {slope}"
            ));
        }
        if self.output_sampling_rate == 0 {
            return bad("output_sampling_rate must be positive".into());
        }
        Ok(())
    }
}

/// `max(x, slope·x)`, LeakyReLU for slopes in [0, 1).
fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    Ok(x.maximum(&(x * slope)?)?)
}

/// On the CPU, candle's convolutions have no bf16/f16 matmul: there they run in f32.
fn compute_pair(x: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    if x.device().is_cpu() && x.dtype() != DType::F32 {
        Ok((x.to_dtype(DType::F32)?, w.to_dtype(DType::F32)?))
    } else {
        Ok((x.clone(), w.clone()))
    }
}

/// A 1-D convolution with PyTorch's `padding="same"` (for odd and even kernels) and an
/// optional bias.
#[derive(Debug, Clone)]
struct Conv1d {
    weight: Tensor,
    bias: Option<Tensor>,
    dilation: usize,
}

impl Conv1d {
    #[allow(clippy::too_many_arguments)]
    fn load(
        w: &Weights,
        p: &str,
        cin: usize,
        cout: usize,
        k: usize,
        dilation: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(Self {
            weight: w.get(&format!("{p}.weight"), &[cout, cin, k])?,
            bias: bias
                .then(|| w.get(&format!("{p}.bias"), &[cout]))
                .transpose()?,
            dilation,
        })
    }

    fn expected(
        v: &mut Vec<(String, Vec<usize>)>,
        p: &str,
        cin: usize,
        cout: usize,
        k: usize,
        bias: bool,
    ) {
        v.push((format!("{p}.weight"), vec![cout, cin, k]));
        if bias {
            v.push((format!("{p}.bias"), vec![cout]));
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (cout, _, k) = self.weight.dims3()?;
        let total = self.dilation * (k - 1);
        let (left, right) = (total / 2, total - total / 2);
        let dtype = x.dtype();
        let (x, w) = compute_pair(x, &self.weight)?;
        let y = if left == right {
            x.conv1d(&w, left, 1, self.dilation, 1)?
        } else {
            x.pad_with_zeros(2, left, right)?
                .conv1d(&w, 0, 1, self.dilation, 1)?
        }
        .to_dtype(dtype)?;
        match &self.bias {
            Some(b) => Ok(y.broadcast_add(&b.reshape((1, cout, 1))?)?),
            None => Ok(y),
        }
    }
}

/// `ConvTranspose1d(cin, cout, k, stride=s, padding=(k − s)/2)`: computed without padding,
/// then `(k − s)/2` samples cropped from each end (the same result; candle's fast CPU path
/// needs zero padding). One sample at a time: candle 0.11.1's CPU `conv_transpose1d` mixes up
/// batch elements when the batch is larger than 1 (checked by
/// `convolutions_match_naive_ones_per_sample` below).
#[derive(Debug, Clone)]
struct ConvTranspose1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl ConvTranspose1d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, cout, k) = self.weight.dims3()?;
        let pad = (k - self.stride) / 2;
        let dtype = x.dtype();
        let (x, w) = compute_pair(x, &self.weight)?;
        let per_sample = (0..x.dim(0)?)
            .map(|i| {
                Ok(x.narrow(0, i, 1)?
                    .conv_transpose1d(&w, 0, 0, self.stride, 1, 1)?)
            })
            .collect::<Result<Vec<_>>>()?;
        let y = Tensor::cat(&per_sample, 0)?.to_dtype(dtype)?;
        let n = y.dim(2)?;
        let y = y.narrow(2, pad, n - 2 * pad)?;
        Ok(y.broadcast_add(&self.bias.reshape((1, cout, 1))?)?)
    }
}

/// HiFi-GAN residual block: per dilation `d`, LeakyReLU → conv (dilation d) → LeakyReLU →
/// conv, added to the input.
#[derive(Debug, Clone)]
struct ResBlock {
    convs: Vec<(Conv1d, Conv1d)>,
}

impl ResBlock {
    fn forward(&self, x: &Tensor, slope: f64) -> Result<Tensor> {
        let mut x = x.clone();
        for (c1, c2) in &self.convs {
            let h = c1.forward(&leaky_relu(&x, slope)?)?;
            let h = c2.forward(&leaky_relu(&h, slope)?)?;
            x = (x + h)?;
        }
        Ok(x)
    }
}

/// The LTX-2.0 vocoder.
#[derive(Debug, Clone)]
pub struct Vocoder {
    cfg: VocoderConfig,
    conv_in: Conv1d,
    stages: Vec<(ConvTranspose1d, Vec<ResBlock>)>,
    conv_out: Conv1d,
    /// The slope before `conv_out` (a field so unit tests can check that it matters).
    final_slope: f64,
}

impl Vocoder {
    /// Builds the vocoder from weights in diffusers names (`conv_in`, `upsamplers.i`,
    /// `resnets.j.convs{1,2}.d`, `conv_out`; see [`crate::weights::canonical_vocoder_name`]).
    /// Every tensor is shape-checked against `cfg`.
    pub fn new(cfg: &VocoderConfig, w: &Weights) -> Result<Self> {
        cfg.validate()?;
        let conv_in = Conv1d::load(
            w,
            "conv_in",
            cfg.in_channels,
            cfg.hidden_channels,
            IO_KERNEL,
            1,
            true,
        )?;
        let mut stages = Vec::with_capacity(cfg.upsample_factors.len());
        let mut ch = cfg.hidden_channels;
        let per = cfg.resnet_kernel_sizes.len();
        for (i, (&s, &k)) in cfg
            .upsample_factors
            .iter()
            .zip(&cfg.upsample_kernel_sizes)
            .enumerate()
        {
            let out = ch / 2;
            let up = ConvTranspose1d {
                weight: w.get(&format!("upsamplers.{i}.weight"), &[ch, out, k])?,
                bias: w.get(&format!("upsamplers.{i}.bias"), &[out])?,
                stride: s,
            };
            let blocks = cfg
                .resnet_kernel_sizes
                .iter()
                .zip(&cfg.resnet_dilations)
                .enumerate()
                .map(|(j, (&rk, dil))| {
                    let p = format!("resnets.{}", i * per + j);
                    let convs = dil
                        .iter()
                        .enumerate()
                        .map(|(d, &dv)| {
                            Ok((
                                Conv1d::load(
                                    w,
                                    &format!("{p}.convs1.{d}"),
                                    out,
                                    out,
                                    rk,
                                    dv,
                                    true,
                                )?,
                                Conv1d::load(w, &format!("{p}.convs2.{d}"), out, out, rk, 1, true)?,
                            ))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(ResBlock { convs })
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push((up, blocks));
            ch = out;
        }
        Ok(Self {
            cfg: cfg.clone(),
            conv_in,
            stages,
            conv_out: Conv1d::load(
                w,
                "conv_out",
                ch,
                cfg.out_channels,
                IO_KERNEL,
                1,
                cfg.final_bias,
            )?,
            final_slope: FINAL_LEAKY_SLOPE,
        })
    }

    /// Canonical (name, shape) of every tensor the vocoder reads, in load order.
    pub fn expected_weights(cfg: &VocoderConfig) -> Result<Vec<(String, Vec<usize>)>> {
        cfg.validate()?;
        let mut v = Vec::new();
        Conv1d::expected(
            &mut v,
            "conv_in",
            cfg.in_channels,
            cfg.hidden_channels,
            IO_KERNEL,
            true,
        );
        let mut ch = cfg.hidden_channels;
        let per = cfg.resnet_kernel_sizes.len();
        for (i, &k) in cfg.upsample_kernel_sizes.iter().enumerate() {
            let out = ch / 2;
            v.push((format!("upsamplers.{i}.weight"), vec![ch, out, k]));
            v.push((format!("upsamplers.{i}.bias"), vec![out]));
            for (j, (&rk, dil)) in cfg
                .resnet_kernel_sizes
                .iter()
                .zip(&cfg.resnet_dilations)
                .enumerate()
            {
                for d in 0..dil.len() {
                    for c in ["convs1", "convs2"] {
                        let p = format!("resnets.{}.{c}.{d}", i * per + j);
                        Conv1d::expected(&mut v, &p, out, out, rk, true);
                    }
                }
            }
            ch = out;
        }
        Conv1d::expected(
            &mut v,
            "conv_out",
            ch,
            cfg.out_channels,
            IO_KERNEL,
            cfg.final_bias,
        );
        Ok(v)
    }

    /// The config the vocoder was built with.
    pub fn config(&self) -> &VocoderConfig {
        &self.cfg
    }

    /// Output sample rate in Hz (24 000 for the release).
    pub fn sample_rate(&self) -> u32 {
        self.cfg.output_sampling_rate
    }

    /// The dtype of the weights, which the vocoder computes in.
    pub fn dtype(&self) -> DType {
        self.conv_in.weight.dtype()
    }

    /// Mel spectrogram `[B, C, T, M]` (the audio VAE's output, `C·M = in_channels`) → waveform
    /// `[B, out_channels, T·240]` in f32, in [-1, 1] with the release's tanh.
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let (b, c, t, m) = mel.dims4()?;
        if c * m != self.cfg.in_channels {
            return Err(InferenceError::Input(format!(
                "mel is {:?}; the vocoder takes channels × mel bins = {}",
                mel.dims(),
                self.cfg.in_channels
            )));
        }
        if t == 0 || t > MAX_MEL_FRAMES {
            return Err(InferenceError::Input(format!(
                "mel has {t} frames; one call takes 1 to {MAX_MEL_FRAMES}"
            )));
        }
        let x = mel
            .to_dtype(self.dtype())?
            .transpose(2, 3)?
            .contiguous()?
            .reshape((b, c * m, t))?;
        let slope = self.cfg.leaky_relu_negative_slope;
        let mut x = self.conv_in.forward(&x)?;
        for (up, blocks) in &self.stages {
            x = up.forward(&leaky_relu(&x, slope)?)?;
            // the residual blocks run side by side on the same input and are averaged
            let mut sum: Option<Tensor> = None;
            for block in blocks {
                let y = block.forward(&x, slope)?;
                sum = Some(match sum {
                    None => y,
                    Some(s) => (s + y)?,
                });
            }
            let sum = sum.ok_or_else(|| InferenceError::Config("no residual blocks".into()))?;
            x = (sum / blocks.len() as f64)?;
        }
        let x = self.conv_out.forward(&leaky_relu(&x, self.final_slope)?)?;
        let x = match self.cfg.final_act_fn {
            Some(FinalActivation::Tanh) => x.tanh()?,
            Some(FinalActivation::Clamp) => x.clamp(-1.0, 1.0)?,
            None => x,
        };
        Ok(x.to_dtype(DType::F32)?)
    }
}

/// One waveform `[channels, samples]` (e.g. `vocoder.forward(mel)?.get(0)?`) → an
/// `fv_core::AudioTrack` at `sample_rate`: samples interleaved (frame-major), clamped to
/// [-1, 1]. Non-finite samples, no samples, or more than 65 535 channels are errors.
pub fn to_audio_track(waveform: &Tensor, sample_rate: u32) -> Result<AudioTrack> {
    let (channels, n) = waveform.dims2()?;
    if channels == 0 || n == 0 || channels > u16::MAX as usize {
        return Err(InferenceError::Input(format!(
            "waveform is [{channels}, {n}]; an audio track needs 1 to 65535 channels and samples"
        )));
    }
    if sample_rate == 0 {
        return Err(InferenceError::Input("sample rate must be positive".into()));
    }
    let rows: Vec<Vec<f32>> = waveform.to_dtype(DType::F32)?.to_vec2()?;
    let mut samples = Vec::with_capacity(channels * n);
    for i in 0..n {
        for row in &rows {
            let s = row[i];
            if !s.is_finite() {
                return Err(InferenceError::Input(format!("waveform sample {i} is {s}")));
            }
            samples.push(s.clamp(-1.0, 1.0));
        }
    }
    Ok(AudioTrack {
        sample_rate,
        channels: channels as u16,
        samples,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// `y[b][o][t] = Σ w[o][c][k] · x[b][c][t + k·d − left]` (zeros outside), the definition
    /// of a "same" convolution, and `Σ w[c][o][k] · x[b][c][i]` over `i·s + k − pad = t` for
    /// the transposed one.
    #[allow(clippy::needless_range_loop)] // the naive definitions read clearest indexed
    #[test]
    fn convolutions_match_naive_ones_per_sample() {
        use crate::test_util::{max_diff, seeded};
        let (b, cin, cout, n) = (2, 3, 4, 10);
        let x = seeded(&[b, cin, n], 1);
        let xv: Vec<Vec<Vec<f32>>> = x.to_vec3().unwrap();
        for (k, dil) in [(3, 1), (3, 3), (4, 1), (7, 5)] {
            let conv = Conv1d {
                weight: seeded(&[cout, cin, k], 2),
                bias: Some(seeded(&[cout], 3)),
                dilation: dil,
            };
            let wv: Vec<Vec<Vec<f32>>> = conv.weight.to_vec3().unwrap();
            let bv: Vec<f32> = conv.bias.as_ref().unwrap().to_vec1().unwrap();
            let left = (dil * (k - 1) / 2) as i64;
            let mut want = vec![0f32; b * cout * n];
            for (bi, xb) in xv.iter().enumerate() {
                for o in 0..cout {
                    for t in 0..n {
                        let mut s = bv[o];
                        for (c, xc) in xb.iter().enumerate() {
                            for kk in 0..k {
                                let i = t as i64 + (kk * dil) as i64 - left;
                                if (0..n as i64).contains(&i) {
                                    s += wv[o][c][kk] * xc[i as usize];
                                }
                            }
                        }
                        want[(bi * cout + o) * n + t] = s;
                    }
                }
            }
            let want = Tensor::from_vec(want, (b, cout, n), x.device()).unwrap();
            let err = max_diff(&conv.forward(&x).unwrap(), &want);
            assert!(err < 1e-5, "conv k {k} dilation {dil}: {err}");
        }
        for (k, s) in [(4, 2), (15, 5), (16, 6), (5, 2)] {
            let up = ConvTranspose1d {
                weight: seeded(&[cin, cout, k], 4),
                bias: seeded(&[cout], 5),
                stride: s,
            };
            let wv: Vec<Vec<Vec<f32>>> = up.weight.to_vec3().unwrap();
            let bv: Vec<f32> = up.bias.to_vec1().unwrap();
            let pad = (k - s) / 2;
            let len = (n - 1) * s + k - 2 * pad;
            let mut want = vec![0f32; b * cout * len];
            for (bi, xb) in xv.iter().enumerate() {
                for o in 0..cout {
                    for t in 0..len {
                        let mut acc = bv[o];
                        for (c, xc) in xb.iter().enumerate() {
                            for (i, xi) in xc.iter().enumerate() {
                                for kk in 0..k {
                                    if i * s + kk == t + pad {
                                        acc += wv[c][o][kk] * xi;
                                    }
                                }
                            }
                        }
                        want[(bi * cout + o) * len + t] = acc;
                    }
                }
            }
            let want = Tensor::from_vec(want, (b, cout, len), x.device()).unwrap();
            let err = max_diff(&up.forward(&x).unwrap(), &want);
            assert!(err < 1e-5, "transposed conv k {k} stride {s}: {err}");
        }
    }

    /// The reference's final LeakyReLU ignores `leaky_relu_negative_slope`: using the
    /// configured 0.1 there instead of 0.01 must move the tiny fixture's waveform far beyond
    /// the parity tolerance (tests/audio_decode.rs checks the right slope matches).
    #[test]
    fn the_final_leaky_relu_slope_matters() {
        use crate::test_util::max_diff;
        let dir = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vocoder_tiny.json")).unwrap())
                .unwrap();
        let cfg = VocoderConfig::from_json(&json["config"].to_string()).unwrap();
        let path = dir.join("vocoder_tiny.safetensors");
        let w = Weights::load_vocoder(&[path.as_path()], DType::F32, &Device::Cpu).unwrap();
        let t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        let mut voc = Vocoder::new(&cfg, &w).unwrap();
        let right = max_diff(
            &voc.forward(&t["input.mel"]).unwrap(),
            &t["output.waveform"],
        );
        assert!(right <= 1e-4, "{right}");
        voc.final_slope = cfg.leaky_relu_negative_slope;
        let wrong = max_diff(
            &voc.forward(&t["input.mel"]).unwrap(),
            &t["output.waveform"],
        );
        println!("vocoder mutation final LeakyReLU slope 0.1: {wrong:.3e}");
        assert!(
            wrong > 1e-2,
            "the final slope moved the waveform by only {wrong}"
        );
    }

    #[test]
    fn released_config_upsamples_240_times() {
        let cfg = VocoderConfig::ltx2();
        cfg.validate().unwrap();
        assert_eq!(cfg.upsample_factor(), 240);
        assert_eq!(cfg.output_sampling_rate / cfg.upsample_factor() as u32, 100);
    }

    #[test]
    fn unimplemented_or_broken_configs_are_rejected() {
        type Edit = Box<dyn Fn(&mut VocoderConfig)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("snake", Box::new(|c| c.act_fn = "snakebeta".into())),
            ("antialias", Box::new(|c| c.antialias = true)),
            (
                "lengths",
                Box::new(|c| c.upsample_factors.pop().map(|_| ()).unwrap_or(())),
            ),
            (
                "kernel < stride",
                Box::new(|c| c.upsample_kernel_sizes[0] = 4),
            ),
            (
                "dilations",
                Box::new(|c| c.resnet_dilations.pop().map(|_| ()).unwrap_or(())),
            ),
            ("slope", Box::new(|c| c.leaky_relu_negative_slope = 1.5)),
            ("width", Box::new(|c| c.hidden_channels = 48)),
        ];
        for (what, edit) in cases {
            let mut c = VocoderConfig::ltx2();
            edit(&mut c);
            assert!(c.validate().is_err(), "{what} accepted");
        }
        assert!(VocoderConfig::from_json("{\"final_act_fn\": \"sigmoid\"}").is_err());
        let none = VocoderConfig::from_json("{\"final_act_fn\": null}").unwrap();
        assert_eq!(none.final_act_fn, None);
    }

    #[test]
    fn audio_track_interleaves_clamps_and_rejects_bad_samples() {
        let w = Tensor::new(&[[0.5f32, -2.0, 0.25], [0.1, 0.2, 3.0]], &Device::Cpu).unwrap();
        let track = to_audio_track(&w, 24000).unwrap();
        assert_eq!((track.sample_rate, track.channels), (24000, 2));
        assert_eq!(track.samples, vec![0.5, 0.1, -1.0, 0.2, 0.25, 1.0]);
        let nan = Tensor::new(&[[0.5f32, f32::NAN]], &Device::Cpu).unwrap();
        assert!(
            to_audio_track(&nan, 24000)
                .unwrap_err()
                .to_string()
                .contains("sample 1")
        );
        let empty = Tensor::zeros((2, 0), DType::F32, &Device::Cpu).unwrap();
        assert!(to_audio_track(&empty, 24000).is_err());
        assert!(to_audio_track(&w, 0).is_err());
    }
}
