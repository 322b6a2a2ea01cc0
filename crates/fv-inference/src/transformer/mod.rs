//! The LTX-2 transformer (diffusers' `LTX2VideoTransformer3DModel`): a video stream and an
//! audio stream that exchange information through audio↔video cross-attention in every
//! block.
//!
//! Two ways to build it:
//! - [`Ltx2VideoTransformer::new`] reads only the video stream and runs
//!   [`forward`](Ltx2VideoTransformer::forward), which equals the reference's video output with
//!   `isolate_modalities=True` (independent of every audio input and weight);
//! - [`Ltx2VideoTransformer::new_av`] reads the whole model and runs
//!   [`forward_av`](Ltx2VideoTransformer::forward_av): video tokens + audio tokens + both caption
//!   embeddings + per-token timesteps of each modality → video velocity + audio velocity, with
//!   the cross-attention on (`isolate_modalities=False`, what real generation uses) or off.

mod block;
mod layers;

use crate::config::TransformerConfig;
use crate::rope::{
    AudioCoords, VideoCoords, audio_rope_tables, cross_attention_rope_tables, split_rope_tables,
};
use crate::weights::Weights;
use crate::{InferenceError, Result};
use block::{Block, CrossStep, StreamStep};
use candle_core::{DType, Device, Tensor};
use layers::{AdaLnSingle, CaptionProjection, Expected, Linear, Rope, layer_norm, modulate};

pub use crate::ops::MAX_SCORE_ELEMS;
pub(crate) use layers::TimeEmbedder;

/// Additive bias for masked-out text tokens (the reference uses a finite value, not −∞).
const MASK_BIAS: f64 = -10000.0;

/// Timesteps for one forward: one per sample, or one per sample and token (the reference
/// accepts both; per-token timesteps are how conditioning frames are kept clean).
#[derive(Debug, Clone, PartialEq)]
pub enum Timesteps {
    /// `[B]` values in model units (σ × 1000).
    PerSample(Vec<f32>),
    /// `[B][T]` values in model units.
    PerToken(Vec<Vec<f32>>),
}

impl Timesteps {
    /// The values flattened, and how many per sample (1 or `tokens`), checked against the
    /// batch and token counts and for finiteness. `what` names the modality in errors.
    fn flatten(&self, b: usize, tokens: usize, what: &str) -> Result<(Vec<f32>, usize)> {
        let (flat, per) = match self {
            Self::PerSample(v) if v.len() == b => (v.clone(), 1),
            Self::PerToken(rows) if rows.len() == b && rows.iter().all(|r| r.len() == tokens) => {
                (rows.concat(), tokens)
            }
            _ => {
                return Err(InferenceError::Input(format!(
                    "{what} timesteps must be [{b}] or [{b}][{tokens}]"
                )));
            }
        };
        if flat.iter().any(|v| !v.is_finite()) {
            return Err(InferenceError::Input(format!(
                "{what} timesteps must be finite"
            )));
        }
        Ok((flat, per))
    }
}

/// RoPE tables for one latent grid, from [`Ltx2VideoTransformer::rope_tables`].
#[derive(Debug, Clone)]
pub struct RopeTables {
    rope: Rope,
    tokens: usize,
}

/// Every RoPE table a joint forward uses, from [`Ltx2VideoTransformer::av_rope_tables`]:
/// built once per generation and reused by every step.
#[derive(Debug, Clone)]
pub struct AvRopeTables {
    video: RopeTables,
    audio: Rope,
    cross_video: Rope,
    cross_audio: Rope,
    audio_tokens: usize,
}

/// Which timesteps drive the audio↔video cross-attention modulation (diffusers'
/// `use_cross_timestep`).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum CrossTimestep {
    /// Each modality's cross-attention is modulated by its own (per-token) timesteps: the
    /// LTX-2.0 legacy behaviour, `use_cross_timestep=False`, what FastVideo runs.
    #[default]
    Own,
    /// Each modality's cross-attention is modulated by the *other* modality's per-sample σ
    /// × 1000 (`use_cross_timestep=True`, diffusers' `LTX2Pipeline` default): the video side by
    /// `audio`, the audio side by `video`. The reference pipelines pass the step's plain
    /// timestep here even when the token timesteps are masked for conditioning.
    Cross {
        /// Per-sample video σ × 1000 (`sigma`), `[B]`.
        video: Vec<f32>,
        /// Per-sample audio σ × 1000 (`audio_sigma`), `[B]`.
        audio: Vec<f32>,
    },
}

