"""Subtitle files as benchmarks ship them, read into timed lines.

- SubRip (.srt), Video-MME's `subtitle/<videoID>.srt`: numbered blocks, `HH:MM:SS,mmm --> HH:MM:SS,mmm`,
  then one or more text lines (HTML-like tags such as <font> are dropped).
- LongVideoBench JSON, `subtitles/<subtitle_path>`: a list of either {"start": "HH:MM:SS.mmm",
  "end": ..., "line": text} or {"timestamp": [start_s, end_s or null], "text": text}; times are
  shifted by the record's `starting_timestamp_for_subtitles` so that they count from the video start.

A malformed file raises one line naming the file and the block or entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from videoqa_base.errors import AnnotationError, UserError

_SRT_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?")
_SRT_TIMING = re.compile(rf"^\s*({_SRT_TIME.pattern})\s*-->\s*({_SRT_TIME.pattern})")
_TAGS = re.compile(r"<[^>]+>|\{\\[^}]*\}")  # <i>, <font ...>, and ASS-style {\an8} overrides


@dataclass(frozen=True)
class Subtitle:
    start: float  # seconds from the start of the video
    end: float
    text: str


def read_subtitles(path: Path, offset: float = 0.0) -> list[Subtitle]:
    """The subtitle lines of `path` (.srt or .json), in time order; `offset` is subtracted from every time."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read the subtitle file ({exc.strerror})") from None
    lines = _read_json(path, text) if path.suffix.lower() == ".json" else _read_srt(path, text)
    shifted = [Subtitle(s.start - offset, s.end - offset, s.text) for s in lines if s.text]
    return sorted(shifted, key=lambda s: s.start)


def _clock(match: re.Match | None) -> float:
    assert match is not None  # callers match the timing line first
    hours, minutes, seconds, millis = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int((millis or "0").ljust(3, "0")) / 1000


def _read_srt(path: Path, text: str) -> list[Subtitle]:
    subtitles = []
    blocks = [b for b in re.split(r"\n\s*\n", text.replace("\r\n", "\n").replace("\r", "\n")) if b.strip()]
    for number, block in enumerate(blocks, start=1):
        lines = block.strip("\n").split("\n")
        timing_at = 1 if len(lines) > 1 and lines[0].strip().isdigit() else 0
        timing = _SRT_TIMING.match(lines[timing_at])
        if timing is None:
            raise AnnotationError(path, f"block {number}", "a timing line 'HH:MM:SS,mmm --> HH:MM:SS,mmm'")
        start, end = (_clock(_SRT_TIME.match(part.strip())) for part in lines[timing_at].split("-->")[:2])
        words = " ".join(_TAGS.sub("", line).strip() for line in lines[timing_at + 1 :])
        subtitles.append(Subtitle(start, end, " ".join(words.split())))
    return subtitles


def _seconds(value: object, path: Path, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _SRT_TIME.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise AnnotationError(path, where, "a time in seconds or 'HH:MM:SS.mmm'")
    return _clock(match)


def _read_json(path: Path, text: str) -> list[Subtitle]:
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(entries, list):
        raise AnnotationError(path, "(top level)", "a JSON list of subtitle entries")
    subtitles = []
    for i, entry in enumerate(entries):
        where = f"[{i}]"
        if isinstance(entry, dict) and "timestamp" in entry:
            span, words = entry["timestamp"], entry.get("text")
            if not isinstance(span, list) or len(span) != 2:
                raise AnnotationError(path, f"{where}.timestamp", "a pair [start, end] in seconds")
            start = _seconds(span[0], path, f"{where}.timestamp[0]")
            # an open end (null) means "until the next line"; the start is what places the line
            end = start if span[1] is None else _seconds(span[1], path, f"{where}.timestamp[1]")
        elif isinstance(entry, dict) and "start" in entry:
            words = entry.get("line")
            start = _seconds(entry["start"], path, f"{where}.start")
            end = _seconds(entry.get("end", entry["start"]), path, f"{where}.end")
        else:
            raise AnnotationError(path, where, 'an object with "start"/"end"/"line" or "timestamp"/"text"')
        if not isinstance(words, str):
            raise AnnotationError(path, f"{where}.{'text' if 'timestamp' in entry else 'line'}", "a string")
        subtitles.append(Subtitle(start, end, " ".join(words.split())))
    return subtitles
