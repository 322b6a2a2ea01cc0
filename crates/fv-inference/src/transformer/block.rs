//! One LTX-2 transformer block: a video stream, optionally an audio stream, and the
//! audio↔video cross-attention between them.

use super::layers::{
    Attention, AttnDims, Expected, FeedForward, Rope, mod_params, modulate, rms_norm,
};
use crate::config::TransformerConfig;
use crate::weights::Weights;
use crate::{InferenceError, Result};
use candle_core::Tensor;

/// Where one stream's layers live in a block, and how wide they are.
#[derive(Debug, Clone, Copy)]
pub(super) struct StreamSpec {
    attn1: &'static str,
    attn2: &'static str,
    ff: &'static str,
    table: &'static str,
    dim: usize,
    heads: usize,
    head_dim: usize,
    /// Width of the (projected) caption embeddings the text cross-attention reads.
    text_dim: usize,
}

impl StreamSpec {
    pub(super) fn video(cfg: &TransformerConfig) -> Self {
        Self {
            attn1: "attn1",
            attn2: "attn2",
            ff: "ff",
            table: "scale_shift_table",
            dim: cfg.inner_dim(),
            heads: cfg.num_attention_heads,
            head_dim: cfg.attention_head_dim,
            text_dim: cfg.cross_attention_dim,
        }
    }

    pub(super) fn audio(cfg: &TransformerConfig) -> Self {
        Self {
            attn1: "audio_attn1",
            attn2: "audio_attn2",
            ff: "audio_ff",
            table: "audio_scale_shift_table",
            dim: cfg.audio_inner_dim(),
            heads: cfg.audio_num_attention_heads,
            head_dim: cfg.audio_attention_head_dim,
            text_dim: cfg.audio_cross_attention_dim,
        }
    }

    fn self_dims(&self) -> AttnDims {
        AttnDims {
            query: self.dim,
            kv: self.dim,
            heads: self.heads,
            head_dim: self.head_dim,
        }
    }

    fn text_dims(&self) -> AttnDims {
        AttnDims {
            kv: self.text_dim,
            ..self.self_dims()
        }
    }
}

/// One stream's layers in a block: self-attention, text cross-attention, feed-forward and
/// the `[6, dim]` table (shift/scale/gate for self-attention, then for the feed-forward).
#[derive(Debug, Clone)]
struct StreamLayers {
    attn1: Attention,
    attn2: Attention,
    ff: FeedForward,
    table: Tensor,
    eps: f64,
}

impl StreamLayers {
    fn load(w: &Weights, p: &str, s: StreamSpec, eps: f64) -> Result<Self> {
        Ok(Self {
            attn1: Attention::load(w, &format!("{p}.{}", s.attn1), s.self_dims(), eps)?,
            attn2: Attention::load(w, &format!("{p}.{}", s.attn2), s.text_dims(), eps)?,
            ff: FeedForward::load(w, &format!("{p}.{}", s.ff), s.dim)?,
            table: w.get(&format!("{p}.{}", s.table), &[6, s.dim])?,
            eps,
        })
    }

    fn expected(v: &mut Expected, p: &str, s: StreamSpec) {
        Attention::expected(v, &format!("{p}.{}", s.attn1), s.self_dims());
        Attention::expected(v, &format!("{p}.{}", s.attn2), s.text_dims());
        FeedForward::expected(v, &format!("{p}.{}", s.ff), s.dim);
        v.push((format!("{p}.{}", s.table), vec![6, s.dim]));
    }

    fn self_attn(&self, x: &Tensor, m: &[Tensor], rope: &Rope) -> Result<Tensor> {
        let h = modulate(&rms_norm(x, self.eps)?, &m[0], &m[1])?;
        let a = self.attn1.forward(&h, None, Some(rope), Some(rope), None)?;
        Ok((x + a.broadcast_mul(&m[2])?)?)
    }

    fn text_attn(&self, x: &Tensor, context: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let h = rms_norm(x, self.eps)?;
        let a = self.attn2.forward(&h, Some(context), None, None, bias)?;
        Ok((x + a)?)
    }

    fn feed_forward(&self, x: &Tensor, m: &[Tensor]) -> Result<Tensor> {
        let h = modulate(&rms_norm(x, self.eps)?, &m[3], &m[4])?;
        Ok((x + self.ff.forward(&h)?.broadcast_mul(&m[5])?)?)
    }
}

