"""`captioner synth-bench`'s statistics on constructed cases with known answers: the paired
differences, the two-level bootstrap, McNemar, fixes / breaks, the decision rule, Data-1 pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from captioner.replication import stats
from captioner.replication.experiment import pair_self_drafts


def test_paired_difference_with_a_known_answer():
    control = np.zeros((1, 100), bool)
    arm = control.copy()
    arm[0, :30] = True  # the arm gets 30 more images right, breaks none
    cider_control, cider_arm = np.full((1, 100), 50.0), np.full((1, 100), 50.0)
    cider_arm[0, :30] = 80.0
    result = stats.paired(arm, control, cider_arm, cider_control)
    assert result["exact_diff"] == 30.0 and result["cider_diff"] == pytest.approx(9.0)
    assert result["wins_losses"] == [30, 0]
    # exact McNemar: 30 discordant pairs all one way, p = 2 * 0.5**30
    assert result["mcnemar_p"] == pytest.approx(2 * 0.5**30, rel=1e-2)
    low, high = result["ci95"]
    # binomial sd of a 30 % share over 100 images: 4.6 points -> the interval is about 30 +- 9
    assert 19 < low < 25 and 35 < high < 41
    same = stats.paired(control, control, cider_control, cider_control)
    assert same["exact_diff"] == 0 and same["ci95"] == (0.0, 0.0) and same["mcnemar_p"] == 1.0


def test_mcnemar_matches_the_binomial_formula():
    arm = np.array([True] * 7 + [False] * 2 + [True] * 5)
    control = np.array([False] * 7 + [True] * 2 + [True] * 5)
    expected = 2 * sum(math.comb(9, k) for k in range(0, 3)) / 2**9
    assert stats.mcnemar_p(arm, control) == pytest.approx(expected)


def test_bootstrap_resamples_seeds_so_a_seed_effect_widens_the_interval():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1, size=(5, 200))
    no_seed_effect = stats.bootstrap_ci(noise + 1.0)
    seed_effect = stats.bootstrap_ci(noise + 1.0 + np.array([-4, -2, 0, 2, 4])[:, None])
    assert no_seed_effect[0] < 1.0 < no_seed_effect[1] and no_seed_effect[1] - no_seed_effect[0] < 0.5
    assert seed_effect[1] - seed_effect[0] > 2.0  # the spread between seeds is inside the interval


def test_subset_and_fixes_breaks():
    control = np.array([[False, True, False, True]])
    arm = np.array([[True, True, False, False]])
    cider = np.zeros((1, 4))
    hidden = np.array([True, False, True, False])
    on_hidden = stats.paired(arm, control, cider, cider, hidden)
    assert on_hidden["images"] == 2 and on_hidden["exact_diff"] == 50.0
    assert stats.fixes_breaks(control[0], arm[0]) == {"fixes": 1, "breaks": 1, "drafts_wrong": 2}
    assert stats.fixes_breaks(control[0], arm[0], hidden) == {"fixes": 1, "breaks": 0, "drafts_wrong": 2}
    assert stats.paired(arm, control, cider, cider, np.zeros(4, bool)) == {"images": 0}


def _report(gain_all: tuple[float, float, float], gain_d: tuple[float, float, float], premise: bool = True) -> dict:
    def block(mean: float, low: float, high: float) -> dict:
        return {"images": 100, "exact_diff": mean, "ci95": (low, high), "mcnemar_p": 0.01}

    arm = {
        "paired_vs_control": block(*gain_all),
        "paired_vs_control_hidden_detail": block(*gain_d),
        "first_glance_vs_control": block(-1, -3, 1),
    }
    return {
        "premise": {"first_glance_is_coarse": premise, "deeplens_sees_shape": True},
        "arms": {"control": {}, "ser_paper": arm, "ser_protected": arm},
    }


def test_decision_rule_code_path():
    recommended = stats.decide(_report((3, 1, 5), (6, 2, 10)))
    assert recommended["verdict"].startswith("SeR recommended") and recommended["recommended"] == "ser_protected"
    assert not recommended["ser_paper_first_glance_collapse"]
    worse = stats.decide(_report((-5, -8, -2), (-1, -4, 2)))
    assert worse["recommended"] == "control" and worse["verdict"].startswith("the specialist")
    # a gain on (d) but a loss overall is not a recommendation
    mixed = stats.decide(_report((-1, -3, 1), (4, 1, 7)))
    assert mixed["verdict"].startswith("inconclusive") and mixed["recommended"] is None
    invalid = stats.decide(_report((3, 1, 5), (6, 2, 10), premise=False))
    assert invalid["verdict"].startswith("invalid") and invalid["recommended"] is None
    collapsed = _report((-30, -40, -20), (-30, -40, -20))
    collapsed["arms"]["ser_paper"]["first_glance_vs_control"] = {"exact_diff": -35, "ci95": (-45, -25)}
    assert stats.decide(collapsed)["ser_paper_first_glance_collapse"] is True


def test_self_drafts_are_paired_with_the_reference_they_came_from():
    references = [
        [
            "two red circles above a blue square",
            "a blue square below two red circles",
            "two red circles on top and a blue square at the bottom",
        ],
        ["a green triangle", "there is a green triangle", "a green triangle on a dark background"],
    ]
    drafts = ["a blue circle below two red circles", "there is a green square"]
    paired = pair_self_drafts(drafts, references)
    assert paired == [[[], ["a blue circle below two red circles"], []], [[], ["there is a green square"], []]]
    from captioner.replication.loop import refinement_examples

    examples = refinement_examples(range(2), references, paired)
    assert [(e.image, e.initial, e.caption) for e in examples] == [
        (0, drafts[0], references[0][1]),
        (1, drafts[1], references[1][1]),
    ]
