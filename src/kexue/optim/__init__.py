"""Optimizers from Scientific Spaces: AdaFactor with named presets, gradient accumulation folded into momentum
(also inside backward), ChildTuning, and learning-rate schedules that count update steps."""

from ._common import state_nbytes, state_numel
from .adafactor import PRESETS, AdaFactor, factored_axes

__all__ = ["PRESETS", "AdaFactor", "factored_axes", "state_nbytes", "state_numel"]
