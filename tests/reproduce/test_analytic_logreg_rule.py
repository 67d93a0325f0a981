"""The ``analytic_logreg`` reproduction's rule on stand-in measurements: every branch of
:func:`kexue.reproduce.analytic_logreg.decide`, and :func:`kexue.reproduce._paired.paired_split_runs`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kexue.reproduce import _paired
from kexue.reproduce.analytic_logreg import Runs, decide

GD = "GD Adam (10 ep)"


def _correct(n: int, acc: float, offset: int = 0) -> np.ndarray:
    """n outcomes with round(acc·n) ones, rotated by ``offset`` (so two arms share most of their hits)."""
    x = np.zeros(n, dtype=bool)
    x[: round(acc * n)] = True
    return np.roll(x, offset)


def _runs(ana_test=0.80, gd_test=0.75, ana_train=1.0, gd_train=1.0, seeds=3, n=1000, shared=True, majority=0.5):
    runs = [{"analytic": (_correct(200, ana_train), _correct(n, ana_test, s)),
             GD: (_correct(200, gd_train), _correct(n, gd_test, s))} for s in range(seeds)]
    return Runs(majority, shared_test=shared, runs=runs)


def test_holds_when_analytic_generalises_better_with_little_data():
    verdict, why = decide({"sst2 1000": _runs()}, {}, 0.9999, GD)
    assert verdict == "holds", why


def test_does_not_hold_when_gd_is_better_and_its_gap_smaller():
    verdict, why = decide({"sst2 1000": _runs(ana_test=0.75, gd_test=0.80)}, {}, 0.9999, GD)
    assert verdict == "does not hold" and "(does not hold)" in why


def test_inconclusive_within_noise():
    verdict, _ = decide({"sst2 1000": _runs(ana_test=0.752, gd_test=0.75)}, {}, 0.9999, GD)
    assert verdict == "inconclusive"
    assert decide({}, {}, 0.9999, GD) == ("inconclusive", "no small-data set ran")


def test_gap_part_can_fail_alone():
    # analytic better on test, but GD fits less of the training set: GD's gap is the smaller one
    verdict, why = decide({"s": _runs(ana_test=0.80, gd_test=0.75, gd_train=0.80)}, {}, 0.9999, GD)
    assert verdict == "does not hold" and "gap" in why


def test_synthetic_weights_off_the_mle():
    verdict, why = decide({"sst2 1000": _runs()}, {}, 0.95, GD)
    assert verdict == "does not hold" and "cosine 0.95000" in why


def test_not_learned_guard_for_either_method():
    verdict, why = decide({"s": _runs(gd_test=0.5)}, {}, 0.9999, GD)
    assert verdict == "not measured" and why.startswith(f"the model did not learn: {GD} test accuracy on s")
    verdict, why = decide({"s": _runs(ana_test=0.4, gd_test=0.8)}, {}, 0.9999, GD)
    assert verdict == "not measured" and "analytic test accuracy" in why
    verdict, _ = decide({"s": _runs()}, {"whole": _runs(gd_test=0.5)}, 0.9999, GD)
    assert verdict == "not measured"


def test_whole_pools_non_inferiority():
    small = {"s": _runs()}
    assert decide(small, {"w": _runs(n=5000, ana_test=0.90, gd_test=0.905)}, 0.9999, GD)[0] == "holds"
    verdict, why = decide(small, {"w": _runs(n=5000, ana_test=0.85, gd_test=0.90)}, 0.9999, GD)
    assert verdict == "does not hold" and "margin (does not hold)" in why
    verdict, _ = decide(small, {"w": _runs(n=5000, ana_test=0.89, gd_test=0.90)}, 0.9999, GD)
    assert verdict == "inconclusive"  # −1 point: the interval straddles the margin


def test_unshared_splits_use_the_split_runs_error():
    verdict, _ = decide({"iris": _runs(n=45, shared=False, ana_test=0.99, gd_test=0.80)}, {}, 0.9999, GD)
    assert verdict == "holds"


def test_paired_split_runs():
    a = [np.array([1.0, 1, 0, 1]), np.array([1.0, 0, 1, 1, 1, 0])]
    b = [np.array([1.0, 0, 0, 1]), np.array([0.0, 0, 1, 1, 1, 0])]
    e = _paired.paired_split_runs(a, b)
    assert e.mean == pytest.approx((0.25 + 1 / 6) / 2) and e.n == 10
    test_se = math.sqrt(np.var([0, 1, 0, 0], ddof=1) / 4 + np.var([1, 0, 0, 0, 0, 0], ddof=1) / 6) / 2
    seed_se = abs(0.25 - 1 / 6) / 2
    assert e.se == pytest.approx(max(test_se, seed_se))
    with pytest.raises(ValueError, match="equal, non-zero number"):
        _paired.paired_split_runs(a, b[:1])
    with pytest.raises(ValueError, match="one non-empty 1-D shape"):
        _paired.paired_split_runs([np.ones(3)], [np.ones(4)])
    assert math.isnan(_paired.pooled([]).mean)
    p = _paired.pooled([e, e])
    assert p.mean == pytest.approx(e.mean) and p.se == pytest.approx(e.se / math.sqrt(2))
