"""Executors: where the run object's stages run. The run object (videoqa.run.VideoQA) decides what
needs doing; an executor does it - in this process (`local`, the default) or spread over a cluster.

An executor has two methods, both called with the same arguments whatever the executor:
    caption_videos(config, captioner, videos, known_failures, on_failure, progress) -> CaptionResult
    load_backend(llm_config) -> LLMBackend        (the answering stage's LLM)
"""

from __future__ import annotations

import importlib

from videoqa_base.errors import UserError

EXECUTORS = {"local": "videoqa.executors.local", "ray": "videoqa.executors.ray_executor"}


def get_executor(config):
    """The executor named by `config.executor` (a module exposing `make_executor(config)`)."""
    name = getattr(config, "executor", "local")
    if name not in EXECUTORS:
        raise UserError(f"executor {name!r}: expected one of {sorted(EXECUTORS)}")
    return importlib.import_module(EXECUTORS[name]).make_executor(config)
