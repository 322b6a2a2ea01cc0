//! Timing the model pieces at a chosen size with random weights: what `examples/gpu_check.rs`
//! runs on a GPU host to time one transformer forward and one VAE decode at the released
//! stage-1 shape (no real weights can be downloaded here; speed does not depend on values),
//! and [`run_audio`]: one audio decode (audio VAE decoder + vocoder) of a segment's latents,
//! and [`run_stage2`]: what a continued two-stage segment adds to its denoising steps (the VAE
//! encode of the conditioning frames at both stages' sizes, the latent upsampler).

use crate::audio_vae::{AudioVaeConfig, AudioVaeDecoder};
use crate::pipeline::LatentGrid;
use crate::rope::VideoCoords;
use crate::tiny::random_weights;
use crate::transformer::Timesteps;
use crate::upsampler::{LatentUpsampler, LatentUpsamplerConfig};
use crate::vae::{VaeConfig, VideoVaeDecoder};
use crate::vae_encoder::VideoVaeEncoder;
use crate::vae_encoder_config::{VaeEncoderConfig, canonical_vae_encoder_name};
use crate::vocoder::{Vocoder, VocoderConfig};
use crate::{InferenceError, Ltx2VideoTransformer, Result, TransformerConfig, Weights};
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

/// What to time.
#[derive(Debug, Clone)]
pub struct TimingConfig {
    pub transformer: TransformerConfig,
    pub vae: VaeConfig,
    /// Video size in pixels and frames (must fit the VAE's compression).
    pub width: usize,
    pub height: usize,
    pub num_frames: usize,
    /// Caption tokens fed to the cross-attention.
    pub text_tokens: usize,
    /// Timed runs of each piece, after one untimed warm-up run.
    pub repeat: usize,
    pub dtype: DType,
    /// Time the VAE decode too.
    pub vae_decode: bool,
    pub seed: u64,
}

impl TimingConfig {
    /// The released LTX-2 stage-1 shape: 960×544, 121 frames at bf16, 48 blocks.
    pub fn ltx2_stage1() -> Self {
        Self {
            transformer: TransformerConfig::ltx2_19b(),
            vae: VaeConfig::ltx2(),
            width: 960,
            height: 544,
            num_frames: 121,
            text_tokens: 256,
            repeat: 3,
            dtype: DType::BF16,
            vae_decode: true,
            seed: 2024,
        }
    }

    /// The latent grid for the configured size, or why the size does not fit.
    pub fn grid(&self) -> Result<LatentGrid> {
        let [ft, fh, fw] = self.vae.compression()?;
        let fits = self.width.is_multiple_of(fw)
            && self.height.is_multiple_of(fh)
            && self.num_frames > 0
            && (self.num_frames - 1).is_multiple_of(ft);
        if !fits || self.width < 2 * fw || self.height < 2 * fh {
            return Err(InferenceError::Input(format!(
                "{}x{}x{} does not fit the VAE's compression ({ft} in time, {fh}x{fw} in space, \
                 at least 2x2 latents)",
                self.width, self.height, self.num_frames
            )));
        }
        Ok((
            (self.num_frames - 1) / ft + 1,
            self.height / fh,
            self.width / fw,
        ))
    }
}

/// What one timing run measured (milliseconds of wall time, device synchronised).
#[derive(Debug, Clone, PartialEq)]
pub struct TimingReport {
    pub grid: LatentGrid,
    pub tokens: usize,
    pub transformer_params: usize,
    pub vae_params: usize,
    /// Creating the random weights on the device.
    pub weights_ms: f64,
    /// Building and uploading the RoPE tables (once per denoising run).
    pub rope_ms: f64,
    /// One entry per timed transformer forward.
    pub transformer_ms: Vec<f64>,
    /// One entry per timed VAE decode (empty when not asked for).
    pub vae_ms: Vec<f64>,
    /// Shape of the decoded video `[1, 3, F, H, W]` (empty when not decoded).
    pub video_dims: Vec<usize>,
}

impl TimingReport {
    /// Median of a list of timings (0 for none).
    pub fn median(values: &[f64]) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }
}

fn param_count(names: &[(String, Vec<usize>)]) -> usize {
    names.iter().map(|(_, s)| s.iter().product::<usize>()).sum()
}

