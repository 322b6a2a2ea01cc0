//! Loading every component of the LTX-2 pipeline by the names real checkpoints use.
//!
//! Two layouts:
//! - a diffusers pipeline folder: `text_encoder/` (Gemma-3), `tokenizer/tokenizer.json`,
//!   `connectors/`, `transformer/`, `vae/` (decoder and encoder), `audio_vae/`, `vocoder/`,
//!   optionally `scheduler/scheduler_config.json` and `latent_upsampler/`;
//! - the Lightricks single file (`ltx-2-19b-*.safetensors`: transformer, text connectors,
//!   video VAE, audio VAE, vocoder) read with the released configs, plus a separate Gemma-3
//!   folder (Gemma is not in the single file): [`PipelineOptions::gemma`], else `gemma/` or
//!   `text_encoder/` next to the file; its tokenizer is `tokenizer.json` in that folder or
//!   `tokenizer/tokenizer.json` next to it.
//!
//! Every component's safetensors headers are checked against the config before any tensor
//! is read (a missing, extra or misshapen tensor is an error naming the file and the
//! tensor), then its tensors are read through its rename map and converted to the dtype.

use crate::audio_vae::{AudioVaeConfig, AudioVaeDecoder};
use crate::config::TransformerConfig;
use crate::files::{check_files, read_text, safetensors_files};
use crate::scheduler::SchedulerConfig;
use crate::text::{
    ConnectorsConfig, Gemma3TextEncoder, GemmaTokenizer, Ltx2TextConnectors, Ltx2TextEncoder,
    canonical_connector_name,
};
use crate::transformer::Ltx2VideoTransformer;
use crate::upsampler::LatentUpsampler;
use crate::vae::{VaeConfig, VideoVaeDecoder};
use crate::vae_encoder::VideoVaeEncoder;
use crate::vae_encoder_config::{VaeEncoderConfig, canonical_vae_encoder_name};
use crate::vocoder::{Vocoder, VocoderConfig};
use crate::weights::{
    Weights, canonical_audio_vae_name, canonical_transformer_name, canonical_vae_name,
    canonical_vocoder_name,
};
use crate::{InferenceError, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

use super::text_cache::DEFAULT_TEXT_CACHE_PROMPTS;

/// The pipeline's text length (`max_sequence_length`) unless set otherwise.
pub const DEFAULT_TEXT_LENGTH: usize = crate::text::TEXT_LEN;

/// How to load and run the pipeline, besides the model path. Build with
/// [`PipelineOptions::new`] and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PipelineOptions {
    /// Weight and compute dtype of the transformer, VAEs, vocoder and upsampler: `F32`,
    /// `BF16` (what the released weights are, and what fits one GPU) or `F16`.
    pub dtype: DType,
    /// Where the text encoder runs; `None`: the model's device. The 12B Gemma takes 23.5 GB
    /// in bf16, so on a tight GPU it can stay on the CPU (its output is moved over).
    pub text_encoder_device: Option<Device>,
    /// The text encoder's dtype; `None`: [`dtype`](Self::dtype).
    pub text_encoder_dtype: Option<DType>,
    /// The Gemma-3 folder for a single-file checkpoint (see the module docs).
    pub gemma: Option<PathBuf>,
    /// The latent upsampler (a folder with `config.json`, or the released
    /// `ltx-2-spatial-upscaler-x2-1.0.safetensors`); `None`: `latent_upsampler/` in a
    /// diffusers folder when present.
    pub upsampler: Option<PathBuf>,
    /// Caption slots per prompt (the pipeline's `max_sequence_length`, 1024).
    pub text_max_length: usize,
    /// Distinct prompts whose caption embeddings are kept.
    pub text_cache_prompts: usize,
    /// The two-stage preset: stage 1 at half the requested width and height, then the latent
    /// upsampler and this refine at full resolution (needs an upsampler). `None`: one stage
    /// at the requested size.
    pub refine: Option<Refine>,
}

