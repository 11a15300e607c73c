"""Why a video gives no frames: VideoDecodeError, and one-line messages from library error text.

Every step that can fail on a file (reading the header, decord, ffmpeg) raises the same error
with a reason from REASONS, so stream_videos can turn any of them into a VideoFailure record and
go on with the next video. Kept in its own module so the prober and both decoders share it
without importing one another.
"""

from __future__ import annotations

import re
from pathlib import Path

from videoqa.types import VideoFailure

REASONS = ("missing", "not_a_video", "zero_frames", "decode_error")


class VideoDecodeError(Exception):
    """A video that gives no frames. `message` is one line naming the file."""

    def __init__(self, path: str | Path, reason: str, message: str):
        assert reason in REASONS, reason
        super().__init__(message)
        self.path, self.reason, self.message = str(path), reason, message

    def to_failure(self, video_id: str) -> VideoFailure:
        return VideoFailure(video_id=video_id, path=self.path, reason=self.reason, message=self.message)


_DECORD_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (\[[^\]]*\] )?")  # "[19:42:08] src/x.cc:270: [file] "


def last_line(text: str) -> str:
    """The last non-empty line of a library's error text, without decord's log prefix."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _DECORD_LOG_PREFIX.sub("", lines[-1]) if lines else "no error text"
