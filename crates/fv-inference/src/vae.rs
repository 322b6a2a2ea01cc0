//! The LTX-2 video VAE decoder (latents → RGB video in [-1, 1], roughly).
//!
//! Matches the decoder of diffusers' `AutoencoderKLLTX2Video` as the LTX-2.0 release uses it:
//! 3×3×3 convolutions with replicate padding in time and reflect padding in H/W, a mid block
//! and up blocks of residual blocks (per-channel RMS norm → SiLU → conv, twice), depth-to-space
//! upsamplers with a residual, then RMS norm → SiLU → conv and unpatchify (patch size 4). The
//! pipeline de-normalises latents with `latents_mean`/`latents_std` before decoding
//! ([`VideoVaeDecoder::decode_tokens`] does both). Not implemented (rejected by
//! [`VaeConfig::validate`]): timestep conditioning, noise injection and up blocks whose channel
//! count changes inside the block (`conv_in`), none of which the LTX-2.0 release uses.

use crate::transformer::TimeEmbedder;
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Tensor};
use serde::Deserialize;

/// The RMS norm epsilon of diffusers' `PerChannelRMSNorm` (fixed, not configurable there).
const PER_CHANNEL_RMS_EPS: f64 = 1e-8;
/// Kernel size of every decoder convolution.
pub(crate) const KERNEL: usize = 3;

/// How a convolution pads H and W.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// Mirror without repeating the edge (the LTX-2 decoder).
    Reflect,
    /// Zeros.
    Zeros,
}

/// Which axes an up block's upsampler doubles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpsampleType {
    /// Time, height and width.
    Spatiotemporal,
    /// Height and width.
    Spatial,
    /// Time only.
    Temporal,
}

impl UpsampleType {
    fn stride(self) -> [usize; 3] {
        match self {
            Self::Spatiotemporal => [2, 2, 2],
            Self::Spatial => [1, 2, 2],
            Self::Temporal => [2, 1, 1],
        }
    }
}

/// Decoder-side configuration of `AutoencoderKLLTX2Video`, in diffusers' spelling (encoder
/// keys are accepted and ignored). Per-block lists are in encoder order, as in the published
/// config; the decoder reverses them, except `upsample_type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    pub latent_channels: usize,
    pub out_channels: usize,
    pub decoder_block_out_channels: Vec<usize>,
    pub decoder_layers_per_block: Vec<usize>,
    pub decoder_spatio_temporal_scaling: Vec<bool>,
    pub decoder_inject_noise: Vec<bool>,
    pub upsample_type: Vec<UpsampleType>,
    pub upsample_residual: Vec<bool>,
    pub upsample_factor: Vec<usize>,
    pub timestep_conditioning: bool,
    pub patch_size: usize,
    pub patch_size_t: usize,
    pub scaling_factor: f64,
    pub decoder_causal: bool,
    pub decoder_spatial_padding_mode: PaddingMode,
}

impl Default for VaeConfig {
    fn default() -> Self {
        Self::ltx2()
    }
}

impl VaeConfig {
    /// The released LTX-2.0 video VAE decoder (diffusers' conversion script, version "2.0"):
    /// 128 latent channels, blocks (256, 512, 1024), 5 residual blocks each, three
    /// spatiotemporal ×2 upsamplers with residual, patch size 4, non-causal, reflect padding,
    /// no timestep conditioning.
    pub fn ltx2() -> Self {
        Self {
            latent_channels: 128,
            out_channels: 3,
            decoder_block_out_channels: vec![256, 512, 1024],
            decoder_layers_per_block: vec![5, 5, 5, 5],
            decoder_spatio_temporal_scaling: vec![true, true, true],
            decoder_inject_noise: vec![false, false, false, false],
            upsample_type: vec![UpsampleType::Spatiotemporal; 3],
            upsample_residual: vec![true, true, true],
            upsample_factor: vec![2, 2, 2],
            timestep_conditioning: false,
            patch_size: 4,
            patch_size_t: 1,
            scaling_factor: 1.0,
            decoder_causal: false,
            decoder_spatial_padding_mode: PaddingMode::Reflect,
        }
    }

    /// Parses a diffusers-style `vae/config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("vae config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// How much the decoder enlarges (time, height, width): the upsamplers' strides times the
    /// patch sizes. The released VAE gives (8, 32, 32). (Time grows as `(F − 1)·t + 1`: each
    /// temporal upsampler drops the frames the causal first latent frame does not cover.)
    pub fn compression(&self) -> Result<[usize; 3]> {
        let plan = self.plan()?;
        let mut c = [self.patch_size_t, self.patch_size, self.patch_size];
        for up in plan.blocks.iter().filter_map(|b| b.upsampler.as_ref()) {
            for (axis, s) in c.iter_mut().zip(up.stride) {
                *axis *= s;
            }
        }
        Ok(c)
    }

