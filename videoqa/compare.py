"""`videoqa compare`: several captioners, one LLM, one table (the paper's Tab. 4).

Each captioner gets a normal run directory (resumable, cached captions reused); the LLM engine
is started once and answers for every captioner. `--variants KEY=V1,V2` (repeatable: a grid) runs
every captioner once per config variant, e.g. `frames.select=uniform,adaptive`, each variant its
own run directory and row; every row shows its captions per video and mean prompt tokens beside
accuracy and time, so the trade-off of a setting is measured on the user's own data. The comparison lands in
outputs/<dataset>/compare/<id>/ as CSV, Markdown and LaTeX, plus a PNG of accuracy against time
(bubble area ~ parameters).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from videoqa.config import load_run_config
from videoqa.manifest import environment, new_run_id, safe_name, write_json
from videoqa.report import write_report
from videoqa.run import RunResult, VideoQA
from videoqa.rundir import read_records
from videoqa.scoring.tables import (
    HEADLINE_COLUMNS,
    HEADLINE_LABELS,
    TABLE_COLUMNS,
    headline_value,
    table_columns,
    write_table,
)
from videoqa_base.errors import UserError

COMPARISON_COLUMNS = {
    "captioner": "Captioner",
    "variant": "Variant",  # only with --variants
    "params": "#params",
    "accuracy": "Accuracy (%)",
    "captions_per_video": "Captions/video",
    "prompt_tokens": "Prompt tokens",
    "caption_s": "Captioning (s)",
    "answer_s": "Answering (s)",
    "total_s": "Total (s)",
    "s_per_10min_video": "Time per 10-min video (s)",
}


@dataclass
class CompareResult:
    directory: Path
    table: pd.DataFrame
    runs: list[RunResult]


def compare(
    dataset: str,
    captioners: list[str],
    llm: str | None = None,
    overrides: Sequence[str] = (),
    compare_id: str | None = None,
    progress: bool = True,
    video_llms: Sequence[str] = (),
    variants: Sequence[str] = (),
    report: bool = True,
) -> CompareResult:
    if len(set(captioners)) != len(captioners) or not captioners:
        raise UserError(f"--captioners: expected distinct names, got {captioners}")
    compare_id = compare_id or new_run_id()
    run_id = f"run_id=compare-{compare_id}"
    grid = variant_grid(variants)
    configs = [
        load_run_config(
            dataset=dataset,
            captioner=c,
            llm=llm,
            overrides=[*overrides, *variant_overrides(variant), run_id + variant_suffix(variant)],
        )
        for c in captioners
        for variant in grid
    ]
    labels = [variant_label(variant) for _ in captioners for variant in grid]
    # video-LLM rows: the frames go straight to each video LLM (answerer video-llm), no captioner;
    # `llm.*` overrides are meant for the captioners' LLM, not for the video LLMs (set those in their YAMLs)
    shared = [o for o in overrides if not o.startswith("llm.")]
    video_configs = [
        load_run_config(dataset=dataset, captioner=None, llm=v, overrides=[*shared, run_id, "answerer=video-llm"])
        for v in video_llms
    ]
    names = [c.captioner.name for c in configs if c.captioner is not None]
    if len(set(zip(names, labels))) != len(names):
        raise UserError(f"--captioners: two captioners share a name ({names}); set captioner.name to tell them apart")
    rows = [VideoQA(config, progress=progress) for config in configs]
    for vq in rows[1:]:
        vq.share_llm_of(rows[0])  # one engine answers for every captioner
    env = environment()
    runs = []
    try:
        # every captioner first, one in memory at a time, while no LLM engine holds memory
        gathered = [vq.gather() for vq in rows]
        runs = [vq.complete(g) for vq, g in zip(rows, gathered)]
    finally:
        for vq in reversed(rows):  # the engine's owner (the first row) last
            vq.close()
    for config in video_configs:  # each video LLM is its own engine, started after the captioners' LLM is closed
        runs.append(VideoQA(config, progress=progress).run())

    directory = comparison_directory(configs[0], compare_id)
    table_rows = [r.row | run_costs(r) for r in runs]
    if variants:
        for row, label in zip(table_rows, labels + ["-"] * len(video_configs)):
            row["variant"] = label
    table = write_comparison(table_rows, directory)
    write_json(
        directory / "manifest.json",
        {
            "captioners": names,
            "variants": [variant_label(v) for v in grid] if variants else [],
            "llm": configs[0].llm.model_dump(),
            "runs": [str(r.run_dir) for r in runs],
            "environment": env,
        },
    )
    if report:  # report.html: the runs side by side, where they disagree, and the paired test
        write_report([r.run_dir for r in runs], directory, progress=progress)
    return CompareResult(directory, table, runs)


def variant_grid(specs: Sequence[str]) -> list[dict[str, str]]:
    """`KEY=V1,V2` specs -> every combination, in order: [{key: value, ...}, ...] ([{}] without specs)."""
    axes: list[list[tuple[str, str]]] = []
    for spec in specs:
        key, _, values = spec.partition("=")
        key, options = key.strip(), [v.strip() for v in values.split(",") if v.strip()]
        if not key or not options or len(set(options)) != len(options):
            raise UserError(
                f"--variants {spec!r}: expected KEY=V1,V2 with distinct values, e.g. frames.select=uniform,adaptive"
            )
        if key.startswith("llm.") or key in ("llm", "run_id", "output_dir"):
            raise UserError(
                f"--variants {spec!r}: {key} cannot vary within one comparison (the rows share one LLM engine)"
            )
        if key in {k for k, _ in (a[0] for a in axes if a)}:
            raise UserError(f"--variants: key {key!r} given twice")
        axes.append([(key, value) for value in options])
    return [dict(combo) for combo in itertools.product(*axes)]


def variant_overrides(variant: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in variant.items()]


def variant_label(variant: dict[str, str]) -> str:
    """How a variant is named in the table and the plot: `frames.select=adaptive, frames.fps=0.5`."""
    return ", ".join(variant_overrides(variant))


def variant_suffix(variant: dict[str, str]) -> str:
    """The variant's part of its run id, so each variant has its own (resumable) run directory."""
    return "".join(f"-{safe_name(key.split('.')[-1])}-{safe_name(value)}" for key, value in variant.items())


