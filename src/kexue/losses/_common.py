"""What the losses share: the ``Reduction`` choice, the compute dtype, the reduction and the label checks.

Every loss computes in at least float32 (a bf16 or fp16 input is upcast first; float64 stays float64).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .._validate import check_choice

Reduction = Literal["mean", "sum", "none"]


def compute_dtype(x: Tensor, name: str = "logits") -> torch.dtype:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected {name} to be floating-point, got dtype {x.dtype}")
    return torch.promote_types(x.dtype, torch.float32)


def reduce_loss(loss: Tensor, reduction: Reduction) -> Tensor:
    """Apply a reduction the public entry has checked."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_reduction(reduction: Reduction) -> None:
    check_choice("reduction", reduction, Reduction)


def check_rows(name: str, x: Tensor, rows: int, reduction: Reduction) -> None:
    """Refuse an empty batch under ``reduction="mean"``: the mean over no rows is NaN, which would reach the
    optimizer silently. ``rows``: the number of rows ``x`` (named ``name``) holds."""
    if reduction == "mean" and rows == 0:
        raise ValueError(f"expected {name} with at least one row for reduction='mean' (the mean of no rows is NaN), "
                         f"got shape {tuple(x.shape)}")


def check_labels(name: str, target: object, num_classes: int, shape: tuple[int, ...]) -> Tensor:
    """``target`` as a long tensor of class indices of ``shape``, each in [0, num_classes)."""
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"expected {name} to be an integer tensor, got {getattr(target, 'dtype', type(target))}")
    if tuple(target.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"expected {name} values in [0, {num_classes}), got {int(target.min())}.."
                         f"{int(target.max())}")
    return target.long()