    /// The decoder's block plan: (channels after the block, residual blocks, upsampler).
    fn plan(&self) -> Result<DecoderPlan> {
        self.validate()?;
        let rev = |v: &[usize]| v.iter().rev().copied().collect::<Vec<_>>();
        let block_out = rev(&self.decoder_block_out_channels);
        let layers = rev(&self.decoder_layers_per_block);
        let factor = rev(&self.upsample_factor);
        let scaling: Vec<bool> = self
            .decoder_spatio_temporal_scaling
            .iter()
            .rev()
            .copied()
            .collect();
        let residual: Vec<bool> = self.upsample_residual.iter().rev().copied().collect();

        let mid_channels = block_out[0];
        let mut channels = mid_channels;
        let mut nominal = mid_channels;
        let mut blocks = Vec::with_capacity(block_out.len());
        for i in 0..block_out.len() {
            let f = factor[i];
            let input = nominal / f;
            let out = block_out[i] / f;
            if input != out {
                return Err(InferenceError::Config(format!(
                    "decoder up block {i} changes channels inside the block ({input} → {out}); \
                     that (`conv_in`) is not implemented and the LTX-2.0 release has none"
                )));
            }
            let upsampler = if scaling[i] {
                let stride = self.upsample_type[i].stride();
                let up_in = out * f;
                let s: usize = stride.iter().product();
                if up_in != channels || !s.is_multiple_of(f) || !up_in.is_multiple_of(s) {
                    return Err(InferenceError::Config(format!(
                        "decoder up block {i}: upsampler takes {up_in} channels but receives \
                         {channels}, or factor {f} does not divide stride product {s}"
                    )));
                }
                Some(UpsamplerPlan {
                    in_channels: up_in,
                    conv_out: up_in * s / f,
                    stride,
                    residual: residual[i],
                    repeats: s / f,
                })
            } else {
                if channels != out {
                    return Err(InferenceError::Config(format!(
                        "decoder up block {i} without upsampler receives {channels} channels \
                         but its residual blocks take {out}"
                    )));
                }
                None
            };
            channels = out;
            nominal = out;
            blocks.push(BlockPlan {
                channels: out,
                layers: layers[i + 1],
                upsampler,
            });
        }
        Ok(DecoderPlan {
            mid_channels,
            mid_layers: layers[0],
            blocks,
            out_channels: channels,
        })
    }

