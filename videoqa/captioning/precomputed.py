"""Imported caption files as a captioner (`precomputed`): LLoVi's released captions and the like.

`model:` is the caption file. Accepted layouts (video ids are strings; numbers are converted):

    JSON   {"<video_id>": ["caption", "caption", ...], ...}          LLoVi's per-video lists
    JSON   {"<video_id>": "text", ...}                               one text per video (LLoVi's
           summaries): read as a one-caption list
    JSON   {"<video_id>": [{"t": 0.0, "caption": "..."}, ...], ...}  timed entries: the time key
           is "t" or "start" (seconds), the text key "caption" or "text"; an optional "end"
    JSONL  {"video_id": "...", "captions": [<either list above>], "duration": 180.0}  per line
           (a run's captions.jsonl is in this layout, so earlier captions can be re-used)

Plain lists are one caption per `seconds_per_caption` seconds from the start (LLoVi's LaViLa
captions cover consecutive 1 s clips, hence the default 1.0). A video's duration is the JSONL
"duration" if given, else the end of its last caption (its "end", or start + seconds_per_caption).
The whole file is read and checked when the captioner is built: a malformed file fails the run
before any model loads, naming the file and the offending key.

Options (`captioner.options` in the YAML):
    seconds_per_caption: spacing of plain-list captions (default 1.0)
    parameters: parameter count of the captioner that wrote the file, for the tables (default 0)
    source: free-text name of that captioner (e.g. "LaViLa"), recorded in identity()

This captioner never sees frames. Videos the file has no captions for are reported by
`missing_precomputed()` as failures with reason "no_precomputed_captions" (for a pipeline that
asks), and `caption()` refuses with a message naming them (for one that does not).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from videoqa.captioning.base import Captioner, ImportedCaptions
from videoqa.config import CaptionerConfig
from videoqa.registry import CAPTIONERS
from videoqa.types import Caption, VideoCaptions, VideoFailure
from videoqa_base.errors import AnnotationError, MissingModelError, UserError
from videoqa_base.jsonl import parse_jsonl

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWN_OPTIONS = {"seconds_per_caption", "parameters", "source"}
NO_CAPTIONS = "no_precomputed_captions"  # VideoFailure.reason for videos missing from the file
TIME_KEYS = ("t", "start")
TEXT_KEYS = ("caption", "text")
FILE_HINT = (
    "set captioner.model to a JSON / JSONL caption file "
    "(e.g. LLoVi's released captions, https://github.com/CeeZh/LLoVi#data)"
)


def resolve_caption_file(ref: str) -> Path:
    """The file as given, else relative to the repository root (configs use repo paths)."""
    path = Path(ref).expanduser()
    if path.is_file() or path.is_absolute():
        return path
    from_repo = REPO_ROOT / path
    return from_repo if from_repo.is_file() else path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------- parsing

Record = tuple[str, str, str, Any, float | None]  # (id key, captions key, video id, captions, duration)


def read_caption_file(path: Path, seconds_per_caption: float = 1.0) -> dict[str, VideoCaptions]:
    """Every video's captions in `path` (see the module docstring for the layouts)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(
            path, "(top level)", f"UTF-8 JSON text (undecodable byte at offset {exc.start})"
        ) from None
    records = _jsonl_records(path, text) if path.suffix == ".jsonl" else _json_records(path, text)
    videos: dict[str, VideoCaptions] = {}
    for id_key, key, video_id, entries, duration in records:
        if video_id in videos:
            raise AnnotationError(path, id_key, f"a video id that appears once ({video_id!r} is repeated)")
        captions, end_of_last = _parse_entries(path, key, entries, seconds_per_caption)
        videos[video_id] = VideoCaptions(
            video_id, captions, end_of_last if duration is None else duration, caption_s=0.0
        )
    return videos


