//! The LTX-2 latent upsampler (stage 2 of the two-stage pipeline, facts §4): normalised
//! latents at half resolution → normalised latents at twice the height and width.
//!
//! Matches diffusers' `LTX2LatentUpsamplerModel` (`pipelines/ltx2/latent_upsampler.py`) with
//! `dims=3`, spatial upsampling: a 3-D conv (zero padding in time too) → GroupNorm(32) →
//! SiLU, residual blocks (conv → GroupNorm → SiLU → conv → GroupNorm, then SiLU of the sum),
//! the resampler applied to each frame (2-D conv to `num²·mid` channels, pixel shuffle by
//! `num`, then a 5×5 binomial blur with stride `den`, the identity for the released ×2),
//! more residual blocks and a 3-D conv back to the latent channels. It runs on de-normalised
//! latents, so [`LatentUpsampler::upsample`] de-normalises, upsamples and normalises again
//! with the VAE's statistics, as FastVideo's `upsample_video` and diffusers' two pipelines
//! (`LTX2LatentUpsamplePipeline(latents_normalized=True)` then `LTX2Pipeline` normalising
//! 5-D latents) do.

use crate::latent_stats::LatentStatistics;
use crate::vae::{Conv3d, MAX_IM2COL_ELEMS, PaddingMode, conv2d_strided_chunked};
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

pub use crate::upsampler_config::{LatentUpsamplerConfig, canonical_upsampler_name};

/// GroupNorm's group count (fixed in the reference).
pub(crate) const GROUPS: usize = 32;
/// GroupNorm's epsilon (torch's default, which the reference keeps).
const GROUP_NORM_EPS: f64 = 1e-5;
/// Side of the resampler's binomial blur kernel.
const BLUR_KERNEL: usize = 5;
/// Most latent tokens (frames × height × width) one upsample call takes: the pipeline's own
/// stage-1 limit (a 121-frame 544×960 stage 1 is 16 × 17 × 30 = 8 160).
pub const MAX_UPSAMPLE_TOKENS: usize = 65_536;

/// GroupNorm with affine weights, statistics in f32 over each group's channels and all of
/// time and space.
#[derive(Debug, Clone)]
struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm {
    fn load(w: &Weights, prefix: &str, ch: usize) -> Result<Self> {
        Ok(Self {
            weight: w
                .get(&format!("{prefix}.weight"), &[ch])?
                .to_dtype(DType::F32)?,
            bias: w
                .get(&format!("{prefix}.bias"), &[ch])?
                .to_dtype(DType::F32)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, t, h, w) = x.dims5()?;
        let dtype = x.dtype();
        let xf = x
            .to_dtype(DType::F32)?
            .reshape((b, GROUPS, c / GROUPS * t * h * w))?;
        let centred = xf.broadcast_sub(&xf.mean_keepdim(2)?)?;
        let var = centred.sqr()?.mean_keepdim(2)?;
        let y = centred
            .broadcast_div(&(var + GROUP_NORM_EPS)?.sqrt()?)?
            .reshape((b, c, t, h, w))?
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1, 1))?)?;
        Ok(y.to_dtype(dtype)?)
    }
}

/// The network's elementary operations. Production uses [`REFERENCE_OPS`]; the tests swap
/// one at a time for a plausible porting mistake and check that the output moves far.
#[derive(Clone, Copy)]
struct Ops {
    conv: fn(&Conv3d, &Tensor) -> Result<Tensor>,
    norm: fn(&GroupNorm, &Tensor) -> Result<Tensor>,
    shuffle: fn(&Tensor, usize) -> Result<Tensor>,
}

/// What the reference does: zero padding in time, group statistics over the whole clip,
/// row-major pixel shuffle.
const REFERENCE_OPS: Ops = Ops {
    conv: Conv3d::forward_zero_time_pad,
    norm: GroupNorm::forward,
    shuffle: pixel_shuffle,
};

/// conv → norm → SiLU → conv → norm, then SiLU of the sum with the input.
#[derive(Debug, Clone)]
struct ResBlock {
    conv1: Conv3d,
    norm1: GroupNorm,
    conv2: Conv3d,
    norm2: GroupNorm,
}

