"""Thumbnails of the frames a run actually looked at, decoded with the pipeline's own decoder and cached.

A captioning run's frames are re-decoded with the run's own sampling (frames.fps / num_frames /
max_frames), so each thumbnail is the very frame whose caption sits under it; at most `limit` per
video, evenly spread over the caption times. A video-LLM run's frames are its answerer's sampling
(video_llm.fps, max_frames): the frames the model was shown.

The cache (<outputs>/cache/thumbnails/, beside the caption cache) is keyed by the video's content
fingerprint, the sampling and the thumbnail size: a rebuilt report decodes nothing it decoded
before. Each key keeps the sampled frame times (frames.json) and the JPEGs written so far; the
report copies (hard-links where it can) the ones it shows into report_files/. A video that is
missing or does not decode gives no thumbnails and a reason, never a failed report.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from videoqa.captioning.cache import video_fingerprint
from videoqa.frames import VideoDecodeError, decode_frames
from videoqa_base.logs import progress_bar

THUMB_SIZE = 96  # shorter side, px
JPEG_QUALITY = 70
MIN_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class Sampling:
    """The frame sampling to reproduce (the run's frames section, or its video_llm section)."""

    fps: float | None = 1.0
    num_frames: int | None = None
    max_frames: int | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"fps": self.fps, "num_frames": self.num_frames, "max_frames": self.max_frames}


@dataclass(frozen=True)
class ThumbJob:
    """Thumbnails wanted for one video under one sampling."""

    video_id: str
    video_path: Path | None
    sampling: Sampling
    times: tuple[float, ...] | None  # caption times to show frames for; None: the sampled frames themselves
    limit: int


@dataclass
class ThumbResult:
    frames: list[tuple[float, str]] = field(default_factory=list)  # (caption or frame time, file)
    sampled: int = 0  # frames the sampling gives for the whole video
    error: str = ""  # why there are no thumbnails


