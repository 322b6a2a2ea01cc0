//! Weight loading by the names real checkpoints use.
//!
//! Three spellings are in circulation for the LTX-2 transformer:
//! - diffusers (`transformer/diffusion_pytorch_model*.safetensors`): `proj_in`, `time_embed`,
//!   `attn1.norm_q`, ... — this is the canonical spelling used inside this crate;
//! - the Lightricks single file (`ltx-2-19b-*.safetensors`): the same tensors under
//!   `model.diffusion_model.` with the original module names (`patchify_proj`,
//!   `adaln_single`, `q_norm`, `av_ca_*_adaln_single`, `scale_shift_table_a2v_ca_*`), next to
//!   `vae.`, `audio_vae.` and vocoder tensors;
//! - FastVideo's per-component folders: the original names with an optional
//!   `model.diffusion_model.`, `diffusion_model.` or `model.` prefix.
//!
//! [`canonical_transformer_name`] is the one map from any of them to the canonical name.

use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Prefixes that wrap transformer tensors in the formats above, longest first.
const TRANSFORMER_PREFIXES: [&str; 3] = ["model.diffusion_model.", "diffusion_model.", "model."];

/// Prefixes of tensors that are not the transformer's, in the Lightricks single file.
const OTHER_COMPONENT_PREFIXES: [&str; 5] = [
    "vae.",
    "audio_vae.",
    "vocoder.",
    "text_embedding_projection.",
    "text_encoder.",
];

/// First path segments (after the transformer prefix) of the text connectors' tensors in
/// the single file, in both spellings.
const CONNECTOR_PREFIXES: [&str; 6] = [
    "video_embeddings_connector.",
    "audio_embeddings_connector.",
    "video_connector.",
    "audio_connector.",
    "text_embedding_projection.",
    "connectors.",
];

/// Original-module → diffusers renames, applied as substring replacements (like diffusers'
/// converter). The order matters only in that none of the patterns overlap after the
/// leading-module renames handled separately below.
const SUBSTRING_RENAMES: [(&str, &str); 8] = [
    (
        "av_ca_video_scale_shift_adaln_single",
        "av_cross_attn_video_scale_shift",
    ),
    (
        "av_ca_a2v_gate_adaln_single",
        "av_cross_attn_video_a2v_gate",
    ),
    (
        "av_ca_audio_scale_shift_adaln_single",
        "av_cross_attn_audio_scale_shift",
    ),
    (
        "av_ca_v2a_gate_adaln_single",
        "av_cross_attn_audio_v2a_gate",
    ),
    (
        "scale_shift_table_a2v_ca_video",
        "video_a2v_cross_attn_scale_shift_table",
    ),
    (
        "scale_shift_table_a2v_ca_audio",
        "audio_a2v_cross_attn_scale_shift_table",
    ),
    (".q_norm.", ".norm_q."),
    (".k_norm.", ".norm_k."),
];

/// Leading module renames (whole first path segment).
const LEADING_RENAMES: [(&str, &str); 4] = [
    ("patchify_proj.", "proj_in."),
    ("audio_patchify_proj.", "audio_proj_in."),
    ("adaln_single.", "time_embed."),
    ("audio_adaln_single.", "audio_time_embed."),
];

/// Maps a transformer tensor name in any circulating spelling to the diffusers spelling.
/// Returns `None` for tensors of other components (VAE, audio VAE, vocoder, text side),
/// which a transformer load skips.
pub fn canonical_transformer_name(name: &str) -> Option<String> {
    if OTHER_COMPONENT_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let mut n = name;
    for p in TRANSFORMER_PREFIXES {
        if let Some(rest) = n.strip_prefix(p) {
            n = rest;
            break;
        }
    }
    // The text connectors sit under the transformer's prefix in the single file; they are
    // the text encoder's (`crate::text::canonical_connector_name`), ~1.4 B parameters the
    // transformer must not hold.
    if CONNECTOR_PREFIXES.iter().any(|p| n.starts_with(p)) {
        return None;
    }
    let mut out = n.to_string();
    for (old, new) in LEADING_RENAMES {
        if let Some(rest) = n.strip_prefix(old) {
            out = format!("{new}{rest}");
            break;
        }
    }
    for (old, new) in SUBSTRING_RENAMES {
        if out.contains(old) {
            out = out.replace(old, new);
        }
    }
    Some(out)
}

