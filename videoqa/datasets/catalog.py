"""Every registered dataset: its expected layout, where to get it, and a dry check of a data root.

The layout is the loader module's docstring, "where to get it" its HOW_TO_GET. The dry check loads
the annotations (so a malformed record shows up as the loader's one-line error), counts questions
and videos, and looks for missing video and subtitle files, without decoding anything.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

from videoqa.config import DatasetConfig, registered_names, resolve_component
from videoqa.datasets import load_questions
from videoqa.registry import DATASETS
from videoqa_base.config import validate
from videoqa_base.errors import UserError


@dataclass
class DatasetCheck:
    name: str
    config: DatasetConfig
    source: str  # the YAML it came from
    layout: str
    how_to_get: str
    error: str | None = None  # why the data root does not hold it (one line), None when it does
    questions: int = 0
    labelled: int = 0
    videos: int = 0
    missing_videos: list[str] = field(default_factory=list)
    subtitles: int = 0  # videos with a subtitle file on disk

    @property
    def ok(self) -> bool:
        return self.error is None


def describe(dataset_type: str) -> tuple[str, str]:
    """(layout, where to get it) of a registered dataset type, from its loader's module."""
    module = sys.modules[DATASETS.get(dataset_type).__module__]
    how = getattr(module, "HOW_TO_GET", "")
    if isinstance(how, dict):
        how = how.get(dataset_type, "")
    return inspect.cleandoc(module.__doc__ or ""), how


def dataset_config(name: str, data_root: Path | None = None, split: str | None = None) -> tuple[DatasetConfig, str]:
    """A registered dataset's YAML; with `data_root`, its subfolder named like the dataset when there is
    one (one folder holding every benchmark), else `data_root` itself."""
    data, source = resolve_component("datasets", name)
    if data_root is not None:
        data["data_root"] = str(data_root / name if (data_root / name).is_dir() else data_root)
    if split is not None:
        data["split"] = split
    return validate(DatasetConfig, data, source), source


def check_dataset(name: str, data_root: Path | None = None, split: str | None = None) -> DatasetCheck:
    config, source = dataset_config(name, data_root, split)
    layout, how = describe(config.type)
    check = DatasetCheck(name, config, source, layout, how)
    try:
        questions = load_questions(config)
    except UserError as exc:
        check.error = str(exc)
        return check
    videos = {q.video_id: q for q in questions}
    check.questions = len(questions)
    check.labelled = sum(q.answer is not None for q in questions)
    check.videos = len(videos)
    check.missing_videos = sorted(str(q.video_path) for q in videos.values() if not q.video_path.is_file())
    check.subtitles = sum(q.subtitles is not None and q.subtitles.is_file() for q in videos.values())
    return check


def check_all(data_root: Path | None = None, names: list[str] | None = None) -> list[DatasetCheck]:
    return [check_dataset(name, data_root) for name in (names or registered_names("datasets"))]


def report(check: DatasetCheck, layout: bool = True) -> str:
    """A dataset's entry in `videoqa datasets`."""
    c = check.config
    budget = f", frame budget {c.max_frames}" if c.max_frames else ""
    lines = [f"{check.name}  (type {c.type}, split {c.split}{budget}, headline {c.headline}; {check.source})"]
    if layout and check.layout:
        lines += ["  layout:"] + [f"    {line}" for line in check.layout.splitlines()]
    if check.how_to_get:
        lines.append(f"  get it: {check.how_to_get}")
    if check.error:
        why = check.error.replace(f" ({check.how_to_get})", "") if check.how_to_get else check.error
        lines.append(f"  at {c.data_root}: not there: {why}")
        return "\n".join(lines)
    missing = len(check.missing_videos)
    found = f"{check.questions} questions ({check.labelled} with answers), {check.videos} videos, {missing} missing" + (
        f" (e.g. {check.missing_videos[0]})" if missing else ""
    )
    if check.subtitles:
        found += f", {check.subtitles} with subtitles"
    lines.append(f"  at {c.data_root}: {found}")
    return "\n".join(lines)