/// Options of a joint forward.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AvOptions {
    /// Skip the audio↔video cross-attention in every block (diffusers' `isolate_modalities`,
    /// used for modality guidance); each stream then sees only itself and its text.
    pub isolate_modalities: bool,
    /// Timesteps of the cross-attention modulation.
    pub cross_timestep: CrossTimestep,
}

/// Inputs of one joint forward ([`Ltx2VideoTransformer::forward_av`]). Tensors may be of any
/// float dtype; they are cast to the model's.
#[derive(Debug, Clone, Copy)]
pub struct AvInputs<'a> {
    /// Packed video tokens `[B, Tv, in_channels]` in the coordinates' order.
    pub video: &'a Tensor,
    /// σ × 1000 per sample or per video token.
    pub video_timesteps: &'a Timesteps,
    /// Video caption embeddings `[B, S, caption_channels]` (the video connector's output).
    pub video_text: &'a Tensor,
    /// `[B, S]`, 1 for real tokens and 0 for padding (`None`: all real).
    pub video_text_mask: Option<&'a Tensor>,
    /// Packed audio tokens `[B, Ta, audio_in_channels]` (feature `c·mel + m`, 25 per second).
    pub audio: &'a Tensor,
    /// σ × 1000 per sample or per audio token.
    pub audio_timesteps: &'a Timesteps,
    /// Audio caption embeddings `[B, S', caption_channels]` (the audio connector's output).
    pub audio_text: &'a Tensor,
    /// `[B, S']` padding mask of the audio captions.
    pub audio_text_mask: Option<&'a Tensor>,
}

/// The audio stream's top-level layers and the global cross-attention modulations.
#[derive(Debug, Clone)]
struct AudioTop {
    proj_in: Linear,
    caption: CaptionProjection,
    time_embed: AdaLnSingle,
    video_cross_scale_shift: AdaLnSingle,
    video_cross_gate: AdaLnSingle,
    audio_cross_scale_shift: AdaLnSingle,
    audio_cross_gate: AdaLnSingle,
    scale_shift_table: Tensor,
    proj_out: Linear,
}

impl AudioTop {
    fn load(w: &Weights, cfg: &TransformerConfig) -> Result<Self> {
        let (dim, adim) = (cfg.inner_dim(), cfg.audio_inner_dim());
        Ok(Self {
            proj_in: Linear::load(w, "audio_proj_in", cfg.audio_in_channels, adim)?,
            caption: CaptionProjection::load(
                w,
                "audio_caption_projection",
                cfg.caption_channels,
                adim,
            )?,
            time_embed: AdaLnSingle::load(w, "audio_time_embed", adim, 6)?,
            video_cross_scale_shift: AdaLnSingle::load(
                w,
                "av_cross_attn_video_scale_shift",
                dim,
                4,
            )?,
            video_cross_gate: AdaLnSingle::load(w, "av_cross_attn_video_a2v_gate", dim, 1)?,
            audio_cross_scale_shift: AdaLnSingle::load(
                w,
                "av_cross_attn_audio_scale_shift",
                adim,
                4,
            )?,
            audio_cross_gate: AdaLnSingle::load(w, "av_cross_attn_audio_v2a_gate", adim, 1)?,
            scale_shift_table: w.get("audio_scale_shift_table", &[2, adim])?,
            proj_out: Linear::load(w, "audio_proj_out", adim, cfg.audio_out_channels())?,
        })
    }