impl ResBlock {
    fn load(w: &Weights, prefix: &str, ch: usize) -> Result<Self> {
        let conv = |n: &str| Conv3d::load(w, &format!("{prefix}.{n}"), ch, ch, PaddingMode::Zeros);
        Ok(Self {
            conv1: conv("conv1")?,
            norm1: GroupNorm::load(w, &format!("{prefix}.norm1"), ch)?,
            conv2: conv("conv2")?,
            norm2: GroupNorm::load(w, &format!("{prefix}.norm2"), ch)?,
        })
    }

    fn forward(&self, x: &Tensor, ops: Ops) -> Result<Tensor> {
        let h = (ops.norm)(&self.norm1, &(ops.conv)(&self.conv1, x)?)?.silu()?;
        let h = (ops.norm)(&self.norm2, &(ops.conv)(&self.conv2, &h)?)?;
        Ok((h + x)?.silu()?)
    }
}

/// `[N, C·r², H, W] → [N, C, H·r, W·r]`; within a channel group the row sub-position is the
/// major index.
fn pixel_shuffle(x: &Tensor, r: usize) -> Result<Tensor> {
    let (n, cr, h, w) = x.dims4()?;
    let c = cr / (r * r);
    Ok(x.reshape(vec![n, c, r, r, h, w])?
        .permute(vec![0, 1, 4, 2, 5, 3])?
        .contiguous()?
        .reshape((n, c, h * r, w * r))?)
}

/// `x [N, C, H, W]` convolved with `w` in f32 on the CPU (candle's CPU convolutions have no
/// bf16/f16 kernels), in the model dtype elsewhere.
fn conv2d(x: &Tensor, w: &Tensor, pad: usize, stride: usize) -> Result<Tensor> {
    let dtype = x.dtype();
    if x.device().is_cpu() && dtype != DType::F32 {
        let y = conv2d_strided_chunked(
            &x.to_dtype(DType::F32)?,
            &w.to_dtype(DType::F32)?,
            pad,
            stride,
            MAX_IM2COL_ELEMS,
        )?;
        return Ok(y.to_dtype(dtype)?);
    }
    conv2d_strided_chunked(x, w, pad, stride, MAX_IM2COL_ELEMS)
}

/// The per-frame resampler: conv, pixel shuffle by `num`, blur with stride `den`.
#[derive(Debug, Clone)]
struct Resampler {
    weight: Tensor,
    bias: Tensor,
    num: usize,
    den: usize,
    /// `[1, 1, 5, 5]`, the checkpoint's blur kernel (rational resamplers only).
    kernel: Option<Tensor>,
}

impl Resampler {
    /// `[B, C, F, H, W] → [B, C, F, H·num/den, W·num/den]` (rounded as the strided blur does).
    fn forward(&self, x: &Tensor, ops: Ops) -> Result<Tensor> {
        let (b, c, f, h, w) = x.dims5()?;
        let frames = x.permute((0, 2, 1, 3, 4))?.reshape((b * f, c, h, w))?;
        let y = conv2d(&frames, &self.weight, 1, 1)?.broadcast_add(&self.bias.reshape((
            1,
            (),
            1,
            1,
        ))?)?;
        let mut y = (ops.shuffle)(&y, self.num)?;
        if self.den > 1
            && let Some(kernel) = &self.kernel
        {
            // A depthwise blur is the same kernel on every channel: fold channels into the
            // batch and convolve one channel at a time.
            let (n, c, h2, w2) = y.dims4()?;
            let k = kernel.to_dtype(y.dtype())?;
            let z = conv2d(
                &y.reshape((n * c, 1, h2, w2))?,
                &k,
                BLUR_KERNEL / 2,
                self.den,
            )?;
            let (_, _, h3, w3) = z.dims4()?;
            y = z.reshape((n, c, h3, w3))?;
        }
        let (_, _, h2, w2) = y.dims4()?;
        Ok(y.reshape((b, f, c, h2, w2))?
            .permute((0, 2, 1, 3, 4))?
            .contiguous()?)
    }
}

