//! One denoising stage of the joint audio-video model: video and audio latents stepped
//! together through the same sigmas, each optionally holding clean conditioning tokens.
//!
//! Per step with σᵢ (timestep `tᵢ = σᵢ · 1000`): every token's timestep is `tᵢ · mᵢ` with `m`
//! the token's denoise mask (1 = generate, 0 = keep clean; per-sample `tᵢ` when nothing is
//! conditioned); one [`forward_av`](crate::transformer::Ltx2VideoTransformer::forward_av)
//! gives both velocities; each modality's x₀ = x − v·σᵢ is blended with its clean values,
//! `x₀·m + clean·(1 − m)`, turned back into a velocity and stepped by the Euler scheduler
//! (diffusers' `LTX2ConditionPipeline`, FastVideo's denoising stage). The audio runs on the
//! video's schedule (the reference deep-copies the scheduler).

use crate::rope::{AudioCoords, VideoCoords};
use crate::scheduler::FlowMatchEulerScheduler;
use crate::text::CaptionEmbeddings;
use crate::transformer::{AvInputs, AvOptions, CrossTimestep, Ltx2VideoTransformer, Timesteps};
use crate::{InferenceError, Result};
use candle_core::{DType, Tensor};
use fv_core::CancelToken;

/// Clean values some tokens are held at, with the per-token denoise mask.
#[derive(Debug, Clone)]
pub struct Conditioning {
    /// `[1, T, C]` f32: the clean tokens (values where the mask is 1 are unused).
    pub clean: Tensor,
    /// `T` values in [0, 1]: 1 = generated, 0 = kept clean (strength 1).
    pub mask: Vec<f32>,
}

impl Conditioning {
    /// Checks the shapes against `tokens` `[1, T, C]`.
    fn check(&self, tokens: &Tensor, what: &str) -> Result<()> {
        let (_, t, _) = tokens.dims3()?;
        if self.clean.dims() != tokens.dims() || self.mask.len() != t {
            return Err(InferenceError::Input(format!(
                "{what} conditioning is {:?} with {} mask entries, the latents are {:?}",
                self.clean.dims(),
                self.mask.len(),
                tokens.dims()
            )));
        }
        if self.mask.iter().any(|m| !(0.0..=1.0).contains(m)) {
            return Err(InferenceError::Input(format!(
                "{what} denoise mask values must be in [0, 1]"
            )));
        }
        Ok(())
    }

    /// The mask as `[1, T, 1]` f32 on the clean tokens' device.
    fn mask_tensor(&self) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.mask.clone(),
            (1, self.mask.len(), 1),
            self.clean.device(),
        )?)
    }

    /// The stage's starting latents at noise level `s` (1 at stage 1, σ₀ for a refine):
    /// `noise·m·s + clean·(1 − m·s)` (FastVideo's formula; diffusers' with `clean` zero
    /// outside the conditioning tokens at stage 1).
    pub fn noised(&self, noise: &Tensor, s: f64) -> Result<Tensor> {
        let ms = (self.mask_tensor()? * s)?;
        let keep = ms.affine(-1.0, 1.0)?; // 1 − m·s
        Ok((noise.broadcast_mul(&ms)? + self.clean.broadcast_mul(&keep)?)?)
    }
}

/// One modality's latents entering a stage.
#[derive(Debug, Clone)]
pub struct StreamLatents {
    /// `[1, T, C]` f32 tokens (video: `F·H·W` in frame, row, column order; audio: one per
    /// latent frame).
    pub tokens: Tensor,
    /// Clean conditioning tokens, if any.
    pub condition: Option<Conditioning>,
}

/// Everything one stage runs on.
#[derive(Debug, Clone)]
pub struct Stage<'a> {
    /// Video latents and their conditioning.
    pub video: StreamLatents,
    /// Audio latents and their conditioning.
    pub audio: StreamLatents,
    /// Positions of the video tokens (a continuation adds its time offset to axis 0).
    pub video_coords: VideoCoords,
    /// Positions of the audio tokens.
    pub audio_coords: AudioCoords,
    /// The sigmas (video and audio share them).
    pub scheduler: FlowMatchEulerScheduler,
    /// Caption embeddings (video and audio streams).
    pub text: &'a CaptionEmbeddings,
}

