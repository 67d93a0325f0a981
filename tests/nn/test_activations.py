"""Activations against transformers' ACT2FN and the post's published forms."""

from __future__ import annotations

import pytest
import torch

from kexue.nn.activations import ACTIVATIONS, gelu_sigmoid, gelu_tanh

act = pytest.importorskip("transformers.activations")


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_matches_transformers_bit_for_bit(name):
    x = torch.linspace(-12, 12, 20001)
    ours = ACTIVATIONS[name](x)
    theirs = act.ACT2FN[name](x)
    assert torch.equal(ours, theirs), f"{name}: max diff {(ours - theirs).abs().max().item()}"


def test_tanh_form_equals_torch_approximate():
    x = torch.linspace(-10, 10, 10001)
    torch.testing.assert_close(ACTIVATIONS["gelu_new"](x), gelu_tanh(x), atol=1e-6, rtol=1e-6)


def test_sigmoid_form():
    x = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(gelu_sigmoid(x), x * torch.sigmoid(1.702 * x))
