"""Argument checks with one message style: ``expected NAME to be WHAT, got VALUE``.

Every public entry point of kexue checks its arguments with these, so errors read the same everywhere and name the
argument, what was expected and what came. Choice arguments are typed with a ``Literal`` alias and checked against
that alias (``typing.get_args``), so the allowed values are written once::

    Pooling = Literal["cls", "mean"]
    POOLINGS: tuple[Pooling, ...] = get_args(Pooling)

    def encode(..., pooling: Pooling = "mean"):
        check_choice("pooling", pooling, Pooling)

Internal (no user calls these); it imports nothing of kexue's, so every package may use it.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, get_args, get_origin

import numpy as np

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def choices_of(choices: Any) -> tuple[Any, ...]:
    """The allowed values of a ``Literal`` alias (nested Literals flattened), or of an iterable, as a tuple."""
    if get_origin(choices) is Literal:
        out: list[Any] = []
        for arg in get_args(choices):
            out.extend(choices_of(arg) if get_origin(arg) is Literal else (arg,))
        return tuple(out)
    if isinstance(choices, Iterable) and not isinstance(choices, (str, bytes)):
        return tuple(choices)
    raise TypeError(f"expected a Literal type or an iterable of choices, got {choices!r}")


def check_choice(name: str, value: T, choices: Any) -> T:
    """``value`` if it is one of ``choices`` (a ``Literal`` alias or an iterable), else
    ``ValueError("expected NAME to be one of [...], got VALUE")``."""
    allowed = choices_of(choices)
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value against a dict's keys
        ok = False
    if not ok:
        raise ValueError(f"expected {name} to be one of {list(allowed)}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a bool (or a numpy bool), else ``TypeError("expected NAME to be a bool, got VALUE")``: a
    string such as ``"False"`` or a number would otherwise count by its truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected {name} to be a bool, got {value!r} ({type(value).__name__})")
    return bool(value)


def check_generator(name: str, value: Any) -> torch.Generator | None:
    """``value`` if it is a ``torch.Generator`` or None, else ``TypeError("expected NAME to be a torch.Generator or
    None, got TYPE")`` (torch is imported here only when called: the command line imports this module)."""
    import torch

    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"expected {name} to be a torch.Generator or None, got {type(value).__name__}")
    return value


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``int(value)`` if it is an integer (a Python or numpy integer, not a bool) within [minimum, maximum], else a
    ``ValueError`` (``TypeError`` for a non-integer) saying what was expected."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected {name} to be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"expected {name} >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"expected {name} <= {maximum}, got {value}")
    return value


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``float(value)`` if it is a finite real number in the interval given (``low``/``high`` inclusive unless
    ``low_open``/``high_open``), else ``ValueError`` (``TypeError`` for a non-number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"expected {name} to be a real number, got {value!r} ({type(value).__name__})")
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"expected {name} to be finite, got {value!r}")
    if low is not None and (x <= low if low_open else x < low):
        raise ValueError(f"expected {name} {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (x >= high if high_open else x > high):
        raise ValueError(f"expected {name} {'<' if high_open else '<='} {high}, got {value!r}")
    return x


def positive_int_arg(text: str) -> int:
    """An argparse ``type``: an integer >= 1, so a bad value is a usage error before anything runs or prints."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def positive_float_arg(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return x


__all__ = ["check_bool", "check_choice", "check_float", "check_generator", "check_int", "choices_of",
           "positive_float_arg", "positive_int_arg"]