/// What the VAE decoder's and encoder's rename maps share, for one half (`part`: `decoder`
/// or `encoder`): the latent statistics under both spellings, diffusers names as they are,
/// and for the single file's `vae.`-prefixed names the rest after `<part>.`, to map further.
pub(crate) enum VaeName<'a> {
    /// The canonical name, final.
    Done(String),
    /// An original (`vae.`) name of this half: what follows `<part>.`.
    Original(&'a str),
}

pub(crate) fn split_vae_name<'a>(name: &'a str, part: &str) -> Option<VaeName<'a>> {
    let (n, original) = match name.strip_prefix("vae.") {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    if original {
        match n {
            "per_channel_statistics.mean-of-means" => {
                return Some(VaeName::Done("latents_mean".into()));
            }
            "per_channel_statistics.std-of-means" => {
                return Some(VaeName::Done("latents_std".into()));
            }
            _ => {}
        }
    }
    if n == "latents_mean" || n == "latents_std" {
        return Some(VaeName::Done(n.to_string()));
    }
    let rest = n.strip_prefix(part)?.strip_prefix('.')?;
    if !original {
        return Some(VaeName::Done(n.to_string()));
    }
    Some(VaeName::Original(rest))
}

/// Maps a video-VAE tensor name to the diffusers spelling (`decoder.…`, `latents_mean`,
/// `latents_std`). Accepts diffusers names as they are and the Lightricks single file's
/// `vae.`-prefixed original names, where the decoder's `up_blocks.K` run mid block,
/// upsampler, block, upsampler, block, ... (`K = 0` → `mid_block`, odd `K = 2i + 1` →
/// `up_blocks.i.upsamplers.0`, even `K = 2i + 2` → `up_blocks.i`), `res_blocks` are
/// `resnets` and `per_channel_statistics.{mean,std}-of-means` are the latent statistics.
/// Returns `None` for what a decoder load skips: encoder tensors, unused statistics and
/// other components' tensors.
pub fn canonical_vae_name(name: &str) -> Option<String> {
    let rest = match split_vae_name(name, "decoder")? {
        VaeName::Done(name) => return Some(name),
        VaeName::Original(rest) => rest,
    };
    // Timestep-conditioned decoders name their final embedder and table `last_*` in the
    // original checkpoints (as LTX-Video's did).
    let rest = rest
        .replace("res_blocks", "resnets")
        .replace("last_time_embedder", "time_embedder")
        .replace("last_scale_shift_table", "scale_shift_table");
    let Some(blocks) = rest.strip_prefix("up_blocks.") else {
        return Some(format!("decoder.{rest}"));
    };
    let (k, tail) = blocks.split_once('.')?;
    let k: usize = k.parse().ok()?;
    let head = match k {
        0 => "mid_block".to_string(),
        k if k % 2 == 1 => format!("up_blocks.{}.upsamplers.0", (k - 1) / 2),
        k => format!("up_blocks.{}", (k - 2) / 2),
    };
    Some(format!("decoder.{head}.{tail}"))
}

/// Maps an audio-VAE tensor name to the diffusers spelling (`decoder.…`, `latents_mean`,
/// `latents_std`). Accepts diffusers names as they are (the `audio_vae/` folder) and the
/// Lightricks single file's `audio_vae.`-prefixed names, whose latent statistics are
/// `per_channel_statistics.{mean,std}-of-means` (diffusers' `convert_ltx2_audio_vae_to_diffusers`).
/// Returns `None` for what a decoder load skips: encoder tensors and other components'.
pub fn canonical_audio_vae_name(name: &str) -> Option<String> {
    let (n, original) = match name.strip_prefix("audio_vae.") {
        Some(rest) => (rest, true),
        None => (name, false),
    };
    if original {
        match n {
            "per_channel_statistics.mean-of-means" => return Some("latents_mean".into()),
            "per_channel_statistics.std-of-means" => return Some("latents_std".into()),
            _ => {}
        }
    }
    if n == "latents_mean" || n == "latents_std" || n.starts_with("decoder.") {
        return Some(n.to_string());
    }
    None
}

/// Original vocoder module names → diffusers' (the conversion script's
/// `LTX_2_0_VOCODER_RENAME_DICT`), applied to the first path segment.
const VOCODER_RENAMES: [(&str, &str); 4] = [
    ("ups", "upsamplers"),
    ("resblocks", "resnets"),
    ("conv_pre", "conv_in"),
    ("conv_post", "conv_out"),
];

