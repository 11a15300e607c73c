"""JSON-lines files: one reader whose errors name the file and the line, an atomic writer and a
durable appender.

Readers skip blank lines and return each object with its 1-based line number, so that callers
validating fields can name the offending line ("line 3.captions"). Files are UTF-8; non-ASCII text
is written as is (not as \\u escapes).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from videoqa_base.errors import AnnotationError, UserError


class InvalidJSONLine(AnnotationError):
    """A line of a JSON-lines file that does not parse; its key is "line N"."""

    def __init__(self, path: str | Path, line: int, reason: str):
        super().__init__(path, f"line {line}", "one JSON object per line")
        self.args = (f"{path}: line {line}: not valid JSON ({reason})",)


def parse_jsonl(text: str, path: str | Path, *, torn_last_line_ok: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of `text`, read from `path` (named in errors).

    Raises `InvalidJSONLine` for a line that is not JSON and `AnnotationError` for one that is not an
    object. `torn_last_line_ok`: a last line without its newline that does not parse is dropped
    instead - what a process killed in the middle of `append_jsonl` leaves behind.
    """
    rows = []
    lines = text.split("\n")  # not splitlines(): U+2028 and friends may stand inside a JSON string
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if torn_last_line_ok and number == len(lines) and not text.endswith("\n"):
                break
            raise InvalidJSONLine(path, number, exc.msg) from None
        if not isinstance(row, dict):
            raise AnnotationError(path, f"line {number}", f"a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def read_jsonl(path: str | Path, *, torn_last_line_ok: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """`parse_jsonl` of a file; a missing file is a `UserError` naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    return parse_jsonl(text, path, torn_last_line_ok=torn_last_line_ok)


def _lines(rows: Iterable[Any]) -> Iterable[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> int:
    """Replace `path` with one line per row, atomically: readers see the old file or the whole new
    one, never a torn one (a temporary file in the same folder, fsynced, then renamed). Returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for line in _lines(rows):
                f.write(line)
                count += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def append_jsonl(path: str | Path, rows: Iterable[Any]) -> None:
    """Append rows and fsync before returning, so that a killed job keeps every row it reported done
    (long jobs resume from such files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(_lines(rows)))
        f.flush()
        os.fsync(f.fileno())


__all__ = ["InvalidJSONLine", "parse_jsonl", "read_jsonl", "write_jsonl", "append_jsonl"]
