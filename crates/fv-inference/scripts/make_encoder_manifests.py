#!/usr/bin/env python3
"""Weights manifests of the real-size LTX-2 video VAE encoder and latent upsampler.

Not part of CI: the JSON files are committed, and `cargo test -p fv-inference` checks that the
Rust models expect exactly these tensors and that every name goes through the rename maps.
CPU only, a few seconds (the models live on torch's meta device):

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_encoder_manifests.py

Writes
- tests/fixtures/manifest_ltx2_vae_encoder.json: the encoder tensors of
  `AutoencoderKLLTX2Video` at the published LTX-2.0 config (make_manifest.py's LTX2_VAE, from
  diffusers' `scripts/convert_ltx2_to_diffusers.py`, `get_ltx2_video_vae_config("2.0")`) plus
  the latent statistics, as [diffusers name, Lightricks single-file name, shape], the
  Lightricks names checked with diffusers' own converter;
- tests/fixtures/manifest_ltx2_latent_upsampler.json: every tensor of `LTX2LatentUpsamplerModel`
  at the 2.0 config (`get_ltx2_spatial_latent_upsampler_config("2.0")` in the same script;
  the file `ltx-2-spatial-upscaler-x2-1.0.safetensors` is loaded by that script with
  `load_state_dict(strict=True)` and no renaming, so these are also the file's names), as
  [name, shape].
"""

import json
import os
import sys

import torch

import diffusers
from diffusers import AutoencoderKLLTX2Video
from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_manifest import LTX2_VAE  # noqa: E402
from make_vae_encoder_fixtures import lightricks_encoder_name  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

LTX2_UPSAMPLER = {
    "in_channels": 128,
    "mid_channels": 1024,
    "num_blocks_per_stage": 4,
    "dims": 3,
    "spatial_upsample": True,
    "temporal_upsample": False,
    "rational_spatial_scale": 2.0,
    "use_rational_resampler": True,
}


def write(path: str, config: dict, rows: list, count: int) -> None:
    with open(path, "w") as f:
        f.write("{\n")
        f.write(f' "diffusers_version": {json.dumps(diffusers.__version__)},\n')
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
        f.write(f' "config": {json.dumps(config)},\n')
        f.write(f' "num_parameters": {count},\n')
        f.write(' "parameters": [\n')
        f.write(",\n".join(json.dumps(list(r), separators=(",", ":")) for r in rows))
        f.write("\n ]\n}\n")
    os.chmod(path, 0o644)


def encoder_manifest() -> None:
    with torch.device("meta"):
        vae = AutoencoderKLLTX2Video(**LTX2_VAE)
    state = {k: v for k, v in vae.state_dict().items()
             if k.startswith("encoder.") or k in ("latents_mean", "latents_std")}
    rows = [(k, lightricks_encoder_name(k), list(v.shape)) for k, v in state.items()]
    converted = convert_ltx2_vae_to_diffusers({lt: None for _, lt, _ in rows})
    if sorted(converted.keys()) != sorted(state.keys()):
        raise SystemExit("lightricks_encoder_name() does not invert diffusers' converter at the real size")
    count = sum(v.numel() for v in state.values())
    write(os.path.join(FIXTURES, "manifest_ltx2_vae_encoder.json"), LTX2_VAE, rows, count)
    print(f"vae encoder: {len(rows)} tensors, {count / 1e6:.1f} M parameters")


def upsampler_manifest() -> None:
    with torch.device("meta"):
        model = LTX2LatentUpsamplerModel(**LTX2_UPSAMPLER)
    state = model.state_dict()
    rows = [(k, list(v.shape)) for k, v in state.items()]
    count = sum(v.numel() for v in state.values())
    write(os.path.join(FIXTURES, "manifest_ltx2_latent_upsampler.json"), LTX2_UPSAMPLER, rows, count)
    print(f"latent upsampler: {len(rows)} tensors, {count / 1e6:.1f} M parameters")


if __name__ == "__main__":
    encoder_manifest()
    upsampler_manifest()
