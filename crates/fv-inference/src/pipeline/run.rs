//! One segment, end to end: the plan (sizes, steps, conditioning), stage 1, the optional
//! stage-2 refine, decoding, and the `ltx2.v1` state for the next segment.
//!
//! Progress: `sink.step(k, total)` after every denoising step, `total` = stage-1 steps +
//! refine steps, numbered 1..=total across both stages. Cancellation: checked before every
//! step of both stages, before the upsampler, before each decode and before the state is
//! built. Frames go to the sink as soon as the video is decoded (8 at a time), before the
//! audio is decoded and the state is built.

use super::condition::{
    audio_conditioning, preprocess_frames, scaled_size, usable_frames, video_conditioning,
};
use super::continuation::{
    AUDIO_CONDITIONING_FRAMES, CONDITIONING_FRAMES, Continuation, HotState, check_envelope, decode,
    fingerprint,
};
use super::denoise::{Conditioning, Stage, StreamLatents};
use super::load::Refine;
use super::schedule::{STAGE2_NOISE_SCALE, stage2_sigmas};
use super::{FRAME_BATCH, LatentGrid, Ltx2Pipeline, to_frames};
use crate::InferenceError;
use crate::scheduler::{FlowMatchEulerScheduler, SchedulerConfig};
use crate::vocoder::to_audio_track;
use crate::yuv;
use candle_core::Tensor;
use fv_core::{
    CancelToken, ContinuationState, GenerateError, GenerationRequest, GenerationResult,
    GenerationSink,
};

/// Mixed into the seed for the stage-2 video noise.
const STAGE2_VIDEO_SALT: i64 = 0x5eed_5702;
/// Mixed into the seed for the stage-2 audio noise.
const STAGE2_AUDIO_SALT: i64 = 0x5eed_5a02;

type Outcome<T> = std::result::Result<T, GenerateError>;

fn invalid(e: InferenceError) -> GenerateError {
    GenerateError::InvalidRequest(e.to_string())
}

fn failed(e: InferenceError) -> GenerateError {
    match e {
        InferenceError::Cancelled => GenerateError::Cancelled,
        e => GenerateError::Failed(e.to_string()),
    }
}

fn cancelled(cancel: &CancelToken) -> Outcome<()> {
    if cancel.is_cancelled() {
        Err(GenerateError::Cancelled)
    } else {
        Ok(())
    }
}

/// The denoised latents of one segment, before decoding ([`Ltx2Pipeline::segment_latents`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SegmentLatents {
    /// Final video tokens `[1, F·H·W, C]` on [`grid`](Self::grid), normalised.
    pub video: Tensor,
    /// Final audio tokens `[1, L, C·M]`, normalised (a continued segment's are longer than
    /// its video: they start with the previous segment's audio).
    pub audio: Tensor,
    /// The output latent grid.
    pub grid: LatentGrid,
    /// With the two-stage preset: what stage 1 made.
    pub stage1: Option<Stage1Latents>,
    /// A continued segment's conditioning tokens at the output size (the previous segment's
    /// last frames, encoded): the first latent frames of [`video`](Self::video).
    pub conditioning: Option<Tensor>,
    /// A continued segment's audio prefix: the first this many audio frames are the previous
    /// segment's last ones.
    pub audio_prefix: usize,
}

/// Stage 1's output in the two-stage preset.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Stage1Latents {
    /// Stage-1 video tokens at half size.
    pub video: Tensor,
    /// Stage-1 audio tokens.
    pub audio: Tensor,
    /// The video tokens after the latent upsampler (before the conditioning and noise).
    pub upsampled: Tensor,
    /// A continued segment's conditioning tokens at stage 1's size.
    pub conditioning: Option<Tensor>,
}

/// What a continued segment takes from the state.
struct CondPlan {
    state: Continuation,
    /// Conditioning frames used (`1 + 8k`, the first ones of the state's).
    frames: usize,
    /// Audio latent frames kept from the state's end.
    audio_prefix: usize,
    /// Where the video starts on the audio's time axis, seconds.
    offset_sec: f32,
    /// Video frames dropped from the output (they repeat the previous segment).
    head_frames: usize,
    /// Audio samples (per channel) dropped from the output.
    head_samples: usize,
}

