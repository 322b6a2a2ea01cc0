#!/usr/bin/env python3
"""Parity fixtures for fv-inference's text path (tokenizer, Gemma-3 text encoder, connectors).

Not part of CI: the fixtures it writes are committed, and `cargo test -p fv-inference` reads
them. Rerun it only when the reference or the tiny configurations change.

How to run (CPU only, well under a minute):

    /root/.cache/ltx-venv/bin/python crates/fv-inference/scripts/make_text_fixtures.py

(the venv holds torch 2.9.1, diffusers 0.42.1, transformers 5.25.0, tokenizers 0.23).

It writes, under crates/fv-inference/tests/fixtures/:

- text_tiny/tokenizer/: a tiny tokenizer in Gemma's format (BPE with byte fallback, `▁` for
  spaces, specials <pad>=0 <eos>=1 <bos>=2 <unk>=3 <mask>=4, <0x00>..<0xFF> at 5..260,
  two extra added tokens) trained here with the `tokenizers` library; loaded back through
  transformers' AutoTokenizer (GemmaTokenizer), exactly as diffusers' LTX2Pipeline does.
- text_tiny/text_encoder/: a tiny `Gemma3ForConditionalGeneration` (config.json with a nested
  text_config, model.safetensors with `model.language_model.*` and SigLIP tensors) written by
  transformers' own save_pretrained: 3 layers (sliding, sliding, full), sliding window 4,
  linear RoPE scaling x8 on the full layer, query_pre_attn_scalar 24 != head_dim 16, random
  RMSNorm weights.
- text_tiny/connectors/: a tiny `LTX2TextConnectors` (caption_channels 32 = Gemma's hidden
  size, text_proj_in_factor 4 = layers + 1, 2 x 16 heads, 2 layers, 4 registers, split RoPE)
  written by diffusers' save_pretrained.
- text_tiny_lightricks.safetensors: the same connector tensors under the Lightricks single-file
  names (`model.diffusion_model.{video,audio}_embeddings_connector...`, with
  `text_embedding_projection.aggregate_embed.weight` outside the prefix), plus one transformer
  tensor the connector load must skip. The names are checked here by renaming them back with
  diffusers' converter rename table and loading them strictly into the reference model.
- text_tiny.safetensors + text_tiny.json: reference outputs:
  * `tok.ids` / `tok.mask` [N, 1024]: the pipeline's tokenizer call (strip, max_length 1024,
    left padding, truncation, <bos>) on N prompts (whitespace, unicode through byte fallback,
    literal special tokens, an empty prompt, one longer than 1024 tokens);
  * `batch.ids` / `batch.mask` [4, 16]: the pipeline's tokenizer call with max_length 16 on
    4 prompts of lengths 16 (truncated), 10, 5 and 1 (the empty prompt);
  * `gemma.hidden_states` [4, 16, 32, 4]: every hidden state of that left-padded batch
    (`output_hidden_states=True`), and `gemma.prompt_embeds` [4, 16, 128], the pipeline's
    stacked features (`LTX2Pipeline._get_gemma_prompt_embeds`, layer fastest);
  * `connectors.video` / `connectors.audio` / `connectors.mask`: `LTX2TextConnectors` on those
    features, as `LTX2Pipeline.__call__` calls it.
"""

import json
import math
import os
import shutil
import sys
from types import SimpleNamespace

import torch
from safetensors.torch import load_file, save_file
from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer

import diffusers
import transformers
from diffusers.pipelines.ltx2 import LTX2TextConnectors
from diffusers.pipelines.ltx2.pipeline_ltx2 import LTX2Pipeline
from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
ROOT = os.path.join(FIXTURES, "text_tiny")

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
EXTRA_ADDED = ["<start_of_turn>", "<end_of_turn>"]
MAX_LEN = 1024  # the pipeline's max_sequence_length
BATCH_LEN = 16  # the tiny batch's max_sequence_length (a multiple of the 4 registers)

CORPUS = [
    "a red fox runs across the snowy field at dawn",
    "the camera slowly pans over a quiet city street at night",
    "close-up of a golden retriever catching a frisbee in the park",
    "waves crash against the rocks while seagulls circle overhead",
    "an astronaut floats inside the space station, looking at earth",
    "a chef slices fresh vegetables on a wooden board, steam rising",
    "time-lapse of clouds rolling over green mountains",
    "two people dance in the rain under a streetlight",
]

