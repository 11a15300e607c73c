"""Name -> factory registries for captioners, datasets and LLM backends.

A new component is one module that calls `@REGISTRY.register("name")` plus one YAML in
configs/. Modules listed in `_PLUGIN_MODULES` are imported lazily on first lookup, so
importing videoqa stays cheap (no torch / vllm at import time).
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

from videoqa.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, plugin_modules: tuple[str, ...] = ()):
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._plugin_modules = plugin_modules
        self._loaded = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def _load_plugins(self) -> None:
        if not self._loaded:
            for module in self._plugin_modules:
                importlib.import_module(module)
            self._loaded = True

    def get(self, name: str) -> Callable[..., T]:
        self._load_plugins()
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise UserError(f"unknown {self.kind} type {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._factories)


CAPTIONERS: Registry = Registry(
    "captioner",
    (
        "videoqa.captioners.ser",
        "videoqa.captioners.llava",
        "videoqa.captioners.blip2",
        "videoqa.captioners.precomputed",
        "videoqa.captioners.vllm_llava",
    ),
)
DATASETS: Registry = Registry(
    "dataset",
    (
        "videoqa.datasets.egoschema",
        "videoqa.datasets.nextqa",
        "videoqa.datasets.jsonl",
    ),
)
LLM_BACKENDS: Registry = Registry(
    "LLM backend",
    (
        "videoqa.llm.vllm_offline",
        "videoqa.llm.openai_server",
        "videoqa.llm.hf_transformers",
    ),
)
