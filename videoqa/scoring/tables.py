"""Result tables (one row per run) written as CSV, Markdown and LaTeX with pandas."""

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


def format_params(n: int | None) -> str:
    if not n:
        return "-"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def result_row(dataset: str, captioner: str, llm: str, params: int | None, metrics: dict) -> dict:
    timing = metrics["timing"]
    counts = metrics["status_counts"]
    video_seconds = timing.get("video_seconds") or 0.0
    total = timing["caption_s"] + timing["answer_s"] + timing["decode_s"]
    return {
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
    }


def write_table(rows: Sequence[dict], stem: Path, latex: bool = False) -> pd.DataFrame:
    """Write <stem>.csv and <stem>.md (and <stem>.tex); return the table."""
    table = pd.DataFrame(list(rows), columns=TABLE_COLUMNS)
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(table.to_markdown(index=False) + "\n")
    if latex:
        stem.with_suffix(".tex").write_text(table.to_latex(index=False, na_rep="-", float_format="%.1f"))
    return table
