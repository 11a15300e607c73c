"""Captions for a list of videos: from the cache, or decoded and captioned now (streamed).

videos -> (caption cache | precomputed | known failure) -> decode -> caption_stream -> CaptionResult

The captioner's identity is known without its weights, so the cache is read first and the
weights are loaded only when some video still needs captioning: a fully cached run loads no model.
A video that failed in an earlier attempt is retried only if its file has appeared or changed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from tqdm import tqdm

from videoqa.captioning.base import Captioner, ImportedCaptions
from videoqa.captioning.cache import CaptionCache, file_state
from videoqa.captioning.frame_stage import FrameStage, selection_key, video_counts
from videoqa.captioning.stage import CaptionStats, caption_stream
from videoqa.frames import DecodeStats, stream_videos
from videoqa.types import FrameBatch, VideoCaptions, VideoFailure
from videoqa_base.logs import progress_bar

if TYPE_CHECKING:
    from videoqa.config import RunConfig


class CaptionTiming(TypedDict, total=False):
    """What a run spent getting its captions (CaptionResult.timing; metrics.json's "timing").

    `caption_videos` writes every key but the video-LLM ones; a video-LLM run (no captions) writes
    caption_s and decode_s as 0 and adds what it measured while answering.
    """

    caption_stage_wall_s: float  # wall time of decoding + captioning the videos not cached
    caption_s: float  # captioning time of every video of the run, earlier runs' included
    caption_s_this_run: float
    decode_s: float  # time captioning waited for frames (decoding overlaps captioning)
    decode_worker_s: float  # decoding time summed over videos
    decode_wall_s: float
    decode_fallbacks: int  # videos (partly) decoded by ffmpeg
    decode_truncated: int  # videos that ended early (frames kept)
    frames_captioned: int
    caption_batches: int
    caption_batch_size: int  # after any OOM backoff
    caption_oom_backoffs: int
    captioner_loaded: bool  # False when every video came from the cache (or failed before captioning)
    videos_from_cache: int
    # the frame stage (FrameStage.timing): per-frame cache and adaptive selection
    frames_decoded: int
    frames_embedded: int
    frames_from_frame_cache: int
    embed_s: float
    select_s: float
    # per video: duration_s, frames, decode_s, caption_s, frames_decoded/embedded/captioned
    per_video: dict[str, dict[str, float]]
    # a video-LLM run (VideoLLMAnswerer.answer)
    answer_s: float
    video_seconds: float
    videos: int
    videos_failed: int
    frames: int
    frames_subsampled_questions: int


@dataclass
class CaptionResult:
    captions: dict[str, VideoCaptions]
    failures: dict[str, VideoFailure]
    timing: CaptionTiming
    identity: dict[str, Any]
    parameters: int
    retried_videos: list[str] = field(default_factory=list)  # earlier failures whose file changed


def caption_cache(config: RunConfig, captioner: Captioner) -> CaptionCache:
    """Keyed by video content, sampling and the captioner's identity (with the prompt); for
    `frames.select: adaptive` also the selection settings (uniform keys are what they were)."""
    assert config.captioner is not None, "a captioning run has a captioner (RunConfig checks)"
    sampling = config.frames.model_dump(exclude={"workers", "select"}) | {"size": captioner.image_size}
    sampling |= selection_key(config, captioner)
    # the prompt is part of the key whatever the captioner's identity() says
    context = captioner.identity() | {"prompt": config.captioner.prompt}
    return CaptionCache(Path(config.output_dir) / "cache" / "captions", sampling, context)


def _count_decoded(stream: Iterator[FrameBatch | VideoFailure], bar: tqdm) -> Iterator[FrameBatch | VideoFailure]:
    for item in stream:
        if isinstance(item, FrameBatch):
            bar.update(len(item.timestamps))
        yield item


def usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def computes_on_cpu(captioner: Captioner) -> bool:
    """Whether the captioner's intra-op threads fill this process's cores, those the decoders use too
    (a captioner on one thread leaves the decoders a core: then the two overlap as on a GPU)."""
    device = getattr(captioner, "device", None)
    if device is None or not str(device).startswith("cpu"):
        return False
    import torch

    cores = usable_cores()
    return torch.get_num_threads() >= cores


@dataclass(frozen=True)
class DecoderShare:
    """How the decoders share the cores with the captioner during the stage (stream_videos' settings)."""

    turns: threading.Lock | None = None  # one core: decoding and captioning take turns
    readers: int | None = None  # decord readers per video (None: decode_frames' choice)
    num_threads: int = 0  # decoder threads per reader (0: ffmpeg's choice)


@contextmanager
def share_cores_with_decoders(captioner: Captioner) -> Iterator[DecoderShare]:
    """How a CPU captioner whose intra-op threads fill the cores shares them with the decoders, for
    the stage. The decoders get one core: one decord reader of one decoder thread per video, since
    more threads beside the captioner's slow it more than they speed decoding. With 2 or more cores
    the captioner runs on one core fewer; on a single core the two take turns (the lock,
    videoqa.frames.threads). A GPU captioner overlaps with decoding as it is, and the decoders keep
    their defaults.

    Measured on 2 cores (docs/performance.md, long_video_linearity; ms per frame on a 5- / 40-minute
    video, idle machine): turn-taking 34.8 / 50.0; one core fewer 20.0 / 25.6; one core fewer with
    the decoders on one thread 15.1 / 18.1 (decoders at nice +10 were faster idle but starved 3x
    under load, so not kept)."""
    if not computes_on_cpu(captioner):
        yield DecoderShare()
        return
    import torch

    cores = usable_cores()
    if cores < 2:
        yield DecoderShare(turns=threading.Lock(), readers=1, num_threads=1)
        return
    before = torch.get_num_threads()
    torch.set_num_threads(cores - 1)
    try:
        yield DecoderShare(readers=1, num_threads=1)
    finally:
        torch.set_num_threads(before)


def caption_videos(
    config: RunConfig,
    captioner: Captioner,
    videos: Sequence[tuple[str, Path]],
    known_failures: dict[str, VideoFailure] | None = None,
    on_failure: Callable[[VideoFailure], None] | None = None,
    progress: bool = True,
) -> CaptionResult:
    """Captions for every (video_id, path). `known_failures` are earlier attempts' failures: kept
    as they are unless the file changed since; `on_failure` sees each new failure as it happens.
    The captioner stays as it was handed over (loaded or not): its owner closes it."""
    assert config.captioner is not None, "a captioning run has a captioner (RunConfig checks)"
    known_failures = known_failures or {}
    cache = caption_cache(config, captioner)
    captions: dict[str, VideoCaptions] = {}
    failures: dict[str, VideoFailure] = {}
    retried: list[str] = []
    imported = captioner if isinstance(captioner, ImportedCaptions) else None
    for video_id, path in videos:
        cached = imported.precomputed(video_id) if imported is not None else cache.get(path)
        if cached is not None:
            captions[video_id] = VideoCaptions(
                video_id, cached.captions, cached.duration, cached.caption_s, cached.selection
            )
        elif imported is not None and (missing := imported.missing_precomputed(video_id, path)) is not None:
            failures[video_id] = missing  # a captioner that never sees frames has nothing for it
        elif (earlier := known_failures.get(video_id)) is not None:
            if earlier.fingerprint and earlier.fingerprint == file_state(path):
                failures[video_id] = earlier  # nothing changed: it would fail the same way
            else:
                retried.append(video_id)
    todo = [(vid, path) for vid, path in videos if vid not in captions and vid not in failures]
    paths = dict(todo)

    stats, decode_stats = CaptionStats(), DecodeStats()
    # the per-frame cache, and adaptive selection (frames.select): which decoded frames get captioned
    frame_stage = FrameStage(config, captioner, paths, Path(config.output_dir) / "cache" / "frame-captions")
    started = time.perf_counter()
    if todo:
        with (
            share_cores_with_decoders(captioner) as share,
            progress_bar(desc="decode", unit="frame", show=progress) as decode_bar,
            progress_bar(total=len(todo), desc="caption", unit="video", show=progress) as caption_bar,
        ):
            frames = stream_videos(
                todo,
                fps=config.frames.fps,
                num_frames=config.frames.num_frames,
                max_frames=config.frames.max_frames,
                size=captioner.image_size,
                workers=config.frames.workers,
                readers=share.readers,
                num_threads=share.num_threads,
                stats=decode_stats,
                turns=share.turns,
            )
            for out in caption_stream(
                frame_stage.wrap(_count_decoded(frames, decode_bar)),
                captioner,
                config.captioner.prompt,
                config.captioner.batch_size,
                stats,
                share.turns,
            ):
                if isinstance(out, VideoFailure):
                    out.fingerprint = file_state(paths[out.video_id])
                    failures[out.video_id] = out
                    if on_failure is not None:
                        on_failure(out)
                else:
                    out.caption_s = stats.per_video_caption_s.get(out.video_id, 0.0)
                    out = frame_stage.finish(out)
                    captions[out.video_id] = out
                    cache.put(paths[out.video_id], out)
                caption_bar.update(1)
                caption_bar.set_postfix(frames=stats.frames, failed=len(failures))
    loaded = captioner.loaded
    timing: CaptionTiming = {
        "caption_stage_wall_s": time.perf_counter() - started,
        # captioning time of every video of the run, including videos (and frames) captioned by earlier
        # runs; with adaptive selection the embedding of every frame is included
        "caption_s": sum(vc.caption_s for vc in captions.values()),
        "caption_s_this_run": stats.caption_s,
        "decode_s": stats.wait_s,  # time captioning waited for frames (decoding overlaps captioning)
        "decode_worker_s": decode_stats.seconds,  # decoding time summed over videos
        "decode_wall_s": decode_stats.wall_seconds,
        "decode_fallbacks": decode_stats.fallbacks,  # videos (partly) decoded by ffmpeg
        "decode_truncated": decode_stats.truncated,  # videos that ended early (frames kept)
        "frames_captioned": stats.frames,
        "caption_batches": stats.batches,
        "caption_batch_size": stats.batch_size or config.captioner.batch_size,  # after any OOM backoff
        "caption_oom_backoffs": stats.oom_backoffs,
        "captioner_loaded": loaded,  # False when every video came from the cache (or failed before captioning)
        "videos_from_cache": sum(1 for vid in captions if vid not in paths),
        # FrameStage.timing() is a plain dict of the frame-stage keys of CaptionTiming: mypy cannot check them
        **frame_stage.timing(),  # type: ignore[typeddict-item]  # frames decoded / embedded / reused, embed_s
        "per_video": {
            vid: {
                "duration_s": vc.duration,
                "frames": len(vc.captions),
                "decode_s": decode_stats.per_video.get(vid, 0.0),  # 0 when captions came from the cache
                "caption_s": vc.caption_s,
                **video_counts(vc, frame_stage.stats.per_video.get(vid, {}).get("frames_decoded")),
            }
            for vid, vc in captions.items()
        },
    }
    return CaptionResult(captions, failures, timing, captioner.identity(), captioner.num_parameters(), retried)
