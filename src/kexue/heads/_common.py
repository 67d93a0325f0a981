"""What the heads share: checks of hidden states and masks, and the fill value of masked scores."""

from __future__ import annotations

import torch
from torch import Tensor

from ..nn.masks import _odd_mask_values, _refuse_odd_mask


def check_states(name: str, x: object, hidden: int) -> Tensor:
    """``x`` if it is a floating-point tensor of shape (batch, seq, hidden)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 3 or x.shape[-1] != hidden:
        raise ValueError(f"expected {name} of shape (batch, seq, {hidden}), got {tuple(x.shape)}")
    return x


def check_mask(name: str, mask: object, shape: tuple[int, ...]) -> Tensor:
    """``mask`` as a bool tensor if it is a bool or 0/1 integer tensor of ``shape`` (True/1: a real token)."""
    if not isinstance(mask, Tensor) or mask.is_floating_point() or mask.is_complex():
        raise TypeError(f"expected {name} to be a bool or 0/1 integer tensor, got "
                        f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if tuple(mask.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {tuple(mask.shape)}")
    if bool(_odd_mask_values(mask)):  # always False for a bool mask
        _refuse_odd_mask(mask, name, "real token", "padding")
    return mask.bool()


def check_logits(name: str, x: object, dims: int, what: str) -> Tensor:
    """``x`` if it is a floating-point tensor with ``dims`` dimensions (``what`` names them in the message)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != dims:
        raise ValueError(f"expected {name} of shape {what}, got {tuple(x.shape)}")
    return x


def masked_fill_value(dtype: torch.dtype) -> float:
    """The score a masked position gets: the dtype's most negative finite number (never > 0 or any threshold, e^s
    underflows to exactly 0, and no −∞ to make a softmax over an all-masked row NaN)."""
    return torch.finfo(dtype).min
