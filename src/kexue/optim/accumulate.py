"""Gradient accumulation hidden in momentum, also inside backward (gradient release).

Su Jianlin, "隐藏在动量中的梯度累积：少更新几步，效果反而更好？" (Gradient accumulation hidden in momentum: update less
often and do better?), 2021-08-24, https://kexue.fm/archives/8634.

A momentum optimizer already keeps a running average of gradients, so k-step accumulation can be folded into it with
no gradient buffer. Micro-steps are counted t = 1, 2, …; χ_{t/k} = 1 when k divides t, else 0::

    m_t = [(β − 1)·χ_{(t−1)/k} + 1]·m_{t−1} + ((1 − β)/k)·g_t      (decay once, at the first micro-step of a cycle)
    θ_t = θ_{t−1} − χ_{t/k}·α_t·m_t                                 (move only at the last micro-step of a cycle)

This is exact for SGD with momentum. For Adam the second moment is folded the same way from micro-batch squares,
v_t = [(β₂ − 1)·χ_{(t−1)/k} + 1]·v_{t−1} + ((1 − β₂)/k)·g_t², which overestimates the square of the mean gradient
(the step is smaller than true large-batch Adam's); bias corrections use the number of updates, 1 − β^{t/k}.

Modes (``mode=``):

- ``"exact_m"``: the rule above (the post's);
- ``"tilde_beta"``: an ordinary EMA at every micro-step with β̃ = 1 − (1 − β)/k (β̃^k ≈ β), bias correction
  1 − β̃^t over micro-steps;
- ``"plain"``: the unchanged β at every micro-step, bias correction 1 − β^t.

With ``update_every_k=True`` (the default) the parameters move every k-th micro-step (the lr is multiplied by
χ_{t/k}); ``"tilde_beta"`` and ``"plain"`` may also update every micro-step. Su's observation: when a small batch is
the bottleneck, updating every k steps matters more than the β substitution.

How to drive them: call ``step()`` (and ``zero_grad()``) after **every** micro-batch, and do not divide the loss by
k; the optimizer divides. It keeps the micro-step counter (``micro_step``, saved in ``state_dict``), exposes
``is_update_step`` (the last ``step()`` moved the parameters), ``will_update`` (the next one will) and
``update_count``. Learning-rate schedules count *updates*: the factories in :mod:`kexue.optim.schedules` read
``update_count``, so their ``step()`` may be called after every micro-step. Decoupled weight decay and
``max_update_norm`` act on update steps only.

**Gradient release** (:meth:`AccumAdam.release_gradients` and its kin): each parameter's gradient is folded into
its state by a ``register_post_accumulate_grad_hook`` the moment backward produces it, and ``.grad`` is freed, so a
training step never holds a full set of gradients, and accumulation still works; ``step()`` after ``backward()``
advances the counter and, on update steps, moves the parameters. Under ``DistributedDataParallel`` use the ordinary
path: DDP averages gradients in its buckets after the hooks would have consumed the local ones, and its buckets hold
a full set of gradients anyway, so release would save nothing.

Gradient *clipping* of the accumulated gradient needs that gradient, which this design never forms; clipping each
micro-batch is a different thing. ``max_update_norm`` instead clips, per tensor and on update steps, the step
direction (m for SGDM, m̂/(√v̂ + ε) for Adam) to that L2 norm.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from .._validate import check_float
from ._accumulating import AccumMode, GradientRelease, _Accumulating
from ._common import check_flag, state_dtype


class AccumSGDM(_Accumulating):
    """SGD with momentum (m = βm + (1 − β)g, θ ← θ − α·m) that accumulates k micro-batches inside its momentum.

    The post "隐藏在动量中的梯度累积" (kexue.fm/archives/8634, 2021-08-24); see the module docstring. In ``"exact_m"``
    mode, k micro-batches give exactly SGDM on their mean gradient. ``weight_decay`` is decoupled,
    θ ← θ(1 − α·λ), on update steps.
    """

    _moments = (("exp_avg", 0, False),)

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float, momentum: float = 0.9,
                 k: int = 1, mode: AccumMode = "exact_m", update_every_k: bool = True, weight_decay: float = 0.0,
                 max_update_norm: float | None = None) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, max_update_norm=max_update_norm,
                        decoupled_weight_decay=True)
        self._check_group(defaults)
        super().__init__(params, defaults, k, mode, update_every_k)

    @staticmethod
    def _check_group(group: dict[str, Any]) -> None:
        _Accumulating._check_group(group)
        check_float("momentum", group["momentum"], low=0.0, high=1.0, high_open=True)

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        return (group["momentum"],)

    def _update(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        dtype = state_dtype(p)
        theta = p if p.dtype == dtype else p.to(dtype)
        lr = group["lr"]
        if group["weight_decay"]:
            theta.mul_(1.0 - lr * group["weight_decay"])
        m = state["exp_avg"]
        theta.add_(m if group["max_update_norm"] is None else self._clip(group, m), alpha=-lr)
        if theta is not p:
            p.copy_(theta)


class AccumAdam(_Accumulating):
    """Adam that accumulates k micro-batches inside its moments (the post's "built-in Adam", approximate).

    The post "隐藏在动量中的梯度累积" (kexue.fm/archives/8634, 2021-08-24); see the module docstring. The update is
    torch's, θ ← θ − α·m̂/(√v̂ + ε) (``eps_inside_root=True``: Su's √(v̂ + ε)), so with k = 1 this is
    ``torch.optim.Adam``. ``weight_decay`` is L2 (added to each micro-batch gradient), as in ``torch.optim.Adam``;
    :class:`AccumAdamW` decouples it.
    """

    _moments = (("exp_avg", 0, False), ("exp_avg_sq", 1, True))
    _decoupled = False

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 k: int = 1, mode: AccumMode = "exact_m", update_every_k: bool = True, eps_inside_root: bool = False,
                 max_update_norm: float | None = None) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, eps_inside_root=eps_inside_root,
                        max_update_norm=max_update_norm, decoupled_weight_decay=self._decoupled)
        self._check_group(defaults)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults, k, mode, update_every_k)

    @staticmethod
    def _check_group(group: dict[str, Any]) -> None:
        _Accumulating._check_group(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)):
            raise TypeError(f"expected betas to be a pair (beta1, beta2), got {betas!r}")
        if len(betas) != 2:
            raise ValueError(f"expected betas to be a pair (beta1, beta2), got {len(betas)} values {betas!r}")
        check_float("betas[0]", betas[0], low=0.0, high=1.0, high_open=True)
        check_float("betas[1]", betas[1], low=0.0, high=1.0, high_open=True)
        # eps = 0 would divide 0 by 0 wherever a gradient entry has been 0 so far: NaN parameters
        check_float("eps", group["eps"], low=0.0, low_open=True)
        check_flag("eps_inside_root", group["eps_inside_root"])

    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        return tuple(group["betas"])

    def _bias_corrections(self, group: dict[str, Any], state: dict[str, Any]) -> tuple[float, float]:
        b1, b2 = group["betas"]
        if self.mode == "exact_m":
            n = state["updates"] + 1  # 1 − β^{t/k}: the number of updates, with the original β
        else:
            n = state["micro"]  # micro-steps: β̃ (tilde_beta) or β (plain) at every one
            if self.mode == "tilde_beta":
                b1, b2 = 1.0 - (1.0 - b1) / self.k, 1.0 - (1.0 - b2) / self.k
        return 1.0 - b1 ** n, 1.0 - b2 ** n

    def _update(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        dtype = state_dtype(p)
        theta = p if p.dtype == dtype else p.to(dtype)
        lr, eps = group["lr"], group["eps"]
        if group["weight_decay"] and group["decoupled_weight_decay"]:
            theta.mul_(1.0 - lr * group["weight_decay"])
        bc1, bc2 = self._bias_corrections(group, state)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if group["eps_inside_root"]:
            denom = (v / bc2).add_(eps).sqrt_()
        else:
            denom = v.sqrt().div_(bc2**0.5).add_(eps)  # torch.optim.Adam's arithmetic, with one temporary
        if group["max_update_norm"] is None:
            theta.addcdiv_(m, denom, value=-lr / bc1)
        else:
            theta.add_(self._clip(group, m / bc1 / denom), alpha=-lr)
        if theta is not p:
            p.copy_(theta)


class AccumAdamW(AccumAdam):
    """:class:`AccumAdam` with decoupled weight decay θ ← θ(1 − α·λ) on update steps (``torch.optim.AdamW``'s)."""

    _decoupled = True

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 k: int = 1, mode: AccumMode = "exact_m", update_every_k: bool = True, eps_inside_root: bool = False,
                 max_update_norm: float | None = None) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, k=k, mode=mode,
                         update_every_k=update_every_k, eps_inside_root=eps_inside_root,
                         max_update_norm=max_update_norm)


__all__ = ["AccumAdam", "AccumAdamW", "AccumMode", "AccumSGDM", "GradientRelease"]
