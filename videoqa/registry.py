"""Name -> factory registries for captioners, datasets and LLM backends, discovered, not listed.

A new component is one module that calls `@REGISTRY.register("name")` plus one YAML; nothing
else is edited. On first lookup a registry imports, once:
  1. every module of its package (videoqa.captioning, videoqa.datasets, videoqa.answering.llm);
  2. installed plugins: modules named by entry points in the group `videoqa.<kind>`
     (e.g. `[project.entry-points."videoqa.captioners"] mine = "my_pkg.my_captioner"`);
  3. every `*.py` in the directories listed in $VIDEOQA_PLUGINS (os.pathsep-separated), whose
     YAMLs live beside them in `configs/<kind>/` (see videoqa.config.config_dirs).
Modules import torch / vllm only when a component is built, so discovery stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

from videoqa_base.errors import UserError

T = TypeVar("T")
PLUGINS_ENV = "VIDEOQA_PLUGINS"


def plugin_dirs() -> list[Path]:
    """Directories of local plugins ($VIDEOQA_PLUGINS), in the order given."""
    return [Path(d).expanduser() for d in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if d]


def import_file(path: Path) -> None:
    """Import a plugin file once, under a name derived from its path (two dirs may share file names)."""
    name = f"videoqa_plugin_{abs(hash(str(path.resolve())))}_{path.stem}"
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"{path}: a .py file has a spec and a loader"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise UserError(f"{path}: plugin module failed to import ({type(exc).__name__}: {exc})") from exc


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str, config_kind: str):
        self.kind = kind  # how messages name it
        self.package = package  # built-in modules: every module of this package
        self.config_kind = config_kind  # configs/<config_kind>/*.yaml; entry point group videoqa.<config_kind>
        self._factories: dict[str, Callable[..., T]] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories and self._factories[name] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorator

    def discover(self) -> None:
        """Built-in modules and entry points once; plugin directories on every lookup (cheap: a glob),
        so a directory added to $VIDEOQA_PLUGINS later in the process is still found."""
        if not self._discovered:
            self._discovered = True
            package = importlib.import_module(self.package)
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(f"{self.package}.{module.name}")
            for entry in entry_points(group=f"videoqa.{self.config_kind}"):
                importlib.import_module(entry.value.split(":")[0])
        for directory in plugin_dirs():
            for path in sorted(directory.glob("*.py")):
                import_file(path)

    def get(self, name: str) -> Callable[..., T]:
        self.discover()
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise UserError(f"unknown {self.kind} type {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        self.discover()
        return sorted(self._factories)


CAPTIONERS: Registry = Registry("captioner", "videoqa.captioning", "captioners")
DATASETS: Registry = Registry("dataset", "videoqa.datasets", "datasets")
LLM_BACKENDS: Registry = Registry("LLM backend", "videoqa.answering.llm", "llms")

# Executors (where a run's stages run) by name: a module exposing `make_executor(config)`. Looked up
# by name, so the run object depends on no executor (executors build on the stages, not the reverse).
EXECUTORS = {"local": "videoqa.executors.local", "ray": "videoqa.executors.ray_executor"}


def get_executor(config):
    """The executor named by `config.executor`."""
    name = getattr(config, "executor", "local")
    if name not in EXECUTORS:
        raise UserError(f"executor {name!r}: expected one of {sorted(EXECUTORS)}")
    return importlib.import_module(EXECUTORS[name]).make_executor(config)