/// The latent upsampler network with the VAE's latent statistics.
#[derive(Debug, Clone)]
pub struct LatentUpsampler {
    cfg: LatentUpsamplerConfig,
    initial_conv: Conv3d,
    initial_norm: GroupNorm,
    res_blocks: Vec<ResBlock>,
    resampler: Resampler,
    post_blocks: Vec<ResBlock>,
    final_conv: Conv3d,
    stats: LatentStatistics,
    dtype: DType,
}

impl LatentUpsampler {
    /// Builds the upsampler from weights in canonical names (see
    /// [`canonical_upsampler_name`]), every tensor shape-checked, and the statistics of the
    /// VAE whose latents it upsamples ([`crate::VideoVaeEncoder::statistics`] or
    /// [`LatentStatistics::from_weights`]). Computes in the weights' dtype (norms in f32).
    pub fn new(cfg: &LatentUpsamplerConfig, w: &Weights, stats: LatentStatistics) -> Result<Self> {
        cfg.validate()?;
        let (num, den) = cfg.ratio()?;
        let (cin, mid) = (cfg.in_channels, cfg.mid_channels);
        if stats.channels() != cin {
            return Err(InferenceError::Config(format!(
                "the upsampler takes {cin} latent channels, the statistics have {}",
                stats.channels()
            )));
        }
        let blocks = |prefix: &str| {
            (0..cfg.num_blocks_per_stage)
                .map(|i| ResBlock::load(w, &format!("{prefix}.{i}"), mid))
                .collect::<Result<Vec<_>>>()
        };
        let conv_name = if cfg.use_rational_resampler {
            "upsampler.conv"
        } else {
            "upsampler.0"
        };
        let weight = w.get(
            &format!("{conv_name}.weight"),
            &[num * num * mid, mid, 3, 3],
        )?;
        let dtype = weight.dtype();
        let resampler = Resampler {
            weight,
            bias: w.get(&format!("{conv_name}.bias"), &[num * num * mid])?,
            num,
            den,
            kernel: cfg
                .use_rational_resampler
                .then(|| {
                    w.get(
                        "upsampler.blur_down.kernel",
                        &[1, 1, BLUR_KERNEL, BLUR_KERNEL],
                    )
                })
                .transpose()?,
        };
        let zeros = PaddingMode::Zeros;
        Ok(Self {
            cfg: cfg.clone(),
            initial_conv: Conv3d::load(w, "initial_conv", cin, mid, zeros)?,
            initial_norm: GroupNorm::load(w, "initial_norm", mid)?,
            res_blocks: blocks("res_blocks")?,
            resampler,
            post_blocks: blocks("post_upsample_res_blocks")?,
            final_conv: Conv3d::load(w, "final_conv", mid, cin, zeros)?,
            stats,
            dtype,
        })
    }

    /// Loads an upsampler from `path`: a folder with `config.json` and safetensors files
    /// (diffusers' `latent_upsampler/`, or FastVideo's folder with `model.`-prefixed names),
    /// or one file (`ltx-2-spatial-upscaler-x2-1.0.safetensors`) read with the released
    /// config [`LatentUpsamplerConfig::ltx2`]. Weights are converted to `dtype`.
    pub fn load(
        path: &Path,
        stats: LatentStatistics,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let (cfg, files) = if path.is_dir() {
            let cfg = LatentUpsamplerConfig::from_json(&crate::files::read_text(
                &path.join("config.json"),
            )?)?;
            (cfg, crate::files::safetensors_files(path)?)
        } else if path.is_file() {
            (LatentUpsamplerConfig::ltx2(), vec![path.to_path_buf()])
        } else {
            return Err(InferenceError::Config(format!(
                "upsampler path {} is neither a directory nor a file",
                path.display()
            )));
        };
        let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
        let w = Weights::load_named(&paths, dtype, device, canonical_upsampler_name)?;
        Self::new(&cfg, &w, stats)
    }