# Tokenizer cases: whitespace the pipeline strips (Python's str.strip also strips \x1c-\x1f),
# inner runs of spaces, tabs and newlines, characters outside the tiny vocabulary (byte
# fallback), literal special tokens, the empty prompt, and one prompt over 1024 tokens.
TOKENIZER_PROMPTS = [
    "a red fox runs across the snowy field at dawn",
    "  \t the camera pans  over   a street \n",
    "\x1f\u3000close-up of a dog\u2003\x1c",
    "café ☕ naïve 日本 — ok",
    "<start_of_turn>user a dog<end_of_turn> <eos> end",
    "line one\nline two\ttabbed",
    "",
    "   ",
    " ".join(CORPUS * 30),
]

# The hidden-state batch: lengths 16 (truncated), 10, 5, 1 at max_length 16.
BATCH_PROMPTS = [
    " ".join(CORPUS),
    "waves crash against the rocks",
    "a red fox",
    "",
]

GEMMA_TEXT = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    query_pre_attn_scalar=24,
    sliding_window=4,
    layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    rope_theta=1e6,
    rope_local_base_freq=1e4,
    rope_scaling={"rope_type": "linear", "factor": 8.0},
    max_position_embeddings=64,
    rms_norm_eps=1e-6,
)

SIGLIP_TINY = dict(
    model_type="siglip_vision_model",
    hidden_size=16,
    intermediate_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    image_size=32,
    patch_size=8,
)

CONNECTORS_TINY = dict(
    caption_channels=32,
    text_proj_in_factor=4,
    video_connector_num_attention_heads=2,
    video_connector_attention_head_dim=16,
    video_connector_num_layers=2,
    video_connector_num_learnable_registers=4,
    audio_connector_num_attention_heads=2,
    audio_connector_attention_head_dim=16,
    audio_connector_num_layers=2,
    audio_connector_num_learnable_registers=4,
    connector_rope_base_seq_len=32,
    rope_theta=10000.0,
    rope_double_precision=True,
    causal_temporal_positioning=False,
    rope_type="split",
)

# scripts/convert_ltx2_to_diffusers.py (diffusers GitHub), LTX_2_0_CONNECTORS_KEYS_RENAME_DICT:
# original (single-file, after the `model.diffusion_model.` prefix is removed) -> diffusers.
CONNECTORS_RENAME = {
    "connectors.": "",
    "video_embeddings_connector": "video_connector",
    "audio_embeddings_connector": "audio_connector",
    "transformer_1d_blocks": "transformer_blocks",
    "text_embedding_projection.aggregate_embed": "text_proj_in",
    "q_norm": "norm_q",
    "k_norm": "norm_k",
}


def lightricks_connector_name(name: str) -> str:
    """Inverse of the converter's rename table; the projection lives outside the prefix."""
    n = name
    for new, old in [
        ("text_proj_in", "text_embedding_projection.aggregate_embed"),
        ("video_connector", "video_embeddings_connector"),
        ("audio_connector", "audio_embeddings_connector"),
        ("transformer_blocks", "transformer_1d_blocks"),
        ("norm_q", "q_norm"),
        ("norm_k", "k_norm"),
    ]:
        n = n.replace(new, old)
    if n.startswith("text_embedding_projection."):
        return n
    return "model.diffusion_model." + n


def converter_rename(name: str) -> str:
    """What diffusers' converter does to a single-file connector name."""
    n = name
    if n.startswith("model.diffusion_model."):
        n = n[len("model.diffusion_model."):]
    for old, new in CONNECTORS_RENAME.items():
        n = n.replace(old, new)
    return n


def build_tokenizer(out_dir: str) -> None:
    trainer_tok = Tokenizer(BPE(unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    trainer_tok.normalizer = normalizers.Replace(" ", "▁")
    trainer_tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    trainer = BpeTrainer(vocab_size=200, special_tokens=SPECIALS, limit_alphabet=40, show_progress=False)
    trainer_tok.train_from_iterator(CORPUS * 4, trainer)
    model = json.loads(trainer_tok.to_str())["model"]

    # Gemma's id layout: specials, then the 256 byte-fallback tokens, then the learned pieces.
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for tok, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        if tok not in vocab:
            vocab[tok] = len(vocab)
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]

    tok = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in EXTRA_ADDED])
    tok.post_processor = processors.TemplateProcessing(
        single="<bos>:0 $A:0", pair="<bos>:0 $A:0 <bos>:1 $B:1", special_tokens=[("<bos>", 2)]
    )
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(
            {
                "tokenizer_class": "GemmaTokenizer",
                "add_bos_token": True,
                "add_eos_token": False,
                "bos_token": "<bos>",
                "eos_token": "<eos>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "mask_token": "<mask>",
                "padding_side": "left",
                "model_max_length": 1000000000000000019884624838656,
            },
            f,
            indent=1,
        )


