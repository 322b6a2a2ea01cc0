#!/usr/bin/env python3
"""Weights manifest of the real-size LTX-2 (19B) transformer, made with the reference classes.

Not part of CI: the JSON it writes is committed, and `cargo test -p fv-inference` checks that
the Rust model expects exactly the video-stream entries and that every name goes through the
crate's rename map.

How to run (CPU only, a few seconds; nothing is allocated, the model lives on torch's meta
device):

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_manifest.py

The config is the published LTX-2.0 one, as diffusers' own conversion script states it
(`scripts/convert_ltx2_to_diffusers.py`, `get_ltx2_transformer_config("2.0")`, in the
diffusers GitHub repository; the PyPI package does not ship it, and its single-file loader
fetches `Lightricks/LTX-2`'s config from the Hub). Constructor defaults are NOT the real model
(e.g. `rope_type` defaults to "interleaved"); keys the script leaves out take the defaults of
diffusers 0.42.1, which for LTX-2.0 are the released values (no gated attention, no
cross-attention modulation, biased feed-forward, prompt embeddings).

It also writes tests/fixtures/manifest_ltx2_vae_decoder.json: the video VAE decoder's tensors and
latent statistics at the published config ([diffusers name, Lightricks name, shape]), and the same
for the audio VAE decoder (manifest_ltx2_audio_vae_decoder.json, config from the conversion
script's `get_ltx2_audio_vae_config("2.0")`) and the vocoder (manifest_ltx2_vocoder.json,
`get_ltx2_vocoder_config("2.0")`); their Lightricks names are checked with diffusers' audio VAE
converter and the script's vocoder renames (make_audio_fixtures.py).

Output: tests/fixtures/manifest_ltx2_transformer.json with
- "config": the constructor arguments used;
- "parameters": every tensor of `state_dict()` as [diffusers name, Lightricks single-file name,
  shape, video] where `video` is 1 for the tensors the video-only path reads (the
  `isolate_modalities=True` forward) and 0 for the audio stream and audio<->video
  cross-attention. The Lightricks names are verified here with diffusers' own single-file
  converter.
"""

import json
import os
import sys

import torch

import diffusers
from diffusers import AutoencoderKLLTX2Video
from diffusers.loaders.single_file_utils import (
    convert_ltx2_transformer_to_diffusers,
    convert_ltx2_vae_to_diffusers,
)
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import is_video_param, lightricks_name  # noqa: E402
from make_vae_fixtures import lightricks_vae_name  # noqa: E402
from make_audio_fixtures import (  # noqa: E402
    lightricks_audio_vae_name,
    lightricks_vocoder_name,
    vocoder_from_lightricks,
)
from diffusers import AutoencoderKLLTX2Audio  # noqa: E402
from diffusers.loaders.single_file_utils import convert_ltx2_audio_vae_to_diffusers  # noqa: E402
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
OUT = os.path.join(FIXTURES, "manifest_ltx2_transformer.json")
OUT_VAE = os.path.join(FIXTURES, "manifest_ltx2_vae_decoder.json")
OUT_AUDIO_VAE = os.path.join(FIXTURES, "manifest_ltx2_audio_vae_decoder.json")
OUT_VOCODER = os.path.join(FIXTURES, "manifest_ltx2_vocoder.json")

# diffusers scripts/convert_ltx2_to_diffusers.py, get_ltx2_audio_vae_config("2.0").
LTX2_AUDIO_VAE = {
    "base_channels": 128,
    "output_channels": 2,
    "ch_mult": (1, 2, 4),
    "num_res_blocks": 2,
    "attn_resolutions": None,
    "in_channels": 2,
    "resolution": 256,
    "latent_channels": 8,
    "norm_type": "pixel",
    "causality_axis": "height",
    "dropout": 0.0,
    "mid_block_add_attention": False,
    "sample_rate": 16000,
    "mel_hop_length": 160,
    "is_causal": True,
    "mel_bins": 64,
    "double_z": True,
}

# Same script, get_ltx2_vocoder_config("2.0").
LTX2_VOCODER = {
    "in_channels": 128,
    "hidden_channels": 1024,
    "out_channels": 2,
    "upsample_kernel_sizes": [16, 15, 8, 4, 4],
    "upsample_factors": [6, 5, 2, 2, 2],
    "resnet_kernel_sizes": [3, 7, 11],
    "resnet_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "leaky_relu_negative_slope": 0.1,
    "output_sampling_rate": 24000,
}


def write_rows(path: str, config: dict, rows: list, num: int) -> None:
    with open(path, "w") as f:
        f.write("{\n")
        f.write(f' "diffusers_version": {json.dumps(diffusers.__version__)},\n')
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
        f.write(f' "config": {json.dumps(config)},\n')
        f.write(f' "num_parameters": {num},\n')
        f.write(' "parameters": [\n')
        f.write(",\n".join(json.dumps(list(r), separators=(",", ":")) for r in rows))
        f.write("\n ]\n}\n")
    os.chmod(path, 0o644)