/// Timesteps of one modality at model-unit timestep `t`: per token when conditioned.
fn timesteps(t: f32, cond: Option<&Conditioning>) -> Timesteps {
    match cond {
        None => Timesteps::PerSample(vec![t]),
        Some(c) => Timesteps::PerToken(vec![c.mask.iter().map(|m| t * m).collect()]),
    }
}

/// One Euler step of `x` with velocity `v` at step `i`, the x₀ blended with the clean
/// tokens first when conditioned.
fn step(
    scheduler: &FlowMatchEulerScheduler,
    i: usize,
    x: &Tensor,
    v: &Tensor,
    cond: Option<(&Conditioning, &Tensor)>,
) -> Result<Tensor> {
    let Some((c, m)) = cond else {
        return scheduler.step(i, x, v);
    };
    let sigma = f64::from(scheduler.sigmas()[i]);
    let x0 = (x - (v * sigma)?)?;
    let x0 = (x0.broadcast_mul(m)? + c.clean.broadcast_mul(&m.affine(-1.0, 1.0)?)?)?;
    let v = ((x - x0)? / sigma)?;
    scheduler.step(i, x, &v)
}

/// Runs `stage` on `transformer` (built with `new_av`): calls `on_step()` after every step
/// and checks `cancel` before each. Returns the final (video, audio) tokens, f32.
pub(crate) fn denoise(
    transformer: &Ltx2VideoTransformer,
    stage: Stage<'_>,
    on_step: &mut dyn FnMut(),
    cancel: &CancelToken,
) -> Result<(Tensor, Tensor)> {
    let Stage {
        video,
        audio,
        video_coords,
        audio_coords,
        scheduler,
        text,
    } = stage;
    let mut x = video.tokens.to_dtype(DType::F32)?;
    let mut a = audio.tokens.to_dtype(DType::F32)?;
    if let Some(c) = &video.condition {
        c.check(&x, "video")?;
    }
    if let Some(c) = &audio.condition {
        c.check(&a, "audio")?;
    }
    let vmask = video
        .condition
        .as_ref()
        .map(Conditioning::mask_tensor)
        .transpose()?;
    let amask = audio
        .condition
        .as_ref()
        .map(Conditioning::mask_tensor)
        .transpose()?;
    // Built once per stage: the tables depend only on the positions.
    let rope = transformer.av_rope_tables(&video_coords, &audio_coords)?;
    // FastVideo's setting (LTX-2.0's `use_cross_timestep=False`): each modality's
    // cross-attention is modulated by its own per-token timesteps.
    let options = AvOptions {
        isolate_modalities: false,
        cross_timestep: CrossTimestep::Own,
    };
    for (i, &t) in scheduler.timesteps().iter().enumerate() {
        if cancel.is_cancelled() {
            return Err(InferenceError::Cancelled);
        }
        let vts = timesteps(t, video.condition.as_ref());
        let ats = timesteps(t, audio.condition.as_ref());
        let (vv, va) = transformer.forward_av(
            &AvInputs {
                video: &x,
                video_timesteps: &vts,
                video_text: &text.video,
                // The connectors fill every slot (registers), so nothing is masked.
                video_text_mask: None,
                audio: &a,
                audio_timesteps: &ats,
                audio_text: &text.audio,
                audio_text_mask: None,
            },
            &rope,
            &options,
        )?;
        x = step(
            &scheduler,
            i,
            &x,
            &vv,
            video.condition.as_ref().zip(vmask.as_ref()),
        )?;
        a = step(
            &scheduler,
            i,
            &a,
            &va,
            audio.condition.as_ref().zip(amask.as_ref()),
        )?;
        on_step();
    }
    Ok((x, a))
}
