#!/usr/bin/env python3
"""Parity fixtures for fv-inference, made with the reference implementation (diffusers).

Not part of CI: the fixtures it writes are committed, and `cargo test -p fv-inference` reads
them. Rerun it only when the reference or the tiny configurations change.

How to run (CPU only, ~1 minute including the imports):

    python3 -m venv /root/.cache/ltx-venv
    /root/.cache/ltx-venv/bin/pip install torch==2.9.1 diffusers==0.42.1 transformers safetensors
    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_fixtures.py

It writes, under crates/fv-inference/tests/fixtures/:

- transformer_tiny.json: the tiny transformer config (diffusers constructor arguments) and the
  forward-call arguments (fps, latent grid).
- transformer_tiny.safetensors: the VIDEO-stream weights, stored under the Lightricks
  single-file names (`model.diffusion_model.` prefix, `patchify_proj`, `adaln_single`,
  `q_norm`, ...), so the Rust loader is exercised through its rename map; plus inputs and
  reference outputs under `input.*` / `output.*` / `rope.*`.
- transformer_names.json: every parameter of the tiny reference model as
  [diffusers name, Lightricks name, shape]. The Lightricks name is checked here by running
  diffusers' own single-file converter on it, so the pairs are the converter's truth.
- scheduler.safetensors + scheduler.json: FlowMatchEulerDiscreteScheduler sigmas, timesteps
  and Euler steps for the distilled schedule and for a dynamically shifted one.

The reference runs in float32 on CPU with deterministic seeds. The video output is taken
with `isolate_modalities=True`, which makes it independent of every audio input and weight
(checked below by perturbing the audio inputs).
"""

import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.loaders.single_file_utils import convert_ltx2_transformer_to_diffusers
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.utils import DISTILLED_SIGMA_VALUES

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

TINY = dict(
    in_channels=16,
    out_channels=16,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=4,
    attention_head_dim=16,
    cross_attention_dim=64,
    vae_scale_factors=(8, 32, 32),
    pos_embed_max_pos=20,
    base_height=2048,
    base_width=2048,
    audio_in_channels=8,
    audio_out_channels=8,
    audio_num_attention_heads=2,
    audio_attention_head_dim=8,
    audio_cross_attention_dim=16,
    num_layers=2,
    caption_channels=24,
    rope_type="split",
    causal_offset=1,
    rope_theta=10000.0,
    rope_double_precision=True,
    norm_eps=1e-6,
)

# Odd, non-square latent grid; fps that is not the default 24.
GRID = dict(num_frames=3, height=5, width=7)
FPS = 25.0
BATCH = 2
TEXT_LEN = 9
TEXT_VALID = [9, 6]  # batch 1 has 3 padded text tokens
AUDIO_FRAMES = 4


def lightricks_name(name: str) -> str:
    """Inverse of diffusers' single-file rename for the transformer (checked below)."""
    n = name
    if n.startswith("time_embed."):
        n = "adaln_single." + n[len("time_embed."):]
    elif n.startswith("audio_time_embed."):
        n = "audio_adaln_single." + n[len("audio_time_embed."):]
    for new, old in [
        ("av_cross_attn_video_scale_shift", "av_ca_video_scale_shift_adaln_single"),
        ("av_cross_attn_video_a2v_gate", "av_ca_a2v_gate_adaln_single"),
        ("av_cross_attn_audio_scale_shift", "av_ca_audio_scale_shift_adaln_single"),
        ("av_cross_attn_audio_v2a_gate", "av_ca_v2a_gate_adaln_single"),
        ("video_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_video"),
        ("audio_a2v_cross_attn_scale_shift_table", "scale_shift_table_a2v_ca_audio"),
        ("norm_q", "q_norm"),
        ("norm_k", "k_norm"),
    ]:
        n = n.replace(new, old)
    if n.startswith("proj_in."):
        n = "patchify_proj." + n[len("proj_in."):]
    elif n.startswith("audio_proj_in."):
        n = "audio_patchify_proj." + n[len("audio_proj_in."):]
    return "model.diffusion_model." + n


def is_video_param(name: str) -> bool:
    """Parameters the video-only path reads (with isolate_modalities=True)."""
    if name.startswith("audio_") or name.startswith("av_cross_attn_"):
        return False
    if name.startswith("transformer_blocks."):
        sub = name.split(".", 2)[2]
        return sub.startswith(("attn1.", "attn2.", "ff.", "norm1", "norm2", "norm3", "scale_shift_table"))
    return True


