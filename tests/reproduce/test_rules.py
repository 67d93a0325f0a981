"""kexue.reproduce.rules: every branch of every decision, on stand-in measurements."""

from __future__ import annotations

import math

import pytest

from kexue.reproduce import rules
from kexue.reproduce.rules import Estimate


def test_estimate_mean_and_standard_error():
    e = rules.estimate([1.0, 2.0, 3.0, 4.0])
    assert e.mean == 2.5 and e.n == 4
    assert e.se == pytest.approx(math.sqrt((2.25 + 0.25 + 0.25 + 2.25) / 3 / 4))
    assert math.isnan(rules.estimate([1.0]).se) and rules.estimate([]).n == 0
    assert not rules.estimate([1.0]).finite


def test_paired_and_difference():
    p = rules.paired([1.0, 2.0, 3.0], [0.5, 1.5, 2.0])
    assert p.mean == pytest.approx(2 / 3) and p.n == 3
    with pytest.raises(ValueError, match="equal length, got 2 and 3"):
        rules.paired([1.0, 2.0], [1.0, 2.0, 3.0])
    d = rules.difference([1.0, 3.0], [0.0, 0.0])
    assert d.mean == 2.0 and d.se == pytest.approx(1.0)


def test_proportion():
    p = rules.proportion(30, 100)
    assert p.mean == 0.3 and p.se == pytest.approx(math.sqrt(0.21 / 100))
    assert rules.proportion(0, 0).n == 0


@pytest.mark.parametrize(
    ("effect", "min_effect", "expected"),
    [
        (Estimate(1.0, 0.1, 5), 0.0, "holds"),
        (Estimate(-1.0, 0.1, 5), 0.0, "does not hold"),
        (Estimate(0.1, 0.1, 5), 0.0, "inconclusive"),
        (Estimate(0.1, 0.01, 5), 0.5, "holds"),  # an effect, smaller than claimed: the interval excludes 0
        (Estimate(0.0, 0.01, 5), 0.5, "does not hold"),  # the claimed size is ruled out
        (Estimate(1.0, math.nan, 1), 0.0, "inconclusive"),
    ],
)
def test_superiority(effect, min_effect, expected):
    assert rules.superiority(effect, min_effect=min_effect) == expected


@pytest.mark.parametrize(
    ("effect", "margin", "expected"),
    [
        (Estimate(0.0, 0.1, 5), 0.5, "holds"),
        (Estimate(-1.0, 0.1, 5), 0.5, "does not hold"),
        (Estimate(-0.5, 0.1, 5), 0.5, "inconclusive"),
        (Estimate(0.0, math.nan, 1), 0.5, "inconclusive"),
    ],
)
def test_non_inferiority(effect, margin, expected):
    assert rules.non_inferiority(effect, margin) == expected


def test_non_inferiority_refuses_a_bad_margin():
    with pytest.raises(ValueError, match="expected a finite margin >= 0, got -1"):
        rules.non_inferiority(Estimate(0.0, 0.1, 3), -1)


def test_learned_guard():
    assert rules.learned(Estimate(0.8, 0.01, 3), 0.5)
    assert not rules.learned(Estimate(0.51, 0.01, 3), 0.5)  # within 2 s.e. of the majority class
    assert not rules.learned(Estimate(0.5, math.nan, 1), 0.5)  # no spread: must beat it at all
    assert rules.learned(Estimate(4.0, 0.05, 3), 5.45, higher_is_better=False)  # a loss below the unigram loss
    assert not rules.learned(Estimate(5.55, 0.05, 3), 5.45, higher_is_better=False)
    assert not rules.learned(Estimate(math.nan, 0.0, 3), 0.5)


def test_all_of():
    assert rules.all_of("holds", "holds") == "holds"
    assert rules.all_of("holds", "does not hold", "inconclusive") == "does not hold"
    assert rules.all_of("holds", "inconclusive") == "inconclusive"
    assert rules.all_of() == "inconclusive"
    assert "did not learn" in rules.not_learned_reason("accuracy", 0.53, 0.53, "majority class")


@pytest.mark.parametrize(
    ("effect", "expected"),
    [
        (Estimate(15.0, 1.0, 5), "holds"),  # real and of the claimed size
        (Estimate(3.0, 0.5, 5), "does not hold"),  # real, but its interval lies below the claimed size
        (Estimate(9.0, 1.0, 5), "inconclusive"),  # real, smaller than claimed, the interval reaches it
        (Estimate(1.0, 5.0, 5), "inconclusive"),
        (Estimate(1.0, math.nan, 1), "inconclusive"),
    ],
)
def test_clear_gain(effect, expected):
    assert rules.clear_gain(effect, 10.0) == expected


@pytest.mark.parametrize(
    ("effect", "expected"),
    [
        (Estimate(0.0, 0.1, 5), "holds"),
        (Estimate(2.0, 0.1, 5), "does not hold"),
        (Estimate(-2.0, 0.1, 5), "does not hold"),
        (Estimate(0.9, 0.1, 5), "inconclusive"),
        (Estimate(0.0, math.nan, 1), "inconclusive"),
    ],
)
def test_equivalence(effect, expected):
    assert rules.equivalence(effect, 1.0) == expected


def test_equivalence_refuses_a_bad_margin():
    with pytest.raises(ValueError, match="expected a finite margin >= 0, got nan"):
        rules.equivalence(Estimate(0.0, 0.1, 3), math.nan)
