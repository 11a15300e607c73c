"""Analytic FLOP counts of the captioners and answering LLMs: the numerators of `videoqa bench`'s MFU
and the GPU floor of docs/performance.md.

Convention (the usual one for MFU): 2 FLOPs per multiply-add of a matrix product, and only matrix
products are counted - linear layers, the attention products Q.K^T and A.V, the ViT's patch
embedding. Layer norms, activations, softmax, biases and embedding lookups are left out (well under
1 % for these models). Only *useful* work is counted:

- causal attention counts the (query, key) pairs the mask allows: the j-th token of a sequence
  attends to j keys (itself included), so a KV-cached decode step at context c costs c pairs, and
  prefill of n tokens costs n (n + 1) / 2 pairs - the same total as one teacher-forced pass;
- generation of T tokens after a P-token prompt forwards P + T - 1 tokens (the last token is never
  fed back) and runs the LM head T times (transformers' `logits_to_keep=1`);
- a left-padded batch is counted row by row with each row's real lengths (padding is waste);
- the ViT counts only the layers whose output is read (23 of ViT-L's 24 for LLaVA's
  `hidden_states[-2]` and DeepLens's {13, 18, 23}), with 1 + N tokens (CLS + patches).

Run `python -m videoqa.bench.flops [PEAK_TFLOPS]` for the per-frame / per-token table and the
H100 floor.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from captioner.modeling.presets import get_config


@dataclass(frozen=True)
class TransformerShape:
    """What the FLOP count of a Transformer stack depends on.

    gated_mlp: SwiGLU-style MLP (LLaMA, Qwen): three hidden x ffn matrices instead of two.
    kv_heads: key/value heads (grouped-query attention shrinks the K and V projections).
    vocab: LM head rows (0 for encoders). embed_dim: width of the token embeddings / LM head when
    it differs from `hidden` (OPT's word_embed_proj_dim, with project_in / project_out).
    """

    layers: int
    hidden: int
    ffn: int
    heads: int
    head_dim: int
    kv_heads: int
    gated_mlp: bool = False
    vocab: int = 0
    embed_dim: int | None = None

    @property
    def layer_linear_flops(self) -> int:
        """Linear-layer FLOPs of one layer for one token: Q, K, V, output projection and the MLP."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        projections = 2 * self.hidden * (q + 2 * kv) + 2 * q * self.hidden
        mlp = (3 if self.gated_mlp else 2) * 2 * self.hidden * self.ffn
        return projections + mlp

    def attention_flops(self, pairs: int | float) -> float:
        """Q.K^T and A.V FLOPs of one layer for `pairs` (query, key) pairs, all heads."""
        return 4 * self.heads * self.head_dim * pairs

    @property
    def lm_head_flops(self) -> int:
        """FLOPs of one row of logits (0 for an encoder)."""
        return 2 * (self.embed_dim or self.hidden) * self.vocab

    @property
    def io_projection_flops(self) -> int:
        """OPT's project_in (or project_out) for one token when embed_dim != hidden, else 0."""
        return 0 if self.embed_dim in (None, self.hidden) else 2 * self.embed_dim * self.hidden


def shape_of(config: Any) -> TransformerShape:
    """The shape of a transformers config: CLIP vision, BERT, OPT, or a LLaMA-style decoder."""
    kind = getattr(config, "model_type", "")
    heads = config.num_attention_heads
    if kind in ("clip_vision_model", "bert", "clip_text_model"):
        return TransformerShape(
            config.num_hidden_layers,
            config.hidden_size,
            config.intermediate_size,
            heads,
            config.hidden_size // heads,
            heads,
        )
    if kind == "opt":
        return TransformerShape(
            config.num_hidden_layers,
            config.hidden_size,
            config.ffn_dim,
            heads,
            config.hidden_size // heads,
            heads,
            vocab=config.vocab_size,
            embed_dim=None if config.word_embed_proj_dim == config.hidden_size else config.word_embed_proj_dim,
        )
    # LLaMA, Qwen2, Mistral: gated MLP, grouped-query attention
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return TransformerShape(
        config.num_hidden_layers,
        config.hidden_size,
        config.intermediate_size,
        heads,
        head_dim,
        getattr(config, "num_key_value_heads", None) or heads,
        gated_mlp=True,
        vocab=config.vocab_size,
    )


# the models of the paper and of docs/performance.md (biases and norms left out, as everywhere here)
CLIP_VIT_L_336 = TransformerShape(layers=24, hidden=1024, ffn=4096, heads=16, head_dim=64, kv_heads=16)
CLIP_VIT_L_336_PATCHES = (336 // 14) ** 2  # 576
OPT_125M = TransformerShape(layers=12, hidden=768, ffn=3072, heads=12, head_dim=64, kv_heads=12, vocab=50272)
LLAMA2_7B = TransformerShape(
    layers=32, hidden=4096, ffn=11008, heads=32, head_dim=128, kv_heads=32, gated_mlp=True, vocab=32000
)
QWEN25_14B = TransformerShape(
    layers=48, hidden=5120, ffn=13824, heads=40, head_dim=128, kv_heads=8, gated_mlp=True, vocab=152064
)


# ---------------------------------------------------------------------------- building blocks


def causal_pairs(tokens: int) -> int:
    """(query, key) pairs of causal attention over `tokens` tokens: 1 + 2 + ... + tokens."""
    return tokens * (tokens + 1) // 2


def mlp_flops(tokens: int, widths: Sequence[int]) -> int:
    """A chain of Linear layers widths[0] -> widths[1] -> ... applied to `tokens` tokens."""
    return sum(2 * tokens * a * b for a, b in zip(widths[:-1], widths[1:]))


def encoder_flops(shape: TransformerShape, tokens: int, layers: int | None = None) -> float:
    """A bidirectional encoder (ViT, BERT) over `tokens` tokens: every token attends to every token."""
    layers = shape.layers if layers is None else layers
    return layers * (tokens * shape.layer_linear_flops + shape.attention_flops(tokens * tokens))


def decoder_flops(shape: TransformerShape, prompt_tokens: int, new_tokens: int) -> float:
    """Greedy generation of `new_tokens` after a `prompt_tokens` prompt with a KV cache.

    Prefill + decode forward P + T - 1 tokens causally (see the module docstring) and the LM head
    runs once per generated token. new_tokens = 0 is a prefill that produces no token.
    """
    if prompt_tokens < 1 or new_tokens < 0:
        raise ValueError(f"need prompt_tokens >= 1 and new_tokens >= 0, got {prompt_tokens}, {new_tokens}")
    forwarded = prompt_tokens + max(new_tokens - 1, 0)
    layers = shape.layers * (forwarded * shape.layer_linear_flops + shape.attention_flops(causal_pairs(forwarded)))
    io = forwarded * shape.io_projection_flops + new_tokens * shape.io_projection_flops  # project_in, _out
    return layers + io + new_tokens * shape.lm_head_flops


def token_flops(shape: TransformerShape, context: int) -> float:
    """One decoded token at a KV cache holding `context` tokens (itself included), LM head included."""
    return shape.layers * (shape.layer_linear_flops + shape.attention_flops(context)) + shape.lm_head_flops


def vision_flops(vision_config: Any, layers: int | None = None) -> float:
    """A CLIP ViT on one image: patch embedding + `layers` encoder layers over CLS + patches."""
    patch, side = vision_config.patch_size, vision_config.image_size
    patches = (side // patch) ** 2
    channels = getattr(vision_config, "num_channels", 3)
    embedding = 2 * patches * channels * patch * patch * vision_config.hidden_size
    return embedding + encoder_flops(shape_of(vision_config), patches + 1, layers)


# ---------------------------------------------------------------------------- captioners


def deeplens_flops(config: Any, draft_tokens: int) -> float:
    """DeepLens (SeR's second-glance connector) for one image and a draft caption of `draft_tokens`."""
    lens = config.deeplens_config
    width, n = lens.hidden_size, config.num_visual_tokens
    vision_width = config.vision_config.hidden_size
    visual_in = vision_width * (len(config.multilayer_feature_layers) if config.deeplens_multilayer_input else 1)
    lm_embed = _lm_embed_dim(config.text_config)
    caption = min(draft_tokens, config.deeplens_max_caption_tokens) if config.deeplens_caption_input else 0
    return (
        mlp_flops(n, [visual_in, width, width])  # (2) multi-layer features -> DeepLens width
        + mlp_flops(caption, [lm_embed, width, width])  # (1) draft caption embeddings -> DeepLens width
        + encoder_flops(shape_of(lens), n + caption)  # BERT layers over visual + caption tokens
        + mlp_flops(n, [width, width, lm_embed])  # visual positions -> LM input width
    )


def ser_caption_flops(
    config: Any,
    *,
    first_prompt: int,
    new_tokens: int,
    refine_prompts: Sequence[int] = (),
    drafts: Sequence[int] = (),
    refine_new_tokens: Sequence[int] | None = None,
) -> dict[str, float]:
    """FLOPs of captioning ONE image with a SeR model (a `SeRConfig`), split by part.

    first_prompt: first-glance prompt length in tokens (BOS + N image tokens + instruction).
    new_tokens: tokens generated by the first glance.
    refine_prompts[k], drafts[k]: refinement step k's prompt length and the length of the caption
        DeepLens reads; refine_new_tokens[k] its generated tokens (default: new_tokens).
    Empty refine_prompts = the single-pass specialist (no DeepLens, no second LM pass).
    """
    if len(refine_prompts) != len(drafts):
        raise ValueError("one draft length per refinement prompt")
    refine_new = list(refine_new_tokens) if refine_new_tokens is not None else [new_tokens] * len(refine_prompts)
    n = config.num_visual_tokens
    vision_width = config.vision_config.hidden_size
    connector_in = vision_width * (len(config.multilayer_feature_layers) if config.first_glance_multilayer else 1)
    lm_embed = _lm_embed_dim(config.text_config)
    lm = shape_of(config.text_config)
    parts = {
        "vision": vision_flops(config.vision_config, config.vision_layers_used),
        "connector": float(mlp_flops(n, [connector_in] + [lm_embed] * config.connector_depth)),
        "lm_first_glance": decoder_flops(lm, first_prompt, new_tokens),
        "deeplens": float(sum(deeplens_flops(config, d) for d in drafts)),
        "lm_refine": float(sum(decoder_flops(lm, p, t) for p, t in zip(refine_prompts, refine_new))),
    }
    parts["total"] = sum(parts.values())
    return parts


def llava_caption_flops(config: Any, *, prompt_tokens: int, new_tokens: int) -> dict[str, float]:
    """FLOPs of captioning ONE image with a LLaVA-1.5 model (a transformers `LlavaConfig`).

    prompt_tokens counts the image tokens (576 for ViT-L/14-336). The ViT counts the layers up to
    `vision_feature_layer` (transformers itself runs them all and keeps every hidden state).
    """
    vision = config.vision_config
    n_states = vision.num_hidden_layers + 1
    feature_layers = config.vision_feature_layer
    feature_layers = [feature_layers] if isinstance(feature_layers, int) else list(feature_layers)
    used = max(i % n_states for i in feature_layers)
    n = (vision.image_size // vision.patch_size) ** 2
    text = config.text_config
    projector_in = vision.hidden_size * len(feature_layers)
    parts = {
        "vision": vision_flops(vision, used),
        "connector": float(mlp_flops(n, [projector_in, text.hidden_size, text.hidden_size])),
        "lm": decoder_flops(shape_of(text), prompt_tokens, new_tokens),
    }
    parts["total"] = sum(parts.values())
    return parts


def _lm_embed_dim(text_config: Any) -> int:
    return getattr(text_config, "word_embed_proj_dim", None) or text_config.hidden_size


# ---------------------------------------------------------------------------- the GPU floor


@dataclass(frozen=True)
class VideoFloor:
    """Seconds a device at `peak` FLOP/s (100 % MFU) needs for one video: the analytic floor."""

    frames: int
    vision_s: float
    caption_s: float  # SeR: vision + both glances
    answer_s: float  # the answering LLM: prefill of the transcript + the answer tokens
    transcript_tokens: int


def video_floor(
    *,
    video_s: float = 600.0,
    fps: float = 1.0,
    peak: float = 989e12,
    caption_tokens: int = 60,
    instruction_tokens: int = 16,
    line_overhead_tokens: int = 4,
    question_tokens: int = 150,
    answer_tokens: int = 1,
    llm: TransformerShape = QWEN25_14B,
) -> VideoFloor:
    """The floor for one video with SeR (paper sizes) captioning at `fps` and `llm` answering.

    Defaults: 10 minutes at 1 fps, H100 SXM bf16 dense peak (989 TFLOP/s), 60-token captions
    (the prompt asks for 50 words), "t: caption" transcript lines (+4 tokens each), a 150-token
    system prompt + question + options, one answer token (constrained choice).
    """
    ser = get_config("ser")
    frames = int(video_s * fps)
    first_prompt = 1 + ser.num_visual_tokens + instruction_tokens
    refine_prompt = first_prompt + 4 + caption_tokens  # + "\nInitial caption:" + the draft
    per_frame = ser_caption_flops(
        ser,
        first_prompt=first_prompt,
        new_tokens=caption_tokens,
        refine_prompts=[refine_prompt],
        drafts=[caption_tokens],
    )
    transcript = frames * (caption_tokens + line_overhead_tokens)
    answer = decoder_flops(llm, transcript + question_tokens, answer_tokens)
    return VideoFloor(
        frames=frames,
        vision_s=frames * per_frame["vision"] / peak,
        caption_s=frames * per_frame["total"] / peak,
        answer_s=answer / peak,
        transcript_tokens=transcript,
    )


def floor_table(peak: float = 989e12) -> str:
    """Markdown: FLOPs per frame / per token of each model, and the floor for a 10-minute video."""
    ser = get_config("ser")
    specialist = get_config("specialist")
    first = 1 + 576 + 16
    ser_parts = ser_caption_flops(ser, first_prompt=first, new_tokens=60, refine_prompts=[first + 64], drafts=[60])
    spec_parts = ser_caption_flops(specialist, first_prompt=first, new_tokens=60)
    vision = vision_flops(ser.vision_config, 23)
    llava = vision + mlp_flops(576, [1024, 4096, 4096]) + decoder_flops(LLAMA2_7B, first, 60)
    rows = [
        ("CLIP ViT-L/14-336, 23 of 24 layers, per frame", vision),
        ("SeR caption (60 tokens, both glances), per frame", ser_parts["total"]),
        ("specialist caption (60 tokens), per frame", spec_parts["total"]),
        ("LLaVA-1.5-7B caption (60 tokens), per frame", llava),
        ("OPT-125M, per token (context 640)", token_flops(OPT_125M, 640)),
        ("LLaMA-2-7B, per token (context 640)", token_flops(LLAMA2_7B, 640)),
        ("Qwen2.5-14B, per token (context 1)", token_flops(QWEN25_14B, 1)),
        ("Qwen2.5-14B, per token (context 38,550)", token_flops(QWEN25_14B, 38550)),
    ]
    lines = ["| quantity | GFLOPs |", "|---|---:|"] + [f"| {name} | {value / 1e9:,.2f} |" for name, value in rows]
    floor = video_floor(peak=peak)
    lines += [
        "",
        f"10-minute video at 1 fps ({floor.frames} frames, {floor.transcript_tokens:,} transcript tokens), "
        f"one device at {peak / 1e12:,.0f} TFLOP/s:",
        "",
        "| stage | seconds at 100 % MFU |",
        "|---|---:|",
        f"| vision tower | {floor.vision_s:.3f} |",
        f"| SeR captioning (vision included) | {floor.caption_s:.3f} |",
        f"| (LLaVA-1.5-7B captioning instead, for comparison) | {floor.frames * llava / peak:.3f} |",
        f"| answering, Qwen2.5-14B (prefill of the transcript) | {floor.answer_s:.3f} |",
        f"| total | {floor.caption_s + floor.answer_s:.3f} |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m videoqa.bench.flops [PEAK_TFLOPS]
    print(floor_table(float(sys.argv[1]) * 1e12 if len(sys.argv) > 1 else 989e12))