/// The stage-2 refine of the two-stage preset (FastVideo's `preset_overrides.refine` and
/// `stage_overrides.refine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refine {
    /// Refine steps: 2 (FastVideo's streaming preset, sigmas `[0.909375, 0.421875]`) or 3
    /// (the distilled refine, `[0.909375, 0.725, 0.421875]`).
    pub steps: u32,
    /// Re-noise the upsampled video and audio latents to σ₀ = 0.909375 before the refine
    /// (`add_noise`; the distilled refine expects it).
    pub add_noise: bool,
}

impl Refine {
    /// FastVideo's streaming preset: 2 steps with re-noising.
    pub fn streaming() -> Self {
        Self {
            steps: 2,
            add_noise: true,
        }
    }
}

impl Default for PipelineOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineOptions {
    /// f32 everywhere, text encoder on the model's device, 1024 caption slots, 16 cached
    /// prompts, no explicit Gemma or upsampler path.
    pub fn new() -> Self {
        Self {
            dtype: DType::F32,
            text_encoder_device: None,
            text_encoder_dtype: None,
            gemma: None,
            upsampler: None,
            text_max_length: DEFAULT_TEXT_LENGTH,
            text_cache_prompts: DEFAULT_TEXT_CACHE_PROMPTS,
            refine: None,
        }
    }

    /// Sets [`refine`](Self::refine): the two-stage preset.
    pub fn with_refine(mut self, refine: Refine) -> Self {
        self.refine = Some(refine);
        self
    }

    /// Sets [`dtype`](Self::dtype).
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Sets [`text_encoder_device`](Self::text_encoder_device).
    pub fn with_text_encoder_device(mut self, device: Device) -> Self {
        self.text_encoder_device = Some(device);
        self
    }

    /// Sets [`text_encoder_dtype`](Self::text_encoder_dtype).
    pub fn with_text_encoder_dtype(mut self, dtype: DType) -> Self {
        self.text_encoder_dtype = Some(dtype);
        self
    }

    /// Sets [`gemma`](Self::gemma).
    pub fn with_gemma(mut self, dir: impl Into<PathBuf>) -> Self {
        self.gemma = Some(dir.into());
        self
    }

    /// Sets [`upsampler`](Self::upsampler).
    pub fn with_upsampler(mut self, path: impl Into<PathBuf>) -> Self {
        self.upsampler = Some(path.into());
        self
    }

    /// Sets [`text_max_length`](Self::text_max_length).
    pub fn with_text_max_length(mut self, len: usize) -> Self {
        self.text_max_length = len;
        self
    }

    /// Sets [`text_cache_prompts`](Self::text_cache_prompts).
    pub fn with_text_cache_prompts(mut self, n: usize) -> Self {
        self.text_cache_prompts = n;
        self
    }

    fn check(&self) -> Result<()> {
        if let Some(r) = &self.refine {
            super::schedule::stage2_sigmas(r.steps)?;
        }
        for (what, d) in [
            ("model", Some(self.dtype)),
            ("text encoder", self.text_encoder_dtype),
        ] {
            if let Some(d) = d
                && !matches!(d, DType::F32 | DType::BF16 | DType::F16)
            {
                return Err(InferenceError::Config(format!(
                    "{what} dtype must be f32, bf16 or f16, got {d:?}"
                )));
            }
        }
        Ok(())
    }
}

/// Every loaded component.
#[derive(Debug)]
pub(crate) struct Components {
    pub(crate) transformer: Ltx2VideoTransformer,
    pub(crate) vae: VideoVaeDecoder,
    pub(crate) encoder: VideoVaeEncoder,
    pub(crate) audio_vae: AudioVaeDecoder,
    pub(crate) vocoder: Vocoder,
    pub(crate) text: Ltx2TextEncoder,
    pub(crate) scheduler: SchedulerConfig,
    pub(crate) upsampler: Option<LatentUpsampler>,
}

/// Checks the headers of `paths` for one component, then reads its tensors.
fn checked(
    paths: &[&Path],
    rename: fn(&str) -> Option<String>,
    expected: &[(String, Vec<usize>)],
    component: &str,
) -> Result<()> {
    check_files(paths, rename, expected, component)
}

fn as_paths(files: &[PathBuf]) -> Vec<&Path> {
    files.iter().map(PathBuf::as_path).collect()
}

