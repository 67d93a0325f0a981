"""child_tuning: every branch of its rule (equivalence with an explicit margin) on stand-in measurements."""

from __future__ import annotations

import math

import pytest

from kexue.reproduce.child_tuning import BASELINE, LR_SQRT, MIN_MARGIN, decide, equivalence, ft_margin, sqrt_p_deviation
from kexue.reproduce.rules import Estimate

SQRT_OK = {0.1: Estimate(0.002, 0.010, 2), 0.25: Estimate(-0.004, 0.008, 2), 0.5: Estimate(0.001, 0.006, 2)}
ADAMW = [0.80, 0.82, 0.81, 0.83]  # sd 0.0129: margin 0.0258
F = "ChildTuning-F (grad, p=0.3)"
D = "ChildTuning-D (p=0.2)"


def _scores(f, d=None, **extra):
    out = {BASELINE: ADAMW, F: f, D: d if d is not None else ADAMW}
    out.update(extra)
    return out


CLOSE = [0.801, 0.818, 0.812, 0.829]   # paired −0.001 … +0.002
FAR = [0.70, 0.73, 0.71, 0.72]         # ~10 points worse: outside ±0.026
BETTER = [0.90, 0.92, 0.91, 0.93]      # ~10 points better: outside on the other side
STRADDLE = [0.78, 0.84, 0.79, 0.80]    # −0.02, +0.02, −0.02, −0.03


@pytest.mark.parametrize("f,verdict", [
    (CLOSE, "holds"), (FAR, "does not hold"), (BETTER, "does not hold"), (STRADDLE, "inconclusive")])
def test_fine_tuning_branches(f, verdict):
    v, reason = decide(SQRT_OK, _scores(f), majority=0.51)
    assert v == verdict and "margin ±0.0258" in reason and f"{F} − {BASELINE}" in reason


def test_full_mode_also_compares_f_with_adamw_at_lr_sqrt_p():
    v, reason = decide(SQRT_OK, _scores(CLOSE, **{LR_SQRT: FAR}), majority=0.51)
    assert v == "does not hold" and f"{F} − {LR_SQRT}" in reason
    assert decide(SQRT_OK, _scores(CLOSE, **{LR_SQRT: CLOSE}), majority=0.51)[0] == "holds"


def test_sqrt_p_outside_the_margin_does_not_hold_even_without_fine_tuning():
    bad = {**SQRT_OK, 0.1: Estimate(0.12, 0.01, 2)}
    v, reason = decide(bad, None, majority=0.51)
    assert v == "does not hold" and "p=0.1" in reason
    unsure = {**SQRT_OK, 0.1: Estimate(0.04, 0.02, 2)}
    assert decide(unsure, _scores(CLOSE), majority=0.51)[0] == "inconclusive"


def test_skipped_or_unlearned_fine_tuning_is_not_measured():
    v, reason = decide(SQRT_OK, None, majority=0.51)
    assert v == "not measured" and "skipped" in reason
    chance = [0.50, 0.52, 0.51, 0.51]
    v, reason = decide(SQRT_OK, {BASELINE: chance, F: chance, D: chance}, majority=0.51)
    assert v == "not measured" and reason.startswith("the model did not learn: AdamW")


def test_equivalence_and_margin():
    assert equivalence(Estimate(0.0, 0.01, 3), 0.05) == "holds"
    assert equivalence(Estimate(-0.2, 0.01, 3), 0.05) == "does not hold"
    assert equivalence(Estimate(0.2, 0.01, 3), 0.05) == "does not hold"
    assert equivalence(Estimate(0.04, 0.01, 3), 0.05) == "inconclusive"
    assert equivalence(Estimate(0.0, math.nan, 1), 0.05) == "inconclusive"
    assert ft_margin([0.5, 0.5, 0.5]) == MIN_MARGIN
    assert ft_margin(ADAMW) == pytest.approx(2 * 0.012909944, rel=1e-6)


def test_sqrt_p_deviation_propagates_the_standard_error():
    dev = sqrt_p_deviation({1.0: (1.0, 0.01), 0.25: (0.5, 0.01)})
    assert dev[0.25].mean == pytest.approx(0.0)
    assert dev[0.25].se == pytest.approx(0.5 * math.sqrt(0.02**2 + 0.01**2) / 0.5)
