"""Paired comparison of runs on the same questions: the agreement matrix and McNemar's test.

For two runs A and B over the questions both answered with a known label, the 2x2 table counts
both right, A only, B only, both wrong. Only the discordant pairs (A only, B only) carry evidence
about which run is better: under "equally accurate", each discordant question is A's with
probability 1/2, so the exact McNemar p is the two-sided binomial test of A-only out of
A-only + B-only (scipy.stats.binomtest when scipy is installed, otherwise the same sum in exact
integer arithmetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations


@dataclass(frozen=True)
class PairAgreement:
    a: int  # run indices
    b: int
    both_right: int
    a_only: int
    b_only: int
    both_wrong: int
    p_value: float  # exact McNemar (two-sided)

    @property
    def questions(self) -> int:
        return self.both_right + self.a_only + self.b_only + self.both_wrong

    @property
    def accuracy_gap(self) -> float | None:
        """A's accuracy minus B's on these questions (percentage points)."""
        return 100 * (self.a_only - self.b_only) / self.questions if self.questions else None


def mcnemar_p(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p: P(a binomial(n, 1/2) is at least as far from n/2 as observed)."""
    if a_only < 0 or b_only < 0:
        raise ValueError(f"counts must be >= 0, got {a_only}, {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:
        tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
        return float(min(Fraction(1), Fraction(2 * tail, 2**n)))
    return float(min(1.0, binomtest(a_only, n, 0.5).pvalue))


def agreement(correct_a: Sequence[bool | None], correct_b: Sequence[bool | None], a: int = 0, b: int = 1):
    """The 2x2 agreement of two runs over the same questions; a None (unlabelled) drops the question."""
    if len(correct_a) != len(correct_b):
        raise ValueError(f"the runs must cover the same questions ({len(correct_a)} != {len(correct_b)})")
    pairs = [(x, y) for x, y in zip(correct_a, correct_b) if x is not None and y is not None]
    both_right = sum(1 for x, y in pairs if x and y)
    a_only = sum(1 for x, y in pairs if x and not y)
    b_only = sum(1 for x, y in pairs if y and not x)
    both_wrong = len(pairs) - both_right - a_only - b_only
    return PairAgreement(a, b, both_right, a_only, b_only, both_wrong, mcnemar_p(a_only, b_only))


def agreement_matrix(correct: Sequence[Sequence[bool | None]]) -> list[PairAgreement]:
    """Every pair of runs (i < j), each run a column of per-question correctness in one order."""
    return [agreement(correct[i], correct[j], i, j) for i, j in combinations(range(len(correct)), 2)]
