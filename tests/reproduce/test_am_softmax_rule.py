"""The `am_softmax` reproduction's rule on stand-in measurements: every branch, the learned guard, and the
adaptive-m margin taken from the seed spread when that is larger than 1 point."""

from __future__ import annotations

from kexue.reproduce import am_softmax as A

ACC = {"0": [0.98, 0.985, 0.99], "0.2": [0.99, 0.99, 0.985], "0.35": [0.99, 0.992, 0.988]}
RISING = {"0": [0.90, 0.91, 0.92], "0.2": [0.95, 0.955, 0.965], "0.35": [0.97, 0.98, 0.985]}


def test_holds_when_map_rises_with_the_margin():
    verdict, reason = A.decide(RISING, ACC, 0.15)
    assert verdict == "holds"
    assert "m = 0.2 vs 0: holds" in reason and "m = 0.35 vs 0: holds" in reason


def test_does_not_hold_when_the_margin_lowers_map():
    falling = {"0": [0.95, 0.96, 0.97], "0.2": [0.94, 0.95, 0.96], "0.35": [0.90, 0.91, 0.92]}
    assert A.decide(falling, ACC, 0.15)[0] == "does not hold"


def test_inconclusive_when_the_paired_gain_is_within_noise():
    noisy = {"0": [0.90, 0.91, 0.92], "0.2": [0.95, 0.955, 0.965], "0.35": [0.95, 0.88, 0.93]}
    verdict, reason = A.decide(noisy, ACC, 0.15)
    assert verdict == "inconclusive"
    assert "m = 0.35 vs 0: inconclusive" in reason


def test_not_measured_when_a_model_does_not_beat_the_majority_class():
    acc = {**ACC, "0.35": [0.15, 0.14, 0.16]}
    verdict, reason = A.decide(RISING, acc, 0.15)
    assert verdict == "not measured"
    assert reason.startswith("the model did not learn: held-out accuracy at m = 0.35")


def test_adaptive_competitive_holds_and_far_below_does_not():
    acc = {**ACC, "adaptive": [0.99, 0.99, 0.99]}
    close = {**RISING, "adaptive": [0.968, 0.979, 0.986]}
    verdict, reason = A.decide(close, acc, 0.15)
    assert verdict == "holds" and "adaptive vs best fixed m = 0.35: holds" in reason
    far = {**RISING, "adaptive": [0.92, 0.93, 0.935]}
    assert A.decide(far, acc, 0.15)[0] == "does not hold"


def test_adaptive_margin_is_at_least_the_seed_spread():
    acc = {**ACC, "adaptive": [0.99, 0.99, 0.99]}
    spread = {"0": [0.80, 0.85, 0.90], "0.2": [0.86, 0.91, 0.96], "0.35": [0.88, 0.93, 0.98],
              "adaptive": [0.85, 0.90, 0.95]}  # 3 points below the best, whose seed s.d. is 5 points
    verdict, reason = A.decide(spread, acc, 0.15)
    assert "margin 5 points" in reason
    assert verdict == "holds"
