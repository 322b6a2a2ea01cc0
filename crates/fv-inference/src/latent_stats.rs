//! The video VAE's per-channel latent statistics and the two maps between the VAE's latent
//! space and the normalised space the transformer (and every stage of the pipeline) works in.
//!
//! diffusers' pipelines normalise as `(x − mean) · scaling_factor / std` (`_normalize_latents`)
//! and de-normalise as `x · std / scaling_factor + mean` (`_denormalize_latents`); the released
//! VAE has `scaling_factor = 1`. Both run in f32 here whatever the weights' dtype.

use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::{DType, Tensor};

/// `latents_mean`, `latents_std` (one value per latent channel) and the VAE's
/// `scaling_factor`.
#[derive(Debug, Clone)]
pub struct LatentStatistics {
    /// `[C]`, f32.
    mean: Tensor,
    /// `[C]`, f32.
    std: Tensor,
    scaling_factor: f64,
}

impl LatentStatistics {
    /// From the two `[C]` vectors (any float dtype, any device) and the scaling factor.
    /// The factor must be positive and finite, the vectors of equal length and finite, and
    /// every standard deviation positive.
    pub fn new(mean: &Tensor, std: &Tensor, scaling_factor: f64) -> Result<Self> {
        let bad = |m: String| Err(InferenceError::Config(m));
        if mean.rank() != 1 || std.dims() != mean.dims() || mean.dim(0)? == 0 {
            return bad(format!(
                "latent statistics must be two equal non-empty vectors, got {:?} and {:?}",
                mean.dims(),
                std.dims()
            ));
        }
        if !(scaling_factor > 0.0 && scaling_factor.is_finite()) {
            return bad(format!(
                "scaling_factor must be positive, got {scaling_factor}"
            ));
        }
        let mean = mean.to_dtype(DType::F32)?;
        let std = std.to_dtype(DType::F32)?;
        let m: Vec<f32> = mean.to_vec1()?;
        let s: Vec<f32> = std.to_vec1()?;
        if m.iter().any(|v| !v.is_finite()) || s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return bad("latents_mean must be finite and latents_std positive and finite".into());
        }
        Ok(Self {
            mean,
            std,
            scaling_factor,
        })
    }

    /// `latents_mean` and `latents_std` (canonical names; both VAE rename maps produce them)
    /// from a weight store, each checked to have `channels` entries.
    pub fn from_weights(w: &Weights, channels: usize, scaling_factor: f64) -> Result<Self> {
        Self::new(
            &w.get("latents_mean", &[channels])?,
            &w.get("latents_std", &[channels])?,
            scaling_factor,
        )
    }

    /// Number of latent channels.
    pub fn channels(&self) -> usize {
        self.mean.elem_count()
    }

    /// The VAE's scaling factor.
    pub fn scaling_factor(&self) -> f64 {
        self.scaling_factor
    }

    /// `[C]` means and standard deviations, f32.
    pub fn mean_and_std(&self) -> (&Tensor, &Tensor) {
        (&self.mean, &self.std)
    }

    /// The statistics as `[1, C, 1, 1, 1]` on `x`'s device, after checking `x`'s shape.
    fn broadcastable(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.channels();
        if x.rank() != 5 || x.dim(1)? != c {
            return Err(InferenceError::Input(format!(
                "latents are {:?}, expected [B, {c}, F, H, W]",
                x.dims()
            )));
        }
        let shape = (1, c, 1, 1, 1);
        Ok((
            self.mean.to_device(x.device())?.reshape(shape)?,
            self.std.to_device(x.device())?.reshape(shape)?,
        ))
    }

    /// VAE latents `[B, C, F, H, W]` (any float dtype) → normalised latents, f32:
    /// `(x − mean) · scaling_factor / std`.
    pub fn normalize(&self, x: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.broadcastable(x)?;
        Ok(x.to_dtype(DType::F32)?
            .broadcast_sub(&mean)?
            .affine(self.scaling_factor, 0.0)?
            .broadcast_div(&std)?)
    }

    /// Normalised latents `[B, C, F, H, W]` (any float dtype) → VAE latents, f32:
    /// `x · std / scaling_factor + mean`.
    pub fn denormalize(&self, x: &Tensor) -> Result<Tensor> {
        let (mean, std) = self.broadcastable(x)?;
        Ok(
            (x.to_dtype(DType::F32)?.broadcast_mul(&std)? / self.scaling_factor)?
                .broadcast_add(&mean)?,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_util::{max_diff, seeded};
    use candle_core::Device;

    #[test]
    fn normalize_and_denormalize_are_inverse_and_use_the_scaling_factor() {
        let mean = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let std = Tensor::new(&[0.5f32, 2.0, 1.5], &Device::Cpu).unwrap();
        let stats = LatentStatistics::new(&mean, &std, 0.8).unwrap();
        let x = seeded(&[2, 3, 2, 3, 4], 5);
        let back = stats.denormalize(&stats.normalize(&x).unwrap()).unwrap();
        assert!(max_diff(&back, &x) < 1e-5);
        // One value by hand: channel 1, (x + 1) · 0.8 / 2.
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let n = stats
            .normalize(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let i = 2 * 3 * 4; // first element of channel 1
        assert!((n[i] - (v[i] + 1.0) * 0.8 / 2.0).abs() < 1e-6);
    }

    #[test]
    fn bad_statistics_and_shapes_are_rejected() {
        let dev = Device::Cpu;
        let m = Tensor::new(&[0f32, 0.], &dev).unwrap();
        let ok = Tensor::new(&[1f32, 1.], &dev).unwrap();
        let zero = Tensor::new(&[1f32, 0.], &dev).unwrap();
        let nan = Tensor::new(&[f32::NAN, 1.], &dev).unwrap();
        let three = Tensor::new(&[1f32, 1., 1.], &dev).unwrap();
        assert!(LatentStatistics::new(&m, &zero, 1.0).is_err());
        assert!(LatentStatistics::new(&nan, &ok, 1.0).is_err());
        assert!(LatentStatistics::new(&m, &three, 1.0).is_err());
        assert!(LatentStatistics::new(&m, &ok, 0.0).is_err());
        assert!(LatentStatistics::new(&m, &ok, f64::INFINITY).is_err());
        let s = LatentStatistics::new(&m, &ok, 1.0).unwrap();
        let wrong = Tensor::zeros((1, 3, 1, 1, 1), DType::F32, &dev).unwrap();
        assert!(s.normalize(&wrong).is_err());
        let rank4 = Tensor::zeros((1, 2, 1, 1), DType::F32, &dev).unwrap();
        assert!(s.denormalize(&rank4).is_err());
    }
}
