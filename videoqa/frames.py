"""Frames stage: sample frames from videos, decode them resized, and stream them in bounded chunks.

    sample_indices(total_frames, avg_fps, fps=1.0)     which frames to look at (pure)
    decode_frames(path, fps=1.0, size=224)             one video -> FrameBatch chunks
    stream_videos(items, ..., workers=2)               many videos -> FrameBatch | VideoFailure

Sampling rule (LLoVi-style, one frame per interval): the video is cut into intervals of
`step` frames and the frame at the CENTRE of each interval is taken, i.e.
index_k = floor((k + 1/2) * step), keeping the k whose centre lies inside the video.
`step` = avg_fps / fps (1 fps: the frames at 0.5 s, 1.5 s, 2.5 s, ...), or total / num_frames
for a fixed count; `max_frames` caps long videos by re-spacing with step = total / max_frames.
Centres rather than interval starts: the first frame of a video is often a black fade-in.
Variable frame rate (phones, streams with gaps): when decord's frame timestamps stray from
index / avg_fps by more than half a sampling interval, frames are picked by time instead
(`sample_by_time`: the frame on screen at each interval centre), so 1 fps stays 1 fps of real time.
Because the rule is a closed form, ffmpeg's `select` filter can apply exactly the same rule when
ffmpeg stands in for decord (see `_Sampling.select_expr`).

Decoding: decord first, frames resized at decode time (shorter side = `size`), only the sampled
indices decoded, in units spread round-robin over `readers` threads that each own a VideoReader
(decord releases the GIL; two readers on two cores keep up with ffmpeg's frame-threaded decode).
Container rotation (phones: a rotate tag or a display matrix) is applied so frames come out
upright: decord 0.6.0 does it itself (transpose filters, width/height swapped for 90/270; we check
the shape it returns); on the ffmpeg path we read the angle from `ffmpeg -i`, decode with
-noautorotate and turn the frames with numpy.

ffmpeg (imageio-ffmpeg's binary, command built by ffmpeg-python) takes over when decord cannot
open a file (e.g. a truncated MP4 whose index is at the front), reports non-monotonic timestamps
(decord sorts frames by pts, which interleaves the parts of a file whose clock restarts), or
fails part-way: then ffmpeg decodes the remaining sampled frames. A stream that ends early yields
the frames that could be decoded, the last chunk marked final (DecodeStats.truncated counts it).
A video with no decodable frame raises VideoDecodeError(path, reason, message), reason one of
missing | not_a_video | zero_frames | decode_error; stream_videos turns it into a VideoFailure.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import decord
import ffmpeg
import imageio_ffmpeg
import numpy as np

from videoqa.types import FrameBatch, VideoFailure

log = logging.getLogger(__name__)

decord.logging.set_level(decord.logging.QUIET)  # decord's bundled ffmpeg is chatty on odd files

REASONS = ("missing", "not_a_video", "zero_frames", "decode_error")


class VideoDecodeError(Exception):
    """A video that gives no frames. `message` is one line naming the file."""

    def __init__(self, path: str | Path, reason: str, message: str):
        assert reason in REASONS, reason
        super().__init__(message)
        self.path, self.reason, self.message = str(path), reason, message

    def to_failure(self, video_id: str) -> VideoFailure:
        return VideoFailure(video_id=video_id, path=self.path, reason=self.reason, message=self.message)


# ---------------------------------------------------------------------------- sampling

_EPS = 1e-9  # shifts the interval edges off the integers, where decimal steps would tie


def _is_sample(n: int, step: float) -> bool:
    """Whether some centre (k + 1/2) * step falls in [n, n + 1).

    Counts the centres below n + 1 and below n. `_Sampling.select_expr` hands ffmpeg the very
    same double-precision arithmetic, so both decoders pick identical frames.
    """
    return math.ceil((n + 1 - _EPS) / step - 0.5) > math.ceil((n - _EPS) / step - 0.5)


@dataclass(frozen=True)
class _Sampling:
    indices: list[int]
    step: float | None  # None: every frame (step <= 1) or a single frame (clip shorter than half a step)
    explicit: bool = False  # indices chosen by timestamp (variable frame rate): ffmpeg gets the list

    def select_expr(self, first: int = 0) -> str:
        """ffmpeg `select` expression picking the `indices` from `first` on."""
        if self.explicit:
            return "+".join(f"eq(n,{i})" for i in self.indices if i >= first) or "0"
        if self.step is None:
            pick = f"eq(n,{self.indices[0]})" if len(self.indices) == 1 else "1"
        else:
            s, e = repr(self.step), repr(_EPS)
            pick = f"gt(ceil((n+1-{e})/{s}-0.5),ceil((n-{e})/{s}-0.5))"
        return pick + (f"*gte(n,{first})" if first else "")


def _centres(step: float, total: int) -> list[int]:
    if step <= 1.0:
        return list(range(total))
    out: list[int] = []
    k = 0
    while True:
        guess = int((k + 0.5) * step)  # floor of the centre, up to rounding: check its neighbours
        if guess - 1 >= total:
            return out
        for n in (guess - 1, guess, guess + 1):
            if 0 <= n < total and (not out or n > out[-1]) and _is_sample(n, step):
                out.append(n)
        k += 1


def _sampling(
    total_frames: int, avg_fps: float, fps: float | None, num_frames: int | None, max_frames: int | None
) -> _Sampling:
    _check_sampling_args(fps, num_frames, max_frames)
    if total_frames < 0:
        raise ValueError(f"total_frames must be >= 0, got {total_frames}")
    if total_frames == 0:
        return _Sampling([], None)
    if num_frames is not None:
        step = total_frames / num_frames
    else:
        if not (avg_fps > 0 and math.isfinite(avg_fps)):
            raise ValueError(f"avg_fps must be a positive number to sample by fps, got {avg_fps}")
        step = avg_fps / fps
    if max_frames is not None and total_frames / step > max_frames + 1:
        step = total_frames / max_frames  # surely over the cap: skip listing the uncapped indices
    indices = _centres(step, total_frames)
    if max_frames is not None and len(indices) > max_frames:
        step = total_frames / max_frames
        indices = _centres(step, total_frames)
    if not indices:  # shorter than half an interval: the centre of what there is
        return _Sampling([total_frames // 2], None)
    return _Sampling(indices, step if step > 1.0 else None)


def _check_sampling_args(fps: float | None, num_frames: int | None, max_frames: int | None) -> None:
    if num_frames is None and fps is None:
        raise ValueError("set fps or num_frames")
    if num_frames is not None and num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames is None and not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")


def sample_by_time(
    starts: np.ndarray, duration: float, fps: float | None, num_frames: int | None, max_frames: int | None
) -> list[int]:
    """The frames on screen at the centre of each sampling interval, by real timestamps.

    For variable-frame-rate videos (phones), where index-based spacing would drift from 1/fps:
    target times (k + 1/2) / fps (or num_frames / max_frames evenly over the duration); each picks
    the last frame that starts at or before it. A gap in the stream gives one frame, not repeats.
    """
    _check_sampling_args(fps, num_frames, max_frames)
    if len(starts) == 0:
        return []
    count = num_frames if num_frames is not None else max(1, int(duration * fps + 0.5))
    if max_frames is not None:
        count = min(count, max_frames)
    interval = duration / count if (num_frames is not None or count == max_frames) else 1.0 / fps
    targets = (np.arange(count) + 0.5) * interval
    picks = np.clip(np.searchsorted(starts, targets, side="right") - 1, 0, len(starts) - 1)
    return sorted(set(int(i) for i in picks))


def _is_variable_rate(starts: np.ndarray, avg_fps: float, fps: float | None) -> bool:
    """Whether frame times stray from index / avg_fps by more than half a sampling interval."""
    tolerance = 0.5 / fps if fps else 0.5
    nominal = np.arange(len(starts)) / avg_fps
    return bool(len(starts) > 1 and np.max(np.abs(starts - nominal)) > tolerance)


def sample_indices(
    total_frames: int,
    avg_fps: float,
    *,
    fps: float | None = 1.0,
    num_frames: int | None = None,
    max_frames: int | None = None,
) -> list[int]:
    """Sorted, unique frame indices in [0, total_frames) to decode (see the module docstring).

    num_frames (evenly spaced, overrides fps) gives min(num_frames, total_frames) frames;
    max_frames re-spaces evenly when the rule would give more. A non-empty video always gives at
    least one frame; total_frames == 0 gives [].
    """
    return _sampling(total_frames, avg_fps, fps, num_frames, max_frames).indices


# ---------------------------------------------------------------------------- probing


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


_DECORD_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (\[[^\]]*\] )?")  # "[19:42:08] src/x.cc:270: [file] "


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return _DECORD_LOG_PREFIX.sub("", lines[-1]) if lines else "no error text"


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
            capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT_S,
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
        raise VideoDecodeError(path, "decode_error", f"{path}: ffmpeg cannot open it: {_last_line(err)}")
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
    block = err[match.start():]
    next_stream = block.find("Stream #", 1)
    rotation = _ROTATION.search(block if next_stream < 0 else block[:next_stream])
    degrees = 0.0
    if rotation:
        degrees = float(rotation.group(1)) if rotation.group(1) is not None else -float(rotation.group(2))
    seconds = int(duration.group(1)) * 3600 + int(duration.group(2)) * 60 + float(duration.group(3)) if duration else None
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


def _rotate(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Turn coded frames (N, H, W, 3) upright: `rotation` degrees counter-clockwise."""
    if rotation == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=rotation // 90, axes=(1, 2)))