/// Everything decided before any model runs.
struct Plan {
    fps: f32,
    /// The output grid (the requested size).
    grid: LatentGrid,
    /// Stage 1's size and grid (half the size with the refine).
    stage1: (u32, u32, LatentGrid),
    refine: Option<Refine>,
    audio_frames: usize,
    cond: Option<CondPlan>,
}

impl Ltx2Pipeline {
    /// Decides sizes, schedules and conditioning for `request`; every error is the client's.
    fn plan(&mut self, request: &GenerationRequest) -> crate::Result<Plan> {
        if request.fps == 0 {
            return Err(InferenceError::Input("fps must be positive".into()));
        }
        let fps = request.fps as f32;
        let grid = self.latent_grid(request.width, request.height, request.num_frames)?;
        let stage1 = match self.refine {
            None => (request.width, request.height, grid),
            Some(_) => {
                let (w, h) = (request.width / 2, request.height / 2);
                let g = self.latent_grid(w, h, request.num_frames).map_err(|e| {
                    InferenceError::Input(format!(
                        "the two-stage preset runs stage 1 at half the size \
                             ({w}x{h}), so width and height must be multiples of 64 of at \
                             least 128: {e}"
                    ))
                })?;
                let up = self
                    .upsampler
                    .as_ref()
                    .map(|u| u.output_grid(g.0, g.1, g.2));
                if up != Some(grid) {
                    return Err(InferenceError::Input(format!(
                        "the upsampler makes {up:?} latents from stage 1's {g:?}, the \
                         requested size needs {grid:?}"
                    )));
                }
                (w, h, g)
            }
        };
        self.schedule(request.num_inference_steps, stage1.2)?;
        self.text
            .tokenizer()
            .encode(&request.prompt, self.text.max_length())?;
        let cond = match &request.state {
            None => None,
            Some(s) => Some(self.cond_plan(s, request, fps)?),
        };
        if let Some(c) = &cond {
            // The frames must scale to every stage's size (refused here, before any work).
            scaled_size(c.state.width, c.state.height, stage1.0, stage1.1)?;
            scaled_size(c.state.width, c.state.height, request.width, request.height)?;
        }
        let extra = cond.as_ref().map_or(0, |c| {
            (c.state.audio_frames as usize).saturating_sub(c.frames)
        });
        let audio_frames = self.audio_frames(request.num_frames + extra as u32, fps)?;
        Ok(Plan {
            fps,
            grid,
            stage1,
            refine: self.refine,
            audio_frames,
            cond,
        })
    }

    /// Reads the request's state (from this worker's hot copy when it is the same payload).
    fn cond_plan(
        &mut self,
        state: &ContinuationState,
        request: &GenerationRequest,
        fps: f32,
    ) -> crate::Result<CondPlan> {
        let payload = check_envelope(state)?;
        let fp = fingerprint(payload);
        let cfg = self.audio_vae.config();
        let (channels, mel) = (cfg.latent_channels, cfg.latent_mel_bins());
        let state = match &self.hot {
            Some(h) if h.fingerprint == fp => {
                self.continuation_stats.hot += 1;
                h.state.clone()
            }
            _ => {
                let s = decode(payload, channels, mel, &self.device)?;
                self.continuation_stats.decoded += 1;
                s
            }
        };
        let temporal = self.transformer.config().vae_scale_factors[0];
        let n = request.num_frames as usize;
        let frames = usable_frames(state.frames.len(), n, temporal);
        if frames >= n {
            return Err(InferenceError::Input(format!(
                "a continued segment repeats its first {frames} frames (the previous \
                 segment's last ones), so it needs more than {frames} frames; {n} were asked \
                 for"
            )));
        }
        let audio_prefix = self
            .audio_vae
            .config()
            .latent_frames_for(state.audio_frames as usize, f64::from(fps))?;
        let offset_sec = state
            .offset_sec
            .unwrap_or((state.audio_frames as usize).saturating_sub(frames) as f32 / fps);
        let sr = f64::from(self.audio_sample_rate());
        let head_samples = (f64::from(state.audio_frames) / f64::from(fps) * sr).round() as usize;
        Ok(CondPlan {
            state,
            frames,
            audio_prefix,
            offset_sec,
            head_frames: frames,
            head_samples,
        })
    }

