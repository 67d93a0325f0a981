"""The ``can`` reproduction's rule on stand-in measurements: every branch of :func:`kexue.reproduce.can.decide`,
and the paired per-example standard error it uses (:mod:`kexue.reproduce._paired`)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kexue.reproduce import _paired
from kexue.reproduce.can import CONF_GAP, Mechanism, RealSet, confidence_gap, decide

GOOD_MECH = Mechanism(acc_b0=[0.80, 0.82, 0.81], delta_b0=[0.000, -0.001, 0.001], delta_b2=[0.010, 0.012, 0.011],
                      majority=0.11)


def _set(n=2000, acc=0.6, gained=0, lost=0, classes=15, conf_acc=(0.8, 0.3), seeds=1, majority=0.07):
    """A real set whose classifier has accuracy ``acc``; CAN turns ``gained`` wrong rows right and ``lost`` right
    rows wrong; the first half is confident with accuracy conf_acc[0], the second half uncertain with conf_acc[1]."""
    half = n // 2
    before = np.zeros(n)
    before[: int(conf_acc[0] * half)] = 1
    before[half: half + int(conf_acc[1] * half)] = 1
    after = before.copy()
    after[np.flatnonzero(before == 0)[:gained]] = 1
    after[np.flatnonzero(before == 1)[:lost]] = 0
    conf = np.arange(n) < half

    def rep(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[None], seeds, axis=0)

    return RealSet("stand-in", classes, majority, rep(before), rep(after), rep(conf))


def test_holds_when_every_part_holds():
    verdict, why = decide(GOOD_MECH, [_set(gained=60)])
    assert verdict == "holds", why
    assert "gain holds" in why and "mechanism holds" in why


def test_does_not_hold_when_can_lowers_accuracy_on_many_classes():
    verdict, why = decide(GOOD_MECH, [_set(lost=60)])
    assert verdict == "does not hold" and "gain does not hold" in why


def test_inconclusive_when_the_change_is_within_noise():
    verdict, why = decide(GOOD_MECH, [_set(gained=6, lost=4)])
    assert verdict == "inconclusive" and "gain inconclusive" in why


def test_few_class_sets_do_not_enter_the_gain():
    # a loss on a 4-class set is reported, not judged as the gain; with no many-class set the gain is inconclusive
    verdict, why = decide(GOOD_MECH, [_set(lost=60, classes=4)])
    assert verdict == "inconclusive" and "no set with ≥ 10 classes" in why
    verdict, _ = decide(GOOD_MECH, [_set(lost=60, classes=4), _set(gained=60, classes=119)])
    assert verdict == "holds"


def test_no_real_set_leaves_the_gain_inconclusive():
    assert decide(GOOD_MECH, [])[0] == "inconclusive"


def test_mechanism_failures():
    worse = Mechanism(acc_b0=[0.8, 0.8, 0.81], delta_b0=[0.0, 0.0, 0.001], delta_b2=[-0.01, -0.012, -0.011],
                      majority=0.11)
    verdict, why = decide(worse, [_set(gained=60)])
    assert verdict == "does not hold" and "mechanism does not hold" in why
    flat = Mechanism(acc_b0=[0.8, 0.8, 0.81], delta_b0=[0.01, 0.012, 0.011], delta_b2=[0.011, 0.01, 0.012],
                     majority=0.11)  # a gain at b = 2 that does not grow with the bias
    assert decide(flat, [_set(gained=60)])[0] == "inconclusive"


def test_confident_subset_not_far_more_accurate():
    verdict, why = decide(GOOD_MECH, [_set(gained=60, conf_acc=(0.62, 0.60))])
    assert verdict == "does not hold" and "confident − uncertain does not hold" in why
    near = _set(n=200, gained=6, conf_acc=(0.5, 0.4))  # +10 points on 100 + 100 rows: across the 10-point bar
    assert "confident − uncertain inconclusive" in decide(GOOD_MECH, [_set(gained=60), near])[1]


def test_confidence_gap_without_an_uncertain_row_is_not_finite():
    s = _set()
    everything_confident = RealSet("c", 15, 0.07, s.before, s.after, np.ones_like(s.confident))
    assert math.isnan(confidence_gap(everything_confident).mean)
    assert decide(GOOD_MECH, [everything_confident])[0] == "inconclusive"
    gap = confidence_gap(s)
    assert gap.mean == pytest.approx(0.5) and gap.mean - CONF_GAP > 2 * gap.se


def test_not_learned_guards():
    lazy = Mechanism(acc_b0=[0.11, 0.10, 0.12], delta_b0=[0, 0, 0], delta_b2=[0.01, 0.01, 0.01], majority=0.11)
    verdict, why = decide(lazy, [_set(gained=60)])
    assert verdict == "not measured" and why.startswith("the model did not learn: digits accuracy")
    verdict, why = decide(GOOD_MECH, [_set(conf_acc=(0.08, 0.06), majority=0.07, gained=60)])
    assert verdict == "not measured" and "stand-in accuracy" in why


def test_paired_examples_takes_the_larger_standard_error():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 500)) < 0.7).astype(float)
    b = a.copy()
    b[:, :20] = 1 - b[:, :20]
    e = _paired.paired_examples(a, b)
    d = (a - b).mean(0)
    assert e.mean == pytest.approx(float((a - b).mean())) and e.n == 500
    assert e.se == pytest.approx(d.std(ddof=1) / math.sqrt(500))  # the seeds agree: the test-sample s.e. wins
    seeds_differ = b.copy()
    seeds_differ[0, 100:200] = 1 - seeds_differ[0, 100:200]
    e2 = _paired.paired_examples(a, seeds_differ)
    per_seed = (a - seeds_differ).mean(1)
    assert e2.se == pytest.approx(per_seed.std(ddof=1) / math.sqrt(3))
    one = _paired.paired_examples(a[0], b[0])  # one seed: the test-sample s.e. only
    assert one.se == pytest.approx((a[0] - b[0]).std(ddof=1) / math.sqrt(500))
    assert _paired.accuracy([[1, 0, 1, 1]]).mean == 0.75
    with pytest.raises(ValueError, match="one shape"):
        _paired.paired_examples(a, b[:2])
    with pytest.raises(ValueError, match="seeds, examples"):
        _paired.paired_examples(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
