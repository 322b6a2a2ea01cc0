#!/usr/bin/env python3
"""Parity fixture for the LTX-2 video VAE encoder, made with the reference (diffusers).

Not part of CI: the fixture is committed and `cargo test -p fv-inference` reads it.

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_vae_encoder_fixtures.py

Writes tests/fixtures/vae_encoder_tiny.json (the tiny AutoencoderKLLTX2Video config, the clip's
size, every encoder tensor as [diffusers name, Lightricks single-file name] with the Lightricks
names checked by diffusers' own converter) and tests/fixtures/vae_encoder_tiny.safetensors:
- the encoder weights and latents_mean/latents_std under their diffusers names;
- `input.frames`: the clip as RGB24 bytes, [F, H, W, 3] uint8 (17 frames of 96x160, seeded
  noise: stored as bytes, so the input is 4x smaller than as floats);
- `output.means`: `vae.encode(x).latent_dist.mode()` (the un-normalised means);
- `output.latents`: those normalised as the pipelines do (`_normalize_latents` with the
  config's scaling factor), [1, C, 3, 3, 5].

The reference path is the conditioning pipeline's: bytes -> f32 -> `/ 127.5 - 1` -> [1, 3, F,
H, W] -> `vae.encode` (the causal encoder, `encoder_causal=True` as released) -> the mode of
the posterior (the first `latent_channels` of conv_out's channels; the last one, the log-var,
is dropped) -> normalised. The config is make_vae_fixtures.py's TINY: four down blocks with
the released down types (spatial, temporal, spatiotemporal, spatiotemporal), so the
compression is the released 8x in time and 32x in H/W, and residual group sizes 4, 1, 8, 4.
The latent grid 3x3x5 is odd in every axis.
"""

import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import AutoencoderKLLTX2Video
from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_vae_fixtures import TINY  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
CLIP = dict(num_frames=17, height=96, width=160)
# The single file's encoder runs 4 down blocks as 9 flat entries: block i is `down_blocks.2i`,
# its downsampler `down_blocks.2i+1`, the mid block `down_blocks.8`.
MID_INDEX = 8


def lightricks_encoder_name(name: str) -> str:
    """Inverse of diffusers' single-file VAE rename for encoder tensors (checked below)."""
    if name == "latents_mean":
        return "vae.per_channel_statistics.mean-of-means"
    if name == "latents_std":
        return "vae.per_channel_statistics.std-of-means"
    n = name.replace("resnets", "res_blocks")
    if n.startswith("encoder.mid_block."):
        n = f"encoder.down_blocks.{MID_INDEX}." + n[len("encoder.mid_block."):]
    elif n.startswith("encoder.down_blocks."):
        i, rest = n[len("encoder.down_blocks."):].split(".", 1)
        if rest.startswith("downsamplers.0."):
            n = f"encoder.down_blocks.{2 * int(i) + 1}." + rest[len("downsamplers.0."):]
        else:
            n = f"encoder.down_blocks.{2 * int(i)}." + rest
    return "vae." + n


def init_encoder(vae, gen: torch.Generator) -> None:
    """Encoder conv weights ~ N(0, 1/fan_in), non-zero biases. (The encoder has no norm
    weights: its RMS norms are parameter-free and the LayerNorm shortcut only exists when a
    resnet changes channels, which none does.)"""
    with torch.no_grad():
        for name, p in vae.encoder.named_parameters():
            if name.endswith(".weight") and p.ndim == 5:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3] * p.shape[4]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                raise SystemExit(f"unhandled encoder parameter {name} {tuple(p.shape)}")


def encode(vae, frames_u8: torch.Tensor, causal=None):
    """The conditioning pipeline's path for RGB bytes [F, H, W, 3]."""
    with torch.no_grad():
        pixels = frames_u8.to(torch.float32).permute(3, 0, 1, 2).unsqueeze(0)  # [1, 3, F, H, W]
        x = pixels / 127.5 - 1.0
        means = vae.encode(x, causal=causal).latent_dist.mode()
        latents = LTX2Pipeline._normalize_latents(
            means, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        return means, latents


def main() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(**TINY).eval()
    gen = torch.Generator().manual_seed(2468)
    init_encoder(vae, gen)
    c = TINY["latent_channels"]
    with torch.no_grad():
        vae.latents_mean.copy_(0.5 * torch.randn(c, generator=gen))
        vae.latents_std.copy_(0.5 + torch.rand(c, generator=gen))
    f, h, w = CLIP["num_frames"], CLIP["height"], CLIP["width"]
    frames = torch.randint(0, 256, (f, h, w, 3), generator=gen, dtype=torch.uint8)

    means, latents = encode(vae, frames)
    # The encoder's own output has 2C channels (C means, then the log-var channel repeated);
    # the mode is the first C of them.
    with torch.no_grad():
        x = frames.to(torch.float32).permute(3, 0, 1, 2).unsqueeze(0) / 127.5 - 1.0
        raw = vae.encoder(x)
    assert raw.shape[1] == 2 * c and torch.equal(raw[:, :c], means)
    non_causal, _ = encode(vae, frames, causal=False)
    print(f"encoder: latents {tuple(latents.shape)}, max |z| = {latents.abs().max():.3f}; "
          f"causal=False passed to encode() changes the means by {(non_causal - means).abs().max():.2e} "
          f"(the reference ORs it with encoder_causal)")

    tensors = {k: v.contiguous() for k, v in vae.state_dict().items() if k.startswith("encoder.")}
    tensors["latents_mean"] = vae.latents_mean.clone()
    tensors["latents_std"] = vae.latents_std.clone()
    names = [(k, lightricks_encoder_name(k)) for k in tensors]
    converted = convert_ltx2_vae_to_diffusers({lt: None for _, lt in names})
    if sorted(converted.keys()) != sorted(k for k, _ in names):
        raise SystemExit("lightricks_encoder_name() does not invert diffusers' converter")
    tensors["input.frames"] = frames.contiguous()
    tensors["output.means"] = means.contiguous()
    tensors["output.latents"] = latents.contiguous()
    save_file(tensors, os.path.join(OUT, "vae_encoder_tiny.safetensors"))
    meta = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY.items()},
        "clip": CLIP,
        "names": [list(p) for p in names],
    }
    with open(os.path.join(OUT, "vae_encoder_tiny.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    for suffix in (".safetensors", ".json"):
        os.chmod(os.path.join(OUT, "vae_encoder_tiny" + suffix), 0o644)
    print(f"{len(names)} encoder tensors, "
          f"{sum(v.numel() for k, v in tensors.items() if not k.startswith(('input.', 'output.')))} values")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
