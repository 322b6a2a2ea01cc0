#!/usr/bin/env python3
"""Whole-pipeline parity fixture for fv-inference: prompt -> video + audio, made with diffusers'
own `LTX2Pipeline.__call__`.

Not part of CI: what it writes is committed, and `cargo test -p fv-inference --test
pipeline_parity` reads it.

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_pipeline_fixtures.py

It writes tests/fixtures/pipeline_av_tiny/, a whole LTX-2 pipeline folder written by diffusers'
`LTX2Pipeline.save_pretrained` (text_encoder/ = a tiny Gemma-3 via transformers, tokenizer/,
connectors/, transformer/ = the joint audio-video transformer, vae/ with its encoder, audio_vae/,
vocoder/, scheduler/ with dynamic shifting, model_index.json), weights stored in float16 to keep
the fixture small. The reference runs in float32 on exactly those values (every parameter and
buffer is rounded to float16 first), so the Rust side, which reads the float16 files into f32,
computes on the same numbers.

tests/fixtures/pipeline_av_tiny.{json,safetensors}: the request (prompt, seed, size, frames, fps,
steps, text length), the initial video and audio noise, the caption embeddings of the prompt,
the final video and audio latent tokens (normalised, as the transformer leaves them), the
decoded video in [-1, 1], the pipeline's u8 frames and its waveform.

The reference call is `LTX2Pipeline.__call__` positive-only, as FastVideo's distilled streaming
preset runs it (ltx2-phase2-facts §1, "guidance trap"): guidance_scale=1, audio_guidance_scale=1,
stg_scale=0, audio_stg_scale=0, modality_scale=1, audio_modality_scale=1, use_cross_timestep=False
(FastVideo; identical to True without conditioning), explicit sigmas (fv-inference's 4-step subset
of the distilled schedule, shifted by the scheduler's `mu` for the token count), and
max_sequence_length=32 (a multiple of the 4 registers; 1024 in production).

The initial noise is NOT torch's: it is drawn with fv-inference's own seeded generator (SplitMix64 +
Box-Muller, reimplemented in make_fixtures_common below), video from the seed and audio from the
seed xor 0x5eed_a0d1, and handed to the pipeline as `latents` (packed, so not normalised) and
`audio_latents` (which the pipeline always normalises, so the noise goes in de-normalised).
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
import transformers
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import init_nontrivial  # noqa: E402
from make_text_fixtures import (  # noqa: E402
    CONNECTORS_TINY,
    GEMMA_TEXT,
    SIGLIP_TINY,
    build_tokenizer,
    init_connectors,
    init_gemma,
)
from make_vae_fixtures import TINY as VAE_TINY, init_decoder  # noqa: E402
import make_continuation_fixtures  # noqa: E402
from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
NAME = "pipeline_av_tiny"
FOLDER = os.path.join(OUT, NAME)

# The tiny VAE compresses 32x in space (patch 4 x three 2x downsamplers); diffusers would
# otherwise infer 64x from its four `spatio_temporal_scaling` flags.
VAE = dict(VAE_TINY, upsample_type=("spatiotemporal",) * 3, spatial_compression_ratio=32,
           temporal_compression_ratio=8)
LATENT = VAE["latent_channels"]
TRANSFORMER = dict(
    in_channels=LATENT,
    out_channels=LATENT,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=4,
    attention_head_dim=16,
    cross_attention_dim=64,
    vae_scale_factors=(8, 32, 32),
    pos_embed_max_pos=20,
    base_height=2048,
    base_width=2048,
    audio_in_channels=8,  # 2 latent channels x 16 / 4 mel bins
    audio_out_channels=8,
    audio_num_attention_heads=2,
    audio_attention_head_dim=12,
    audio_cross_attention_dim=24,
    audio_scale_factor=4,
    audio_pos_embed_max_pos=20,
    audio_sampling_rate=16000,
    audio_hop_length=160,
    num_layers=2,
    caption_channels=GEMMA_TEXT["hidden_size"],
    rope_type="split",
    causal_offset=1,
    rope_theta=10000.0,
    rope_double_precision=True,
    norm_eps=1e-6,
    timestep_scale_multiplier=1000,
    cross_attn_timestep_scale_multiplier=1000,
)
AUDIO_VAE = dict(
    base_channels=8,
    output_channels=2,
    ch_mult=(1, 2, 4),
    num_res_blocks=1,
    attn_resolutions=None,
    in_channels=2,
    resolution=16,
    latent_channels=2,
    norm_type="pixel",
    causality_axis="height",
    dropout=0.0,
    mid_block_add_attention=False,
    sample_rate=16000,
    mel_hop_length=160,
    is_causal=True,
    mel_bins=16,
    double_z=True,
)
VOCODER = dict(
    in_channels=32,
    hidden_channels=32,
    out_channels=2,
    upsample_kernel_sizes=[16, 15, 8, 4, 4],
    upsample_factors=[6, 5, 2, 2, 2],
    resnet_kernel_sizes=[3, 7],
    resnet_dilations=[[1, 3, 5], [1, 3, 5]],
    leaky_relu_negative_slope=0.1,
    output_sampling_rate=24000,
)
# The latent upsampler of the two-stage preset (make_upsampler_fixtures' x2 variant).
UPSAMPLER = dict(in_channels=LATENT, mid_channels=32, num_blocks_per_stage=1, dims=3, spatial_upsample=True,
                 temporal_upsample=False, rational_spatial_scale=2.0, use_rational_resampler=True)
SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95,
                 max_shift=2.05, base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
# 64 wide, 96 high (2 x 3 latents), 17 frames (3 latent frames, 18 audio latent frames).
REQUEST = dict(prompt="  a red fox runs across the snowy field, café \n", seed=-7, width=64, height=96,
               num_frames=17, fps=24, steps=4, text_len=32)
# fv-inference's 4-step subset of the distilled schedule (pipeline/schedule.rs).
SIGMAS_4 = [1.0, 0.909375, 0.725, 0.421875]
AUDIO_NOISE_SALT = 0x5EED_A0D1


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


def seeded_normal(seed: int, n: int) -> torch.Tensor:
    rng = SplitMix64(seed)
    return torch.tensor([rng.normal() for _ in range(n)], dtype=torch.float32)


def round_to_f16(module: torch.nn.Module) -> None:
    """Every saved tensor (parameters and persistent buffers) rounded to float16 precision,
    kept in float32. Non-persistent buffers (e.g. Gemma's embedding scale, recomputed in float32
    on load) stay as they are."""
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def init_audio(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Weights ~ N(0, 1/fan_in), small non-zero biases (the audio fixtures' recipe)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))


def build_pipeline(tok_dir: str) -> LTX2Pipeline:
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    vocab = len(tokenizer)
    config = Gemma3Config(text_config=dict(vocab_size=vocab, **GEMMA_TEXT), vision_config=SIGLIP_TINY,
                          mm_tokens_per_image=4)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    text_encoder = Gemma3ForConditionalGeneration(config).eval()
    init_gemma(text_encoder, torch.Generator().manual_seed(4321))
    connectors = LTX2TextConnectors(**CONNECTORS_TINY).eval()
    init_connectors(connectors, torch.Generator().manual_seed(99))
    transformer = LTX2VideoTransformer3DModel(**TRANSFORMER).eval()
    init_nontrivial(transformer, torch.Generator().manual_seed(2024))
    vae = AutoencoderKLLTX2Video(**VAE).eval()
    gen = torch.Generator().manual_seed(77)
    init_decoder(vae, gen)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.startswith("encoder."):
                if p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
                else:
                    p.copy_(0.05 * torch.randn(p.shape, generator=gen))
        vae.latents_mean.copy_(0.3 * torch.randn(LATENT, generator=gen))
        vae.latents_std.copy_(0.5 + torch.rand(LATENT, generator=gen))
    audio_vae = AutoencoderKLLTX2Audio(**AUDIO_VAE).eval()
    init_audio(audio_vae, torch.Generator().manual_seed(31))
    with torch.no_grad():
        g = torch.Generator().manual_seed(32)
        audio_vae.latents_mean.copy_(0.2 * torch.randn(audio_vae.latents_mean.shape, generator=g))
        audio_vae.latents_std.copy_(0.6 + torch.rand(audio_vae.latents_std.shape, generator=g))
    vocoder = LTX2Vocoder(**VOCODER).eval()
    init_audio(vocoder, torch.Generator().manual_seed(33))
    for m in (text_encoder, connectors, transformer, vae, audio_vae, vocoder):
        round_to_f16(m)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER)
    return LTX2Pipeline(scheduler=scheduler, vae=vae, audio_vae=audio_vae, text_encoder=text_encoder,
                        tokenizer=tokenizer, connectors=connectors, transformer=transformer, vocoder=vocoder)


def main() -> None:
    if os.path.isdir(FOLDER):
        shutil.rmtree(FOLDER)
    tmp_tok = os.path.join(OUT, NAME + "_tokenizer_tmp")
    build_tokenizer(tmp_tok)
    pipe = build_pipeline(tmp_tok)
    shutil.rmtree(tmp_tok)

    r = REQUEST
    grid = ((r["num_frames"] - 1) // 8 + 1, r["height"] // 32, r["width"] // 32)
    n = LATENT * grid[0] * grid[1] * grid[2]
    noise = seeded_normal(r["seed"], n).reshape(1, LATENT, *grid)
    noise_packed = LTX2Pipeline._pack_latents(noise, 1, 1)
    audio_frames = round(r["num_frames"] / r["fps"] * 25)
    ac, am = AUDIO_VAE["latent_channels"], AUDIO_VAE["mel_bins"] // 4
    audio_noise = seeded_normal(r["seed"] ^ AUDIO_NOISE_SALT, ac * audio_frames * am).reshape(1, ac, audio_frames, am)
    audio_packed = LTX2Pipeline._pack_audio_latents(audio_noise)
    # the pipeline normalises audio latents it is given: hand them over de-normalised
    audio_in = LTX2Pipeline._denormalize_audio_latents(audio_packed, pipe.audio_vae.latents_mean,
                                                       pipe.audio_vae.latents_std)

    common = dict(prompt=r["prompt"], height=r["height"], width=r["width"], num_frames=r["num_frames"],
                  frame_rate=float(r["fps"]), num_inference_steps=r["steps"], sigmas=SIGMAS_4,
                  guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0,
                  modality_scale=1.0, audio_modality_scale=1.0, use_cross_timestep=False,
                  max_sequence_length=r["text_len"], return_dict=False)
    with torch.no_grad():
        (prompt_embeds, prompt_mask, _, _) = pipe.encode_prompt(r["prompt"], do_classifier_free_guidance=False,
                                                                max_sequence_length=r["text_len"],
                                                                device=torch.device("cpu"))
        cap_video, cap_audio, cap_mask = pipe.connectors(prompt_embeds, prompt_mask, padding_side="left")
        z_video, z_audio = pipe(latents=noise_packed.clone(), audio_latents=audio_in.clone(), output_type="latent",
                                **common)
        frames, waveform = pipe(latents=noise_packed.clone(), audio_latents=audio_in.clone(), output_type="np",
                                **common)
        video = pipe.vae.decode(z_video, None, return_dict=False)[0]
    # normalised tokens, as the transformer leaves them
    video_tokens = LTX2Pipeline._pack_latents(
        LTX2Pipeline._normalize_latents(z_video, pipe.vae.latents_mean, pipe.vae.latents_std,
                                        pipe.vae.config.scaling_factor), 1, 1)
    audio_tokens = LTX2Pipeline._normalize_audio_latents(LTX2Pipeline._pack_audio_latents(z_audio),
                                                         pipe.audio_vae.latents_mean, pipe.audio_vae.latents_std)
    frames_u8 = torch.from_numpy((frames[0] * 255).round().astype("uint8"))
    if tuple(frames_u8.shape) != (r["num_frames"], r["height"], r["width"], 3):
        raise SystemExit(f"frames {tuple(frames_u8.shape)}")
    want_samples = 240 * (4 * audio_frames - 3)
    if tuple(waveform.shape) != (1, 2, want_samples):
        raise SystemExit(f"waveform {tuple(waveform.shape)}, expected (1, 2, {want_samples})")
    sigmas_used = [round(float(s), 7) for s in pipe.scheduler.sigmas]

    # The upsampler (two-stage preset) and the continuation references (issue 10).
    upsampler = LTX2LatentUpsamplerModel(**UPSAMPLER).eval()
    gen = torch.Generator().manual_seed(97531)
    with torch.no_grad():
        for name, p in upsampler.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".weight"):
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p[0].numel()))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    round_to_f16(upsampler)
    make_continuation_fixtures.write(pipe, upsampler, {"frames": frames_u8, "tokens.audio": audio_tokens,
                                                       "prompt": r["prompt"]}, seeded_normal, OUT, r["text_len"])

    pipe.to(torch.float16)
    pipe.save_pretrained(FOLDER)
    upsampler.to(torch.float16).save_pretrained(os.path.join(FOLDER, "latent_upsampler"))
    tensors = {
        "noise": noise_packed.contiguous(),
        "audio_noise": audio_packed.contiguous(),
        "captions.video": cap_video.contiguous(),
        "captions.audio": cap_audio.contiguous(),
        "tokens.video": video_tokens.contiguous(),
        "tokens.audio": audio_tokens.contiguous(),
        "video": video.contiguous(),
        "frames": frames_u8.contiguous(),
        "waveform": torch.as_tensor(waveform)[0].float().contiguous(),
    }
    save_file(tensors, os.path.join(OUT, NAME + ".safetensors"))
    meta = {"diffusers_version": diffusers.__version__, "transformers_version": transformers.__version__,
            "torch_version": torch.__version__, "request": r, "latent_grid": list(grid),
            "audio_latent_frames": audio_frames, "sigmas": sigmas_used,
            "caption_mask_all_ones": bool(torch.all(cap_mask == 1)),
            "video_range": [float(video.min()), float(video.max())],
            "waveform_range": [float(waveform.min()), float(waveform.max())]}
    with open(os.path.join(OUT, NAME + ".json"), "w") as fh:
        json.dump(meta, fh, indent=1, ensure_ascii=True)
    for root, _, files in os.walk(FOLDER):  # save_file creates 0600 files; fixtures are committed
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    for name in (NAME + ".safetensors", NAME + ".json"):
        os.chmod(os.path.join(OUT, name), 0o644)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
