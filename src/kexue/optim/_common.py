"""Helpers shared by the kexue optimizers: state precision, argument checks."""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._validate import check_float


def state_dtype(param: Tensor) -> torch.dtype:
    """The dtype optimizer state is kept in: fp32 for fp32 and lower-precision parameters, fp64 for fp64 ones."""
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def restore_state_precision(optimizer: Optimizer, state_dict: dict[str, Any]) -> None:
    """Undo the cast that :meth:`torch.optim.Optimizer.load_state_dict` applies to floating state.

    torch casts every floating state tensor to its parameter's dtype; our state is fp32 (fp64 for fp64 parameters)
    whatever the parameter dtype, so a bf16 model's state would lose precision on a round trip. Call this right after
    ``super().load_state_dict(state_dict)`` with the same ``state_dict``: it re-reads the saved tensors.
    """
    saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
    params = chain.from_iterable(g["params"] for g in optimizer.param_groups)
    for saved_id, p in zip(saved_ids, params):
        saved = state_dict["state"].get(saved_id)
        if not saved:
            continue
        for key, value in saved.items():
            if isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0:
                optimizer.state[p][key] = value.detach().to(device=p.device, dtype=state_dtype(p), copy=True)


def check_optional_float(name: str, value: Any, **interval: Any) -> None:
    """:func:`kexue._validate.check_float` for an argument that may also be None (None passes)."""
    if value is not None:
        check_float(name, value, **interval)


__all__ = ["check_optional_float", "restore_state_precision", "state_dtype"]
