//! LTX-2's text side: prompt → Gemma-3 → connectors → caption embeddings for the DiT.
//!
//! - [`GemmaTokenizer`]: the pipeline's tokenization (strip, `<bos>`, ≤ 1024 tokens, left
//!   padding with `<pad>`);
//! - [`Gemma3TextEncoder`]: Gemma-3's text model returning all `layers + 1` hidden states;
//! - [`Ltx2TextConnectors`]: per-layer masked normalisation, `text_proj_in`, the video and
//!   audio connector transformers with learnable registers;
//! - [`Ltx2TextEncoder`]: the three together, loaded from a diffusers pipeline folder or from
//!   a Gemma folder plus the Lightricks single file, with [`Ltx2TextEncoder::encode`] as the
//!   call the pipeline makes.
//!
//! Every piece matches diffusers 0.42.1 / transformers 5.25 (`tests/text_parity.rs`).

mod connectors;
mod connectors_config;
mod gemma;
mod gemma_config;
mod names;
mod tokenizer;

pub use connectors::{CaptionEmbeddings, Ltx2TextConnectors};
pub use connectors_config::ConnectorsConfig;
pub use gemma::{Gemma3TextEncoder, MAX_TEXT_TOKENS};
pub use gemma_config::{GemmaConfig, LayerType, RopeParams};
pub use names::{canonical_connector_name, canonical_gemma_name};
pub use tokenizer::{GemmaTokenizer, MAX_PROMPT_BYTES, PaddedBatch, python_strip};

use crate::{InferenceError, Result};
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// The pipeline's text length (`max_sequence_length`): prompts are cut to this many tokens
/// and the DiT sees this many caption slots.
pub const TEXT_LEN: usize = 1024;

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", path.display())))
}

impl Gemma3TextEncoder {
    /// Loads a Gemma-3 folder: `config.json` (nested `text_config` or flat) and the
    /// safetensors shards (those a `*.safetensors.index.json` lists, else every
    /// `*.safetensors`), weights converted to `dtype` as they are read. Every language-model
    /// tensor is checked against the config first (errors name the file); the vision tower
    /// and `lm_head` are skipped.
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let cfg = GemmaConfig::from_json(&read_text(&cfg_path)?)
            .map_err(|e| InferenceError::Config(format!("{}: {e}", cfg_path.display())))?;
        let shards = crate::files::safetensors_files(dir)?;
        let paths: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
        let w = crate::files::load_gemma(&paths, &Self::expected_weights(&cfg), dtype, device)?;
        Self::new(&cfg, &w, device)
    }
}

impl Ltx2TextConnectors {
    /// Loads diffusers' `connectors/` folder (`config.json` + safetensors).
    pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let p = dir.join("config.json");
        let cfg = ConnectorsConfig::from_json(&read_text(&p)?)
            .map_err(|e| InferenceError::Config(format!("{}: {e}", p.display())))?;
        let shards = crate::files::safetensors_files(dir)?;
        let paths: Vec<&Path> = shards.iter().map(PathBuf::as_path).collect();
        Self::load_files(&paths, &cfg, device, dtype)
    }

    /// Loads the connector tensors of `paths` (diffusers names or the Lightricks single
    /// file's, see [`canonical_connector_name`]; other tensors are skipped) for `cfg`. Every
    /// connector tensor is checked against `cfg` first; errors name the file.
    pub fn load_files(
        paths: &[&Path],
        cfg: &ConnectorsConfig,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        cfg.validate()?;
        let w = crate::files::load_connectors(paths, &Self::expected_weights(cfg), dtype, device)?;
        Self::new(cfg, &w, device)
    }
}

/// Prompt → caption embeddings, as diffusers' `LTX2Pipeline` computes them (`encode_prompt`
/// then `connectors`), for the video and the audio stream.
#[derive(Debug, Clone)]
pub struct Ltx2TextEncoder {
    tokenizer: GemmaTokenizer,
    gemma: Gemma3TextEncoder,
    connectors: Ltx2TextConnectors,
    max_len: usize,
}

impl Ltx2TextEncoder {
    /// Puts the pieces together; Gemma's width and number of hidden states must be what the
    /// connectors take. The text length starts at [`TEXT_LEN`].
    pub fn new(
        tokenizer: GemmaTokenizer,
        gemma: Gemma3TextEncoder,
        connectors: Ltx2TextConnectors,
    ) -> Result<Self> {
        let (g, c) = (gemma.config(), connectors.config());
        if g.hidden_size != c.caption_channels || g.num_hidden_states() != c.text_proj_in_factor {
            return Err(InferenceError::Config(format!(
                "Gemma gives {} hidden states of width {}, the connectors take {} of width {}",
                g.num_hidden_states(),
                g.hidden_size,
                c.text_proj_in_factor,
                c.caption_channels
            )));
        }
        Self {
            tokenizer,
            gemma,
            connectors,
            max_len: TEXT_LEN,
        }
        .with_max_length(TEXT_LEN)
    }

    /// Sets the text length (the pipeline's `max_sequence_length`): 1 to [`MAX_TEXT_TOKENS`],
    /// a multiple of both register counts.
    pub fn with_max_length(mut self, max_len: usize) -> Result<Self> {
        let c = self.connectors.config();
        let regs = [
            c.video_connector_num_learnable_registers.unwrap_or(1),
            c.audio_connector_num_learnable_registers.unwrap_or(1),
        ];
        if max_len == 0
            || max_len > MAX_TEXT_TOKENS
            || regs.iter().any(|&r| !max_len.is_multiple_of(r))
        {
            return Err(InferenceError::Config(format!(
                "text length {max_len}: must be 1..={MAX_TEXT_TOKENS} and a multiple of the \
                 registers ({} and {})",
                regs[0], regs[1]
            )));
        }
        self.max_len = max_len;
        Ok(self)
    }