fn timed(device: &Device, f: impl FnOnce() -> Result<Tensor>) -> Result<(f64, Tensor)> {
    device.synchronize()?;
    let start = Instant::now();
    let out = f()?;
    device.synchronize()?;
    Ok((start.elapsed().as_secs_f64() * 1e3, out))
}

/// Builds the transformer (and VAE) with random weights on `device` and times them.
pub fn run(cfg: &TimingConfig, device: &Device) -> Result<TimingReport> {
    if cfg.repeat == 0 || cfg.text_tokens == 0 {
        return Err(InferenceError::Input(
            "repeat and text_tokens must be at least 1".into(),
        ));
    }
    let grid = cfg.grid()?;
    let tokens = grid.0 * grid.1 * grid.2;
    let tnames = Ltx2VideoTransformer::expected_weights(&cfg.transformer);
    let vnames = if cfg.vae_decode {
        VideoVaeDecoder::expected_weights(&cfg.vae)?
    } else {
        Vec::new()
    };

    let start = Instant::now();
    let tw = Weights::from_tensors(random_weights(&tnames, cfg.dtype, device, cfg.seed)?)?;
    let transformer = Ltx2VideoTransformer::new(&cfg.transformer, &tw, device)?;
    drop(tw);
    let vae = if cfg.vae_decode {
        let vw = Weights::from_vae_tensors(random_weights(&vnames, cfg.dtype, device, cfg.seed)?)?;
        Some(VideoVaeDecoder::new(&cfg.vae, &vw)?)
    } else {
        None
    };
    device.synchronize()?;
    let weights_ms = start.elapsed().as_secs_f64() * 1e3;

    let c = cfg.transformer.in_channels;
    let latents = Tensor::randn(0f32, 1.0, (1, tokens, c), device)?;
    let text = Tensor::randn(
        0f32,
        1.0,
        (1, cfg.text_tokens, cfg.transformer.caption_channels),
        device,
    )?;
    let coords = VideoCoords::for_latent_grid(&cfg.transformer, grid.0, grid.1, grid.2, 24.0)?;
    // Built once per denoising run (host work + upload), so timed apart from the forward.
    device.synchronize()?;
    let start = Instant::now();
    let rope = transformer.rope_tables(&coords)?;
    device.synchronize()?;
    let rope_ms = start.elapsed().as_secs_f64() * 1e3;
    let timesteps = Timesteps::PerSample(vec![909.375]);
    let forward = || transformer.forward_with_rope(&latents, &timesteps, &text, None, &rope);

    let mut transformer_ms = Vec::with_capacity(cfg.repeat);
    let mut velocity = timed(device, forward)?.1;
    for _ in 0..cfg.repeat {
        let (ms, v) = timed(device, forward)?;
        transformer_ms.push(ms);
        velocity = v;
    }

    let mut vae_ms = Vec::new();
    let mut video_dims = Vec::new();
    if let Some(vae) = &vae {
        let decode = || vae.decode_tokens(&velocity, grid.0, grid.1, grid.2);
        let video = timed(device, decode)?.1;
        video_dims = video.dims().to_vec();
        drop(video);
        for _ in 0..cfg.repeat {
            vae_ms.push(timed(device, decode)?.0);
        }
    }
    Ok(TimingReport {
        grid,
        tokens,
        transformer_params: param_count(&tnames),
        vae_params: param_count(&vnames),
        weights_ms,
        rope_ms,
        transformer_ms,
        vae_ms,
        video_dims,
    })
}

/// What to time in [`run_audio`].
#[derive(Debug, Clone)]
pub struct AudioTimingConfig {
    pub audio_vae: AudioVaeConfig,
    pub vocoder: VocoderConfig,
    /// Audio latent frames decoded at once (126 for 121 video frames at 24 fps).
    pub latent_frames: usize,
    /// Timed runs of each piece, after one untimed warm-up run.
    pub repeat: usize,
    pub dtype: DType,
    pub seed: u64,
}

impl AudioTimingConfig {
    /// The released audio VAE and vocoder on one streaming segment (121 frames at 24 fps →
    /// 126 latent frames → 501 mel frames → 120 240 samples per channel, 5.01 s), bf16.
    pub fn ltx2_segment() -> Self {
        Self {
            audio_vae: AudioVaeConfig::ltx2(),
            vocoder: VocoderConfig::ltx2(),
            latent_frames: 126,
            repeat: 3,
            dtype: DType::BF16,
            seed: 2024,
        }
    }
}