    fn expected(v: &mut Expected, cfg: &TransformerConfig) {
        let (dim, adim) = (cfg.inner_dim(), cfg.audio_inner_dim());
        Linear::expected(v, "audio_proj_in", cfg.audio_in_channels, adim);
        CaptionProjection::expected(v, "audio_caption_projection", cfg.caption_channels, adim);
        AdaLnSingle::expected(v, "audio_time_embed", adim, 6);
        AdaLnSingle::expected(v, "av_cross_attn_video_scale_shift", dim, 4);
        AdaLnSingle::expected(v, "av_cross_attn_video_a2v_gate", dim, 1);
        AdaLnSingle::expected(v, "av_cross_attn_audio_scale_shift", adim, 4);
        AdaLnSingle::expected(v, "av_cross_attn_audio_v2a_gate", adim, 1);
        v.push(("audio_scale_shift_table".into(), vec![2, adim]));
        Linear::expected(v, "audio_proj_out", adim, cfg.audio_out_channels());
    }
}

/// The LTX-2 transformer: the video stream, and the audio stream when built with
/// [`new_av`](Self::new_av).
#[derive(Debug, Clone)]
pub struct Ltx2VideoTransformer {
    cfg: TransformerConfig,
    device: Device,
    proj_in: Linear,
    caption: CaptionProjection,
    time_embed: AdaLnSingle,
    blocks: Vec<Block>,
    scale_shift_table: Tensor,
    proj_out: Linear,
    audio: Option<AudioTop>,
}

impl Ltx2VideoTransformer {
    /// Builds the video stream from weights in canonical names (see [`crate::weights`]);
    /// audio tensors in `w` are ignored. Every tensor is shape-checked against `cfg`.
    pub fn new(cfg: &TransformerConfig, w: &Weights, device: &Device) -> Result<Self> {
        cfg.validate()?;
        Self::build(cfg, w, device, false)
    }

    /// Builds the whole audio-video model (all 3510 tensors at the released size). Every
    /// tensor is shape-checked against `cfg`, which must pass
    /// [`TransformerConfig::validate_audio`].
    pub fn new_av(cfg: &TransformerConfig, w: &Weights, device: &Device) -> Result<Self> {
        cfg.validate_audio()?;
        Self::build(cfg, w, device, true)
    }

