#!/usr/bin/env python3
"""The reference implementation's timing next to ours (issue 4's GPU check): diffusers'
LTX2VideoTransformer3DModel forward and AutoencoderKLLTX2Video decode at the released
stage-1 shape, bf16, random weights, on the GPU, timed the way examples/gpu_check.rs times
fv-inference (one untimed warm-up, then --repeat runs, each bracketed by a synchronise).

Run by `scripts/gpu-check.sh run` when the host's python3 has torch with CUDA (the device
machines do) and diffusers is importable (gpu-check.sh carries its wheel). It reads the
released configs from the committed manifests under crates/fv-inference/tests/fixtures, so
it builds exactly the model fv-inference's manifest test pins.

The comparison is as close as the reference allows: the forward runs with
`isolate_modalities=True` and a single audio token, so its audio stream costs next to nothing
and the video stream (what fv-inference implements) dominates; attention is PyTorch's fused
SDPA (fv-inference materialises the scores in blocks). Prints human lines and a final JSON
line.
"""

import argparse
import json
import os
import statistics
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "fv-inference", "tests", "fixtures")


DEVICE = "cuda"


def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return (time.perf_counter() - start) * 1e3, out


def random_init(module, dtype):
    """Materialise a meta-device module on the GPU with N(0, 0.02) values (speed does not
    depend on them; norms and tables stay finite)."""
    module = module.to_empty(device=DEVICE).to(dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0.0, 0.02)
        for b in module.buffers():
            if b.is_floating_point():
                b.fill_(1.0)
    return module.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="960x544x121")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--text-tokens", type=int, default=256)
    ap.add_argument("--no-vae", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu only for a smoke run of this script")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    width, height, frames = (int(v) for v in args.size.split("x"))
    dtype = torch.bfloat16

    from diffusers import AutoencoderKLLTX2Video
    from diffusers.models.transformers.transformer_ltx2 import LTX2VideoTransformer3DModel

    with open(os.path.join(FIXTURES, "manifest_ltx2_transformer.json")) as fh:
        tcfg = json.load(fh)["config"]
    with open(os.path.join(FIXTURES, "manifest_ltx2_vae_decoder.json")) as fh:
        vcfg = json.load(fh)["config"]
    if args.layers:
        tcfg["num_layers"] = args.layers
    for k in ("vae_scale_factors",):
        tcfg[k] = tuple(tcfg[k])

    f, h, w = (frames - 1) // 8 + 1, height // 32, width // 32
    tokens = f * h * w
    where = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {where}: {width}x{height}x{frames}, "
          f"latent grid ({f}, {h}, {w}) = {tokens} tokens, bf16, {tcfg['num_layers']} blocks")

    start = time.perf_counter()
    with torch.device("meta"):
        transformer = LTX2VideoTransformer3DModel(**tcfg)
    transformer = random_init(transformer, dtype)
    sync()
    weights_ms = (time.perf_counter() - start) * 1e3

    gen = torch.Generator(device=DEVICE).manual_seed(0)
    hidden = torch.randn(1, tokens, tcfg["in_channels"], device=DEVICE, dtype=dtype, generator=gen)
    text = torch.randn(1, args.text_tokens, tcfg["caption_channels"], device=DEVICE, dtype=dtype,
                       generator=gen)
    audio = torch.randn(1, 1, tcfg["audio_in_channels"], device=DEVICE, dtype=dtype, generator=gen)
    mask = torch.ones(1, args.text_tokens, device=DEVICE, dtype=dtype)
    timestep = torch.tensor([909.375], device=DEVICE, dtype=dtype)

    def forward():
        with torch.no_grad():
            return transformer(hidden_states=hidden, audio_hidden_states=audio, encoder_hidden_states=text,
                               audio_encoder_hidden_states=text, timestep=timestep,
                               encoder_attention_mask=mask, audio_encoder_attention_mask=mask,
                               num_frames=f, height=h, width=w, fps=24.0, audio_num_frames=1,
                               isolate_modalities=True, return_dict=False)[0]

    timed(forward)
    transformer_ms = [timed(forward)[0] for _ in range(args.repeat)]
    print(f"transformer forward: median {statistics.median(transformer_ms):.1f} ms "
          f"({', '.join(f'{m:.1f}' for m in transformer_ms)} ms); weights made in {weights_ms:.0f} ms")
    del transformer
    if DEVICE == "cuda":
        torch.cuda.empty_cache()

    vae_ms = []
    if not args.no_vae:
        with torch.device("meta"):
            vae = AutoencoderKLLTX2Video(**{k: v for k, v in vcfg.items()
                                            if k not in ("spatial_compression_ratio",
                                                         "temporal_compression_ratio")})
        vae = random_init(vae, dtype)
        z = torch.randn(1, vcfg["latent_channels"], f, h, w, device=DEVICE, dtype=dtype, generator=gen)

        def decode():
            with torch.no_grad():
                return vae.decode(z, None, return_dict=False)[0]

        _, video = timed(decode)
        print(f"VAE decode to {list(video.shape)}")
        del video
        vae_ms = [timed(decode)[0] for _ in range(args.repeat)]
        print(f"VAE decode: median {statistics.median(vae_ms):.1f} ms "
              f"({', '.join(f'{m:.1f}' for m in vae_ms)} ms)")

    print(json.dumps({
        "impl": "diffusers", "torch": torch.__version__, "size": [width, height, frames],
        "layers": tcfg["num_layers"], "tokens": tokens, "transformer_ms": transformer_ms,
        "transformer_median_ms": statistics.median(transformer_ms), "vae_ms": vae_ms,
        "vae_median_ms": statistics.median(vae_ms) if vae_ms else None,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None,
    }))


if __name__ == "__main__":
    main()