/// What one [`run_audio`] measured (milliseconds of wall time, device synchronised).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioTimingReport {
    pub audio_vae_params: usize,
    pub vocoder_params: usize,
    /// Creating the random weights on the device.
    pub weights_ms: f64,
    /// One entry per timed audio VAE decode (tokens → mel).
    pub audio_vae_ms: Vec<f64>,
    /// One entry per timed vocoder run (mel → waveform).
    pub vocoder_ms: Vec<f64>,
    /// `[1, 2, mel frames, mel bins]`.
    pub mel_dims: Vec<usize>,
    /// `[1, 2, samples]`.
    pub waveform_dims: Vec<usize>,
}

/// Builds the audio VAE decoder and the vocoder with random weights on `device` and times one
/// decode of `latent_frames` normalised audio tokens (batch 1) through both.
pub fn run_audio(cfg: &AudioTimingConfig, device: &Device) -> Result<AudioTimingReport> {
    if cfg.repeat == 0 || cfg.latent_frames == 0 {
        return Err(InferenceError::Input(
            "repeat and latent_frames must be at least 1".into(),
        ));
    }
    let anames = AudioVaeDecoder::expected_weights(&cfg.audio_vae)?;
    let vnames = Vocoder::expected_weights(&cfg.vocoder)?;
    let start = Instant::now();
    let aw =
        Weights::from_audio_vae_tensors(random_weights(&anames, cfg.dtype, device, cfg.seed)?)?;
    let audio_vae = AudioVaeDecoder::new(&cfg.audio_vae, &aw)?;
    let vw = Weights::from_vocoder_tensors(random_weights(&vnames, cfg.dtype, device, cfg.seed)?)?;
    let vocoder = Vocoder::new(&cfg.vocoder, &vw)?;
    device.synchronize()?;
    let weights_ms = start.elapsed().as_secs_f64() * 1e3;

    let tokens = Tensor::randn(
        0f32,
        1.0,
        (1, cfg.latent_frames, cfg.audio_vae.token_channels()),
        device,
    )?;
    let decode = || audio_vae.decode_tokens(&tokens);
    let mut mel = timed(device, decode)?.1;
    let mut audio_vae_ms = Vec::with_capacity(cfg.repeat);
    for _ in 0..cfg.repeat {
        let (ms, m) = timed(device, decode)?;
        audio_vae_ms.push(ms);
        mel = m;
    }
    let vocode = || vocoder.forward(&mel);
    let waveform = timed(device, vocode)?.1;
    let mut vocoder_ms = Vec::with_capacity(cfg.repeat);
    for _ in 0..cfg.repeat {
        vocoder_ms.push(timed(device, vocode)?.0);
    }
    Ok(AudioTimingReport {
        audio_vae_params: param_count(&anames),
        vocoder_params: param_count(&vnames),
        weights_ms,
        audio_vae_ms,
        vocoder_ms,
        mel_dims: mel.dims().to_vec(),
        waveform_dims: waveform.dims().to_vec(),
    })
}

/// What to time in [`run_stage2`].
#[derive(Debug, Clone)]
pub struct Stage2TimingConfig {
    pub encoder: VaeEncoderConfig,
    pub upsampler: LatentUpsamplerConfig,
    /// The output (stage-2) width and height; stage 1 runs at half of each.
    pub width: usize,
    pub height: usize,
    /// The segment's video frames (its `(F − 1)/8 + 1` stage-1 latent frames are upsampled).
    pub num_frames: usize,
    /// Conditioning frames encoded at each stage (9, `1 + 8k`).
    pub cond_frames: usize,
    /// Timed runs of each piece, after one untimed warm-up run.
    pub repeat: usize,
    pub dtype: DType,
    pub seed: u64,
}

impl Stage2TimingConfig {
    /// FastVideo's streaming preset at the released size: 9 frames encoded at 960×544 and at
    /// 1920×1088, 16×17×30 stage-1 latents upsampled to 16×34×60, bf16.
    pub fn ltx2_streaming() -> Self {
        Self {
            encoder: VaeEncoderConfig::ltx2(),
            upsampler: LatentUpsamplerConfig::ltx2(),
            width: 1920,
            height: 1088,
            num_frames: 121,
            cond_frames: 9,
            repeat: 3,
            dtype: DType::BF16,
            seed: 2025,
        }
    }
}

