"""kexue.nn's public names: every name in __all__ resolves, the choice tuples are their Literal's values, and the
activation table and its Literal list the same names."""

from __future__ import annotations

import importlib
from typing import get_args

import pytest

import kexue.nn
from kexue.nn import activations, attention


@pytest.mark.parametrize("module", ["kexue.nn", "kexue.nn.activations", "kexue.nn.attention", "kexue.nn.dropout",
                                    "kexue.nn.frozen_linear", "kexue.nn.init", "kexue.nn.linear_attention",
                                    "kexue.nn.masks", "kexue.nn.padding", "kexue.nn.crf",
                                    "kexue.nn.conditional_norm"])
def test_every_exported_name_resolves(module):
    mod = importlib.import_module(module)
    assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)


def test_submodules_are_not_shadowed_by_functions():
    # kexue.nn exports neither dropout() nor linear_attention(): the names stay the modules
    from kexue.nn import dropout, linear_attention

    assert dropout.__name__ == "kexue.nn.dropout" and linear_attention.__name__ == "kexue.nn.linear_attention"
    assert "dropout" not in kexue.nn.__all__ and "linear_attention" not in kexue.nn.__all__


def test_activation_table_is_the_literal():
    assert tuple(activations.ACTIVATIONS) == activations.ACTIVATION_NAMES == get_args(activations.Activation)
    with pytest.raises(ValueError, match=r"expected name to be one of \['gelu', .*'linear'\], got 'gelu_magic'"):
        activations.get_activation("gelu_magic")


def test_attention_tuples_are_the_literals():
    assert attention.ATTENTION_KINDS == get_args(attention.AttentionKind)
    assert attention.ATTENTION_IMPLS == get_args(attention.AttentionImpl)