    fn build(cfg: &TransformerConfig, w: &Weights, device: &Device, audio: bool) -> Result<Self> {
        let dim = cfg.inner_dim();
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::load(w, i, cfg, audio))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            cfg: cfg.clone(),
            device: device.clone(),
            proj_in: Linear::load(w, "proj_in", cfg.in_channels, dim)?,
            caption: CaptionProjection::load(w, "caption_projection", cfg.caption_channels, dim)?,
            time_embed: AdaLnSingle::load(w, "time_embed", dim, 6)?,
            blocks,
            scale_shift_table: w.get("scale_shift_table", &[2, dim])?,
            proj_out: Linear::load(w, "proj_out", dim, cfg.out_channels())?,
            audio: audio.then(|| AudioTop::load(w, cfg)).transpose()?,
        })
    }

    /// The config the model was built with.
    pub fn config(&self) -> &TransformerConfig {
        &self.cfg
    }

    /// Whether the audio stream was loaded ([`new_av`](Self::new_av)).
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// The dtype of the weights, which the forward computes in (norms and tables in f32).
    pub fn dtype(&self) -> DType {
        self.proj_in.bias.dtype()
    }

    /// Canonical (name, shape) of every tensor the video stream reads, in load order.
    pub fn expected_weights(cfg: &TransformerConfig) -> Vec<(String, Vec<usize>)> {
        let dim = cfg.inner_dim();
        let mut v: Expected = Vec::new();
        Linear::expected(&mut v, "proj_in", cfg.in_channels, dim);
        CaptionProjection::expected(&mut v, "caption_projection", cfg.caption_channels, dim);
        AdaLnSingle::expected(&mut v, "time_embed", dim, 6);
        for i in 0..cfg.num_layers {
            Block::expected_video(&mut v, i, cfg);
        }
        v.push(("scale_shift_table".into(), vec![2, dim]));
        Linear::expected(&mut v, "proj_out", dim, cfg.out_channels());
        v
    }

    /// Canonical (name, shape) of every tensor of the whole audio-video model
    /// ([`new_av`](Self::new_av)): the video stream's, then the audio stream's and the
    /// cross-attention's.
    pub fn expected_av_weights(cfg: &TransformerConfig) -> Vec<(String, Vec<usize>)> {
        let mut v = Self::expected_weights(cfg);
        for i in 0..cfg.num_layers {
            Block::expected_audio(&mut v, i, cfg);
        }
        AudioTop::expected(&mut v, cfg);
        v
    }

    /// One denoising forward of the video stream alone (the reference's video output with
    /// `isolate_modalities=True`).
    ///
    /// - `latents`: packed video tokens `[B, T, in_channels]` (T in the coordinates' order);
    /// - `timesteps`: σ × 1000 per sample or per token;
    /// - `text`: caption embeddings `[B, S, caption_channels]`;
    /// - `text_mask`: `[B, S]`, 1 for real tokens and 0 for padding (`None`: all real);
    /// - `coords`: token positions from [`VideoCoords::for_latent_grid`].
    ///
    /// Inputs may be of any float dtype; they are cast to the model's [`dtype`](Self::dtype).
    /// Returns the velocity prediction `[B, T, out_channels]` in f32 (the scheduler's
    /// arithmetic stays in f32, as in the reference pipeline).
    pub fn forward(
        &self,
        latents: &Tensor,
        timesteps: &Timesteps,
        text: &Tensor,
        text_mask: Option<&Tensor>,
        coords: &VideoCoords,
    ) -> Result<Tensor> {
        let rope = self.rope_tables(coords)?;
        self.forward_with_rope(latents, timesteps, text, text_mask, &rope)
    }

    /// The RoPE tables for `coords`, built once (on the host, in the reference's precision)
    /// and uploaded in the model dtype, for [`forward_with_rope`](Self::forward_with_rope):
    /// a denoising loop reuses them for every step.
    pub fn rope_tables(&self, coords: &VideoCoords) -> Result<RopeTables> {
        let (cos, sin) = split_rope_tables(&self.cfg, coords, &self.device)?;
        Ok(RopeTables {
            rope: self.upload(cos, sin)?,
            tokens: coords.num_tokens(),
        })
    }

    fn upload(&self, cos: Tensor, sin: Tensor) -> Result<Rope> {
        Ok(Rope {
            cos: cos.to_dtype(self.dtype())?,
            sin: sin.to_dtype(self.dtype())?,
        })
    }

    /// Every RoPE table of a joint forward over `video` and `audio` tokens (video 3-D, audio
    /// 1-D in seconds, and the 1-D cross-attention tables of both sides).
    pub fn av_rope_tables(&self, video: &VideoCoords, audio: &AudioCoords) -> Result<AvRopeTables> {
        self.cfg.validate_audio()?;
        let (a_cos, a_sin) = audio_rope_tables(&self.cfg, audio, &self.device)?;
        let ((cv_cos, cv_sin), (ca_cos, ca_sin)) =
            cross_attention_rope_tables(&self.cfg, video, audio, &self.device)?;
        Ok(AvRopeTables {
            video: self.rope_tables(video)?,
            audio: self.upload(a_cos, a_sin)?,
            cross_video: self.upload(cv_cos, cv_sin)?,
            cross_audio: self.upload(ca_cos, ca_sin)?,
            audio_tokens: audio.num_tokens(),
        })
    }

    /// [`forward`](Self::forward) with prebuilt [`RopeTables`].
    pub fn forward_with_rope(
        &self,
        latents: &Tensor,
        timesteps: &Timesteps,
        text: &Tensor,
        text_mask: Option<&Tensor>,
        rope: &RopeTables,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let b = latents.dim(0)?;
        check_tokens(latents, b, rope.tokens, cfg.in_channels, "video")?;
        let (flat, per) = timesteps.flatten(b, rope.tokens, "video")?;
        let text_bias = text_bias(text, text_mask, b, cfg.caption_channels, "video")?;
        let dtype = self.dtype();
        let mut x = self.proj_in.forward(&latents.to_dtype(dtype)?)?;
        let (temb, embedded) = self.embed_time(&self.time_embed, &flat, b, per)?;
        let context = self.caption.forward(&text.to_dtype(dtype)?)?;
        let step = StreamStep {
            temb: &temb,
            context: &context,
            rope: &rope.rope,
            text_bias: text_bias.as_ref(),
        };
        for block in &self.blocks {
            x = block.forward_video(&x, &step)?;
        }
        output(&x, &embedded, &self.scale_shift_table, &self.proj_out)
    }

    /// AdaLN-single of `b·per` timesteps: (modulation `[b, per, 6, dim]`, embedding
    /// `[b, per, 1, dim]`).
    fn embed_time(
        &self,
        ada: &AdaLnSingle,
        flat: &[f32],
        b: usize,
        per: usize,
    ) -> Result<(Tensor, Tensor)> {
        let (m, e) = ada.forward(flat, &self.device)?;
        let dim = e.dim(1)?;
        Ok((m.reshape((b, per, 6, dim))?, e.reshape((b, per, 1, dim))?))
    }

    /// One joint denoising forward: (video velocity `[B, Tv, out_channels]`, audio velocity
    /// `[B, Ta, audio_out_channels]`), both f32. `rope` comes from
    /// [`av_rope_tables`](Self::av_rope_tables) for the same token counts. Needs a model built
    /// with [`new_av`](Self::new_av).
    pub fn forward_av(
        &self,
        inputs: &AvInputs,
        rope: &AvRopeTables,
        options: &AvOptions,
    ) -> Result<(Tensor, Tensor)> {
        let cfg = &self.cfg;
        let top = self.audio.as_ref().ok_or_else(|| {
            InferenceError::Config(
                "this transformer was built without the audio stream (use new_av)".into(),
            )
        })?;
        let b = inputs.video.dim(0)?;
        let (tv, ta) = (rope.video.tokens, rope.audio_tokens);
        check_tokens(inputs.video, b, tv, cfg.in_channels, "video")?;
        check_tokens(inputs.audio, b, ta, cfg.audio_in_channels, "audio")?;
        let (flat_v, per_v) = inputs.video_timesteps.flatten(b, tv, "video")?;
        let (flat_a, per_a) = inputs.audio_timesteps.flatten(b, ta, "audio")?;
        let bias_v = text_bias(
            inputs.video_text,
            inputs.video_text_mask,
            b,
            cfg.caption_channels,
            "video",
        )?;
        let bias_a = text_bias(
            inputs.audio_text,
            inputs.audio_text_mask,
            b,
            cfg.caption_channels,
            "audio",
        )?;

        let dtype = self.dtype();
        let mut xv = self.proj_in.forward(&inputs.video.to_dtype(dtype)?)?;
        let mut xa = top.proj_in.forward(&inputs.audio.to_dtype(dtype)?)?;
        let (temb_v, emb_v) = self.embed_time(&self.time_embed, &flat_v, b, per_v)?;
        let (temb_a, emb_a) = self.embed_time(&top.time_embed, &flat_a, b, per_a)?;
        let ctx_v = self.caption.forward(&inputs.video_text.to_dtype(dtype)?)?;
        let ctx_a = top.caption.forward(&inputs.audio_text.to_dtype(dtype)?)?;

        // The cross-attention modulation: each side from its own timesteps, or from the other
        // modality's per-sample sigma; the gates see the timestep × the multiplier ratio.
        let cross = if options.isolate_modalities {
            None
        } else {
            let ((ts_v, per_cv), (ts_a, per_ca)) = match &options.cross_timestep {
                CrossTimestep::Own => ((flat_v.clone(), per_v), (flat_a.clone(), per_a)),
                CrossTimestep::Cross { video, audio } => {
                    let (sv, _) =
                        Timesteps::PerSample(video.clone()).flatten(b, 1, "video sigma")?;
                    let (sa, _) =
                        Timesteps::PerSample(audio.clone()).flatten(b, 1, "audio sigma")?;
                    ((sa, 1), (sv, 1))
                }
            };
            let factor = cfg.cross_attn_gate_factor() as f32;
            let gate = |t: &[f32]| t.iter().map(|x| x * factor).collect::<Vec<f32>>();
            let dev = &self.device;
            Some([
                top.video_cross_scale_shift
                    .modulation(&ts_v, b, per_cv, dev)?,
                top.video_cross_gate
                    .modulation(&gate(&ts_v), b, per_cv, dev)?,
                top.audio_cross_scale_shift
                    .modulation(&ts_a, b, per_ca, dev)?,
                top.audio_cross_gate
                    .modulation(&gate(&ts_a), b, per_ca, dev)?,
            ])
        };
        let cross_step = cross.as_ref().map(|[vss, vg, ass, ag]| CrossStep {
            video_scale_shift: vss,
            video_gate: vg,
            audio_scale_shift: ass,
            audio_gate: ag,
            video_rope: &rope.cross_video,
            audio_rope: &rope.cross_audio,
        });
        let v_step = StreamStep {
            temb: &temb_v,
            context: &ctx_v,
            rope: &rope.video.rope,
            text_bias: bias_v.as_ref(),
        };
        let a_step = StreamStep {
            temb: &temb_a,
            context: &ctx_a,
            rope: &rope.audio,
            text_bias: bias_a.as_ref(),
        };
        for block in &self.blocks {
            (xv, xa) = block.forward_av(&xv, &xa, &v_step, &a_step, cross_step.as_ref())?;
        }
        Ok((
            output(&xv, &emb_v, &self.scale_shift_table, &self.proj_out)?,
            output(&xa, &emb_a, &top.scale_shift_table, &top.proj_out)?,
        ))
    }
}

