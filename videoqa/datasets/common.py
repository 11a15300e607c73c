"""Helpers shared by the dataset loaders: JSON reading and field checks that name file and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videoqa_base.errors import AnnotationError, UserError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


def read_json(path: Path, what: str, how_to_get: str) -> Any:
    if not path.is_file():
        raise UserError(f"{what} not found: {path} ({how_to_get})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def require_str(item: dict, key: str, path: Path, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(path, f"{where}.{key}" if where else key, "a non-empty string")
    return value


def find_video(roots: list[Path], stem: str) -> Path:
    """First existing `<root>/<stem><ext>`; else the conventional .mp4 path (reported missing later)."""
    for root in roots:
        for ext in VIDEO_EXTENSIONS:
            candidate = root / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    return roots[0] / f"{stem}.mp4"