    /// Canonical (name, shape) of every tensor the upsampler reads, in the reference's order.
    pub fn expected_weights(cfg: &LatentUpsamplerConfig) -> Result<Vec<(String, Vec<usize>)>> {
        cfg.validate()?;
        let (num, _) = cfg.ratio()?;
        let (cin, mid) = (cfg.in_channels, cfg.mid_channels);
        let mut v: Vec<(String, Vec<usize>)> = Vec::new();
        let mut pair = |p: String, w: Vec<usize>, b: usize| {
            v.push((format!("{p}.weight"), w));
            v.push((format!("{p}.bias"), vec![b]));
        };
        pair("initial_conv".into(), vec![mid, cin, 3, 3, 3], mid);
        pair("initial_norm".into(), vec![mid], mid);
        let blocks = |pair: &mut dyn FnMut(String, Vec<usize>, usize), prefix: &str| {
            for i in 0..cfg.num_blocks_per_stage {
                for j in 1..=2 {
                    pair(
                        format!("{prefix}.{i}.conv{j}"),
                        vec![mid, mid, 3, 3, 3],
                        mid,
                    );
                    pair(format!("{prefix}.{i}.norm{j}"), vec![mid], mid);
                }
            }
        };
        blocks(&mut pair, "res_blocks");
        let conv = if cfg.use_rational_resampler {
            "upsampler.conv"
        } else {
            "upsampler.0"
        };
        pair(
            conv.into(),
            vec![num * num * mid, mid, 3, 3],
            num * num * mid,
        );
        blocks(&mut pair, "post_upsample_res_blocks");
        pair("final_conv".into(), vec![cin, mid, 3, 3, 3], cin);
        if cfg.use_rational_resampler {
            v.push((
                "upsampler.blur_down.kernel".into(),
                vec![1, 1, BLUR_KERNEL, BLUR_KERNEL],
            ));
        }
        Ok(v)
    }

    /// The config the upsampler was built with.
    pub fn config(&self) -> &LatentUpsamplerConfig {
        &self.cfg
    }

    /// The latent statistics it de-normalises and normalises with.
    pub fn statistics(&self) -> &LatentStatistics {
        &self.stats
    }

    /// The dtype of the weights, which upsampling computes in (norms in f32).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The latent grid `frames × height × width` becomes: time unchanged, sides ×2 for the
    /// released upsampler (×num then the blur's stride in general).
    pub fn output_grid(&self, frames: usize, height: usize, width: usize) -> (usize, usize, usize) {
        let (num, den) = (self.resampler.num, self.resampler.den);
        let side = |s: usize| {
            if den == 1 {
                s * num
            } else {
                (s * num - 1) / den + 1
            }
        };
        (frames, side(height), side(width))
    }

    /// Normalised latents `[B, C, F, H, W]` (as the transformer leaves them; any float
    /// dtype) → normalised latents `[B, C, F, 2H, 2W]`, f32: de-normalise, upsample,
    /// normalise, as the reference pipeline applies it between stage 1 and stage 2.
    pub fn upsample(&self, latents: &Tensor) -> Result<Tensor> {
        let z = self.stats.denormalize(latents)?;
        self.stats.normalize(&self.upsample_denormalized(&z)?)
    }

    /// The network alone, on de-normalised (VAE-space) latents `[B, C, F, H, W]`; returns
    /// f32 (diffusers' `latent_upsampler(z)`).
    pub fn upsample_denormalized(&self, z: &Tensor) -> Result<Tensor> {
        let c = self.cfg.in_channels;
        if z.rank() != 5 || z.dim(1)? != c {
            return Err(InferenceError::Input(format!(
                "latents are {:?}, expected [B, {c}, F, H, W]",
                z.dims()
            )));
        }
        let (b, _, f, h, w) = z.dims5()?;
        if b == 0 || f == 0 || h == 0 || w == 0 {
            return Err(InferenceError::Input(format!(
                "latents {:?} are empty",
                z.dims()
            )));
        }
        if f * h * w > MAX_UPSAMPLE_TOKENS {
            return Err(InferenceError::Input(format!(
                "{f}×{h}×{w} = {} latent tokens, at most {MAX_UPSAMPLE_TOKENS} per upsample",
                f * h * w
            )));
        }
        self.network(&z.to_dtype(self.dtype)?, REFERENCE_OPS)
    }