/// Maps a vocoder tensor name to the diffusers spelling (`conv_in`, `upsamplers.i`,
/// `resnets.j.convs{1,2}.d`, `conv_out`). Accepts diffusers names (the `vocoder/` folder) and
/// the original names (`ups`, `resblocks`, `conv_pre`, `conv_post`), bare or under the
/// Lightricks single file's `vocoder.` prefix. Returns `None` for other tensors.
pub fn canonical_vocoder_name(name: &str) -> Option<String> {
    let n = name.strip_prefix("vocoder.").unwrap_or(name);
    let (head, rest) = n.split_once('.')?;
    let head = VOCODER_RENAMES
        .iter()
        .find(|(old, _)| *old == head)
        .map_or(head, |(_, new)| *new);
    matches!(head, "conv_in" | "conv_out" | "upsamplers" | "resnets")
        .then(|| format!("{head}.{rest}"))
}

/// A model component whose tensors a checkpoint holds, with its rename map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Component {
    /// The audio-video transformer ([`canonical_transformer_name`]).
    Transformer,
    /// The video VAE decoder ([`canonical_vae_name`]).
    VideoVae,
    /// The audio VAE decoder ([`canonical_audio_vae_name`]).
    AudioVae,
    /// The vocoder ([`canonical_vocoder_name`]).
    Vocoder,
}

impl Component {
    /// This component's rename map.
    pub fn rename(self) -> fn(&str) -> Option<String> {
        match self {
            Self::Transformer => canonical_transformer_name,
            Self::VideoVae => canonical_vae_name,
            Self::AudioVae => canonical_audio_vae_name,
            Self::Vocoder => canonical_vocoder_name,
        }
    }
}

/// Tensors keyed by canonical name, converted to one dtype on one device.
#[derive(Debug, Default)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
    /// canonical name → name in the file, for error messages.
    sources: HashMap<String, String>,
}

impl Weights {
    /// Loads every transformer tensor from the given safetensors files (a single file or
    /// the shards of a component folder), renaming through [`canonical_transformer_name`].
    pub fn load_transformer(paths: &[&Path], dtype: DType, device: &Device) -> Result<Self> {
        Self::load_renamed(paths, dtype, device, canonical_transformer_name)
    }

    /// Builds a store from in-memory tensors named in any circulating spelling.
    pub fn from_tensors(tensors: impl IntoIterator<Item = (String, Tensor)>) -> Result<Self> {
        Self::from_renamed(tensors, canonical_transformer_name)
    }

    /// Loads the video VAE decoder's tensors (and latent statistics) from safetensors files,
    /// renaming through [`canonical_vae_name`]; everything else in the files is skipped.
    pub fn load_vae(paths: &[&Path], dtype: DType, device: &Device) -> Result<Self> {
        Self::load_renamed(paths, dtype, device, canonical_vae_name)
    }

    /// Builds a video-VAE store from in-memory tensors (see [`canonical_vae_name`]).
    pub fn from_vae_tensors(tensors: impl IntoIterator<Item = (String, Tensor)>) -> Result<Self> {
        Self::from_renamed(tensors, canonical_vae_name)
    }

    /// Loads the audio VAE decoder's tensors (and latent statistics), renaming through
    /// [`canonical_audio_vae_name`]; everything else in the files is skipped.
    pub fn load_audio_vae(paths: &[&Path], dtype: DType, device: &Device) -> Result<Self> {
        Self::load_renamed(paths, dtype, device, canonical_audio_vae_name)
    }

    /// Builds an audio-VAE store from in-memory tensors (see [`canonical_audio_vae_name`]).
    pub fn from_audio_vae_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<Self> {
        Self::from_renamed(tensors, canonical_audio_vae_name)
    }

    /// Loads the vocoder's tensors, renaming through [`canonical_vocoder_name`].
    pub fn load_vocoder(paths: &[&Path], dtype: DType, device: &Device) -> Result<Self> {
        Self::load_renamed(paths, dtype, device, canonical_vocoder_name)
    }

    /// Builds a vocoder store from in-memory tensors (see [`canonical_vocoder_name`]).
    pub fn from_vocoder_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<Self> {
        Self::from_renamed(tensors, canonical_vocoder_name)
    }

    /// One store per entry of `components`, from the same files, each file read once (the
    /// Lightricks single checkpoint holds all four components).
    pub fn load_many(
        paths: &[&Path],
        dtype: DType,
        device: &Device,
        components: &[Component],
    ) -> Result<Vec<Self>> {
        let renames: Vec<fn(&str) -> Option<String>> =
            components.iter().map(|c| c.rename()).collect();
        Self::load_components(paths, dtype, device, &renames)
    }

