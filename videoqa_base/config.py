"""YAML files validated into typed (pydantic) objects, with errors that name the file and field.

Shared by the run configs (videoqa.config) and the training configs (captioner.training.train).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from videoqa_base.errors import UserError


class Strict(BaseModel):
    """A config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def validate(model: type[BaseModel], data: dict[str, Any], source: str):
    """Validate `data` into `model`; errors name the source file, the key and what was expected."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UserError(f"{source}: field {key!r}: {err['msg']}") from None


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {dotted}: {key!r} is not a section")
    node[keys[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """`a.b=value` -> ("a.b", value parsed as YAML)."""
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    for item in overrides:
        set_dotted(data, *parse_override(item))
    return data


def dump_config(config: BaseModel, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
