//! Configuration of the LTX-2 video VAE encoder and the encoder's rename map.

use crate::vae::PaddingMode;
use crate::weights::{VaeName, split_vae_name};
use crate::{InferenceError, Result};
use serde::{Deserialize, Deserializer};

/// How a down block's downsampler shrinks the video (diffusers' `downsample_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DownsampleType {
    /// Height and width by 2.
    Spatial,
    /// Time by 2.
    Temporal,
    /// Time, height and width by 2.
    Spatiotemporal,
    /// A strided 3-D convolution (diffusers' `"conv"`; not in any LTX-2 release, rejected by
    /// [`VaeEncoderConfig::validate`]).
    Conv,
}

impl DownsampleType {
    /// (time, height, width) strides of the space-to-depth downsamplers.
    fn stride(self) -> Option<[usize; 3]> {
        match self {
            Self::Spatial => Some([1, 2, 2]),
            Self::Temporal => Some([2, 1, 1]),
            Self::Spatiotemporal => Some([2, 2, 2]),
            Self::Conv => None,
        }
    }
}

/// The only down block type diffusers' `LTX2VideoEncoder3d` builds.
pub const DOWN_BLOCK_TYPE: &str = "LTX2VideoDownBlock3D";

/// Encoder-side configuration of `AutoencoderKLLTX2Video`, in diffusers' spelling (the same
/// `vae/config.json` as [`VaeConfig`](crate::VaeConfig); decoder keys are ignored).
/// `spatio_temporal_scaling` may be one bool for every block, as in diffusers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct VaeEncoderConfig {
    pub in_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    /// One entry per down block, then the mid block's.
    pub layers_per_block: Vec<usize>,
    #[serde(deserialize_with = "bool_or_list")]
    pub spatio_temporal_scaling: Vec<bool>,
    pub downsample_type: Vec<DownsampleType>,
    pub patch_size: usize,
    pub patch_size_t: usize,
    pub scaling_factor: f64,
    pub encoder_causal: bool,
    pub encoder_spatial_padding_mode: PaddingMode,
}

/// `true` or `[true, false, ...]`. A single bool is kept as a one-element list and expanded
/// to every block by `plan` (which knows the block count).
fn bool_or_list<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(bool),
        Many(Vec<bool>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(b) => vec![b],
        OneOrMany::Many(v) => v,
    })
}

impl Default for VaeEncoderConfig {
    fn default() -> Self {
        Self::ltx2()
    }
}

/// One down block: residual blocks at `channels`, then an optional downsampler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DownPlan {
    pub channels: usize,
    pub layers: usize,
    pub downsampler: Option<DownsamplerPlan>,
}

/// A space-to-depth downsampler from `in_channels` to `out_channels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DownsamplerPlan {
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: [usize; 3],
    /// The convolution's output channels: `out_channels / (s0·s1·s2)`.
    pub conv_out: usize,
    /// Channels of the space-to-depth residual averaged into one output channel.
    pub group: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EncoderPlan {
    pub conv_in: (usize, usize),
    pub blocks: Vec<DownPlan>,
    pub mid_channels: usize,
    pub mid_layers: usize,
}

impl VaeEncoderConfig {
    /// The released LTX-2.0 video VAE encoder (diffusers' conversion script, version "2.0"):
    /// 3 → 48 channels by 4×4 patchify, conv to 128, down blocks (256, 512, 1024, 2048) with
    /// (4, 6, 6, 2) residual blocks and downsamplers (spatial, temporal, spatiotemporal,
    /// spatiotemporal), a 2-block mid block, conv to 129 (128 means + 1 log-var); causal,
    /// zero spatial padding.
    pub fn ltx2() -> Self {
        Self {
            in_channels: 3,
            latent_channels: 128,
            block_out_channels: vec![256, 512, 1024, 2048],
            down_block_types: vec![DOWN_BLOCK_TYPE.to_string(); 4],
            layers_per_block: vec![4, 6, 6, 2, 2],
            spatio_temporal_scaling: vec![true; 4],
            downsample_type: vec![
                DownsampleType::Spatial,
                DownsampleType::Temporal,
                DownsampleType::Spatiotemporal,
                DownsampleType::Spatiotemporal,
            ],
            patch_size: 4,
            patch_size_t: 1,
            scaling_factor: 1.0,
            encoder_causal: true,
            encoder_spatial_padding_mode: PaddingMode::Zeros,
        }
    }

