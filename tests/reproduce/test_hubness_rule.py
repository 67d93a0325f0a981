"""The `hubness` reproduction's rule on stand-in measurements (every branch), and its measurement of one set."""

from __future__ import annotations

import torch

from kexue.reproduce import hubness as Hb

RISING = {2: [0.07, 0.08, 0.05], 16: [1.5, 1.51, 1.54], 64: [6.5, 7.3, 8.0], 512: [11.0, 12.5, 12.0]}
ANTI = {d: [-0.86, -0.87, -0.85] for d in RISING}


def test_holds_when_skew_rises_at_every_step_and_hubs_sit_near_the_centre():
    verdict, reason = Hb.decide(RISING, ANTI)
    assert verdict == "holds"
    assert "skew 512 − 64: holds" in reason and "≤ −0.5: holds" in reason


def test_does_not_hold_when_skew_falls_at_a_step():
    falling = {**RISING, 512: [3.0, 3.2, 2.9]}
    verdict, reason = Hb.decide(falling, ANTI)
    assert verdict == "does not hold" and "skew 512 − 64: does not hold" in reason


def test_does_not_hold_when_the_correlation_is_weak():
    weak = {**ANTI, 512: [-0.2, -0.25, -0.22]}
    verdict, reason = Hb.decide(RISING, weak)
    assert verdict == "does not hold" and "≤ −0.5: does not hold" in reason


def test_inconclusive_when_a_step_is_within_the_seed_spread():
    noisy = {**RISING, 512: [9.7, 19.8, 8.7]}  # quick mode's spread at d = 512
    verdict, reason = Hb.decide(noisy, ANTI)
    assert verdict == "inconclusive" and "skew 512 − 64: inconclusive" in reason


def test_inconclusive_when_the_correlation_interval_straddles_the_threshold():
    straddle = {**ANTI, 512: [-0.3, -0.6, -0.5]}  # mean -0.47 ± 0.09: short of -0.5, not clearly
    assert Hb.decide(RISING, straddle)[0] == "inconclusive"


def test_measure_counts_and_correlates_against_the_centre():
    z = torch.randn(600, 64, generator=torch.Generator().manual_seed(0))
    m, h = Hb._measure(z, torch.zeros(64))
    assert int(h.sum()) == 600 * Hb.K
    assert m["rho"] < -0.3 and m["skew"] > 0.5
    assert 0 <= m["hub_occupancy"] <= 1 and 0 <= m["antihubs"] <= 1
