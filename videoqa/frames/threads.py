"""The two thread helpers that the decord readers and the video workers share.

Both run producers in background threads that hand results over bounded queues; these helpers
make sure a producer never blocks forever on a consumer that has gone away, and that closing a
generator waits for its threads (with a limit, for a decoder stuck inside a library call).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

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


def join_threads(threads: list[threading.Thread], patience: float = 120.0) -> None:
    """Join stopped threads; they finish at most one unit of decoding first."""
    deadline = time.monotonic() + patience
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():  # a decoder stuck inside a library call: leave the daemon thread, say so
            log.warning("thread %s did not stop within %.0f s", t.name, patience)