    /// The network on checked input in the model dtype; returns f32.
    fn network(&self, z: &Tensor, ops: Ops) -> Result<Tensor> {
        let x = (ops.conv)(&self.initial_conv, z)?;
        let mut x = (ops.norm)(&self.initial_norm, &x)?.silu()?;
        for block in &self.res_blocks {
            x = block.forward(&x, ops)?;
        }
        x = self.resampler.forward(&x, ops)?;
        for block in &self.post_blocks {
            x = block.forward(&x, ops)?;
        }
        Ok((ops.conv)(&self.final_conv, &x)?.to_dtype(DType::F32)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::max_diff;

    /// The fixture's released-structure variant: the upsampler, its input, the reference
    /// output.
    fn fixture_x2() -> (LatentUpsampler, Tensor, Tensor) {
        let dir = std::path::PathBuf::from(
            std::env::var_os("CARGO_MANIFEST_DIR")
                .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
        )
        .join("tests/fixtures");
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("upsampler_tiny.json")).unwrap(),
        )
        .unwrap();
        let cfg = LatentUpsamplerConfig::from_json(&json["variants"]["x2"].to_string()).unwrap();
        let t =
            candle_core::safetensors::load(dir.join("upsampler_tiny_x2.safetensors"), &Device::Cpu)
                .unwrap();
        let stats = LatentStatistics::new(
            &t["latents_mean"],
            &t["latents_std"],
            json["scaling_factor"].as_f64().unwrap(),
        )
        .unwrap();
        let w = Weights::from_named_tensors(
            t.iter().map(|(k, v)| (k.clone(), v.clone())),
            canonical_upsampler_name,
        )
        .unwrap();
        (
            LatentUpsampler::new(&cfg, &w, stats).unwrap(),
            t["input.latents"].clone(),
            t["output"].clone(),
        )
    }

    /// Group statistics per frame (a 2-D GroupNorm applied frame by frame).
    fn norm_per_frame(n: &GroupNorm, x: &Tensor) -> Result<Tensor> {
        let f = x.dim(2)?;
        let frames = (0..f)
            .map(|i| n.forward(&x.narrow(2, i, 1)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&frames, 2)?)
    }

    /// Column sub-position first.
    fn shuffle_column_major(x: &Tensor, r: usize) -> Result<Tensor> {
        let (n, cr, h, w) = x.dims4()?;
        let c = cr / (r * r);
        Ok(x.reshape(vec![n, c, r, r, h, w])?
            .permute(vec![0, 1, 4, 3, 5, 2])?
            .contiguous()?
            .reshape((n, c, h * r, w * r))?)
    }

    /// Plausible porting mistakes inside the network, each far from the reference: the VAE's
    /// replicate or causal time padding instead of zeros, per-frame group statistics, the
    /// pixel shuffle's sub-positions swapped.
    #[test]
    fn network_mistakes_move_the_output_far() {
        let (up, x, want) = fixture_x2();
        let run = |ops: Ops| {
            let z = up.stats.denormalize(&x).unwrap();
            let y = up.network(&z, ops).unwrap();
            max_diff(&up.stats.normalize(&y).unwrap(), &want)
        };
        assert!(run(REFERENCE_OPS) <= 1e-4);
        let figures = [
            (
                "replicate time padding",
                run(Ops {
                    conv: |c, x| c.forward(x, false),
                    ..REFERENCE_OPS
                }),
            ),
            (
                "causal time padding",
                run(Ops {
                    conv: |c, x| c.forward(x, true),
                    ..REFERENCE_OPS
                }),
            ),
            (
                "group norm per frame",
                run(Ops {
                    norm: norm_per_frame,
                    ..REFERENCE_OPS
                }),
            ),
            (
                "pixel shuffle column-major",
                run(Ops {
                    shuffle: shuffle_column_major,
                    ..REFERENCE_OPS
                }),
            ),
        ];
        for (what, err) in figures {
            println!("upsampler mutation: {what}: max abs err {err:.3e}");
            assert!(err > 1e-2, "{what} moved the output by only {err}");
        }
    }

    #[test]
    fn pixel_shuffle_puts_the_row_sub_position_first() {
        // One output channel from 4: channel k = 2·dy + dx.
        let x = Tensor::arange(0f32, 4., &Device::Cpu)
            .unwrap()
            .reshape((1, 4, 1, 1))
            .unwrap();
        let y = pixel_shuffle(&x, 2).unwrap();
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![0., 1., 2., 3.]
        );
    }
}
