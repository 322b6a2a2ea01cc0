//! Flow-matching Euler scheduler (diffusers' `FlowMatchEulerDiscreteScheduler`, the
//! deterministic path), with the distilled LTX-2 schedule.
//!
//! Sigma arithmetic is done in f32 in the reference's operation order so schedules match
//! it bit for bit; the model sees `timestep = σ · num_train_timesteps` (σ × 1000).

use crate::{InferenceError, Result};
use candle_core::Tensor;
use serde::Deserialize;

/// The distilled LTX-2 sigmas (before the terminal 0 the scheduler appends).
pub const DISTILLED_SIGMAS: [f32; 8] = [
    1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875,
];

/// How resolution-dependent shifting bends the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeShiftType {
    Exponential,
    Linear,
}

/// Scheduler config in diffusers' spelling (`scheduler/scheduler_config.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: u32,
    pub shift: f32,
    pub use_dynamic_shifting: bool,
    pub base_shift: f64,
    pub max_shift: f64,
    pub base_image_seq_len: u32,
    pub max_image_seq_len: u32,
    pub shift_terminal: Option<f64>,
    pub time_shift_type: TimeShiftType,
    pub invert_sigmas: bool,
    pub stochastic_sampling: bool,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
}

impl Default for SchedulerConfig {
    /// The distilled setting: sigmas given explicitly, no shifting.
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: 0.5,
            max_shift: 1.15,
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            shift_terminal: None,
            time_shift_type: TimeShiftType::Exponential,
            invert_sigmas: false,
            stochastic_sampling: false,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
        }
    }
}

impl SchedulerConfig {
    /// Rejects options this scheduler does not implement.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(InferenceError::Config(format!("scheduler: {m}")));
        if self.num_train_timesteps == 0 {
            return bad("num_train_timesteps must be positive");
        }
        if !(self.shift.is_finite() && self.shift > 0.0) {
            return bad("shift must be positive");
        }
        if self.max_image_seq_len <= self.base_image_seq_len {
            return bad("max_image_seq_len must exceed base_image_seq_len");
        }
        if let Some(t) = self.shift_terminal
            && !(t > 0.0 && t < 1.0)
        {
            return bad("shift_terminal must be in (0, 1)");
        }
        if self.invert_sigmas
            || self.stochastic_sampling
            || self.use_karras_sigmas
            || self.use_exponential_sigmas
            || self.use_beta_sigmas
        {
            return bad(
                "inverted, stochastic, Karras, exponential and beta sigmas are not implemented",
            );
        }
        Ok(())
    }

    /// The shift `mu` for `seq_len` tokens (linear between the base and max lengths, in f64
    /// like the pipelines' `calculate_shift`).
    pub fn mu_for_seq_len(&self, seq_len: usize) -> f64 {
        let m = (self.max_shift - self.base_shift)
            / (f64::from(self.max_image_seq_len) - f64::from(self.base_image_seq_len));
        let b = self.base_shift - m * f64::from(self.base_image_seq_len);
        seq_len as f64 * m + b
    }
}

/// A prepared schedule: `sigmas` has one more entry than steps (the terminal 0).
#[derive(Debug, Clone, PartialEq)]
pub struct FlowMatchEulerScheduler {
    sigmas: Vec<f32>,
    timesteps: Vec<f32>,
}

impl FlowMatchEulerScheduler {
    /// Prepares the schedule from explicit `sigmas` (e.g. [`DISTILLED_SIGMAS`]). `mu` is
    /// required when the config uses dynamic shifting (see
    /// [`SchedulerConfig::mu_for_seq_len`]).
    pub fn new(cfg: &SchedulerConfig, sigmas: &[f32], mu: Option<f64>) -> Result<Self> {
        cfg.validate()?;
        if sigmas.is_empty() {
            return Err(InferenceError::Config("scheduler: no sigmas".into()));
        }
        if sigmas.iter().any(|s| !(*s > 0.0 && *s <= 1.0)) {
            return Err(InferenceError::Config(
                "scheduler: sigmas must be in (0, 1]".into(),
            ));
        }
        let mut s: Vec<f32> = if cfg.use_dynamic_shifting {
            let mu = mu.ok_or_else(|| {
                InferenceError::Config("scheduler: dynamic shifting needs mu".into())
            })?;
            if !mu.is_finite() {
                return Err(InferenceError::Config(
                    "scheduler: mu must be finite".into(),
                ));
            }
            // numpy evaluates `e / (e + (1/t − 1))` on a float32 array with e = f32(exp(mu))
            let e = match cfg.time_shift_type {
                TimeShiftType::Exponential => mu.exp() as f32,
                TimeShiftType::Linear => mu as f32,
            };
            sigmas.iter().map(|&t| e / (e + (1.0 / t - 1.0))).collect()
        } else {
            let k = cfg.shift;
            sigmas
                .iter()
                .map(|&t| k * t / (1.0 + (k - 1.0) * t))
                .collect()
        };
        if let Some(terminal) = cfg.shift_terminal {
            let last = s.last().copied().unwrap_or(1.0);
            // `1 − shift_terminal` is a Python float, rounded to f32 when it meets the f32 array
            let scale = (1.0 - last) / ((1.0 - terminal) as f32);
            if scale == 0.0 {
                return Err(InferenceError::Config(
                    "scheduler: shift_terminal needs a last sigma below 1".into(),
                ));
            }
            s = s.iter().map(|&x| 1.0 - (1.0 - x) / scale).collect();
        }
        let n = cfg.num_train_timesteps as f32;
        let timesteps = s.iter().map(|&x| x * n).collect();
        s.push(0.0);
        Ok(Self {
            sigmas: s,
            timesteps,
        })
    }

    /// The distilled LTX-2 schedule (8 steps).
    pub fn distilled() -> Result<Self> {
        Self::new(&SchedulerConfig::default(), &DISTILLED_SIGMAS, None)
    }

    /// Number of denoising steps.
    pub fn num_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// Sigmas including the terminal 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// Model-unit timesteps (σ × num_train_timesteps), one per step.
    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// Euler step `i`: `sample + (σᵢ₊₁ − σᵢ) · velocity`.
    pub fn step(&self, i: usize, sample: &Tensor, velocity: &Tensor) -> Result<Tensor> {
        if i >= self.num_steps() {
            return Err(InferenceError::Input(format!(
                "step {i} out of range for {} steps",
                self.num_steps()
            )));
        }
        if sample.dims() != velocity.dims() {
            return Err(InferenceError::Input(format!(
                "sample {:?} and velocity {:?} differ in shape",
                sample.dims(),
                velocity.dims()
            )));
        }
        let dt = self.sigmas[i + 1] - self.sigmas[i];
        let dt = Tensor::new(dt, sample.device())?.to_dtype(sample.dtype())?;
        Ok(sample.broadcast_add(&velocity.broadcast_mul(&dt)?)?)
    }
}
