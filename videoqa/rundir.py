"""The run directory: one class owns every file a run writes, and how a killed run resumes.

outputs/<dataset>/<captioner>__<llm>/<run-id>/
    config.yaml        the resolved config (a resumed run must match it)
    predictions.jsonl  one record per question; appended durably (fsync) as answers come back,
                       rewritten ordered and de-duplicated when the run finishes
    failures.jsonl     videos that could not be decoded, with reasons and the file's fingerprint
                       at the time; appended durably as they happen
    captions.jsonl     per-video captions (with timestamps)
    selections.jsonl   `adaptive.relevance: llm`: per question, the clusters the LLM rated and the
                       ones expanded; appended durably, so a resumed run makes the same choice
    metrics.json       accuracy, status counts, retries, per-stage and per-video timings
    results.csv/.md    the result table
    manifest.json      model identities/revisions, package versions, git commit, devices, files
    run.log            third-party output (vLLM, torch, transformers) unless --verbose

Resume keeps what cannot change and retries what can pass now: answers that are `llm_failed`
(a server that was down may be up), and videos whose file appeared or changed since it failed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from videoqa.config import RunConfig
from videoqa.manifest import new_run_id, safe_name, to_jsonable, write_json
from videoqa.scoring.submissions import submission_files
from videoqa.types import OPTION_LETTERS, Answer, Caption, Question, VideoCaptions, VideoFailure
from videoqa_base.config import dump_config
from videoqa_base.errors import UserError
from videoqa_base.jsonl import append_jsonl, read_jsonl, write_jsonl

RETRYABLE_ANSWERS = frozenset({"llm_failed"})
PLACEMENT = frozenset({"executor", "ray"})  # config sections a resumed run may change


def with_defaults(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded config.yaml as the current code reads it: fields added since it was written take
    their defaults, so a run started before an upgrade still resumes (its settings are compared, not
    the version of the schema). A config the current code cannot read is compared as written."""
    try:
        return RunConfig.model_validate(recorded).model_dump(mode="json")
    except ValueError:
        return recorded


def caption_records(captions: Iterable[Caption]) -> list[dict[str, Any]]:
    """captions.jsonl's records: time and text, and the spans a caption stands for when it has them
    (adaptive selection); a uniform run's file stays as it always was."""
    return [to_jsonable(c) if c.spans else {"t": c.t, "text": c.text} for c in captions]


def run_path(config: RunConfig) -> Path:
    """Where a run with this config (and run id) lives."""
    return (
        Path(config.output_dir)
        / safe_name(config.dataset.name)
        / f"{safe_name(config.captioner.name if config.captioner else 'video-llm')}__{safe_name(config.llm.name)}"
        / safe_name(config.run_id or "")
    )


def prediction_record(q: Question, a: Answer) -> dict[str, Any]:
    return {
        "qid": q.qid,
        "video_id": q.video_id,
        "question": q.question,
        "options": list(q.options),
        "answer": q.answer,
        "pred": a.pred,
        "pred_letter": None if a.pred is None else OPTION_LETTERS[a.pred],
        "correct": None if q.answer is None else a.pred == q.answer,
        "status": a.status,
        "detail": a.detail,
        "raw": a.raw,
        "prompt_tokens": a.prompt_tokens,
        "choice_logprobs": a.choice_logprobs,
    }


def repair_torn_tail(path: Path) -> None:
    """Cut a half-written last line (a kill mid-append), so the next append starts a clean line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of an append log (a torn last line is ignored)."""
    return [row for _, row in read_jsonl(path, torn_last_line_ok=True)] if path.is_file() else []


