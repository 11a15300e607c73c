"""Readers shared by the long-video benchmark loaders (Video-MME, LongVideoBench, MLVU, LVBench).

Their annotations come as parquet, JSON or JSONL; a record that does not have the published shape
raises one line naming the file and the record (`AnnotationError`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from videoqa.datasets.common import VIDEO_EXTENSIONS
from videoqa.types import OPTION_LETTERS
from videoqa_base.errors import AnnotationError, UserError

PADDING_OPTION = "N/A"  # LongVideoBench's parquet pads option0..option4 with it: never offered
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])[.):]\s*")  # "A. text", "(A) text", "A) text"


def data_root(config_root: str, benchmark: str, how_to_get: str) -> Path:
    root = Path(config_root).expanduser()
    if not root.is_dir():
        raise UserError(f"{benchmark} data root not found: {root} ({how_to_get})")
    return root


def read_records(path: Path, what: str, how_to_get: str) -> list[dict[str, Any]]:
    """Rows of a parquet file or items of a JSON list, as dicts (numpy values made plain Python)."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path} ({how_to_get})")
    if path.suffix == ".parquet":
        try:
            table = pd.read_parquet(path)
        except (OSError, ValueError, ImportError) as exc:
            raise UserError(f"{path}: not a readable parquet file ({exc})".replace("\n", " ")) from None
        return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict("records")]
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(items, list):
        raise AnnotationError(path, "(top level)", "a JSON list of question records")
    return items


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def record(item: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise AnnotationError(path, where, "a record object")
    return item


def text_field(item: dict, key: str, path: Path, where: str) -> str:
    value = item.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "question":
        value = str(value)  # ids and durations that the file stores as numbers
    if not isinstance(value, str) or not value.strip():
        raise AnnotationError(path, f"{where}.{key}", "a non-empty string")
    return value


def number_field(item: dict, key: str, path: Path, where: str) -> float:
    value = item.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise AnnotationError(path, f"{where}.{key}", "a number")
    return float(value)


def option_texts(values: Any, path: Path, where: str, strip_letters: bool = False) -> tuple[str, ...]:
    """2..len(OPTION_LETTERS) non-empty strings; trailing "N/A" padding dropped; with `strip_letters`
    the published "A. " prefixes are removed (the prompt writes its own letters)."""
    if not isinstance(values, (list, tuple)):
        raise AnnotationError(path, where, "a list of option strings")
    options = list(values)
    while options and options[-1] == PADDING_OPTION:
        options.pop()
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise AnnotationError(path, where, "non-empty option strings")
    if not 2 <= len(options) <= len(OPTION_LETTERS):
        raise AnnotationError(path, where, f"2-{len(OPTION_LETTERS)} options, got {len(options)}")
    if strip_letters:
        stripped = []
        for letter, option in zip(OPTION_LETTERS, options):
            match = _LETTER_PREFIX.match(option)
            if match is None or match.group(1) != letter:
                raise AnnotationError(path, where, f"options prefixed with their letters ('{letter}. ...')")
            stripped.append(option[match.end() :].strip())
        options = stripped
    return tuple(options)


def letter_answer(value: Any, n_options: int, path: Path, where: str) -> int | None:
    """An answer letter ("B", "(B)", "B.") -> index; None when the split has no answers."""
    if value is None or value == "":
        return None
    match = _LETTER_PREFIX.match(f"{value}." if isinstance(value, str) and len(value.strip()) == 1 else str(value))
    letter = match.group(1) if match else None
    if letter is None or letter not in OPTION_LETTERS[:n_options]:
        raise AnnotationError(path, where, f"an option letter A-{OPTION_LETTERS[n_options - 1]}")
    return OPTION_LETTERS.index(letter)


def find_video_file(directory: Path, name: str) -> Path:
    """`directory/name` when `name` has an extension; else the first `<name><ext>` that exists, trying
    each extension in lower and upper case (Video-MME ships some .MP4); else the conventional .mp4
    path (reported missing at decode time)."""
    if Path(name).suffix.lower() in VIDEO_EXTENSIONS:
        return directory / name
    for ext in VIDEO_EXTENSIONS:
        for candidate in (directory / f"{name}{ext}", directory / f"{name}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return directory / f"{name}.mp4"


def unique_qid(qid: str, seen: set[str], path: Path, where: str) -> str:
    if qid in seen:
        raise AnnotationError(path, where, f"a unique question id ({qid!r} appears twice)")
    seen.add(qid)
    return qid
