"""The named AdaFactor presets: the settings behind ``AdaFactor.preset(name, params, **overrides)``.

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

from typing import Any, Literal

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


__all__ = ["ADAFACTOR_PRESETS", "AdaFactorPreset"]
