#!/usr/bin/env python3
"""Continuation and two-stage parity fixtures for fv-inference (issue 10), made with diffusers'
own `LTX2ConditionPipeline` helpers on the whole-pipeline fixture's model.

Not a script to run on its own: `make_pipeline_fixtures.py` calls `write(...)` after it made the
tiny pipeline folder and its text-to-video reference, so one command regenerates everything:

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_pipeline_fixtures.py

It writes tests/fixtures/continuation_tiny.{json,safetensors}. The previous segment is the
text-to-video reference (17 frames of 64x96): its last 9 u8 frames and its final audio latents
are the `ltx2.v1` state. Two reference segments continue it, the way ltx2-phase2-facts §5
describes FastVideo's Dreamverse worker (+ `stages/ltx2_image_conditioning.py`):

- "cond": one stage at 64x96, 25 frames (4 latent frames, the first 2 conditioned), 4 steps;
- "two_stage": FastVideo's streaming preset shape at tiny size: stage 1 at 64x96 (4 steps),
  the latent upsampler (x2), then the refine at 128x192 (2 steps, sigmas [0.909375, 0.421875])
  with the conditioning re-applied at 128x192 (the 64x96 frames scaled up bilinearly) and the
  video and audio re-noised to sigma0 = 0.909375.

Conditioning, built from diffusers' helpers: the frames go through
`LTX2ConditionPipeline.preprocess_conditions` (bilinear, no antialias, scale then centre-crop,
/127.5 - 1) and `vae.encode(...).latent_dist.mode()` + `_normalize_latents`, then the first
latent frames of `clean` (zeros elsewhere at stage 1, the upsampled latents at stage 2) with
conditioning mask 1 (`apply_first_frame_conditioning` semantics, denoise mask m = 1 - mask);
the audio is lengthened by 49 - 9 = 40 frames (25 + 40 = 65 -> 68 audio latent frames) and its
first frames are the previous segment's last audio latents (min(round(49/24*25) = 51, 18) = 18
of them), mask 0 there; the video RoPE time axis is offset by 40/24 s. Per step: video timesteps
t * m per token, audio timesteps t * m per token, `use_cross_timestep=False`,
`isolate_modalities=False`, then x0 = x - v * sigma blended `x0 * m + clean * (1 - m)` for both
modalities, back to a velocity, Euler step (`LTX2ConditionPipeline.__call__`'s blend, applied to
the audio too as FastVideo does). Starting latents: `noise * m * s + clean * (1 - m * s)`, s = 1
at stage 1 and sigma0 at stage 2.

Noise is fv-inference's own seeded generator (see make_pipeline_fixtures.SplitMix64): video from
the seed, audio from seed ^ 0x5eed_a0d1, stage-2 video from seed ^ 0x5eed_5702, stage-2 audio from
seed ^ 0x5eed_5a02.
"""

import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline, calculate_shift, retrieve_timesteps
from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2ConditionPipeline, LTX2VideoCondition

AUDIO_NOISE_SALT = 0x5EED_A0D1
STAGE2_VIDEO_SALT = 0x5EED_5702
STAGE2_AUDIO_SALT = 0x5EED_5A02
COND_FRAMES = 9
AUDIO_COND_FRAMES = 49
SIGMA0 = 0.909375
STAGE2_SIGMAS = [0.909375, 0.421875]
FPS = 24


def packed_noise(seeded_normal, seed, c, f, h, w):
    return LTX2Pipeline._pack_latents(seeded_normal(seed, c * f * h * w).reshape(1, c, f, h, w), 1, 1)


def audio_noise(seeded_normal, seed, c, frames, m):
    z = seeded_normal(seed ^ AUDIO_NOISE_SALT, c * frames * m).reshape(1, c, frames, m)
    return LTX2Pipeline._pack_audio_latents(z)


def encode_condition(cond_pipe, frames_u8, width, height, num_frames):
    """diffusers: preprocess (resize/crop/[-1, 1]) -> VAE encode mode -> normalise -> pack."""
    cond = LTX2VideoCondition(frames=frames_u8, index=0, strength=1.0)
    pixels, _, _, _ = cond_pipe.preprocess_conditions([cond], height=height, width=width,
                                                      num_frames=num_frames, device=torch.device("cpu"))
    z = cond_pipe.vae.encode(pixels[0]).latent_dist.mode()
    z = LTX2Pipeline._normalize_latents(z, cond_pipe.vae.latents_mean, cond_pipe.vae.latents_std,
                                        cond_pipe.vae.config.scaling_factor)
    return LTX2Pipeline._pack_latents(z, 1, 1), pixels[0]


