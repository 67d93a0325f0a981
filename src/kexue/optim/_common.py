"""Helpers shared by the kexue optimizers: state precision, argument checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


#: Per-parameter state a kexue optimizer creates: each key with the shape its tensor has (None: a number).
StateShapes = dict[str, "tuple[int, ...] | None"]
#: (required, optional) state keys of one parameter, given the saved group options and the parameter.
StateSpec = Callable[[Mapping[str, Any], Tensor], tuple[StateShapes, StateShapes]]

_NOT_OPTIONS = ("params", "param_names")


def check_state_dict(optimizer: Optimizer, state_dict: Any, spec: StateSpec | None = None,
                     name: str | None = None) -> None:
    """Check that ``state_dict`` fits ``optimizer`` before anything is loaded; ValueError saying what does not fit.

    The kind of optimizer (each saved parameter group has the same option names as the optimizer's), the number of
    groups and of parameters in each, and, with ``spec``, each parameter's state keys and the shapes of its tensors.
    ``name`` (the optimizer's class name by default) is what the messages call the optimizer.
    """
    name = name or type(optimizer).__name__
    if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
        got = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
        raise ValueError(f"expected a state dict with 'state' and 'param_groups' entries, got {got}")
    saved_groups, state = state_dict["param_groups"], state_dict["state"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"expected a state dict with {len(optimizer.param_groups)} parameter groups (as this {name} "
                         f"has), got {len(saved_groups)}")
    saved_ids = set()
    for gi, (saved, mine) in enumerate(zip(saved_groups, optimizer.param_groups)):
        ours = sorted(k for k in mine if k not in _NOT_OPTIONS)
        theirs = sorted(k for k in saved if k not in _NOT_OPTIONS)
        if ours != theirs:
            raise ValueError(f"expected a state dict saved by {name} (parameter groups with options {ours}), got "
                             f"parameter group {gi} with options {theirs}")
        if len(saved["params"]) != len(mine["params"]):
            raise ValueError(f"expected {len(mine['params'])} parameters in parameter group {gi} (as this {name} "
                             f"has), got {len(saved['params'])}")
        saved_ids.update(saved["params"])
        if spec is None:
            continue
        for i, (saved_id, p) in enumerate(zip(saved["params"], mine["params"])):
            where = f"the {tuple(p.shape)} parameter at index {i} of parameter group {gi}"
            st = state.get(saved_id)
            if not st:
                continue
            required, optional = spec(saved, p)
            missing = sorted(set(required) - set(st))
            extra = sorted(set(st) - set(required) - set(optional))
            if missing or extra:
                raise ValueError(f"expected state keys {sorted(required)} for {where}, got {sorted(st)} "
                                 f"(missing {missing}, unexpected {extra})")
            for key, shape in {**required, **optional}.items():
                if shape is None or key not in st:
                    continue
                value = st[key]
                got_shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                if got_shape != shape:
                    raise ValueError(f"expected state {key!r} of shape {shape} for {where}, got {got_shape}")
    unknown = sorted(k for k in state if k not in saved_ids)
    if unknown:
        raise ValueError(f"expected state only for the saved parameters {sorted(saved_ids)}, got state for {unknown}")


def check_optional_float(name: str, value: Any, **interval: Any) -> None:
    """:func:`kexue._validate.check_float` for an argument that may also be None (None passes)."""
    if value is not None:
        check_float(name, value, **interval)


__all__ = ["StateShapes", "StateSpec", "check_optional_float", "check_state_dict", "restore_state_precision",
           "state_dtype"]