def spread(count: int, limit: int) -> list[int]:
    """At most `limit` indices of `count` items, evenly spread, first and last included."""
    if limit <= 0 or count <= 0:
        return []
    if count <= limit:
        return list(range(count))
    if limit == 1:
        return [count // 2]
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def match_times(wanted: Sequence[float], decoded: Sequence[float]) -> list[tuple[float, int]]:
    """(wanted time, index of the decoded frame at that time) for each wanted time with such a frame:
    the nearest one, within half the sampling interval (captions come from these very frames)."""
    if not decoded:
        return []
    times = np.asarray(decoded, dtype=np.float64)
    spacing = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
    tolerance = max(spacing / 2, MIN_TOLERANCE_S) + 1e-6
    found = []
    for t in wanted:
        i = int(np.argmin(np.abs(times - t)))
        if abs(times[i] - t) <= tolerance:
            found.append((float(t), i))
    return found


def millis(t: float) -> int:
    return round(t * 1000)


class ThumbnailCache:
    """JPEG thumbnails per (video content, sampling, size), decoded once."""

    def __init__(self, root: Path, size: int = THUMB_SIZE):
        self.root = Path(root)
        self.size = size
        self.decoded_videos = 0  # videos decoded by this cache object (the rest were cache hits)
        self.locks: dict[str, threading.Lock] = {}
        self.locks_guard = threading.Lock()

    def key(self, video_path: Path, sampling: Sampling) -> str:
        context = json.dumps({"sampling": sampling.as_dict(), "size": self.size}, sort_keys=True)
        return hashlib.sha256(f"{video_fingerprint(video_path)}|{context}".encode()).hexdigest()

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, job: ThumbJob) -> tuple[str, ThumbResult]:
        """(cache key, thumbnails as paths in the cache); decodes only what the cache lacks."""
        if job.video_path is None or not job.video_path.is_file():
            where = job.video_path if job.video_path is not None else "unknown (dataset not readable)"
            return "", ThumbResult(error=f"video not found: {where}")
        key = self.key(job.video_path, job.sampling)
        with self.locks_guard:  # runs with the same sampling share a key: one decodes, the other reads
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            return key, self.get_locked(job, key)

    def get_locked(self, job: ThumbJob, key: str) -> ThumbResult:
        assert job.video_path is not None
        folder = self.folder(key)
        index = folder / "frames.json"
        try:
            known = json.loads(index.read_text())["times"]
        except (OSError, ValueError, KeyError, TypeError):
            known = None
        if known is not None:
            chosen = self.choose(job, known)
            if all((folder / f"{millis(known[i])}.jpg").is_file() for _, i in chosen):
                return self.result(folder, known, chosen)
        try:
            times, images = self.decode(job)
        except VideoDecodeError as exc:
            return ThumbResult(error=f"{exc.reason}: {exc.message}")
        except Exception as exc:  # a decoder crash on one video must not fail the report
            return ThumbResult(error=f"decode_error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        chosen = self.choose(job, times)
        folder.mkdir(parents=True, exist_ok=True)
        for _, i in chosen:
            target = folder / f"{millis(times[i])}.jpg"
            if not target.is_file():
                partial = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
                Image.fromarray(images[i]).save(partial, format="JPEG", quality=JPEG_QUALITY)
                os.replace(partial, target)
        partial = index.with_suffix(f".{uuid.uuid4().hex}.tmp")
        partial.write_text(json.dumps({"times": times, "sampling": job.sampling.as_dict(), "size": self.size}))
        os.replace(partial, index)
        return self.result(folder, times, chosen)

    def choose(self, job: ThumbJob, decoded: Sequence[float]) -> list[tuple[float, int]]:
        if job.times is None:  # the frames themselves (a video LLM's input)
            return [(float(decoded[i]), i) for i in spread(len(decoded), job.limit)]
        picks = [job.times[i] for i in spread(len(job.times), job.limit)]
        return match_times(picks, decoded)

    def result(self, folder: Path, times: Sequence[float], chosen: list[tuple[float, int]]) -> ThumbResult:
        return ThumbResult([(t, str(folder / f"{millis(times[i])}.jpg")) for t, i in chosen], len(times))

    def decode(self, job: ThumbJob) -> tuple[list[float], list[np.ndarray]]:
        """Every sampled frame at thumbnail size (small: 180 frames at 128x96 are 7 MB)."""
        assert job.video_path is not None
        times: list[float] = []
        images: list[np.ndarray] = []
        sampling = job.sampling
        for batch in decode_frames(
            job.video_path,
            fps=sampling.fps,
            num_frames=sampling.num_frames,
            max_frames=sampling.max_frames,
            size=self.size,
            video_id=job.video_id,
        ):
            times += [float(t) for t in batch.timestamps]
            images += list(batch.images)
        self.decoded_videos += 1
        return times, images


def export(result: ThumbResult, key: str, files_dir: Path, relative_to: Path) -> ThumbResult:
    """The thumbnails copied (hard-linked where possible) into report_files/, as page-relative paths."""
    if not result.frames:
        return result
    folder = files_dir / key[:16]
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for t, source in result.frames:
        target = folder / Path(source).name
        if not target.is_file():
            try:
                os.link(source, target)
            except FileExistsError:  # exported meanwhile for another run with the same frames
                pass
            except OSError:  # another file system, or links not allowed
                partial = target.with_suffix(f".{uuid.uuid4().hex}.tmp")
                shutil.copyfile(source, partial)
                os.replace(partial, target)
        frames.append((t, target.relative_to(relative_to).as_posix()))
    return ThumbResult(frames, result.sampled, result.error)


def build_thumbnails(
    jobs: Sequence[ThumbJob],
    cache: ThumbnailCache,
    files_dir: Path,
    relative_to: Path,
    *,
    workers: int = 2,
    progress: bool = True,
) -> list[ThumbResult]:
    """One result per job (same order), thumbnails exported under `files_dir`."""

    def one(job: ThumbJob) -> ThumbResult:
        key, result = cache.get(job)
        return export(result, key, files_dir, relative_to)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        bar = progress_bar(pool.map(one, jobs), show=progress, total=len(jobs), desc="thumbnails", unit="video")
        return list(bar)
