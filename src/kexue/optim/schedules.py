"""Learning-rate schedules as ``LambdaLR`` factories that count update steps.

- :func:`warmup_linear`: linear warm-up from 0 to 1 over ``warmup_steps`` updates, then linear decay to
  ``final_factor`` at ``total_steps`` (constant after), the usual BERT fine-tuning schedule;
- :func:`piecewise_linear`: bert4keras' ``piecewise_linear(t, schedule)``, a ``{step: factor}`` dict joined by straight
  lines, from (0, 0) unless the dict starts at step 0 or ``from_zero=False``, constant after the last point
  (bert4keras: ``{1000: 1, 2000: 0.1}`` warms up for 1000 updates, decays to 0.1 by 2000, then stays).

Both multiply each group's initial lr by the factor at step n, where n is the number of **updates** made so far
(0 before the first). With the accumulating optimizers of :mod:`kexue.optim.accumulate` n is read from their
``update_count``, so calling the scheduler's ``step()`` after every micro-step is harmless and the lr of the update
that closes cycle n is the factor at n (the post's α_{kt}). With any other optimizer n is the scheduler's own count:
call its ``step()`` once per ``optimizer.step()``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .._validate import check_float, check_int


def warmup_linear_factor(step: int, warmup_steps: int, total_steps: int, final_factor: float = 0.0) -> float:
    """The factor at update ``step``: step/warmup_steps while warming up, then a straight line to ``final_factor``
    at ``total_steps``, then ``final_factor``."""
    check_float("step", step, low=0.0)
    _check_warmup(warmup_steps, total_steps, final_factor)
    return _warmup_linear_factor(step, warmup_steps, total_steps, final_factor)


def _warmup_linear_factor(step: float, warmup_steps: int, total_steps: int, final_factor: float) -> float:
    if step < warmup_steps:
        return step / warmup_steps
    if step >= total_steps:
        return final_factor
    return 1.0 - (1.0 - final_factor) * (step - warmup_steps) / (total_steps - warmup_steps)


def piecewise_linear_factor(step: float, schedule: Mapping[int, float], from_zero: bool = True) -> float:
    """bert4keras' ``piecewise_linear``: linear interpolation through the sorted ``{step: factor}`` points, with
    (0, 0.0) prepended when ``from_zero`` and the first point is not at 0; the first factor before the first point
    and the last factor after the last one."""
    check_float("step", step, low=0.0)
    return _piecewise_linear_factor(step, _check_schedule(schedule, from_zero), from_zero)


def _piecewise_linear_factor(step: float, points: list[tuple[int, float]], from_zero: bool) -> float:
    """:func:`piecewise_linear_factor` through ``points``, the checked schedule sorted by step."""
    if from_zero and points[0][0] != 0:
        points = [(0, 0.0)] + points
    if step <= points[0][0]:
        return float(points[0][1])
    for (t0, x0), (t1, x1) in zip(points, points[1:]):
        if step < t1:
            return x0 + (x1 - x0) * (step - t0) / (t1 - t0)
    return float(points[-1][1])


def _update_count(optimizer: Optimizer) -> int | None:
    """The optimizer's number of parameter updates if it counts them (accumulating optimizers, and wrappers such as
    :class:`~kexue.optim.child_tuning.ChildTuning` around one), else None."""
    opt: Any = optimizer
    while opt is not None:
        n = getattr(opt, "update_count", None)
        if n is not None:
            return int(n)
        opt = getattr(opt, "base", None)
    return None


def _lambda(optimizer: Optimizer, factor: Callable[[int], float]) -> Callable[[int], float]:
    def lr_lambda(last_epoch: int) -> float:
        n = _update_count(optimizer)
        return factor(last_epoch if n is None else n)

    return lr_lambda


def warmup_linear(optimizer: Optimizer, warmup_steps: int, total_steps: int, final_factor: float = 0.0,
                  last_epoch: int = -1) -> LambdaLR:
    """``LambdaLR`` with :func:`warmup_linear_factor`, counting update steps (see the module docstring).

    With ``final_factor=0`` this is ``transformers.get_linear_schedule_with_warmup``.
    """
    _check_optimizer(optimizer)
    _check_warmup(warmup_steps, total_steps, final_factor)
    return LambdaLR(optimizer, _lambda(optimizer, lambda n: _warmup_linear_factor(n, warmup_steps, total_steps,
                                                                                  final_factor)), last_epoch)


def piecewise_linear(optimizer: Optimizer, schedule: Mapping[int, float], from_zero: bool = True,
                     last_epoch: int = -1) -> LambdaLR:
    """``LambdaLR`` with bert4keras' :func:`piecewise_linear_factor`, counting update steps."""
    _check_optimizer(optimizer)
    points = _check_schedule(schedule, from_zero)
    return LambdaLR(optimizer, _lambda(optimizer, lambda n: _piecewise_linear_factor(n, points, from_zero)),
                    last_epoch)


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected optimizer to be a torch.optim.Optimizer, got {type(optimizer).__name__}")


def _check_warmup(warmup_steps: int, total_steps: int, final_factor: float) -> None:
    check_int("warmup_steps", warmup_steps, minimum=0)
    check_int("total_steps", total_steps, minimum=0)
    if total_steps <= warmup_steps:
        raise ValueError(f"expected total_steps > warmup_steps, got total_steps={total_steps}, "
                         f"warmup_steps={warmup_steps}")
    check_float("final_factor", final_factor, low=0.0)


def _check_schedule(schedule: Mapping[int, float], from_zero: bool) -> list[tuple[int, float]]:
    """The ``{step: factor}`` points sorted by step, after checking them (and ``from_zero``)."""
    if not isinstance(from_zero, bool):
        raise TypeError(f"expected from_zero to be a bool, got {from_zero!r}")
    if not isinstance(schedule, Mapping):
        raise TypeError(f"expected schedule to be a {{step: factor}} dict, got {type(schedule).__name__}")
    if not schedule:
        raise ValueError(f"expected schedule to be a non-empty {{step: factor}} dict, got {schedule!r}")
    for t, x in schedule.items():
        check_int("schedule step", t, minimum=0)
        check_float(f"schedule[{t}]", x, low=0.0)
    return sorted((t, float(x)) for t, x in schedule.items())


__all__ = ["piecewise_linear", "piecewise_linear_factor", "warmup_linear", "warmup_linear_factor"]
