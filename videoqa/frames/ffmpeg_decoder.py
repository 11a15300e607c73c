"""The ffmpeg decoder, the fallback for files decord cannot (fully) read.

ffmpeg (imageio-ffmpeg's binary, command built by ffmpeg-python) takes over when decord cannot
open a file (e.g. a truncated MP4 whose index is at the front), reports non-monotonic timestamps,
or fails part-way. It applies the same sampling rule through its `select` filter
(`Sampling.select_expr`), scales, and pipes raw RGB frames; rotation is ours (-noautorotate,
then `rotate_upright`), as for decord. A stream that ends early ends quietly with what it gave.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ffmpeg
import numpy as np

from videoqa.frames.errors import VideoDecodeError, last_line
from videoqa.frames.probe import ffmpeg_exe, rotate_upright

log = logging.getLogger(__name__)


def _read_into(pipe, array: np.ndarray) -> int:
    """Fill `array` from the pipe; returns the bytes read (fewer only at the end of the stream)."""
    view = memoryview(array).cast("B")
    filled = 0
    while filled < len(view):
        n = pipe.readinto(view[filled:])
        if not n:
            break
        filled += n
    return filled


def ffmpeg_frames(
    path: Path, select: str, width: int, height: int, max_count: int, rotation: int, chunk: int
) -> Iterator[np.ndarray]:
    """Frames chosen by an ffmpeg `select` expression, decoded and scaled by ffmpeg, piped raw.

    width x height is the scaled size in the CODED orientation; frames are then turned upright.

    Yields arrays of up to `chunk` frames. Ends quietly when the stream ends (truncated file);
    raises VideoDecodeError only when ffmpeg delivered nothing and reported an error.
    """
    stream = ffmpeg.input(str(path), noautorotate=None)  # rotation: ours, as for decord
    stream = stream.video.filter("select", select)
    stream = stream.filter("scale", width, height)
    args = (
        stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough")
        .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        .compile(cmd=ffmpeg_exe())
    )
    frame_bytes = width * height * 3
    delivered, eof = 0, False
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty broken stream can't deadlock us
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr)
        try:
            while delivered < max_count:
                frames = np.empty((min(chunk, max_count - delivered), height, width, 3), np.uint8)
                got = _read_into(proc.stdout, frames) // frame_bytes
                if got:
                    delivered += got
                    yield rotate_upright(frames[:got], rotation)
                if got < len(frames):
                    eof = True
                    break
        finally:
            if not eof:  # we have what we need, or the consumer left: stop ffmpeg decoding the rest
                proc.kill()
            proc.stdout.close()
            code = proc.wait()
            stderr.seek(0)
            err = stderr.read().decode(errors="replace")
    if delivered == 0 and code != 0:
        raise VideoDecodeError(path, "decode_error", f"{path}: ffmpeg could not decode it: {last_line(err)}")
    if err.strip():
        log.debug("%s: ffmpeg: %s", path, last_line(err))