def pipeline_tokenize(tokenizer, prompts, max_len):
    """The tokenizer call of `LTX2Pipeline._get_gemma_prompt_embeds`."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    prompts = [p.strip() for p in prompts]
    out = tokenizer(
        prompts,
        padding="max_length",
        max_length=max_len,
        truncation=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    return out.input_ids, out.attention_mask


def init_gemma(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Embeddings ~ N(0, 1), linear weights ~ N(0, 1/fan_in), RMSNorm weights ~ N(0, 0.5)
    (Gemma multiplies by 1 + w, so the default 0 would be an identity scale)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("model.language_model."):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif "norm" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                raise SystemExit(f"unhandled parameter {name} {tuple(p.shape)}")


def init_connectors(model: torch.nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("learnable_registers"):
                p.copy_(torch.rand(p.shape, generator=gen) * 2.0 - 1.0)
            elif "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                raise SystemExit(f"unhandled parameter {name} {tuple(p.shape)}")


def main() -> None:
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    tok_dir = os.path.join(ROOT, "tokenizer")
    build_tokenizer(tok_dir)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    raw = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    vocab_size = raw.get_vocab_size(with_added_tokens=True)

    # Tokenizer cases at the pipeline's length; the raw `tokenizers` file must agree with
    # transformers' GemmaTokenizer (which rebuilds the normaliser and pre-tokeniser itself).
    tok_ids, tok_mask = pipeline_tokenize(tokenizer, TOKENIZER_PROMPTS, MAX_LEN)
    for i, p in enumerate(TOKENIZER_PROMPTS):
        with_bos = raw.encode(p.strip(), add_special_tokens=True).ids
        pieces = raw.encode(p.strip(), add_special_tokens=False).ids
        if with_bos != [2] + pieces:
            raise SystemExit(f"the post-processor does not prepend <bos> alone on prompt {i}")
        want = [2] + pieces[: MAX_LEN - 1]  # truncation keeps <bos> and the first 1023 pieces
        got = [t for t, m in zip(tok_ids[i].tolist(), tok_mask[i].tolist()) if m]
        if got != want:
            raise SystemExit(f"tokenizers and transformers disagree on prompt {i}: {got[:20]} vs {want[:20]}")
    lengths = tok_mask.sum(-1).tolist()
    if max(lengths) != MAX_LEN or min(lengths) != 1:
        raise SystemExit(f"tokenizer cases do not cover truncation and the empty prompt: {lengths}")
    if not any(3 == t for t in tok_ids.flatten().tolist()) and not any(5 <= t < 261 for t in tok_ids.flatten().tolist()):
        raise SystemExit("no byte-fallback token in the tokenizer cases")

    # The tiny Gemma-3, saved exactly as a diffusers pipeline's text_encoder/ folder.
    torch.manual_seed(0)
    config = Gemma3Config(
        text_config=dict(vocab_size=vocab_size, **GEMMA_TEXT),
        vision_config=SIGLIP_TINY,
        mm_tokens_per_image=4,
    )
    config._attn_implementation = "sdpa"
    text_encoder = Gemma3ForConditionalGeneration(config).eval()
    gen = torch.Generator().manual_seed(4321)
    init_gemma(text_encoder, gen)
    te_dir = os.path.join(ROOT, "text_encoder")
    text_encoder.save_pretrained(te_dir)

    batch_ids, batch_mask = pipeline_tokenize(tokenizer, BATCH_PROMPTS, BATCH_LEN)
    if batch_mask.sum(-1).tolist() != [16, 10, 5, 1]:
        raise SystemExit(f"batch lengths changed: {batch_mask.sum(-1).tolist()}")
    with torch.no_grad():
        out = text_encoder(input_ids=batch_ids, attention_mask=batch_mask, output_hidden_states=True)
    states = out.hidden_states
    if len(states) != GEMMA_TEXT["num_hidden_layers"] + 1:
        raise SystemExit(f"expected {GEMMA_TEXT['num_hidden_layers'] + 1} hidden states, got {len(states)}")
    # The same features through the pipeline's own helper (stack on a new last axis, flatten).
    pipe = SimpleNamespace(tokenizer=tokenizer, text_encoder=text_encoder, _execution_device=torch.device("cpu"))
    with torch.no_grad():
        prompt_embeds, prompt_mask = LTX2Pipeline._get_gemma_prompt_embeds(
            pipe, BATCH_PROMPTS, max_sequence_length=BATCH_LEN, device=torch.device("cpu"), dtype=torch.float32
        )
    stacked = torch.stack(states, dim=-1)
    if not torch.equal(prompt_embeds, stacked.flatten(2, 3)) or not torch.equal(prompt_mask, batch_mask):
        raise SystemExit("pipeline features differ from the stacked hidden states")

    # Only real tokens, at positions T-L..T-1: the valid rows must agree (the Rust fast path).
    with torch.no_grad():
        lm = text_encoder.model.language_model
        worst = 0.0
        for b in range(len(BATCH_PROMPTS)):
            n = int(batch_mask[b].sum())
            ids = batch_ids[b : b + 1, BATCH_LEN - n :]
            pos = torch.arange(BATCH_LEN - n, BATCH_LEN).unsqueeze(0)
            alone = lm(input_ids=ids, position_ids=pos, output_hidden_states=True).hidden_states
            for a, s in zip(alone, states):
                worst = max(worst, (a[0] - s[b, BATCH_LEN - n :]).abs().max().item())
    print(f"gemma: unpadded run vs padded valid rows: {worst:.2e}")

    # Connectors.
    torch.manual_seed(1)
    connectors = LTX2TextConnectors(**CONNECTORS_TINY).eval()
    init_connectors(connectors, torch.Generator().manual_seed(99))
    conn_dir = os.path.join(ROOT, "connectors")
    connectors.save_pretrained(conn_dir)
    with torch.no_grad():
        video, audio, conn_mask = connectors(prompt_embeds, prompt_mask, padding_side="left")
    if not torch.equal(conn_mask, torch.ones_like(conn_mask)):
        raise SystemExit("connector mask is not all ones with registers")

    # Single-file names, checked against the converter's table.
    state = connectors.state_dict()
    lt = {lightricks_connector_name(k): v.contiguous() for k, v in state.items()}
    back = {converter_rename(k): v for k, v in lt.items()}
    check = LTX2TextConnectors(**CONNECTORS_TINY)
    check.load_state_dict(back, strict=True)
    lt["model.diffusion_model.proj_in.weight"] = torch.zeros(4, 4)
    save_file(lt, os.path.join(FIXTURES, "text_tiny_lightricks.safetensors"))

    tensors = {
        "tok.ids": tok_ids.to(torch.int64).contiguous(),
        "tok.mask": tok_mask.to(torch.int64).contiguous(),
        "batch.ids": batch_ids.to(torch.int64).contiguous(),
        "batch.mask": batch_mask.to(torch.int64).contiguous(),
        "gemma.hidden_states": stacked.contiguous(),
        "gemma.prompt_embeds": prompt_embeds.contiguous(),
        "connectors.video": video.contiguous(),
        "connectors.audio": audio.contiguous(),
        "connectors.mask": conn_mask.to(torch.int64).contiguous(),
    }
    save_file(tensors, os.path.join(FIXTURES, "text_tiny.safetensors"))
    with open(os.path.join(FIXTURES, "text_tiny.json"), "w") as f:
        json.dump(
            {
                "diffusers_version": diffusers.__version__,
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "max_length": MAX_LEN,
                "batch_length": BATCH_LEN,
                "tokenizer_prompts": TOKENIZER_PROMPTS,
                "batch_prompts": BATCH_PROMPTS,
                "unpadded_vs_padded_max_abs": worst,
            },
            f,
            indent=1,
            ensure_ascii=True,
        )
    for base, _, names in os.walk(ROOT):
        for n in names:
            os.chmod(os.path.join(base, n), 0o644)
    for n in ["text_tiny.safetensors", "text_tiny.json", "text_tiny_lightricks.safetensors"]:
        os.chmod(os.path.join(FIXTURES, n), 0o644)
    print(f"vocab {vocab_size}, tokenizer lengths {lengths}")
    print(f"hidden state max |x| {stacked.abs().max():.3f}; video {video.abs().max():.3f} audio {audio.abs().max():.3f}")
    for name in sorted(load_file(os.path.join(te_dir, "model.safetensors")).keys())[:3]:
        print("text_encoder tensor:", name)


if __name__ == "__main__":
    sys.exit(main())
