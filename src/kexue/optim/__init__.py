"""Optimizers from Scientific Spaces: AdaFactor with named presets, gradient accumulation folded into momentum
(also inside backward), ChildTuning, and learning-rate schedules that count update steps."""

from .accumulate import AccumAdam, AccumAdamW, AccumMode, AccumSGDM, GradientRelease
from .adafactor import ADAFACTOR_PRESETS, AdaFactor, AdaFactorPreset, factored_axes
from .child_tuning import ChildTuning, ChildTuningMode, MaskOn, fisher_information, fisher_mask
from .schedules import piecewise_linear, piecewise_linear_factor, warmup_linear, warmup_linear_factor

__all__ = ["ADAFACTOR_PRESETS", "AccumAdam", "AccumAdamW", "AccumMode", "AccumSGDM", "AdaFactor", "AdaFactorPreset",
           "ChildTuning", "ChildTuningMode", "GradientRelease", "MaskOn", "factored_axes", "fisher_information",
           "fisher_mask", "piecewise_linear", "piecewise_linear_factor", "warmup_linear", "warmup_linear_factor"]
