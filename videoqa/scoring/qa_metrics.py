"""Scoring multiple-choice answers: accuracy, invalid answers and failures, per category and per
benchmark breakdown, and the benchmark's headline metric.

Headline metrics (`DatasetConfig.headline`):
- "accuracy": pooled over every labelled question;
- "m_avg":    MLVU's M-Avg, the mean of the per-task accuracies (breakdown "task"), each task
              weighing the same however many questions it has.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from videoqa.types import Answer, Question


def answers_frame(questions: Sequence[Question], answers: Sequence[Answer]) -> pd.DataFrame:
    by_qid = {a.qid: a for a in answers}
    rows = []
    for q in questions:
        a = by_qid.get(q.qid)
        rows.append(
            {
                "qid": q.qid,
                "category": q.meta.get("category") or q.meta.get("type"),
                "answer": q.answer,
                "pred": None if a is None else a.pred,
                "status": "missing" if a is None else a.status,
            }
        )
    frame = pd.DataFrame(rows)
    frame["labelled"] = frame["answer"].notna()
    frame["correct"] = frame["labelled"] & (frame["pred"] == frame["answer"])
    return frame


MACRO_AVERAGES = {"m_avg": "task"}  # headline -> the breakdown whose per-label accuracies it averages


def breakdown_accuracy(questions: Sequence[Question], frame: pd.DataFrame) -> dict[str, dict[str, dict]]:
    """{breakdown: {label: {accuracy, questions}}} over the labelled questions; a question with several
    labels under one breakdown (LVBench's multi-label question_type) counts once under each label."""
    correct = dict(zip(frame["qid"], frame["correct"]))
    rows = [
        {"breakdown": name, "label": str(label), "correct": bool(correct[q.qid])}
        for q in questions
        if q.answer is not None
        for name, labels in q.breakdowns.items()
        for label in dict.fromkeys(labels)
    ]
    if not rows:
        return {}
    grouped = pd.DataFrame(rows).groupby(["breakdown", "label"], sort=False)["correct"].agg(["mean", "count"])
    result: dict[str, dict[str, dict]] = {}
    for (name, label), r in grouped.iterrows():
        result.setdefault(name, {})[label] = {"accuracy": float(r["mean"]), "questions": int(r["count"])}
    return {name: dict(sorted(labels.items())) for name, labels in result.items()}


def score(questions: Sequence[Question], answers: Sequence[Answer], headline: str = "accuracy") -> dict:
    """Accuracy counts every labelled question: an invalid answer or a failed video is wrong,
    never silently dropped. `accuracy_valid` is over the questions that got a valid answer.
    `headline` names the benchmark's own metric; its value is also under `metrics[headline]`."""
    if headline != "accuracy" and headline not in MACRO_AVERAGES:
        raise ValueError(f"unknown headline metric {headline!r} (known: accuracy, {', '.join(MACRO_AVERAGES)})")
    frame = answers_frame(questions, answers)
    labelled = frame[frame["labelled"]]
    valid = labelled[labelled["status"] == "ok"]
    metrics = {
        "questions": int(len(frame)),
        "labelled": int(len(labelled)),
        "status_counts": {k: int(v) for k, v in frame["status"].value_counts().sort_index().items()},
        "correct": int(labelled["correct"].sum()),
        "accuracy": float(labelled["correct"].mean()) if len(labelled) else None,
        "accuracy_valid": float(valid["correct"].mean()) if len(valid) else None,
    }
    if labelled["category"].notna().any():
        per = labelled.groupby("category")["correct"].agg(["mean", "count"])
        metrics["per_category"] = {
            str(k): {"accuracy": float(r["mean"]), "questions": int(r["count"])} for k, r in per.iterrows()
        }
    breakdowns = breakdown_accuracy(questions, frame)
    if breakdowns:
        metrics["breakdowns"] = breakdowns
    metrics["headline"] = headline
    if headline in MACRO_AVERAGES:
        groups = breakdowns.get(MACRO_AVERAGES[headline], {})
        metrics[headline] = float(sum(g["accuracy"] for g in groups.values()) / len(groups)) if groups else None
    return metrics
