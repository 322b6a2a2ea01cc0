#!/usr/bin/env python3
"""Weight manifests of LTX-2's real-size text side, made with the reference classes.

Not part of CI: the JSON files it writes are committed, and `cargo test -p fv-inference`
(tests/text_manifest.rs) checks that the Rust models expect exactly these tensors and that
every name goes through the crate's rename maps.

How to run (CPU only, seconds; nothing is allocated, the models live on torch's meta device):

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_text_manifests.py

Outputs under tests/fixtures/:

- manifest_gemma3_12b.json: `Gemma3ForConditionalGeneration` at `google/gemma-3-12b-it`'s
  config (transformers 5.25; the text config lists only what differs from the class
  defaults, as Google's config.json does; the SigLIP config is Google's too). "text_config"
  is the full text config as transformers resolves it; "parameters" is every tensor of
  `state_dict()` as [name, shape, language_model] (1 for the text model LTX-2 runs, 0 for
  the vision tower, the projector and the tied lm_head).
- manifest_ltx2_connectors.json: `LTX2TextConnectors` at the LTX-2.0 config
  (`get_ltx2_connectors_config("2.0")` in diffusers' scripts/convert_ltx2_to_diffusers.py) as
  [diffusers name, Lightricks single-file name, shape]; the Lightricks names are checked by
  renaming them back with the converter's table and loading them strictly.
"""

import json
import os
import sys

import torch

import diffusers
import transformers
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from transformers import Gemma3Config, Gemma3ForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_text_fixtures import converter_rename, lightricks_connector_name  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

# google/gemma-3-12b-it config.json (also google/gemma-3-12b-it-qat-q4_0-unquantized, the
# converter's default text encoder).
GEMMA_12B_TEXT = {
    "hidden_size": 3840,
    "intermediate_size": 15360,
    "model_type": "gemma3_text",
    "num_attention_heads": 16,
    "num_hidden_layers": 48,
    "num_key_value_heads": 8,
    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
    "sliding_window": 1024,
}
GEMMA_12B_VISION = {
    "hidden_size": 1152,
    "image_size": 896,
    "intermediate_size": 4304,
    "model_type": "siglip_vision_model",
    "num_attention_heads": 16,
    "num_hidden_layers": 27,
    "patch_size": 14,
    "vision_use_head": False,
}

LTX2_CONNECTORS = {
    "caption_channels": 3840,
    "text_proj_in_factor": 49,
    "video_connector_num_attention_heads": 30,
    "video_connector_attention_head_dim": 128,
    "video_connector_num_layers": 2,
    "video_connector_num_learnable_registers": 128,
    "audio_connector_num_attention_heads": 30,
    "audio_connector_attention_head_dim": 128,
    "audio_connector_num_layers": 2,
    "audio_connector_num_learnable_registers": 128,
    "connector_rope_base_seq_len": 4096,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_temporal_positioning": False,
    "rope_type": "split",
}


def write_rows(path: str, header: dict, rows: list) -> None:
    with open(path, "w") as f:
        f.write("{\n")
        for k, v in header.items():
            f.write(f" {json.dumps(k)}: {json.dumps(v)},\n")
        f.write(' "parameters": [\n')
        f.write(",\n".join(json.dumps(r, separators=(",", ":")) for r in rows))
        f.write("\n ]\n}\n")
    os.chmod(path, 0o644)


def gemma_manifest() -> None:
    config = Gemma3Config(
        text_config=GEMMA_12B_TEXT, vision_config=GEMMA_12B_VISION, mm_tokens_per_image=256
    )
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(config)
    state = model.state_dict()
    lm_prefix = "model.language_model."
    rows = [[k, list(v.shape), int(k.startswith(lm_prefix))] for k, v in state.items()]
    lm = sum(state[k].numel() for k, _, f in rows if f)
    total = sum(p.numel() for p in model.parameters())
    text_config = config.text_config.to_dict()
    header = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "google_text_config": GEMMA_12B_TEXT,
        "text_config": text_config,
        "num_language_model_parameters": lm,
        "num_parameters": total,
    }
    out = os.path.join(FIXTURES, "manifest_gemma3_12b.json")
    write_rows(out, header, rows)
    print(f"gemma-3-12b: {sum(f for _, _, f in rows)} language-model tensors, {lm / 1e9:.3f} B "
          f"parameters ({total / 1e9:.3f} B with the vision tower) -> {out}")


def connectors_manifest() -> None:
    with torch.device("meta"):
        model = LTX2TextConnectors(**LTX2_CONNECTORS)
    state = model.state_dict()
    rows = [[k, lightricks_connector_name(k), list(v.shape)] for k, v in state.items()]
    back = {converter_rename(lt): state[k] for k, lt, _ in rows}
    with torch.device("meta"):
        check = LTX2TextConnectors(**LTX2_CONNECTORS)
    check.load_state_dict(back, strict=True, assign=True)
    total = sum(v.numel() for v in state.values())
    header = {
        "diffusers_version": diffusers.__version__,
        "config": dict(model.config),
        "num_parameters": total,
    }
    out = os.path.join(FIXTURES, "manifest_ltx2_connectors.json")
    write_rows(out, header, rows)
    print(f"connectors: {len(rows)} tensors, {total / 1e9:.3f} B parameters -> {out}")


if __name__ == "__main__":
    gemma_manifest()
    connectors_manifest()
