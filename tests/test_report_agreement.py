"""The agreement matrix and McNemar's exact test, on constructed cases with known counts."""

from __future__ import annotations

import builtins
from math import comb

import pytest

from videoqa.report.agreement import agreement, agreement_matrix, mcnemar_p


def constructed(both_right: int, a_only: int, b_only: int, both_wrong: int) -> tuple[list[bool], list[bool]]:
    a = [True] * both_right + [True] * a_only + [False] * b_only + [False] * both_wrong
    b = [True] * both_right + [False] * a_only + [True] * b_only + [False] * both_wrong
    return a, b


def test_the_two_by_two_table_counts_each_kind_of_question():
    a, b = constructed(40, 10, 2, 8)
    pair = agreement(a, b)
    assert (pair.both_right, pair.a_only, pair.b_only, pair.both_wrong) == (40, 10, 2, 8)
    assert pair.questions == 60
    assert pair.accuracy_gap == pytest.approx(100 * (50 - 42) / 60)
    # exact two-sided binomial: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert pair.p_value == pytest.approx(158 / 4096, rel=1e-9)


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [
        (0, 0, 1.0),  # no discordant question: no evidence either way
        (3, 3, 1.0),  # balanced: the two tails overlap, capped at 1
        (5, 0, 2 / 32),
        (0, 5, 2 / 32),
        (25, 10, 2 * sum(comb(35, k) for k in range(11)) / 2**35),
    ],
)
def test_mcnemar_exact_p_values(a_only, b_only, expected):
    assert mcnemar_p(a_only, b_only) == pytest.approx(expected, rel=1e-9)


def test_without_scipy_the_same_p_values_come_from_exact_integer_arithmetic(monkeypatch):
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("scipy hidden by the test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert mcnemar_p(10, 2) == pytest.approx(158 / 4096, rel=1e-12)
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(0, 0) == 1.0


def test_unlabelled_questions_are_left_out_and_lengths_must_match():
    pair = agreement([True, None, False, True], [False, True, None, True])
    assert (pair.both_right, pair.a_only, pair.b_only, pair.both_wrong) == (1, 1, 0, 0)
    with pytest.raises(ValueError, match="same questions"):
        agreement([True], [True, False])
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_p(-1, 2)


def test_the_matrix_holds_every_pair_of_runs_once():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    c = [False, False, False, False, True]
    pairs = agreement_matrix([a, b, c])
    assert [(p.a, p.b) for p in pairs] == [(0, 1), (0, 2), (1, 2)]
    ab, ac, bc = pairs
    assert (ab.both_right, ab.a_only, ab.b_only, ab.both_wrong) == (1, 2, 1, 1)
    assert (ac.both_right, ac.a_only, ac.b_only, ac.both_wrong) == (1, 2, 0, 2)
    assert (bc.both_right, bc.a_only, bc.b_only, bc.both_wrong) == (0, 2, 1, 2)
    assert ac.p_value == pytest.approx(2 * 1 / 4)  # 2 * P(X <= 0), X ~ Bin(2, 1/2)
