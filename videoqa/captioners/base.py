"""The captioner interface: a batch of frames + a prompt -> one caption per frame."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from videoqa.types import VideoCaptions


class Captioner(ABC):
    """Describes frames. Implementations batch internally up to `batch_size`."""

    #: side length (pixels) frames should be resized to at decode time, or None for native size
    image_size: int | None = None

    @abstractmethod
    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        """Return one caption per image (H, W, 3 uint8 RGB)."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What makes captions from this captioner reproducible: model path/id, revision,
        weights fingerprint, generation settings. Used in manifests and cache keys."""

    @abstractmethod
    def num_parameters(self) -> int:
        """Parameter count, for the comparison tables."""

    def precomputed(self, video_id: str) -> VideoCaptions | None:
        """Captions that exist without looking at frames (e.g. imported caption files).
        The caption stage then skips decoding for that video. Frame captioners return None."""
        return None