    /// Rejects values the decoder cannot honour, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(InferenceError::Config(m));
        let n = self.decoder_block_out_channels.len();
        if n == 0 {
            return bad("decoder_block_out_channels must not be empty".into());
        }
        if self.decoder_layers_per_block.len() != n + 1 {
            return bad(format!(
                "decoder_layers_per_block needs {} entries (mid block + {n} up blocks), got {}",
                n + 1,
                self.decoder_layers_per_block.len()
            ));
        }
        for (name, len) in [
            (
                "decoder_spatio_temporal_scaling",
                self.decoder_spatio_temporal_scaling.len(),
            ),
            ("upsample_type", self.upsample_type.len()),
            ("upsample_residual", self.upsample_residual.len()),
            ("upsample_factor", self.upsample_factor.len()),
        ] {
            if len != n {
                return bad(format!("{name} needs {n} entries, got {len}"));
            }
        }
        if self.decoder_block_out_channels.contains(&0)
            || self.upsample_factor.contains(&0)
            || self.latent_channels == 0
            || self.out_channels == 0
            || self.patch_size == 0
            || self.patch_size_t == 0
        {
            return bad("channel counts, upsample factors and patch sizes must be positive".into());
        }
        if self.decoder_inject_noise.iter().any(|&b| b) {
            return bad("decoder noise injection is not implemented (LTX-2.0 uses none)".into());
        }
        if !(self.scaling_factor > 0.0 && self.scaling_factor.is_finite()) {
            return bad(format!(
                "scaling_factor must be positive, got {}",
                self.scaling_factor
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct UpsamplerPlan {
    in_channels: usize,
    conv_out: usize,
    stride: [usize; 3],
    residual: bool,
    repeats: usize,
}

#[derive(Debug, Clone)]
struct BlockPlan {
    channels: usize,
    layers: usize,
    upsampler: Option<UpsamplerPlan>,
}

#[derive(Debug, Clone)]
struct DecoderPlan {
    mid_channels: usize,
    mid_layers: usize,
    blocks: Vec<BlockPlan>,
    out_channels: usize,
}

/// `x / sqrt(mean_c(x²) + 1e-8)` over the channel axis of `[B, C, T, H, W]`, in f32 whatever
/// the model dtype (1e-8 underflows bf16's resolution near 1).
pub(crate) fn per_channel_rms_norm(x: &Tensor) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let rms = (x.sqr()?.mean_keepdim(1)? + PER_CHANNEL_RMS_EPS)?.sqrt()?;
    Ok(x.broadcast_div(&rms)?.to_dtype(dtype)?)
}

/// Reflect-pads axis `dim` by `pad` on both sides (edge not repeated, like torch).
fn reflect_pad(x: &Tensor, dim: usize, pad: usize) -> Result<Tensor> {
    if pad == 0 {
        return Ok(x.clone());
    }
    let n = x.dim(dim)?;
    if n <= pad {
        return Err(InferenceError::Input(format!(
            "reflect padding by {pad} needs more than {pad} positions, axis {dim} has {n}"
        )));
    }
    let mut idx: Vec<u32> = (1..=pad).rev().map(|i| i as u32).collect();
    idx.extend((0..n).map(|i| i as u32));
    idx.extend((n - 1 - pad..n - 1).rev().map(|i| i as u32));
    let idx = Tensor::from_vec(idx, pad + n + pad, x.device())?;
    Ok(x.index_select(&idx, dim)?)
}

/// Most elements in the im2col buffer of one 2-D convolution call. candle's CUDA im2col
/// kernel is launched with a `u32` element count, so a larger buffer (the released VAE's last
/// block at 960x544x121 needs 4.6e9) would be silently half-filled; it is also the biggest
/// temporary of the decode (2^30 bf16 = 2 GiB). Frames are convolved in chunks below this.
pub const MAX_IM2COL_ELEMS: usize = 1 << 30;

/// `frames [N, C, H, W]` convolved with `tap [O, C, kh, kw]` (stride 1, `pad` zeros), in
/// chunks of frames whose im2col buffer stays within `max_elems`.
fn conv2d_chunked(frames: &Tensor, tap: &Tensor, pad: usize, max_elems: usize) -> Result<Tensor> {
    conv2d_strided_chunked(frames, tap, pad, 1, max_elems)
}

/// [`conv2d_chunked`] with a stride (the latent upsampler's blur).
pub(crate) fn conv2d_strided_chunked(
    frames: &Tensor,
    tap: &Tensor,
    pad: usize,
    stride: usize,
    max_elems: usize,
) -> Result<Tensor> {
    let (n, c, h, w) = frames.dims4()?;
    let (_, _, kh, kw) = tap.dims4()?;
    let out = |side: usize, k: usize| (side + 2 * pad).saturating_sub(k) / stride.max(1) + 1;
    let per_frame = out(h, kh) * out(w, kw) * c * kh * kw;
    if per_frame > max_elems {
        return Err(InferenceError::Input(format!(
            "one {h}x{w} frame of {c} channels needs {per_frame} im2col elements, more than \
             the {max_elems} one convolution may use"
        )));
    }
    let chunk = (max_elems / per_frame.max(1)).max(1);
    if n <= chunk {
        return Ok(frames.conv2d(tap, pad, stride, 1, 1)?);
    }
    let parts = (0..n)
        .step_by(chunk)
        .map(|start| {
            Ok(frames
                .narrow(0, start, chunk.min(n - start))?
                .conv2d(tap, pad, stride, 1, 1)?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// A 3-D convolution with LTX-2's padding: time padded by repeating the first (and, when
/// not causal, the last) frame, H/W padded by the configured mode. Built from one 2-D
/// convolution per temporal kernel tap, since candle has no 3-D convolution.
#[derive(Debug, Clone)]
pub(crate) struct Conv3d {
    /// Per temporal tap: `[out, in, kh, kw]`.
    taps: Vec<Tensor>,
    bias: Tensor,
    out_channels: usize,
    padding: PaddingMode,
}

impl Conv3d {
    pub(crate) fn load(
        w: &Weights,
        prefix: &str,
        cin: usize,
        cout: usize,
        padding: PaddingMode,
    ) -> Result<Self> {
        let weight = w.get(
            &format!("{prefix}.weight"),
            &[cout, cin, KERNEL, KERNEL, KERNEL],
        )?;
        let taps = (0..KERNEL)
            .map(|k| Ok(weight.narrow(2, k, 1)?.squeeze(2)?.contiguous()?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            taps,
            bias: w.get(&format!("{prefix}.bias"), &[cout])?,
            out_channels: cout,
            padding,
        })
    }

    /// `[B, C, T, H, W] → [B, out, T, H, W]`.
    pub(crate) fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        self.forward_with(x, causal, MAX_IM2COL_ELEMS)
    }

    /// `[B, C, T, H, W] → [B, out, T, H, W]` with zero frames as the temporal padding (a
    /// plain `nn.Conv3d(padding=1)`, as the latent upsampler uses).
    pub(crate) fn forward_zero_time_pad(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        if t == 0 {
            return Err(InferenceError::Input("no latent frames to convolve".into()));
        }
        let pad = (self.taps.len() - 1) / 2;
        let zeros = Tensor::zeros((b, c, pad, h, w), x.dtype(), x.device())?;
        let x = Tensor::cat(&[&zeros, x, &zeros], 2)?;
        self.convolve_padded(&x, t, MAX_IM2COL_ELEMS)
    }

    /// [`forward`](Self::forward) with the im2col chunk limit as a parameter (tests use a
    /// small one to check that chunking changes nothing).
    fn forward_with(&self, x: &Tensor, causal: bool, max_im2col: usize) -> Result<Tensor> {
        let t = x.dim(2)?;
        if t == 0 {
            return Err(InferenceError::Input("no latent frames to convolve".into()));
        }
        let kt = self.taps.len();
        let first = x.narrow(2, 0, 1)?;
        let last = x.narrow(2, t - 1, 1)?;
        let (left, right) = if causal {
            (kt - 1, 0)
        } else {
            ((kt - 1) / 2, (kt - 1) / 2)
        };
        let mut parts = vec![first.clone(); left];
        parts.push(x.clone());
        parts.extend(std::iter::repeat_n(last, right));
        self.convolve_padded(&Tensor::cat(&parts, 2)?, t, max_im2col)
    }

    /// Convolves `x [B, C, Tp, H, W]`, already padded in time, into `t` output frames.
    fn convolve_padded(&self, x: &Tensor, t: usize, max_im2col: usize) -> Result<Tensor> {
        let (b, c, tp, h, wd) = x.dims5()?;
        // [B, C, Tp, H, W] → [B·Tp, C, H, W]
        let frames = x.permute((0, 2, 1, 3, 4))?.reshape((b * tp, c, h, wd))?;
        let pad = KERNEL / 2;
        let (frames, conv_pad) = match self.padding {
            PaddingMode::Reflect => (reflect_pad(&reflect_pad(&frames, 2, pad)?, 3, pad)?, 0),
            PaddingMode::Zeros => (frames, pad),
        };
        // candle's CPU conv2d has no bf16/f16 matmul: there, convolve in f32 and cast back
        // (CUDA convolves in the model dtype).
        let dtype = frames.dtype();
        let upcast = frames.device().is_cpu() && dtype != DType::F32;
        let frames = if upcast {
            frames.to_dtype(DType::F32)?
        } else {
            frames
        };
        let (_, _, hp, wp) = frames.dims4()?;
        let frames = frames.reshape((b, tp, c, hp, wp))?;
        let mut acc: Option<Tensor> = None;
        for (k, tap) in self.taps.iter().enumerate() {
            let tap = if upcast {
                tap.to_dtype(DType::F32)?
            } else {
                tap.clone()
            };
            // Only the `t` frames this tap reads: convolving all `Tp` and dropping the rest
            // would cost `Tp / t` times as much (twice at 2 latent frames).
            let input = frames
                .narrow(1, k, t)?
                .contiguous()?
                .reshape((b * t, c, hp, wp))?;
            let y = conv2d_chunked(&input, &tap, conv_pad, max_im2col)?
                .to_dtype(dtype)?
                .reshape((b, t, self.out_channels, h, wd))?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        let y = acc.ok_or_else(|| InferenceError::Config("convolution without taps".into()))?;
        let y = y.broadcast_add(&self.bias.reshape((1, 1, self.out_channels, 1, 1))?)?;
        Ok(y.permute((0, 2, 1, 3, 4))?.contiguous()?)
    }
}

/// Residual block: (RMS norm → [timestep shift/scale] → SiLU → conv) × 2, plus the input.
#[derive(Debug, Clone)]
pub(crate) struct ResBlock {
    conv1: Conv3d,
    conv2: Conv3d,
    /// `[4, C]` (shift 1, scale 1, shift 2, scale 2) added to the block's timestep embedding;
    /// only in a timestep-conditioned decoder.
    scale_shift_table: Option<Tensor>,
}

impl ResBlock {
    pub(crate) fn load(
        w: &Weights,
        prefix: &str,
        ch: usize,
        pad: PaddingMode,
        timestep_conditioning: bool,
    ) -> Result<Self> {
        Ok(Self {
            conv1: Conv3d::load(w, &format!("{prefix}.conv1.conv"), ch, ch, pad)?,
            conv2: Conv3d::load(w, &format!("{prefix}.conv2.conv"), ch, ch, pad)?,
            scale_shift_table: timestep_conditioning
                .then(|| w.get(&format!("{prefix}.scale_shift_table"), &[4, ch]))
                .transpose()?,
        })
    }

    /// `temb`: the enclosing block's timestep embedding `[B, 4·C]` (conditioned decoders).
    pub(crate) fn forward(
        &self,
        x: &Tensor,
        causal: bool,
        temb: Option<&Tensor>,
    ) -> Result<Tensor> {
        let ada = match (&self.scale_shift_table, temb) {
            (Some(table), Some(temb)) => Some(modulation(temb, table)?),
            (None, _) => None,
            (Some(_), None) => {
                return Err(InferenceError::Input(
                    "a timestep-conditioned block needs a timestep embedding".into(),
                ));
            }
        };
        let mut h = per_channel_rms_norm(x)?;
        if let Some(m) = &ada {
            h = modulate(&h, &m[0], &m[1])?;
        }
        let h = self.conv1.forward(&h.silu()?, causal)?;
        let mut h = per_channel_rms_norm(&h)?;
        if let Some(m) = &ada {
            h = modulate(&h, &m[2], &m[3])?;
        }
        let h = self.conv2.forward(&h.silu()?, causal)?;
        Ok((h + x)?)
    }
}

/// `temb [B, n·C]` viewed as `[B, n, C]` plus `table [n, C]`, split into `n` tensors
/// `[B, C, 1, 1, 1]` that broadcast over a `[B, C, T, H, W]` activation.
fn modulation(temb: &Tensor, table: &Tensor) -> Result<Vec<Tensor>> {
    let (n, c) = table.dims2()?;
    let b = temb.dim(0)?;
    let ada = temb
        .reshape((b, n, c))?
        .broadcast_add(&table.unsqueeze(0)?.to_dtype(temb.dtype())?)?;
    (0..n)
        .map(|i| Ok(ada.narrow(1, i, 1)?.reshape((b, c, 1, 1, 1))?))
        .collect()
}

/// `x · (1 + scale) + shift`.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Result<Tensor> {
    Ok(x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)?)
}

/// Depth-to-space `[B, C·s0·s1·s2, T, H, W] → [B, C, T·s0, H·s1, W·s2]`, channel-major
/// (the stride sub-positions are the minor channel indices).
fn depth_to_space(x: &Tensor, stride: [usize; 3]) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    let [s0, s1, s2] = stride;
    let c_out = c / (s0 * s1 * s2);
    Ok(x.reshape(vec![b, c_out, s0, s1, s2, t, h, w])?
        .permute(vec![0, 1, 5, 2, 6, 3, 7, 4])?
        .contiguous()?
        .reshape((b, c_out, t * s0, h * s1, w * s2))?)
}

#[derive(Debug, Clone)]
struct Upsampler {
    conv: Conv3d,
    plan: UpsamplerPlan,
}

impl Upsampler {
    fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let drop = self.plan.stride[0] - 1;
        let trim = |y: Tensor| -> Result<Tensor> {
            let t = y.dim(2)?;
            Ok(y.narrow(2, drop, t - drop)?)
        };
        let y = trim(depth_to_space(
            &self.conv.forward(x, causal)?,
            self.plan.stride,
        )?)?;
        if !self.plan.residual {
            return Ok(y);
        }
        // The input, rearranged the same way and tiled along channels to match.
        let r = depth_to_space(x, self.plan.stride)?;
        let r = Tensor::cat(&vec![r; self.plan.repeats], 1)?;
        Ok((y + trim(r)?)?)
    }
}

#[derive(Debug, Clone)]
struct UpBlock {
    upsampler: Option<Upsampler>,
    resnets: Vec<ResBlock>,
    /// `[B] → [B, 4·C]` for the block's residual blocks (conditioned decoders).
    time_embedder: Option<TimeEmbedder>,
}

/// What a timestep-conditioned decoder holds besides its blocks.
#[derive(Debug, Clone)]
struct Conditioning {
    /// The decode timestep is multiplied by this (a weight; 1000 in diffusers' init).
    multiplier: f32,
    mid: TimeEmbedder,
    /// `[B] → [B, 2·C]` for the shift/scale after the final norm.
    out: TimeEmbedder,
    /// `[2, C]` (shift, scale) added to `out`'s embedding.
    out_table: Tensor,
}

/// The LTX-2 video VAE decoder with its latent statistics.
#[derive(Debug, Clone)]
pub struct VideoVaeDecoder {
    cfg: VaeConfig,
    conv_in: Conv3d,
    mid: Vec<ResBlock>,
    blocks: Vec<UpBlock>,
    conv_out: Conv3d,
    latents_mean: Tensor,
    latents_std: Tensor,
    conditioning: Option<Conditioning>,
    /// The timestep a conditioned decoder decodes at (diffusers' `decode_timestep`).
    decode_timestep: f32,
}

impl VideoVaeDecoder {
    /// Builds the decoder from weights in diffusers names (`decoder.…`, `latents_mean`,
    /// `latents_std`). Every tensor is shape-checked against `cfg`.
    pub fn new(cfg: &VaeConfig, w: &Weights) -> Result<Self> {
        let plan = cfg.plan()?;
        let pad = cfg.decoder_spatial_padding_mode;
        let tc = cfg.timestep_conditioning;
        let mid = (0..plan.mid_layers)
            .map(|j| {
                ResBlock::load(
                    w,
                    &format!("decoder.mid_block.resnets.{j}"),
                    plan.mid_channels,
                    pad,
                    tc,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mut blocks = Vec::with_capacity(plan.blocks.len());
        for (i, bp) in plan.blocks.iter().enumerate() {
            let upsampler = match &bp.upsampler {
                None => None,
                Some(up) => Some(Upsampler {
                    conv: Conv3d::load(
                        w,
                        &format!("decoder.up_blocks.{i}.upsamplers.0.conv.conv"),
                        up.in_channels,
                        up.conv_out,
                        pad,
                    )?,
                    plan: up.clone(),
                }),
            };
            let resnets = (0..bp.layers)
                .map(|j| {
                    ResBlock::load(
                        w,
                        &format!("decoder.up_blocks.{i}.resnets.{j}"),
                        bp.channels,
                        pad,
                        tc,
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let time_embedder = tc
                .then(|| {
                    TimeEmbedder::load(
                        w,
                        &format!("decoder.up_blocks.{i}.time_embedder"),
                        4 * bp.channels,
                    )
                })
                .transpose()?;
            blocks.push(UpBlock {
                upsampler,
                resnets,
                time_embedder,
            });
        }
        let patch_out = cfg.out_channels * cfg.patch_size * cfg.patch_size * cfg.patch_size_t;
        Ok(Self {
            cfg: cfg.clone(),
            conv_in: Conv3d::load(
                w,
                "decoder.conv_in.conv",
                cfg.latent_channels,
                plan.mid_channels,
                pad,
            )?,
            mid,
            blocks,
            conv_out: Conv3d::load(
                w,
                "decoder.conv_out.conv",
                plan.out_channels,
                patch_out,
                pad,
            )?,
            latents_mean: w.get("latents_mean", &[cfg.latent_channels])?,
            latents_std: w.get("latents_std", &[cfg.latent_channels])?,
            conditioning: if tc {
                let multiplier = w
                    .get("decoder.timestep_scale_multiplier", &[])?
                    .to_dtype(DType::F32)?
                    .to_scalar::<f32>()?;
                Some(Conditioning {
                    multiplier,
                    mid: TimeEmbedder::load(
                        w,
                        "decoder.mid_block.time_embedder",
                        4 * plan.mid_channels,
                    )?,
                    out: TimeEmbedder::load(w, "decoder.time_embedder", 2 * plan.out_channels)?,
                    out_table: w.get("decoder.scale_shift_table", &[2, plan.out_channels])?,
                })
            } else {
                None
            },
            decode_timestep: 0.0,
        })
    }

    /// Sets the timestep a timestep-conditioned decoder decodes at (diffusers' pipeline
    /// default: 0). Ignored by an unconditioned decoder; must be finite.
    pub fn with_decode_timestep(mut self, timestep: f32) -> Result<Self> {
        if !timestep.is_finite() {
            return Err(InferenceError::Input(format!(
                "decode timestep must be finite, got {timestep}"
            )));
        }
        self.decode_timestep = timestep;
        Ok(self)
    }

    /// Canonical (name, shape) of every tensor the decoder reads, in load order.
    pub fn expected_weights(cfg: &VaeConfig) -> Result<Vec<(String, Vec<usize>)>> {
        let plan = cfg.plan()?;
        let mut v: Vec<(String, Vec<usize>)> = Vec::new();
        let conv = |v: &mut Vec<(String, Vec<usize>)>, p: &str, cin: usize, cout: usize| {
            v.push((
                format!("{p}.weight"),
                vec![cout, cin, KERNEL, KERNEL, KERNEL],
            ));
            v.push((format!("{p}.bias"), vec![cout]));
        };
        let tc = cfg.timestep_conditioning;
        let res = |v: &mut Vec<(String, Vec<usize>)>, p: &str, ch: usize| {
            conv(v, &format!("{p}.conv1.conv"), ch, ch);
            conv(v, &format!("{p}.conv2.conv"), ch, ch);
            if tc {
                v.push((format!("{p}.scale_shift_table"), vec![4, ch]));
            }
        };
        conv(
            &mut v,
            "decoder.conv_in.conv",
            cfg.latent_channels,
            plan.mid_channels,
        );
        if tc {
            TimeEmbedder::expected(
                &mut v,
                "decoder.mid_block.time_embedder",
                4 * plan.mid_channels,
            );
        }
        for j in 0..plan.mid_layers {
            res(
                &mut v,
                &format!("decoder.mid_block.resnets.{j}"),
                plan.mid_channels,
            );
        }
        for (i, bp) in plan.blocks.iter().enumerate() {
            if tc {
                TimeEmbedder::expected(
                    &mut v,
                    &format!("decoder.up_blocks.{i}.time_embedder"),
                    4 * bp.channels,
                );
            }
            if let Some(up) = &bp.upsampler {
                conv(
                    &mut v,
                    &format!("decoder.up_blocks.{i}.upsamplers.0.conv.conv"),
                    up.in_channels,
                    up.conv_out,
                );
            }
            for j in 0..bp.layers {
                res(
                    &mut v,
                    &format!("decoder.up_blocks.{i}.resnets.{j}"),
                    bp.channels,
                );
            }
        }
        let patch_out = cfg.out_channels * cfg.patch_size * cfg.patch_size * cfg.patch_size_t;
        conv(
            &mut v,
            "decoder.conv_out.conv",
            plan.out_channels,
            patch_out,
        );
        if tc {
            v.push(("decoder.timestep_scale_multiplier".into(), vec![]));
            TimeEmbedder::expected(&mut v, "decoder.time_embedder", 2 * plan.out_channels);
            v.push((
                "decoder.scale_shift_table".into(),
                vec![2, plan.out_channels],
            ));
        }
        v.push(("latents_mean".into(), vec![cfg.latent_channels]));
        v.push(("latents_std".into(), vec![cfg.latent_channels]));
        Ok(v)
    }

    /// The config the decoder was built with.
    pub fn config(&self) -> &VaeConfig {
        &self.cfg
    }

    /// The latent statistics the decoder de-normalises with (for the latent upsampler, which
    /// needs the same ones).
    pub fn statistics(&self) -> Result<crate::LatentStatistics> {
        crate::LatentStatistics::new(
            &self.latents_mean,
            &self.latents_std,
            self.cfg.scaling_factor,
        )
    }

    /// Decodes normalised latents `[B, C, F, H, W]` (as the transformer works with them):
    /// de-normalises with the latent statistics, then decodes. Returns `[B, 3, frames,
    /// height, width]`.
    pub fn decode_normalized(&self, latents: &Tensor) -> Result<Tensor> {
        let c = self.cfg.latent_channels;
        if latents.rank() != 5 || latents.dim(1)? != c {
            return Err(InferenceError::Input(format!(
                "latents are {:?}, expected [B, {c}, F, H, W]",
                latents.dims()
            )));
        }
        let std = (self.latents_std.reshape((1, c, 1, 1, 1))? / self.cfg.scaling_factor)?;
        // Like the reference pipeline: cast to the VAE's dtype, then de-normalise.
        let z = latents
            .to_dtype(self.dtype())?
            .broadcast_mul(&std)?
            .broadcast_add(&self.latents_mean.reshape((1, c, 1, 1, 1))?)?;
        self.decode(&z)
    }

    /// Decodes packed transformer tokens `[B, F·H·W, C]` (frame-major, then rows, then
    /// columns) on a latent grid of `frames × height × width`.
    pub fn decode_tokens(
        &self,
        tokens: &Tensor,
        frames: usize,
        height: usize,
        width: usize,
    ) -> Result<Tensor> {
        let (b, n, c) = tokens.dims3()?;
        if n != frames * height * width || c != self.cfg.latent_channels {
            return Err(InferenceError::Input(format!(
                "tokens are [{b}, {n}, {c}], expected [B, {}, {}] for a {frames}×{height}×{width} grid",
                frames * height * width,
                self.cfg.latent_channels
            )));
        }
        let z = tokens
            .reshape((b, frames, height, width, c))?
            .permute((0, 4, 1, 2, 3))?
            .contiguous()?;
        self.decode_normalized(&z)
    }

    /// The dtype of the weights, which decoding computes in (norms in f32).
    pub fn dtype(&self) -> DType {
        self.latents_std.dtype()
    }

    /// Decodes de-normalised latents `[B, C, F, H, W]` (diffusers' `vae.decode`) of any float
    /// dtype; computes in the model's [`dtype`](Self::dtype) and returns f32.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let (_, c, f, h, w) = z.dims5()?;
        if f == 0 {
            return Err(InferenceError::Input("latents have no frames".into()));
        }
        if c != self.cfg.latent_channels {
            return Err(InferenceError::Input(format!(
                "latents have {c} channels, the decoder takes {}",
                self.cfg.latent_channels
            )));
        }
        if self.cfg.decoder_spatial_padding_mode == PaddingMode::Reflect && (h < 2 || w < 2) {
            return Err(InferenceError::Input(format!(
                "reflect padding needs a latent grid of at least 2×2, got {h}×{w}"
            )));
        }
        let causal = self.cfg.decoder_causal;
        let dtype = self.dtype();
        let b = z.dim(0)?;
        let mut x = self.conv_in.forward(&z.to_dtype(dtype)?, causal)?;
        // One (multiplied) decode timestep per sample for a conditioned decoder.
        let t = self
            .conditioning
            .as_ref()
            .map(|c| vec![self.decode_timestep * c.multiplier; b]);
        let embed = |e: Option<&TimeEmbedder>| -> Result<Option<Tensor>> {
            match (e, &t) {
                (Some(e), Some(t)) => Ok(Some(e.forward(t, z.device())?)),
                _ => Ok(None),
            }
        };
        let temb = embed(self.conditioning.as_ref().map(|c| &c.mid))?;
        for r in &self.mid {
            x = r.forward(&x, causal, temb.as_ref())?;
        }
        for block in &self.blocks {
            let temb = embed(block.time_embedder.as_ref())?;
            if let Some(up) = &block.upsampler {
                x = up.forward(&x, causal)?;
            }
            for r in &block.resnets {
                x = r.forward(&x, causal, temb.as_ref())?;
            }
        }
        let mut x = per_channel_rms_norm(&x)?;
        if let Some(c) = &self.conditioning
            && let Some(temb) = embed(Some(&c.out))?
        {
            let m = modulation(&temb, &c.out_table)?;
            x = modulate(&x, &m[0], &m[1])?;
        }
        let x = self.conv_out.forward(&x.silu()?, causal)?;
        Ok(self.unpatchify(&x)?.to_dtype(DType::F32)?)
    }

    /// `[B, 3·pt·p·p, F, H, W] → [B, 3, F·pt, H·p, W·p]`; within a channel group the width
    /// sub-position is the major index, then the height sub-position.
    fn unpatchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, f, h, w) = x.dims5()?;
        let (p, pt) = (self.cfg.patch_size, self.cfg.patch_size_t);
        let c = self.cfg.out_channels;
        Ok(x.reshape(vec![b, c, pt, p, p, f, h, w])?
            .permute(vec![0, 1, 5, 2, 6, 4, 7, 3])?
            .contiguous()?
            .reshape((b, c, f * pt, h * p, w * p))?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, seeded};
    use candle_core::Device;

    #[test]
    fn chunked_convolution_equals_one_call_and_refuses_oversized_frames() {
        let (cin, cout) = (3, 4);
        let conv = Conv3d {
            taps: (0..KERNEL)
                .map(|k| seeded(&[cout, cin, KERNEL, KERNEL], 10 + k as u64))
                .collect(),
            bias: seeded(&[cout], 3),
            out_channels: cout,
            padding: PaddingMode::Reflect,
        };
        let x = seeded(&[2, cin, 5, 6, 7], 4);
        let whole = conv.forward_with(&x, false, usize::MAX).unwrap();
        // One frame's im2col is 6·7·3·9 = 1134 elements: chunks of 1, 2 and 5 frames.
        for limit in [1134, 2 * 1134 + 5, 5 * 1134] {
            let chunked = conv.forward_with(&x, false, limit).unwrap();
            let diff = max_diff(&whole, &chunked);
            assert!(
                diff <= 1e-6,
                "limit {limit}: chunking moved the output by {diff}"
            );
        }
        let err = conv.forward_with(&x, false, 1133).unwrap_err().to_string();
        assert!(err.contains("im2col"), "{err}");
        let empty = Tensor::zeros((1, cin, 0, 6, 7), DType::F32, &Device::Cpu).unwrap();
        assert!(conv.forward(&empty, false).is_err());
    }

    #[test]
    fn reflect_pad_mirrors_without_repeating_the_edge() {
        let x = Tensor::new(&[[0f32, 1., 2., 3.]], &Device::Cpu).unwrap();
        let y = reflect_pad(&x, 1, 2).unwrap();
        assert_eq!(
            y.to_vec2::<f32>().unwrap(),
            vec![vec![2., 1., 0., 1., 2., 3., 2., 1.]]
        );
        assert!(reflect_pad(&x, 1, 4).is_err());
    }

    #[test]
    fn released_config_plans_three_upsamplers_to_128_channels() {
        let plan = VaeConfig::ltx2().plan().unwrap();
        assert_eq!((plan.mid_channels, plan.mid_layers), (1024, 5));
        let chans: Vec<_> = plan.blocks.iter().map(|b| b.channels).collect();
        assert_eq!(chans, vec![512, 256, 128]);
        assert_eq!(plan.out_channels, 128);
        assert!(plan.blocks.iter().all(|b| b.upsampler.is_some()));
    }

    #[test]
    fn unimplemented_variants_are_rejected() {
        let mut c = VaeConfig::ltx2();
        c.decoder_inject_noise[0] = true;
        assert!(c.validate().is_err());
        let mut c = VaeConfig::ltx2();
        c.decoder_layers_per_block.pop();
        assert!(c.validate().is_err());
        let mut c = VaeConfig::ltx2();
        c.decoder_block_out_channels = vec![256, 512, 2048];
        assert!(c.plan().is_err(), "conv_in path");
    }
}