def _json_records(path: Path, text: str) -> list[Record]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _looks_like_jsonl(text):  # JSONL under a .json name
            return _jsonl_records(path, text)
        raise AnnotationError(path, "(top level)", f"valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise AnnotationError(path, "(top level)", f"a JSON object {{video_id: [captions]}}, got {type(data).__name__}")
    return [(str(video_id), str(video_id), str(video_id), entries, None) for video_id, entries in data.items()]


def _looks_like_jsonl(text: str) -> bool:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "video_id" in row


def _jsonl_records(path: Path, text: str) -> list[Record]:
    records = []
    for number, row in parse_jsonl(text, path):  # errors name the file and "line N"
        where = f"line {number}"
        for field in ("video_id", "captions"):
            if field not in row:
                raise AnnotationError(path, f"{where}.{field}", "a value (each line needs video_id and captions)")
        video_id = row["video_id"]
        if isinstance(video_id, bool) or not isinstance(video_id, (str, int)) or str(video_id) == "":
            raise AnnotationError(path, f"{where}.video_id", f"a non-empty string, got {video_id!r}")
        duration = row.get("duration")
        if duration is not None and not _is_time(duration):
            raise AnnotationError(path, f"{where}.duration", f"seconds >= 0, got {duration!r}")
        records.append(
            (
                f"{where}.video_id",
                f"{where}.captions",
                str(video_id),
                row["captions"],
                None if duration is None else float(duration),
            )
        )
    return records


def _is_time(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _pick(entry: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in entry:
            return name, entry[name]
    return None, None


def _parse_entries(path: Path, key: str, entries: Any, seconds_per_caption: float) -> tuple[list[Caption], float]:
    """A video's captions in time order, and the end of the last one (seconds)."""
    if isinstance(entries, str):  # LLoVi's summary files: one text for the whole video
        entries = [entries]
    if not isinstance(entries, list):
        raise AnnotationError(path, key, f"a list of captions (or one string), got {type(entries).__name__}")
    if all(isinstance(entry, str) for entry in entries):
        return [Caption(t=i * seconds_per_caption, text=entry) for i, entry in enumerate(entries)], len(
            entries
        ) * seconds_per_caption
    captions, end_of_last = [], 0.0
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            raise AnnotationError(
                path,
                where,
                f"either all strings or all objects with 't'/'start' and 'caption'/'text', got {type(entry).__name__}",
            )
        time_key, t = _pick(entry, TIME_KEYS)
        text_key, text = _pick(entry, TEXT_KEYS)
        if time_key is None or not _is_time(t):
            raise AnnotationError(path, f"{where}.{time_key or 't'}", f"seconds >= 0, got {t!r}")
        if text_key is None or not isinstance(text, str):
            raise AnnotationError(path, f"{where}.{text_key or 'caption'}", f"a caption string, got {text!r}")
        end = entry.get("end")
        if end is not None and (not _is_time(end) or end < t):
            raise AnnotationError(path, f"{where}.end", f"seconds >= its start ({t}), got {end!r}")
        captions.append(Caption(t=float(t), text=text))
        end_of_last = max(end_of_last, float(end) if end is not None else t + seconds_per_caption)
    return sorted(captions, key=lambda c: c.t), end_of_last


# ---------------------------------------------------------------------------- the captioner


@CAPTIONERS.register("precomputed")
class PrecomputedCaptioner(Captioner, ImportedCaptions):
    """Captions read from a file; no frames are decoded for the videos it covers."""

    image_size = None

    known_options = frozenset(KNOWN_OPTIONS)

    def __init__(self, config: CaptionerConfig):
        super().__init__(config)
        if not config.model:
            raise UserError(f"captioner {config.name!r}: field 'model' is empty; {FILE_HINT}")
        self.config = config
        self.seconds_per_caption = self._number("seconds_per_caption", 1.0, positive=True)
        self.parameters = int(self._number("parameters", 0, integer=True))
        self.source = config.options.get("source")
        if self.source is not None and not isinstance(self.source, str):
            raise UserError(f"captioner {config.name!r}: options.source must be a string")
        self.path = resolve_caption_file(config.model)
        if not self.path.is_file():
            raise MissingModelError("caption file", config.model, FILE_HINT)
        self.path = self.path.resolve()
        self.videos = read_caption_file(self.path, self.seconds_per_caption)
        self.sha256 = file_sha256(self.path)
        self.missing: set[str] = set()  # videos asked for that the file does not cover

    def _number(self, name: str, default: float, *, positive: bool = False, integer: bool = False) -> float:
        value = self.config.options.get(name, default)
        valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        valid = valid and (value > 0 if positive else value >= 0) and (not integer or float(value).is_integer())
        if not valid:
            kind = "an integer >= 0" if integer else ("a number > 0" if positive else "a number >= 0")
            raise UserError(f"captioner {self.config.name!r}: options.{name} must be {kind}, got {value!r}")
        return value

    def precomputed(self, video_id: str) -> VideoCaptions | None:
        found = self.videos.get(str(video_id))
        if found is None:
            self.missing.add(str(video_id))
            return None
        # a copy: the pipeline may adjust the record it is given
        return VideoCaptions(found.video_id, list(found.captions), found.duration, caption_s=0.0)

    def missing_precomputed(self, video_id: str, path: Path | str) -> VideoFailure | None:
        """The failure to record for a video the file has no captions for (None if it has them)."""
        if str(video_id) in self.videos:
            return None
        return VideoFailure(
            video_id=str(video_id),
            path=str(path),
            reason=NO_CAPTIONS,
            message=f"{self.path}: no captions for video {video_id!r}",
        )

    def caption(self, images: Sequence[np.ndarray], prompt: str) -> list[str]:
        if len(images) == 0:
            return []
        missing = ", ".join(repr(v) for v in sorted(self.missing)[:5]) or "unknown"
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        raise UserError(
            f"captioner {self.config.name!r} only reads captions from {self.path} and cannot caption frames; "
            f"the file has no captions for video(s) {missing}{more}"
        )

    def identity(self) -> dict[str, Any]:
        return {
            "type": "precomputed",
            "file": str(self.path),
            "sha256": self.sha256,
            "seconds_per_caption": self.seconds_per_caption,
            "source": self.source,
            "parameters": self.parameters,
        }

    def num_parameters(self) -> int:
        return self.parameters
