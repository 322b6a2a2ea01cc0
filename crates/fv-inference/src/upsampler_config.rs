//! Configuration of the LTX-2 latent upsampler and its rename map.

use crate::upsampler::GROUPS;
use crate::{InferenceError, Result};
use serde::Deserialize;

/// Configuration of `LTX2LatentUpsamplerModel`, in diffusers' spelling (`latent_upsampler/
/// config.json`); the original code's `spatial_scale` and `rational_resampler` are accepted
/// too. Missing keys take diffusers' defaults, which are the released LTX-2.0 values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LatentUpsamplerConfig {
    pub in_channels: usize,
    pub mid_channels: usize,
    pub num_blocks_per_stage: usize,
    pub dims: usize,
    pub spatial_upsample: bool,
    pub temporal_upsample: bool,
    #[serde(alias = "spatial_scale")]
    pub rational_spatial_scale: f64,
    #[serde(alias = "rational_resampler")]
    pub use_rational_resampler: bool,
}

impl Default for LatentUpsamplerConfig {
    fn default() -> Self {
        Self::ltx2()
    }
}

impl LatentUpsamplerConfig {
    /// The released LTX-2.0 spatial ×2 upsampler (`ltx-2-spatial-upscaler-x2-1.0`, diffusers'
    /// conversion script version "2.0"): 128 latent channels, 1024 mid channels, 4 + 4
    /// residual blocks, 3-D convolutions, the rational resampler at scale 2.
    pub fn ltx2() -> Self {
        Self {
            in_channels: 128,
            mid_channels: 1024,
            num_blocks_per_stage: 4,
            dims: 3,
            spatial_upsample: true,
            temporal_upsample: false,
            rational_spatial_scale: 2.0,
            use_rational_resampler: true,
        }
    }

    /// Parses a `config.json` (a top-level `"upsampler"` object, as some original configs
    /// nest it, is used instead of the top level) and validates it.
    pub fn from_json(text: &str) -> Result<Self> {
        let err = |e: serde_json::Error| InferenceError::Config(format!("upsampler config: {e}"));
        let mut v: serde_json::Value = serde_json::from_str(text).map_err(err)?;
        if let Some(inner) = v.get_mut("upsampler").filter(|u| u.is_object()) {
            v = inner.take();
        }
        let cfg: Self = serde_json::from_value(v).map_err(err)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The resampler's (numerator, denominator): up by the first with a pixel shuffle, down
    /// by the second with the blur. The plain resampler is (2, 1).
    pub(crate) fn ratio(&self) -> Result<(usize, usize)> {
        if !self.use_rational_resampler {
            return Ok((2, 1));
        }
        // The reference's table of rational scales.
        [(0.75, (3, 4)), (1.5, (3, 2)), (2.0, (2, 1)), (4.0, (4, 1))]
            .into_iter()
            .find(|(s, _)| *s == self.rational_spatial_scale)
            .map(|(_, r)| r)
            .ok_or_else(|| {
                InferenceError::Config(format!(
                    "rational_spatial_scale {} is not one of 0.75, 1.5, 2.0, 4.0",
                    self.rational_spatial_scale
                ))
            })
    }

    /// Rejects values this implementation cannot honour, with the reason.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(InferenceError::Config(m));
        if self.dims != 3 {
            return bad(format!(
                "upsampler dims {} is not implemented (LTX-2 uses 3-D convolutions)",
                self.dims
            ));
        }
        if !self.spatial_upsample || self.temporal_upsample {
            return bad(
                "only the spatial upsampler is implemented (spatial_upsample true, \
                 temporal_upsample false)"
                    .into(),
            );
        }
        if self.in_channels == 0 || self.mid_channels == 0 {
            return bad("channel counts must be positive".into());
        }
        if !self.mid_channels.is_multiple_of(GROUPS) {
            return bad(format!(
                "mid_channels {} must be a multiple of the {GROUPS} norm groups",
                self.mid_channels
            ));
        }
        self.ratio().map(|_| ())
    }
}

/// Maps an upsampler tensor name to the canonical (diffusers) spelling. The released file
/// (`ltx-2-spatial-upscaler-x2-1.0.safetensors`) and diffusers' `latent_upsampler/` folder use
/// the same names; FastVideo's wrapper puts them under `model.`.
pub fn canonical_upsampler_name(name: &str) -> Option<String> {
    Some(name.strip_prefix("model.").unwrap_or(name).to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked() {
        assert_eq!(
            LatentUpsamplerConfig::from_json("{}").unwrap(),
            LatentUpsamplerConfig::ltx2()
        );
        // The original code's key names and a nested "upsampler" object.
        let c = LatentUpsamplerConfig::from_json(
            r#"{"upsampler": {"mid_channels": 64, "spatial_scale": 1.5, "rational_resampler": true}}"#,
        )
        .unwrap();
        assert_eq!((c.mid_channels, c.rational_spatial_scale), (64, 1.5));
        for bad in [
            r#"{"dims": 2}"#,
            r#"{"temporal_upsample": true}"#,
            r#"{"mid_channels": 48}"#,
            r#"{"rational_spatial_scale": 3.0}"#,
            r#"{"in_channels": 0}"#,
        ] {
            assert!(LatentUpsamplerConfig::from_json(bad).is_err(), "{bad}");
        }
        assert_eq!(
            canonical_upsampler_name("model.final_conv.bias").as_deref(),
            Some("final_conv.bias")
        );
    }
}