/// What one [`run_stage2`] measured (milliseconds of wall time, device synchronised).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage2TimingReport {
    pub encoder_params: usize,
    pub upsampler_params: usize,
    /// Creating the random weights on the device.
    pub weights_ms: f64,
    /// One entry per timed encode of the conditioning frames at stage 1's (half) size.
    pub encode_half_ms: Vec<f64>,
    /// One entry per timed encode of the conditioning frames at the output size.
    pub encode_full_ms: Vec<f64>,
    /// One entry per timed upsample of the stage-1 latents.
    pub upsample_ms: Vec<f64>,
    /// The encoded conditioning latents `[1, C, F', H', W']` at each size.
    pub cond_half_dims: Vec<usize>,
    pub cond_full_dims: Vec<usize>,
    /// The upsampled latents `[1, C, F, 2H, 2W]`.
    pub upsampled_dims: Vec<usize>,
}

/// Builds the VAE encoder and the latent upsampler with random weights on `device` and times
/// the encode of `cond_frames` frames at half and at full size and one upsample of the
/// stage-1 latents (batch 1).
pub fn run_stage2(cfg: &Stage2TimingConfig, device: &Device) -> Result<Stage2TimingReport> {
    if cfg.repeat == 0 || cfg.num_frames == 0 || cfg.cond_frames == 0 {
        return Err(InferenceError::Input(
            "repeat, num_frames and cond_frames must be at least 1".into(),
        ));
    }
    if !cfg.width.is_multiple_of(64) || !cfg.height.is_multiple_of(64) {
        return Err(InferenceError::Input(format!(
            "{}x{}: the two-stage sizes are multiples of 64 (stage 1 at half)",
            cfg.width, cfg.height
        )));
    }
    let enames = VideoVaeEncoder::expected_weights(&cfg.encoder)?;
    let unames = LatentUpsampler::expected_weights(&cfg.upsampler)?;
    let start = Instant::now();
    let ew = Weights::from_named_tensors(
        random_weights(&enames, cfg.dtype, device, cfg.seed)?,
        canonical_vae_encoder_name,
    )?;
    let encoder = VideoVaeEncoder::new(&cfg.encoder, &ew)?;
    drop(ew);
    let uw = Weights::from_named_tensors(
        random_weights(&unames, cfg.dtype, device, cfg.seed ^ 1)?,
        crate::canonical_upsampler_name,
    )?;
    let upsampler = LatentUpsampler::new(&cfg.upsampler, &uw, encoder.statistics().clone())?;
    drop(uw);
    device.synchronize()?;
    let weights_ms = start.elapsed().as_secs_f64() * 1e3;

    let times = |w: usize, h: usize| -> Result<(Vec<f64>, Vec<usize>)> {
        let frames = Tensor::rand(-1f32, 1.0, (1, 3, cfg.cond_frames, h, w), device)?;
        let encode = || encoder.encode(&frames);
        let dims = timed(device, encode)?.1.dims().to_vec();
        let ms = (0..cfg.repeat)
            .map(|_| timed(device, encode).map(|r| r.0))
            .collect::<Result<Vec<_>>>()?;
        Ok((ms, dims))
    };
    let (encode_half_ms, cond_half_dims) = times(cfg.width / 2, cfg.height / 2)?;
    let (encode_full_ms, cond_full_dims) = times(cfg.width, cfg.height)?;

    let [ft, sh, sw] = cfg.encoder.compression()?;
    let latent_frames = (cfg.num_frames - 1) / ft + 1;
    let latents = Tensor::randn(
        0f32,
        1.0,
        (
            1,
            cfg.upsampler.in_channels,
            latent_frames,
            cfg.height / 2 / sh,
            cfg.width / 2 / sw,
        ),
        device,
    )?;
    let up = || upsampler.upsample(&latents);
    let upsampled_dims = timed(device, up)?.1.dims().to_vec();
    let upsample_ms = (0..cfg.repeat)
        .map(|_| timed(device, up).map(|r| r.0))
        .collect::<Result<Vec<_>>>()?;
    Ok(Stage2TimingReport {
        encoder_params: param_count(&enames),
        upsampler_params: param_count(&unames),
        weights_ms,
        encode_half_ms,
        encode_full_ms,
        upsample_ms,
        cond_half_dims,
        cond_full_dims,
        upsampled_dims,
    })
}
