#!/usr/bin/env python3
"""Parity fixtures for LTX-2's audio path, made with the reference implementation (diffusers).

Not part of CI: the fixtures are committed and `cargo test -p fv-inference` reads them. Rerun
only when the reference or the tiny configurations change (CPU only, ~30 s with the imports):

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_audio_fixtures.py

It writes, under crates/fv-inference/tests/fixtures/:

- transformer_av_tiny.{json,safetensors}: the joint audio-video transformer (every tensor, under
  the Lightricks single-file names, checked with diffusers' own converter), its inputs (video and
  audio tokens, both caption embeddings with padding masks, per-token timesteps for each modality,
  per-sample sigmas for `use_cross_timestep=True`), and three reference forwards:
  `isolate_modalities=False` with `use_cross_timestep` False ("own") and True ("cross"), and
  `isolate_modalities=True` ("isolated"); plus the audio and cross-attention RoPE coordinates and
  tables.
- audio_vae_tiny.{json,safetensors}: the audio VAE decoder (Lightricks names: `audio_vae.` prefix,
  `per_channel_statistics.*-of-means`), normalised packed audio tokens [B, L, C*M], and the
  pipeline's decode (de-normalise -> unpack -> `audio_vae.decode`) -> mel [B, 2, 4L-3, mel_bins];
  plus the same weights decoded with `causality_axis="none"` (`output.mel_noncausal`).
- vocoder_tiny.{json,safetensors}: the HiFi-GAN vocoder (Lightricks names: `vocoder.`, `ups`,
  `resblocks`, `conv_pre`, `conv_post`), fed the audio VAE's reference mel, and its waveform.

Every fixture is made non-trivial: weights ~ N(0, 1/fan_in), non-zero biases, random QK-norm
weights and modulation tables, padded text masks, odd lengths, video and audio head counts that
differ (4 vs 2, so the cross-attention RoPE splits by the video head count on one side and the
audio head count on the other), and a cross-attention gate timestep factor != 1.
"""

import json
import math
import os
import sys

import torch
from safetensors.torch import save_file

import diffusers
from diffusers import AutoencoderKLLTX2Audio
from diffusers.loaders.single_file_utils import (
    convert_ltx2_audio_vae_to_diffusers,
    convert_ltx2_transformer_to_diffusers,
)
from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import init_nontrivial, lightricks_name  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

TINY_AV = dict(
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
    # audio: latent channels 2 x mel bins 4 (the tiny audio VAE below) = 8 features per token
    audio_in_channels=8,
    audio_out_channels=8,
    audio_num_attention_heads=2,
    audio_attention_head_dim=12,
    audio_cross_attention_dim=24,
    audio_scale_factor=4,
    audio_pos_embed_max_pos=20,
    audio_sampling_rate=16000,
    audio_hop_length=160,
    num_layers=2,
    caption_channels=24,
    rope_type="split",
    causal_offset=1,
    rope_theta=10000.0,
    rope_double_precision=True,
    norm_eps=1e-6,
    # diffusers' own "test" conversion config: the a2v/v2a gate sees timestep x 1/1000
    timestep_scale_multiplier=1000,
    cross_attn_timestep_scale_multiplier=1,
)

GRID = dict(num_frames=3, height=5, width=7)
FPS = 25.0
BATCH = 2
TEXT_LEN = 9
VIDEO_TEXT_VALID = [9, 6]
AUDIO_TEXT_VALID = [7, 9]
# 3 latent frames = 17 pixel frames = 0.68 s at 25 fps -> round(0.68 * 25) = 17 audio tokens
AUDIO_FRAMES = round((8 * (GRID["num_frames"] - 1) + 1) / FPS * 25)

