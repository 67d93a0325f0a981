"""kexue._validate: the one message style of argument errors, choices derived from Literal types."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest

from kexue._validate import check_choice, check_float, check_int, choices_of

Mode = Literal["a", "b"]
Wider = Literal[Mode, "c"]


def test_choices_come_from_the_literal():
    assert choices_of(Mode) == ("a", "b")
    assert choices_of(Wider) == ("a", "b", "c")
    assert choices_of({"x": 1, "y": 2}) == ("x", "y")
    with pytest.raises(TypeError, match="expected a Literal type"):
        choices_of("ab")


def test_check_choice():
    assert check_choice("mode", "b", Mode) == "b"
    with pytest.raises(ValueError, match=r"^expected mode to be one of \['a', 'b'\], got 'z'$"):
        check_choice("mode", "z", Mode)
    with pytest.raises(ValueError, match=r"got \['a'\]"):
        check_choice("mode", ["a"], {"a": 1})  # unhashable against a dict: refused, not a TypeError


def test_check_int():
    assert check_int("n", 3, minimum=1) == 3
    assert type(check_int("n", np.int64(7), minimum=1)) is int  # numpy integers (e.g. labels.max() + 1) count
    with pytest.raises(ValueError, match=r"^expected n >= 1, got 0$"):
        check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match=r"^expected n <= 4, got 5$"):
        check_int("n", 5, maximum=4)
    for bad in (True, np.True_, 2.0, "2"):
        with pytest.raises(TypeError, match="expected n to be an integer"):
            check_int("n", bad)


def test_check_float():
    assert check_float("p", 0) == 0.0
    assert check_float("p", np.float32(0.5), 0, 1, high_open=True) == 0.5
    with pytest.raises(ValueError, match=r"^expected p < 1, got 1$"):
        check_float("p", 1, 0, 1, high_open=True)
    with pytest.raises(ValueError, match=r"^expected lr > 0, got 0.0$"):
        check_float("lr", 0.0, low=0, low_open=True)
    with pytest.raises(ValueError, match="expected eps to be finite, got nan"):
        check_float("eps", float("nan"))
    with pytest.raises(TypeError, match="expected p to be a real number, got '0.1'"):
        check_float("p", "0.1")


def test_check_generator():
    import torch

    from kexue._validate import check_generator

    g = torch.Generator()
    assert check_generator("generator", g) is g and check_generator("generator", None) is None
    with pytest.raises(TypeError, match=r"^expected generator to be a torch.Generator or None, got int$"):
        check_generator("generator", 0)
