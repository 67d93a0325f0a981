"""The `wgan_gn` reproduction's rule on stand-in measurements (every branch: the learned guard, the bounds, the
inner-product critic failing, GN slower than GP), and its math part's checks on real random critics."""

from __future__ import annotations

from kexue.reproduce import wgan_gn as W

INIT = 0.0


def _measurements(**over):
    hq = {"gn": [0.40, 0.45, 0.42], "gp": [0.30, 0.35, 0.33], "gran": [0.0, 0.01, 0.0], "inner": [0.0, 0.0, 0.01]}
    ms = {"gn": [30.0, 33.0, 31.0], "gp": [20.0, 22.0, 21.0], "gran": [30.0, 31.0, 29.0], "inner": [25.0, 26.0, 24.0]}
    for k, v in over.items():
        kind, variant = k.split("__")
        (hq if kind == "hq" else ms)[variant] = v
    return hq, ms


def test_holds_when_bounds_hold_inner_fails_and_gn_is_slower():
    hq, ms = _measurements()
    verdict, reason = W.decide(True, hq, ms, INIT)
    assert verdict == "holds", reason
    assert reason.startswith("bounds: verified") and reason.count(": holds") == 2


def test_not_measured_when_gn_does_not_beat_the_untrained_generator():
    hq, ms = _measurements(hq__gn=[0.0, 0.001, 0.0])
    verdict, reason = W.decide(True, hq, ms, INIT)
    assert verdict == "not measured" and "did not learn" in reason and "untrained generator" in reason


def test_does_not_hold_when_the_bounds_fail():
    hq, ms = _measurements()
    verdict, reason = W.decide(False, hq, ms, INIT)
    assert verdict == "does not hold" and "bounds: not verified" in reason


def test_does_not_hold_when_the_inner_product_critic_beats_gn():
    hq, ms = _measurements(hq__inner=[0.6, 0.65, 0.62])
    assert W.decide(True, hq, ms, INIT)[0] == "does not hold"


def test_does_not_hold_when_gn_is_clearly_faster_than_gp():
    hq, ms = _measurements(ms__gn=[10.0, 11.0, 10.5])
    verdict, reason = W.decide(True, hq, ms, INIT)
    assert verdict == "does not hold" and "GN 0.5" in reason


def test_inconclusive_when_the_timings_are_noisy():
    hq, ms = _measurements(ms__gn=[15.0, 30.0, 25.0])
    assert W.decide(True, hq, ms, INIT)[0] == "inconclusive"


def test_the_math_part_verifies_on_random_critics_and_its_check_can_fail():
    worst = W._bounds(n_critics=6, n_points=50)
    assert W._bounds_ok(worst), worst
    assert not W._bounds_ok(worst | {"gn_grad": 1.01})
    assert not W._bounds_ok(worst | {"ideal_unit": 1e-3})
