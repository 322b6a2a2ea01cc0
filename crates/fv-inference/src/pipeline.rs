//! The LTX-2 text-to-video pipeline (stage 1, video only) behind [`fv_core::Generator`]:
//! seeded noise in the latent grid → N Euler steps of the transformer → VAE decode → u8 RGB
//! frames.
//!
//! Not here yet: the Gemma-3 text encoder. The text embeddings are either a precomputed
//! tensor file next to the weights ([`TEXT_EMBEDDINGS_FILE`], used for every prompt) or, when
//! there is none, a deterministic pseudo-embedding hashed from the prompt's words. Neither
//! follows the prompt's meaning; with real weights the video follows the stored embedding.
//! Also not here: classifier-free guidance (the distilled model runs without it, so
//! `guidance_scale` is ignored), image conditioning (`image_path` is ignored) and
//! continuation (every segment starts from fresh noise; no state is returned).

use crate::config::TransformerConfig;
use crate::rng::SplitMix64;
use crate::rope::VideoCoords;
use crate::scheduler::{DISTILLED_SIGMAS, FlowMatchEulerScheduler, SchedulerConfig};
use crate::transformer::{Ltx2VideoTransformer, Timesteps};
use crate::vae::{VaeConfig, VideoVaeDecoder};
use crate::weights::Weights;
use crate::yuv;
use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};
use fv_core::{
    CancelToken, Frame, GenerateError, GenerationRequest, GenerationResult, GenerationSink,
    Generator,
};
use std::path::{Path, PathBuf};

/// File (next to the component folders, or next to a single checkpoint file) holding
/// precomputed caption embeddings: `prompt_embeds` `[S, caption_channels]` (or `[1, S, C]`)
/// and optionally `prompt_attention_mask` `[S]` (or `[1, S]`), 1 for real tokens.
pub const TEXT_EMBEDDINGS_FILE: &str = "text_embeddings.safetensors";
/// Most denoising steps one request may ask for.
pub const MAX_STEPS: u32 = 100;
/// Most latent tokens (frames × rows × columns) one request may ask for; the released
/// stage-1 shape (121 frames at 544×960) is 16 × 17 × 30 = 8160.
pub const MAX_LATENT_TOKENS: usize = 65_536;
/// Most pseudo-embedding tokens made from a prompt (one per word, beyond that ignored).
pub const MAX_PROMPT_TOKENS: usize = 128;
/// Frames handed to the sink at a time (the encoder emits a fragment per batch, so the
/// client gets the first bytes before the whole segment is muxed).
pub const FRAME_BATCH: usize = 8;
/// Spread of the hashed pseudo-embedding values.
const PSEUDO_EMBEDDING_STD: f32 = 0.5;

/// Caption embeddings fed to every request.
#[derive(Debug, Clone)]
struct TextEmbeddings {
    /// `[1, S, caption_channels]`.
    embeds: Tensor,
    /// `[1, S]`, or `None` when every token is real.
    mask: Option<Tensor>,
}

/// The LTX-2 stage-1 pipeline. Cloning shares the weights (candle tensors are reference
/// counted), so one load can serve several workers.
#[derive(Debug, Clone)]
pub struct Ltx2Pipeline {
    transformer: Ltx2VideoTransformer,
    vae: VideoVaeDecoder,
    text: Option<TextEmbeddings>,
    scheduler: SchedulerConfig,
    /// Noise mixed into the latents before a timestep-conditioned VAE decodes them
    /// (diffusers' `decode_noise_scale`; 0 for an unconditioned VAE).
    decode_noise_scale: f32,
    device: Device,
}

/// Mixed into the request seed for the decode noise, so it is not the initial noise again.
const DECODE_NOISE_SALT: i64 = 0x5eed_dec0;

/// A latent grid: latent frames × rows × columns (one transformer token each).
pub type LatentGrid = (usize, usize, usize);

