"""The decord decoder: only the sampled frames, resized at decode time, on parallel reader threads.

decord is the fast path: frames come out resized (shorter side = `size`) and only the sampled
indices are decoded, in units spread round-robin over `readers` threads that each own a
VideoReader (decord releases the GIL; two readers on two cores keep up with ffmpeg's
frame-threaded decode). decord 0.6.0 applies container rotation itself (transpose filters,
width/height swapped for 90/270); we check the shape it returns. A reader error is raised as
UnitFailed naming the unit, so the caller can let ffmpeg decode from there on.
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import decord
import numpy as np

from videoqa.frames.threads import holding, join_threads, put_unless_stopped

decord.logging.set_level(decord.logging.QUIET)  # decord's bundled ffmpeg is chatty on odd files


class UnitFailed(Exception):
    """decord could not deliver unit `unit` (its frames and all later ones are still to decode)."""

    def __init__(self, unit: int, cause: BaseException):
        super().__init__(f"unit {unit}: {cause}")
        self.unit, self.cause = unit, cause


def open_decord(path: Path, width: int, height: int, num_threads: int) -> decord.VideoReader:
    return decord.VideoReader(str(path), ctx=decord.cpu(0), width=width, height=height, num_threads=num_threads)


def split_units(indices: list[int], chunk_size: int, readers: int) -> list[list[int]]:
    """Split indices into a multiple of `readers` units of at most chunk_size, balanced in size."""
    n_units = readers * math.ceil(len(indices) / (readers * chunk_size))
    n_units = max(1, min(n_units, len(indices)))
    return [part.tolist() for part in np.array_split(np.asarray(indices), n_units) if len(part)]


def auto_readers(total_frames: int) -> int:
    """Reader threads for a video of `total_frames` frames when the caller does not say."""
    # a second reader pays for its own open + index scan; worth it once there is real decoding
    return 1 if total_frames < 600 else min(2, os.cpu_count() or 1)


def decord_units(
    path: Path,
    units: list[list[int]],
    first_reader: decord.VideoReader,
    width: int,
    height: int,
    readers: int,
    num_threads: int,
    turns: threading.Lock | None = None,
) -> Iterator[np.ndarray]:
    """Decode `units` (lists of sorted indices) in order, unit j on reader thread j % readers.

    Each reader owns a VideoReader and holds at most one finished unit while decoding the next
    (bounded memory); a reader error surfaces as UnitFailed(j) at unit j. Closing the generator
    stops and joins the readers. A reader holds `turns` (when given) while it decodes a unit.
    """
    readers = max(1, min(readers, len(units)))
    stop = threading.Event()
    queues: list[queue.Queue] = [queue.Queue(maxsize=1) for _ in range(readers)]

    def read(r: int) -> None:
        j = r
        try:
            vr = first_reader if r == 0 else open_decord(path, width, height, num_threads)
            for j in range(r, len(units), readers):
                if stop.is_set():
                    return
                with holding(turns):
                    frames = vr.get_batch(units[j]).asnumpy()
                if frames.shape != (len(units[j]), height, width, 3):  # e.g. rotation read differently
                    raise RuntimeError(f"decord gave frames of shape {frames.shape[1:]}, expected {(height, width, 3)}")
                if not put_unless_stopped(queues[r], frames, stop):
                    return
        except BaseException as exc:  # handed to the consumer, which decides (ffmpeg takes over)
            put_unless_stopped(queues[r], UnitFailed(j, exc), stop)

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
                        raise UnitFailed(j, RuntimeError("decord reader stopped")) from None
            if isinstance(item, UnitFailed):
                raise item
            yield item
    finally:
        stop.set()
        join_threads(threads)  # a reader finishes its current get_batch (one unit) and exits
