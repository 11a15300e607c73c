"""The answering stage's LLM as `concurrency` replicas in Ray actors.

Each replica builds the configured local backend (`llm.backend`: vLLM's offline engine by
default) inside its actor, on `llm.tensor_parallel_size` GPUs of one node, and keeps it for the
whole run. `RayLLMBackend` is an ordinary `LLMBackend`: the answering code builds the very same
prompts, counts tokens with the very same tokenizer and chat template (replica 0's) and applies
the same context policy; each `choose`/`generate` batch is split into one contiguous share per
replica and put back in order. So predictions equal the local executor's.

Why actors and not `ray.data.llm.build_processor`: the processor starts its vLLM engines anew for
every dataset it runs, and the run appends answers durably one chunk (`answer.chunk_size`
questions) at a time, one `choose` call each: on this project's CPU check an engine start cost
~90 s per call. Long-lived actors start each engine once; Ray restarts a replica that dies and
retries the share it was answering.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

from videoqa.answering.llm import load_backend
from videoqa.answering.llm.base import Completion, LLMBackend, Messages
from videoqa.executors.ray_cluster import actor_options, cluster_has_gpus, enter_driver_directory


class LLMReplica:
    """One engine in one actor: the local backend, called by name."""

    def __init__(self, llm_config, cwd: str):
        enter_driver_directory(cwd)
        self.backend = load_backend(llm_config)

    def call(self, method: str, *args):
        return getattr(self.backend, method)(*args)

    def max_context(self) -> int:
        return self.backend.max_context

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.backend.close()


def replica_gpus(llm_config, ray_config) -> float:
    if ray_config.llm_num_gpus is not None:
        return ray_config.llm_num_gpus
    return float(llm_config.tensor_parallel_size) if cluster_has_gpus() else 0.0


def split(items: Sequence, parts: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) ranges of about equal size, none empty."""
    parts = max(1, min(parts, len(items)))
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


class RayLLMBackend(LLMBackend):
    def __init__(self, llm_config, ray_config, run_id: str | None = None):
        import ray

        self.config = llm_config
        replica = ray.remote(LLMReplica)
        options = dict(
            num_cpus=ray_config.llm_num_cpus,
            num_gpus=replica_gpus(llm_config, ray_config),
            max_restarts=ray_config.max_restarts,
        )
        prefix = f"{run_id or 'videoqa'}/llm-{uuid.uuid4().hex[:8]}"  # unique per attempt, as the captioners'
        self.replicas = [
            replica.options(**actor_options(f"{prefix}-{i}", **options)).remote(llm_config, os.getcwd())
            for i in range(ray_config.concurrency)
        ]
        contexts = ray.get([r.max_context.remote() for r in self.replicas])  # waits for every engine to start
        self._max_context = min(contexts)
        self._identity = ray.get(self.replicas[0].call.remote("identity"))

    def _spread(self, method: str, prompts: Sequence[Messages], extra: Sequence | None, *args) -> list[Completion]:
        import ray

        refs = [
            replica.call.remote(method, list(prompts[a:b]), *((list(extra[a:b]),) if extra is not None else ()), *args)
            for replica, (a, b) in zip(self.replicas, split(prompts, len(self.replicas)))
        ]
        return [completion for share in ray.get(refs) for completion in share]

    # ------------------------------------------------------------------ LLMBackend

    def choose(self, prompts: Sequence[Messages], choices: Sequence[Sequence[str]]) -> list[Completion]:
        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} choice lists")
        return self._spread("choose", prompts, choices)

    def generate(self, prompts: Sequence[Messages], max_tokens: int) -> list[Completion]:
        return self._spread("generate", prompts, None, max_tokens)

    def count_tokens(self, messages: Messages) -> int:
        import ray

        return ray.get(self.replicas[0].call.remote("count_tokens", messages))

    @property
    def max_context(self) -> int:
        return self._max_context

    def identity(self) -> dict[str, Any]:
        return self._identity | {"ray_replicas": len(self.replicas)}

    def close(self) -> None:
        import ray

        replicas, self.replicas = getattr(self, "replicas", []), []
        try:
            ray.get([r.close.remote() for r in replicas])  # engines shut down cleanly (child processes)
        except ray.exceptions.RayError:
            pass  # a replica already gone has nothing left to shut down
        finally:
            for r in replicas:
                ray.kill(r, no_restart=True)
