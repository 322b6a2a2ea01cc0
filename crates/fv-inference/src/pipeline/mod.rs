//! The LTX-2 text-to-video-and-audio pipeline behind [`fv_core::Generator`]:
//! prompt → Gemma-3 tokens → Gemma-3 hidden states → text connectors → joint denoising of
//! video and audio latents (seeded noise, the distilled or shifted Euler schedule) → video
//! VAE decode → frames, and audio VAE decode → vocoder → 24 kHz stereo PCM.
//!
//! The text encoder runs once per distinct prompt (a bounded cache shared by the clones of a
//! pipeline, [`text_cache`]). Progress: `sink.step` after every denoising step; the cancel
//! token is checked before every step and before each decode. Frames reach the sink as soon
//! as the video is decoded, 8 at a time, before the audio is decoded, so encoding overlaps
//! the audio decode. Classifier-free guidance is not run (the distilled model runs without
//! it; `guidance_scale` and `negative_prompt` are ignored), nor image conditioning
//! (`image_path` is ignored).

pub mod condition;
pub mod continuation;
mod denoise;
mod load;
mod run;
mod schedule;
pub mod text_cache;

pub use continuation::{Continuation, LTX2_STATE_KIND};
pub use denoise::{Conditioning, Stage, StreamLatents};
pub use load::{DEFAULT_TEXT_LENGTH, PipelineOptions, Refine};
pub use run::{SegmentLatents, Stage1Latents};
pub use schedule::{STAGE2_NOISE_SCALE, STAGE2_SIGMAS, sigmas_for, stage2_sigmas};
pub use text_cache::TextCacheStats;

use crate::audio_vae::{AudioVaeDecoder, MAX_AUDIO_LATENT_FRAMES};
use crate::rng::SplitMix64;
use crate::rope::{AudioCoords, VideoCoords};
use crate::scheduler::{FlowMatchEulerScheduler, SchedulerConfig};
use crate::text::{CaptionEmbeddings, Ltx2TextEncoder};
use crate::transformer::Ltx2VideoTransformer;
use crate::upsampler::LatentUpsampler;
use crate::vae::VideoVaeDecoder;
use crate::vae_encoder::VideoVaeEncoder;
use crate::vocoder::Vocoder;
use crate::yuv;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};
use fv_core::{
    CancelToken, Frame, GenerateError, GenerationRequest, GenerationResult, GenerationSink,
    Generator,
};
use std::path::Path;
use text_cache::TextCache;

/// Most denoising steps one request may ask for.
pub const MAX_STEPS: u32 = 100;
/// Most latent tokens (frames × rows × columns) one request may ask for; the released
/// stage-1 shape (121 frames at 544×960) is 16 × 17 × 30 = 8160.
pub const MAX_LATENT_TOKENS: usize = 65_536;
/// Frames handed to the sink at a time (the encoder emits a fragment per batch, so the
/// client gets the first bytes before the whole segment is muxed).
pub const FRAME_BATCH: usize = 8;

/// Mixed into the request seed for the decode noise, so it is not the initial noise again.
const DECODE_NOISE_SALT: i64 = 0x5eed_dec0;
/// Mixed into the request seed for the audio noise.
const AUDIO_NOISE_SALT: i64 = 0x5eed_a0d1;

/// How a worker's continued segments got their `ltx2.v1` state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContinuationStats {
    /// The state this worker made for its previous segment, still decoded in memory.
    pub hot: u64,
    /// A state decoded from its payload (PNG frames, safetensors audio): hydrated from a
    /// snapshot, or made by another worker.
    pub decoded: u64,
}

/// A latent grid: latent frames × rows × columns (one transformer token each).
pub type LatentGrid = (usize, usize, usize);

