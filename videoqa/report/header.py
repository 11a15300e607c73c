"""The report's header, written as static HTML: what was run, how well, how fast, what failed, and
(for several runs) the agreement matrix with McNemar p per pair. Every value from data is escaped.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from videoqa.report.joined import Joined
from videoqa.report.rundata import RunData

MANIFEST_ESSENTIALS = ("run_dir", "dataset", "captioner", "llm")
ENVIRONMENT_ESSENTIALS = ("git", "python", "platform", "cpu_count", "packages", "torch_cuda", "devices", "executor")
MAX_LISTED_FAILURES = 50


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def pct(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def seconds(value: Any) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:,.2f} s"


def table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; `rows` hold already escaped cells."""
    thead = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{thead}</tr></thead><tbody>{body}</tbody></table>'


def pre_details(summary: str, text: str) -> str:
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def run_identity(run: RunData) -> dict[str, str]:
    dataset, captioner, llm = run.section("dataset"), run.section("captioner"), run.section("llm")
    parameters = (run.manifest.get("captioner") or {}).get("parameters")
    shown = captioner.get("name", "?") if run.answerer == "captions" else "none (the video LLM sees the frames)"
    return {
        "dataset": f"{dataset.get('name', '?')} / {dataset.get('split', '?')} ({dataset.get('data_root', '?')})",
        "captioner": f"{shown} [{captioner.get('type', '?')}: {captioner.get('model', '?')}]"
        + (f", {parameters:,} parameters" if isinstance(parameters, int) and run.answerer == "captions" else ""),
        "llm": f"{llm.get('name', '?')} [{llm.get('backend', '?')}: {llm.get('model', '?')}]",
    }


def summary_cells(run: RunData) -> list[str]:
    m = run.metrics
    counts = m.get("status_counts") or {}
    timing = m.get("timing") or {}
    failed = sum(v for k, v in counts.items() if str(k).endswith("failed") and isinstance(v, int))
    return [
        esc(m.get("questions", len(run.predictions))),
        esc(pct(m.get("accuracy")))
        + (
            f" ({esc(m['headline'])} {esc(pct(m.get(m['headline'])))})"
            if m.get("headline") not in (None, "accuracy")
            else ""
        ),
        esc(pct(m.get("accuracy_valid"))),
        esc(counts.get("invalid", 0)),
        esc(failed),
        esc(seconds((timing.get("caption_s") or 0) + (timing.get("decode_s") or 0))),
        esc(seconds(timing.get("answer_s"))),
    ]


SUMMARY_HEAD = ["questions", "accuracy", "accuracy (valid answers)", "invalid", "failed", "captioning", "answering"]


MAIN_TIMINGS = ("decode_s", "caption_s", "answer_s", "llm_startup_s", "video_seconds", "frames_captioned")


def timing_value(key: str, value: Any) -> str:
    return seconds(value) if key.endswith("_s") or key == "video_seconds" else str(value)


def timings_html(timing: dict[str, Any]) -> str:
    """The main timings in one row; every other counter (scalars) collapsed below it."""
    main = [k for k in MAIN_TIMINGS if k in timing]
    rest = [[esc(k), esc(timing_value(k, v))] for k, v in timing.items() if k not in main and not isinstance(v, dict)]
    html = "<h4>Timings</h4>" + table(main, [[esc(timing_value(k, timing[k])) for k in main]], "timings")
    if rest:
        html += "<details><summary>all timing counters</summary>" + table(["counter", "value"], rest) + "</details>"
    return html


def accuracy_table(title: str, labels: dict[str, Any]) -> str:
    rows = [
        [esc(k), esc(pct(v.get("accuracy"))), esc(v.get("questions"))] for k, v in labels.items() if isinstance(v, dict)
    ]
    return f"<div><h4>{esc(title)}</h4>" + table(["label", "accuracy", "questions"], rows) + "</div>"


def breakdowns(run: RunData) -> str:
    """Status counts, accuracy per category and per breakdown, timings, retries and failures of one run."""
    m = run.metrics
    parts = []
    counts = m.get("status_counts") or {}
    if counts:
        rows = [[esc(k), esc(v)] for k, v in counts.items()]
        parts.append("<div><h4>Answers by status</h4>" + table(["status", "questions"], rows) + "</div>")
    if isinstance(m.get("per_category"), dict) and m["per_category"]:
        parts.append(accuracy_table("Accuracy per category", m["per_category"]))
    for name, labels in (m.get("breakdowns") or {}).items():
        if isinstance(labels, dict) and labels:
            parts.append(accuracy_table(f"Accuracy per {name}", labels))
    html = '<div class="breakdowns">' + "".join(parts) + "</div>"
    if isinstance(m.get("timing"), dict) and m["timing"]:
        html += timings_html(m["timing"])
    retries = m.get("retries") or {}
    if isinstance(retries, dict) and any(retries.values()):
        html += f"<p>Retried on resume: {esc(', '.join(f'{k}: {v}' for k, v in retries.items()))}</p>"
    html += failures_summary(run)
    return html + "".join(f'<p class="note">{esc(note)}</p>' for note in run.notes)