    /// Loads the transformer's and the VAE decoder's tensors from the same files (the
    /// Lightricks single checkpoint holds both), reading each file once.
    pub fn load_transformer_and_vae(
        paths: &[&Path],
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, Self)> {
        let mut both = Self::load_components(
            paths,
            dtype,
            device,
            &[canonical_transformer_name, canonical_vae_name],
        )?;
        let vae = both.pop().unwrap_or_default();
        let transformer = both.pop().unwrap_or_default();
        Ok((transformer, vae))
    }

    /// Loads the tensors of `paths` that `rename` keeps (under the names it returns),
    /// converted to `dtype`, for components with their own rename map (the text encoder's
    /// `crate::text::canonical_gemma_name` and `canonical_connector_name`).
    pub fn load_named(
        paths: &[&Path],
        dtype: DType,
        device: &Device,
        rename: fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Self::load_renamed(paths, dtype, device, rename)
    }

    /// Builds a store from in-memory tensors, keeping those `rename` maps to a name.
    pub fn from_named_tensors(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        rename: fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Self::from_renamed(tensors, rename)
    }

    /// Loads the tensors of `paths` that `rename` keeps, converted to `dtype`.
    fn load_renamed(
        paths: &[&Path],
        dtype: DType,
        device: &Device,
        rename: fn(&str) -> Option<String>,
    ) -> Result<Self> {
        Ok(Self::load_components(paths, dtype, device, &[rename])?
            .pop()
            .unwrap_or_default())
    }

    /// One store per `renames` entry, holding the tensors of `paths` that rename keeps. Each
    /// file is read once into host memory; only kept tensors go to `device`, one at a time,
    /// converted to `dtype` as they arrive (so a 19B checkpoint never sits on the GPU whole,
    /// nor in its file dtype). Names are taken in sorted order per file, so a duplicate is
    /// reported the same way on every run. (E.g. the transformer, the VAE decoder and the
    /// VAE encoder from one Lightricks file: `[canonical_transformer_name,
    /// canonical_vae_name, canonical_vae_encoder_name]`.)
    pub fn load_components(
        paths: &[&Path],
        dtype: DType,
        device: &Device,
        renames: &[fn(&str) -> Option<String>],
    ) -> Result<Vec<Self>> {
        let mut stores: Vec<Self> = renames.iter().map(|_| Self::default()).collect();
        for path in paths {
            let data = std::fs::read(path)
                .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", path.display())))?;
            let file = candle_core::safetensors::SliceSafetensors::new(&data).map_err(|e| {
                InferenceError::Config(format!("{} is not a safetensors file: {e}", path.display()))
            })?;
            let mut names: Vec<String> = file.tensors().into_iter().map(|(n, _)| n).collect();
            names.sort();
            for name in names {
                for (store, rename) in stores.iter_mut().zip(renames) {
                    if let Some(canonical) = rename(&name) {
                        let tensor = file.load(&name, device)?.to_dtype(dtype)?;
                        store.insert(canonical, name.clone(), tensor)?;
                    }
                }
            }
        }
        Ok(stores)
    }

    fn from_renamed(
        tensors: impl IntoIterator<Item = (String, Tensor)>,
        rename: fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut w = Self::default();
        for (name, tensor) in tensors {
            if let Some(canonical) = rename(&name) {
                w.insert(canonical, name, tensor)?;
            }
        }
        Ok(w)
    }

    fn insert(&mut self, canonical: String, source: String, tensor: Tensor) -> Result<()> {
        if let Some(first) = self.sources.get(&canonical) {
            return Err(InferenceError::DuplicateWeight {
                canonical,
                first: first.clone(),
                second: source,
            });
        }
        self.sources.insert(canonical.clone(), source);
        self.tensors.insert(canonical, tensor);
        Ok(())
    }

    /// The same tensors on `device` in `dtype` (a copy; e.g. a single file's text
    /// connectors, read with everything else onto the GPU, moved to where the text encoder
    /// runs).
    pub fn to(&self, device: &Device, dtype: DType) -> Result<Self> {
        let tensors = self
            .tensors
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_device(device)?.to_dtype(dtype)?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Self {
            tensors,
            sources: self.sources.clone(),
        })
    }

    /// Number of tensors held.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether no tensor is held.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Canonical names held, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The tensor with canonical `name`, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| InferenceError::MissingWeight(name.to_string()))?;
        if t.dims() != shape {
            return Err(InferenceError::WeightShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(t.clone())
    }
}