/// The LTX-2 pipeline (see the module docs). Cloning shares the weights (candle tensors are
/// reference counted) and the caption cache, so one load can serve several workers.
#[derive(Debug, Clone)]
pub struct Ltx2Pipeline {
    transformer: Ltx2VideoTransformer,
    vae: VideoVaeDecoder,
    encoder: VideoVaeEncoder,
    audio_vae: AudioVaeDecoder,
    vocoder: Vocoder,
    text: Ltx2TextEncoder,
    text_cache: TextCache,
    upsampler: Option<LatentUpsampler>,
    /// The two-stage preset's refine, if configured.
    refine: Option<Refine>,
    scheduler: SchedulerConfig,
    /// The last state this worker made, decoded (see [`continuation`]); not shared by clones'
    /// later segments, each worker keeps its own.
    hot: Option<continuation::HotState>,
    continuation_stats: ContinuationStats,
    /// Noise mixed into the latents before a timestep-conditioned VAE decodes them
    /// (diffusers' `decode_noise_scale`; 0 for an unconditioned VAE).
    decode_noise_scale: f32,
    device: Device,
}

impl Ltx2Pipeline {
    /// Loads a model from `path` in f32 with the default [`PipelineOptions`]: a diffusers
    /// pipeline folder (`text_encoder/`, `tokenizer/`, `connectors/`, `transformer/`,
    /// `vae/`, `audio_vae/`, `vocoder/`, optional `scheduler/` and `latent_upsampler/`) or
    /// one Lightricks checkpoint file with a Gemma-3 folder `gemma/` next to it. A scheduler
    /// config with dynamic shifting shifts the sigmas by the token count as diffusers'
    /// pipeline does; without one the distilled sigmas run unshifted.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_with_options(path, device, &PipelineOptions::new())
    }

    /// [`load`](Self::load) with the weights in `dtype` (`F32`, `BF16` or `F16`): the
    /// models compute in that dtype, norms, RoPE tables, timestep features and the scheduler
    /// in f32, as the reference pipeline does.
    pub fn load_with(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_with_options(path, device, &PipelineOptions::new().with_dtype(dtype))
    }

    /// [`load`](Self::load) with every option (text encoder device and dtype, Gemma folder,
    /// upsampler, text length, cache size).
    pub fn load_with_options(path: &Path, device: &Device, opts: &PipelineOptions) -> Result<Self> {
        let c = load::load(path, device, opts)?;
        // Weights were uploaded and cast on this thread's stream; the pool's worker threads
        // use their own, so finish the uploads before anyone reads them.
        device.synchronize()?;
        if let Some(d) = &opts.text_encoder_device {
            d.synchronize()?;
        }
        Ok(Self {
            transformer: c.transformer,
            vae: c.vae,
            encoder: c.encoder,
            audio_vae: c.audio_vae,
            vocoder: c.vocoder,
            text: c.text,
            text_cache: TextCache::new(opts.text_cache_prompts),
            upsampler: c.upsampler,
            refine: opts.refine,
            scheduler: c.scheduler,
            hot: None,
            continuation_stats: ContinuationStats::default(),
            decode_noise_scale: 0.0,
            device: device.clone(),
        })
    }

    /// For a timestep-conditioned VAE (FastVideo's setting): decode at `timestep` after
    /// mixing `noise_scale` of seeded noise into the latents, `(1 − s)·x + s·noise`, as
    /// diffusers' pipeline does (`decode_timestep`, `decode_noise_scale`; `None` means the
    /// same as the timestep). Both default to 0 and must lie in [0, 1]. An unconditioned VAE
    /// (the LTX-2.0 release) ignores both.
    pub fn with_decode_timestep(mut self, timestep: f32, noise_scale: Option<f32>) -> Result<Self> {
        let noise_scale = noise_scale.unwrap_or(timestep);
        for (name, v) in [
            ("decode timestep", timestep),
            ("decode noise scale", noise_scale),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(InferenceError::Input(format!(
                    "{name} must be in [0, 1], got {v}"
                )));
            }
        }
        if self.vae.config().timestep_conditioning {
            self.vae = self.vae.with_decode_timestep(timestep)?;
            self.decode_noise_scale = noise_scale;
        }
        Ok(self)
    }

    /// The dtype the transformer's weights are held and computed in.
    pub fn dtype(&self) -> DType {
        self.transformer.dtype()
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The joint audio-video transformer.
    pub fn transformer(&self) -> &Ltx2VideoTransformer {
        &self.transformer
    }

    /// The text encoder (tokenizer, Gemma-3, connectors).
    pub fn text_encoder(&self) -> &Ltx2TextEncoder {
        &self.text
    }

    /// The video VAE encoder (continuation conditioning).
    pub fn vae_encoder(&self) -> &VideoVaeEncoder {
        &self.encoder
    }

    /// The latent upsampler, when one was loaded (the two-stage preset).
    pub fn upsampler(&self) -> Option<&LatentUpsampler> {
        self.upsampler.as_ref()
    }

    /// The scheduler config in use (from `scheduler/scheduler_config.json`, else the
    /// distilled default).
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler
    }

    /// How this worker's continued segments got their state so far.
    pub fn continuation_stats(&self) -> ContinuationStats {
        self.continuation_stats
    }

    /// Caption-cache hits and misses so far (shared by the clones).
    pub fn text_cache_stats(&self) -> TextCacheStats {
        self.text_cache.stats()
    }

    /// The latent grid (frames, rows, columns) for a `width × height` video of `num_frames`
    /// frames, or why that size cannot be made: sides must be multiples of the spatial
    /// compression with at least 2 latents each (the decoder reflect-pads), frame counts
    /// `8k + 1` for temporal compression 8.
    pub fn latent_grid(&self, width: u32, height: u32, num_frames: u32) -> Result<LatentGrid> {
        let [ft, fh, fw] = self.transformer.config().vae_scale_factors;
        let (w, h, n) = (width as usize, height as usize, num_frames as usize);
        if w == 0 || h == 0 || !w.is_multiple_of(fw) || !h.is_multiple_of(fh) {
            return Err(InferenceError::Input(format!(
                "width and height must be positive multiples of {fw} and {fh} (the VAE's \
                 spatial compression), got {width}x{height}"
            )));
        }
        if w / fw < 2 || h / fh < 2 {
            return Err(InferenceError::Input(format!(
                "video must be at least {}x{} (2×2 latents), got {width}x{height}",
                2 * fw,
                2 * fh
            )));
        }
        if n == 0 || !(n - 1).is_multiple_of(ft) {
            return Err(InferenceError::Input(format!(
                "num_frames must be {ft}·k + 1 (the VAE's temporal compression), e.g. {}, \
                 got {num_frames}",
                ft + 1
            )));
        }
        let grid = ((n - 1) / ft + 1, h / fh, w / fw);
        let tokens = grid.0 * grid.1 * grid.2;
        if tokens > MAX_LATENT_TOKENS {
            return Err(InferenceError::Input(format!(
                "{width}x{height}x{num_frames} needs {tokens} latent tokens, at most \
                 {MAX_LATENT_TOKENS} are allowed"
            )));
        }
        Ok(grid)
    }

    /// Audio latent frames for `num_frames` video frames at `fps` (`round(n / fps · 25)`,
    /// 121 frames at 24 fps → 126), checked against what one decode takes.
    pub fn audio_frames(&self, num_frames: u32, fps: f32) -> Result<usize> {
        let l = self
            .audio_vae
            .config()
            .latent_frames_for(num_frames as usize, f64::from(fps))?;
        if l == 0 || l > MAX_AUDIO_LATENT_FRAMES {
            return Err(InferenceError::Input(format!(
                "{num_frames} frames at {fps} fps make {l} audio latent frames; 1 to \
                 {MAX_AUDIO_LATENT_FRAMES} are allowed"
            )));
        }
        Ok(l)
    }

    /// The schedule for `sigmas` on `grid`, shifted by the token count when the scheduler
    /// config asks for dynamic shifting.
    pub fn schedule_sigmas(
        &self,
        sigmas: &[f32],
        grid: LatentGrid,
    ) -> Result<FlowMatchEulerScheduler> {
        let tokens = grid.0 * grid.1 * grid.2;
        let mu = self
            .scheduler
            .use_dynamic_shifting
            .then(|| self.scheduler.mu_for_seq_len(tokens));
        FlowMatchEulerScheduler::new(&self.scheduler, sigmas, mu)
    }

    /// The stage-1 schedule for `steps` steps on `grid`: [`sigmas_for`]`(steps)`, shifted by
    /// the token count when the scheduler config asks for dynamic shifting.
    pub fn schedule(&self, steps: u32, grid: LatentGrid) -> Result<FlowMatchEulerScheduler> {
        if steps == 0 || steps > MAX_STEPS {
            return Err(InferenceError::Input(format!(
                "num_inference_steps must be 1..={MAX_STEPS}, got {steps}"
            )));
        }
        self.schedule_sigmas(&sigmas_for(steps), grid)
    }

    /// The caption embeddings of `prompt` on the model's device and dtype, from the cache
    /// or from the text encoder (then cached).
    pub fn captions(&self, prompt: &str) -> Result<CaptionEmbeddings> {
        let ids = self
            .text
            .tokenizer()
            .encode(prompt, self.text.max_length())?;
        self.text_cache.get_or_encode(ids, || {
            let c = self.text.encode(&[prompt])?;
            let dtype = self.dtype();
            let to =
                |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(&self.device)?.to_dtype(dtype)?) };
            Ok(CaptionEmbeddings {
                video: to(&c.video)?,
                audio: to(&c.audio)?,
                mask: c.mask.to_device(&self.device)?,
            })
        })
    }

    /// Standard-normal noise drawn from `seed` in `[C, F, H, W]` order (like diffusers'
    /// `prepare_latents`), packed to tokens `[1, F·H·W, C]`. The generator is our own
    /// (SplitMix64 + Box–Muller), so a seed gives the same video on every machine.
    pub fn initial_noise(&self, seed: i64, grid: LatentGrid) -> Result<Tensor> {
        let (f, h, w) = grid;
        let c = self.transformer.config().in_channels;
        Ok(seeded_normal(seed, c * f * h * w, &self.device)?
            .reshape((1, c, f, h, w))?
            .permute((0, 2, 3, 4, 1))?
            .reshape((1, f * h * w, c))?
            .contiguous()?)
    }

    /// Standard-normal audio noise drawn from `seed` (salted, so it is not the video's) in
    /// `[C, L, M]` order (diffusers' `prepare_audio_latents`), packed to `[1, L, C·M]`.
    pub fn initial_audio_noise(&self, seed: i64, frames: usize) -> Result<Tensor> {
        let cfg = self.audio_vae.config();
        let (c, m) = (cfg.latent_channels, cfg.latent_mel_bins());
        let z = seeded_normal(seed ^ AUDIO_NOISE_SALT, c * frames * m, &self.device)?
            .reshape((1, c, frames, m))?;
        self.audio_vae.pack_latents(&z)
    }

    /// Runs one denoising stage (see [`Stage`]), calling `on_step()` after every step and
    /// checking `cancel` before each. Returns the final (video, audio) tokens, f32.
    pub fn denoise(
        &self,
        stage: Stage<'_>,
        on_step: &mut dyn FnMut(),
        cancel: &CancelToken,
    ) -> Result<(Tensor, Tensor)> {
        denoise::denoise(&self.transformer, stage, on_step, cancel)
    }

    /// Token positions of a `grid` at `fps`, the time axis shifted by `offset_sec` (a
    /// continuation's `video_position_offset_sec`).
    pub fn video_coords(&self, grid: LatentGrid, fps: f32, offset_sec: f32) -> Result<VideoCoords> {
        let mut coords =
            VideoCoords::for_latent_grid(self.transformer.config(), grid.0, grid.1, grid.2, fps)?;
        if offset_sec != 0.0 {
            for b in &mut coords.coords[0] {
                b[0] += offset_sec;
                b[1] += offset_sec;
            }
        }
        Ok(coords)
    }

    /// Positions of `frames` audio latent frames.
    pub fn audio_coords(&self, frames: usize) -> Result<AudioCoords> {
        AudioCoords::for_latent_frames(self.transformer.config(), frames, 0)
    }

    /// Decodes latent tokens on `grid` into video `[1, 3, frames, height, width]`, nominally
    /// in [-1, 1] (not clamped). A timestep-conditioned VAE first gets `decode_noise_scale`
    /// of noise drawn from `seed`.
    pub fn decode(&self, latents: &Tensor, grid: LatentGrid, seed: i64) -> Result<Tensor> {
        let latents = if self.decode_noise_scale > 0.0 {
            let s = f64::from(self.decode_noise_scale);
            let noise = self.initial_noise(seed ^ DECODE_NOISE_SALT, grid)?;
            ((latents * (1.0 - s))? + (noise * s)?)?
        } else {
            latents.clone()
        };
        self.vae.decode_tokens(&latents, grid.0, grid.1, grid.2)
    }

    /// Decodes audio tokens `[1, L, C·M]` (normalised, as the transformer leaves them) into
    /// the vocoder's waveform `[channels, samples]` (24 kHz stereo for the release), f32.
    pub fn decode_audio(&self, tokens: &Tensor) -> Result<Tensor> {
        let mel = self.audio_vae.decode_tokens(tokens)?;
        Ok(self.vocoder.forward(&mel)?.get(0)?)
    }

    /// The vocoder's output sample rate.
    pub fn audio_sample_rate(&self) -> u32 {
        self.vocoder.sample_rate()
    }
}

