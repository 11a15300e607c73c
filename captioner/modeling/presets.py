"""Named model configurations: the paper's full sizes and tiny ones for tests and the demo.

    size   "" (paper)                          "tiny-"
    vision CLIP ViT-L/14 @ 336 px (576 tokens)  4-layer ViT, 64 px, patch 16 (16 tokens)
    LM     OPT-125M                             2-layer OPT, width 32, small byte-level BPE vocab
    lens   DeepLens: 6 BERT layers, width 768   2 BERT layers, width 32

    variant (Tab. 3)              switches
    specialist                    refine=False
    ser                           (1) initial caption + (2) multi-layer features  [default]
    ser-caption-only              (1) only: DeepLens reads the single penultimate layer
    ser-multilayer-only           (2) only: DeepLens ignores the caption
    single-glance-multilayer      refine=False, the connector reads layers {13, 18, 23}

Preset names are `<variant>` or `tiny-<variant>`. `build_tiny_checkpoint` writes a complete,
randomly initialised HF checkpoint (model + processor + tokenizer) in well under a second of compute.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from captioner.modeling.configuration_ser import (
    PAPER_DEEPLENS,
    PAPER_MULTILAYER_FEATURE_LAYERS,
    PAPER_TEXT,
    PAPER_VISION,
    SeRConfig,
)
from captioner.modeling.modeling_ser import SeRForCaptioning
from captioner.modeling.processing_ser import IMAGE_TOKEN, SeRProcessor, clip_image_processor
from videoqa_base.tokenizer import train_bpe_tokenizer

VARIANTS: dict[str, dict[str, Any]] = {
    "specialist": {"refine": False},
    "ser": {},
    "ser-caption-only": {"deeplens_multilayer_input": False},
    "ser-multilayer-only": {"deeplens_caption_input": False},
    "single-glance-multilayer": {"refine": False, "first_glance_multilayer": True},
}

TINY_VISION = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=4,
    num_attention_heads=4,
    image_size=64,
    patch_size=16,
    projection_dim=32,
    hidden_act="quick_gelu",
)
TINY_VOCAB_SIZE = 320
TINY_TEXT = dict(
    vocab_size=TINY_VOCAB_SIZE,
    hidden_size=32,
    num_hidden_layers=2,
    ffn_dim=64,
    num_attention_heads=4,
    max_position_embeddings=512,
    word_embed_proj_dim=32,
    do_layer_norm_before=True,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=1,
    dropout=0.0,
    init_std=0.25,
)
TINY_DEEPLENS = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=1)

_SIZES: dict[str, dict[str, Any]] = {
    "": dict(
        vision_config=PAPER_VISION,
        text_config=PAPER_TEXT,
        deeplens_config=PAPER_DEEPLENS,
        multilayer_feature_layers=PAPER_MULTILAYER_FEATURE_LAYERS,
    ),
    "tiny-": dict(
        vision_config=TINY_VISION,
        text_config=TINY_TEXT,
        deeplens_config=TINY_DEEPLENS,
        multilayer_feature_layers=[1, 2, 3],
        deeplens_max_caption_tokens=64,
        # a wider init than the usual 0.02, so that random tiny models caption each image differently
        initializer_range=0.25,
    ),
}

PRESETS: tuple[str, ...] = tuple(size + variant for size in _SIZES for variant in VARIANTS)


def get_config(preset: str, **overrides: Any) -> SeRConfig:
    """The `SeRConfig` of a preset; keyword arguments override top-level config fields."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    size = "tiny-" if preset.startswith("tiny-") else ""
    fields = copy.deepcopy(_SIZES[size])
    fields.update(VARIANTS[preset[len(size) :]])
    for key in ("vision_config", "text_config", "deeplens_config"):
        if isinstance(overrides.get(key), dict):  # merge partial sub-config overrides
            fields[key].update(overrides.pop(key))
    fields.update(overrides)
    return SeRConfig(**fields)


# a few sentences to train the tiny byte-level BPE tokenizer on: the prompt template, the paper's
# captioning prompt and caption-like text
TINY_TOKENIZER_CORPUS = [
    "Describe this frame within 50 words",
    "Describe the photo within 55 words.",
    "Provide a one-sentence caption for the provided image.",
    "USER: ASSISTANT: Initial caption:",
    "a man in a red shirt is riding a bicycle down the street",
    "a woman in a room with a cat sitting on a brown chair",
    "two dogs are playing with a ball on the green grass in the park",
    "a person is cutting vegetables on a wooden table in the kitchen",
    "a blue car is parked in front of a white house next to a tree",
    "the camera wearer opens the door and walks into the room",
]


def tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE, corpus: list[str] | None = None):
    """A byte-level BPE tokenizer trained on `corpus` (default `TINY_TOKENIZER_CORPUS`); any text encodes.
    Special tokens <pad>, </s>, <unk>, <image> take ids 0..3, matching the tiny text config's pad/bos/eos."""
    return train_bpe_tokenizer(
        TINY_TOKENIZER_CORPUS if corpus is None else corpus,
        vocab_size,
        ["<pad>", "</s>", "<unk>", IMAGE_TOKEN],
        pad_token="<pad>",
        bos_token="</s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": IMAGE_TOKEN},
    )


def build_tiny_checkpoint(out_dir: str | Path, preset: str = "tiny-ser", seed: int = 0, **overrides: Any) -> Path:
    """Write a complete randomly initialised checkpoint directory (config.json, model.safetensors,
    processor and tokenizer files) loadable with `SeRForCaptioning.from_pretrained` and
    `SeRProcessor.from_pretrained`. Same seed -> same weights. Returns the directory."""
    if not preset.startswith("tiny-"):
        raise ValueError(f"build_tiny_checkpoint builds tiny presets only, not {preset!r}")
    out_dir = Path(out_dir)
    tokenizer = tiny_tokenizer()
    text = dict(overrides.pop("text_config", {}))
    text.setdefault("vocab_size", len(tokenizer))
    config = get_config(
        preset, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"), **overrides
    )
    processor = SeRProcessor(
        clip_image_processor(config.vision.image_size),
        tokenizer,
        num_image_tokens=config.num_visual_tokens,
        max_caption_tokens=config.deeplens_max_caption_tokens,
    )
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = SeRForCaptioning(config)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


__all__ = [
    "PRESETS",
    "VARIANTS",
    "get_config",
    "build_tiny_checkpoint",
    "tiny_tokenizer",
    "TINY_TOKENIZER_CORPUS",
    "TINY_VISION",
    "TINY_TEXT",
    "TINY_DEEPLENS",
    "TINY_VOCAB_SIZE",
    "PAPER_VISION",
    "PAPER_TEXT",
    "PAPER_DEEPLENS",
]
