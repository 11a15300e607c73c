"""SeR captioners for the pipeline: `ser` (one more glance with DeepLens) and `specialist`
(first glance only), both read a checkpoint directory written by `captioner train`. A `ser`
captioner given a stage-1 checkpoint (no DeepLens) runs its single glance and reports itself as
a specialist in `identity()`.

Options (`captioner.options` in the YAML):
    refine_steps: refinement passes after the first glance (ser only; default: the checkpoint's, 1).
    embed_size: input side (px) of the ViT when it embeds frames for `frames.select: adaptive`
        (default: a third of the captioning size, a multiple of the patch: 112 for ViT-L/14-336).
    embed_layer: ViT layers run for that embedding (default: the layer the first glance reads).
The weights load on the first `caption()` (the caption stage calls `load()` only for uncached videos).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoqa.captioning.base import Captioner
from videoqa.config import CaptionerConfig
from videoqa.registry import CAPTIONERS
from videoqa_base.checkpoints import safetensors_parameter_count
from videoqa_base.errors import UserError

TRAIN_HINTS = {
    "ser": "train one with `captioner train --config configs/train/stage2.yaml`",
    "specialist": "train one with `captioner train --config configs/train/stage1.yaml`",
}


def weights_fingerprint(model_dir: Path) -> str:
    """sha256 over the checkpoint's safetensors files (name and bytes, in name order)."""
    digest = hashlib.sha256()
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise UserError(f"{model_dir}: no *.safetensors weights in the checkpoint directory")
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


@CAPTIONERS.register("ser")
class SeRCaptioner(Captioner):
    """Sharp-Eyed Refinement: initial caption, then `refine_steps` refined ones; returns the last.

    Built from the checkpoint's config and processor only; the weights load on first use."""

    kind = "ser"
    known_options = frozenset({"refine_steps", "embed_size", "embed_layer"})

    def __init__(self, config: CaptionerConfig):
        from captioner.modeling.configuration_ser import SeRConfig
        from captioner.modeling.inference import MissingCheckpointError
        from captioner.modeling.processing_ser import SeRProcessor
        from videoqa_base.device import resolve_device, resolve_dtype

        # imported here, not at the top: discovering the registered captioners must not import torch
        super().__init__(config)
        if not config.model:
            raise UserError(f"captioner {config.name!r}: field 'model' is empty; {TRAIN_HINTS[self.kind]}")
        self.model_dir = Path(config.model).expanduser()  # relative paths: from the working directory
        if not (Path(self.model_dir) / "config.json").is_file():
            raise MissingCheckpointError(
                "SeR checkpoint", str(config.model), f"{TRAIN_HINTS[self.kind]} or pass a local model directory"
            )
        kwargs = {"revision": config.revision} if config.revision else {}
        self.model_config = SeRConfig.from_pretrained(str(self.model_dir), **kwargs)
        self.processor = SeRProcessor.from_pretrained(str(self.model_dir), **kwargs)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.has_deeplens = bool(self.model_config.refine)
        self.refine_steps = self._refine_steps(config.options.get("refine_steps"))
        self.image_size = self.processor.image_size
        self.embed_size, self.embed_layer = self._embedding_options(config.options)
        self.model = None
        self._fingerprint: str | None = None

    def _refine_steps(self, requested: Any) -> int:
        if requested is None:
            # a stage-1 checkpoint (no DeepLens) can only take the first glance; identity() says so
            return self.model_config.refine_steps if self.has_deeplens else 0
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
            raise UserError(f"captioner {self.config.name!r}: options.refine_steps must be an integer >= 0")
        if requested > 0 and not self.has_deeplens:
            raise UserError(f"{self.model_dir}: refine_steps={requested} needs DeepLens, but this checkpoint has none")
        return requested

    def _embedding_options(self, options: dict[str, Any]) -> tuple[int, int]:
        from captioner.modeling.inference import default_embedding

        vision = self.model_config.vision_config
        patch, layers = vision.patch_size, vision.num_hidden_layers
        default_size, default_layer = default_embedding(self.model_config)
        size, layer = options.get("embed_size", default_size), options.get("embed_layer", default_layer)
        for name, value, low, high in (
            ("embed_size", size, patch, 4 * vision.image_size),
            ("embed_layer", layer, 1, layers),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise UserError(f"captioner {self.config.name!r}: options.{name} must be an integer in [{low}, {high}]")
        return size, layer

    def _load(self) -> None:
        from captioner.modeling.inference import load_model

        self.model, self.processor = load_model(
            self.model_dir,
            dtype=self.dtype,
            device=str(self.device),
            revision=self.config.revision,
            train_hint=TRAIN_HINTS[self.kind],
        )

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        from captioner.modeling.inference import generate_captions

        if len(images) == 0:
            return []
        self.load()
        return generate_captions(
            self.model,
            self.processor,
            list(images),
            prompt,
            max_new_tokens=self.config.max_new_tokens,
            batch_size=self.config.batch_size,
            refine_steps=self.refine_steps,
        )

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The frozen ViT at `embed_size` px, `embed_layer` layers deep, mean-pooled patches (N, C)."""
        from captioner.modeling.inference import embed_images

        self.load()
        features = embed_images(self.model, self.processor, list(images), size=self.embed_size, layer=self.embed_layer)
        return features.numpy()

    def embedding_identity(self) -> dict[str, Any]:
        return {"embedding": "vit", "embed_size": self.embed_size, "embed_layer": self.embed_layer}

    def identity(self) -> dict[str, Any]:
        if self._fingerprint is None:  # hashing ~2 GB of fp32 weights takes seconds: do it once
            self._fingerprint = weights_fingerprint(Path(self.model_dir))
        return {
            "type": "ser" if self.refine_steps > 0 else "specialist",  # what actually runs
            "model": str(Path(self.model_dir).resolve()),
            "revision": self.config.revision,
            "weights_sha256": self._fingerprint,
            "variant": self.model_config.variant,
            "refine_steps": self.refine_steps,
            "decoding": "greedy",
            "max_new_tokens": self.config.max_new_tokens,
            "dtype": str(self.dtype).removeprefix("torch."),
            "image_size": self.image_size,
        }

    def num_parameters(self) -> int:
        """Parameters this captioner runs: without refinement DeepLens (if present) is unused."""
        files = sorted(Path(self.model_dir).glob("*.safetensors"))
        total = safetensors_parameter_count(files)
        if self.refine_steps == 0 and self.has_deeplens:
            total -= safetensors_parameter_count(files, prefix="deeplens.")
        return total

    def close(self) -> None:
        self.model = None
        self.loaded = False


@CAPTIONERS.register("specialist")
class SpecialistCaptioner(SeRCaptioner):
    """The single-pass captioning specialist (Sec. 3): first glance only, no refinement."""

    kind = "specialist"

    def _refine_steps(self, requested: Any) -> int:
        if requested not in (None, 0):
            raise UserError(f"captioner {self.config.name!r}: the specialist does not refine (refine_steps must be 0)")
        return 0
