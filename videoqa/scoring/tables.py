"""Result tables (one row per run) written as CSV, Markdown and LaTeX with pandas.

A benchmark with its own headline metric (MLVU's M-Avg) gets that column before `accuracy`, and
its breakdowns (e.g. Video-MME's duration, domain, task_type) one column each, "<breakdown>: <label>",
accuracy in %, after the fixed columns. `table_columns(rows)` says which columns a set of rows fills.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

TABLE_COLUMNS = [
    "dataset",
    "captioner",
    "llm",
    "params",
    "questions",
    "accuracy",
    "invalid",
    "failed",
    "caption_s",
    "answer_s",
    "total_s",
    "s_per_10min_video",
]


HEADLINE_COLUMNS = {"m_avg": "m_avg"}  # headline metric -> its table column (placed before `accuracy`)
HEADLINE_LABELS = {"accuracy": "Accuracy (%)", "m_avg": "M-Avg (%)"}  # for tables with display names


def headline_value(row: dict) -> float | None:
    """A result row's value of its benchmark's own metric (accuracy, or e.g. MLVU's M-Avg), in %."""
    return row.get(HEADLINE_COLUMNS.get(row.get("headline", "accuracy"), "accuracy"))


def _percent(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def breakdown_columns(metrics: dict) -> dict[str, float | None]:
    """{"<breakdown>: <label>": accuracy in %} for each breakdown label of a run's metrics."""
    return {
        f"{name}: {label}": _percent(group["accuracy"])
        for name, labels in metrics.get("breakdowns", {}).items()
        for label, group in labels.items()
    }


def table_columns(rows: Sequence[dict]) -> list[str]:
    """TABLE_COLUMNS plus the headline and breakdown columns any of `rows` has, in first-seen order."""
    headline = [c for c in HEADLINE_COLUMNS.values() if any(c in r for r in rows)]
    at = TABLE_COLUMNS.index("accuracy")
    extra = list(dict.fromkeys(c for r in rows for c in r.get("breakdown_columns", ())))
    return TABLE_COLUMNS[:at] + headline + TABLE_COLUMNS[at:] + extra


def format_params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def result_row(dataset: str, captioner: str, llm: str, params: int | None, metrics: dict) -> dict:
    timing = metrics["timing"]
    counts = metrics["status_counts"]
    video_seconds = timing.get("video_seconds") or 0.0
    total = timing["caption_s"] + timing["answer_s"] + timing["decode_s"]
    headline = metrics.get("headline", "accuracy")
    breakdowns = breakdown_columns(metrics)
    row = {
        "dataset": dataset,
        "captioner": captioner,
        "llm": llm,
        "params": format_params(params),
        "parameters": params,  # raw count (plots); not a table column
        "questions": metrics["questions"],
        "accuracy": None if metrics["accuracy"] is None else round(100 * metrics["accuracy"], 1),
        "invalid": counts.get("invalid", 0),
        "failed": sum(v for k, v in counts.items() if k.endswith("failed")),
        "caption_s": round(timing["caption_s"] + timing["decode_s"], 2),
        "answer_s": round(timing["answer_s"], 2),
        "total_s": round(total, 2),
        "s_per_10min_video": round(total / video_seconds * 600, 2) if video_seconds else None,
        "headline": headline,  # the benchmark's own metric: "accuracy" or a HEADLINE_COLUMNS key; not a column
        "breakdown_columns": list(breakdowns),  # which of the keys below are breakdown columns; not a column
    }
    if headline in HEADLINE_COLUMNS:
        row[HEADLINE_COLUMNS[headline]] = _percent(metrics.get(headline))
    return row | breakdowns


def write_table(rows: Sequence[dict], stem: Path, latex: bool = False) -> pd.DataFrame:
    """Write <stem>.csv and <stem>.md (and <stem>.tex); return the table."""
    table = pd.DataFrame(list(rows), columns=table_columns(rows))
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(table.to_markdown(index=False) + "\n")
    if latex:
        stem.with_suffix(".tex").write_text(table.to_latex(index=False, na_rep="-", float_format="%.1f"))
    return table
