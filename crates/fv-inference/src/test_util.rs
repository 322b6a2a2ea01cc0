//! Helpers for the crate's unit tests.
#![allow(clippy::unwrap_used)]

use candle_core::{Device, Tensor};

/// A seeded standard-normal f32 tensor on the CPU.
pub(crate) fn seeded(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Largest absolute element difference of two same-shaped f32 tensors.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