/// Loads every component from `path` (see the module docs).
pub(crate) fn load(path: &Path, device: &Device, opts: &PipelineOptions) -> Result<Components> {
    opts.check()?;
    let text_device = opts.text_encoder_device.as_ref().unwrap_or(device);
    let text_dtype = opts.text_encoder_dtype.unwrap_or(opts.dtype);
    let mut c = if path.is_dir() {
        load_folder(path, device, text_device, opts.dtype, text_dtype)?
    } else if path.is_file() {
        load_single_file(
            path,
            opts.gemma.as_deref(),
            device,
            text_device,
            opts,
            text_dtype,
        )?
    } else {
        return Err(InferenceError::Config(format!(
            "model path {} is neither a directory nor a file",
            path.display()
        )));
    };
    c.text = c.text.with_max_length(opts.text_max_length)?;
    let upsampler = match &opts.upsampler {
        Some(p) => Some(p.clone()),
        None if path.is_dir() && path.join("latent_upsampler").is_dir() => {
            Some(path.join("latent_upsampler"))
        }
        None => None,
    };
    if let Some(p) = upsampler {
        c.upsampler = Some(LatentUpsampler::load(
            &p,
            c.encoder.statistics().clone(),
            device,
            opts.dtype,
        )?);
    }
    if opts.refine.is_some() && c.upsampler.is_none() {
        return Err(InferenceError::Config(format!(
            "the two-stage preset needs the latent upsampler: none given and no \
             latent_upsampler/ in {} (generator.pipeline.components.upsampler_weights)",
            path.display()
        )));
    }
    check_consistent(&c)?;
    Ok(c)
}

/// A diffusers pipeline folder.
fn load_folder(
    root: &Path,
    device: &Device,
    text_device: &Device,
    dtype: DType,
    text_dtype: DType,
) -> Result<Components> {
    let config = |sub: &str| read_text(&root.join(sub).join("config.json"));
    let tcfg = TransformerConfig::from_json(&config("transformer")?)?;
    let vae_json = config("vae")?;
    let vcfg = VaeConfig::from_json(&vae_json)?;
    let ecfg = VaeEncoderConfig::from_json(&vae_json)?;
    let acfg = AudioVaeConfig::from_json(&config("audio_vae")?)?;
    let ocfg = VocoderConfig::from_json(&config("vocoder")?)?;
    let sched_path = root.join("scheduler").join("scheduler_config.json");
    let scheduler = if sched_path.is_file() {
        let cfg: SchedulerConfig = serde_json::from_str(&read_text(&sched_path)?)
            .map_err(|e| InferenceError::Config(format!("{}: {e}", sched_path.display())))?;
        cfg.validate()?;
        cfg
    } else {
        SchedulerConfig::default()
    };

    let tfiles = safetensors_files(&root.join("transformer"))?;
    let vfiles = safetensors_files(&root.join("vae"))?;
    let afiles = safetensors_files(&root.join("audio_vae"))?;
    let ofiles = safetensors_files(&root.join("vocoder"))?;
    let (tp, vp, ap, op) = (
        as_paths(&tfiles),
        as_paths(&vfiles),
        as_paths(&afiles),
        as_paths(&ofiles),
    );
    // Headers first, for every component: a wrong file fails before gigabytes are read.
    checked(
        &tp,
        canonical_transformer_name,
        &Ltx2VideoTransformer::expected_av_weights(&tcfg),
        "transformer",
    )?;
    checked(
        &vp,
        canonical_vae_name,
        &VideoVaeDecoder::expected_weights(&vcfg)?,
        "VAE decoder",
    )?;
    checked(
        &vp,
        canonical_vae_encoder_name,
        &VideoVaeEncoder::expected_weights(&ecfg)?,
        "VAE encoder",
    )?;
    checked(
        &ap,
        canonical_audio_vae_name,
        &AudioVaeDecoder::expected_weights(&acfg)?,
        "audio VAE decoder",
    )?;
    checked(
        &op,
        canonical_vocoder_name,
        &Vocoder::expected_weights(&ocfg)?,
        "vocoder",
    )?;

    let text = Ltx2TextEncoder::load(root, text_device, text_dtype)?;
    let tw = Weights::load_transformer(&tp, dtype, device)?;
    let transformer = Ltx2VideoTransformer::new_av(&tcfg, &tw, device)?;
    drop(tw);
    let mut vw = Weights::load_components(
        &vp,
        dtype,
        device,
        &[canonical_vae_name, canonical_vae_encoder_name],
    )?;
    let ew = vw.pop().unwrap_or_default();
    let dw = vw.pop().unwrap_or_default();
    let aw = Weights::load_audio_vae(&ap, dtype, device)?;
    let ow = Weights::load_vocoder(&op, dtype, device)?;
    Ok(Components {
        transformer,
        vae: VideoVaeDecoder::new(&vcfg, &dw)?,
        encoder: VideoVaeEncoder::new(&ecfg, &ew)?,
        audio_vae: AudioVaeDecoder::new(&acfg, &aw)?,
        vocoder: Vocoder::new(&ocfg, &ow)?,
        text,
        scheduler,
        upsampler: None,
    })
}

