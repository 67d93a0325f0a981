"""Argument checks shared by the modules of :mod:`kexue.train` (token ids, modules, saved states), in the message
style of :mod:`kexue._validate`: ``expected NAME ..., got ...``. Private; nothing here is exported."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn


def check_module(name: str, obj: Any) -> nn.Module:
    """``obj`` if it is an ``nn.Module``, else ``TypeError("expected NAME to be an nn.Module, got TYPE")``."""
    if not isinstance(obj, nn.Module):
        raise TypeError(f"expected {name} to be an nn.Module, got {type(obj).__name__}")
    return obj


def check_token_ids(name: str, x: Any) -> Tensor:
    """``x`` if it is a tensor of an integer dtype (token ids), else a ``TypeError`` naming what came."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a tensor of integer token ids, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"expected {name} to hold integer token ids, got {x.dtype}")
    return x


def int_ids(name: str, ids: Iterable[Any]) -> list[int]:
    """The sorted distinct integers of ``ids`` (Python, numpy or 0-d integer tensor values), else a ``TypeError``
    naming the first value that is not an integer."""
    out: set[int] = set()
    for i in ids:
        v = i.item() if isinstance(i, Tensor) and i.dim() == 0 and not i.is_floating_point() else i
        if not isinstance(v, numbers.Integral) or isinstance(v, bool):
            raise TypeError(f"expected {name} to hold integer token ids, got {i!r}")
        out.add(int(v))
    return sorted(out)


def check_state(owner: str, state: Any, keys: Iterable[str]) -> Mapping[str, Any]:
    """``state`` if it is a mapping holding every key of ``keys`` (``owner``'s ``state_dict``; ``owner`` with its
    article, "an MLMMasking"), else a ``TypeError`` (not a mapping) or ``KeyError`` naming the first missing key and
    the keys that came."""
    if not isinstance(state, Mapping):
        raise TypeError(f"expected state to be a dict ({owner} state_dict), got {type(state).__name__}")
    for key in keys:
        if key not in state:
            raise KeyError(f"expected {owner} state_dict with {key!r}, got keys {sorted(state)}")
    return state


__all__ = ["check_module", "check_state", "check_token_ids", "int_ids"]
