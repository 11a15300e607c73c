"""Scoring multiple-choice answers: accuracy, invalid answers and failures, per category."""

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


def score(questions: Sequence[Question], answers: Sequence[Answer]) -> dict:
    """Accuracy counts every labelled question: an invalid answer or a failed video is wrong,
    never silently dropped. `accuracy_valid` is over the questions that got a valid answer."""
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
    return metrics
