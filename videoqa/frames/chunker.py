"""Chunker: re-cuts decoded frames, whatever units they arrive in, into FrameBatch chunks.

The decoders deliver frames in units of their own (decord reader units, ffmpeg pipe reads, and a
switch from one to the other part-way); the consumer is promised chunks of exactly `chunk_size`
frames with the last one, and only it, marked final. This class keeps that promise in one place.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from videoqa.types import FrameBatch


class Chunker:
    """Re-cuts decoded units into chunks of exactly `chunk_size` frames (the last may be shorter).

    A chunk is only released while more frames are expected if at least one frame of the next
    chunk is already decoded, so the chunk marked final is never empty, even when a truncated
    stream stops short of the planned count.
    """

    def __init__(self, video_id: str, chunk_size: int, expected: int, timestamps: list[float], duration: float):
        self.video_id, self.chunk_size, self.expected = video_id, chunk_size, expected
        self.timestamps, self.duration = timestamps, duration
        self.parts: list[np.ndarray] = []
        self.decoders: list[str] = []
        self.buffered = 0
        self.emitted = 0

    @property
    def received(self) -> int:
        return self.emitted + self.buffered

    def add(self, frames: np.ndarray, decoder: str) -> Iterator[FrameBatch]:
        if len(frames) == 0:
            return
        self.parts.append(frames)
        self.decoders.append(decoder)
        self.buffered += len(frames)
        while self.buffered > self.chunk_size or (self.buffered and self.received >= self.expected):
            yield self._take(min(self.chunk_size, self.buffered))

    def finish(self) -> Iterator[FrameBatch]:
        """End of the stream: whatever is buffered is the final chunk."""
        if self.buffered:
            yield self._take(self.buffered, final=True)

    def _take(self, n: int, final: bool = False) -> FrameBatch:
        images = np.concatenate(self.parts) if len(self.parts) > 1 else self.parts[0]
        batch, rest = images[:n], images[n:]
        decoder = "ffmpeg" if "ffmpeg" in self.decoders else "decord"
        self.parts, self.decoders = ([rest], [self.decoders[-1]]) if len(rest) else ([], [])
        self.buffered -= n
        start = self.emitted
        self.emitted += n
        final = final or self.emitted >= self.expected
        return FrameBatch(
            video_id=self.video_id,
            images=np.ascontiguousarray(batch),
            timestamps=self.timestamps[start : start + n],
            duration=self.duration,
            decoder=decoder,
            start=start,
            final=final,
        )
