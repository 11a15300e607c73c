"""SeR captioners for the pipeline: `ser` (one more glance with DeepLens) and `specialist`
(first glance only), both read a checkpoint directory written by `captioner train`. A `ser`
captioner given a stage-1 checkpoint (no DeepLens) runs its single glance and reports itself as
a specialist in `identity()`.

Options (`captioner.options` in the YAML):
    refine_steps: refinement passes after the first glance (ser only; default: the checkpoint's, 1).
torch and transformers are imported when a captioner is built, not when this module is imported.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from videoqa.captioners.base import Captioner
from videoqa.config import CaptionerConfig
from videoqa.errors import UserError
from videoqa.registry import CAPTIONERS

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_HINTS = {
    "ser": "train one with `captioner train --config configs/train/stage2.yaml`",
    "specialist": "train one with `captioner train --config configs/train/stage1.yaml`",
}
KNOWN_OPTIONS = {"refine_steps"}


def resolve_model_dir(ref: str) -> Path | str:
    """A model directory as given, else relative to the repository root (configs use repo paths)."""
    path = Path(ref).expanduser()
    if path.is_dir() or path.is_absolute():
        return path
    from_repo = REPO_ROOT / path
    return from_repo if from_repo.is_dir() else ref


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
    """Sharp-Eyed Refinement: initial caption, then `refine_steps` refined ones; returns the last."""

    kind = "ser"

    def __init__(self, config: CaptionerConfig):
        from captioner.inference import load_model, resolve_device, resolve_dtype

        unknown = set(config.options) - KNOWN_OPTIONS
        if unknown:
            raise UserError(f"captioner {config.name!r}: unknown options {sorted(unknown)} (known: {sorted(KNOWN_OPTIONS)})")
        if not config.model:
            raise UserError(f"captioner {config.name!r}: field 'model' is empty; {TRAIN_HINTS[self.kind]}")
        self.config = config
        self.model_dir = resolve_model_dir(config.model)
        self.device = resolve_device(config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        self.model, self.processor = load_model(
            self.model_dir, dtype=self.dtype, device=str(self.device), revision=config.revision,
            train_hint=TRAIN_HINTS[self.kind],
        )
        self.refine_steps = self._refine_steps(config.options.get("refine_steps"))
        self.image_size = self.processor.image_size
        self._fingerprint: str | None = None

    def _refine_steps(self, requested: Any) -> int:
        if requested is None:
            # a stage-1 checkpoint (no DeepLens) can only take the first glance; identity() says so
            return self.model.config.refine_steps if self.model.deeplens is not None else 0
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
            raise UserError(f"captioner {self.config.name!r}: options.refine_steps must be an integer >= 0")
        if requested > 0 and self.model.deeplens is None:
            raise UserError(f"{self.model_dir}: refine_steps={requested} needs DeepLens, but this checkpoint has none")
        return requested

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        from captioner.inference import generate_captions

        if len(images) == 0:
            return []
        return generate_captions(
            self.model, self.processor, list(images), prompt,
            max_new_tokens=self.config.max_new_tokens, batch_size=self.config.batch_size,
            refine_steps=self.refine_steps,
        )

    def identity(self) -> dict[str, Any]:
        if self._fingerprint is None:  # hashing ~2 GB of fp32 weights takes seconds: do it once
            self._fingerprint = weights_fingerprint(Path(self.model_dir))
        return {
            "type": "ser" if self.refine_steps > 0 else "specialist",  # what actually runs
            "model": str(Path(self.model_dir).resolve()),
            "revision": self.config.revision,
            "weights_sha256": self._fingerprint,
            "variant": self.model.config.variant,
            "refine_steps": self.refine_steps,
            "decoding": "greedy",
            "max_new_tokens": self.config.max_new_tokens,
            "dtype": str(self.dtype).removeprefix("torch."),
            "image_size": self.image_size,
        }

    def num_parameters(self) -> int:
        """Parameters this captioner runs: without refinement DeepLens (if present) is unused."""
        unused = self.model.deeplens if self.refine_steps == 0 else None
        return self.model.num_parameters() - (0 if unused is None else sum(p.numel() for p in unused.parameters()))


@CAPTIONERS.register("specialist")
class SpecialistCaptioner(SeRCaptioner):
    """The single-pass captioning specialist (Sec. 3): first glance only, no refinement."""

    kind = "specialist"

    def _refine_steps(self, requested: Any) -> int:
        if requested not in (None, 0):
            raise UserError(f"captioner {self.config.name!r}: the specialist does not refine (refine_steps must be 0)")
        return 0
