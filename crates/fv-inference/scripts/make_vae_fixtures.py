#!/usr/bin/env python3
"""Parity fixture for the LTX-2 video VAE decoder, made with the reference (diffusers).

Not part of CI: the fixture is committed and `cargo test -p fv-inference` reads it.

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_vae_fixtures.py

Also writes tests/fixtures/vae_tiny_tc.{json,safetensors}: the same decoder with
`timestep_conditioning=True`, decoded at timestep 0.05 (and 0).

Writes tests/fixtures/vae_tiny.json (the tiny AutoencoderKLLTX2Video config and the latent grid)
and tests/fixtures/vae_tiny.safetensors: the decoder weights and latents_mean/latents_std under
their diffusers names (the JSON also lists each with its Lightricks single-file name, checked
with diffusers' own converter), the packed latent tokens the transformer would produce (`input.tokens`,
[B, F*H*W, C]) and the reference output (`output.sample`, [B, 3, frames, height, width]).

The reference path is the pipeline's: unpack tokens -> de-normalise with latents_mean/std ->
`vae.decode(z, temb=None)` with the non-causal decoder (the LTX-2.0 release). The tiny config
keeps the real structure (mid block, three up blocks each with a depth-to-space upsampler and a
residual, reflect padding, patch size 4) and mixes the upsampler types so that a decoder which
reversed `upsample_type` like the other per-block lists would fail.
"""

import json
import math
import os

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import AutoencoderKLLTX2Video
from diffusers.loaders.single_file_utils import convert_ltx2_vae_to_diffusers
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

TINY = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=8,
    block_out_channels=(8, 16, 16, 32),
    decoder_block_out_channels=(8, 16, 32),
    layers_per_block=(1, 1, 1, 1, 1),
    decoder_layers_per_block=(1, 2, 1, 1),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    upsample_type=("spatiotemporal", "spatial", "temporal"),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=False,
    patch_size=4,
    patch_size_t=1,
    resnet_norm_eps=1e-6,
    scaling_factor=1.0,
    encoder_causal=True,
    decoder_causal=False,
    encoder_spatial_padding_mode="zeros",
    decoder_spatial_padding_mode="reflect",
)
GRID = dict(num_frames=3, height=3, width=4)
BATCH = 1


def lightricks_vae_name(name: str) -> str:
    """Inverse of diffusers' single-file VAE rename for decoder tensors (checked below)."""
    if name == "latents_mean":
        return "vae.per_channel_statistics.mean-of-means"
    if name == "latents_std":
        return "vae.per_channel_statistics.std-of-means"
    n = name.replace("resnets", "res_blocks")
    if n.startswith("decoder.mid_block."):
        n = "decoder.up_blocks.0." + n[len("decoder.mid_block."):]
    elif n.startswith("decoder.up_blocks."):
        i, rest = n[len("decoder.up_blocks."):].split(".", 1)
        if rest.startswith("upsamplers.0."):
            n = f"decoder.up_blocks.{2 * int(i) + 1}." + rest[len("upsamplers.0."):]
        else:
            n = f"decoder.up_blocks.{2 * int(i) + 2}." + rest
    return "vae." + n


def init_decoder(vae, gen: torch.Generator) -> None:
    """Decoder conv weights ~ N(0, 1/fan_in) and non-zero biases (the encoder is not used)."""
    with torch.no_grad():
        for name, p in vae.decoder.named_parameters():
            if name.endswith(".weight") and p.ndim == 5:
                fan_in = p.shape[1] * p.shape[2] * p.shape[3] * p.shape[4]
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith(".weight") and p.ndim == 2:  # timestep MLPs (conditioned decoders)
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("scale_shift_table"):
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name == "timestep_scale_multiplier":
                pass  # keep diffusers' 1000
            else:
                raise SystemExit(f"unhandled decoder parameter {name} {tuple(p.shape)}")


