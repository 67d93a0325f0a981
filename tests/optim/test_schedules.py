"""Schedules: warm-up/linear decay against transformers, piecewise-linear against numpy.interp, update counting."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kexue.optim import (
    AccumAdamW,
    AdaFactor,
    piecewise_linear,
    piecewise_linear_factor,
    warmup_linear,
    warmup_linear_factor,
)
from kexue.optim.schedules import _update_count


def _lrs(sched, opt, n):
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_linear_is_transformers_linear_schedule():
    from transformers import get_linear_schedule_with_warmup

    p = nn.Parameter(torch.zeros(1))
    a = torch.optim.SGD([p], lr=0.3)
    b = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.3)
    ours = _lrs(warmup_linear(a, 7, 50), a, 60)
    ref = _lrs(get_linear_schedule_with_warmup(b, 7, 50), b, 60)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_warmup_linear_final_factor_and_errors():
    assert warmup_linear_factor(0, 10, 20, 0.1) == 0.0
    np.testing.assert_allclose([warmup_linear_factor(t, 10, 20, 0.1) for t in range(10, 25)],
                               np.interp(np.arange(10, 25), [10, 20], [1.0, 0.1]), rtol=1e-12)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="total_steps > warmup_steps, got total_steps=5, warmup_steps=5"):
        warmup_linear(opt, 5, 5)
    with pytest.raises(ValueError, match="expected warmup_steps >= 0, got -1"):
        warmup_linear(opt, -1, 5)
    with pytest.raises(TypeError, match="expected total_steps to be an integer, got 5.0"):
        warmup_linear(opt, 1, 5.0)
    with pytest.raises(ValueError, match="expected final_factor >= 0.0, got -0.1"):
        warmup_linear(opt, 1, 5, final_factor=-0.1)


@pytest.mark.parametrize("schedule,from_zero", [({1000: 1.0, 2000: 0.1}, True), ({0: 0.5, 10: 1.0, 30: 0.0}, True),
                                                ({5: 1.0, 15: 0.2}, False), ({3: 2.0}, True)])
def test_piecewise_linear_is_numpy_interp(schedule, from_zero):
    pts = sorted(schedule.items())
    if from_zero and pts[0][0] != 0:
        pts = [(0, 0.0)] + pts
    ts = np.arange(0, max(schedule) + 50)
    ref = np.interp(ts, [t for t, _ in pts], [x for _, x in pts])  # constant beyond both ends, as bert4keras
    ours = [piecewise_linear_factor(int(t), schedule, from_zero) for t in ts]
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-15)


def test_piecewise_linear_lambda_lr_and_errors():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)
    lrs = _lrs(piecewise_linear(opt, {4: 1.0, 8: 0.5}), opt, 10)
    np.testing.assert_allclose(lrs, 2.0 * np.interp(np.arange(10), [0, 4, 8], [0.0, 1.0, 0.5]), rtol=1e-12)
    for bad, match in (({}, "expected schedule to be a non-empty \\{step: factor\\} dict, got \\{\\}"),
                       ({-1: 1.0}, "expected schedule step >= 0, got -1"),
                       ({3: -1.0}, "expected schedule\\[3\\] >= 0.0, got -1.0")):
        with pytest.raises(ValueError, match=match):
            piecewise_linear(opt, bad)
    with pytest.raises(TypeError, match="expected schedule to be a \\{step: factor\\} dict, got list"):
        piecewise_linear(opt, [(4, 1.0)])


def test_schedules_count_updates_of_accumulating_optimizers():
    p = nn.Parameter(torch.zeros(2))
    opt = AccumAdamW([p], lr=1.0, k=3)
    sched = warmup_linear(opt, 2, 6)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        p.grad = torch.ones(2)
        opt.step()
        sched.step()  # after every micro-step: the factor follows opt.update_count
    # update n (cycle n) uses the factor at n: micro-steps 3n+1..3n+3 see it
    expected = [warmup_linear_factor(n, 2, 6) for n in range(4) for _ in range(3)]
    assert seen == pytest.approx(expected)
    assert _update_count(opt) == 4 and _update_count(torch.optim.SGD([p], lr=0.1)) is None


def test_schedule_scales_adafactor_lr():
    p = nn.Parameter(torch.ones(3))
    opt = AdaFactor([p], lr=1e-3)
    sched = warmup_linear(opt, 2, 4)
    assert _lrs(sched, opt, 5) == pytest.approx([0.0, 5e-4, 1e-3, 5e-4, 0.0])