/// What one stream's part of a block needs besides its hidden states.
pub(super) struct StreamStep<'a> {
    /// AdaLN modulation `[B, 1 or T, 6, dim]`.
    pub(super) temb: &'a Tensor,
    /// Projected caption embeddings `[B, S, dim]`.
    pub(super) context: &'a Tensor,
    pub(super) rope: &'a Rope,
    /// Text padding bias `[B, 1, 1, S]`.
    pub(super) text_bias: Option<&'a Tensor>,
}

/// What the audio↔video cross-attention needs: the global modulations and the 1-D RoPE of
/// each side.
pub(super) struct CrossStep<'a> {
    /// `[B, 1 or Tv, 4, dim]`: (a2v scale, a2v shift, v2a scale, v2a shift) for the video side.
    pub(super) video_scale_shift: &'a Tensor,
    /// `[B, 1 or Tv, 1, dim]`: the a2v gate.
    pub(super) video_gate: &'a Tensor,
    /// `[B, 1 or Ta, 4, audio dim]` for the audio side.
    pub(super) audio_scale_shift: &'a Tensor,
    /// `[B, 1 or Ta, 1, audio dim]`: the v2a gate.
    pub(super) audio_gate: &'a Tensor,
    pub(super) video_rope: &'a Rope,
    pub(super) audio_rope: &'a Rope,
}

/// The audio↔video cross-attention of one block: a2v (video queries, audio keys/values) and
/// v2a (audio queries, video keys/values), both at the audio width, each modulated by the
/// global cross modulation plus a per-block `[5, dim]` table whose rows are (a2v scale, a2v
/// shift, v2a scale, v2a shift, gate): scale before shift, unlike the stream tables.
#[derive(Debug, Clone)]
struct CrossLayers {
    a2v: Attention,
    v2a: Attention,
    video_table: Tensor,
    audio_table: Tensor,
    eps: f64,
}

impl CrossLayers {
    fn dims(cfg: &TransformerConfig) -> (AttnDims, AttnDims) {
        let (heads, head_dim) = (cfg.audio_num_attention_heads, cfg.audio_attention_head_dim);
        let (dim, adim) = (cfg.inner_dim(), cfg.audio_inner_dim());
        (
            AttnDims {
                query: dim,
                kv: adim,
                heads,
                head_dim,
            },
            AttnDims {
                query: adim,
                kv: dim,
                heads,
                head_dim,
            },
        )
    }

    fn load(w: &Weights, p: &str, cfg: &TransformerConfig) -> Result<Self> {
        let (a2v, v2a) = Self::dims(cfg);
        Ok(Self {
            a2v: Attention::load(w, &format!("{p}.audio_to_video_attn"), a2v, cfg.norm_eps)?,
            v2a: Attention::load(w, &format!("{p}.video_to_audio_attn"), v2a, cfg.norm_eps)?,
            video_table: w.get(
                &format!("{p}.video_a2v_cross_attn_scale_shift_table"),
                &[5, cfg.inner_dim()],
            )?,
            audio_table: w.get(
                &format!("{p}.audio_a2v_cross_attn_scale_shift_table"),
                &[5, cfg.audio_inner_dim()],
            )?,
            eps: cfg.norm_eps,
        })
    }

    fn expected(v: &mut Expected, p: &str, cfg: &TransformerConfig) {
        let (a2v, v2a) = Self::dims(cfg);
        Attention::expected(v, &format!("{p}.audio_to_video_attn"), a2v);
        Attention::expected(v, &format!("{p}.video_to_audio_attn"), v2a);
        v.push((
            format!("{p}.video_a2v_cross_attn_scale_shift_table"),
            vec![5, cfg.inner_dim()],
        ));
        v.push((
            format!("{p}.audio_a2v_cross_attn_scale_shift_table"),
            vec![5, cfg.audio_inner_dim()],
        ));
    }

