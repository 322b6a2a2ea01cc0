#!/usr/bin/env python3
"""Parity fixture for the LTX-2 latent upsampler (stage 2), made with the reference (diffusers).

Not part of CI: the fixture is committed and `cargo test -p fv-inference` reads it.

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_upsampler_fixtures.py

Writes tests/fixtures/upsampler_tiny.json (each variant's `LTX2LatentUpsamplerModel` config, the
latent statistics' scaling factor) and, per variant `V`, tests/fixtures/upsampler_tiny_V.safetensors
(0.6-0.8 MB each) with
- the model's state dict under its own names (the diffusers names, which are also the
  Lightricks file's: diffusers' converter loads that file's state dict as it is);
- `output`: the reference output;
- the same `latents_mean`, `latents_std` (the VAE's statistics) and `input.latents`
  (normalised latents as stage 1 leaves them, [2, 8, 3, 3, 5]: batch 2 so the group norm's
  statistics are per sample, an odd grid) in every file.

The reference path is the pipeline's (facts §4: `normalize(up(denormalize(x)))`): diffusers'
`LTX2LatentUpsamplePipeline(latents=x, latents_normalized=True, output_type="latent")`
de-normalises with the VAE's statistics and runs the upsampler; `LTX2Pipeline.prepare_latents`
then normalises the 5-D result (`_normalize_latents` with the scaling factor). The VAE's
`scaling_factor` is 0.8 here (1.0 in the release), so a port that ignored it would fail.

Variants (all `num_blocks_per_stage=1`, `mid_channels=32`, group norm affine weights random):
- `x2`: the released 2.0 structure (`rational_spatial_scale=2.0`, `use_rational_resampler=True`:
  conv2d to 4*mid, pixel shuffle 2, blur with stride 1 = identity);
- `x1_5`: rational 3/2 (pixel shuffle 3, then the 5x5 binomial blur with stride 2);
- `plain`: `use_rational_resampler=False` (LTX-2.3's layout: `upsampler.0` conv2d + pixel shuffle).
"""

import json
import math
import os

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import AutoencoderKLLTX2Video
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplePipeline, LTX2LatentUpsamplerModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
LATENT = 8
SCALING = 0.8
GRID = dict(batch=2, num_frames=3, height=3, width=5)
BASE = dict(in_channels=LATENT, mid_channels=32, num_blocks_per_stage=1, dims=3,
            spatial_upsample=True, temporal_upsample=False)
VARIANTS = {
    "x2": dict(BASE, rational_spatial_scale=2.0, use_rational_resampler=True),
    "x1_5": dict(BASE, rational_spatial_scale=1.5, use_rational_resampler=True),
    "plain": dict(BASE, rational_spatial_scale=2.0, use_rational_resampler=False),
}


def init(model, gen: torch.Generator) -> None:
    """Conv weights ~ N(0, 1/fan_in), biases 0.1 N, group norm weights 1 + 0.3 N."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".weight") and p.ndim in (4, 5):
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                raise SystemExit(f"unhandled upsampler parameter {name} {tuple(p.shape)}")


def main() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(97531)
    # Only the statistics and the config of the VAE matter to the upsample pipeline here.
    vae = AutoencoderKLLTX2Video(latent_channels=LATENT, block_out_channels=(8, 8, 8, 8),
                                 decoder_block_out_channels=(8, 8, 8),
                                 layers_per_block=(1, 1, 1, 1, 1),
                                 decoder_layers_per_block=(1, 1, 1, 1),
                                 scaling_factor=SCALING).eval()
    with torch.no_grad():
        vae.latents_mean.copy_(0.5 * torch.randn(LATENT, generator=gen))
        vae.latents_std.copy_(0.5 + torch.rand(LATENT, generator=gen))
    b, f, h, w = GRID["batch"], GRID["num_frames"], GRID["height"], GRID["width"]
    x = torch.randn(b, LATENT, f, h, w, generator=gen)
    shared = {
        "latents_mean": vae.latents_mean.clone(),
        "latents_std": vae.latents_std.clone(),
        "input.latents": x,
    }
    for variant, cfg in VARIANTS.items():
        model = LTX2LatentUpsamplerModel(**cfg).eval()
        init(model, gen)
        pipe = LTX2LatentUpsamplePipeline(vae=vae, latent_upsampler=model)
        with torch.no_grad():
            up = pipe(latents=x.clone(), latents_normalized=True, output_type="latent",
                      height=pipe.vae_spatial_compression_ratio * h,
                      width=pipe.vae_spatial_compression_ratio * w, return_dict=False)[0]
            out = LTX2Pipeline._normalize_latents(up, vae.latents_mean, vae.latents_std,
                                                  vae.config.scaling_factor)
            # The same by hand, so the fixture documents the path.
            z = x * vae.latents_std.view(1, -1, 1, 1, 1) / SCALING + vae.latents_mean.view(1, -1, 1, 1, 1)
            manual = (model(z) - vae.latents_mean.view(1, -1, 1, 1, 1)) * SCALING / vae.latents_std.view(1, -1, 1, 1, 1)
        assert torch.allclose(out, manual, atol=1e-5), (out - manual).abs().max()
        tensors = dict(shared)
        tensors.update({k: v.contiguous() for k, v in model.state_dict().items()})
        tensors["output"] = out.contiguous()
        path = os.path.join(OUT, f"upsampler_tiny_{variant}.safetensors")
        save_file(tensors, path)
        os.chmod(path, 0o644)
        print(f"{variant}: out {tuple(out.shape)}, max |x| = {out.abs().max():.3f}, "
              f"{sum(v.numel() for v in model.state_dict().values())} values")
    meta = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "scaling_factor": SCALING,
        "grid": GRID,
        "variants": VARIANTS,
    }
    with open(os.path.join(OUT, "upsampler_tiny.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    os.chmod(os.path.join(OUT, "upsampler_tiny.json"), 0o644)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
