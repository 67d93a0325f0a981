"""Activations, named as Hugging Face's ``hidden_act`` names them, and the GELU approximations.

Post: "GELU的两个初等函数近似是怎么来的" (Where GELU's two elementary approximations come from),
2020-03-26, https://kexue.fm/archives/7309.

GELU(x) = x·Φ(x), Φ(x) = ½[1 + erf(x/√2)]. The two elementary approximations replace Φ:

- tanh form:    Φ(x) ≈ ½[1 + tanh(a·x + b·x³)],  a = √(2/π), b/a = 0.044715;
- sigmoid form: Φ(x) ≈ σ(λx),                  λ = 1.702.

The local (Taylor) fit of the tanh form gives b/a = (4 − π)/(6π); the "hybrid" fit keeps a = √(2/π) and chooses b
by minimax on x ∈ [0, 4), which gives the published 0.044715 (the ``gelu`` reproduction re-derives both fitted
constants).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_choice

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
#: b/a of the published tanh form (the hybrid minimax fit of the post, rounded).
TANH_RATIO = 0.044715
#: λ of the published sigmoid form x·σ(1.702x).
SIGMOID_LAMBDA = 1.702


def gelu(x: Tensor) -> Tensor:
    """Exact GELU: x·Φ(x) = ½x[1 + erf(x/√2)] (HF ``gelu``)."""
    return F.gelu(x)


def gelu_python(x: Tensor) -> Tensor:
    """Exact GELU written out: x·½[1 + erf(x/√2)] (HF ``gelu_python``)."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: Tensor) -> Tensor:
    """Tanh approximation through torch's kernel: ½x[1 + tanh(√(2/π)(x + 0.044715x³))] (HF ``gelu_pytorch_tanh``)."""
    return F.gelu(x, approximate="tanh")


def gelu_new(x: Tensor) -> Tensor:
    """The same tanh form written out as HF's ``gelu_new`` (and ``gelu_accurate``) computes it; equal to
    :func:`gelu_tanh` up to float rounding, and bit-identical to transformers."""
    return 0.5 * x * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + TANH_RATIO * torch.pow(x, 3.0))))


def gelu_fast(x: Tensor) -> Tensor:
    """The tanh form as HF's ``gelu_fast`` writes it: ½x[1 + tanh(0.7978845608·x·(1 + 0.044715x²))]."""
    return 0.5 * x * (1.0 + torch.tanh(x * 0.7978845608 * (1.0 + TANH_RATIO * x * x)))


def gelu_sigmoid(x: Tensor) -> Tensor:
    """Sigmoid approximation: x·σ(1.702x) (HF ``quick_gelu``)."""
    return x * torch.sigmoid(SIGMOID_LAMBDA * x)


def gelu_10(x: Tensor) -> Tensor:
    """Exact GELU clipped to [−10, 10] (HF ``gelu_10``)."""
    return torch.clip(F.gelu(x), -10.0, 10.0)


def relu(x: Tensor) -> Tensor:
    return F.relu(x)


def relu6(x: Tensor) -> Tensor:
    return F.relu6(x)


def silu(x: Tensor) -> Tensor:
    """x·σ(x) (HF ``silu`` and ``swish``)."""
    return F.silu(x)


def mish(x: Tensor) -> Tensor:
    """x·tanh(softplus(x)) (HF ``mish``)."""
    return F.mish(x)


def sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x)


def tanh(x: Tensor) -> Tensor:
    return torch.tanh(x)


def linear(x: Tensor) -> Tensor:
    return x


#: A Hugging Face ``hidden_act`` name (``transformers.activations.ACT2FN``'s keys that kexue computes).
Activation = Literal["gelu", "gelu_python", "gelu_new", "gelu_accurate", "gelu_pytorch_tanh", "gelu_fast", "gelu_10",
                     "quick_gelu", "relu", "relu6", "silu", "swish", "mish", "sigmoid", "tanh", "linear"]
ACTIVATION_NAMES: tuple[Activation, ...] = get_args(Activation)

#: Hugging Face ``hidden_act`` name -> function, each computed as ``transformers.activations.ACT2FN[name]`` does.
ACTIVATIONS: dict[Activation, Callable[[Tensor], Tensor]] = {
    "gelu": gelu,
    "gelu_python": gelu_python,
    "gelu_new": gelu_new,
    "gelu_accurate": gelu_new,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_fast,
    "gelu_10": gelu_10,
    "quick_gelu": gelu_sigmoid,
    "relu": relu,
    "relu6": relu6,
    "silu": silu,
    "swish": silu,
    "mish": mish,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "linear": linear,
}


def get_activation(name: Activation) -> Callable[[Tensor], Tensor]:
    """The activation called ``name`` (a Hugging Face ``hidden_act`` name, one of :data:`ACTIVATION_NAMES`)."""
    return ACTIVATIONS[check_choice("name", name, Activation)]


__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_NAMES",
    "SIGMOID_LAMBDA",
    "SQRT_2_OVER_PI",
    "TANH_RATIO",
    "Activation",
    "gelu",
    "gelu_10",
    "gelu_fast",
    "gelu_new",
    "gelu_python",
    "gelu_sigmoid",
    "gelu_tanh",
    "get_activation",
    "linear",
    "mish",
    "relu",
    "relu6",
    "sigmoid",
    "silu",
    "tanh",
]