    /// The denoised latents of `request` (stage 1, and the refine when configured), without
    /// decoding them: what [`generate`](fv_core::Generator::generate) decodes. Steps are
    /// reported to `on_step` (1-based, with the total of both stages); `cancel` is checked
    /// before every step. Errors as `generate`'s.
    pub fn segment_latents(
        &mut self,
        request: &GenerationRequest,
        on_step: &mut dyn FnMut(u32, u32),
        cancel: &CancelToken,
    ) -> Outcome<SegmentLatents> {
        let plan = self.plan(request).map_err(invalid)?;
        self.latents(request, &plan, on_step, cancel)
    }

    fn latents(
        &mut self,
        request: &GenerationRequest,
        plan: &Plan,
        on_step: &mut dyn FnMut(u32, u32),
        cancel: &CancelToken,
    ) -> Outcome<SegmentLatents> {
        cancelled(cancel)?;
        let text = self.captions(&request.prompt).map_err(failed)?;
        let total = request.num_inference_steps + plan.refine.map_or(0, |r| r.steps);
        let mut done = 0;
        let mut step = || {
            done += 1;
            on_step(done, total);
        };

        // Stage 1.
        let (w1, h1, g1) = plan.stage1;
        let cond_frames = plan
            .cond
            .as_ref()
            .map(|c| c.state.frames[..c.frames].to_vec());
        let mut cond_tokens = None;
        let video_cond = match (&plan.cond, &cond_frames) {
            (Some(c), Some(frames)) => {
                let pixels =
                    preprocess_frames(frames, c.state.width, c.state.height, w1, h1, &self.device)
                        .map_err(failed)?;
                let (cond, tokens) =
                    video_conditioning(&self.encoder, &pixels, g1, c.state.video_strength, None)
                        .map_err(failed)?;
                cond_tokens = Some(tokens);
                Some(cond)
            }
            _ => None,
        };
        let cached_audio = match &plan.cond {
            Some(c) => match &c.state.audio {
                Some(a) => Some(self.audio_vae.pack_latents(a).map_err(failed)?),
                None => None,
            },
            None => None,
        };
        let audio_cond = match (&plan.cond, &cached_audio) {
            (Some(c), Some(cached)) => Some(
                audio_conditioning(
                    cached,
                    plan.audio_frames,
                    c.audio_prefix,
                    c.state.audio_strength,
                    None,
                )
                .map_err(failed)?,
            ),
            _ => None,
        };
        let offset = plan.cond.as_ref().map_or(0.0, |c| c.offset_sec);
        let vnoise = self.initial_noise(request.seed, g1).map_err(failed)?;
        let anoise = self
            .initial_audio_noise(request.seed, plan.audio_frames)
            .map_err(failed)?;
        let start = |noise: Tensor, cond: &Option<Conditioning>| -> crate::Result<Tensor> {
            match cond {
                Some(c) => c.noised(&noise, 1.0),
                None => Ok(noise),
            }
        };
        let stage = Stage {
            video: StreamLatents {
                tokens: start(vnoise, &video_cond).map_err(failed)?,
                condition: video_cond,
            },
            audio: StreamLatents {
                tokens: start(anoise, &audio_cond).map_err(failed)?,
                condition: audio_cond,
            },
            video_coords: self.video_coords(g1, plan.fps, offset).map_err(failed)?,
            audio_coords: self.audio_coords(plan.audio_frames).map_err(failed)?,
            scheduler: self
                .schedule(request.num_inference_steps, g1)
                .map_err(invalid)?,
            text: &text,
        };
        let (video, audio) = self.denoise(stage, &mut step, cancel).map_err(failed)?;
        let audio_prefix = plan
            .cond
            .as_ref()
            .zip(cached_audio.as_ref())
            .map_or(0, |(c, a)| {
                c.audio_prefix
                    .min(a.dim(1).unwrap_or(0))
                    .min(plan.audio_frames)
            });
        let Some(refine) = plan.refine else {
            return Ok(SegmentLatents {
                video,
                audio,
                grid: plan.grid,
                stage1: None,
                conditioning: cond_tokens,
                audio_prefix,
            });
        };

        // Stage 2: upsample, re-apply the conditioning at full size, re-noise, refine.
        cancelled(cancel)?;
        let up = self.upsample_tokens(&video, g1).map_err(failed)?;
        let s = if refine.add_noise {
            f64::from(STAGE2_NOISE_SCALE)
        } else {
            0.0
        };
        let vnoise = self
            .initial_noise(request.seed ^ STAGE2_VIDEO_SALT, plan.grid)
            .map_err(failed)?;
        let anoise = self
            .initial_audio_noise(request.seed ^ STAGE2_AUDIO_SALT, plan.audio_frames)
            .map_err(failed)?;
        let mut cond_tokens2 = None;
        let video_cond = match (&plan.cond, &cond_frames) {
            (Some(c), Some(frames)) => {
                let pixels = preprocess_frames(
                    frames,
                    c.state.width,
                    c.state.height,
                    request.width,
                    request.height,
                    &self.device,
                )
                .map_err(failed)?;
                let (cond, tokens) = video_conditioning(
                    &self.encoder,
                    &pixels,
                    plan.grid,
                    c.state.video_strength,
                    Some(&up),
                )
                .map_err(failed)?;
                cond_tokens2 = Some(tokens);
                Some(cond)
            }
            _ => None,
        };
        let audio_cond = match (&plan.cond, &cached_audio) {
            (Some(c), Some(cached)) => Some(
                audio_conditioning(
                    cached,
                    plan.audio_frames,
                    c.audio_prefix,
                    c.state.audio_strength,
                    Some(&audio),
                )
                .map_err(failed)?,
            ),
            _ => None,
        };
        let renoise =
            |x: &Tensor, noise: Tensor, cond: &Option<Conditioning>| -> crate::Result<Tensor> {
                match cond {
                    Some(c) => c.noised(&noise, s),
                    None => Ok(((noise * s)? + (x * (1.0 - s))?)?),
                }
            };
        let sigmas = stage2_sigmas(refine.steps).map_err(invalid)?;
        let stage = Stage {
            video: StreamLatents {
                tokens: renoise(&up, vnoise, &video_cond).map_err(failed)?,
                condition: video_cond,
            },
            audio: StreamLatents {
                tokens: renoise(&audio, anoise, &audio_cond).map_err(failed)?,
                condition: audio_cond,
            },
            video_coords: self
                .video_coords(plan.grid, plan.fps, offset)
                .map_err(failed)?,
            audio_coords: self.audio_coords(plan.audio_frames).map_err(failed)?,
            // The distilled refine sigmas, unshifted (FastVideo's refine stage).
            scheduler: FlowMatchEulerScheduler::new(&SchedulerConfig::default(), &sigmas, None)
                .map_err(failed)?,
            text: &text,
        };
        let (video2, audio2) = self.denoise(stage, &mut step, cancel).map_err(failed)?;
        Ok(SegmentLatents {
            video: video2,
            audio: audio2,
            grid: plan.grid,
            stage1: Some(Stage1Latents {
                video,
                audio,
                upsampled: up,
                conditioning: cond_tokens,
            }),
            conditioning: cond_tokens2,
            audio_prefix,
        })
    }

