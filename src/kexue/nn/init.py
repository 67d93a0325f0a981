"""Initialisation: BERT's 0.02 in both its forms, a variance-corrected truncated normal, and fan averages.

Posts:
- "模型优化漫谈：BERT的初始标准差为什么是0.02？" (Why is BERT's initial std 0.02?), 2021-11-08,
  https://kexue.fm/archives/8747
- "初始化方法中非方阵的维度平均策略思考" (Averaging fan-in/fan-out for non-square matrices), 2021-10-18,
  https://kexue.fm/archives/8725
- "浅谈Transformer的初始化、参数化与标准化" (Transformer initialisation, parametrisation and normalisation),
  2021-08-17, https://kexue.fm/archives/8620

Truncated normal at ±cσ: its variance is γσ² with γ = 1 − 2cφ(c)/(2Φ(c) − 1) (γ ≈ 0.7737413 at c = 2), so sampling
with std σ/√γ (1.1368472·σ at c = 2) gives variance σ². ``torch.nn.init.trunc_normal_`` takes *absolute* bounds
(default ±2), which at std 0.02 is ±100σ: no truncation at all; the functions here pass bounds in units of σ.

Fans for an m→n linear map (PyTorch weight layout (n, m, *kernel)): Var w = 1/fan with
fan_in = m, fan_out = n, fan_avg = (m+n)/2 (Xavier), fan_geo = √(mn), fan_ch = (m²+n²)/(m+n). The post derives the
last two and recommends none of them.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_float

FanMode = Literal["fan_in", "fan_out", "fan_avg", "fan_geo", "fan_ch"]
FAN_MODES: tuple[FanMode, ...] = get_args(FanMode)
Distribution = Literal["normal", "uniform", "truncated_normal"]
DISTRIBUTIONS: tuple[Distribution, ...] = get_args(Distribution)
#: A named scheme for :func:`init_weight_` (and ``TransformerConfig.init``): BERT's two forms, the corrected truncated
#: normal, or a fan mode.
InitScheme = Literal["bert_hf", "bert_tf", "trunc_normal", FanMode]
INIT_SCHEMES: tuple[InitScheme, ...] = get_args(InitScheme)


def _check_weight(name: str, tensor: object) -> None:
    """``tensor`` must be a floating-point tensor (the fills are torch's, which fail on integers without a name)."""
    if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got "
                        f"{getattr(tensor, 'dtype', type(tensor).__name__)}")


