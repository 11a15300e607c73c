"""The captioner interface: a batch of frames + a prompt -> one caption per frame."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

import numpy as np

from videoqa.types import VideoCaptions, VideoFailure


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

    def missing_precomputed(self, video_id: str, path) -> VideoFailure | None:
        """For captioners that never see frames: the failure to record when `precomputed` has
        nothing for this video (instead of decoding it). Frame captioners return None."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines / device memory before the answering LLM starts."""
