"""The caption stage: decoded frame chunks in, per-video captions out.

Frames from different videos are pooled into full batches, so the captioner always runs at
`batch_size` (short videos do not leave the batch half empty), and a video's captions are
emitted as soon as its last frame is captioned.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from videoqa.captioning.base import Captioner
from videoqa.types import Caption, FrameBatch, VideoCaptions, VideoFailure
from videoqa_base.batching import map_in_batches


@dataclass
class CaptionStats:
    frames: int = 0
    batches: int = 0
    caption_s: float = 0.0  # time inside the captioner
    wait_s: float = 0.0  # time the captioner waited for decoded frames
    per_video_caption_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    batch_size: int = 0  # the batch size in use; lowered after an out-of-memory error
    oom_backoffs: int = 0


def caption_with_backoff(captioner: Captioner, images: list, prompt: str, stats: CaptionStats) -> list[str]:
    """Caption `images`; on out-of-memory, halve the batch and retry, and keep the smaller size
    for later batches (`videoqa_base.batching` has the rule)."""

    def lower_batch_size(size: int) -> None:
        stats.batch_size, stats.oom_backoffs = min(stats.batch_size or size, size), stats.oom_backoffs + 1

    return map_in_batches(
        lambda batch: captioner.caption(batch, prompt), images, max(1, len(images)), on_backoff=lower_batch_size
    )


def caption_stream(
    stream: Iterable[FrameBatch | VideoFailure],
    captioner: Captioner,
    prompt: str,
    batch_size: int,
    stats: CaptionStats | None = None,
    turns: threading.Lock | None = None,
) -> Iterator[VideoCaptions | VideoFailure]:
    """Caption the stream's frames in batches of `batch_size` across videos. `turns`: held while a
    batch is captioned, and by the decoders while they decode (videoqa.frames.threads), so that a
    CPU captioner and the decoders take turns on the cores."""
    stats = stats if stats is not None else CaptionStats()
    stats.batch_size = batch_size
    queue: deque[tuple[str, float, np.ndarray]] = deque()  # frames waiting for a batch
    captions: dict[str, list[Caption]] = defaultdict(list)
    waiting: dict[str, int] = defaultdict(int)  # frames of a video not yet captioned
    durations: dict[str, float] = {}
    complete: set[str] = set()  # videos whose final chunk has arrived
    failed: set[str] = set()

    def run_batch(n: int) -> Iterator[VideoCaptions]:
        batch = [queue.popleft() for _ in range(n)]
        with turns if turns is not None else nullcontext():
            captioner.load()  # weights load on the first batch: a run whose videos all fail or are cached loads none
            started = time.perf_counter()
            texts = caption_with_backoff(captioner, [image for _, _, image in batch], prompt, stats)
            elapsed = time.perf_counter() - started
        stats.caption_s += elapsed
        stats.batches += 1
        stats.frames += n
        for (video_id, t, _), text in zip(batch, texts):
            stats.per_video_caption_s[video_id] += elapsed / n
            if video_id in failed:
                continue
            captions[video_id].append(Caption(t=t, text=text))
            waiting[video_id] -= 1
        for video_id in {video_id for video_id, _, _ in batch}:
            if video_id in complete and waiting[video_id] == 0 and video_id not in failed:
                complete.discard(video_id)
                yield VideoCaptions(video_id, sorted(captions.pop(video_id), key=lambda c: c.t), durations[video_id])

    iterator = iter(stream)
    while True:
        started = time.perf_counter()
        item = next(iterator, None)
        stats.wait_s += time.perf_counter() - started
        if item is None:
            break
        if isinstance(item, VideoFailure):
            # a video may fail after some of its chunks were queued: drop what it had
            failed.add(item.video_id)
            captions.pop(item.video_id, None)
            yield item
            continue
        durations[item.video_id] = item.duration
        for t, image in zip(item.timestamps, item.images):
            queue.append((item.video_id, t, image))
            waiting[item.video_id] += 1
        if item.final:
            complete.add(item.video_id)
            if waiting[item.video_id] == 0:  # a final chunk with no frames
                complete.discard(item.video_id)
                yield VideoCaptions(item.video_id, captions.pop(item.video_id, []), item.duration)
        while len(queue) >= stats.batch_size:
            yield from run_batch(stats.batch_size)
    while queue:
        yield from run_batch(min(stats.batch_size, len(queue)))
