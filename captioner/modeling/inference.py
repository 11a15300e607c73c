"""Batched SeR captioning: the paper's inference strategy (Sec. 5, "Inference Strategy").

Per batch of images:
    1. the ViT runs ONCE; the features both glances need stay in a `VisionBuffer`
    2. first glance: connector tokens + instruction -> initial caption (greedy, KV cache)
    3. one more glance (x refine_steps): DeepLens(buffer, previous caption) tokens + instruction +
       previous caption -> refined caption
Prompts are left-padded so each caption is what the image would get alone (batch invariance).

Speed: the ViT stops at the deepest layer a glance reads (the last layer of ViT-L is never run,
see `SeRVisionTower`); generation keeps a preallocated KV cache and runs under `torch.inference_mode`; the
default dtype is bf16 where the hardware multiplies bf16 natively (GPUs, AVX512-BF16/AMX CPUs) and
fp32 elsewhere (`resolve_dtype`); an out-of-memory error halves the batch and retries
(`generate_captions`). `videoqa bench` measures all of this (docs/performance.md).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from captioner.modeling.modeling_ser import SeRForCaptioning, VisionBuffer
from captioner.modeling.processing_ser import SeRProcessor
from videoqa_base.batching import is_out_of_memory, map_in_batches
from videoqa_base.device import cpu_has_native_bf16, resolve_device, resolve_dtype
from videoqa_base.errors import MissingModelError, UserError

log = logging.getLogger(__name__)


@dataclass
class CaptionResult:
    """Captions of a batch of images. `refined` are the final captions (== `initial` for a
    single-pass model); `steps[k]` are the captions after refinement step k+1."""

    initial: list[str]
    refined: list[str]
    steps: list[list[str]] = field(default_factory=list)


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
    kwargs: dict[str, Any] = {"revision": revision} if revision else {}
    model = SeRForCaptioning.from_pretrained(str(path), dtype=dtype_, **kwargs, **config_overrides)
    processor = SeRProcessor.from_pretrained(str(path), **kwargs)
    # transformers wraps `to` in functools.wraps, whose typeshed type does not bind `self`
    return model.to(device_).eval(), processor  # type: ignore[arg-type]


@torch.inference_mode()
def first_glance(
    model: SeRForCaptioning,
    processor: SeRProcessor,
    buffer: VisionBuffer,
    prompt: str,
    max_new_tokens: int = 60,
    min_new_tokens: int = 0,
) -> list[list[int]]:
    """Initial caption ids (EOS and specials removed) for every image in the buffer.

    min_new_tokens > 0 forbids EOS before that many tokens (benchmarks fix the caption length)."""
    inputs = processor.generation_inputs(buffer.batch_size, prompt)
    visual = model.first_glance_tokens(buffer)
    ids = model.generate_ids(
        visual,
        inputs["input_ids"],
        inputs["attention_mask"],
        max_new_tokens=max_new_tokens,
        **_min_tokens(min_new_tokens),
    )
    return [processor.clean_generated(row) for row in ids]


@torch.inference_mode()
def refine_once(
    model: SeRForCaptioning,
    processor: SeRProcessor,
    buffer: VisionBuffer,
    prompt: str,
    caption_ids: Sequence[Sequence[int]],
    max_new_tokens: int = 60,
    min_new_tokens: int = 0,
) -> list[list[int]]:
    """One more glance: refined caption ids from the buffered ViT features and the previous captions."""
    inputs = processor.generation_inputs(buffer.batch_size, prompt, caption_ids)
    visual = model.refine_tokens(buffer, inputs["initial_caption_ids"], inputs["initial_caption_mask"])
    ids = model.generate_ids(
        visual,
        inputs["input_ids"],
        inputs["attention_mask"],
        max_new_tokens=max_new_tokens,
        **_min_tokens(min_new_tokens),
    )
    return [processor.clean_generated(row) for row in ids]


def _min_tokens(min_new_tokens: int) -> dict[str, int]:
    return {"min_new_tokens": min_new_tokens} if min_new_tokens > 0 else {}


# ---------------------------------------------------------------------------- frame embeddings


def default_embedding(config: Any) -> tuple[int, int]:
    """(input size, layers) of the frame embedding for a SeR config: a third of the captioning
    side, a multiple of the patch (112 px for ViT-L/14-336: 64 patches instead of 576), and the
    layer the first glance reads. The bench's adaptive step measures what this costs per caption."""
    vision = config.vision_config
    size = vision.patch_size * max(1, round(vision.image_size / 3 / vision.patch_size))
    return size, config.vision_feature_layer % (vision.num_hidden_layers + 1)


