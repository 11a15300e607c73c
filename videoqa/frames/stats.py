"""DecodeStats: how long decoding took and what it delivered, per video and in total.

Filled from the decoding threads of stream_videos, so the updates take a lock. Kept apart from
the decoders so the pipeline and the bench can hold and read one without caring how frames are
decoded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class DecodeStats:
    """Per-stage accounting, filled by decode_frames / stream_videos (thread-safe).

    `seconds` is the time spent waiting for decoded frames (decoder work not hidden behind the
    consumer), summed over videos; `wall_seconds` spans the first start to the last finish.
    """

    videos: int = 0
    failures: int = 0
    frames: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    fallbacks: int = 0  # videos for which ffmpeg delivered (some of) the frames
    truncated: int = 0  # videos that ended before all sampled frames were decoded
    per_video: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _start: float | None = field(default=None, repr=False, compare=False)

    def begin(self) -> None:
        """A video starts decoding: the first call starts the wall clock."""
        with self._lock:
            if self._start is None:
                self._start = time.perf_counter()

    def record(
        self, video_id: str, seconds: float, frames: int, decoders: set[str], truncated: bool, failed: bool
    ) -> None:
        """A video is done (decoded, truncated, failed or abandoned by its consumer): add it up."""
        with self._lock:
            self.videos += 1
            self.failures += int(failed)
            self.frames += frames
            self.seconds += seconds
            self.fallbacks += int("ffmpeg" in decoders)
            self.truncated += int(truncated)
            self.per_video[video_id] = self.per_video.get(video_id, 0.0) + seconds
            if self._start is not None:
                self.wall_seconds = time.perf_counter() - self._start
