"""Held-out captioning and scores of the miniature: what each arm's captions are worth.

Captions are decoded greedily with the inference code's own passes (`captioner.inference.first_glance`
and `refine_once`) over the cached ViT features. Scores, x100 as papers print them:

* BLEU-4 and CIDEr (pycocoevalcap's CIDEr-D) against the three references of each image. The
  world's captions are lower-case words without punctuation, so lower-casing and keeping the
  letters is exactly what the PTB tokenizer would give; it saves a JVM start per scoring call;
* exact match: the caption equals one of the references (every count, colour, shape, position right);
* per image (exact match, CIDEr-D) for the paired statistics of `captioner.replication.stats`.
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


def per_image(captions: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[list[bool], list[float]]:
    """Exact match and CIDEr-D (x100) of every image, for paired comparisons (`captioner.replication.stats`)."""
    from pycocoevalcap.cider.cider import Cider

    refs = {k: [normalise(r) for r in rs] for k, rs in enumerate(references)}
    hyps = {k: [normalise(c)] for k, c in enumerate(captions)}
    _, scores = Cider().compute_score(refs, hyps)
    return exact(captions, references), [round(100 * float(x), 3) for x in scores]


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": round(statistics.fmean(values), 2), "sd": round(sd, 2), "per_seed": values}