def audio_manifests() -> None:
    """Audio VAE decoder (+ latent statistics; the encoder is not listed) and vocoder tensors."""
    with torch.device("meta"):
        vae = AutoencoderKLLTX2Audio(**LTX2_AUDIO_VAE)
        voc = LTX2Vocoder(**LTX2_VOCODER)
    full = vae.state_dict()
    converted = convert_ltx2_audio_vae_to_diffusers({lightricks_audio_vae_name(k): None for k in full})
    if sorted(converted.keys()) != sorted(full.keys()):
        raise SystemExit("lightricks_audio_vae_name() does not invert diffusers' converter at the real size")
    state = {k: v for k, v in full.items() if not k.startswith("encoder.")}
    rows = [(k, lightricks_audio_vae_name(k), list(v.shape)) for k, v in state.items()]
    num = sum(v.numel() for v in state.values())
    write_rows(OUT_AUDIO_VAE, LTX2_AUDIO_VAE, rows, num)
    print(f"audio vae decoder: {len(rows)} tensors, {num / 1e6:.1f} M parameters "
          f"(encoder {sum(v.numel() for k, v in full.items() if k.startswith('encoder.')) / 1e6:.1f} M)")

    vstate = voc.state_dict()
    for k in vstate:
        if vocoder_from_lightricks(lightricks_vocoder_name(k)) != k:
            raise SystemExit(f"vocoder name {k} does not round-trip through the script's renames")
    rows = [(k, lightricks_vocoder_name(k), list(v.shape)) for k, v in vstate.items()]
    num = sum(v.numel() for v in vstate.values())
    write_rows(OUT_VOCODER, LTX2_VOCODER, rows, num)
    print(f"vocoder: {len(rows)} tensors, {num / 1e6:.1f} M parameters")

# diffusers scripts/convert_ltx2_to_diffusers.py, version "2.0" (model_id Lightricks/LTX-2).
LTX2_19B = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "vae_scale_factors": (8, 32, 32),
    "pos_embed_max_pos": 20,
    "base_height": 2048,
    "base_width": 2048,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_patch_size": 1,
    "audio_patch_size_t": 1,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "audio_scale_factor": 4,
    "audio_pos_embed_max_pos": 20,
    "audio_sampling_rate": 16000,
    "audio_hop_length": 160,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 3840,
    "attention_bias": True,
    "attention_out_bias": True,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_offset": 1,
    "timestep_scale_multiplier": 1000,
    "cross_attn_timestep_scale_multiplier": 1000,
    "rope_type": "split",
}


# Same script, get_ltx2_video_vae_config("2.0"); timestep_conditioning is a script argument
# (off for the LTX-2.0 conversion). upsample_type is left at its default (all spatiotemporal),
# as that script version does.
LTX2_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (256, 512, 1024, 2048),
    "down_block_types": ("LTX2VideoDownBlock3D",) * 4,
    "decoder_block_out_channels": (256, 512, 1024),
    "layers_per_block": (4, 6, 6, 2, 2),
    "decoder_layers_per_block": (5, 5, 5, 5),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True),
    "decoder_inject_noise": (False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_residual": (True, True, True),
    "upsample_factor": (2, 2, 2),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "resnet_norm_eps": 1e-6,
    "encoder_causal": True,
    "decoder_causal": False,
    "encoder_spatial_padding_mode": "zeros",
    "decoder_spatial_padding_mode": "reflect",
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}


def vae_manifest() -> None:
    """Decoder tensors and latent statistics of the real-size video VAE (the encoder is not
    listed: the pipeline never runs it for text-to-video)."""
    with torch.device("meta"):
        vae = AutoencoderKLLTX2Video(**LTX2_VAE)
    state = {k: v for k, v in vae.state_dict().items() if not k.startswith("encoder.")}
    rows = [(k, lightricks_vae_name(k), list(v.shape)) for k, v in state.items()]
    converted = convert_ltx2_vae_to_diffusers({lt: None for _, lt, _ in rows})
    if sorted(converted.keys()) != sorted(state.keys()):
        raise SystemExit("lightricks_vae_name() does not invert diffusers' converter at the real size")
    with open(OUT_VAE, "w") as f:
        f.write("{\n")
        f.write(f' "diffusers_version": {json.dumps(diffusers.__version__)},\n')
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in LTX2_VAE.items()}
        f.write(f' "config": {json.dumps(config)},\n')
        f.write(f' "num_parameters": {sum(v.numel() for v in state.values())},\n')
        f.write(' "parameters": [\n')
        f.write(",\n".join(json.dumps(list(r), separators=(",", ":")) for r in rows))
        f.write("\n ]\n}\n")
    os.chmod(OUT_VAE, 0o644)
    print(f"vae decoder: {len(rows)} tensors, {sum(v.numel() for v in state.values()) / 1e6:.1f} M parameters")


def main() -> None:
    with torch.device("meta"):
        model = LTX2VideoTransformer3DModel(**LTX2_19B)
    state = model.state_dict()
    rows = [(k, lightricks_name(k), list(v.shape), int(is_video_param(k))) for k, v in state.items()]

    converted = convert_ltx2_transformer_to_diffusers({lt: None for _, lt, _, _ in rows})
    if sorted(converted.keys()) != sorted(state.keys()):
        raise SystemExit("lightricks_name() does not invert diffusers' converter at the real size")

    total = sum(v.numel() for v in state.values())
    video = sum(state[k].numel() for k, _, _, f in rows if f)
    doc = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in LTX2_19B.items()},
        "num_parameters": total,
        "num_video_parameters": video,
        "parameters": [list(r) for r in rows],
    }
    # One entry per line keeps the file diffable and small.
    with open(OUT, "w") as f:
        f.write("{\n")
        for key in ["diffusers_version", "torch_version", "config", "num_parameters", "num_video_parameters"]:
            f.write(f" {json.dumps(key)}: {json.dumps(doc[key])},\n")
        f.write(' "parameters": [\n')
        f.write(",\n".join(json.dumps(r, separators=(",", ":")) for r in doc["parameters"]))
        f.write("\n ]\n}\n")
    os.chmod(OUT, 0o644)
    print(f"{len(rows)} tensors ({sum(r[3] for r in rows)} video), {total / 1e9:.2f} B parameters "
          f"({video / 1e9:.2f} B video stream) -> {OUT}")


if __name__ == "__main__":
    main()
    vae_manifest()
    audio_manifests()
