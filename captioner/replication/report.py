"""The report of `captioner synth-bench`: per-arm scores, paired statistics, fixes, the Markdown table.

Each arm's cached captions (`experiment.run_arm`) are scored here: its headline output is what the
arm would deploy (the first glance of the single-pass arms, the refined caption of the SeR arms;
oracle_draft's refinement of held-out one-edit drafts, its capacity).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from captioner.replication import loop, scoring, stats

SOURCES = {  # draft source -> (the drafts' captions key, the refined captions key)
    "own": ("first_glance", "refined"),
    "stage1": ("stage1_texts", "stage1_drafts_refined"),
    "lexical": ("lexical_drafts", "lexical_refined"),
    "oracle": ("oracle_drafts", "oracle_refined"),
}


def headline(arm: str) -> str:
    if arm == "oracle_draft":
        return "oracle_refined"
    return "refined" if arm in loop.REFINERS else "first_glance"


def score_runs(runs: list[dict[str, Any]], stage1_texts: list[list[str]], references) -> dict[str, Any]:
    """{part: (hits (S, N), cider (S, N))} for every caption list the runs hold."""
    parts: dict[str, Any] = {}
    keys = [k for k, v in runs[0].items() if isinstance(v, list) and v and isinstance(v[0], str)]
    for key in [*keys, "stage1_texts"]:
        rows = stage1_texts if key == "stage1_texts" else [run[key] for run in runs]
        scored = [scoring.per_image(captions, references) for captions in rows]
        parts[key] = (np.array([s[0] for s in scored]), np.array([s[1] for s in scored]))
    return parts


def arm_report(name: str, parts: dict, control: dict, hidden: np.ndarray, runs: list[dict]) -> dict[str, Any]:
    main = headline(name)
    hits, cider = parts[main]
    out: dict[str, Any] = {
        "headline": main,
        "scores": {
            part: {
                "exact_match": scoring.mean_sd(100 * h.mean(axis=1)),
                "CIDEr": scoring.mean_sd(c.mean(axis=1)),
            }
            for part, (h, c) in parts.items()
            if part != "stage1_texts"
        },
        "paired_vs_control": stats.paired(hits, control["hits"], cider, control["cider"]),
        "paired_vs_control_hidden_detail": stats.paired(hits, control["hits"], cider, control["cider"], hidden),
        "paired_vs_control_other": stats.paired(hits, control["hits"], cider, control["cider"], ~hidden),
    }
    if name in loop.REFINERS:
        first_hits, first_cider = parts["first_glance"]
        out["first_glance_vs_control"] = stats.paired(first_hits, control["hits"], first_cider, control["cider"])
        fixes = {}
        for source, (drafts, refined) in SOURCES.items():
            fixes[source] = _summed(parts[drafts][0], parts[refined][0], None)
        fixes["hidden_detail"] = _summed(parts["first_glance"][0], parts["refined"][0], hidden)
        fixes["stage1_hidden_detail"] = _summed(parts["stage1_texts"][0], parts["stage1_drafts_refined"][0], hidden)
        out["fixes"] = fixes
    train = [run["train"] for run in runs if run.get("train")]
    out["train"] = (
        {
            "steps": train[0]["steps"],
            "batch_size": train[0]["batch_size"],
            "flops": float(np.mean([t["flops"] for t in train])),
            "seconds": scoring.mean_sd([t["seconds"] for t in train]),
            "trainable": train[0]["trainable"],
            "vision_gradient": any(t["vision_gradient"] for t in train),
        }
        if train
        else {}
    )
    return out


def _summed(draft_hits: np.ndarray, refined_hits: np.ndarray, mask) -> dict[str, int]:
    per_seed = [stats.fixes_breaks(d, r, mask) for d, r in zip(draft_hits, refined_hits)]
    return {key: sum(p[key] for p in per_seed) for key in per_seed[0]}


def build(per_arm: dict[str, list[dict]], stage1_texts: list[list[str]], references, hidden: np.ndarray) -> dict:
    """Arms' reports (the control first) and the `fixes` summary over the four draft sources."""
    scored = {name: score_runs(runs, stage1_texts, references) for name, runs in per_arm.items()}
    hits, cider = scored["control"]["first_glance"]
    control = {"hits": hits, "cider": cider}
    arms = {name: arm_report(name, scored[name], control, hidden, per_arm[name]) for name in per_arm}
    fixes = {
        name: {k: arm["fixes"][k] for k in ("own", "stage1", "lexical", "hidden_detail")}
        for name, arm in arms.items()
        if "fixes" in arm
    }
    return {"arms": arms, "fixes": fixes}


def _fb(fixes: dict[str, int] | None) -> str:
    return "-" if not fixes else f"{fixes['fixes']} / {fixes['breaks']}"


def markdown_table(report: dict[str, Any]) -> str:
    """One row per arm: headline exact match and CIDEr (mean ± sd over seeds), paired differences
    against the control (all images and the hidden-detail ones), fixes / breaks per draft source."""
    lines = [
        "| arm | scored | first glance exact % | exact % | CIDEr | Δ exact vs control [95 % CI], McNemar p "
        "| Δ exact on (d) [95 % CI] | Δ CIDEr [95 % CI] | fixes / breaks: own | stage-1 | lexical | (d) |",
        "|" + "---|" * 12,
    ]
    for name, arm in report["arms"].items():
        main = arm["scores"][arm["headline"]]
        first = arm["scores"]["first_glance"]["exact_match"]
        p, d = arm["paired_vs_control"], arm["paired_vs_control_hidden_detail"]
        fixes = arm.get("fixes", {})
        lines.append(
            f"| {name} | {arm['headline']} | {first['mean']:.1f} ± {first['sd']:.1f} "
            f"| {main['exact_match']['mean']:.1f} ± {main['exact_match']['sd']:.1f} "
            f"| {main['CIDEr']['mean']:.1f} ± {main['CIDEr']['sd']:.1f} "
            f"| {p['exact_diff']:+.1f} [{p['ci95'][0]:+.1f}, {p['ci95'][1]:+.1f}], p={p['mcnemar_p']:.3g} "
            f"| {_diff(d)} | {p['cider_diff']:+.1f} [{p['cider_ci95'][0]:+.1f}, {p['cider_ci95'][1]:+.1f}] "
            f"| {_fb(fixes.get('own'))} | {_fb(fixes.get('stage1'))} | {_fb(fixes.get('lexical'))} "
            f"| {_fb(fixes.get('hidden_detail'))} |"
        )
    return "\n".join(lines)


def _diff(stats_: dict[str, Any]) -> str:
    if not stats_.get("images"):
        return "-"
    return f"{stats_['exact_diff']:+.1f} [{stats_['ci95'][0]:+.1f}, {stats_['ci95'][1]:+.1f}]"
