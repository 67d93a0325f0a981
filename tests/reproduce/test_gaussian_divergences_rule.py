"""The `gaussian_divergences` reproduction's rule on stand-in measurements: every branch (Monte Carlo within and
beyond 4 standard errors, too noisy to tell, non-finite; closed-form pairs within and beyond tolerance), and the
full mode's pairs."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.reproduce.gaussian_divergences import ClosedCheck, MCCheck, _pair, decide, rel_gap
from kexue.stats import bhattacharyya_normal, kl_normal

MC_OK = [MCCheck("KL", 1.0, 1.002, 0.001), MCCheck("BD", 0.2, 0.1995, 0.0003)]  # 2.0 and 1.7 s.e.
CLOSED_OK = [ClosedCheck("W2 forms", 3.0, 3.0 + 1e-12), ClosedCheck("near zero", 0.0, 1e-10)]


def test_verified_when_every_check_agrees():
    verdict, reason = decide(MC_OK, CLOSED_OK)
    assert verdict == "verified"
    assert "all 2 Monte Carlo checks within 4 s.e. (largest 2.00 s.e.)" in reason


def test_monte_carlo_beyond_four_standard_errors_is_not_verified():
    verdict, reason = decide([*MC_OK, MCCheck("KL (n = 5)", 1.0, 1.005, 0.001)], CLOSED_OK)  # 5 s.e.
    assert verdict == "not verified" and "KL (n = 5)" in reason and "5.0 s.e." in reason


def test_monte_carlo_too_noisy_to_tell_is_not_verified():
    verdict, reason = decide([MCCheck("KL", 3.0, 3.1, 0.05)], CLOSED_OK)  # within 2 s.e., but 4 s.e. = 6.7 %
    assert verdict == "not verified" and "too noisy" in reason
    # near zero the yardstick is 1, not the value: 4 s.e. = 0.04 ≤ 5 % of max(1, 0.02)
    assert decide([MCCheck("BD", 0.02, 0.025, 0.01)], CLOSED_OK)[0] == "verified"


def test_non_finite_measurements_are_not_verified():
    assert decide([MCCheck("KL", 1.0, math.nan, 0.001)], CLOSED_OK)[0] == "not verified"
    assert decide(MC_OK, [ClosedCheck("W2", math.inf, 1.0)])[0] == "not verified"


def test_closed_form_pair_beyond_tolerance_is_not_verified():
    verdict, reason = decide(MC_OK, [*CLOSED_OK, ClosedCheck("sym vs Fréchet", 10.0, 10.0 + 1e-6)])  # 1e-7 relative
    assert verdict == "not verified" and "sym vs Fréchet" in reason
    assert decide(MC_OK, [ClosedCheck("loose", 10.0, 10.0 + 1e-6, tol=1e-6)])[0] == "verified"


def test_nothing_measured_is_not_verified():
    assert decide([], [])[0] == "not verified"


def test_rel_gap_is_absolute_near_zero_and_relative_elsewhere():
    assert rel_gap(0.0, 1e-9) == 1e-9
    assert rel_gap(1000.0, 1000.001) == pytest.approx(1e-6, rel=1e-5)


@pytest.mark.parametrize("n,cond", [(2, 1e6), (10, 1e3), (50, 1e6), (50, None)])
def test_full_mode_pairs_are_ill_conditioned_but_close(n, cond):
    """The full mode's pairs: Σ_p of the asked condition number, Σ_q as ill-conditioned, and KL, BD of order 1, the
    range where the Monte Carlo estimate of BD has a usable variance."""
    mp, sp, mq, sq = _pair(n, cond, seed=3, near=True)
    if cond is not None:
        assert torch.linalg.cond(sp).item() == pytest.approx(cond, rel=1e-3)
        assert torch.linalg.cond(sq).item() > cond / 100
    assert 0.01 < float(kl_normal(mp, sp, mq, sq)) < 5 and 0.001 < float(bhattacharyya_normal(mp, sp, mq, sq)) < 2
