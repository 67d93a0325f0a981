"""The `simsiam` reproduction's rule on stand-in measurements: every branch (the learned guard, the toy, collapse with
and without stop-gradient, SimSiam best by k-NN accuracy), and the pieces the run is built from (the exact limits of
the toy, the augmentation's roll)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kexue.reproduce import simsiam as S

N = 400
MAJORITY = 0.116


def _outcomes(rates, seed=0):
    """(seeds, N) 0/1 outcomes with the given per-seed accuracy, exactly round(rate·N) ones each."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in rates:
        row = np.zeros(N)
        row[rng.permutation(N)[: round(r * N)]] = 1.0
        rows.append(row)
    return np.stack(rows)


def _measurements(**over):
    collapse = {"simsiam": [0.86, 0.87, 0.85], "no_stopgrad": [0.30, 0.45, 0.38],
                "no_predictor": [0.96, 0.97, 0.95], "neither": [0.60, 0.65, 0.55]}
    acc = {"simsiam": [0.94, 0.95, 0.93], "no_stopgrad": [0.80, 0.84, 0.82], "no_predictor": [0.85, 0.84, 0.86],
           "neither": [0.80, 0.81, 0.79]}
    for k, v in over.items():
        kind, variant = k.split("__")
        (collapse if kind == "collapse" else acc)[variant] = v
    correct = {v: _outcomes(r, seed=i) for i, (v, r) in enumerate(acc.items())}
    return collapse, correct


def test_holds_when_the_toy_is_verified_and_stop_grad_with_predictor_wins_everywhere():
    collapse, correct = _measurements()
    verdict, reason = S.decide(True, collapse, correct, MAJORITY)
    assert verdict == "holds", reason
    assert reason.startswith("toy: verified") and reason.count(": holds") == 5


def test_not_measured_when_simsiam_does_not_beat_the_majority_class():
    collapse, correct = _measurements(acc__simsiam=[0.11, 0.12, 0.12])
    verdict, reason = S.decide(True, collapse, correct, MAJORITY)
    assert verdict == "not measured" and "did not learn" in reason and "majority class" in reason


def test_collapsed_variants_at_chance_are_the_effect_not_a_failure_to_learn():
    collapse, correct = _measurements(collapse__no_stopgrad=[0.01, 0.02, 0.015], acc__no_stopgrad=[0.1, 0.11, 0.1],
                                      acc__neither=[0.1, 0.1, 0.12])
    assert S.decide(True, collapse, correct, MAJORITY)[0] == "holds"


def test_does_not_hold_when_the_toy_is_not_verified():
    collapse, correct = _measurements()
    verdict, reason = S.decide(False, collapse, correct, MAJORITY)
    assert verdict == "does not hold" and "toy: not verified" in reason


def test_does_not_hold_when_removing_stop_grad_keeps_outputs_more_spread():
    collapse, correct = _measurements(collapse__no_stopgrad=[0.95, 0.96, 0.97])
    verdict, reason = S.decide(True, collapse, correct, MAJORITY)
    assert verdict == "does not hold"
    assert "stop-grad + predictor (SimSiam) − no stop-grad = -0.100" in reason


def test_does_not_hold_when_another_variant_has_clearly_better_knn_accuracy():
    collapse, correct = _measurements(acc__no_predictor=[0.99, 0.99, 0.99])
    verdict, reason = S.decide(True, collapse, correct, MAJORITY)
    assert verdict == "does not hold" and "SimSiam − stop-grad, no predictor = -0.050" in reason


def test_inconclusive_when_a_collapse_difference_is_within_seed_noise():
    # without the predictor, stop-grad against neither: +0.1, -0.1, +0.05 -> mean 0.017 ± 0.06
    collapse, correct = _measurements(collapse__neither=[0.86, 1.07, 0.90])
    verdict, reason = S.decide(True, collapse, correct, MAJORITY)
    assert verdict == "inconclusive" and "stop-grad, no predictor − neither = +0.017" in reason


def test_inconclusive_when_a_knn_gain_is_within_noise():
    collapse, correct = _measurements(acc__neither=[0.935, 0.95, 0.94])
    assert S.decide(True, collapse, correct, MAJORITY)[0] == "inconclusive"


def test_comparisons_are_paired_over_seeds():
    collapse, correct = _measurements()
    comps = S.comparisons(collapse, correct)
    assert len(comps) == 5
    first = comps[0].effect  # SimSiam − no stop-grad, per seed 0.56, 0.42, 0.47
    d = np.array([0.86 - 0.30, 0.87 - 0.45, 0.85 - 0.38])
    assert first.mean == pytest.approx(d.mean()) and first.se == pytest.approx(d.std(ddof=1) / math.sqrt(3))


def test_exact_limits_of_the_toy():
    assert S._limit("stopgrad") == pytest.approx((1.0, math.sqrt(0.65)))
    assert S._limit("full") == pytest.approx((1 - math.sqrt(0.15), 0.0))
    assert S._limit("direct_only") == pytest.approx((0.605, 0.0))


def test_roll_index_equals_torch_roll():
    img = torch.arange(64.0).reshape(1, 8, 8)
    shifts = [(i, j) for i in (-1, 0, 1) for j in (-1, 0, 1)]
    for k, (i, j) in enumerate(shifts):
        want = torch.roll(img, shifts=(i, j), dims=(1, 2)).reshape(1, 64)
        assert torch.equal(img.reshape(1, 64)[:, S.ROLLS[k]], want)


def test_augment_drops_about_thirty_percent_and_adds_noise_of_std_point_one():
    x = torch.ones(2000, 64)
    g = torch.Generator().manual_seed(0)
    v = S.augment(x, g)
    dropped = (v < 0.5).double().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.01)
    assert (v[v > 0.5] - 1).std().item() == pytest.approx(0.1, abs=0.005)