/// Where a single file's Gemma folder is: the option, else `gemma/` or `text_encoder/` next
/// to the file.
fn gemma_dir(file: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return Ok(d.to_path_buf());
    }
    let base = file.parent().unwrap_or(Path::new("."));
    for name in ["gemma", "text_encoder"] {
        let d = base.join(name);
        if d.join("config.json").is_file() {
            return Ok(d);
        }
    }
    Err(InferenceError::Config(format!(
        "{} holds no text encoder: give the Gemma-3 folder (generator.pipeline.components.\
         text_encoder_weights), or put it in {}/gemma",
        file.display(),
        base.display()
    )))
}

/// The tokenizer of a Gemma folder: `tokenizer.json` in it, else `tokenizer/tokenizer.json`
/// next to it.
fn tokenizer_json(gemma: &Path) -> Result<PathBuf> {
    let inside = gemma.join("tokenizer.json");
    if inside.is_file() {
        return Ok(inside);
    }
    if let Some(beside) = gemma
        .parent()
        .map(|p| p.join("tokenizer").join("tokenizer.json"))
        .filter(|p| p.is_file())
    {
        return Ok(beside);
    }
    Err(InferenceError::Config(format!(
        "no tokenizer.json in {} (nor in ../tokenizer/)",
        gemma.display()
    )))
}

/// The Lightricks single file plus a Gemma folder.
fn load_single_file(
    file: &Path,
    gemma: Option<&Path>,
    device: &Device,
    text_device: &Device,
    opts: &PipelineOptions,
    text_dtype: DType,
) -> Result<Components> {
    let gemma = gemma_dir(file, gemma)?;
    let tokenizer = GemmaTokenizer::from_file(&tokenizer_json(&gemma)?)?;
    let (tcfg, vcfg, ecfg, acfg, ocfg, ccfg) = (
        TransformerConfig::ltx2_19b(),
        VaeConfig::ltx2(),
        VaeEncoderConfig::ltx2(),
        AudioVaeConfig::ltx2(),
        VocoderConfig::ltx2(),
        ConnectorsConfig::ltx2(),
    );
    let paths = [file];
    for (rename, expected, what) in [
        (
            canonical_transformer_name as fn(&str) -> Option<String>,
            Ltx2VideoTransformer::expected_av_weights(&tcfg),
            "transformer",
        ),
        (
            canonical_vae_name,
            VideoVaeDecoder::expected_weights(&vcfg)?,
            "VAE decoder",
        ),
        (
            canonical_vae_encoder_name,
            VideoVaeEncoder::expected_weights(&ecfg)?,
            "VAE encoder",
        ),
        (
            canonical_audio_vae_name,
            AudioVaeDecoder::expected_weights(&acfg)?,
            "audio VAE decoder",
        ),
        (
            canonical_vocoder_name,
            Vocoder::expected_weights(&ocfg)?,
            "vocoder",
        ),
        (
            canonical_connector_name,
            Ltx2TextConnectors::expected_weights(&ccfg),
            "connectors",
        ),
    ] {
        checked(&paths, rename, &expected, what)?;
    }
    let gemma_model = Gemma3TextEncoder::load(&gemma, text_device, text_dtype)?;
    // One read of the file for all six components (it is ~40 GB).
    let mut w = Weights::load_components(
        &paths,
        opts.dtype,
        device,
        &[
            canonical_transformer_name,
            canonical_vae_name,
            canonical_vae_encoder_name,
            canonical_audio_vae_name,
            canonical_vocoder_name,
            canonical_connector_name,
        ],
    )?
    .into_iter();
    let mut next = || w.next().unwrap_or_default();
    let (tw, dw, ew, aw, ow, cw) = (next(), next(), next(), next(), next(), next());
    let cw = if text_device.same_device(device) && text_dtype == opts.dtype {
        cw
    } else {
        // The connectors follow the text encoder.
        cw.to(text_device, text_dtype)?
    };
    let connectors = Ltx2TextConnectors::new(&ccfg, &cw, text_device)?;
    Ok(Components {
        transformer: Ltx2VideoTransformer::new_av(&tcfg, &tw, device)?,
        vae: VideoVaeDecoder::new(&vcfg, &dw)?,
        encoder: VideoVaeEncoder::new(&ecfg, &ew)?,
        audio_vae: AudioVaeDecoder::new(&acfg, &aw)?,
        vocoder: Vocoder::new(&ocfg, &ow)?,
        text: Ltx2TextEncoder::new(tokenizer, gemma_model, connectors)?,
        scheduler: SchedulerConfig::default(),
        upsampler: None,
    })
}