TINY_AUDIO_VAE = dict(
    base_channels=8,
    output_channels=2,
    ch_mult=(1, 2, 4),
    num_res_blocks=2,
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
AUDIO_LATENT_FRAMES = 5  # -> 4*5-3 = 17 mel frames

TINY_VOCODER = dict(
    in_channels=32,
    hidden_channels=32,
    out_channels=2,
    upsample_kernel_sizes=[4, 4],
    upsample_factors=[2, 2],
    resnet_kernel_sizes=[3, 7],
    resnet_dilations=[[1, 3, 5], [1, 3, 5]],
    leaky_relu_negative_slope=0.1,
    output_sampling_rate=24000,
)

# diffusers scripts/convert_ltx2_to_diffusers.py LTX_2_0_VOCODER_RENAME_DICT (original -> diffusers),
# applied as substring replacements like the script does.
VOCODER_RENAMES = {"ups": "upsamplers", "resblocks": "resnets", "conv_pre": "conv_in", "conv_post": "conv_out"}


def lightricks_audio_vae_name(name: str) -> str:
    """Inverse of diffusers' single-file audio VAE rename (checked with its converter)."""
    if name == "latents_mean":
        return "audio_vae.per_channel_statistics.mean-of-means"
    if name == "latents_std":
        return "audio_vae.per_channel_statistics.std-of-means"
    return "audio_vae." + name


def lightricks_vocoder_name(name: str) -> str:
    """Inverse of the conversion script's vocoder rename (checked by applying it below)."""
    n = name
    for old, new in VOCODER_RENAMES.items():
        n = n.replace(new, old)
    return "vocoder." + n


def vocoder_from_lightricks(name: str) -> str:
    n = name[len("vocoder."):]
    for old, new in VOCODER_RENAMES.items():
        n = n.replace(old, new)
    return n


def init_convs(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Conv weights ~ N(0, 1/fan_in), biases 0.1 * N(0, 1)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith(".weight") and p.ndim >= 3:
                if isinstance(module.get_submodule(name.rsplit(".", 1)[0]), torch.nn.ConvTranspose1d):
                    fan_in = p.shape[0] * p.shape[2] // 2  # in-channels x taps per output sample
                else:
                    fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            else:
                raise SystemExit(f"unhandled parameter {name} {tuple(p.shape)}")


def transformer_fixture() -> None:
    torch.manual_seed(0)
    model = LTX2VideoTransformer3DModel(**TINY_AV).eval()
    gen = torch.Generator().manual_seed(4321)
    init_nontrivial(model, gen)

    state = model.state_dict()
    names = [(k, lightricks_name(k)) for k in state]
    converted = convert_ltx2_transformer_to_diffusers({lt: None for _, lt in names})
    if sorted(converted.keys()) != sorted(state.keys()):
        raise SystemExit("lightricks_name() does not invert diffusers' converter")

    tv = GRID["num_frames"] * GRID["height"] * GRID["width"]
    ta = AUDIO_FRAMES
    video = torch.randn(BATCH, tv, TINY_AV["in_channels"], generator=gen)
    audio = torch.randn(BATCH, ta, TINY_AV["audio_in_channels"], generator=gen)
    video_text = torch.randn(BATCH, TEXT_LEN, TINY_AV["caption_channels"], generator=gen)
    audio_text = torch.randn(BATCH, TEXT_LEN, TINY_AV["caption_channels"], generator=gen)
    video_mask = torch.zeros(BATCH, TEXT_LEN)
    audio_mask = torch.zeros(BATCH, TEXT_LEN)
    for b in range(BATCH):
        video_mask[b, : VIDEO_TEXT_VALID[b]] = 1.0
        audio_mask[b, : AUDIO_TEXT_VALID[b]] = 1.0
    # Per-token timesteps in model units (sigma x 1000), different per sample and token; the
    # per-sample sigmas (what the pipelines pass as `sigma` / `audio_sigma`) differ from them.
    timestep = torch.rand(BATCH, tv, generator=gen) * 1000.0
    audio_timestep = torch.rand(BATCH, ta, generator=gen) * 1000.0
    sigma = torch.tensor([730.0, 120.0])
    audio_sigma = torch.tensor([410.0, 960.0])

    def run(isolate: bool, cross: bool):
        with torch.no_grad():
            return model(
                hidden_states=video,
                audio_hidden_states=audio,
                encoder_hidden_states=video_text,
                audio_encoder_hidden_states=audio_text,
                timestep=timestep,
                audio_timestep=audio_timestep,
                sigma=sigma,
                audio_sigma=audio_sigma,
                encoder_attention_mask=video_mask,
                audio_encoder_attention_mask=audio_mask,
                num_frames=GRID["num_frames"],
                height=GRID["height"],
                width=GRID["width"],
                fps=FPS,
                audio_num_frames=ta,
                isolate_modalities=isolate,
                use_cross_timestep=cross,
                return_dict=False,
            )

    tensors = {}
    for case, isolate, cross in [("own", False, False), ("cross", False, True), ("isolated", True, False)]:
        v, a = run(isolate, cross)
        tensors[f"output.{case}.video"] = v.contiguous()
        tensors[f"output.{case}.audio"] = a.contiguous()
        print(f"transformer {case}: video max |x| {v.abs().max():.3f}, audio max |x| {a.abs().max():.3f}")
    for x, y in [("own", "cross"), ("own", "isolated")]:
        for m in ["video", "audio"]:
            d = (tensors[f"output.{x}.{m}"] - tensors[f"output.{y}.{m}"]).abs().max()
            print(f"  {x} vs {y} {m}: {d:.3e}")
            if d < 1e-2:
                raise SystemExit(f"{x} and {y} {m} outputs are too close to tell apart")

    video_coords = model.rope.prepare_video_coords(BATCH, GRID["num_frames"], GRID["height"], GRID["width"], "cpu", fps=FPS)
    audio_coords = model.audio_rope.prepare_audio_coords(BATCH, ta, "cpu")
    for key, rope, coords in [
        ("audio", model.audio_rope, audio_coords),
        ("ca_video", model.cross_attn_rope, video_coords[:, 0:1, :]),
        ("ca_audio", model.cross_attn_audio_rope, audio_coords),
    ]:
        cos, sin = rope(coords)
        tensors[f"rope.{key}.cos"] = cos[:1].contiguous()
        tensors[f"rope.{key}.sin"] = sin[:1].contiguous()
    tensors["rope.audio_coords"] = audio_coords[0, 0].contiguous()

    for diff_name, lt_name in names:
        tensors[lt_name] = state[diff_name].contiguous()
    for k, v in dict(
        video=video, audio=audio, video_text=video_text, audio_text=audio_text, video_mask=video_mask,
        audio_mask=audio_mask, timestep=timestep, audio_timestep=audio_timestep, sigma=sigma,
        audio_sigma=audio_sigma,
    ).items():
        tensors[f"input.{k}"] = v.contiguous()
    save_file(tensors, os.path.join(OUT, "transformer_av_tiny.safetensors"))
    cfg = {
        "diffusers_version": diffusers.__version__,
        "torch_version": torch.__version__,
        "model": {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY_AV.items()},
        "forward": dict(GRID, fps=FPS, batch=BATCH, text_len=TEXT_LEN, audio_frames=ta),
    }
    with open(os.path.join(OUT, "transformer_av_tiny.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"transformer: {len(state)} weights, {sum(v.numel() for v in state.values())} parameters")


def audio_vae_fixture():
    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Audio(**TINY_AUDIO_VAE).eval()
    gen = torch.Generator().manual_seed(777)
    init_convs(vae.decoder, gen)
    c = TINY_AUDIO_VAE["base_channels"]
    with torch.no_grad():
        vae.latents_mean.copy_(0.5 * torch.randn(c, generator=gen))
        vae.latents_std.copy_(0.5 + torch.rand(c, generator=gen))

    state = {k: v for k, v in vae.state_dict().items() if not k.startswith("encoder.")}
    full = vae.state_dict()
    converted = convert_ltx2_audio_vae_to_diffusers({lightricks_audio_vae_name(k): None for k in full})
    if sorted(converted.keys()) != sorted(full.keys()):
        raise SystemExit("lightricks_audio_vae_name() does not invert diffusers' converter")

    latent_ch = TINY_AUDIO_VAE["latent_channels"]
    latent_mel = TINY_AUDIO_VAE["mel_bins"] // 4
    # Normalised packed tokens, as the transformer produces them: [B, L, C*M].
    tokens = torch.randn(BATCH, AUDIO_LATENT_FRAMES, latent_ch * latent_mel, generator=gen)
    with torch.no_grad():
        z = LTX2Pipeline._denormalize_audio_latents(tokens, vae.latents_mean, vae.latents_std)
        z = LTX2Pipeline._unpack_audio_latents(z, AUDIO_LATENT_FRAMES, num_mel_bins=latent_mel)
        mel = vae.decode(z, return_dict=False)[0]
        # the same weights in a non-causal decoder (`causality_axis="none"`, also supported)
        nc = AutoencoderKLLTX2Audio(**dict(TINY_AUDIO_VAE, causality_axis="none")).eval()
        nc.load_state_dict(vae.state_dict())
        mel_nc = nc.decode(z, return_dict=False)[0]
    print(f"audio vae: z {tuple(z.shape)} -> mel {tuple(mel.shape)}, max |x| {mel.abs().max():.3f}")

    tensors = {lightricks_audio_vae_name(k): v.contiguous() for k, v in state.items()}
    tensors["input.tokens"] = tokens
    tensors["input.z"] = z.contiguous()
    tensors["output.mel"] = mel.contiguous()
    tensors["output.mel_noncausal"] = mel_nc.contiguous()
    save_file(tensors, os.path.join(OUT, "audio_vae_tiny.safetensors"))
    with open(os.path.join(OUT, "audio_vae_tiny.json"), "w") as f:
        json.dump(
            {
                "diffusers_version": diffusers.__version__,
                "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in TINY_AUDIO_VAE.items()},
                "latent_frames": AUDIO_LATENT_FRAMES,
                "batch": BATCH,
            },
            f,
            indent=1,
        )
    return mel


def vocoder_fixture(mel: torch.Tensor) -> None:
    torch.manual_seed(0)
    voc = LTX2Vocoder(**TINY_VOCODER).eval()
    gen = torch.Generator().manual_seed(999)
    init_convs(voc, gen)
    state = voc.state_dict()
    back = {vocoder_from_lightricks(lightricks_vocoder_name(k)): v for k, v in state.items()}
    check = LTX2Vocoder(**TINY_VOCODER)
    check.load_state_dict(back, strict=True)  # the names round-trip through the script's renames
    with torch.no_grad():
        wave = voc(mel)
    print(f"vocoder: mel {tuple(mel.shape)} -> wave {tuple(wave.shape)}, max |x| {wave.abs().max():.3f}")
    tensors = {lightricks_vocoder_name(k): v.contiguous() for k, v in state.items()}
    tensors["input.mel"] = mel.contiguous()
    tensors["output.waveform"] = wave.contiguous()
    save_file(tensors, os.path.join(OUT, "vocoder_tiny.safetensors"))
    with open(os.path.join(OUT, "vocoder_tiny.json"), "w") as f:
        json.dump({"diffusers_version": diffusers.__version__, "config": TINY_VOCODER}, f, indent=1)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions
    transformer_fixture()
    mel = audio_vae_fixture()
    vocoder_fixture(mel)
    for name in os.listdir(OUT):  # save_file creates 0600 files; fixtures are committed
        os.chmod(os.path.join(OUT, name), 0o644)