class RunDirectory:
    """Prepare or resume a run directory, append results durably, write the final files."""

    def __init__(self, config: RunConfig):
        self.config = config.model_copy(update={"run_id": config.run_id or new_run_id()})
        self.path = run_path(self.config)

    def file(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ prepare / resume

    def prepare(self) -> None:
        """A new run gets a fresh directory; an existing run id is resumed if its config matches."""
        config_path = self.file("config.yaml")
        if config_path.is_file():
            before = with_defaults(yaml.safe_load(config_path.read_text()) or {})
            now = self.config.model_dump(mode="json")
            # where the stages run does not change the results: a run may resume on another executor
            changed = sorted(k for k in (set(before) | set(now)) - PLACEMENT if before.get(k) != now.get(k))
            if changed:
                raise UserError(
                    f"{config_path}: run {self.config.run_id!r} exists with a different config (section "
                    f"{changed[0]!r} differs); pass a new --run-id or restore the old settings"
                )
        self.path.mkdir(parents=True, exist_ok=True)
        dump_config(self.config, config_path)
        for log in ("predictions.jsonl", "failures.jsonl", "selections.jsonl"):
            repair_torn_tail(self.file(log))

    def recorded_answers(self) -> dict[str, Answer]:
        """Answers of earlier attempts (the last record of a question wins)."""
        answers = {}
        for r in read_records(self.file("predictions.jsonl")):
            try:
                answers[r["qid"]] = Answer(
                    r["qid"],
                    r["pred"],
                    r["raw"],
                    r["status"],
                    r.get("detail", ""),
                    r.get("prompt_tokens"),
                    r.get("choice_logprobs") or {},
                )
            except (KeyError, TypeError):
                continue
        return answers

    def recorded_failures(self) -> dict[str, VideoFailure]:
        """Video failures of earlier attempts, with the fingerprint their file had then."""
        failures = {}
        for r in read_records(self.file("failures.jsonl")):
            try:
                failures[r["video_id"]] = VideoFailure(
                    r["video_id"], r["path"], r["reason"], r["message"], r.get("fingerprint", "")
                )
            except (KeyError, TypeError):
                continue
        return failures

    def recorded_selections(self) -> dict[str, dict[str, Any]]:
        """Question-dependent frame selections of earlier attempts, by question id (the last wins)."""
        return {r["qid"]: r for r in read_records(self.file("selections.jsonl")) if isinstance(r.get("qid"), str)}

    def previous_manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.file("manifest.json").read_text())
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------------ durable appends

    def append_answers(self, questions: Sequence[Question], answers: Sequence[Answer]) -> None:
        append_jsonl(
            self.file("predictions.jsonl"), [to_jsonable(prediction_record(q, a)) for q, a in zip(questions, answers)]
        )

    def append_selections(self, records: Sequence[dict[str, Any]]) -> None:
        append_jsonl(self.file("selections.jsonl"), [to_jsonable(r) for r in records])

    def append_failures(self, failures: Sequence[VideoFailure]) -> None:
        append_jsonl(self.file("failures.jsonl"), [asdict(f) for f in failures])

    # ------------------------------------------------------------------ final files

    def write_results(
        self,
        questions: Sequence[Question],
        answers: Sequence[Answer],
        captions: Iterable[VideoCaptions],
        failures: Iterable[VideoFailure],
        metrics: dict[str, Any],
    ) -> None:
        """The append logs become the final, ordered, de-duplicated files."""
        write_jsonl(
            self.file("predictions.jsonl"), [to_jsonable(prediction_record(q, a)) for q, a in zip(questions, answers)]
        )
        write_jsonl(
            self.file("captions.jsonl"),
            (
                {"video_id": vc.video_id, "duration": vc.duration, "captions": caption_records(vc.captions)}
                for vc in captions
            ),
        )
        write_jsonl(self.file("failures.jsonl"), (asdict(f) for f in failures))
        write_json(self.file("metrics.json"), metrics)
        dataset = self.config.dataset
        for name, content in submission_files(dataset.type, dataset.split, answers).items():
            self.file(name).write_text(content)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        files = {p.name for p in self.path.iterdir() if not p.name.startswith(".")} | {"manifest.json"}
        write_json(self.file("manifest.json"), {"run_dir": str(self.path), **manifest, "files": sorted(files)})