def denoise(pipe, scheduler, sigmas, mu, video, v_clean, v_mask, audio, a_clean, a_mask, text, grid,
            audio_frames, offset):
    """The conditioned joint loop (see the module docstring). Masks are denoise masks [1, T]."""
    f, h, w = grid
    cv, ca = text
    timesteps, _ = retrieve_timesteps(scheduler, len(sigmas), "cpu", None, sigmas=sigmas, mu=mu)
    scheduler.set_begin_index(0)
    coords = pipe.transformer.rope.prepare_video_coords(1, f, h, w, "cpu", fps=float(FPS))
    coords[:, 0] = coords[:, 0] + offset
    acoords = pipe.transformer.audio_rope.prepare_audio_coords(1, audio_frames, "cpu")
    vm, am = v_mask.unsqueeze(-1), a_mask.unsqueeze(-1)
    for i, t in enumerate(timesteps):
        sigma = scheduler.sigmas[i]
        with torch.no_grad():
            vv, va = pipe.transformer(hidden_states=video, audio_hidden_states=audio, encoder_hidden_states=cv,
                                      audio_encoder_hidden_states=ca, timestep=t * v_mask,
                                      audio_timestep=t * a_mask, sigma=t.expand(1), audio_sigma=t.expand(1),
                                      encoder_attention_mask=None, audio_encoder_attention_mask=None,
                                      num_frames=f, height=h, width=w, fps=float(FPS),
                                      audio_num_frames=audio_frames, video_coords=coords, audio_coords=acoords,
                                      isolate_modalities=False, use_cross_timestep=False, return_dict=False)
        x0v = video - vv.float() * sigma
        x0v = x0v * vm + v_clean * (1 - vm)
        x0a = audio - va.float() * sigma
        x0a = x0a * am + a_clean * (1 - am)
        dt = scheduler.sigmas[i + 1] - sigma
        video = video + ((video - x0v) / sigma) * dt
        audio = audio + ((audio - x0a) / sigma) * dt
    return video, audio


