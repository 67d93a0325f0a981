"""accumulation: every branch of its rule on stand-in measurements, and the stacked-lr reparametrisation."""

from __future__ import annotations

import pytest
import torch

from kexue.reproduce.accumulation import BASE, EVERY_K, StackedMLP, best_lr, decide

PER_STEP = [0.950, 0.948, 0.952, 0.949]


def _best(a, b, base=PER_STEP):
    return {BASE: base, EVERY_K[0]: a, EVERY_K[1]: b}


UP = [0.960, 0.957, 0.963, 0.960]    # +0.010 … +0.011 paired
DOWN = [0.940, 0.937, 0.943, 0.938]  # −0.010 … −0.011
FLAT = [0.955, 0.944, 0.951, 0.950]  # +0.005, −0.004, −0.001, +0.001


@pytest.mark.parametrize("a,b,verdict", [
    (UP, UP, "holds"),
    (UP, DOWN, "does not hold"),
    (DOWN, FLAT, "does not hold"),
    (UP, FLAT, "inconclusive"),
    (FLAT, FLAT, "inconclusive"),
])
def test_the_comparison_branches(a, b, verdict):
    v, reason = decide(True, _best(a, b), majority=0.10)
    assert v == verdict and EVERY_K[0] in reason and "s.e." in reason


def test_inexact_folding_does_not_hold():
    v, reason = decide(False, _best(UP, UP), majority=0.10)
    assert v == "does not hold" and "1e-12" in reason


def test_a_model_that_did_not_learn_is_not_measured():
    chance = [0.10, 0.11, 0.09, 0.10]
    v, reason = decide(True, _best(UP, chance), majority=0.10)
    assert v == "not measured" and reason.startswith(f"the model did not learn: {EVERY_K[1]}")
    assert decide(True, _best(UP, UP, base=chance), majority=0.10)[0] == "not measured"


def test_best_lr_takes_the_highest_mean_validation_accuracy():
    import numpy as np

    val = np.array([[0.90, 0.92], [0.95, 0.91], [0.93, 0.94]])  # means 0.91, 0.93, 0.935
    assert best_lr(val) == 2


def test_scaled_slices_train_at_lr_times_scale():
    """Adam on w = c·u moves w as Adam at lr·c would: slices of one stacked model train several lrs. (ε enters as
    ε/c; a tiny ε here keeps that out of the comparison, as gradients near ε are the only place it shows.)"""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 64)
    y = torch.randint(0, 10, (5, 3))

    def train(model, lr):
        opt = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-14)
        model.eval()  # no dropout: the runs must see the same function
        for i in range(5):
            s = model.c.numel()
            loss = torch.nn.functional.cross_entropy(model(x[i].expand(s, -1, -1)).flatten(0, 1),
                                                     y[i].repeat(s), reduction="sum") / 3
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.w1 * model.c, model.b2 * model.c

    stacked = train(StackedMLP([7, 7], scales=[1.0, 4.0]), 1e-3)
    for s, lr in enumerate([1e-3, 4e-3]):
        alone = train(StackedMLP([7]), lr)
        for a, b in zip(stacked, alone):
            torch.testing.assert_close(a[s], b[0], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="one positive scale per slice"):
        StackedMLP([1, 2], scales=[1.0])
