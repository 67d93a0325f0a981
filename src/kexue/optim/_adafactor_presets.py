"""AdaFactor's settings: the named presets behind ``AdaFactor.preset(name, params, **overrides)``, the option types,
and the check of a parameter group's options.

Su Jianlin, "AdaFactor优化器浅析（附开源实现）", 2020-03-23, https://kexue.fm/archives/7302. The presets reproduce
the well-known variants; each is parity-tested against its anchor (see ``tests/optim/test_adafactor.py``):

- ``"bert4keras"`` (the default; Su's final code): explicit lr = 1e−3; ε₁ added to g² and again inside the root;
  the two *largest* axes are factored when the second largest has at least 128 entries; optional momentum is an EMA
  of the clipped u, before parameter scaling; no weight decay.
- ``"paper"``: as bert4keras but with the relative step α_t = min(1e−2, 1/√t) and ε₁ added to g² only.
- ``"transformers"``: ``transformers.Adafactor()`` defaults: relative step, every ≥ 2-D tensor factored over its
  last two axes, momentum (if any) an EMA of the final lr-scaled update, weight decay θ ← θ − λ·α_t·scale·θ.
- ``"t5"``: ``transformers.Adafactor(lr=1e-3, relative_step=False, scale_parameter=False, warmup_init=False)``.
- ``"torch"``: ``torch.optim.Adafactor()`` defaults: α_t = min(lr, 1/√t) with lr = 1e−2, ε₁ = finfo(dtype).eps used
  as a floor (not added to g²), last two axes factored, weight decay θ ← θ(1 − lr·λ).

Import them from :mod:`kexue.optim` or :mod:`kexue.optim.adafactor`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from .._validate import check_choice, check_float, check_int
from ._adafactor_moments import Eps1Mode, FactorDims
from ._common import check_flag, check_optional_float

MomentumOn = Literal["clipped", "scaled_update"]
WeightDecayOn = Literal["lr", "step"]
AdaFactorPreset = Literal["bert4keras", "paper", "transformers", "t5", "torch"]

#: The named presets (:meth:`AdaFactor.preset`): overrides of the class defaults (which are the ``"bert4keras"``
#: preset), one entry per name of :data:`AdaFactorPreset`.
ADAFACTOR_PRESETS: dict[AdaFactorPreset, dict[str, Any]] = {
    "bert4keras": {},
    "paper": {"lr": None, "relative_step": True, "eps1_mode": "add"},
    "transformers": {"lr": None, "relative_step": True, "eps1_mode": "add", "factor_dims": "last",
                     "min_dim_size_to_factor": 0, "momentum_on": "scaled_update", "weight_decay_on": "step",
                     "unscaled_relative_factor": 1.0},
    "t5": {"lr": 1e-3, "relative_step": False, "scale_parameter": False, "eps1_mode": "add", "factor_dims": "last",
           "min_dim_size_to_factor": 0, "momentum_on": "scaled_update", "weight_decay_on": "step"},
    "torch": {"lr": 1e-2, "relative_step": True, "eps1": None, "eps1_mode": "floor", "factor_dims": "last",
              "min_dim_size_to_factor": 0, "weight_decay_on": "lr", "unscaled_relative_factor": 1.0},
}


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """An ``exclude_from_parameter_scale`` name pattern, compiled; ValueError naming it when it is not a regular
    expression."""
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ValueError(f"expected exclude_from_parameter_scale to hold regular expressions, got {pattern!r} ({e})"
                         ) from None


#: The group options :meth:`AdaFactor.step_size` reads.
STEP_SIZE_KEYS = ("lr", "relative_step", "warmup_init", "scale_parameter", "unscaled_relative_factor")


def check_group(group: Mapping[str, Any]) -> None:
    """The options of one AdaFactor parameter group (the constructor's, an added group's, a loaded group's)."""
    check_optional_float("lr", group["lr"], low=0.0)
    check_float("beta1", group["beta1"], low=0.0, high=1.0, high_open=True)
    # The post requires 0 < c < 1 (c = 1 would be the plain mean of all squared gradients).
    check_float("decay_exponent", group["decay_exponent"], low=0.0, high=1.0, low_open=True, high_open=True)
    check_optional_float("beta2", group["beta2"], low=0.0, high=1.0, high_open=True)
    # ε₁ = 0 divides 0 by 0 wherever a gradient entry has been 0 so far (every eps1_mode): NaN parameters
    check_optional_float("eps1", group["eps1"], low=0.0, low_open=True)
    check_float("eps2", group["eps2"], low=0.0)
    check_optional_float("clip_threshold", group["clip_threshold"], low=0.0, low_open=True)
    check_float("weight_decay", group["weight_decay"], low=0.0)
    check_float("unscaled_relative_factor", group["unscaled_relative_factor"], low=0.0, low_open=True)
    check_int("min_dim_size_to_factor", group["min_dim_size_to_factor"], minimum=0)
    check_choice("factor_dims", group["factor_dims"], FactorDims)
    check_choice("eps1_mode", group["eps1_mode"], Eps1Mode)
    check_choice("momentum_on", group["momentum_on"], MomentumOn)
    check_choice("weight_decay_on", group["weight_decay_on"], WeightDecayOn)
    for flag in ("scale_parameter", "relative_step", "warmup_init"):
        check_flag(flag, group[flag])
    check_flag("foreach", group["foreach"], optional=True)
    if group["warmup_init"] and not (group["relative_step"] or group["lr"] is None):
        raise ValueError("expected relative_step=True or lr=None with warmup_init=True (it scales the relative "
                         f"step), got relative_step=False and lr={group['lr']!r}")
    if group["warmup_init"] and group["lr"] is not None:
        raise ValueError("expected lr=None with warmup_init=True (the step is min(1e-6·t, 1/√t), which would ignore "
                         f"lr), got lr={group['lr']!r}")


__all__ = ["ADAFACTOR_PRESETS", "STEP_SIZE_KEYS", "AdaFactorPreset", "MomentumOn", "WeightDecayOn", "check_group",
           "compile_pattern"]
