"""Optimizers from Scientific Spaces: AdaFactor with named presets, gradient accumulation folded into momentum
(also inside backward), ChildTuning, and learning-rate schedules that count update steps."""

from .accumulate import AccumAdam, AccumAdamW, AccumSGDM, GradientRelease
from .adafactor import PRESETS, AdaFactor, factored_axes
from .child_tuning import ChildTuning, fisher_information, fisher_mask
from .schedules import piecewise_linear, warmup_linear

__all__ = ["PRESETS", "AccumAdam", "AccumAdamW", "AccumSGDM", "AdaFactor", "ChildTuning", "GradientRelease",
           "factored_axes", "fisher_information", "fisher_mask", "piecewise_linear", "warmup_linear"]