    /// Parses a diffusers-style `vae/config.json` and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text)
            .map_err(|e| InferenceError::Config(format!("vae encoder config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values the encoder cannot honour, with the reason.
    pub fn validate(&self) -> Result<()> {
        self.plan().map(|_| ())
    }

    /// How much the encoder shrinks (time, height, width): the downsamplers' strides times
    /// the patch sizes; (8, 32, 32) for the release. Frames must number `1 + k·t` and sides
    /// be multiples of `h`, `w`.
    pub fn compression(&self) -> Result<[usize; 3]> {
        let plan = self.plan()?;
        let mut c = [self.patch_size_t, self.patch_size, self.patch_size];
        for d in plan.blocks.iter().filter_map(|b| b.downsampler.as_ref()) {
            for (axis, s) in c.iter_mut().zip(d.stride) {
                *axis *= s;
            }
        }
        Ok(c)
    }

    /// The encoder's block plan, checking that every channel count fits.
    pub(crate) fn plan(&self) -> Result<EncoderPlan> {
        let bad = |m: String| Err(InferenceError::Config(m));
        let n = self.block_out_channels.len();
        if n == 0 {
            return bad("block_out_channels must not be empty".into());
        }
        if self.layers_per_block.len() != n + 1 {
            return bad(format!(
                "layers_per_block needs {} entries ({n} down blocks + the mid block), got {}",
                n + 1,
                self.layers_per_block.len()
            ));
        }
        let scaling = match self.spatio_temporal_scaling.as_slice() {
            [one] if n > 1 => vec![*one; n],
            v => v.to_vec(),
        };
        for (name, len) in [
            ("down_block_types", self.down_block_types.len()),
            ("spatio_temporal_scaling", scaling.len()),
            ("downsample_type", self.downsample_type.len()),
        ] {
            if len < n {
                return bad(format!("{name} needs {n} entries, got {len}"));
            }
        }
        if let Some(t) = self.down_block_types[..n]
            .iter()
            .find(|t| *t != DOWN_BLOCK_TYPE)
        {
            return bad(format!(
                "unknown down block type {t:?} (only {DOWN_BLOCK_TYPE})"
            ));
        }
        if self.in_channels == 0
            || self.latent_channels == 0
            || self.patch_size == 0
            || self.block_out_channels.contains(&0)
        {
            return bad("channel counts and patch sizes must be positive".into());
        }
        if self.patch_size_t != 1 {
            // The reference's conv_in takes in_channels·p² channels whatever patch_size_t is,
            // so any other value fails there too.
            return bad(format!(
                "encoder patch_size_t must be 1, got {}",
                self.patch_size_t
            ));
        }
        if !(self.scaling_factor > 0.0 && self.scaling_factor.is_finite()) {
            return bad(format!(
                "scaling_factor must be positive, got {}",
                self.scaling_factor
            ));
        }
        let mut channels = self.latent_channels;
        let mut blocks = Vec::with_capacity(n);
        for (i, (&out, &scales)) in self.block_out_channels.iter().zip(&scaling).enumerate() {
            let downsampler = if scales {
                let Some(stride) = self.downsample_type[i].stride() else {
                    return bad(format!(
                        "down block {i}: downsample_type \"conv\" (a strided convolution) is \
                         not implemented; LTX-2 uses space-to-depth downsamplers"
                    ));
                };
                let s: usize = stride.iter().product();
                if !out.is_multiple_of(s) || !(channels * s).is_multiple_of(out) {
                    return bad(format!(
                        "down block {i}: {channels} → {out} channels does not fit a stride \
                         product of {s} (needs {out} divisible by {s} and {} by {out})",
                        channels * s
                    ));
                }
                Some(DownsamplerPlan {
                    in_channels: channels,
                    out_channels: out,
                    stride,
                    conv_out: out / s,
                    group: channels * s / out,
                })
            } else {
                if out != channels {
                    return bad(format!(
                        "down block {i} without downsampler keeps {channels} channels, but \
                         block_out_channels says {out}"
                    ));
                }
                None
            };
            blocks.push(DownPlan {
                channels,
                layers: self.layers_per_block[i],
                downsampler,
            });
            channels = out;
        }
        Ok(EncoderPlan {
            conv_in: (
                self.in_channels * self.patch_size * self.patch_size,
                self.latent_channels,
            ),
            blocks,
            mid_channels: channels,
            mid_layers: self.layers_per_block[n],
        })
    }
}

/// Index of the mid block among the single file's flat encoder entries: four down blocks,
/// each a residual stage and a downsampler, make entries 0–7 (diffusers' converter table).
const SINGLE_FILE_MID_INDEX: usize = 8;

/// Maps a video-VAE tensor name to the encoder's canonical (diffusers) spelling:
/// `encoder.…`, `latents_mean`, `latents_std`. Accepts diffusers names as they are and the
/// Lightricks single file's `vae.`-prefixed original names, whose encoder runs its blocks as
/// one flat list (`down_blocks.2i` → `down_blocks.i`, `down_blocks.2i+1` →
/// `down_blocks.i.downsamplers.0`, `down_blocks.8` → `mid_block`, `res_blocks` →
/// `resnets`, `per_channel_statistics.{mean,std}-of-means` → the latent statistics).
/// Returns `None` for what an encoder load skips: decoder tensors, unused statistics, other
/// components, and flat indices past the mid block.
pub fn canonical_vae_encoder_name(name: &str) -> Option<String> {
    let rest = match split_vae_name(name, "encoder")? {
        VaeName::Done(name) => return Some(name),
        VaeName::Original(rest) => rest,
    };
    let rest = rest.replace("res_blocks", "resnets");
    let Some(blocks) = rest.strip_prefix("down_blocks.") else {
        return Some(format!("encoder.{rest}"));
    };
    let (k, tail) = blocks.split_once('.')?;
    let k: usize = k.parse().ok()?;
    let head = match k {
        SINGLE_FILE_MID_INDEX => "mid_block".to_string(),
        k if k > SINGLE_FILE_MID_INDEX => return None,
        k if k % 2 == 1 => format!("down_blocks.{}.downsamplers.0", k / 2),
        k => format!("down_blocks.{}", k / 2),
    };
    Some(format!("encoder.{head}.{tail}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn released_config_plans_the_reference_blocks() {
        let cfg = VaeEncoderConfig::ltx2();
        let plan = cfg.plan().unwrap();
        assert_eq!(plan.conv_in, (48, 128));
        let chans: Vec<_> = plan.blocks.iter().map(|b| b.channels).collect();
        assert_eq!(chans, vec![128, 256, 512, 1024]);
        let groups: Vec<_> = plan
            .blocks
            .iter()
            .map(|b| b.downsampler.as_ref().unwrap().group)
            .collect();
        // 128·4/256, 256·2/512, 512·8/1024, 1024·8/2048.
        assert_eq!(groups, vec![2, 1, 4, 4]);
        assert_eq!((plan.mid_channels, plan.mid_layers), (2048, 2));
        assert_eq!(cfg.compression().unwrap(), [8, 32, 32]);
    }

    #[test]
    fn one_bool_means_every_block_and_bad_configs_are_named() {
        let mut json =
            serde_json::to_value(serde_json::json!({"spatio_temporal_scaling": true})).unwrap();
        let cfg = VaeEncoderConfig::from_json(&json.to_string()).unwrap();
        assert_eq!(cfg.compression().unwrap(), [8, 32, 32]);
        json["downsample_type"] = serde_json::json!(["conv", "temporal", "spatial", "spatial"]);
        let err = VaeEncoderConfig::from_json(&json.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("conv"), "{err}");
        let mut c = VaeEncoderConfig::ltx2();
        c.layers_per_block.pop();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("layers_per_block")
        );
        let mut c = VaeEncoderConfig::ltx2();
        c.block_out_channels[0] = 100; // 128·4 is not a multiple of 100
        assert!(c.validate().is_err());
        let mut c = VaeEncoderConfig::ltx2();
        c.spatio_temporal_scaling[1] = false; // 256 channels kept, 512 announced
        assert!(c.validate().is_err());
        let mut c = VaeEncoderConfig::ltx2();
        c.patch_size_t = 2;
        assert!(c.validate().is_err());
        let mut c = VaeEncoderConfig::ltx2();
        c.down_block_types[2] = "LTXVideoDownBlock3D".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("LTXVideoDownBlock3D")
        );
    }

    #[test]
    fn single_file_encoder_names_map_to_diffusers_names() {
        for (original, diffusers) in [
            (
                "vae.encoder.down_blocks.0.res_blocks.3.conv1.conv.weight",
                Some("encoder.down_blocks.0.resnets.3.conv1.conv.weight"),
            ),
            (
                "vae.encoder.down_blocks.7.conv.conv.bias",
                Some("encoder.down_blocks.3.downsamplers.0.conv.conv.bias"),
            ),
            (
                "vae.encoder.down_blocks.8.res_blocks.1.conv2.conv.weight",
                Some("encoder.mid_block.resnets.1.conv2.conv.weight"),
            ),
            ("vae.encoder.down_blocks.9.conv.conv.bias", None),
            (
                "vae.encoder.conv_out.conv.bias",
                Some("encoder.conv_out.conv.bias"),
            ),
            (
                "vae.per_channel_statistics.std-of-means",
                Some("latents_std"),
            ),
            ("vae.per_channel_statistics.mean-of-stds", None),
            ("vae.decoder.conv_in.conv.weight", None),
            ("decoder.conv_in.conv.weight", None),
            ("model.diffusion_model.proj_in.weight", None),
            (
                "encoder.down_blocks.1.downsamplers.0.conv.conv.weight",
                Some("encoder.down_blocks.1.downsamplers.0.conv.conv.weight"),
            ),
            ("latents_mean", Some("latents_mean")),
        ] {
            assert_eq!(
                canonical_vae_encoder_name(original).as_deref(),
                diffusers,
                "{original}"
            );
        }
    }
}