    /// Runs one request; see [`fv_core::Generator::generate`].
    pub(super) fn run(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> Outcome<GenerationResult> {
        // Request-shaped errors are the client's; find them before any work.
        let plan = self.plan(request).map_err(invalid)?;
        let SegmentLatents { video, audio, .. } =
            self.latents(request, &plan, &mut |s, t| sink.step(s, t), cancel)?;

        // Video first: the encoder starts on it while the audio is decoded.
        cancelled(cancel)?;
        let decoded = self
            .decode(&video, plan.grid, request.seed)
            .map_err(failed)?;
        cancelled(cancel)?;
        let frames = to_frames(&decoded, request.width, request.height).map_err(failed)?;
        if frames.len() != request.num_frames as usize {
            return Err(GenerateError::Failed(format!(
                "the VAE decoded {} frames, {} were asked for",
                frames.len(),
                request.num_frames
            )));
        }
        let head = plan.cond.as_ref().map_or(0, |c| c.head_frames);
        // The state's frames: the segment's last ones, as RGB24 (the GPU path's frames are
        // I420, so they come from the decoded video).
        let keep = CONDITIONING_FRAMES.min(frames.len());
        let last_rgb: Vec<Vec<u8>> = if decoded.device().is_cuda() {
            let f = decoded.dim(2).map_err(|e| failed(e.into()))?;
            let tail = decoded
                .narrow(2, f - keep, keep)
                .map_err(|e| failed(e.into()))?;
            yuv::video_to_rgb(&tail).map_err(failed)?
        } else {
            frames[frames.len() - keep..]
                .iter()
                .map(|f| f.rgb().into_owned())
                .collect()
        };
        let mut out = frames.into_iter().skip(head).peekable();
        while out.peek().is_some() {
            sink.frames(out.by_ref().take(FRAME_BATCH).collect());
        }

        cancelled(cancel)?;
        let wave = self.decode_audio(&audio).map_err(failed)?;
        let wave = match plan.cond.as_ref().map(|c| c.head_samples) {
            Some(h) if h > 0 => {
                let n = wave.dim(1).map_err(|e| failed(e.into()))?;
                if h >= n {
                    return Err(GenerateError::Failed(format!(
                        "the audio has {n} samples, {h} repeat the previous segment"
                    )));
                }
                wave.narrow(1, h, n - h).map_err(|e| failed(e.into()))?
            }
            _ => wave,
        };
        let track = to_audio_track(&wave, self.audio_sample_rate()).map_err(failed)?;

        cancelled(cancel)?;
        let state = self
            .make_state(request, &plan, last_rgb, &audio)
            .map_err(failed)?;
        Ok(GenerationResult {
            frames: Vec::new(),
            state: Some(state),
            audio: Some(track),
        })
    }

    /// Stage-1 tokens on `grid` → upsampled tokens on the ×2 grid.
    pub(super) fn upsample_tokens(
        &self,
        tokens: &Tensor,
        grid: LatentGrid,
    ) -> crate::Result<Tensor> {
        let up = self
            .upsampler
            .as_ref()
            .ok_or_else(|| InferenceError::Config("no latent upsampler loaded".into()))?;
        let z = super::condition::unpack(tokens, grid)?;
        super::condition::pack(&up.upsample(&z)?)
    }

    /// The `ltx2.v1` state after this segment (kept decoded in this worker too).
    fn make_state(
        &mut self,
        request: &GenerationRequest,
        plan: &Plan,
        frames: Vec<Vec<u8>>,
        audio: &Tensor,
    ) -> crate::Result<ContinuationState> {
        let audio = self.audio_vae.unpack_tokens(audio)?;
        let keep = frames.len();
        // Video frames' worth of audio the next segment starts from: 49, or all this
        // segment's audio covers when that is less (its video plus a continued segment's
        // prefix), so the prefix ends where the next segment's new frames begin.
        let covered = request.num_frames as usize
            + plan.cond.as_ref().map_or(0, |c| {
                (c.state.audio_frames as usize).saturating_sub(c.frames)
            });
        let audio_frames = AUDIO_CONDITIONING_FRAMES.min(covered as u32);
        let state = Continuation {
            segment_index: u64::from(request.segment_idx),
            frames,
            width: request.width,
            height: request.height,
            video_strength: 1.0,
            audio: Some(audio),
            audio_frames,
            audio_strength: 1.0,
            offset_sec: Some((audio_frames as usize).saturating_sub(keep) as f32 / plan.fps),
        };
        let metadata = serde_json::json!({
            "generator": "fv-inference",
            "model": "ltx2",
            "width": request.width,
            "height": request.height,
            "fps": request.fps,
            "num_frames": request.num_frames,
            "two_stage": plan.refine.is_some(),
        });
        let payload = state.to_payload(metadata, self.audio_sample_rate())?;
        self.hot = Some(HotState {
            fingerprint: fingerprint(&payload),
            state,
        });
        Ok(ContinuationState {
            kind: super::continuation::LTX2_STATE_KIND.into(),
            payload,
        })
    }
}