def build(cfg: dict, seed: int):
    """The tiny VAE with seeded decoder weights and statistics, plus seeded latent tokens."""
    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(**cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    init_decoder(vae, gen)
    with torch.no_grad():
        c = cfg["latent_channels"]
        vae.latents_mean.copy_(0.5 * torch.randn(c, generator=gen))
        vae.latents_std.copy_(0.5 + torch.rand(c, generator=gen))
    f, h, w = GRID["num_frames"], GRID["height"], GRID["width"]
    tokens = torch.randn(BATCH, f * h * w, cfg["latent_channels"], generator=gen)
    return vae, tokens


def decode(vae, tokens, temb=None, causal=None):
    """The pipeline's path: unpack tokens -> de-normalise -> `vae.decode`."""
    f, h, w = GRID["num_frames"], GRID["height"], GRID["width"]
    with torch.no_grad():
        z = LTX2Pipeline._unpack_latents(tokens, f, h, w, 1, 1)
        z = LTX2Pipeline._denormalize_latents(z, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        return vae.decode(z, temb, causal=causal, return_dict=False)[0]


def save(name: str, cfg: dict, vae, tokens, outputs: dict, decode_meta: dict, extra: dict) -> dict:
    """Writes `{name}.safetensors` (decoder weights, statistics, inputs, outputs) and
    `{name}.json`; returns the tensors written."""
    tensors = {k: v.contiguous() for k, v in vae.state_dict().items() if k.startswith("decoder.")}
    tensors["latents_mean"] = vae.latents_mean.clone()
    tensors["latents_std"] = vae.latents_std.clone()
    tensors["input.tokens"] = tokens
    tensors.update({f"output.{k}": v.contiguous() for k, v in outputs.items()})
    save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))
    meta = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "decode": dict(GRID, batch=BATCH, **decode_meta),
        **extra,
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    for suffix in (".safetensors", ".json"):
        os.chmod(os.path.join(OUT, name + suffix), 0o644)
    return tensors


def main() -> None:
    vae, tokens = build(TINY, 4321)
    out = decode(vae, tokens)
    causal = decode(vae, tokens, causal=True)
    print(f"vae: out {tuple(out.shape)}, max |x| = {out.abs().max():.3f}, "
          f"causal differs by {(out - causal).abs().max():.3f}")
    stored = [k for k in vae.state_dict() if k.startswith("decoder.")] + ["latents_mean", "latents_std"]
    names = [(k, lightricks_vae_name(k)) for k in stored]
    converted = convert_ltx2_vae_to_diffusers({lt: None for _, lt in names})
    if sorted(converted.keys()) != sorted(k for k, _ in names):
        raise SystemExit("lightricks_vae_name() does not invert diffusers' converter")
    save("vae_tiny", TINY, vae, tokens, {"sample": out}, {}, {"names": [list(p) for p in names]})
    conditioned_fixture()


# The decode timestep of the conditioned fixture (diffusers' pipeline default is 0; non-zero
# here so the timestep embedders matter).
DECODE_TIMESTEP = 0.05


def conditioned_fixture() -> None:
    """The same decoder with `timestep_conditioning=True` (FastVideo's setting): per-block
    timestep embedders, per-resnet scale/shift tables and a final one, the multiplier."""
    cfg = dict(TINY, timestep_conditioning=True)
    vae, tokens = build(cfg, 8765)
    out = decode(vae, tokens, torch.tensor([DECODE_TIMESTEP] * BATCH))
    at_zero = decode(vae, tokens, torch.tensor([0.0] * BATCH))
    print(f"vae (timestep-conditioned): out {tuple(out.shape)}, timestep 0 differs by "
          f"{(out - at_zero).abs().max():.3f}")
    save("vae_tiny_tc", cfg, vae, tokens, {"sample": out, "sample_t0": at_zero},
         {"timestep": DECODE_TIMESTEP}, {})


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
