#!/usr/bin/env python3
"""Full-pipeline parity fixture for fv-inference, made with the reference (diffusers).

Not part of CI: what it writes is committed, and `cargo test -p fv-inference --test
pipeline_parity` reads it.

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_pipeline_fixtures.py

It writes tests/fixtures/pipeline_tiny/, a model folder in diffusers' own layout, written by
diffusers' `save_pretrained` (so the Rust loader reads what diffusers really writes, audio
tensors and the VAE encoder included):

- transformer/ (LTX2VideoTransformer3DModel, 2 blocks, width 64, split RoPE), vae/
  (AutoencoderKLLTX2Video, non-causal decoder, 8x/32x/32x like the release), scheduler/
  (FlowMatchEulerDiscreteScheduler with dynamic shifting and a terminal stretch), and
  text_embeddings.safetensors (caption embeddings with 3 padded tokens);

and tests/fixtures/pipeline_tiny.safetensors + pipeline_tiny.json: the request (seed, size,
frames, fps), the initial noise, and for two schedules ("shifted": the folder's scheduler
config; "distilled": no scheduler config, i.e. the distilled sigmas unshifted) the final latent
tokens, the decoded video in [-1, 1] and the u8 frames.

The reference run is diffusers' `LTX2Pipeline.__call__` reduced to its video stream: the same
steps in the same order, through the pipeline's own helpers (`retrieve_timesteps`,
`calculate_shift`, `_pack_latents`, `_unpack_latents`, `_denormalize_latents`,
`convert_velocity_to_x0` / `convert_x0_to_velocity`, `VideoProcessor.postprocess_video`), with
`isolate_modalities=True` so the video does not depend on the audio stream (the full pipeline
couples them; fv-inference has no audio stream yet) and with `guidance_scale=1` (the distilled
model runs without CFG). The text embeddings go straight to the transformer (fv-inference has no
Gemma encoder or connectors yet).

The initial noise is NOT torch's: it is drawn with fv-inference's own seeded generator
(SplitMix64 + Box-Muller, reimplemented below), so the Rust test can run the public
`Generator::generate` with the same seed and compare frames.
"""

import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

import diffusers
from diffusers import AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline, calculate_shift, retrieve_timesteps
from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES
from diffusers.video_processor import VideoProcessor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import TINY as TRANSFORMER_TINY, init_nontrivial  # noqa: E402
from make_vae_fixtures import TINY as VAE_TINY, init_decoder  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
FOLDER = os.path.join(OUT, "pipeline_tiny")

# The released compression (8x in time, 32x in space): every upsampler spatiotemporal.
VAE = dict(VAE_TINY, upsample_type=("spatiotemporal",) * 3)
LATENT = VAE["latent_channels"]
TRANSFORMER = dict(TRANSFORMER_TINY, in_channels=LATENT, out_channels=LATENT)
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95,
                 max_shift=2.05, base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
# 64 wide, 96 high (2 x 3 latents), 17 frames (3 latents): a non-square, odd grid.
REQUEST = dict(seed=-7, width=64, height=96, num_frames=17, fps=24, steps=len(DISTILLED_SIGMA_VALUES))
TEXT_LEN, TEXT_VALID = 7, 4


