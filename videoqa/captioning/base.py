"""The captioner interface: a batch of frames + a prompt -> one caption per frame.

A captioner is built cheaply from its config: the constructor validates options and finds the
checkpoint (config, processor, weight files) but loads no weights. `identity()`, `image_size`
and `num_parameters()` are answered from files alone, so the caption cache can be consulted -
and a fully cached run finished - without ever loading a model. Weights are loaded by `load()`,
which the caption stage calls only when there are frames to caption.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoqa.types import VideoCaptions, VideoFailure
from videoqa_base.errors import UserError


class Captioner(ABC):
    """Describes frames. Implementations batch internally up to `config.batch_size`."""

    #: registry key (also the YAML's `type:`)
    kind: str = ""
    #: side length (pixels) frames should be resized to at decode time, or None for native size
    image_size: int | None = None
    #: option names this captioner accepts under `captioner.options`
    known_options: frozenset[str] = frozenset()

    def __init__(self, config) -> None:
        self.config = config
        unknown = set(config.options) - set(self.known_options)
        if unknown:
            raise UserError(
                f"captioner {config.name!r}: unknown options {sorted(unknown)} (known: {sorted(self.known_options)})"
            )
        self.loaded = False

    # ------------------------------------------------------------------ cheap: no weights

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes captions from this captioner reproducible: model path/id, revision,
        weights fingerprint, generation settings. Used in manifests and cache keys; computed
        without loading weights."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Parameter count for the comparison tables (from the checkpoint files, not the model)."""

    # ------------------------------------------------------------------ model work

    def load(self) -> None:
        """Load the weights (idempotent). Called by the caption stage before the first batch."""
        if not self.loaded:
            self._load()
            self.loaded = True

    def _load(self) -> None:  # noqa: B027 - captioners without weights have nothing to load
        """Load the model; subclasses with weights override this."""

    @abstractmethod
    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        """Return one caption per image (H, W, 3 uint8 RGB). Requires `load()`."""

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray | None:
        """One feature vector per image, (N, D), from the captioner's own vision tower, for choosing
        which frames to caption (`frames.select: adaptive`); must cost a small fraction of a
        caption. None: no vision tower, the selection uses `selection.pixel_embedding`. Requires `load()`."""
        return None

    def embedding_identity(self) -> dict[str, Any]:
        """What makes `embed` reproducible beyond `identity()` (input size, layer): part of the
        adaptive caption cache key. Empty for captioners without `embed`."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines / device memory before the answering LLM starts."""


class ImportedCaptions(ABC):
    """A captioner whose captions exist without frames (imported caption files): the caption stage
    asks it first and decodes nothing for the videos it knows, nor for those it does not."""

    @abstractmethod
    def precomputed(self, video_id: str) -> VideoCaptions | None:
        """The video's captions, or None when the file has none for it."""

    @abstractmethod
    def missing_precomputed(self, video_id: str, path: Path | str) -> VideoFailure | None:
        """The failure to record for a video the file has no captions for (None if it has them)."""