def run_costs(result: RunResult) -> dict[str, float | None]:
    """Captions per video (captioned frames per video, adaptive selection included) and the mean
    prompt tokens of the answered questions: the costs a variant trades against accuracy."""
    per_video = result.metrics.get("timing", {}).get("per_video") or {}
    captions = [v.get("frames_captioned", v.get("frames")) for v in per_video.values()]
    captions = [c for c in captions if c is not None]
    tokens = [
        r["prompt_tokens"]
        for r in read_records(result.run_dir / "predictions.jsonl")
        if isinstance(r.get("prompt_tokens"), int)
    ]
    return {
        "captions_per_video": round(sum(captions) / len(captions), 1) if captions else None,
        "prompt_tokens": round(sum(tokens) / len(tokens)) if tokens else None,
    }


def comparison_directory(config, compare_id: str) -> Path:
    """outputs/<dataset>/compare/<id>/: the comparison's tables, plot, manifest and log."""
    return Path(config.output_dir) / safe_name(config.dataset.name) / "compare" / safe_name(compare_id)


def write_comparison(rows: list[dict], directory: Path) -> pd.DataFrame:
    directory.mkdir(parents=True, exist_ok=True)
    write_table(rows, directory / "runs", latex=False)
    columns = [c for c in COMPARISON_COLUMNS if c != "variant" or any("variant" in r for r in rows)]
    # the benchmark's own headline (MLVU's M-Avg) before accuracy, its breakdowns after the fixed columns
    headline = [c for c in HEADLINE_COLUMNS.values() if any(c in r for r in rows)]
    at = columns.index("accuracy")
    columns = columns[:at] + headline + columns[at:]
    breakdowns = [c for c in table_columns(rows) if c not in TABLE_COLUMNS and c not in headline]
    names = COMPARISON_COLUMNS | {column: HEADLINE_LABELS[key] for key, column in HEADLINE_COLUMNS.items()}
    table = pd.DataFrame(rows).reindex(columns=columns + breakdowns).rename(columns=names)
    table.to_csv(directory / "comparison.csv", index=False)
    (directory / "comparison.md").write_text(table.to_markdown(index=False) + "\n")
    (directory / "comparison.tex").write_text(table.to_latex(index=False, na_rep="-", float_format="%.1f"))
    plot_accuracy_vs_time(rows, directory / "accuracy_vs_time.png")
    return table


def plot_accuracy_vs_time(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    largest = max((r["parameters"] or 0) for r in rows) or 1
    for r in rows:
        x = r["s_per_10min_video"] if r["s_per_10min_video"] is not None else r["total_s"]
        y = headline_value(r) or 0.0
        size = 60 + 1500 * (r["parameters"] or 0) / largest
        ax.scatter([x], [y], s=size, alpha=0.5)
        label = f"{r['captioner']} ({r['params']})" + (f" [{r['variant']}]" if r.get("variant") else "")
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    per_10 = all(r["s_per_10min_video"] is not None for r in rows)
    ax.set_xlabel("time per 10-minute video (s)" if per_10 else "total time (s)")
    ax.set_ylabel(HEADLINE_LABELS.get(rows[0].get("headline", "accuracy"), "Accuracy (%)").lower())
    ax.set_title(f"{rows[0]['dataset']}: accuracy vs. time (bubble area ~ parameters)")
    top = max((headline_value(r) or 0.0) for r in rows)
    ax.set_ylim(0, min(100, top + 10))
    ax.margins(x=0.25)  # room for the labels of the outermost bubbles
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