impl Generator for Ltx2Pipeline {
    fn generate(
        &mut self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> std::result::Result<GenerationResult, GenerateError> {
        self.run(request, sink, cancel)
    }

    fn name(&self) -> &str {
        "ltx2"
    }
}

/// `n` standard normals from `seed` (its bits, so negative seeds are distinct seeds too).
fn seeded_normal(seed: i64, n: usize, device: &Device) -> Result<Tensor> {
    let mut rng = SplitMix64::new(u64::from_ne_bytes(seed.to_ne_bytes()));
    let values: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    Ok(Tensor::from_vec(values, n, device)?)
}

/// `[1, 3, F, H, W]` in [-1, 1] → frames. On a GPU our fused kernel converts to I420 there,
/// so only 1.5 bytes per pixel cross to the host and the encoder skips its RGB → YUV pass
/// (bit-identical to it); on the CPU RGB24 frames are cheaper (openh264's SIMD conversion
/// beats a separate pass).
fn to_frames(video: &Tensor, width: u32, height: u32) -> Result<Vec<Frame>> {
    let (_, c, _, h, w) = video.dims5()?;
    if c != 3 || h != height as usize || w != width as usize {
        return Err(InferenceError::Input(format!(
            "decoded video is {:?}, expected [1, 3, F, {height}, {width}]",
            video.dims()
        )));
    }
    let frame_error = |e: fv_core::FrameError| InferenceError::Input(e.to_string());
    if video.device().is_cuda() {
        yuv::video_to_i420_auto(video)?
            .into_iter()
            .map(|planes| Frame::from_i420(width, height, planes).map_err(frame_error))
            .collect()
    } else {
        yuv::video_to_rgb(video)?
            .into_iter()
            .map(|rgb| Frame::from_rgb(width, height, rgb).map_err(frame_error))
            .collect()
    }
}