/// Checks `x` is `[b, tokens, channels]`.
fn check_tokens(x: &Tensor, b: usize, tokens: usize, channels: usize, what: &str) -> Result<()> {
    if x.dims() != [b, tokens, channels] {
        return Err(InferenceError::Input(format!(
            "{what} tokens are {:?}, expected [{b}, {tokens}, {channels}] (the RoPE tables \
             describe {tokens} tokens)",
            x.dims()
        )));
    }
    Ok(())
}

/// Checks the caption embeddings and turns the padding mask into the additive score bias
/// `(1 − mask)·−10⁴` `[B, 1, 1, S]` (f32: the softmax runs in f32).
fn text_bias(
    text: &Tensor,
    mask: Option<&Tensor>,
    b: usize,
    channels: usize,
    what: &str,
) -> Result<Option<Tensor>> {
    let (tb, s, tc) = text.dims3()?;
    if tb != b || tc != channels {
        return Err(InferenceError::Input(format!(
            "{what} text embeddings are [{tb}, {s}, {tc}], expected [{b}, S, {channels}]"
        )));
    }
    let Some(m) = mask else { return Ok(None) };
    if m.dims() != [b, s] {
        return Err(InferenceError::Input(format!(
            "{what} text mask is {:?}, expected [{b}, {s}]",
            m.dims()
        )));
    }
    let bias = ((m.to_dtype(DType::F32)?.affine(-1.0, 1.0)?) * MASK_BIAS)?;
    Ok(Some(bias.reshape((b, 1, 1, s))?))
}

/// Output layers: layer norm → shift/scale from the embedded timestep `[B, Tt, 1, dim]` plus
/// `table` `[2, dim]` → projection, returned in f32.
fn output(x: &Tensor, embedded: &Tensor, table: &Tensor, proj: &Linear) -> Result<Tensor> {
    let ss = embedded.broadcast_add(&table.unsqueeze(0)?.unsqueeze(0)?)?;
    let shift = ss.narrow(2, 0, 1)?.squeeze(2)?;
    let scale = ss.narrow(2, 1, 1)?.squeeze(2)?;
    let x = modulate(&layer_norm(x, 1e-6)?, &shift, &scale)?;
    Ok(proj.forward(&x)?.to_dtype(DType::F32)?)
}