class SplitMix64:
    """fv-inference's noise generator (crates/fv-inference/src/rng.rs), bit for bit."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int):
        self.state = seed & self.MASK
        self.spare = None

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return ((self.next_u64() >> 11) + 1) / float(1 << 53)

    def normal(self) -> float:
        if self.spare is not None:
            s, self.spare = self.spare, None
            return s
        r = math.sqrt(-2.0 * math.log(self.uniform()))
        theta = 2.0 * math.pi * self.uniform()
        self.spare = float(np.float32(r * math.sin(theta)))
        return float(np.float32(r * math.cos(theta)))


def build_models():
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(**TRANSFORMER).eval()
    init_nontrivial(transformer, torch.Generator().manual_seed(2024))
    vae = AutoencoderKLLTX2Video(**VAE).eval()
    gen = torch.Generator().manual_seed(77)
    init_decoder(vae, gen)
    with torch.no_grad():
        vae.latents_mean.copy_(0.3 * torch.randn(LATENT, generator=gen))
        vae.latents_std.copy_(0.5 + torch.rand(LATENT, generator=gen))
    return transformer, vae


def run_reference(transformer, vae, scheduler, noise_packed, embeds, mask, grid, fps, steps):
    """LTX2Pipeline.__call__'s video path (see the module docstring)."""
    f, h, w = grid
    latents = noise_packed.clone()
    sigmas = DISTILLED_SIGMA_VALUES if steps == len(DISTILLED_SIGMA_VALUES) else None
    mu = calculate_shift(latents.shape[1], scheduler.config.get("base_image_seq_len", 1024),
                         scheduler.config.get("max_image_seq_len", 4096),
                         scheduler.config.get("base_shift", 0.95), scheduler.config.get("max_shift", 2.05))
    timesteps, _ = retrieve_timesteps(scheduler, steps, "cpu", None, sigmas=sigmas, mu=mu)
    scheduler.set_begin_index(0)
    coords = transformer.rope.prepare_video_coords(1, f, h, w, "cpu", fps=float(fps))
    audio_frames = 3
    audio = torch.zeros(1, audio_frames, TRANSFORMER["audio_in_channels"])
    audio_coords = transformer.audio_rope.prepare_audio_coords(1, audio_frames, "cpu")
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            timestep = t.expand(1)
            v = transformer(hidden_states=latents, audio_hidden_states=audio, encoder_hidden_states=embeds,
                            audio_encoder_hidden_states=embeds, timestep=timestep, sigma=timestep,
                            encoder_attention_mask=mask, audio_encoder_attention_mask=mask, num_frames=f,
                            height=h, width=w, fps=float(fps), audio_num_frames=audio_frames,
                            video_coords=coords, audio_coords=audio_coords, isolate_modalities=True,
                            return_dict=False)[0].float()
            x0 = LTX2Pipeline.convert_velocity_to_x0(None, latents, v, i, scheduler)
            v = LTX2Pipeline.convert_x0_to_velocity(None, latents, x0, i, scheduler)
            latents = scheduler.step(v, t, latents, return_dict=False)[0]
        final_tokens = latents.clone()
        z = LTX2Pipeline._unpack_latents(latents, f, h, w, 1, 1)
        z = LTX2Pipeline._denormalize_latents(z, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        video = vae.decode(z, None, return_dict=False)[0]
    frames = VideoProcessor(vae_scale_factor=32).postprocess_video(video, output_type="np")[0]
    if frames.shape[0] != REQUEST["num_frames"] or frames.shape[1:3] != (REQUEST["height"], REQUEST["width"]):
        raise SystemExit(f"decoded {frames.shape}, expected the requested size")
    frames_u8 = torch.from_numpy((frames * 255).round().astype("uint8"))
    sigmas_used = scheduler.sigmas.clone()
    return final_tokens, video, frames_u8, sigmas_used


def main() -> None:
    transformer, vae = build_models()
    if os.path.isdir(FOLDER):
        shutil.rmtree(FOLDER)
    transformer.save_pretrained(os.path.join(FOLDER, "transformer"))
    vae.save_pretrained(os.path.join(FOLDER, "vae"))
    shifted = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    shifted.save_pretrained(os.path.join(FOLDER, "scheduler"))

    gen = torch.Generator().manual_seed(5)
    embeds = torch.randn(1, TEXT_LEN, TRANSFORMER["caption_channels"], generator=gen)
    mask = torch.zeros(1, TEXT_LEN)
    mask[0, :TEXT_VALID] = 1.0
    save_file({"prompt_embeds": embeds, "prompt_attention_mask": mask},
              os.path.join(FOLDER, "text_embeddings.safetensors"))

    r = REQUEST
    grid = ((r["num_frames"] - 1) // 8 + 1, r["height"] // 32, r["width"] // 32)
    rng = SplitMix64(r["seed"])
    n = LATENT * grid[0] * grid[1] * grid[2]
    noise = torch.tensor([rng.normal() for _ in range(n)], dtype=torch.float32).reshape(1, LATENT, *grid)
    noise_packed = LTX2Pipeline._pack_latents(noise, 1, 1)

    tensors = {"noise": noise_packed.contiguous()}
    meta = {"diffusers_version": diffusers.__version__, "torch_version": torch.__version__,
            "request": r, "latent_grid": list(grid), "text_len": TEXT_LEN, "text_valid": TEXT_VALID}
    cases = {"shifted": FlowMatchEulerDiscreteScheduler.from_pretrained(os.path.join(FOLDER, "scheduler")),
             "distilled": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0,
                                                          use_dynamic_shifting=False)}
    for name, sched in cases.items():
        tokens, video, frames_u8, sigmas = run_reference(transformer, vae, sched, noise_packed, embeds, mask,
                                                         grid, r["fps"], r["steps"])
        tensors[f"{name}.tokens"] = tokens.contiguous()
        tensors[f"{name}.video"] = video.contiguous()
        tensors[f"{name}.frames"] = frames_u8.contiguous()
        tensors[f"{name}.sigmas"] = sigmas.float().contiguous()
        meta[name] = {"sigmas": [round(float(s), 7) for s in sigmas],
                      "video_min": float(video.min()), "video_max": float(video.max())}
        print(f"{name}: sigmas {meta[name]['sigmas']}, video range "
              f"{float(video.min()):.3f}..{float(video.max()):.3f}, frames {tuple(frames_u8.shape)}")
    if torch.equal(tensors["shifted.video"], tensors["distilled.video"]):
        raise SystemExit("the two schedules gave the same video; the fixture would not tell them apart")

    save_file(tensors, os.path.join(OUT, "pipeline_tiny.safetensors"))
    with open(os.path.join(OUT, "pipeline_tiny.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    for root, _, files in os.walk(FOLDER):  # save_file creates 0600 files; fixtures are committed
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    for name in ("pipeline_tiny.safetensors", "pipeline_tiny.json"):
        os.chmod(os.path.join(OUT, name), 0o644)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
