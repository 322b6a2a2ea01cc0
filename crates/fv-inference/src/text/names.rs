//! Tensor names of the text side in the checkpoints that circulate.

/// First path segments of Gemma's language model (after any prefix).
const GEMMA_PARTS: [&str; 3] = ["layers.", "embed_tokens.", "norm."];

/// Maps a Gemma-3 tensor name to the canonical `embed_tokens.weight` / `layers.{i}.…` /
/// `norm.weight`. Accepts the language model under `language_model.model.` (Google's
/// checkpoints, and what transformers 5 writes), `model.language_model.` (transformers'
/// in-memory names), `model.` (`Gemma3ForCausalLM`) or no prefix (`Gemma3TextModel`).
/// Returns `None` for everything else: the SigLIP tower, the multimodal projector,
/// `lm_head`.
pub fn canonical_gemma_name(name: &str) -> Option<String> {
    let rest = ["language_model.model.", "model.language_model.", "model."]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    GEMMA_PARTS
        .iter()
        .any(|p| rest.starts_with(p))
        .then(|| rest.to_string())
}

/// Original (Lightricks) → diffusers connector renames, as in diffusers' converter
/// (`LTX_2_0_CONNECTORS_KEYS_RENAME_DICT`).
const CONNECTOR_RENAMES: [(&str, &str); 6] = [
    ("video_embeddings_connector.", "video_connector."),
    ("audio_embeddings_connector.", "audio_connector."),
    (
        "text_embedding_projection.aggregate_embed.",
        "text_proj_in.",
    ),
    (".transformer_1d_blocks.", ".transformer_blocks."),
    (".q_norm.", ".norm_q."),
    (".k_norm.", ".norm_k."),
];

/// Maps a text-connector tensor name to diffusers' spelling (`text_proj_in.weight`,
/// `{video,audio}_connector.…`). Accepts diffusers' `connectors/` names as they are and the
/// Lightricks single file's (`model.diffusion_model.{video,audio}_embeddings_connector.
/// transformer_1d_blocks.N.attn1.q_norm…`, `text_embedding_projection.aggregate_embed.weight`
/// inside or outside the `model.diffusion_model.` prefix, an optional `connectors.` prefix).
/// Returns `None` for every other tensor (the transformer's, the VAEs', the vocoder's).
pub fn canonical_connector_name(name: &str) -> Option<String> {
    let n = name.strip_prefix("model.diffusion_model.").unwrap_or(name);
    let n = n.strip_prefix("connectors.").unwrap_or(n);
    let mut out = n.to_string();
    for (old, new) in CONNECTOR_RENAMES {
        if out.contains(old) {
            out = out.replace(old, new);
        }
    }
    ["text_proj_in.", "video_connector.", "audio_connector."]
        .iter()
        .any(|p| out.starts_with(p))
        .then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma_prefixes() {
        for n in [
            "language_model.model.layers.3.mlp.up_proj.weight",
            "model.language_model.layers.3.mlp.up_proj.weight",
            "model.layers.3.mlp.up_proj.weight",
            "layers.3.mlp.up_proj.weight",
        ] {
            assert_eq!(
                canonical_gemma_name(n).as_deref(),
                Some("layers.3.mlp.up_proj.weight"),
                "{n}"
            );
        }
        for n in [
            "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
            "model.vision_tower.encoder.layers.0.mlp.fc1.weight",
            "multi_modal_projector.mm_soft_emb_norm.weight",
            "model.multi_modal_projector.mm_input_projection_weight",
            "lm_head.weight",
        ] {
            assert_eq!(canonical_gemma_name(n), None, "{n}");
        }
    }

    #[test]
    fn connector_spellings() {
        let pairs = [
            (
                "model.diffusion_model.video_embeddings_connector.transformer_1d_blocks.1.attn1.q_norm.weight",
                "video_connector.transformer_blocks.1.attn1.norm_q.weight",
            ),
            (
                "model.diffusion_model.audio_embeddings_connector.learnable_registers",
                "audio_connector.learnable_registers",
            ),
            (
                "text_embedding_projection.aggregate_embed.weight",
                "text_proj_in.weight",
            ),
            (
                "model.diffusion_model.text_embedding_projection.aggregate_embed.weight",
                "text_proj_in.weight",
            ),
            (
                "connectors.video_embeddings_connector.transformer_1d_blocks.0.ff.net.2.bias",
                "video_connector.transformer_blocks.0.ff.net.2.bias",
            ),
            (
                "audio_connector.transformer_blocks.0.attn1.norm_k.weight",
                "audio_connector.transformer_blocks.0.attn1.norm_k.weight",
            ),
        ];
        for (from, to) in pairs {
            assert_eq!(
                canonical_connector_name(from).as_deref(),
                Some(to),
                "{from}"
            );
        }
        for n in [
            "model.diffusion_model.transformer_blocks.0.attn1.q_norm.weight",
            "model.diffusion_model.patchify_proj.weight",
            "vae.decoder.conv_in.conv.weight",
            "vocoder.conv_pre.weight",
        ] {
            assert_eq!(canonical_connector_name(n), None, "{n}");
        }
    }
}
