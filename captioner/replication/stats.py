"""Paired statistics of the arms against the control, and the decision rule of docs/replication.md.

Every arm and the control caption the same held-out images from the same seed's specialist, so the
comparison is paired per (seed, image):

* the difference in exact match (percentage points) and in CIDEr-D (x100), mean over seeds and images;
* a 95 % bootstrap CI that resamples seeds and, within them, images (two levels: a seed's stage 1 moves
  every image at once, and that variance belongs in the interval; scipy.stats.bootstrap resamples
  independent observations only, so the two-level resampling is done with numpy);
* McNemar's exact test (scipy.stats.binomtest on the discordant pairs) of exact match, pooled over
  (seed, image) pairs.

The decision rule is written in docs/replication.md before any number was run; `decide` is its code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 4000


def bootstrap_ci(diffs: np.ndarray, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of `diffs` (seeds x images), resampling seeds, then images."""
    diffs = np.asarray(diffs, dtype=float)
    if diffs.ndim == 1:
        diffs = diffs[None, :]
    n_seeds, n_images = diffs.shape
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, n_seeds, size=(samples, n_seeds)) if n_seeds > 1 else np.zeros((samples, 1), int)
    images = rng.integers(0, n_images, size=(samples, n_images))
    means = diffs[seeds[:, :, None], images[:, None, :]].mean(axis=(1, 2))
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(low), 2), round(float(high), 2)


def mcnemar_p(arm_hits: np.ndarray, control_hits: np.ndarray) -> float:
    """Exact McNemar p (two-sided): the discordant pairs against a fair coin."""
    from scipy.stats import binomtest

    arm, control = np.asarray(arm_hits, bool).ravel(), np.asarray(control_hits, bool).ravel()
    wins, losses = int(np.sum(arm & ~control)), int(np.sum(~arm & control))
    if wins + losses == 0:
        return 1.0
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def paired(
    arm_hits: np.ndarray,
    control_hits: np.ndarray,
    arm_cider: np.ndarray,
    control_cider: np.ndarray,
    subset: np.ndarray | None = None,
) -> dict[str, Any]:
    """Arm minus control, paired per (seed, image); `subset` (a mask over images) restricts the images."""
    arrays = [np.asarray(a, float) for a in (arm_hits, control_hits, arm_cider, control_cider)]
    arrays = [a[None, :] if a.ndim == 1 else a for a in arrays]
    if subset is not None:
        arrays = [a[:, np.asarray(subset, bool)] for a in arrays]
    hits, ctrl, cider, ctrl_cider = arrays
    if hits.shape[1] == 0:
        return {"images": 0}
    exact_diff, cider_diff = 100 * (hits - ctrl), cider - ctrl_cider
    wins, losses = int(np.sum((hits > 0) & (ctrl == 0))), int(np.sum((hits == 0) & (ctrl > 0)))
    return {
        "images": int(hits.shape[1]),
        "seeds": int(hits.shape[0]),
        "exact_diff": round(float(exact_diff.mean()), 2),
        "ci95": bootstrap_ci(exact_diff),
        "mcnemar_p": float(f"{mcnemar_p(hits > 0, ctrl > 0):.3g}"),  # 3 significant digits, never 0
        "wins_losses": [wins, losses],
        "per_seed_exact_diff": [round(float(x), 2) for x in exact_diff.mean(axis=1)],
        "cider_diff": round(float(cider_diff.mean()), 2),
        "cider_ci95": bootstrap_ci(cider_diff),
    }


def fixes_breaks(draft_hits: Sequence[bool], refined_hits: Sequence[bool], mask=None) -> dict[str, int]:
    """Images whose refined caption is exact where its draft was not (fixes), and the reverse."""
    draft, refined = np.asarray(draft_hits, bool), np.asarray(refined_hits, bool)
    keep = np.ones_like(draft) if mask is None else np.asarray(mask, bool)
    return {
        "fixes": int(np.sum(keep & refined & ~draft)),
        "breaks": int(np.sum(keep & draft & ~refined)),
        "drafts_wrong": int(np.sum(keep & ~draft)),
    }


SER_ARMS = ("ser_paper", "ser_protected")
COLLAPSE_POINTS = 10.0


def decide(report: dict[str, Any]) -> dict[str, Any]:
    """The decision rule of docs/replication.md, applied to a report's premise and paired statistics."""
    premise = report["premise"]
    arms = report["arms"]
    rule = (
        "Valid only if the premise holds (first-glance shape probe <= chance + 10, best DeepLens layer >= 90 %). "
        "SeR is recommended over the specialist if ser_paper or ser_protected has a paired exact-match gain over "
        "the control whose 95 % CI lies above 0 on the hidden-detail images (d) and whose mean gain on all held-out "
        "images is above 0. The control is preferred if both SeR arms' CIs on all held-out images lie below 0. "
        "Otherwise: inconclusive. Collapse: ser_paper's first glance loses more than 10 exact-match points to "
        "the control with a CI below 0."
    )
    out: dict[str, Any] = {"rule": rule, "evidence": {}}
    if not (premise["first_glance_is_coarse"] and premise["deeplens_sees_shape"]):
        return out | {"verdict": "invalid: the premise does not hold (see probes)", "recommended": None}
    qualified = []
    for name in SER_ARMS:
        if name not in arms:
            continue
        stats_all, stats_d = arms[name]["paired_vs_control"], arms[name]["paired_vs_control_hidden_detail"]
        out["evidence"][name] = {"all": stats_all, "hidden_detail": stats_d}
        if stats_d.get("images") and stats_d["ci95"][0] > 0 and stats_all["exact_diff"] > 0:
            qualified.append((stats_d["exact_diff"], name))
    below = [name for name in SER_ARMS if name in arms and arms[name]["paired_vs_control"]["ci95"][1] < 0]
    if qualified:
        verdict, recommended = "SeR recommended over the specialist", max(qualified)[1]
    elif below and len(below) == len([n for n in SER_ARMS if n in arms]):
        verdict, recommended = "the specialist (control) is preferred: both SeR arms are worse", "control"
    else:
        verdict, recommended = "inconclusive: no SeR arm clears the rule, and not both are worse", None
    first = arms.get("ser_paper", {}).get("first_glance_vs_control")
    collapse = bool(first and first["exact_diff"] < -COLLAPSE_POINTS and first["ci95"][1] < 0)
    return out | {"verdict": verdict, "recommended": recommended, "ser_paper_first_glance_collapse": collapse}
