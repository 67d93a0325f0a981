"""Helpers shared by the kexue optimizers: state precision, argument, gradient and state-dict checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import chain
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._validate import check_float, check_int


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
            if isinstance(value, Tensor) and value.is_floating_point():  # 0-d too: a 0-d parameter's moments
                optimizer.state[p][key] = value.detach().to(device=p.device, dtype=state_dtype(p), copy=True)


#: Per-parameter state a kexue optimizer creates: each key with the shape its tensor has (None: a number).
StateShapes = dict[str, "tuple[int, ...] | None"]
#: (required, optional) state keys of one parameter, given the saved group options and the parameter.
StateSpec = Callable[[Mapping[str, Any], Tensor], tuple[StateShapes, StateShapes]]

_NOT_OPTIONS = ("params", "param_names")


def check_state_dict_form(state_dict: Any) -> None:
    """A mapping with ``state`` and ``param_groups`` entries (what ``Optimizer.state_dict()`` returns), else
    ValueError (TypeError for something that is not a mapping at all)."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"expected a state dict (a mapping with 'state' and 'param_groups' entries), got "
                        f"{type(state_dict).__name__}")
    if "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError(f"expected a state dict with 'state' and 'param_groups' entries, got {sorted(state_dict)}")


def check_state_dict(optimizer: Optimizer, state_dict: Any, spec: StateSpec | None = None,
                     name: str | None = None) -> None:
    """Check that ``state_dict`` fits ``optimizer`` before anything is loaded; ValueError saying what does not fit.

    The kind of optimizer (each saved parameter group has the same option names as the optimizer's), the number of
    groups and of parameters in each, and, with ``spec``, each parameter's state keys and the shapes of its tensors.
    ``name`` (the optimizer's class name by default) is what the messages call the optimizer.
    """
    name = name or type(optimizer).__name__
    check_state_dict_form(state_dict)
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


def check_count(name: str, value: Any) -> None:
    """A saved counter (a step or micro-step count): an integer >= 0."""
    check_int(name, value, minimum=0)


def check_flag(name: str, value: Any, optional: bool = False) -> None:
    """``value`` is a bool (or None when ``optional``), else TypeError naming it: a string such as ``"no"`` would
    otherwise read as true."""
    if not (isinstance(value, bool) or (optional and value is None)):
        raise TypeError(f"expected {name} to be a bool{' or None' if optional else ''}, got {value!r}")


def check_params(group: Mapping[str, Any], gi: int, real: bool = True) -> None:
    """The parameters of parameter group ``gi`` (after ``Optimizer.add_param_group`` normalised it): each once
    (torch only warns; a repeated parameter would be stepped twice per step), and real when ``real`` (complex ones
    would lose their imaginary part in real arithmetic)."""
    seen: dict[int, int] = {}
    for i, p in enumerate(group["params"]):
        if id(p) in seen:
            raise ValueError(f"expected each parameter once, got the {tuple(p.shape)} parameter at index {seen[id(p)]} "
                             f"of param group {gi} again at index {i}")
        seen[id(p)] = i
        if real and torch.is_complex(p):
            raise ValueError(f"expected real parameters, got a complex {tuple(p.shape)} one ({p.dtype}) at index {i} "
                             f"of param group {gi}")


def check_grad(p: Tensor, grad: Tensor, who: str) -> None:
    """A gradient ``who`` can use for ``p``: dense, real floating point, of ``p``'s shape (a ``.grad`` set through
    ``.data`` escapes torch's own check and would fail deep inside the arithmetic, or lose an imaginary part)."""
    if grad.is_sparse:
        raise RuntimeError(f"expected dense gradients ({who} keeps dense state), got sparse gradients for a "
                           f"{tuple(p.shape)} parameter")
    if grad.shape != p.shape:
        raise RuntimeError(f"expected the gradient of a {tuple(p.shape)} parameter to have its shape, got "
                           f"{tuple(grad.shape)}")
    if not grad.is_floating_point():
        raise RuntimeError(f"expected a real floating-point gradient for a {tuple(p.shape)} parameter, got "
                           f"{grad.dtype}")


def run_closure(closure: Any) -> Any:
    """``closure()`` with gradients enabled (what ``step(closure)`` does), or None; TypeError for a closure that
    cannot be called."""
    if closure is None:
        return None
    if not callable(closure):
        raise TypeError(f"expected closure to be a callable that re-evaluates the loss, or None, got "
                        f"{type(closure).__name__}")
    with torch.enable_grad():
        return closure()


def check_optional_float(name: str, value: Any, **interval: Any) -> None:
    """:func:`kexue._validate.check_float` for an argument that may also be None (None passes)."""
    if value is not None:
        check_float(name, value, **interval)


__all__ = ["StateShapes", "StateSpec", "check_count", "check_flag", "check_grad", "check_optional_float",
           "check_params", "check_state_dict", "check_state_dict_form", "restore_state_precision", "run_closure",
           "state_dtype"]
