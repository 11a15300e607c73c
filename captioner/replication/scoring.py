"""Held-out captioning and scores of the miniature: what each arm's captions are worth.

Captions are decoded greedily with the inference code's own passes (`captioner.inference.first_glance`
and `refine_once`) over the cached ViT features. Scores, x100 as papers print them:

* BLEU-4 and CIDEr (pycocoevalcap's CIDEr-D) against the three references of each image. The
  world's captions are lower-case words without punctuation, so lower-casing and keeping the
  letters is exactly what the PTB tokenizer would give; it saves a JVM start per scoring call;
* exact match: the caption equals one of the references (every count, colour, shape, position right);
* fixes / breaks: images whose refined caption is an exact match where its draft was not, and the reverse.
"""

from __future__ import annotations

import contextlib
import io
import re
import statistics
from collections.abc import Sequence
from typing import Any

import torch

SCORE_NAMES = ("CIDEr", "BLEU-4", "exact_match")


def normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


@torch.inference_mode()
def caption_ids(
    model,
    processor,
    buffer,
    drafts: Sequence[Sequence[int]] | None = None,
    *,
    max_new_tokens: int = 24,
    chunk: int = 128,
) -> list[list[int]]:
    """Greedy first glance (no drafts) or one refinement pass over `drafts`, for every buffered image."""
    from captioner.modeling.inference import first_glance, refine_once

    prompt = processor.default_instruction
    out: list[list[int]] = []
    for start in range(0, buffer.batch_size, chunk):
        part = buffer.select(slice(start, start + chunk))
        if drafts is None:
            out += first_glance(model, processor, part, prompt, max_new_tokens)
        else:
            out += refine_once(model, processor, part, prompt, drafts[start : start + chunk], max_new_tokens)
    return out


def decode(processor, ids: Sequence[Sequence[int]]) -> list[str]:
    return [processor.decode_caption(row) for row in ids]


def exact(captions: Sequence[str], references: Sequence[Sequence[str]]) -> list[bool]:
    return [normalise(c) in {normalise(r) for r in refs} for c, refs in zip(captions, references)]


def corpus_scores(captions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """BLEU-4, CIDEr-D and exact match (%) of one caption per image."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    refs = {k: [normalise(r) for r in rs] for k, rs in enumerate(references)}
    hyps = {k: [normalise(c)] for k, c in enumerate(captions)}
    with contextlib.redirect_stdout(io.StringIO()):  # Bleu prints its n-gram counts
        bleu, _ = Bleu(4).compute_score(refs, hyps)
        cider, _ = Cider().compute_score(refs, hyps)
    hits = exact(captions, references)
    return {
        "CIDEr": round(100 * float(cider), 2),
        "BLEU-4": round(100 * float(bleu[3]), 2),
        "exact_match": round(100 * sum(hits) / max(1, len(hits)), 2),
    }


def fixes_breaks(drafts: Sequence[str], refined: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[int, int]:
    before, after = exact(drafts, references), exact(refined, references)
    return sum(a and not b for a, b in zip(after, before)), sum(b and not a for a, b in zip(after, before))


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 2), "sd": round(sd, 2), "per_seed": values}


def aggregate(per_seed: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Seeds of one arm -> mean / sd per score; fixes and breaks summed over seeds."""
    out: dict[str, Any] = {}
    for part in ("first_glance", "refined", "refine_stage1_drafts"):
        runs = [run[part] for run in per_seed if run.get(part) is not None]
        if not runs:
            out[part] = None
            continue
        out[part] = {name: mean_sd([r[name] for r in runs]) for name in SCORE_NAMES}
        if "fixes" in runs[0]:
            out[part]["fixes"] = sum(r["fixes"] for r in runs)
            out[part]["breaks"] = sum(r["breaks"] for r in runs)
    out["fixes"] = sum(run["fixes"] for run in per_seed)
    out["breaks"] = sum(run["breaks"] for run in per_seed)
    out["train"] = {
        "steps": per_seed[0]["train"]["steps"],
        "batch_size": per_seed[0]["train"]["batch_size"],
        "flops": mean_sd([run["train"]["flops"] for run in per_seed])["mean"],
        "seconds": mean_sd([run["train"]["seconds"] for run in per_seed]),
        "trainable": per_seed[0]["train"]["trainable"],
        "vision_gradient": any(run["train"]["vision_gradient"] for run in per_seed),
    }
    out["examples"] = per_seed[0].get("examples", [])
    return out


def _cell(scores: dict[str, Any] | None, name: str) -> str:
    if not scores:
        return "-"
    value = scores[name]
    return f"{value['mean']:.1f} ± {value['sd']:.1f}"


def markdown_table(report: dict[str, Any]) -> str:
    """One row per arm (stage 1 first): held-out scores mean ± sd over seeds."""
    header = (
        "| arm | first glance CIDEr | refined CIDEr | refined BLEU-4 | refined exact % "
        "| refines stage-1 drafts: CIDEr | fixes / breaks (own drafts) | fixes / breaks (stage-1 drafts) "
        "| train FLOPs |"
    )
    lines = [header, "|" + "---|" * 9]
    for name, arm in report["arms"].items():
        stage1 = arm.get("refine_stage1_drafts") or {}
        lines.append(
            f"| {name} | {_cell(arm['first_glance'], 'CIDEr')} | {_cell(arm['refined'], 'CIDEr')} "
            f"| {_cell(arm['refined'], 'BLEU-4')} | {_cell(arm['refined'], 'exact_match')} "
            f"| {_cell(arm.get('refine_stage1_drafts'), 'CIDEr')} | {arm['fixes']} / {arm['breaks']} "
            f"| {stage1.get('fixes', '-')} / {stage1.get('breaks', '-')} | {arm['train']['flops']:.3g} |"
        )
    return "\n".join(lines)
