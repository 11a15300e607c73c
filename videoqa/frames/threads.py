"""The thread helpers that the decord readers and the video workers share.

Both run producers in background threads that hand results over bounded queues; these helpers
make sure a producer never blocks forever on a consumer that has gone away, and that closing a
generator waits for its threads (with a limit, for a decoder stuck inside a library call).

How decoders share a CPU with a captioner computing on it (the caption stage decides,
videoqa.captioning.videos.share_cores_with_decoders). Decoder threads running beside a captioner's
intra-op threads slow every parallel op of the captioner far beyond the decoders' own share (a
thread waiting for a core stalls the whole op). So, on 2+ cores the captioner keeps one core fewer
and the decoders one thread, and on one core the two take turns: `turns` is a lock every unit of
decoding holds and the captioner holds while it captions.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


def put_unless_stopped(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when `stop` is set (so producers never hang on a dead consumer)."""
    while True:
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            if stop.is_set():
                return False


def holding(turns: threading.Lock | None) -> AbstractContextManager:
    """`with holding(turns):` the lock when there is one, else nothing."""
    return turns if turns is not None else nullcontext()


def in_turns(items: Iterator[T], turns: threading.Lock | None) -> Iterator[T]:
    """Each item of `items` produced while holding `turns` (none held while the consumer works)."""
    try:
        while True:
            with holding(turns):
                item = next(items, None)
            if item is None:
                return
            yield item
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()  # a generator's own clean-up (an ffmpeg process) runs now, not at garbage collection


def join_threads(threads: list[threading.Thread], patience: float = 120.0) -> None:
    """Join stopped threads; they finish at most one unit of decoding first."""
    deadline = time.monotonic() + patience
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():  # a decoder stuck inside a library call: leave the daemon thread, say so
            log.warning("thread %s did not stop within %.0f s", t.name, patience)
