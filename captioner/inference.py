"""Batched SeR captioning: the paper's inference strategy (Sec. 5, "Inference Strategy").

Per batch of images:
    1. the ViT runs ONCE; the features both glances need stay in a `VisionBuffer`
    2. first glance: connector tokens + instruction -> initial caption (greedy, KV cache)
    3. one more glance (x refine_steps): DeepLens(buffer, previous caption) tokens + instruction +
       previous caption -> refined caption
Prompts are left-padded so each caption is what the image would get alone (batch invariance).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from captioner.modeling_ser import SeRForCaptioning, VisionBuffer
from captioner.processing_ser import SeRProcessor
from videoqa.errors import MissingModelError, UserError


@dataclass
class CaptionResult:
    """Captions of a batch of images. `refined` are the final captions (== `initial` for a
    single-pass model); `steps[k]` are the captions after refinement step k+1."""

    initial: list[str]
    refined: list[str]
    steps: list[list[str]] = field(default_factory=list)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | str = "cpu") -> torch.dtype:
    """auto: bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU (no fast half matmuls)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32}
    if dtype not in names:
        raise UserError(f"unknown dtype {dtype!r} (known: auto, {', '.join(names)})")
    return names[dtype]


class MissingCheckpointError(MissingModelError):
    """A SeR checkpoint directory that does not exist; says how to train one (none is published)."""


def load_model(
    model_dir: str | Path,
    *,
    dtype: str | torch.dtype = "auto",
    device: str = "auto",
    revision: str | None = None,
    train_hint: str = "train one with `captioner train --config configs/train/stage2.yaml`",
    **config_overrides: Any,
) -> tuple[SeRForCaptioning, SeRProcessor]:
    """Load a SeR checkpoint directory (model + processor) for inference, in eval mode.

    No SeR weights are published anywhere, so a missing directory is a `MissingModelError` saying
    how to train one. `config_overrides` go to the config (e.g. refine_steps=2).
    """
    path = Path(model_dir).expanduser()
    if not (path / "config.json").is_file():
        raise MissingCheckpointError("SeR checkpoint", str(model_dir), f"{train_hint} or pass a local model directory")
    device_ = resolve_device(device)
    dtype_ = resolve_dtype(dtype, device_)
    kwargs = {"revision": revision} if revision else {}
    model = SeRForCaptioning.from_pretrained(str(path), dtype=dtype_, **kwargs, **config_overrides)
    processor = SeRProcessor.from_pretrained(str(path), **kwargs)
    return model.to(device_).eval(), processor


@torch.inference_mode()
def first_glance(
    model: SeRForCaptioning,
    processor: SeRProcessor,
    buffer: VisionBuffer,
    prompt: str,
    max_new_tokens: int = 60,
) -> list[list[int]]:
    """Initial caption ids (EOS and specials removed) for every image in the buffer."""
    inputs = processor.generation_inputs(buffer.batch_size, prompt)
    visual = model.first_glance_tokens(buffer)
    ids = model.generate_ids(visual, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=max_new_tokens)
    return [processor.clean_generated(row) for row in ids]


@torch.inference_mode()
def refine_once(
    model: SeRForCaptioning,
    processor: SeRProcessor,
    buffer: VisionBuffer,
    prompt: str,
    caption_ids: Sequence[Sequence[int]],
    max_new_tokens: int = 60,
) -> list[list[int]]:
    """One more glance: refined caption ids from the buffered ViT features and the previous captions."""
    inputs = processor.generation_inputs(buffer.batch_size, prompt, caption_ids)
    visual = model.refine_tokens(buffer, inputs["initial_caption_ids"], inputs["initial_caption_mask"])
    ids = model.generate_ids(visual, inputs["input_ids"], inputs["attention_mask"], max_new_tokens=max_new_tokens)
    return [processor.clean_generated(row) for row in ids]


@torch.inference_mode()
def generate_captions(
    model: SeRForCaptioning,
    processor: SeRProcessor,
    images: Sequence[Any],
    prompt: str | None = None,
    *,
    max_new_tokens: int = 60,
    batch_size: int = 16,
    return_initial: bool = False,
    refine_steps: int | None = None,
) -> list[str] | CaptionResult:
    """Caption `images` ((H, W, 3) uint8 RGB arrays or PIL images) with greedy decoding.

    refine_steps: refinement passes after the first glance; default `model.config.refine_steps`
        for SeR models and 0 for single-pass ones. 0 returns the first-glance captions.
    return_initial: return a `CaptionResult` (initial, refined and per-step captions) instead of
        the list of final captions.
    """
    prompt = processor.default_instruction if prompt is None else prompt
    if refine_steps is None:
        refine_steps = model.config.refine_steps if model.config.refine else 0
    if refine_steps > 0 and model.deeplens is None:
        raise UserError("this checkpoint is a single-pass specialist (no DeepLens): use refine_steps=0")
    initial: list[str] = []
    steps: list[list[str]] = [[] for _ in range(refine_steps)]
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        buffer = model.encode_images(processor.preprocess_images(chunk))  # the only ViT pass
        ids = first_glance(model, processor, buffer, prompt, max_new_tokens)
        initial += [processor.decode_caption(row) for row in ids]
        for step in range(refine_steps):
            ids = refine_once(model, processor, buffer, prompt, ids, max_new_tokens)
            steps[step] += [processor.decode_caption(row) for row in ids]
    final = steps[-1] if steps else initial
    if return_initial:
        return CaptionResult(initial=initial, refined=final, steps=steps)
    return final


__all__ = [
    "CaptionResult", "generate_captions", "first_glance", "refine_once", "load_model", "resolve_device",
    "resolve_dtype", "MissingCheckpointError",
]
