"""init_std's verdict rule on stand-in per-seed log ratios: every branch."""

from __future__ import annotations

import math

from kexue.reproduce.init_std import decide

DECAY = [1.0, 1.1, 0.9, 1.05]  # ln(last/first) > 0: Post-LN decays towards the input
SOFTER = [0.5, 0.6, 0.4, 0.55]  # smaller than DECAY seed by seed
FLAT = [0.05, -0.05, 0.0, 0.02]


def test_holds_when_every_part_holds():
    verdict, reason = decide(DECAY, SOFTER, FLAT)
    assert verdict == "holds" and "Pre-LN flat within 2x: holds" in reason


def test_no_decay_does_not_hold():
    grows = [-1.0, -1.1, -0.9, -1.05]
    assert decide(grows, [x - 0.5 for x in grows], FLAT)[0] == "does not hold"


def test_a_larger_std_softening_does_not_hold():
    assert decide(SOFTER, DECAY, FLAT)[0] == "does not hold"


def test_pre_ln_far_from_flat_does_not_hold():
    steep = [math.log(4)] * 3 + [math.log(4.2)]
    assert decide(DECAY, SOFTER, steep)[0] == "does not hold"


def test_noise_gives_inconclusive():
    noisy = [1.0, -1.0, 0.5, -0.4]
    assert decide(noisy, [x - 0.1 for x in noisy], FLAT)[0] == "inconclusive"
    straddling = [0.5, 0.9, 0.2, 0.8]  # Pre-LN interval crosses ln 2
    assert decide(DECAY, SOFTER, straddling)[0] == "inconclusive"
    assert decide(DECAY, SOFTER, [0.1])[0] == "inconclusive"  # one seed: no standard error