def failures_summary(run: RunData) -> str:
    if not run.failures:
        return "<h4>Failures</h4><p>No video failed.</p>"
    by_reason: dict[str, int] = {}
    for failure in run.failures.values():
        reason = str(failure.get("reason", "?"))
        by_reason[reason] = by_reason.get(reason, 0) + 1
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(by_reason.items()))
    rows = [
        [esc(f.get("video_id")), esc(f.get("reason")), esc(f.get("message"))]
        for f in list(run.failures.values())[:MAX_LISTED_FAILURES]
    ]
    more = len(run.failures) - len(rows)
    return (
        f"<h4>Failures</h4><details><summary>{len(run.failures)} video(s) failed ({esc(reasons)})</summary>"
        + table(["video", "reason", "message"], rows)
        + (f"<p>... and {more} more (failures.jsonl)</p>" if more > 0 else "")
        + "</details>"
    )


def manifest_essentials(run: RunData) -> str:
    essentials = {k: run.manifest[k] for k in MANIFEST_ESSENTIALS if k in run.manifest}
    environment = run.manifest.get("environment") or {}
    if isinstance(environment, dict):
        essentials["environment"] = {k: environment[k] for k in ENVIRONMENT_ESSENTIALS if k in environment}
    return json.dumps(essentials, indent=1, default=str)


def run_section(run: RunData, index: int, several: bool) -> str:
    identity = run_identity(run)
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in identity.items())
    facts += f"<dt>run directory</dt><dd><code>{esc(run.path)}</code></dd>"
    body = (
        f'<dl class="facts">{facts}</dl>'
        + (table(SUMMARY_HEAD, [summary_cells(run)], "summary") if not several else "")
        + breakdowns(run)
        + pre_details("resolved config (config.yaml)", run.config_text or "(no config.yaml)")
        + pre_details("manifest essentials (manifest.json)", manifest_essentials(run) if run.manifest else "(none)")
    )
    if not several:
        return f'<section class="run">{body}</section>'
    return f'<details class="run"><summary>Run {index + 1}: {esc(run.label)}: details</summary>{body}</details>'


def agreement_section(joined: Joined) -> str:
    runs = joined.runs
    sizes = ", ".join(f"{esc(r.label)}: {n}" for r, n in zip(runs, joined.totals))
    same = len(set(joined.totals)) == 1 and joined.totals[0] == len(joined.qids)
    scope = (
        f'<p class="scope">All runs answered the same <b>{len(joined.qids)}</b> questions.</p>'
        if same
        else f'<p class="scope">The runs answered different question sets ({sizes}); they are compared on the '
        f"<b>{len(joined.qids)}</b> questions common to all.</p>"
    )
    rows = []
    for p in joined.pairs:
        rows.append(
            [
                esc(runs[p.a].label),
                esc(runs[p.b].label),
                esc(p.questions),
                esc(p.both_right),
                esc(p.a_only),
                esc(p.b_only),
                esc(p.both_wrong),
                "-" if p.accuracy_gap is None else esc(f"{p.accuracy_gap:+.1f}"),
                esc(f"{p.p_value:.3g}"),
            ]
        )
    head = ["run A", "run B", "labelled", "both right", "A only", "B only", "both wrong", "gap A-B (pts)", "McNemar p"]
    return (
        "<h3>Agreement between runs</h3>"
        + scope
        + table(head, rows, "agreement")
        + '<p class="hint">McNemar p: exact two-sided test on the questions exactly one run got right; a small p '
        "says the accuracy gap is unlikely under equally accurate runs.</p>"
    )


def header_html(joined: Joined, title: str, notes: list[str]) -> str:
    runs = joined.runs
    several = len(runs) > 1
    parts = [f"<h1>{esc(title)}</h1>"]
    if several:
        rows = [
            [esc(i + 1), esc(r.label), esc(run_identity(r)["dataset"]), esc(r.section("llm").get("name", "?"))]
            + summary_cells(r)
            for i, r in enumerate(runs)
        ]
        parts.append(table(["#", "run", "dataset", "LLM", *SUMMARY_HEAD], rows, "summary"))
        parts.append(agreement_section(joined))
    parts += [run_section(run, i, several) for i, run in enumerate(runs)]
    parts += [f'<p class="note">{esc(note)}</p>' for note in notes]
    return "<header>" + "".join(parts) + "</header>"
