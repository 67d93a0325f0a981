"""The `jl_lemma` reproduction's rule on stand-in measurements: every branch (the simulation guard, a bound under
the exact tail, Monte Carlo rates against the bounds, the projection's failure count against 1/N)."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binom

from kexue.reproduce import jl_lemma as J

DRAWS = 20000


def _cell(exact=0.1, bound=0.5, orth_bound=1.0, hits=None, orth_hits=100, n=50, eps=0.3):
    hits = round(exact * DRAWS) if hits is None else hits
    return J.TailCell(n, eps, exact, bound, orth_bound, hits, orth_hits, DRAWS)


GOOD = [_cell(), _cell(exact=1e-4, bound=2e-3, orth_bound=4e-3, orth_hits=0, n=1000)]


def test_holds_when_bounds_dominate_and_no_draw_fails():
    verdict, reason = J.decide(GOOD, 0, 10, 500)
    assert verdict == "holds"
    assert "0 of 10 draws" in reason


def test_not_measured_when_monte_carlo_disagrees_with_the_exact_tail():
    verdict, reason = J.decide([_cell(exact=0.1, hits=3000)], 0, 10, 500)  # 0.15 against 0.1: 23 s.e.
    assert verdict == "not measured" and "simulation is broken" in reason


def test_does_not_hold_when_a_bound_is_below_the_exact_tail():
    assert J.decide([_cell(exact=0.1, bound=0.05)], 0, 10, 500)[0] == "does not hold"


def test_does_not_hold_when_a_monte_carlo_rate_clearly_exceeds_its_bound():
    verdict, reason = J.decide([_cell(orth_bound=0.001, orth_hits=200)], 0, 10, 500)  # 0.01 ± 0.0007 > 0.001
    assert verdict == "does not hold" and "Monte Carlo rates under the bounds: does not hold" in reason


def test_inconclusive_when_a_rate_is_within_noise_of_its_bound():
    assert J.decide([_cell(orth_bound=0.005, orth_hits=100)], 0, 10, 500)[0] == "inconclusive"  # 0.005 ± 0.0005


@pytest.mark.parametrize("failures,want", [(0, "holds"), (1, "inconclusive"), (2, "does not hold")])
def test_projection_failures_against_a_rate_of_one_over_n(failures, want):
    # with rate 1/500: P(>= 1 of 10) = 0.02 (between 0.001 and 0.05), P(>= 2 of 10) = 1.8e-4
    assert J.decide(GOOD, failures, 10, 500)[0] == want


def test_binomial_tail_equals_scipy():
    for k, n, p in [(0, 10, 0.002), (1, 10, 0.002), (2, 10, 0.002), (5, 20, 0.3)]:
        assert J.binomial_tail(k, n, p) == pytest.approx(binom.sf(k - 1, n, p), rel=1e-10)
    assert math.isclose(J.binomial_tail(0, 5, 0.5), 1.0)