def _phi(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def _Phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def truncnorm_variance_ratio(cut: float = 2.0) -> float:
    """γ = Var of N(0,1) truncated to [−cut, cut]: 1 − 2·cut·φ(cut)/(2Φ(cut) − 1). γ(2) ≈ 0.7737413."""
    check_float("cut", cut, 0.0, low_open=True)
    return 1.0 - 2.0 * cut * _phi(cut) / (2.0 * _Phi(cut) - 1.0)


def truncnorm_std_factor(cut: float = 2.0) -> float:
    """1/√γ: multiply the target std by this before truncating at ±cut·σ. 1.1368472 at cut = 2."""
    return 1.0 / math.sqrt(truncnorm_variance_ratio(cut))


def trunc_normal_(tensor: Tensor, std: float = 0.02, cut: float = 2.0, corrected: bool = True,
                  mean: float = 0.0, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` from a normal truncated at ±cut standard deviations of the sampling normal.

    ``corrected=True``: the sampling std is std/√γ, so the result has std ``std``.
    ``corrected=False``: the sampling std is ``std`` (TensorFlow's ``truncated_normal``); the result's std is std·√γ.
    """
    _check_weight("tensor", tensor)
    check_float("std", std, 0.0, low_open=True)
    check_float("mean", mean)
    s = std * truncnorm_std_factor(cut) if corrected else std
    return nn.init.trunc_normal_(tensor, mean=mean, std=s, a=mean - cut * s, b=mean + cut * s, generator=generator)


def bert_tf_(tensor: Tensor, std: float = 0.02, generator: torch.Generator | None = None) -> Tensor:
    """BERT's original TensorFlow initialiser: ``truncated_normal(stddev=std)``, cut at ±2·std, uncorrected, so the
    actual std is std·0.8796 ≈ 0.0176 at 0.02."""
    return trunc_normal_(tensor, std=std, cut=2.0, corrected=False, generator=generator)


def bert_hf_(tensor: Tensor, std: float = 0.02, generator: torch.Generator | None = None) -> Tensor:
    """Hugging Face BERT's initialiser: plain ``normal_(0, std)`` (not truncated; actual std ``std``)."""
    _check_weight("tensor", tensor)
    check_float("std", std, 0.0, low_open=True)
    return nn.init.normal_(tensor, 0.0, std, generator=generator)


def fans(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a PyTorch weight (out, in, *kernel): in·receptive field, out·receptive field."""
    if tensor.dim() < 2:
        raise ValueError(f"expected a weight of at least 2 dimensions, got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"expected a weight with no empty dimension (its fans would be 0), got shape "
                         f"{tuple(tensor.shape)}")
    receptive = math.prod(tensor.shape[2:]) if tensor.dim() > 2 else 1
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def fan_average(fan_in: float, fan_out: float, mode: FanMode) -> float:
    """The fan a mode divides by: m, n, (m+n)/2, √(mn) or (m²+n²)/(m+n), for m = fan_in, n = fan_out.

    (m²+n²)/(m+n) ≥ (m+n)/2 ≥ √(mn). ``fan_ch`` (contraharmonic) minimises (mt−1)² + (nt−1)² over the variance t;
    ``fan_geo`` keeps E‖y‖² = E‖x‖² through an m→n→m pair that shares t (mn·t² = 1).
    """
    m = check_float("fan_in", fan_in, 0.0, low_open=True)
    n = check_float("fan_out", fan_out, 0.0, low_open=True)
    check_choice("mode", mode, FanMode)
    if mode == "fan_in":
        return m
    if mode == "fan_out":
        return n
    if mode == "fan_avg":
        return (m + n) / 2
    if mode == "fan_geo":
        return math.sqrt(m * n)
    return (m * m + n * n) / (m + n)  # fan_ch


def variance_scaling_(tensor: Tensor, mode: FanMode = "fan_in", scale: float = 1.0,
                      distribution: Distribution = "normal", generator: torch.Generator | None = None) -> Tensor:
    """Fill ``tensor`` with variance t = scale / fan(mode): normal N(0, t), uniform U[−√(3t), √(3t)], or a
    truncated normal at ±2σ with the variance correction (so its variance is t too). Activation gains (ReLU's 2,
    ...) go in ``scale``, applied after averaging the fans."""
    _check_weight("tensor", tensor)
    check_float("scale", scale, 0.0, low_open=True)
    check_choice("distribution", distribution, Distribution)
    fan_in, fan_out = fans(tensor)
    t = scale / fan_average(fan_in, fan_out, mode)
    std = math.sqrt(t)
    if distribution == "normal":
        return nn.init.normal_(tensor, 0.0, std, generator=generator)
    if distribution == "uniform":
        bound = math.sqrt(3.0 * t)
        return nn.init.uniform_(tensor, -bound, bound, generator=generator)
    return trunc_normal_(tensor, std=std, cut=2.0, corrected=True, generator=generator)  # truncated_normal


def init_weight_(weight: Tensor, scheme: InitScheme, std: float, generator: torch.Generator | None = None) -> Tensor:
    """Initialise one weight by a named scheme: ``bert_hf`` (normal(std)), ``bert_tf`` (TF truncated normal),
    ``trunc_normal`` (corrected truncated normal with std ``std``), or a fan mode (normal with variance 1/fan)."""
    check_choice("scheme", scheme, InitScheme)
    _check_weight("weight", weight)
    check_float("std", std, 0.0, low_open=True)  # also for the fan modes, which do not use it
    if scheme == "bert_hf":
        return bert_hf_(weight, std, generator)
    if scheme == "bert_tf":
        return bert_tf_(weight, std, generator)
    if scheme == "trunc_normal":
        return trunc_normal_(weight, std=std, generator=generator)
    return variance_scaling_(weight, mode=scheme, generator=generator)


__all__ = [
    "DISTRIBUTIONS",
    "FAN_MODES",
    "INIT_SCHEMES",
    "Distribution",
    "FanMode",
    "InitScheme",
    "bert_hf_",
    "bert_tf_",
    "fan_average",
    "fans",
    "init_weight_",
    "trunc_normal_",
    "truncnorm_std_factor",
    "truncnorm_variance_ratio",
    "variance_scaling_",
]