    /// `(video, audio) → (video + a2v, audio + v2a)`; both attentions read norms taken before
    /// either is added.
    fn forward(&self, xv: &Tensor, xa: &Tensor, c: &CrossStep) -> Result<(Tensor, Tensor)> {
        let split = |table: &Tensor, ss: &Tensor, gate: &Tensor| -> Result<Vec<Tensor>> {
            let mut m = mod_params(ss, &table.narrow(0, 0, 4)?)?;
            m.extend(mod_params(gate, &table.narrow(0, 4, 1)?)?);
            Ok(m)
        };
        // [a2v scale, a2v shift, v2a scale, v2a shift, gate]
        let mv = split(&self.video_table, c.video_scale_shift, c.video_gate)?;
        let ma = split(&self.audio_table, c.audio_scale_shift, c.audio_gate)?;
        let nv = rms_norm(xv, self.eps)?;
        let na = rms_norm(xa, self.eps)?;

        let q = modulate(&nv, &mv[1], &mv[0])?;
        let kv = modulate(&na, &ma[1], &ma[0])?;
        let a2v = self
            .a2v
            .forward(&q, Some(&kv), Some(c.video_rope), Some(c.audio_rope), None)?;
        let xv = (xv + a2v.broadcast_mul(&mv[4])?)?;

        let q = modulate(&na, &ma[3], &ma[2])?;
        let kv = modulate(&nv, &mv[3], &mv[2])?;
        let v2a = self
            .v2a
            .forward(&q, Some(&kv), Some(c.audio_rope), Some(c.video_rope), None)?;
        let xa = (xa + v2a.broadcast_mul(&ma[4])?)?;
        Ok((xv, xa))
    }
}

/// One transformer block. The audio stream and the cross-attention are present when the
/// model was built with them.
#[derive(Debug, Clone)]
pub(super) struct Block {
    video: StreamLayers,
    audio: Option<(StreamLayers, CrossLayers)>,
}

impl Block {
    pub(super) fn load(
        w: &Weights,
        i: usize,
        cfg: &TransformerConfig,
        with_audio: bool,
    ) -> Result<Self> {
        let p = format!("transformer_blocks.{i}");
        let eps = cfg.norm_eps;
        Ok(Self {
            video: StreamLayers::load(w, &p, StreamSpec::video(cfg), eps)?,
            audio: if with_audio {
                Some((
                    StreamLayers::load(w, &p, StreamSpec::audio(cfg), eps)?,
                    CrossLayers::load(w, &p, cfg)?,
                ))
            } else {
                None
            },
        })
    }

    /// The video stream's tensors of block `i`.
    pub(super) fn expected_video(v: &mut Expected, i: usize, cfg: &TransformerConfig) {
        StreamLayers::expected(
            v,
            &format!("transformer_blocks.{i}"),
            StreamSpec::video(cfg),
        );
    }

    /// The audio stream's and the cross-attention's tensors of block `i`.
    pub(super) fn expected_audio(v: &mut Expected, i: usize, cfg: &TransformerConfig) {
        let p = format!("transformer_blocks.{i}");
        StreamLayers::expected(v, &p, StreamSpec::audio(cfg));
        CrossLayers::expected(v, &p, cfg);
    }

    /// The video stream alone (the reference's `isolate_modalities=True` video output).
    pub(super) fn forward_video(&self, x: &Tensor, v: &StreamStep) -> Result<Tensor> {
        let m = mod_params(v.temb, &self.video.table)?;
        let x = self.video.self_attn(x, &m, v.rope)?;
        let x = self.video.text_attn(&x, v.context, v.text_bias)?;
        self.video.feed_forward(&x, &m)
    }

    /// Both streams: self-attention (video, then audio), text cross-attention, then — unless
    /// `cross` is `None` (isolated modalities) — a2v and v2a, then the feed-forwards.
    pub(super) fn forward_av(
        &self,
        xv: &Tensor,
        xa: &Tensor,
        v: &StreamStep,
        a: &StreamStep,
        cross: Option<&CrossStep>,
    ) -> Result<(Tensor, Tensor)> {
        let Some((audio, cross_layers)) = &self.audio else {
            return Err(InferenceError::Config(
                "this transformer was built without the audio stream (use Ltx2VideoTransformer::new_av)"
                    .into(),
            ));
        };
        let mv = mod_params(v.temb, &self.video.table)?;
        let ma = mod_params(a.temb, &audio.table)?;
        let xv = self.video.self_attn(xv, &mv, v.rope)?;
        let xa = audio.self_attn(xa, &ma, a.rope)?;
        let xv = self.video.text_attn(&xv, v.context, v.text_bias)?;
        let xa = audio.text_attn(&xa, a.context, a.text_bias)?;
        let (xv, xa) = match cross {
            Some(c) => cross_layers.forward(&xv, &xa, c)?,
            None => (xv, xa),
        };
        Ok((
            self.video.feed_forward(&xv, &mv)?,
            audio.feed_forward(&xa, &ma)?,
        ))
    }
}
