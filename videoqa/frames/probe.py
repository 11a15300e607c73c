"""What a video file is: its header read with `ffmpeg -i`, and the frame geometry derived from it.

Probing comes before any decoding so a missing, empty, truncated or non-video file is reported
with a precise reason (VideoDecodeError) instead of a decoder's stack trace, and so both decoders
get the same size and rotation. imageio-ffmpeg ships no ffprobe, hence the parsing of `ffmpeg -i`.
Container rotation (phones: a rotate tag or a display matrix) is read here; `rotate_upright`
turns frames that ffmpeg decoded with -noautorotate (decord 0.6.0 rotates by itself).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from videoqa.frames.errors import VideoDecodeError, last_line


@dataclass(frozen=True)
class VideoInfo:
    """What `ffmpeg -i` says about a file's first video stream."""

    width: int | None
    height: int | None
    fps: float | None
    duration: float | None  # seconds, container level
    rotation: int  # display rotation, degrees counter-clockwise, one of 0, 90, 180, 270
    codec: str | None

    def estimated_frames(self) -> int | None:
        if self.fps and self.duration:
            return max(1, round(self.fps * self.duration))
        return None


_VIDEO_LINE = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+)(?!.*attached pic)(.*)")  # not cover art
PROBE_TIMEOUT_S = 60.0
_SIZE = re.compile(r"[ ,](\d{1,5})x(\d{1,5})[ ,\[]")
_FPS = re.compile(r"([\d.]+)(k?) (?:fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d+):([\d.]+)")
_ROTATION = re.compile(r"rotation of (-?[\d.]+) degrees|^\s*rotate\s*:\s*(-?\d+)", re.MULTILINE)


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def _looks_like_mp4(path: Path) -> bool:
    """ISO-BMFF files start with a box header: 4 size bytes then a box type (ftyp, moov, ...)."""
    with open(path, "rb") as f:
        head = f.read(8)
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def probe_video(path: str | Path) -> VideoInfo:
    """Read the header with `ffmpeg -i` (imageio-ffmpeg ships no ffprobe).

    Raises VideoDecodeError for files that are missing, empty, not a video, or unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "missing", f"{path}: no such file")
    if path.is_dir():
        raise VideoDecodeError(path, "not_a_video", f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "not_a_video", f"{path}: empty file (0 bytes)")
    try:
        proc = subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        message = f"{path}: ffmpeg could not read the header within {PROBE_TIMEOUT_S:.0f} s"
        raise VideoDecodeError(path, "decode_error", message) from None
    err = proc.stderr
    if "Error opening input" in err:
        if "No such file" in err:
            raise VideoDecodeError(path, "missing", f"{path}: no such file")
        if "moov atom not found" in err and _looks_like_mp4(path):  # index never written: recording cut off
            raise VideoDecodeError(path, "decode_error", f"{path}: truncated or corrupt MP4 (moov atom not found)")
        if "End of file" in err:  # a valid header and nothing after it
            raise VideoDecodeError(path, "zero_frames", f"{path}: no frames (the file ends right after the header)")
        if "Invalid data found" in err:
            raise VideoDecodeError(path, "not_a_video", f"{path}: not a video file (ffmpeg: invalid data)")
        raise VideoDecodeError(path, "decode_error", f"{path}: ffmpeg cannot open it: {last_line(err)}")
    match = _VIDEO_LINE.search(err)
    if match is None:
        if "Stream #" in err:
            raise VideoDecodeError(path, "not_a_video", f"{path}: no video stream (audio or data only)")
        raise VideoDecodeError(path, "zero_frames", f"{path}: container has no streams")
    details = match.group(2)
    size = _SIZE.search(details + " ")
    fps = _FPS.search(details)
    duration = _DURATION.search(err)
    # the rotation side data / tag sits in the video stream's block, before the next stream
    block = err[match.start() :]
    next_stream = block.find("Stream #", 1)
    rotation = _ROTATION.search(block if next_stream < 0 else block[:next_stream])
    degrees = 0.0
    if rotation:
        degrees = float(rotation.group(1)) if rotation.group(1) is not None else -float(rotation.group(2))
    seconds = (
        int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)) if duration else None
    )
    return VideoInfo(
        width=int(size.group(1)) if size else None,
        height=int(size.group(2)) if size else None,
        fps=float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
        duration=seconds,
        rotation=int(round(degrees / 90.0)) % 4 * 90,
        codec=match.group(1),
    )


def output_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(width, height) with the shorter side equal to `size`, aspect kept; None keeps the native size."""
    if size is None:
        return width, height
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    scale = size / min(width, height)
    if width <= height:
        return size, max(1, round(height * scale))
    return max(1, round(width * scale)), size


def rotate_upright(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Turn coded frames (N, H, W, 3) upright: `rotation` degrees counter-clockwise."""
    if rotation == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=rotation // 90, axes=(1, 2)))
