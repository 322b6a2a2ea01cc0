//! LTX-2 video and audio generation in candle (CPU by default, NVIDIA GPUs with the `cuda`
//! feature).
//!
//! [`Ltx2Pipeline`] runs the whole model behind `fv_core::Generator`: prompt → [`text`]
//! (Gemma tokenizer, Gemma-3, connectors: [`Ltx2TextEncoder`], once per distinct prompt) →
//! joint denoising of video and audio latents by the audio-video transformer
//! ([`Ltx2VideoTransformer::forward_av`], split 3-D / 1-D RoPE in [`rope`], the Euler
//! [`FlowMatchEulerScheduler`]) → the video VAE decoder ([`VideoVaeDecoder`]) → frames, and
//! the audio VAE decoder ([`AudioVaeDecoder`]) → the vocoder ([`Vocoder`]) → 24 kHz stereo
//! PCM ([`to_audio_track`]). The video VAE encoder ([`VideoVaeEncoder`]) and the latent
//! upsampler ([`LatentUpsampler`], [`LatentStatistics`]) serve continuation and the stage-2
//! refine. Weights load by the real checkpoint names through rename maps ([`weights`]);
//! [`tiny::write_random_model`] writes a tiny random-weight model of every component that
//! runs on any CPU. [`yuv`] turns decoded video into frames (RGB24, or I420 through our
//! fused GPU kernel in the `cuda` module), and [`timing`] times the pieces at the released
//! size (`examples/gpu_check.rs`). Every piece, and one whole pipeline run, is checked
//! against diffusers 0.42.1 / transformers 5.25 on tiny seeded configurations by the crate's
//! tests (README.md).

pub mod audio_vae;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
mod files;
pub mod latent_stats;
mod ops;
pub mod pipeline;
mod rng;
pub mod rope;
pub mod scheduler;
#[cfg(test)]
mod test_util;
pub mod text;
pub mod timing;
pub mod tiny;
pub mod transformer;
pub mod upsampler;
pub mod upsampler_config;
pub mod vae;
pub mod vae_encoder;
pub mod vae_encoder_config;
pub mod vocoder;
pub mod weights;
pub mod yuv;

pub use audio_vae::{AudioVaeConfig, AudioVaeDecoder};
pub use candle_core::{DType, Device};
pub use config::TransformerConfig;
pub use latent_stats::LatentStatistics;
pub use pipeline::Ltx2Pipeline;
pub use scheduler::{DISTILLED_SIGMAS, FlowMatchEulerScheduler, SchedulerConfig};
pub use text::{CaptionEmbeddings, Ltx2TextEncoder};
pub use transformer::Ltx2VideoTransformer;
pub use upsampler::{LatentUpsampler, LatentUpsamplerConfig, canonical_upsampler_name};
pub use vae::{VaeConfig, VideoVaeDecoder};
pub use vae_encoder::VideoVaeEncoder;
pub use vae_encoder_config::{VaeEncoderConfig, canonical_vae_encoder_name};
pub use vocoder::{Vocoder, VocoderConfig, to_audio_track};
pub use weights::{
    Component, Weights, canonical_audio_vae_name, canonical_transformer_name, canonical_vae_name,
    canonical_vocoder_name,
};

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// A tensor operation failed (shape mismatch inside candle, I/O while memory-mapping, ...).
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// A configuration value is out of range or names a variant this crate does not implement.
    #[error("invalid config: {0}")]
    Config(String),
    /// A weight the model needs is absent from the loaded files.
    #[error("missing weight `{0}`")]
    MissingWeight(String),
    /// A weight has a different shape than the config implies.
    #[error("weight `{name}` has shape {found:?}, expected {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// Two tensors in the loaded files map to the same canonical name.
    #[error("weight `{canonical}` appears twice (as `{first}` and `{second}`)")]
    DuplicateWeight {
        canonical: String,
        first: String,
        second: String,
    },
    /// Reading or writing a file failed.
    #[error("i/o: {0}")]
    Io(String),
    /// An input tensor has the wrong shape or the call's arguments disagree.
    #[error("invalid input: {0}")]
    Input(String),
    /// The caller's cancel token fired; the work stopped at the next step.
    #[error("cancelled")]
    Cancelled,
}

/// Opens CUDA device `ordinal`. The error says whether this build has CUDA at all (the
/// `cuda` feature) or the device could not be opened.
pub fn open_cuda(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        InferenceError::Config(if cfg!(feature = "cuda") {
            format!("cannot open CUDA device {ordinal}: {e} (is there a GPU and an R580+ driver?)")
        } else {
            format!(
                "CUDA device {ordinal} asked for, but fv-inference was built without CUDA \
                 (rebuild with `--features cuda`, see docs/cuda.md)"
            )
        })
    })
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, InferenceError>;
