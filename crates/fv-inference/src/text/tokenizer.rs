//! Gemma's tokenizer as LTX-2's pipeline calls it.
//!
//! diffusers' `LTX2Pipeline._get_gemma_prompt_embeds` strips the prompt (Python's
//! `str.strip`), tokenizes with `<bos>` first, truncates to `max_length` (1024) tokens and
//! pads on the left with `<pad>` (id 0; the pipeline falls back to `<eos>` only when the
//! tokenizer has no pad token). transformers 5's `GemmaTokenizer` keeps the vocabulary,
//! merges and added tokens of `tokenizer.json` but installs its own normaliser (space → `▁`)
//! and pre-tokeniser (split on spaces, merged with the previous piece), and its
//! `add_bos_token=True` post-processor; this module does the same, so a `tokenizer.json`
//! whose own normaliser differs still tokenizes as the reference does.

use crate::{InferenceError, Result};
use std::path::Path;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{SplitDelimiterBehavior, Tokenizer};

/// Largest prompt accepted, in bytes (the pipeline keeps at most 1024 tokens of it anyway).
pub const MAX_PROMPT_BYTES: usize = 1 << 20;

/// Python's `str.strip()`: Unicode whitespace plus the separators `\x1c`..`\x1f`, which
/// Python counts as whitespace and Rust's `char::is_whitespace` does not.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// Token ids of a batch, left-padded to one length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// `[B][T]` token ids, pads first.
    pub ids: Vec<Vec<u32>>,
    /// `[B][T]`, true for real tokens.
    pub mask: Vec<Vec<bool>>,
}

/// Gemma's tokenizer with the pipeline's settings (see the module docs).
#[derive(Debug, Clone)]
pub struct GemmaTokenizer {
    inner: Tokenizer,
    bos: u32,
    pad: u32,
}

impl GemmaTokenizer {
    /// Reads a `tokenizer.json` (Gemma's: BPE with byte fallback, `<bos>`, `<pad>`/`<eos>`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| InferenceError::Io(format!("cannot read {}: {e}", path.display())))?;
        Self::from_bytes(&bytes)
            .map_err(|e| InferenceError::Config(format!("{}: {e}", path.display())))
    }

    /// Parses the contents of a `tokenizer.json`.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let mut inner = Tokenizer::from_bytes(json)
            .map_err(|e| InferenceError::Config(format!("not a tokenizer.json: {e}")))?;
        let normalizer = Replace::new(" ", "▁")
            .map_err(|e| InferenceError::Config(format!("tokenizer normaliser: {e}")))?;
        let split = Split::new(
            SplitPattern::String(" ".into()),
            SplitDelimiterBehavior::MergedWithPrevious,
            false,
        )
        .map_err(|e| InferenceError::Config(format!("tokenizer pre-tokeniser: {e}")))?;
        inner
            .with_normalizer(Some(normalizer))
            .map_err(|e| InferenceError::Config(format!("tokenizer normaliser: {e}")))?;
        inner.with_pre_tokenizer(Some(split));
        // A tokenizer.json saved by transformers may carry the padding and truncation of its
        // last call (e.g. left padding to 32); the pipeline pads and truncates itself.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| InferenceError::Config(format!("tokenizer truncation: {e}")))?;
        let id = |t: &str| inner.token_to_id(t);
        let bos = id("<bos>")
            .ok_or_else(|| InferenceError::Config("tokenizer has no <bos> token".into()))?;
        let pad = id("<pad>").or_else(|| id("<eos>")).ok_or_else(|| {
            InferenceError::Config("tokenizer has neither <pad> nor <eos>".into())
        })?;
        Ok(Self { inner, bos, pad })
    }

    /// Id of `<bos>`, the first token of every prompt.
    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    /// Id the pipeline pads with (`<pad>`, else `<eos>`).
    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// The real tokens of one prompt as the pipeline sees them: stripped, `<bos>` then the
    /// first `max_len − 1` pieces. Errors: `max_len` 0, a prompt over [`MAX_PROMPT_BYTES`].
    pub fn encode(&self, prompt: &str, max_len: usize) -> Result<Vec<u32>> {
        if max_len == 0 {
            return Err(InferenceError::Input("max_len must be at least 1".into()));
        }
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(InferenceError::Input(format!(
                "prompt is {} bytes, at most {MAX_PROMPT_BYTES}",
                prompt.len()
            )));
        }
        let enc = self
            .inner
            .encode(python_strip(prompt), false)
            .map_err(|e| InferenceError::Input(format!("cannot tokenize the prompt: {e}")))?;
        let mut ids = Vec::with_capacity(max_len.min(enc.get_ids().len() + 1));
        ids.push(self.bos);
        ids.extend(enc.get_ids().iter().take(max_len - 1));
        Ok(ids)
    }

    /// The pipeline's padded batch: ids `[B][max_len]` left-padded with [`pad_id`](Self::pad_id)
    /// and the attention mask.
    pub fn encode_padded(&self, prompts: &[&str], max_len: usize) -> Result<PaddedBatch> {
        let mut ids = Vec::with_capacity(prompts.len());
        let mut mask = Vec::with_capacity(prompts.len());
        for p in prompts {
            let real = self.encode(p, max_len)?;
            let pad = max_len - real.len();
            let mut row = vec![self.pad; pad];
            row.extend(&real);
            ids.push(row);
            let mut m = vec![false; pad];
            m.resize(max_len, true);
            mask.push(m);
        }
        Ok(PaddedBatch { ids, mask })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strip_matches_python() {
        assert_eq!(python_strip("\x1f\u{3000} a b \t\n\x1c"), "a b");
        assert_eq!(python_strip("   "), "");
        assert_eq!(
            python_strip("\u{200b}x"),
            "\u{200b}x",
            "ZWSP is not whitespace"
        );
    }

    #[test]
    fn padding_and_truncation_stored_in_the_file_are_ignored() {
        let plain = GemmaTokenizer::from_bytes(crate::tiny::TOKENIZER_JSON).unwrap();
        // transformers saves the padding and truncation of the tokenizer's last call.
        let mut json: serde_json::Value =
            serde_json::from_slice(crate::tiny::TOKENIZER_JSON).unwrap();
        json["padding"] = serde_json::json!({"strategy": {"Fixed": 32}, "direction": "Left",
            "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "<pad>"});
        json["truncation"] = serde_json::json!({"direction": "Right", "max_length": 4,
            "strategy": "LongestFirst", "stride": 0});
        let saved = GemmaTokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
        let prompt = "a red fox runs across the snowy field";
        let want = plain.encode(prompt, 1024).unwrap();
        assert!(want.len() > 5);
        assert_eq!(saved.encode(prompt, 1024).unwrap(), want);
    }
}
