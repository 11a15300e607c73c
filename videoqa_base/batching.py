"""The one out-of-memory rule and the one batch-halving loop, for every batched model call
(SeR's `generate_captions`, the caption stage's calls to any captioner).

The rule (`is_out_of_memory`) - an error counts as "out of memory" when it is
  * an exception whose class, or a base class, is named `OutOfMemoryError`: torch.OutOfMemoryError
    (torch.cuda.OutOfMemoryError is the same class) and other libraries' errors of that name,
    matched by name so that this module needs no torch import;
  * Python's `MemoryError` (a failed host allocation, e.g. while stacking a batch of frames);
  * a `RuntimeError` whose message says "out of memory" (CUDA/HIP errors that reach Python as plain
    RuntimeErrors) or "can't allocate memory" (PyTorch's CPU allocator: "DefaultCPUAllocator:
    can't allocate memory").
Anything else is a real error and propagates unchanged.

The backoff (`map_in_batches`): on such an error the batch is retried at half its size, down to one
item; a single item that still does not fit raises the error. The smaller size is kept for the
rest of the call (memory pressure rarely goes away), and `on_backoff` lets callers keep it longer.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

_OOM_MESSAGES = ("out of memory", "can't allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` means the batch did not fit in memory (the rule in the module docstring)."""
    if isinstance(error, MemoryError) or any(cls.__name__ == "OutOfMemoryError" for cls in type(error).__mro__):
        return True
    return isinstance(error, RuntimeError) and any(message in str(error) for message in _OOM_MESSAGES)


def free_memory() -> None:
    """Drop unreachable tensors and hand cached GPU blocks back before a retry."""
    gc.collect()
    torch = sys.modules.get("torch")  # only a process that has loaded torch has its caches to empty
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def map_in_batches(
    run_batch: Callable[[Sequence[Item]], Sequence[Result]],
    items: Sequence[Item],
    batch_size: int,
    *,
    on_backoff: Callable[[int], None] | None = None,
) -> list[Result]:
    """`run_batch` over consecutive batches of `items` (one result per item), results concatenated.

    Out of memory (`is_out_of_memory`) on a batch of n > 1 items: `on_backoff(n // 2)` is called,
    memory is freed and the same items are retried in batches of n // 2; the error of a batch of one
    is raised. Other errors propagate at once.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    results: list[Result] = []
    start = 0
    while start < len(items):
        batch = items[start : start + batch_size]
        out_of_memory = False
        try:
            batch_results = run_batch(batch)
        except Exception as error:  # only out-of-memory errors are handled
            if len(batch) == 1 or not is_out_of_memory(error):
                raise
            out_of_memory = True
        if out_of_memory:  # retried outside `except`: the traceback's frames, which hold the
            # failed batch's tensors, are gone before memory is freed
            batch_size = len(batch) // 2
            log.warning("out of memory on a batch of %d: retrying at batch size %d", len(batch), batch_size)
            if on_backoff is not None:
                on_backoff(batch_size)
            free_memory()
            continue
        results.extend(batch_results)
        start += len(batch)
    return results


__all__ = ["is_out_of_memory", "free_memory", "map_in_batches"]