/// What one denoising run needs besides the starting latents.
#[derive(Debug, Clone, Copy)]
pub struct DenoiseJob<'a> {
    /// The latent grid the tokens lie on.
    pub grid: LatentGrid,
    /// Frame rate, which sets the RoPE time axis.
    pub fps: f32,
    /// Denoising steps (1..=[`MAX_STEPS`]).
    pub steps: u32,
    /// The prompt (used only when no stored embeddings were loaded).
    pub prompt: &'a str,
}

/// safetensors files directly in `dir`, sorted (shards load in order).
pub(crate) fn safetensors_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", dir.display())))?
            .path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(InferenceError::Config(format!(
            "no .safetensors file in {}",
            dir.display()
        )));
    }
    Ok(files)
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", path.display())))
}

impl Ltx2Pipeline {
    /// Loads a model from `path`:
    /// - a directory in diffusers' layout: `transformer/config.json` + safetensors shards and
    ///   `vae/config.json` + safetensors (diffusers or single-file tensor names), and
    ///   optionally `scheduler/scheduler_config.json` (a config with dynamic shifting shifts
    ///   the sigmas by the token count, as diffusers' pipeline does; without one the
    ///   distilled sigmas are used unshifted);
    /// - or one Lightricks checkpoint file (`*.safetensors` with `model.diffusion_model.` and
    ///   `vae.` tensors), read with the released configs ([`TransformerConfig::ltx2_19b`],
    ///   [`VaeConfig::ltx2`]).
    ///
    /// In both cases an optional [`TEXT_EMBEDDINGS_FILE`] next to the weights is loaded.
    /// Weights are held in f32; see [`load_with`](Self::load_with) for bf16/f16.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_with(path, device, DType::F32)
    }

    /// [`load`](Self::load) with the weights converted to `dtype` (`F32`, `BF16` or `F16`).
    /// The transformer and VAE compute in that dtype (norms, RoPE tables and the scheduler
    /// in f32, as the reference does); bf16 is what the released model runs in on a GPU.
    pub fn load_with(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(InferenceError::Config(format!(
                "model dtype must be f32, bf16 or f16, got {dtype:?}"
            )));
        }
        let (tcfg, vcfg, tfiles, vfiles, base, scheduler) = if path.is_file() {
            let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (
                TransformerConfig::ltx2_19b(),
                VaeConfig::ltx2(),
                vec![path.to_path_buf()],
                vec![path.to_path_buf()],
                base,
                SchedulerConfig::default(),
            )
        } else if path.is_dir() {
            let tdir = path.join("transformer");
            let vdir = path.join("vae");
            let sched = path.join("scheduler").join("scheduler_config.json");
            let scheduler = if sched.is_file() {
                let cfg: SchedulerConfig = serde_json::from_str(&read_text(&sched)?)
                    .map_err(|e| InferenceError::Config(format!("{}: {e}", sched.display())))?;
                cfg.validate()?;
                cfg
            } else {
                SchedulerConfig::default()
            };
            (
                TransformerConfig::from_json(&read_text(&tdir.join("config.json"))?)?,
                VaeConfig::from_json(&read_text(&vdir.join("config.json"))?)?,
                safetensors_in(&tdir)?,
                safetensors_in(&vdir)?,
                path.to_path_buf(),
                scheduler,
            )
        } else {
            return Err(InferenceError::Config(format!(
                "model path {} is neither a directory nor a file",
                path.display()
            )));
        };
        let tpaths: Vec<&Path> = tfiles.iter().map(PathBuf::as_path).collect();
        let vpaths: Vec<&Path> = vfiles.iter().map(PathBuf::as_path).collect();
        let (tw, vw) = if tfiles == vfiles {
            Weights::load_transformer_and_vae(&tpaths, dtype, device)?
        } else {
            (
                Weights::load_transformer(&tpaths, dtype, device)?,
                Weights::load_vae(&vpaths, dtype, device)?,
            )
        };
        let transformer = Ltx2VideoTransformer::new(&tcfg, &tw, device)?;
        let vae = VideoVaeDecoder::new(&vcfg, &vw)?;
        let text_path = base.join(TEXT_EMBEDDINGS_FILE);
        let text = if text_path.is_file() {
            Some(load_text_embeddings(&text_path, &tcfg, device)?)
        } else {
            None
        };
        // Weights were uploaded and cast on this thread's stream; the pool's worker threads
        // use their own, so finish the uploads before anyone reads them.
        device.synchronize()?;
        Self::from_parts(transformer, vae, text, scheduler, device)
    }

    fn from_parts(
        transformer: Ltx2VideoTransformer,
        vae: VideoVaeDecoder,
        text: Option<TextEmbeddings>,
        scheduler: SchedulerConfig,
        device: &Device,
    ) -> Result<Self> {
        let tcfg = transformer.config();
        let vcfg = vae.config();
        if tcfg.in_channels != vcfg.latent_channels || tcfg.out_channels() != vcfg.latent_channels {
            return Err(InferenceError::Config(format!(
                "transformer channels ({} in, {} out) differ from the VAE's {} latent channels",
                tcfg.in_channels,
                tcfg.out_channels(),
                vcfg.latent_channels
            )));
        }
        if tcfg.patch_size != 1 || tcfg.patch_size_t != 1 {
            return Err(InferenceError::Config(
                "the pipeline packs one token per latent (patch sizes 1, as released)".into(),
            ));
        }
        let vae_factors = vcfg.compression()?;
        if vae_factors != tcfg.vae_scale_factors {
            return Err(InferenceError::Config(format!(
                "the VAE compresses (time, height, width) by {vae_factors:?}, the transformer's \
                 vae_scale_factors say {:?}",
                tcfg.vae_scale_factors
            )));
        }
        Ok(Self {
            transformer,
            vae,
            text,
            scheduler,
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

    /// The dtype the weights are held and computed in.
    pub fn dtype(&self) -> DType {
        self.transformer.dtype()
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether caption embeddings came from [`TEXT_EMBEDDINGS_FILE`] (otherwise prompts are
    /// hashed into pseudo-embeddings).
    pub fn has_text_embeddings(&self) -> bool {
        self.text.is_some()
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

    /// The caption embeddings for `prompt`: the stored tensor if there is one, else the
    /// deterministic pseudo-embedding.
    fn text_for(&self, prompt: &str) -> Result<TextEmbeddings> {
        if let Some(t) = &self.text {
            return Ok(t.clone());
        }
        let channels = self.transformer.config().caption_channels;
        let mut words: Vec<&str> = prompt.split_whitespace().take(MAX_PROMPT_TOKENS).collect();
        if words.is_empty() {
            // An empty prompt still needs one key for the cross-attention.
            words.push("");
        }
        let mut values = Vec::with_capacity(words.len() * channels);
        for word in &words {
            let mut rng = SplitMix64::new(fnv1a(word.as_bytes()));
            values.extend((0..channels).map(|_| rng.normal() * PSEUDO_EMBEDDING_STD));
        }
        Ok(TextEmbeddings {
            embeds: Tensor::from_vec(values, (1, words.len(), channels), &self.device)?,
            mask: None,
        })
    }

    /// The scheduler config in use (from `scheduler/scheduler_config.json`, else the
    /// distilled default).
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler
    }

    /// The schedule for `steps` steps on `grid`: [`sigmas_for`]`(steps)`, shifted by the
    /// token count when the scheduler config asks for dynamic shifting.
    pub fn schedule(&self, steps: u32, grid: LatentGrid) -> Result<FlowMatchEulerScheduler> {
        if steps == 0 || steps > MAX_STEPS {
            return Err(InferenceError::Input(format!(
                "num_inference_steps must be 1..={MAX_STEPS}, got {steps}"
            )));
        }
        let tokens = grid.0 * grid.1 * grid.2;
        let mu = self
            .scheduler
            .use_dynamic_shifting
            .then(|| self.scheduler.mu_for_seq_len(tokens));
        FlowMatchEulerScheduler::new(&self.scheduler, &sigmas_for(steps), mu)
    }

    /// Standard-normal noise drawn from `seed` in `[C, F, H, W]` order (like diffusers'
    /// `prepare_latents`), packed to tokens `[1, F·H·W, C]`. The generator is our own
    /// (SplitMix64 + Box–Muller), so a seed gives the same video on every machine.
    pub fn initial_noise(&self, seed: i64, grid: LatentGrid) -> Result<Tensor> {
        let (f, h, w) = grid;
        let c = self.transformer.config().in_channels;
        // The seed's bits, not its value: negative seeds are distinct seeds too.
        let mut rng = SplitMix64::new(u64::from_ne_bytes(seed.to_ne_bytes()));
        let values: Vec<f32> = (0..c * f * h * w).map(|_| rng.normal()).collect();
        Ok(Tensor::from_vec(values, (1, c, f, h, w), &self.device)?
            .permute((0, 2, 3, 4, 1))?
            .reshape((1, f * h * w, c))?
            .contiguous()?)
    }

    /// Runs the denoising loop from `latents` (`[1, F·H·W, C]` tokens on `job.grid`) with
    /// the caption embeddings for `job.prompt`, calling `on_step(step, total)` after every step
    /// (1-based) and checking `cancel` before each. Returns the final latent tokens.
    pub fn denoise(
        &self,
        latents: Tensor,
        job: &DenoiseJob<'_>,
        on_step: &mut dyn FnMut(u32, u32),
        cancel: &CancelToken,
    ) -> Result<Tensor> {
        let DenoiseJob {
            grid,
            fps,
            steps,
            prompt,
        } = *job;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(InferenceError::Input(format!(
                "fps must be positive, got {fps}"
            )));
        }
        let scheduler = self.schedule(steps, grid)?;
        let coords =
            VideoCoords::for_latent_grid(self.transformer.config(), grid.0, grid.1, grid.2, fps)?;
        // Built once per run: the tables depend only on the grid and fps.
        let rope = self.transformer.rope_tables(&coords)?;
        let text = self.text_for(prompt)?;
        let mut x = latents;
        for (i, &t) in scheduler.timesteps().iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(InferenceError::Cancelled);
            }
            let v = self.transformer.forward_with_rope(
                &x,
                &Timesteps::PerSample(vec![t]),
                &text.embeds,
                text.mask.as_ref(),
                &rope,
            )?;
            x = scheduler.step(i, &x, &v)?;
            on_step(i as u32 + 1, steps);
        }
        Ok(x)
    }

    /// Decodes latent tokens on `grid` into video `[1, 3, frames, height, width]`, nominally
    /// in [-1, 1] (not clamped).
    pub fn decode(&self, latents: &Tensor, grid: LatentGrid) -> Result<Tensor> {
        self.vae.decode_tokens(latents, grid.0, grid.1, grid.2)
    }

    /// Runs one request; see [`Generator::generate`].
    fn run(
        &self,
        request: &GenerationRequest,
        sink: &mut dyn GenerationSink,
        cancel: &CancelToken,
    ) -> std::result::Result<GenerationResult, GenerateError> {
        let invalid = |e: InferenceError| GenerateError::InvalidRequest(e.to_string());
        let failed = |e: InferenceError| match e {
            InferenceError::Cancelled => GenerateError::Cancelled,
            e => GenerateError::Failed(e.to_string()),
        };
        let grid = self
            .latent_grid(request.width, request.height, request.num_frames)
            .map_err(invalid)?;
        // Request-shaped errors are the client's; check them before any work.
        self.schedule(request.num_inference_steps, grid)
            .map_err(invalid)?;
        if request.fps == 0 {
            return Err(GenerateError::InvalidRequest("fps must be positive".into()));
        }
        let noise = self.initial_noise(request.seed, grid).map_err(failed)?;
        let latents = self
            .denoise(
                noise,
                &DenoiseJob {
                    grid,
                    fps: request.fps as f32,
                    steps: request.num_inference_steps,
                    prompt: &request.prompt,
                },
                &mut |step, total| sink.step(step, total),
                cancel,
            )
            .map_err(failed)?;
        if cancel.is_cancelled() {
            return Err(GenerateError::Cancelled);
        }
        let latents = if self.decode_noise_scale > 0.0 {
            let s = f64::from(self.decode_noise_scale);
            let noise = self
                .initial_noise(request.seed ^ DECODE_NOISE_SALT, grid)
                .map_err(failed)?;
            ((latents * (1.0 - s)).and_then(|x| x + (noise * s)?)).map_err(|e| failed(e.into()))?
        } else {
            latents
        };
        let video = self.decode(&latents, grid).map_err(failed)?;
        // The decode takes a while at real sizes: a client gone meanwhile gets no frames.
        if cancel.is_cancelled() {
            return Err(GenerateError::Cancelled);
        }
        let frames = to_frames(&video, request.width, request.height).map_err(failed)?;
        if frames.len() != request.num_frames as usize {
            return Err(GenerateError::Failed(format!(
                "the VAE decoded {} frames, {} were asked for",
                frames.len(),
                request.num_frames
            )));
        }
        let mut frames = frames.into_iter().peekable();
        while frames.peek().is_some() {
            sink.frames(frames.by_ref().take(FRAME_BATCH).collect());
        }
        Ok(GenerationResult::default())
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

/// `steps` sigmas from the distilled schedule: the schedule itself for 8 steps, otherwise
/// the piecewise-linear curve through the 8 distilled sigmas and the terminal 0 sampled at
/// `steps` evenly spaced points (starting at σ = 1).
pub fn sigmas_for(steps: u32) -> Vec<f32> {
    let n = DISTILLED_SIGMAS.len();
    if steps as usize == n {
        return DISTILLED_SIGMAS.to_vec();
    }
    let at = |i: usize| DISTILLED_SIGMAS.get(i).copied().unwrap_or(0.0);
    (0..steps)
        .map(|k| {
            let pos = k as f32 * n as f32 / steps as f32;
            let i = pos.floor() as usize;
            let frac = pos - i as f32;
            at(i) + (at(i + 1) - at(i)) * frac
        })
        .collect()
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

/// Loads [`TEXT_EMBEDDINGS_FILE`].
fn load_text_embeddings(
    path: &Path,
    cfg: &TransformerConfig,
    device: &Device,
) -> Result<TextEmbeddings> {
    let mut file = candle_core::safetensors::load(path, device)?;
    let bad = |m: String| InferenceError::Config(format!("{}: {m}", path.display()));
    let embeds = file
        .remove("prompt_embeds")
        .ok_or_else(|| bad("no `prompt_embeds` tensor".into()))?
        .to_dtype(DType::F32)?;
    let embeds = match embeds.rank() {
        2 => embeds.unsqueeze(0)?,
        3 if embeds.dim(0)? == 1 => embeds,
        _ => return Err(bad(format!("prompt_embeds is {:?}", embeds.dims()))),
    };
    let (_, s, c) = embeds.dims3()?;
    if c != cfg.caption_channels || s == 0 {
        return Err(bad(format!(
            "prompt_embeds is {:?}, expected [S, {}]",
            embeds.dims(),
            cfg.caption_channels
        )));
    }
    let mask = match file.remove("prompt_attention_mask") {
        None => None,
        Some(m) => {
            let m = m.to_dtype(DType::F32)?.reshape((1, m.elem_count()))?;
            if m.dim(1)? != s {
                return Err(bad(format!(
                    "prompt_attention_mask has {} entries, prompt_embeds {s} tokens",
                    m.dim(1)?
                )));
            }
            Some(m)
        }
    };
    Ok(TextEmbeddings { embeds, mask })
}

/// FNV-1a, a fixed hash (std's hasher is not stable across releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