@torch.inference_mode()
def embed_images(
    model: SeRForCaptioning,
    processor: SeRProcessor,
    images: Sequence[Any],
    *,
    size: int,
    layer: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """(N, C) float32 frame embeddings from the frozen ViT at `size` pixels, `layer` layers deep:
    the centre square of each (H, W, 3) uint8 frame, resized (antialiased) and CLIP-normalised.

    For choosing which frames to caption (videoqa.captioning.selection), not for captioning: at
    112 px the ViT sees 64 patches instead of 576, a small fraction of a caption's cost
    (`videoqa bench`'s adaptive_over_uniform reports the measured ratio)."""
    image_processor = processor.image_processor
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    tower = model.vision_tower
    out = []
    for start in range(0, len(images), batch_size):
        chunk = [np.asarray(image) for image in images[start : start + batch_size]]
        side = min(min(image.shape[:2]) for image in chunk)
        squares = []
        for image in chunk:  # centre squares of a common side, so the batch stacks
            top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
            squares.append(image[top : top + side, left : left + side])
        pixels = torch.from_numpy(np.stack(squares)).permute(0, 3, 1, 2).float().div_(255.0)
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        pixels = ((pixels - mean) / std).to(device=model.device, dtype=tower.dtype)
        out.append(tower.pooled_features(pixels, layer).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.config.vision.hidden_size)


# ---------------------------------------------------------------------------- out-of-memory backoff

# the batch size a model last ran at after an out-of-memory backoff: later calls start there
# instead of failing again at the configured size (memory pressure rarely goes away)
_BATCH_LIMITS: weakref.WeakKeyDictionary[SeRForCaptioning, int] = weakref.WeakKeyDictionary()


def batch_limit(model: SeRForCaptioning) -> int | None:
    """The reduced batch size `generate_captions` settled on after an out-of-memory error, if any."""
    return _BATCH_LIMITS.get(model)


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
    min_new_tokens: int = 0,
) -> list[str] | CaptionResult:
    """Caption `images` ((H, W, 3) uint8 RGB arrays or PIL images) with greedy decoding.

    refine_steps: refinement passes after the first glance; default `model.config.refine_steps`
        for SeR models and 0 for single-pass ones. 0 returns the first-glance captions.
    return_initial: return a `CaptionResult` (initial, refined and per-step captions) instead of
        the list of final captions.
    batch_size: images per batch. On an out-of-memory error the batch is retried at half the size
        (down to 1, then the error is raised); the smaller size is kept for the rest of this call
        and for later calls on the same model (see `batch_limit`).
    min_new_tokens: no EOS before this many tokens in every pass (0: free length).
    """
    prompt = processor.default_instruction if prompt is None else prompt
    if refine_steps is None:
        refine_steps = model.config.refine_steps if model.config.refine else 0
    if refine_steps > 0 and model.deeplens is None:
        raise UserError("this checkpoint is a single-pass specialist (no DeepLens): use refine_steps=0")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size}")

    def caption_batch(chunk: Sequence[Any]) -> list[list[str]]:
        """Per image: its first-glance caption, then its caption after each refinement step."""
        buffer = model.encode_images(processor.preprocess_images(chunk))  # the only ViT pass
        ids = first_glance(model, processor, buffer, prompt, max_new_tokens, min_new_tokens)
        passes = [[processor.decode_caption(row) for row in ids]]
        for _ in range(refine_steps):
            ids = refine_once(model, processor, buffer, prompt, ids, max_new_tokens, min_new_tokens)
            passes.append([processor.decode_caption(row) for row in ids])
        return [list(per_image) for per_image in zip(*passes)]

    def keep_limit(size: int) -> None:
        _BATCH_LIMITS[model] = size

    per_image = map_in_batches(
        caption_batch, images, min(batch_size, _BATCH_LIMITS.get(model, batch_size)), on_backoff=keep_limit
    )
    initial = [captions[0] for captions in per_image]
    steps = [[captions[step] for captions in per_image] for step in range(1, refine_steps + 1)]
    final = steps[-1] if steps else initial
    if return_initial:
        return CaptionResult(initial=initial, refined=final, steps=steps)
    return final


__all__ = [
    "CaptionResult",
    "generate_captions",
    "embed_images",
    "default_embedding",
    "first_glance",
    "refine_once",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "MissingCheckpointError",
    "cpu_has_native_bf16",
    "is_out_of_memory",
    "batch_limit",
]