# ---------------------------------------------------------------------------- stats


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

    def _begin(self) -> None:
        with self._lock:
            if self._start is None:
                self._start = time.perf_counter()

    def _record(
        self, video_id: str, seconds: float, frames: int, decoders: set[str], truncated: bool, failed: bool
    ) -> None:
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


# ---------------------------------------------------------------------------- decoders


class _Chunker:
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


class _UnitFailed(Exception):
    def __init__(self, unit: int, cause: BaseException):
        super().__init__(f"unit {unit}: {cause}")
        self.unit, self.cause = unit, cause


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when `stop` is set (so producers never hang on a dead consumer)."""
    while True:
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            if stop.is_set():
                return False


def _join(threads: list[threading.Thread], patience: float = 120.0) -> None:
    """Join stopped threads; they finish at most one unit of decoding first."""
    deadline = time.monotonic() + patience
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():  # a decoder stuck inside a library call: leave the daemon thread, say so
            log.warning("thread %s did not stop within %.0f s", t.name, patience)


def _open_decord(path: Path, width: int, height: int, num_threads: int) -> decord.VideoReader:
    return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=num_threads)


def _decord_units(
    path: Path,
    units: list[list[int]],
    first_reader: decord.VideoReader,
    width: int,
    height: int,
    readers: int,
    num_threads: int,
) -> Iterator[np.ndarray]:
    """Decode `units` (lists of sorted indices) in order, unit j on reader thread j % readers.

    Each reader owns a VideoReader and holds at most one finished unit while decoding the next
    (bounded memory); a reader error surfaces as _UnitFailed(j) at unit j. Closing the generator
    stops and joins the readers.
    """
    readers = max(1, min(readers, len(units)))
    stop = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(maxsize=1) for _ in range(readers)]

    def read(r: int) -> None:
        j = r
        try:
            vr = first_reader if r == 0 else _open_decord(path, width, height, num_threads)
            for j in range(r, len(units), readers):
                if stop.is_set():
                    return
                frames = vr.get_batch(units[j]).asnumpy()
                if frames.shape != (len(units[j]), height, width, 3):  # e.g. rotation read differently
                    raise RuntimeError(f"decord gave frames of shape {frames.shape[1:]}, expected {(height, width, 3)}")
                if not _put(queues[r], frames, stop):
                    return
        except BaseException as exc:  # handed to the consumer, which decides (ffmpeg takes over)
            _put(queues[r], _UnitFailed(j, exc), stop)

    threads = [threading.Thread(target=read, args=(r,), name=f"decord-reader-{r}", daemon=True) for r in range(readers)]
    for t in threads:
        t.start()
    try:
        for j in range(len(units)):
            r = j % readers
            while True:
                try:
                    item = queues[r].get(timeout=1.0)
                    break
                except queue.Empty:
                    if not threads[r].is_alive() and queues[r].empty():
                        raise _UnitFailed(j, RuntimeError("decord reader stopped")) from None
            if isinstance(item, _UnitFailed):
                raise item
            yield item
    finally:
        stop.set()
        _join(threads)  # a reader finishes its current get_batch (one unit) and exits


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


def _ffmpeg_frames(
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
                    yield _rotate(frames[:got], rotation)
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
        raise VideoDecodeError(path, "decode_error", f"{path}: ffmpeg could not decode it: {_last_line(err)}")
    if err.strip():
        log.debug("%s: ffmpeg: %s", path, _last_line(err))


def _units(indices: list[int], chunk_size: int, readers: int) -> list[list[int]]:
    """Split indices into a multiple of `readers` units of at most chunk_size, balanced in size."""
    n_units = readers * math.ceil(len(indices) / (readers * chunk_size))
    n_units = max(1, min(n_units, len(indices)))
    return [part.tolist() for part in np.array_split(np.asarray(indices), n_units) if len(part)]


def _auto_readers(total_frames: int) -> int:
    # a second reader pays for its own open + index scan; worth it once there is real decoding
    return 1 if total_frames < 600 else min(2, os.cpu_count() or 1)


def decode_frames(
    path: str | Path,
    *,
    fps: float | None = 1.0,
    num_frames: int | None = None,
    max_frames: int | None = None,
    size: int | None = None,
    chunk_size: int = 64,
    video_id: str | None = None,
    readers: int | None = None,
    num_threads: int = 0,
    decoder: str = "auto",
    stats: DecodeStats | None = None,
) -> Iterator[FrameBatch]:
    """Decode the sampled frames of one video as FrameBatch chunks of `chunk_size` frames.

    Frames are RGB uint8 (N, H, W, 3), upright (container rotation applied), shorter side =
    `size` (None = native; mind the memory: a 64-frame 1080p chunk is 400 MB). Timestamps are
    seconds from the first frame. Only the sampled frames are decoded and only a few chunks are
    ever in memory. Every chunk holds exactly `chunk_size` frames except the last, which has
    final=True. Raises VideoDecodeError when the video gives no frame at all; a stream that breaks
    part-way yields the frames before the break.

    readers: decord reader threads for this video (None: 2 from 600 frames on, else 1).
    num_threads: decoder threads per reader (0: ffmpeg's choice).
    decoder: "auto" (decord, ffmpeg as fallback) or "ffmpeg" (ffmpeg only).
    stats: accumulates decode time and counts (see DecodeStats).
    Arguments are checked here; decoding starts at the first next().
    """
    _check_sampling_args(fps, num_frames, max_frames)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if decoder not in ("auto", "ffmpeg"):
        raise ValueError(f"decoder must be 'auto' or 'ffmpeg', got {decoder!r}")
    path = Path(path)
    request = _Request(
        path, video_id if video_id is not None else path.stem, fps, num_frames, max_frames, size, chunk_size,
        readers, num_threads, decoder,
    )
    return _timed(request, stats)


@dataclass(frozen=True)
class _Request:
    path: Path
    video_id: str
    fps: float | None
    num_frames: int | None
    max_frames: int | None
    size: int | None
    chunk_size: int
    readers: int | None
    num_threads: int
    decoder: str

    def plan(self, total_frames: int, avg_fps: float) -> _Sampling:
        return _sampling(total_frames, avg_fps, self.fps, self.num_frames, self.max_frames)


@dataclass
class _Outcome:
    truncated: bool = False  # the stream ended before all sampled frames were decoded


def _timed(request: _Request, stats: DecodeStats | None) -> Iterator[FrameBatch]:
    """Run the decoder, clocking only the time spent producing frames (not the consumer's)."""
    if stats is not None:
        stats._begin()
    seconds, frames, decoders, failed = 0.0, 0, set(), False
    outcome = _Outcome()
    gen = _decode(request, outcome)
    try:
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(gen)
            except StopIteration:
                return
            finally:
                seconds += time.perf_counter() - t0
            frames += len(batch.images)
            decoders.add(batch.decoder)
            yield batch
    except Exception:  # not GeneratorExit: a consumer that stops early is no failure
        failed = True
        raise
    finally:
        gen.close()
        if stats is not None:
            stats._record(request.video_id, seconds, frames, decoders, outcome.truncated, failed)


def _decode(request: _Request, outcome: _Outcome) -> Iterator[FrameBatch]:
    path = request.path
    info = probe_video(path)
    if info.width is None or info.height is None:
        raise VideoDecodeError(path, "decode_error", f"{path}: ffmpeg reports no frame size for the video stream")
    coded = output_size(info.width, info.height, request.size)  # ffmpeg scales before we rotate
    upright = coded[::-1] if info.rotation in (90, 270) else coded  # decord's width/height; output

    why_not_decord = "decoder='ffmpeg' requested"
    total_frames, avg_fps = info.estimated_frames() or 0, info.fps or 0.0
    if request.decoder == "auto":
        try:
            vr = _open_decord(path, *upright, request.num_threads)
            total = len(vr)
            pts = np.asarray(vr.get_frame_timestamp(list(range(total))), dtype=np.float64) if total else None
            decord_fps = vr.get_avg_fps()
        except Exception as exc:  # DECORDError, RuntimeError: ffmpeg gets its chance below
            why_not_decord = f"decord cannot read it ({_last_line(str(exc))[:200]})"
        else:
            decord_fps = decord_fps if decord_fps > 0 and math.isfinite(decord_fps) else avg_fps
            if total == 0:
                why_not_decord = "decord finds no frames"
            elif decord_fps <= 0 or not np.all(np.isfinite(pts)):
                why_not_decord = "decord finds no usable frame rate or timestamps"
            elif not np.all(np.diff(pts[:, 0]) > 0):
                # decord sorts frames by pts, so a clock that restarts would interleave two parts
                why_not_decord = "its timestamps are not monotonic"
                total_frames, avg_fps = total, decord_fps
            else:
                yield from _decode_decord_first(request, outcome, info, vr, pts, decord_fps, upright)
                return
            del vr

    if total_frames <= 0 or avg_fps <= 0:
        message = f"{path}: no frames to decode ({why_not_decord}; the header gives no duration/fps)"
        raise VideoDecodeError(path, "zero_frames", message)
    log.info("%s: decoding with ffmpeg: %s", path, why_not_decord)
    # ffmpeg decodes in stream order; timestamps come from the nominal frame rate
    plan = request.plan(total_frames, avg_fps)
    timestamps = [round(i / avg_fps, 4) for i in plan.indices]
    duration = max(info.duration or 0.0, total_frames / avg_fps)  # a restarting clock fools the header
    chunker = _Chunker(request.video_id, request.chunk_size, len(plan.indices), timestamps, duration)
    selected = _ffmpeg_frames(path, plan.select_expr(), *coded, len(plan.indices), info.rotation, request.chunk_size)
    for frames in selected:
        yield from chunker.add(frames, "ffmpeg")
    if chunker.received == 0:
        message = f"{path}: the video stream has no decodable frames ({why_not_decord})"
        raise VideoDecodeError(path, "zero_frames", message)
    outcome.truncated = chunker.received < chunker.expected
    yield from chunker.finish()


def _decode_decord_first(
    request: _Request,
    outcome: _Outcome,
    info: VideoInfo,
    vr: decord.VideoReader,
    pts: np.ndarray,
    avg_fps: float,
    upright: tuple[int, int],
) -> Iterator[FrameBatch]:
    """decord decodes the sampled frames; if it fails part-way, ffmpeg decodes the rest."""
    path, total, starts = request.path, len(pts), pts[:, 0]
    plan = request.plan(total, avg_fps)
    relative = starts - starts[0]
    duration = float(max(pts[-1, 1] - starts[0], total / avg_fps))
    if request.num_frames is None and _is_variable_rate(relative, avg_fps, request.fps):
        picks = sample_by_time(relative, float(pts[-1, 1] - starts[0]), request.fps, None, request.max_frames)
        plan = _Sampling(picks, None, explicit=True)
        duration = float(pts[-1, 1] - starts[0])
    timestamps = [round(float(t), 4) for t in relative[plan.indices]]
    chunker = _Chunker(request.video_id, request.chunk_size, len(plan.indices), timestamps, duration)
    readers = request.readers or _auto_readers(total)
    units = _units(plan.indices, request.chunk_size, readers)
    try:
        for frames in _decord_units(path, units, vr, *upright, readers, request.num_threads):
            yield from chunker.add(frames, "decord")
        yield from chunker.finish()
        return
    except _UnitFailed as failure:
        first = units[failure.unit][0]
        cause = _last_line(str(failure.cause))
        log.warning("%s: decord failed at frame %d (%s); ffmpeg decodes the rest", path, first, cause)
    # units arrive whole and in order: everything before the failed unit has been received
    coded = upright[::-1] if info.rotation in (90, 270) else upright
    remaining = len(plan.indices) - chunker.received
    for frames in _ffmpeg_frames(path, plan.select_expr(first), *coded, remaining, info.rotation, request.chunk_size):
        yield from chunker.add(frames, "ffmpeg")
    if chunker.received == 0:
        raise VideoDecodeError(path, "decode_error", f"{path}: neither decord nor ffmpeg could decode a frame")
    outcome.truncated = chunker.received < chunker.expected
    yield from chunker.finish()


# ---------------------------------------------------------------------------- streaming

_DONE = object()  # a worker has no more videos


@dataclass
class _WorkerCrash:
    error: BaseException


def stream_videos(
    items: Iterable[tuple[str, str | Path]],
    *,
    fps: float | None = 1.0,
    num_frames: int | None = None,
    max_frames: int | None = None,
    size: int | None = None,
    workers: int = 2,
    queue_size: int = 8,
    chunk_size: int = 64,
    readers: int | None = None,
    stats: DecodeStats | None = None,
) -> Iterator[FrameBatch | VideoFailure]:
    """Decode many videos in background threads; yield their chunks and failures as they come.

    items: (video_id, path) pairs, read lazily. `workers` threads each take the next video and
    push its FrameBatch chunks into a queue of `queue_size` chunks, so decoding runs ahead of the
    consumer (captioning) while memory stays bounded by about queue_size + 2 * workers chunks
    whatever the video lengths. Order: the chunks of one video arrive in order (start ascending,
    the last one final=True); chunks of different videos may interleave (one video per worker).
    A video that cannot be decoded yields a VideoFailure instead (usually its only record; if it
    broke after some chunks, the failure ends it) and the stream goes on. Closing the generator
    (break, .close(), garbage collection) stops the workers and joins them.
    """
    _check_sampling_args(fps, num_frames, max_frames)
    for name, value in (("workers", workers), ("queue_size", queue_size), ("chunk_size", chunk_size), ("size", size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    options = dict(
        fps=fps, num_frames=num_frames, max_frames=max_frames, size=size, chunk_size=chunk_size, readers=readers, stats=stats
    )
    return _stream(iter(items), options, workers, queue_size)


def _stream(
    source: Iterator[tuple[str, str | Path]], options: dict, workers: int, queue_size: int
) -> Iterator[FrameBatch | VideoFailure]:
    out: queue.Queue = queue.Queue(maxsize=queue_size)
    stop = threading.Event()
    source_lock = threading.Lock()

    def next_item() -> tuple[str, str | Path] | None:
        with source_lock:  # one iterator shared by the workers
            return next(source, None)

    def work() -> None:
        try:
            while not stop.is_set():
                item = next_item()
                if item is None:
                    return
                video_id, path = item
                batches = decode_frames(path, video_id=video_id, **options)
                try:
                    for batch in batches:
                        if not _put(out, batch, stop):
                            return
                except VideoDecodeError as exc:
                    _put(out, exc.to_failure(video_id), stop)
                except Exception as exc:  # a bug or an odd file: report it against this video, keep going
                    log.exception("%s: unexpected error while decoding", path)
                    message = f"{path}: unexpected {type(exc).__name__}: {_last_line(str(exc))}"
                    failure = VideoFailure(video_id=video_id, path=str(path), reason="decode_error", message=message)
                    _put(out, failure, stop)
                finally:
                    batches.close()
        except BaseException as exc:  # e.g. the items iterable raised: the consumer re-raises it
            _put(out, _WorkerCrash(exc), stop)
        finally:
            _put(out, _DONE, stop)

    threads = [threading.Thread(target=work, name=f"video-decoder-{i}", daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    try:
        running = workers
        while running:
            item = out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, _WorkerCrash):
                raise item.error
            else:
                yield item
    finally:
        stop.set()
        while True:  # unblock workers waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                break
        _join(threads)
