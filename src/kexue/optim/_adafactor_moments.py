"""AdaFactor's second-moment estimate and the preconditioned gradient u_t = g/√v̂_t, per tensor and with
``torch._foreach_*``.

Su Jianlin, "AdaFactor优化器浅析（附开源实现）" (A brief analysis of the AdaFactor optimizer), 2020-03-23,
https://kexue.fm/archives/7302; Shazeer & Stern, arXiv 1804.04235. For an m×n parameter with gradient g::

    v^r_t = β̂₂,t·v^r_{t−1} + (1 − β̂₂,t)·mean_j(g² + ε₁)        (one value per row)
    v^c_t = β̂₂,t·v^c_{t−1} + (1 − β̂₂,t)·mean_i(g² + ε₁)        (one value per column)
    v̂_t  = v^r_t·v^c_t / mean(v^r_t)
    u_t  = g / √v̂_t

Vectors (and tensors too small to factor) keep a full v_t = β̂₂,t·v_{t−1} + (1 − β̂₂,t)·(g² + ε₁). ``eps1_mode``
says where ε₁ goes (see :class:`kexue.optim.AdaFactor`). Clipping, momentum and the step are the optimizer's.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from .._validate import check_choice, check_int

FactorDims = Literal["largest", "last"]
Eps1Mode = Literal["add", "add_and_root", "floor"]


def factored_axes(shape: tuple[int, ...] | torch.Size, min_dim_size_to_factor: int,
                  factor_dims: FactorDims) -> tuple[int, int] | None:
    """The axes (reduced for the row statistic, reduced for the column statistic), or None when not factored.

    ``"largest"`` (bert4keras, Mesh-TF): the largest axis and the second largest (ties: the later axis counts as
    larger), factored only if the second largest has at least ``min_dim_size_to_factor`` entries. ``"last"``
    (torch, transformers): the last axis and the one before it, under the same size threshold.
    """
    if not isinstance(shape, (tuple, list, torch.Size)):
        raise TypeError(f"expected shape to be a tuple of sizes, got {type(shape).__name__}")
    for i, n in enumerate(shape):
        check_int(f"shape[{i}]", n, minimum=0)
    check_int("min_dim_size_to_factor", min_dim_size_to_factor, minimum=0)
    check_choice("factor_dims", factor_dims, FactorDims)
    return _factored_axes(shape, min_dim_size_to_factor, factor_dims)


def _factored_axes(shape: tuple[int, ...] | torch.Size, min_dim_size_to_factor: int,
                   factor_dims: FactorDims) -> tuple[int, int] | None:
    """:func:`factored_axes` for arguments already checked (the optimizer's per-step calls)."""
    if len(shape) < 2:
        return None
    if factor_dims == "last":
        ax_r, ax_c = len(shape) - 1, len(shape) - 2
    else:
        order = sorted(range(len(shape)), key=lambda i: (shape[i], i))
        ax_r, ax_c = order[-1], order[-2]
    if min(shape[ax_r], shape[ax_c]) < min_dim_size_to_factor:
        return None
    return ax_r, ax_c


def preconditioned_gradient(group: dict[str, Any], state: dict[str, Any], g: Tensor, beta2t: float,
                            eps1: float) -> Tensor:
    """u_t = g/√v̂_t for one tensor, after folding g into the second-moment statistics in ``state`` (in place)."""
    mode = group["eps1_mode"]
    add = 0.0 if mode == "floor" else eps1
    axes = _factored_axes(g.shape, group["min_dim_size_to_factor"], group["factor_dims"])
    if axes is not None:
        ax_r, ax_c = axes
        r, c = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
        g2 = g.square()
        r.mul_(beta2t).add_(g2.mean(dim=ax_r, keepdim=True) + add, alpha=1.0 - beta2t)
        c.mul_(beta2t).add_(g2.mean(dim=ax_c, keepdim=True) + add, alpha=1.0 - beta2t)
        r_mean = r.mean(dim=ax_c, keepdim=True)
        if mode == "floor":
            r_mean = r_mean.clamp(min=eps1)
        v_hat = r * c / r_mean
    else:
        v = state["exp_avg_sq"]
        v.mul_(beta2t).add_(g.square() + add, alpha=1.0 - beta2t)
        v_hat = v
    if mode == "add_and_root":
        u = g / (v_hat + eps1).sqrt()
    elif mode == "floor":
        u = g / v_hat.clamp(min=eps1 * eps1).sqrt()
    else:
        u = g / v_hat.sqrt()
    return u


def foreach_preconditioned_gradients(group: dict[str, Any], states: list[dict[str, Any]], grads: list[Tensor],
                                     one_minus_b2: list[float], eps1s: list[float]) -> list[Tensor]:
    """:func:`preconditioned_gradient` for all tensors of a bucket at once (per-tensor reductions stay per tensor).

    ``one_minus_b2`` and ``eps1s`` hold each tensor's 1 − β̂₂,t and ε₁."""
    mode = group["eps1_mode"]
    updates: list[Tensor] = list(grads)  # placeholders: every entry is replaced below
    fac = [i for i in range(len(grads)) if "exp_avg_sq_row" in states[i]]
    unf = [i for i in range(len(grads)) if "exp_avg_sq_row" not in states[i]]
    if fac:
        axes = [_axes(grads[i].shape, group) for i in fac]
        rows = [states[i]["exp_avg_sq_row"] for i in fac]
        cols = [states[i]["exp_avg_sq_col"] for i in fac]
        g_f = [grads[i] for i in fac]
        # mean(g²) over an axis as ‖g‖²/n: no full-size g² is materialised.
        r_new = [torch.linalg.vector_norm(g, dim=a[0], keepdim=True) for g, a in zip(g_f, axes)]
        c_new = [torch.linalg.vector_norm(g, dim=a[1], keepdim=True) for g, a in zip(g_f, axes)]
        torch._foreach_mul_(r_new, r_new)
        torch._foreach_mul_(c_new, c_new)
        torch._foreach_div_(r_new, [float(g.shape[a[0]]) for g, a in zip(g_f, axes)])
        torch._foreach_div_(c_new, [float(g.shape[a[1]]) for g, a in zip(g_f, axes)])
        if mode != "floor":
            torch._foreach_add_(r_new, [eps1s[i] for i in fac])
            torch._foreach_add_(c_new, [eps1s[i] for i in fac])
        torch._foreach_lerp_(rows, r_new, [one_minus_b2[i] for i in fac])
        torch._foreach_lerp_(cols, c_new, [one_minus_b2[i] for i in fac])
        del r_new, c_new
        r_means = [r.mean(dim=a[1], keepdim=True) for r, a in zip(rows, axes)]
        if mode == "floor":
            torch._foreach_clamp_min_(r_means, [eps1s[i] for i in fac])
        r_norm = torch._foreach_div(rows, r_means)
        if mode == "add":
            # u = g·(v^r/mean v^r)^(−1/2)·(v^c)^(−1/2): two full-size passes instead of forming v̂.
            torch._foreach_rsqrt_(r_norm)
            c_rsqrt = torch._foreach_rsqrt(cols)
            u_f = torch._foreach_mul(g_f, r_norm)
            torch._foreach_mul_(u_f, c_rsqrt)
        else:
            u_f = torch._foreach_mul(r_norm, cols)  # v̂, full size
            if mode == "add_and_root":
                torch._foreach_add_(u_f, [eps1s[i] for i in fac])
            else:
                torch._foreach_clamp_min_(u_f, [eps1s[i] ** 2 for i in fac])
            torch._foreach_rsqrt_(u_f)
            torch._foreach_mul_(u_f, g_f)
        for i, u in zip(fac, u_f):
            updates[i] = u
    if unf:
        vs = [states[i]["exp_avg_sq"] for i in unf]
        g_u = [grads[i] for i in unf]
        g2 = torch._foreach_mul(g_u, g_u)
        if mode != "floor":
            torch._foreach_add_(g2, [eps1s[i] for i in unf])
        torch._foreach_lerp_(vs, g2, [one_minus_b2[i] for i in unf])
        torch._foreach_copy_(g2, vs)  # reuse the buffer for v̂
        if mode == "add_and_root":
            torch._foreach_add_(g2, [eps1s[i] for i in unf])
        elif mode == "floor":
            torch._foreach_clamp_min_(g2, [eps1s[i] ** 2 for i in unf])
        torch._foreach_rsqrt_(g2)
        torch._foreach_mul_(g2, g_u)
        for i, u in zip(unf, g2):
            updates[i] = u
    return updates


def _axes(shape: torch.Size, group: dict[str, Any]) -> tuple[int, int]:
    """The factored axes of a parameter whose state is factored."""
    axes = _factored_axes(shape, group["min_dim_size_to_factor"], group["factor_dims"])
    if axes is None:  # _init_state refuses a state that does not match the factoring settings
        raise RuntimeError(f"expected a factored {tuple(shape)} parameter, got factoring settings that do not "
                           f"factor it")
    return axes


__all__ = ["Eps1Mode", "FactorDims", "factored_axes", "foreach_preconditioned_gradients", "preconditioned_gradient"]
