"""Runs joined question by question: the intersection of their question sets, each question's outcome
per run, and the per-video captions and thumbnail requests the page needs.

Outcomes (the page's filters): correct, wrong (a valid answer that is wrong), invalid (no valid
option came back), failed (the video or the LLM failed), unlabelled (no answer key). Accuracy
counts invalid and failed as wrong, as metrics.json does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from videoqa.report.agreement import PairAgreement, agreement_matrix
from videoqa.report.rundata import RunData
from videoqa.report.thumbnails import Sampling, ThumbJob, ThumbResult

OUTCOMES = ("correct", "wrong", "invalid", "failed", "unlabelled")


def outcome(record: dict[str, Any]) -> str:
    status = record.get("status")
    if status == "ok":
        correct = record.get("correct")
        return "unlabelled" if correct is None else "correct" if correct else "wrong"
    return "invalid" if status == "invalid" else "failed"


@dataclass
class Joined:
    runs: list[RunData]
    qids: list[str]  # in every run, in the first run's order
    pairs: list[PairAgreement]

    @property
    def totals(self) -> list[int]:
        return [len(r.predictions) for r in self.runs]


def join_runs(runs: list[RunData]) -> Joined:
    common = set(runs[0].predictions)
    for run in runs[1:]:
        common &= set(run.predictions)
    qids = [q for q in runs[0].predictions if q in common]
    correct = [[run.predictions[q].get("correct") for q in qids] for run in runs]
    return Joined(runs, qids, agreement_matrix(correct) if len(runs) > 1 else [])


def run_sampling(run: RunData) -> Sampling:
    """The sampling whose frames the run looked at: its captioner's, or its video LLM's."""
    if run.answerer == "video-llm":
        section = run.section("video_llm")
        return Sampling(section.get("fps", 1.0), None, section.get("max_frames", 32))
    section = run.section("frames")
    return Sampling(section.get("fps", 1.0), section.get("num_frames"), section.get("max_frames"))


def caption_pairs(run: RunData, video_id: str) -> list[list[Any]]:
    """[[t, text], ...] of one video's captions in this run (text from data, escaped by the page)."""
    record = run.captions.get(video_id) or {}
    pairs = []
    for caption in record.get("captions") or []:
        if isinstance(caption, dict):
            t = caption.get("t")
            pairs.append([float(t) if isinstance(t, (int, float)) else 0.0, str(caption.get("text", ""))])
    return pairs


def video_paths(joined: Joined) -> dict[str, Any]:
    """video_id -> its file (from the first run that knows it)."""
    paths: dict[str, Any] = {}
    for run in joined.runs:
        for qid in joined.qids:
            video = str(run.predictions[qid].get("video_id"))
            info = run.info.get(qid)
            if paths.get(video) is None and info is not None:
                paths[video] = info.video_path
    return paths


def thumbnail_jobs(joined: Joined, limit: int) -> list[tuple[str, int, ThumbJob]]:
    """(video_id, run index, job) for every video and run that has frames to show."""
    jobs = []
    paths = video_paths(joined)
    for video in paths:
        for index, run in enumerate(joined.runs):
            times = [t for t, _ in caption_pairs(run, video)]
            if run.answerer == "video-llm":
                job = ThumbJob(video, paths[video], run_sampling(run), None, limit)
            elif times:
                job = ThumbJob(video, paths[video], run_sampling(run), tuple(times), limit)
            else:
                continue
            jobs.append((video, index, job))
    return jobs


def payload(
    joined: Joined, thumbs: dict[tuple[str, int], ThumbResult], title: str, thumbnails_on: bool
) -> dict[str, Any]:
    """The data the page's script renders cards from (all text as data, never as markup)."""
    runs = joined.runs
    questions: list[dict[str, Any]] = []
    categories: set[str] = set()
    present: set[str] = set()
    for qid in joined.qids:
        first = runs[0].predictions[qid]
        info = next((r.info[qid] for r in runs if qid in r.info), None)
        category = info.category if info is not None else None
        if category is not None:
            categories.add(category)
        results: list[dict[str, Any]] = []
        for run in runs:
            record = run.predictions[qid]
            present.add(outcome(record))
            results.append(
                {
                    "pred": record.get("pred"),
                    "status": str(record.get("status", "")),
                    "outcome": outcome(record),
                    "raw": str(record.get("raw") or ""),
                    "detail": str(record.get("detail") or ""),
                }
            )
        questions.append(
            {
                "qid": qid,
                "video": str(first.get("video_id")),
                "question": str(first.get("question", "")),
                "options": [str(o) for o in first.get("options", [])],
                "answer": first.get("answer"),
                "category": category,
                "results": results,
            }
        )
    paths = video_paths(joined)
    videos: dict[str, Any] = {}
    for video, path in paths.items():
        per_run = []
        for index, run in enumerate(runs):
            result = thumbs.get((video, index)) or ThumbResult()
            failure = run.failures.get(video)
            note = result.error if thumbnails_on else ""
            if failure:
                note = f"{failure.get('reason', '')}: {failure.get('message', '')}"
            per_run.append(
                {
                    "captions": caption_pairs(run, video),
                    "thumbs": [[t, src] for t, src in result.frames],
                    "sampled": result.sampled,
                    "note": note,
                }
            )
        duration = next((r.captions[video].get("duration") for r in runs if video in r.captions), None)
        videos[video] = {"duration": duration, "path": None if path is None else str(path), "runs": per_run}
    return {
        "title": title,
        "runs": [{"label": r.label, "answerer": r.answerer, "path": str(r.path)} for r in runs],
        "outcomes": [o for o in OUTCOMES if o != "unlabelled" or o in present],
        "outcome_counts": {o: sum(any(r["outcome"] == o for r in q["results"]) for q in questions) for o in OUTCOMES},
        "categories": sorted(categories),
        "questions": questions,
        "videos": videos,
    }