/// The components must agree on channels, compression and sample rates.
fn check_consistent(c: &Components) -> Result<()> {
    let t = c.transformer.config();
    let v = c.vae.config();
    let bad = |m: String| Err(InferenceError::Config(m));
    if t.in_channels != v.latent_channels || t.out_channels() != v.latent_channels {
        return bad(format!(
            "transformer channels ({} in, {} out) differ from the VAE's {} latent channels",
            t.in_channels,
            t.out_channels(),
            v.latent_channels
        ));
    }
    if c.encoder.config().latent_channels != v.latent_channels {
        return bad(format!(
            "the VAE encoder makes {} latent channels, the decoder takes {}",
            c.encoder.config().latent_channels,
            v.latent_channels
        ));
    }
    if t.patch_size != 1 || t.patch_size_t != 1 {
        return bad("the pipeline packs one token per latent (patch sizes 1, as released)".into());
    }
    let factors = v.compression()?;
    if factors != t.vae_scale_factors || c.encoder.config().compression()? != factors {
        return bad(format!(
            "the VAE compresses (time, height, width) by {factors:?}, the transformer's \
             vae_scale_factors say {:?}",
            t.vae_scale_factors
        ));
    }
    let a = c.audio_vae.config();
    if t.audio_in_channels != a.token_channels() || t.audio_out_channels() != a.token_channels() {
        return bad(format!(
            "the transformer's audio stream takes {} features per token, the audio VAE's \
             latents have {} (channels × latent mel bins)",
            t.audio_in_channels,
            a.token_channels()
        ));
    }
    if t.audio_sampling_rate != a.sample_rate || t.audio_hop_length != a.mel_hop_length {
        return bad(format!(
            "the transformer places audio tokens at {} Hz / hop {}, the audio VAE's are {} Hz / \
             hop {}",
            t.audio_sampling_rate, t.audio_hop_length, a.sample_rate, a.mel_hop_length
        ));
    }
    let mel_channels = a.output_channels * a.mel_bins();
    if c.vocoder.config().in_channels != mel_channels {
        return bad(format!(
            "the vocoder takes {} mel features, the audio VAE makes {} (channels × mel bins)",
            c.vocoder.config().in_channels,
            mel_channels
        ));
    }
    if c.text.connectors().config().caption_channels != t.caption_channels {
        return bad(format!(
            "the connectors give {} caption channels, the transformer takes {}",
            c.text.connectors().config().caption_channels,
            t.caption_channels
        ));
    }
    if let Some(u) = &c.upsampler
        && u.config().in_channels != v.latent_channels
    {
        return bad(format!(
            "the upsampler takes {} latent channels, the VAE has {}",
            u.config().in_channels,
            v.latent_channels
        ));
    }
    Ok(())
}