def write(pipe, upsampler, t2v, seeded_normal, out_dir, text_len):
    """Writes continuation_tiny.{json,safetensors} (see the module docstring)."""
    cond_pipe = LTX2ConditionPipeline(**{k: v for k, v in pipe.components.items()})
    c = pipe.transformer.config.in_channels
    ac, am_bins = pipe.audio_vae.config.latent_channels, pipe.audio_vae.config.mel_bins // 4
    prev_frames = t2v["frames"][-COND_FRAMES:].numpy()  # [9, 96, 64, 3] u8
    prev_audio = t2v["tokens.audio"]  # [1, 18, 8] normalised
    prompt = t2v["prompt"]
    with torch.no_grad():
        pe, pm, _, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False,
                                          max_sequence_length=text_len, device=torch.device("cpu"))
        cv, ca, _ = pipe.connectors(pe, pm, padding_side="left")
    tensors = {"previous.frames": torch.from_numpy(prev_frames).contiguous(),
               "previous.audio_tokens": prev_audio.contiguous()}
    meta = {"prompt": prompt, "fps": FPS, "text_len": text_len, "cases": {}}

    num_frames = 25
    audio_frames = round((num_frames + AUDIO_COND_FRAMES - COND_FRAMES) / FPS * 25)  # 68
    prefix = min(round(AUDIO_COND_FRAMES / FPS * 25), prev_audio.shape[1], audio_frames)
    offset = (AUDIO_COND_FRAMES - COND_FRAMES) / FPS

    def audio_cond(base):
        clean = base.clone()
        clean[:, :prefix] = prev_audio[:, -prefix:]
        mask = torch.ones(1, audio_frames)
        mask[:, :prefix] = 0.0
        return clean, mask

    def video_cond(base_tokens, frames_u8, width, height, grid):
        cond_tokens, pixels = encode_condition(cond_pipe, frames_u8, width, height, num_frames)
        clean = base_tokens.clone()
        n = cond_tokens.shape[1]
        clean[:, :n] = cond_tokens
        mask = torch.ones(1, grid[0] * grid[1] * grid[2])
        mask[:, :n] = 0.0
        return clean, mask, cond_tokens, pixels

    def shifted(tokens):
        sched = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)
        mu = calculate_shift(tokens, sched.config.get("base_image_seq_len", 1024),
                             sched.config.get("max_image_seq_len", 4096), sched.config.get("base_shift", 0.95),
                             sched.config.get("max_shift", 2.05))
        return sched, mu

    for name, seed, two_stage in [("cond", 11, False), ("two_stage", 12, True)]:
        w1, h1 = 64, 96
        g1 = ((num_frames - 1) // 8 + 1, h1 // 32, w1 // 32)
        t1 = g1[0] * g1[1] * g1[2]
        with torch.no_grad():
            v_clean, v_mask, cond1, pixels1 = video_cond(torch.zeros(1, t1, c), prev_frames, w1, h1, g1)
            a_clean, a_mask = audio_cond(torch.zeros(1, audio_frames, ac * am_bins))
            vn = packed_noise(seeded_normal, seed, c, *g1)
            an = audio_noise(seeded_normal, seed, ac, audio_frames, am_bins)
            video = vn * v_mask.unsqueeze(-1) + v_clean * (1 - v_mask.unsqueeze(-1))
            audio = an * a_mask.unsqueeze(-1) + a_clean * (1 - a_mask.unsqueeze(-1))
            sched, mu = shifted(t1)
            sig = [1.0, 0.909375, 0.725, 0.421875]
            video, audio = denoise(pipe, sched, sig, mu, video, v_clean, v_mask, audio, a_clean, a_mask,
                                   (cv, ca), g1, audio_frames, offset)
            case = {"seed": seed, "num_frames": num_frames, "stage1": [w1, h1], "steps": len(sig),
                    "audio_frames": audio_frames, "audio_prefix": prefix, "offset_sec": offset,
                    "stage1_sigmas": [round(float(s), 7) for s in sched.sigmas]}
            tensors[f"{name}.cond_tokens"] = cond1.contiguous()
            if not two_stage:  # the same frames at the same size in both cases
                tensors["cond_pixels"] = pixels1.float().contiguous()
            if two_stage:
                tensors[f"{name}.stage1_video"] = video.contiguous()
                tensors[f"{name}.stage1_audio"] = audio.contiguous()
                w2, h2 = 2 * w1, 2 * h1
                g2 = (g1[0], 2 * g1[1], 2 * g1[2])
                z = LTX2Pipeline._unpack_latents(video, *g1, 1, 1)
                vae = pipe.vae
                z = LTX2Pipeline._denormalize_latents(z, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
                up = LTX2Pipeline._normalize_latents(upsampler(z), vae.latents_mean, vae.latents_std,
                                                     vae.config.scaling_factor)
                up = LTX2Pipeline._pack_latents(up, 1, 1)
                tensors[f"{name}.upsampled"] = up.contiguous()
                v_clean, v_mask, cond2, _ = video_cond(up, prev_frames, w2, h2, g2)
                a_clean, a_mask = audio_cond(audio)
                vn = packed_noise(seeded_normal, seed ^ STAGE2_VIDEO_SALT, c, *g2)
                # the stage-2 audio noise: seed ^ STAGE2_AUDIO_SALT, salted again like any audio noise
                an = audio_noise(seeded_normal, seed ^ STAGE2_AUDIO_SALT, ac, audio_frames, am_bins)
                vm, amk = v_mask.unsqueeze(-1) * SIGMA0, a_mask.unsqueeze(-1) * SIGMA0
                video = vn * vm + v_clean * (1 - vm)
                audio = an * amk + a_clean * (1 - amk)
                sched2 = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0,
                                                         use_dynamic_shifting=False)
                video, audio = denoise(pipe, sched2, STAGE2_SIGMAS, None, video, v_clean, v_mask, audio, a_clean,
                                       a_mask, (cv, ca), g2, audio_frames, offset)
                tensors[f"{name}.cond_tokens_stage2"] = cond2.contiguous()
                case.update({"size": [w2, h2], "refine_steps": len(STAGE2_SIGMAS)})
            else:
                case.update({"size": [w1, h1]})
            tensors[f"{name}.video"] = video.contiguous()
            tensors[f"{name}.audio"] = audio.contiguous()
        meta["cases"][name] = case
        print(f"{name}: video {tuple(video.shape)} max {float(video.abs().max()):.3f}, "
              f"audio {tuple(audio.shape)} max {float(audio.abs().max()):.3f}")
    path = os.path.join(out_dir, "continuation_tiny.safetensors")
    save_file(tensors, path)
    os.chmod(path, 0o644)
    with open(os.path.join(out_dir, "continuation_tiny.json"), "w") as fh:
        json.dump(meta, fh, indent=1, ensure_ascii=True)
    os.chmod(os.path.join(out_dir, "continuation_tiny.json"), 0o644)