def init_nontrivial(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Weights ~ N(0, 1/fan_in), non-zero biases, non-trivial norm weights and scale tables."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".weight") and p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif "scale_shift_table" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            else:
                raise SystemExit(f"unhandled parameter {name} {tuple(p.shape)}")


def transformer_fixture() -> None:
    torch.manual_seed(0)
    model = LTX2VideoTransformer3DModel(**TINY).eval()
    gen = torch.Generator().manual_seed(1234)
    init_nontrivial(model, gen)

    # Names: diffusers <-> Lightricks, validated by diffusers' own converter.
    state = model.state_dict()
    names = [(k, lightricks_name(k), list(v.shape)) for k, v in state.items()]
    converted = convert_ltx2_transformer_to_diffusers({lt: None for _, lt, _ in names})
    if sorted(converted.keys()) != sorted(state.keys()):
        raise SystemExit("lightricks_name() does not invert diffusers' converter")

    num_tokens = GRID["num_frames"] * GRID["height"] * GRID["width"]
    hidden = torch.randn(BATCH, num_tokens, TINY["in_channels"], generator=gen)
    context = torch.randn(BATCH, TEXT_LEN, TINY["caption_channels"], generator=gen)
    mask = torch.zeros(BATCH, TEXT_LEN)
    for b, n in enumerate(TEXT_VALID):
        mask[b, :n] = 1.0
    # Per-token timesteps in model units (sigma * 1000), different per sample and token.
    timestep = torch.rand(BATCH, num_tokens, generator=gen) * 1000.0
    audio_timestep = torch.tensor([500.0, 250.0])
    audio_hidden = torch.randn(BATCH, AUDIO_FRAMES, TINY["audio_in_channels"], generator=gen)
    audio_context = torch.randn(BATCH, TEXT_LEN, TINY["caption_channels"], generator=gen)

    def run(ah, actx):
        with torch.no_grad():
            return model(
                hidden_states=hidden,
                audio_hidden_states=ah,
                encoder_hidden_states=context,
                audio_encoder_hidden_states=actx,
                timestep=timestep,
                audio_timestep=audio_timestep,
                encoder_attention_mask=mask,
                audio_encoder_attention_mask=mask,
                num_frames=GRID["num_frames"],
                height=GRID["height"],
                width=GRID["width"],
                fps=FPS,
                audio_num_frames=AUDIO_FRAMES,
                isolate_modalities=True,
                return_dict=False,
            )[0]

    out = run(audio_hidden, audio_context)
    out2 = run(audio_hidden * 3.0 + 1.0, audio_context.flip(1))
    if not torch.equal(out, out2):
        raise SystemExit("video output depends on audio inputs; isolate_modalities did not isolate")

    coords = model.rope.prepare_video_coords(BATCH, GRID["num_frames"], GRID["height"], GRID["width"], "cpu", fps=FPS)
    cos, sin = model.rope(coords)

    tensors = {}
    for diff_name, lt_name, _ in names:
        if is_video_param(diff_name):
            tensors[lt_name] = state[diff_name].contiguous()
    tensors["input.hidden_states"] = hidden
    tensors["input.encoder_hidden_states"] = context
    tensors["input.encoder_attention_mask"] = mask
    tensors["input.timestep"] = timestep
    tensors["output.sample"] = out
    tensors["rope.coords"] = coords.contiguous()
    tensors["rope.cos"] = cos.contiguous()
    tensors["rope.sin"] = sin.contiguous()
    save_file(tensors, os.path.join(OUT, "transformer_tiny.safetensors"))

    cfg = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY.items()},
        "forward": dict(GRID, fps=FPS, batch=BATCH, text_len=TEXT_LEN, text_valid=TEXT_VALID),
    }
    with open(os.path.join(OUT, "transformer_tiny.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    with open(os.path.join(OUT, "transformer_names.json"), "w") as f:
        json.dump([[d, l, s] for d, l, s in names], f, indent=0)
    print(f"transformer: out max |x| = {out.abs().max():.3f}, {len(tensors)} tensors")


def scheduler_fixture() -> None:
    gen = torch.Generator().manual_seed(99)
    cases = {
        # The distilled LTX-2 schedule: sigmas given, no shifting.
        "distilled": dict(config=dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False),
                          sigmas=DISTILLED_SIGMA_VALUES, mu=None),
        # The dev-style schedule: linspace sigmas, exponential dynamic shift by token count, terminal stretch.
        "shifted": dict(config=dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True,
                                    base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                                    max_image_seq_len=4096, shift_terminal=0.1),
                        sigmas=[1.0 - i * (1.0 - 1.0 / 6) / 5 for i in range(6)], seq_len=2040),
    }
    tensors, meta = {}, {}
    for name, case in cases.items():
        sched = FlowMatchEulerDiscreteScheduler(**case["config"])
        mu = None
        if case["config"]["use_dynamic_shifting"]:
            c = case["config"]
            m = (c["max_shift"] - c["base_shift"]) / (c["max_image_seq_len"] - c["base_image_seq_len"])
            b = c["base_shift"] - m * c["base_image_seq_len"]
            mu = case["seq_len"] * m + b
        sched.set_timesteps(sigmas=case["sigmas"], mu=mu)
        sched.set_begin_index(0)
        sample = torch.randn(2, 7, 3, generator=gen)
        tensors[f"{name}.sigmas"] = sched.sigmas.clone()
        tensors[f"{name}.timesteps"] = sched.timesteps.clone()
        tensors[f"{name}.sample0"] = sample.clone()
        for i, t in enumerate(sched.timesteps):
            v = torch.randn(2, 7, 3, generator=gen)
            tensors[f"{name}.velocity{i}"] = v
            sample = sched.step(v, t, sample, return_dict=False)[0]
            tensors[f"{name}.sample{i + 1}"] = sample.clone()
        meta[name] = dict(case["config"], sigmas_in=case["sigmas"], mu=mu, seq_len=case.get("seq_len"))
    save_file(tensors, os.path.join(OUT, "scheduler.safetensors"))
    with open(os.path.join(OUT, "scheduler.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"scheduler: {len(tensors)} tensors")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions
    transformer_fixture()
    scheduler_fixture()
    for name in os.listdir(OUT):  # save_file creates 0600 files; fixtures are committed
        os.chmod(os.path.join(OUT, name), 0o644)
    sys.exit(0)
