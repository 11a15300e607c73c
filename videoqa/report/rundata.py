"""Run directories read back for the report: config, manifest, metrics, predictions, captions, failures.

A path is a run directory (it has predictions.jsonl) or a comparison directory (its manifest.json
lists the runs). Question metadata that a run does not record (category, the video file) comes
from the run's own dataset config; when the data has moved, the report goes on without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from videoqa.config import DatasetConfig
from videoqa.datasets import load_questions
from videoqa_base.errors import UserError


@dataclass(frozen=True)
class QuestionInfo:
    """What the dataset knows about a question beyond the prediction record."""

    category: str | None
    video_path: Path | None


@dataclass
class RunData:
    """One run directory, read."""

    path: Path
    config: dict[str, Any]
    config_text: str
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    predictions: dict[str, dict[str, Any]]  # qid -> prediction record, in the run's order
    captions: dict[str, dict[str, Any]]  # video_id -> {"duration", "captions": [{"t", "text"}]}
    failures: dict[str, dict[str, Any]]  # video_id -> failure record
    info: dict[str, QuestionInfo] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what could not be read, shown in the header
    label: str = ""

    @property
    def answerer(self) -> str:
        return str(self.config.get("answerer") or "captions")

    def section(self, name: str) -> dict[str, Any]:
        value = self.config.get(name)
        return value if isinstance(value, dict) else {}

    def default_label(self) -> str:
        if self.answerer == "video-llm":
            return f"{self.section('llm').get('name', '?')} (video LLM)"
        return str(self.section("captioner").get("name") or self.path.name)


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object file; absent is empty, malformed is one line naming the file."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_json_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) per line of a JSON-lines file; absent is empty, a torn last line is ignored.

    Lines are split on "\\n" only: captions and LLM output may hold U+2028 or U+0085, which
    str.splitlines() would take for line ends inside a JSON string."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            if number == len(lines):  # no newline after it: a write cut short by a kill
                break
            raise UserError(f"{path}: line {number}: not valid JSON ({exc})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


def expand_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories as given, a comparison directory replaced by the runs its manifest lists."""
    runs: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / "predictions.jsonl").is_file():
            runs.append(path)
            continue
        listed = read_json_file(path / "manifest.json").get("runs")
        if not path.is_dir() or not isinstance(listed, list):
            raise UserError(
                f"{path}: not a run directory (no predictions.jsonl) nor a comparison directory "
                "(no manifest.json with 'runs')"
            )
        for entry in listed:
            run = Path(str(entry))
            chosen = run if (run / "predictions.jsonl").is_file() else moved_run(path, run)
            if not (chosen / "predictions.jsonl").is_file():
                raise UserError(f"{path / 'manifest.json'}: field 'runs': run directory {run} has no predictions.jsonl")
            runs.append(chosen)
    if not runs:
        raise UserError("report: no run directory given")
    return runs


def moved_run(comparison: Path, run: Path) -> Path:
    """Where a listed run is when the outputs tree moved as a whole: both sit three levels under it
    (outputs/<dataset>/compare/<id> and outputs/<dataset>/<captioner>__<llm>/<run-id>)."""
    if len(comparison.parents) < 3 or len(run.parents) < 3:
        return run
    return comparison.parents[2] / run.relative_to(run.parents[2])


def load_run(path: Path) -> RunData:
    """Read one run directory; malformed files fail with one line naming the file and the record."""
    path = Path(path)
    config_path = path / "config.yaml"
    config_text = config_path.read_text() if config_path.is_file() else ""
    try:
        config = yaml.safe_load(config_text) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{config_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    predictions: dict[str, dict[str, Any]] = {}
    for line, record in read_json_lines(path / "predictions.jsonl"):
        if not isinstance(record.get("qid"), str) or not isinstance(record.get("options"), list):
            raise UserError(f"{path / 'predictions.jsonl'}: line {line}: field 'qid' or 'options' missing")
        predictions[record["qid"]] = record  # the last record of a question wins (as on resume)
    captions: dict[str, dict[str, Any]] = {}
    captions_path = path / "captions.jsonl"
    for line, record in read_json_lines(captions_path):
        if not isinstance(record.get("video_id"), str) or not isinstance(record.get("captions"), list):
            raise UserError(f"{captions_path}: line {line}: field 'video_id' or 'captions' missing")
        captions[record["video_id"]] = record
    failures = {str(r.get("video_id")): r for _, r in read_json_lines(path / "failures.jsonl")}
    run = RunData(
        path=path,
        config=config if isinstance(config, dict) else {},
        config_text=config_text,
        manifest=read_json_file(path / "manifest.json"),
        metrics=read_json_file(path / "metrics.json"),
        predictions=predictions,
        captions=captions,
        failures=failures,
    )
    run.info, note = dataset_info(run)
    if note:
        run.notes.append(note)
    run.label = run.default_label()
    return run


def dataset_info(run: RunData) -> tuple[dict[str, QuestionInfo], str]:
    """Category and video file per question, from the run's dataset (and failures.jsonl's paths)."""
    info: dict[str, QuestionInfo] = {}
    note = ""
    try:
        questions = load_questions(DatasetConfig(**run.section("dataset")))
    except Exception as exc:  # moved or missing data: the report is still useful without it
        questions = []
        note = f"dataset not readable, so no categories or video files: {str(exc).splitlines()[0][:300]}"
    for q in questions:
        category = q.meta.get("category") or q.meta.get("type")
        info[q.qid] = QuestionInfo(None if category is None else str(category), Path(q.video_path))
    for qid, record in run.predictions.items():
        if qid not in info:
            failure = run.failures.get(str(record.get("video_id")))
            info[qid] = QuestionInfo(None, Path(failure["path"]) if failure and failure.get("path") else None)
    return info, note


def load_runs(paths: list[Path]) -> list[RunData]:
    """The runs behind `paths` (comparison directories expanded), labelled uniquely."""
    runs = [load_run(p) for p in expand_run_dirs(paths)]
    labels = [r.label for r in runs]
    for run in runs:
        if labels.count(run.label) > 1:
            run.label = f"{run.label} [{run.path.name}]"
    return runs
