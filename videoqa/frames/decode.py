"""decode_frames: one video -> FrameBatch chunks, choosing between decord and ffmpeg per file.

The order of play for one video: probe the header (precise errors, size, rotation); try decord
and check what it reports (frame count, frame rate, timestamps); sample by index, or by real
time when the timestamps show a variable frame rate; decode with decord and, if it fails
part-way, let ffmpeg decode the remaining sampled frames. ffmpeg decodes the whole video when
decord cannot open it, finds no frames, or reports non-monotonic timestamps (decord sorts frames
by pts, which interleaves the parts of a file whose clock restarts). A stream that ends early
yields the frames that could be decoded, the last chunk marked final (DecodeStats.truncated
counts it). A video with no decodable frame raises VideoDecodeError(path, reason, message),
reason one of missing | not_a_video | zero_frames | decode_error.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import decord
import numpy as np

from videoqa.frames.chunker import Chunker
from videoqa.frames.decord_decoder import UnitFailed, auto_readers, decord_units, open_decord, split_units
from videoqa.frames.errors import VideoDecodeError, last_line
from videoqa.frames.ffmpeg_decoder import ffmpeg_frames
from videoqa.frames.probe import VideoInfo, output_size, probe_video
from videoqa.frames.sampling import Sampling, check_sampling_args, is_variable_rate, plan_sampling, sample_by_time
from videoqa.frames.stats import DecodeStats
from videoqa.frames.threads import holding, in_turns
from videoqa.types import FrameBatch

log = logging.getLogger(__name__)


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
    turns: threading.Lock | None = None,
) -> Generator[FrameBatch, None, None]:
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
    turns: a lock held while decoding each unit of frames (videoqa.frames.threads: a CPU captioner
        holds it while it captions, so the two take turns on the cores instead of stalling each other).
    Arguments are checked here; decoding starts at the first next().
    """
    check_sampling_args(fps, num_frames, max_frames)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if size is not None and size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if decoder not in ("auto", "ffmpeg"):
        raise ValueError(f"decoder must be 'auto' or 'ffmpeg', got {decoder!r}")
    path = Path(path)
    request = _Request(
        path,
        video_id if video_id is not None else path.stem,
        fps,
        num_frames,
        max_frames,
        size,
        chunk_size,
        readers,
        num_threads,
        decoder,
        turns,
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
    turns: threading.Lock | None = None

    def plan(self, total_frames: int, avg_fps: float) -> Sampling:
        return plan_sampling(total_frames, avg_fps, self.fps, self.num_frames, self.max_frames)


@dataclass
class _Outcome:
    truncated: bool = False  # the stream ended before all sampled frames were decoded


def _timed(request: _Request, stats: DecodeStats | None) -> Generator[FrameBatch, None, None]:
    """Run the decoder, clocking only the time spent producing frames (not the consumer's)."""
    if stats is not None:
        stats.begin()
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
            stats.record(request.video_id, seconds, frames, decoders, outcome.truncated, failed)


def _decode(request: _Request, outcome: _Outcome) -> Generator[FrameBatch, None, None]:
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
            with holding(request.turns):  # opening reads the whole index
                vr = open_decord(path, *upright, request.num_threads)
                total = len(vr)
                pts = np.asarray(vr.get_frame_timestamp(list(range(total))) if total else [], dtype=np.float64)
                decord_fps = vr.get_avg_fps()
        except Exception as exc:  # DECORDError, RuntimeError: ffmpeg gets its chance below
            why_not_decord = f"decord cannot read it ({last_line(str(exc))[:200]})"
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
    chunker = Chunker(request.video_id, request.chunk_size, len(plan.indices), timestamps, duration)
    selected = ffmpeg_frames(path, plan.select_expr(), *coded, len(plan.indices), info.rotation, request.chunk_size)
    for frames in in_turns(selected, request.turns):
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
    if request.num_frames is None and is_variable_rate(relative, avg_fps, request.fps):
        picks = sample_by_time(relative, float(pts[-1, 1] - starts[0]), request.fps, None, request.max_frames)
        plan = Sampling(picks, None, explicit=True)
        duration = float(pts[-1, 1] - starts[0])
    timestamps = [round(float(t), 4) for t in relative[plan.indices]]
    chunker = Chunker(request.video_id, request.chunk_size, len(plan.indices), timestamps, duration)
    readers = request.readers or auto_readers(total)
    units = split_units(plan.indices, request.chunk_size, readers)
    try:
        for frames in decord_units(path, units, vr, *upright, readers, request.num_threads, request.turns):
            yield from chunker.add(frames, "decord")
        yield from chunker.finish()
        return
    except UnitFailed as failure:
        first = units[failure.unit][0]
        cause = last_line(str(failure.cause))
        log.warning("%s: decord failed at frame %d (%s); ffmpeg decodes the rest", path, first, cause)
    # units arrive whole and in order: everything before the failed unit has been received
    coded = upright[::-1] if info.rotation in (90, 270) else upright
    remaining = len(plan.indices) - chunker.received
    rest = ffmpeg_frames(path, plan.select_expr(first), *coded, remaining, info.rotation, request.chunk_size)
    for frames in in_turns(rest, request.turns):
        yield from chunker.add(frames, "ffmpeg")
    if chunker.received == 0:
        raise VideoDecodeError(path, "decode_error", f"{path}: neither decord nor ffmpeg could decode a frame")
    outcome.truncated = chunker.received < chunker.expected
    yield from chunker.finish()
