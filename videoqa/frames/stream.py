"""stream_videos: many videos -> their FrameBatch chunks and VideoFailures, decoded in background.

This is what the pipeline consumes: worker threads decode whole videos ahead of the consumer
(captioning) through one bounded queue, so decoding and captioning overlap while memory stays
bounded whatever the video lengths, and a broken file becomes a VideoFailure record instead of
stopping the run.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from videoqa.frames.decode import decode_frames
from videoqa.frames.errors import VideoDecodeError, last_line
from videoqa.frames.sampling import check_sampling_args
from videoqa.frames.stats import DecodeStats
from videoqa.frames.threads import join_threads, put_unless_stopped
from videoqa.types import FrameBatch, VideoFailure

log = logging.getLogger(__name__)

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
    num_threads: int = 0,
    stats: DecodeStats | None = None,
    turns: threading.Lock | None = None,
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
    readers, num_threads: decord reader threads per video and decoder threads per reader (see
    decode_frames).
    turns: a lock every unit of decoding holds (see decode_frames): a consumer computing on the
    same CPU cores holds it while it computes, so decoding runs in its pauses, not beside it.
    """
    check_sampling_args(fps, num_frames, max_frames)
    for name, value in (("workers", workers), ("queue_size", queue_size), ("chunk_size", chunk_size), ("size", size)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    options = dict(
        fps=fps,
        num_frames=num_frames,
        max_frames=max_frames,
        size=size,
        chunk_size=chunk_size,
        readers=readers,
        num_threads=num_threads,
        stats=stats,
        turns=turns,
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
                        if not put_unless_stopped(out, batch, stop):
                            return
                except VideoDecodeError as exc:
                    put_unless_stopped(out, exc.to_failure(video_id), stop)
                except Exception as exc:  # a bug or an odd file: report it against this video, keep going
                    log.exception("%s: unexpected error while decoding", path)
                    message = f"{path}: unexpected {type(exc).__name__}: {last_line(str(exc))}"
                    failure = VideoFailure(video_id=video_id, path=str(path), reason="decode_error", message=message)
                    put_unless_stopped(out, failure, stop)
                finally:
                    batches.close()
        except BaseException as exc:  # e.g. the items iterable raised: the consumer re-raises it
            put_unless_stopped(out, _WorkerCrash(exc), stop)
        finally:
            put_unless_stopped(out, _DONE, stop)

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
        join_threads(threads)