    /// Loads a diffusers LTX-2 pipeline folder's text side: `text_encoder/` (Gemma-3
    /// `config.json` + safetensors shards), `tokenizer/tokenizer.json` and `connectors/`
    /// (`config.json` + safetensors). Weights are converted to `dtype` as they are read.
    pub fn load(root: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load_parts(
            &root.join("text_encoder"),
            &root.join("tokenizer").join("tokenizer.json"),
            &root.join("connectors"),
            device,
            dtype,
        )
    }

    /// Loads the pieces from separate places: a Gemma-3 folder (`config.json` + safetensors,
    /// e.g. FastVideo's `text_encoder/gemma` or a `google/gemma-3-12b-it` download), a
    /// `tokenizer.json`, and the connectors as a diffusers folder (`config.json` +
    /// safetensors) or as the Lightricks single checkpoint file (with
    /// [`ConnectorsConfig::ltx2`]). Every tensor is checked against the configs before the
    /// weights are read; errors name the file.
    pub fn load_parts(
        gemma_dir: &Path,
        tokenizer_json: &Path,
        connectors: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let tokenizer = GemmaTokenizer::from_file(tokenizer_json)?;
        let gemma = Gemma3TextEncoder::load(gemma_dir, device, dtype)?;
        let connectors = if connectors.is_dir() {
            Ltx2TextConnectors::load(connectors, device, dtype)?
        } else if connectors.is_file() {
            Ltx2TextConnectors::load_files(&[connectors], &ConnectorsConfig::ltx2(), device, dtype)?
        } else {
            return Err(InferenceError::Io(format!(
                "{} is neither a connectors folder nor a checkpoint file",
                connectors.display()
            )));
        };
        Self::new(tokenizer, gemma, connectors)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &GemmaTokenizer {
        &self.tokenizer
    }

    /// The Gemma-3 text model.
    pub fn gemma(&self) -> &Gemma3TextEncoder {
        &self.gemma
    }

    /// The connectors.
    pub fn connectors(&self) -> &Ltx2TextConnectors {
        &self.connectors
    }

    /// The text length (caption slots per prompt).
    pub fn max_length(&self) -> usize {
        self.max_len
    }

    /// Caption embeddings for `prompts` (one sample each): video and audio `[B, T, C]` in the
    /// weights' dtype and an all-ones mask `[B, T]`, T = [`max_length`](Self::max_length),
    /// equal to the reference pipeline's `connectors(encode_prompt(prompts))`.
    ///
    /// Cost per prompt of L tokens (L ≤ T, `<bos>` included): one Gemma forward over the L
    /// real tokens only, at the positions the padded reference gives them (the pad rows the
    /// reference computes are discarded by the connectors, so they are never computed here),
    /// the projection of each hidden state as it is produced (memory O(L × hidden), never the
    /// stacked `[T, hidden × (layers + 1)]` features), and both connectors over T slots.
    pub fn encode(&self, prompts: &[&str]) -> Result<CaptionEmbeddings> {
        if prompts.is_empty() {
            return Err(InferenceError::Input("no prompt to encode".into()));
        }
        let mut projected = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let ids = self.tokenizer.encode(prompt, self.max_len)?;
            let first = self.max_len - ids.len();
            let mut acc: Option<Tensor> = None;
            self.gemma.forward(&[ids], first, None, |layer, h| {
                let p = self.connectors.project_layer(layer, &h.squeeze(0)?)?;
                acc = Some(match acc.take() {
                    None => p,
                    Some(a) => (a + p)?,
                });
                Ok(())
            })?;
            projected.push(acc.ok_or_else(|| InferenceError::Input("no hidden state".into()))?);
        }
        self.connectors.connect(&projected, self.max_len)
    }

    /// The reference's intermediate `prompt_embeds`: Gemma's hidden states stacked layer
    /// fastest, `[B, T, hidden × (layers + 1)]` in the weights' dtype, with the tokenizer's
    /// mask `[B, T]` (f32, 1 = real token). Real rows equal the reference's; pad rows are 0
    /// (the reference fills them with values the connectors discard). Memory grows with
    /// `T × hidden × (layers + 1)` (770 MB per prompt in f32 at the 12B size):
    /// [`encode`](Self::encode) avoids it.
    pub fn prompt_features(&self, prompts: &[&str]) -> Result<(Tensor, Tensor)> {
        let (t, h) = (self.max_len, self.gemma.config().hidden_size);
        let f = self.gemma.config().num_hidden_states();
        let dev = self.gemma.device();
        let mut rows = Vec::with_capacity(prompts.len());
        let mut masks = Vec::with_capacity(prompts.len() * t);
        for prompt in prompts {
            let ids = self.tokenizer.encode(prompt, t)?;
            let l = ids.len();
            let states = self.gemma.hidden_states(&[ids], t - l, None)?;
            let stacked = Tensor::stack(&states, 3)?.reshape((l, h * f))?;
            let padded = if l == t {
                stacked
            } else {
                let pad = Tensor::zeros((t - l, h * f), stacked.dtype(), dev)?;
                Tensor::cat(&[pad, stacked], 0)?
            };
            rows.push(padded);
            masks.extend((0..t).map(|i| if i >= t - l { 1f32 } else { 0.0 }));
        }
        if rows.is_empty() {
            return Err(InferenceError::Input("no prompt to encode".into()));
        }
        Ok((
            Tensor::stack(&rows, 0)?,
            Tensor::from_vec(masks, (prompts.len(), t), dev)?,
        ))
    }
}
