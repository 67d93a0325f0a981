"""The ``adversarial`` reproduction's rule on stand-in measurements: every branch of
:func:`kexue.reproduce.adversarial.decide`."""

from __future__ import annotations

import numpy as np

from kexue.reproduce.adversarial import CLEAN_MARGIN, COS_MIN, ORDER_MIN, Measurements, decide

GOOD_EQ = ({"weight": 1.0, "output": 1.0}, {"weight": 2.0, "output": 2.0})


def _outcomes(acc: float, seeds: int = 3, n: int = 1000, jitter: float = 0.0) -> np.ndarray:
    """(seeds, n) correctness with accuracy ``acc`` (+ jitter·s on seed s); arms share their first hits."""
    out = np.zeros((seeds, n))
    for s in range(seeds):
        out[s, : round((acc + jitter * s) * n)] = 1
    return out


def _m(clean=(0.85, 0.85, 0.85), attack=(0.50, 0.60, 0.60), seeds=3, majority=0.5, eq=GOOD_EQ, jitter=0.0):
    names = ("plain", "FGM (post)", "gradient penalty")
    return Measurements(eq[0], eq[1], majority, {v: _outcomes(a, seeds, jitter=jitter) for v, a in zip(names, clean)},
                        {v: _outcomes(a, seeds) for v, a in zip(names, attack)})


def test_holds_when_both_are_more_robust_and_no_worse_clean():
    verdict, why = decide(_m())
    assert verdict == "holds", why


def test_does_not_hold_when_a_regulariser_costs_clean_accuracy():
    verdict, why = decide(_m(clean=(0.85, 0.78, 0.85)))
    assert verdict == "does not hold" and "(does not hold)" in why


def test_does_not_hold_when_a_regulariser_is_less_robust():
    assert decide(_m(attack=(0.50, 0.40, 0.60)))[0] == "does not hold"


def test_inconclusive_within_noise():
    verdict, _ = decide(_m(attack=(0.50, 0.501, 0.60)))
    assert verdict == "inconclusive"
    # clean loss of exactly the margin: the interval straddles −margin
    assert decide(_m(clean=(0.85, 0.85 - CLEAN_MARGIN, 0.85)))[0] == "inconclusive"


def test_margin_grows_with_the_seed_spread():
    # plain's clean accuracy varies by 3 points per seed: a 2-point clean loss is then inside the margin
    m = _m(clean=(0.80, 0.78, 0.80), jitter=0.03)
    verdict, why = decide(m)
    assert "-3-point margin" in why.replace("−", "-") and verdict == "holds"


def test_equivalence_failure_decides_first():
    verdict, why = decide(_m(eq=({"weight": COS_MIN - 0.01, "output": 1.0}, {"weight": 2.0, "output": 2.0})))
    assert verdict == "does not hold" and "weight scope" in why
    slow = ({"weight": 1.0, "output": 1.0}, {"weight": 2.0, "output": ORDER_MIN - 0.5})
    assert decide(_m(eq=slow))[0] == "does not hold"


def test_not_measured_and_skipped_branches():
    verdict, why = decide(_m(seeds=2))
    assert verdict == "not measured" and "at least 3" in why
    verdict, why = decide(_m(clean=(0.51, 0.51, 0.51)))
    assert verdict == "not measured" and why.startswith("the model did not learn: plain clean accuracy")
    no_ft = Measurements(*GOOD_EQ, 0.5, {}, {})
    assert decide(no_ft)[0] == "inconclusive"
