"""AdaFactor with named presets.

Su Jianlin, "AdaFactor优化器浅析（附开源实现）" (A brief analysis of the AdaFactor optimizer), 2020-03-23,
https://kexue.fm/archives/7302; Shazeer & Stern, arXiv 1804.04235.

The reference is the post's corrected equations. For an m×n parameter θ with gradient g at step t = 1, 2, …::

    β̂₂,t = 1 − t^(−c)
    v^r_t = β̂₂,t·v^r_{t−1} + (1 − β̂₂,t)·mean_j(g² + ε₁)        (one value per row)
    v^c_t = β̂₂,t·v^c_{t−1} + (1 − β̂₂,t)·mean_i(g² + ε₁)        (one value per column)
    v̂_t  = v^r_t·v^c_t / mean(v^r_t)
    u_t  = g / √v̂_t
    û_t  = u_t / max(1, RMS(u_t)/d) × max(ε₂, RMS(θ_{t−1}))
    θ_t  = θ_{t−1} − α_t·û_t

Vectors (and tensors too small to factor) keep a full v_t = β̂₂,t·v_{t−1} + (1 − β̂₂,t)·(g² + ε₁). Means and the
post's sums give the same v̂ because the normalisation cancels the factor n (or m).

Presets: ``AdaFactor.preset(name, params, **overrides)`` gives ``"bert4keras"`` (the default), ``"paper"``,
``"transformers"``, ``"t5"`` or ``"torch"``; :data:`ADAFACTOR_PRESETS` holds their settings, and its module
(``kexue.optim._adafactor_presets``) describes each variant and its anchor.

Which step size is active: ``lr`` when ``relative_step=False`` and ``lr`` is a number; otherwise the relative step
α_t = min(cap, 1/√t) with cap = ``lr`` (or 1e−2 when ``lr`` is None), or min(1e−6·t, 1/√t) with ``warmup_init``; the
relative step is multiplied by ``unscaled_relative_factor`` (0.05, as Mesh-TF and bert4keras do) when parameter
scaling is off.

State is fp32 whatever the parameter dtype (fp64 for fp64 parameters): ε₁ = 1e−30 underflows in fp16.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from .._validate import check_choice, check_int
from ._adafactor_moments import (
    Eps1Mode,
    FactorDims,
    _factored_axes,
    factored_axes,
    foreach_preconditioned_gradients,
    preconditioned_gradient,
)
from ._adafactor_presets import (
    ADAFACTOR_PRESETS,
    STEP_SIZE_KEYS,
    AdaFactorPreset,
    MomentumOn,
    WeightDecayOn,
    check_group,
    compile_pattern,
)
from ._common import (
    StateShapes,
    check_count,
    check_grad,
    check_params,
    check_state_dict,
    restore_state_precision,
    run_closure,
    state_dtype,
)


class AdaFactor(Optimizer):
    """AdaFactor (Shazeer & Stern 2018) as the post "AdaFactor优化器浅析" (kexue.fm/archives/7302) corrects it.

    The defaults are Su's bert4keras settings (the ``"bert4keras"`` preset); :meth:`preset` gives the others. See the
    module docstring for the equations and which step size is active.

    Args:
        params: parameters or parameter groups (named parameters are accepted, as for any torch optimizer; names are
            needed only when ``exclude_from_parameter_scale`` holds patterns).
        lr: the step size α. None means the relative step min(1e−2, 1/√t).
        beta1: momentum on the update (0: none, the paper's choice).
        decay_exponent: c in β̂₂,t = 1 − t^(−c); the post requires 0 < c < 1.
        beta2: a constant β₂ instead of the schedule (bert4keras' ``beta2``; no bias correction then).
        eps1: ε₁ (None: ``torch.finfo(param.dtype).eps``, as torch does).
        eps2: ε₂, the floor of the parameter scale RMS(θ).
        clip_threshold: d in the update clipping max(1, RMS(u)/d); None switches clipping off.
        scale_parameter: multiply the step by max(ε₂, RMS(θ_{t−1})).
        relative_step: use α_t = min(lr or 1e−2, 1/√t) instead of a constant lr.
        warmup_init: with the relative step, α_t = min(1e−6·t, 1/√t) (transformers' option).
        min_dim_size_to_factor: factor only when both factored axes have at least this many entries.
        factor_dims: ``"largest"`` or ``"last"`` (see :func:`factored_axes`).
        eps1_mode: ``"add"`` (ε₁ added to g²), ``"add_and_root"`` (also u = g/√(v̂ + ε₁), bert4keras), ``"floor"``
            (torch: g² without ε₁; mean(v^r) floored at ε₁ and v̂ at ε₁²).
        momentum_on: ``"clipped"`` (EMA of the clipped u before parameter scaling, bert4keras) or
            ``"scaled_update"`` (EMA of the final lr-scaled update, transformers).
        exclude_from_parameter_scale: parameters (tensors) or regular expressions searched in parameter names that
            skip the parameter scale (zero-initialised biases would otherwise move at ε₂·α per step).
        weight_decay: decoupled weight decay λ.
        weight_decay_on: ``"lr"``: θ ← θ(1 − lr·λ) (torch; with lr None, the relative step) or ``"step"``:
            θ ← θ(1 − α_t·scale·λ) (transformers).
        unscaled_relative_factor: multiplies the relative step when parameter scaling is off (0.05 in Mesh-TF and
            bert4keras; transformers uses 1).
        foreach: use the multi-tensor (``torch._foreach_*``) implementation (default) or a per-tensor loop.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]] | Iterable[tuple[str, Tensor]],
        lr: float | None = 1e-3,
        beta1: float = 0.0,
        decay_exponent: float = 0.8,
        beta2: float | None = None,
        eps1: float | None = 1e-30,
        eps2: float = 1e-3,
        clip_threshold: float | None = 1.0,
        scale_parameter: bool = True,
        relative_step: bool = False,
        warmup_init: bool = False,
        min_dim_size_to_factor: int = 128,
        factor_dims: FactorDims = "largest",
        eps1_mode: Eps1Mode = "add_and_root",
        momentum_on: MomentumOn = "clipped",
        exclude_from_parameter_scale: Iterable[str | Tensor] = (),
        weight_decay: float = 0.0,
        weight_decay_on: WeightDecayOn = "lr",
        unscaled_relative_factor: float = 0.05,
        foreach: bool | None = None,
    ) -> None:
        defaults = dict(lr=lr, beta1=beta1, decay_exponent=decay_exponent, beta2=beta2, eps1=eps1, eps2=eps2,
                        clip_threshold=clip_threshold, scale_parameter=scale_parameter, relative_step=relative_step,
                        warmup_init=warmup_init, min_dim_size_to_factor=min_dim_size_to_factor,
                        factor_dims=factor_dims, eps1_mode=eps1_mode, momentum_on=momentum_on,
                        weight_decay=weight_decay, weight_decay_on=weight_decay_on,
                        unscaled_relative_factor=unscaled_relative_factor, foreach=foreach)
        check_group(defaults)
        excl = list(exclude_from_parameter_scale)
        for e in excl:
            if not isinstance(e, (str, Tensor)):
                raise TypeError(f"expected exclude_from_parameter_scale to hold parameters or name patterns, got {e!r}")
        self._exclude_patterns = [compile_pattern(e) for e in excl if isinstance(e, str)]
        self._exclude_tensors = [e for e in excl if isinstance(e, Tensor)]
        self._unscaled: set[int] = set()  # ids of parameters excluded from the parameter scale
        super().__init__(params, defaults)

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def preset(cls, name: AdaFactorPreset, params: Any, **overrides: Any) -> AdaFactor:
        """An AdaFactor configured as the named variant (see :data:`ADAFACTOR_PRESETS`); ``overrides`` take
        precedence.

        ``"bert4keras"`` (the post, the default), ``"paper"``, ``"transformers"``, ``"t5"``, ``"torch"``.
        """
        check_choice("name", name, AdaFactorPreset)
        return cls(params, **{**ADAFACTOR_PRESETS[name], **overrides})

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (options not given are the constructor's); ValueError or TypeError naming a bad
        option, a repeated or a complex parameter, and the optimizer is left as it was."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            check_params(group, len(self.param_groups) - 1)
            check_group(group)
        except (TypeError, ValueError):
            del self.param_groups[-1]
            raise
        names = group.get("param_names")
        for i, p in enumerate(group["params"]):
            name = names[i] if names is not None else None
            if any(p is q for q in self._exclude_tensors):
                self._unscaled.add(id(p))
            elif self._exclude_patterns:
                if name is None:
                    raise ValueError("expected named parameters (model.named_parameters(), or the tensors themselves "
                                     "in exclude_from_parameter_scale), got exclude_from_parameter_scale name "
                                     "patterns for parameters that have no names")
                if any(pat.search(name) for pat in self._exclude_patterns):
                    self._unscaled.add(id(p))

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by an AdaFactor with the same groups; ValueError saying what does not fit, before any
        change (another optimizer's state, other groups or parameters, other state keys or shapes)."""
        check_state_dict(self, state_dict, _state_spec)
        for group in state_dict["param_groups"]:
            check_group(group)
        for st in state_dict["state"].values():
            if "step" in st:
                check_count("step", st["step"])
        super().load_state_dict(state_dict)
        restore_state_precision(self, state_dict)

    # ----------------------------------------------------------------------------------------------- the step
    @staticmethod
    def step_size(group: dict[str, Any], t: int) -> float:
        """α_t for a group at step t (t ≥ 1): ``lr``, or the relative step (see the module docstring)."""
        if not isinstance(group, Mapping):
            raise TypeError(f"expected group to be a parameter group of an AdaFactor (a dict), got "
                            f"{type(group).__name__}")
        missing = [k for k in STEP_SIZE_KEYS if k not in group]
        if missing:
            raise ValueError(f"expected group to be a parameter group of an AdaFactor (with {list(STEP_SIZE_KEYS)}), "
                             f"got one without {missing}")
        check_int("t", t, minimum=1)
        return AdaFactor._step_size(group, t)

    @staticmethod
    def _step_size(group: Mapping[str, Any], t: int) -> float:
        lr = group["lr"]
        if lr is None or group["relative_step"]:
            if group["warmup_init"]:
                cap = 1e-6 * t
            else:
                cap = 1e-2 if lr is None else lr
            alpha = min(cap, 1.0 / math.sqrt(t))
            if not group["scale_parameter"]:
                alpha *= group["unscaled_relative_factor"]
            return alpha
        return lr

    def _uses_scale(self, group: dict[str, Any], p: Tensor) -> bool:
        return bool(group["scale_parameter"]) and id(p) not in self._unscaled

    def _init_state(self, group: dict[str, Any], p: Tensor) -> dict[str, Any]:
        state = self.state[p]
        dtype = state_dtype(p)
        axes = _factored_axes(p.shape, group["min_dim_size_to_factor"], group["factor_dims"])
        if len(state) == 0:
            state["step"] = 0
            if axes is None:
                state["exp_avg_sq"] = torch.zeros(p.shape, dtype=dtype, device=p.device)
            else:
                ax_r, ax_c = axes
                row, col = list(p.shape), list(p.shape)
                row[ax_r] = 1
                col[ax_c] = 1
                state["exp_avg_sq_row"] = torch.zeros(row, dtype=dtype, device=p.device)
                state["exp_avg_sq_col"] = torch.zeros(col, dtype=dtype, device=p.device)
        if group["beta1"] > 0 and "exp_avg" not in state:
            state["exp_avg"] = torch.zeros(p.shape, dtype=dtype, device=p.device)
        expected = "exp_avg_sq" if axes is None else "exp_avg_sq_row"
        if expected not in state:
            raise RuntimeError(f"expected AdaFactor state with {expected!r} for the {tuple(p.shape)} parameter, got "
                               f"state without it: the factoring settings changed after the state was created")
        return state

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One AdaFactor step for every parameter with a gradient."""
        loss = run_closure(closure)
        for group in self.param_groups:
            params = []
            for p in group["params"]:
                if p.grad is None:
                    continue
                check_grad(p, p.grad, "AdaFactor")
                if p.numel() == 0:
                    continue
                params.append(p)
            if not params:
                continue
            if group["foreach"] is False:
                for p in params:
                    self._single(group, p)
            else:
                self._multi(group, params)
        return loss

    # One tensor at a time: the equations as written.
    def _single(self, group: dict[str, Any], p: Tensor) -> None:
        state = self._init_state(group, p)
        cdtype = state_dtype(p)
        g = _grad(p).to(cdtype)
        theta = p if p.dtype == cdtype else p.to(cdtype)
        state["step"] += 1
        t = state["step"]
        beta2t = group["beta2"] if group["beta2"] is not None else 1.0 - t ** (-group["decay_exponent"])
        alpha = self._step_size(group, t)
        eps1 = group["eps1"] if group["eps1"] is not None else torch.finfo(p.dtype).eps
        scale = max(group["eps2"], _rms(theta).item()) if self._uses_scale(group, p) else 1.0

        u = preconditioned_gradient(group, state, g, beta2t, eps1)
        if group["clip_threshold"] is not None:
            u = u / max(1.0, _rms(u).item() / group["clip_threshold"])
        beta1 = group["beta1"]
        if beta1 > 0:
            m = state["exp_avg"]
            if group["momentum_on"] == "clipped":
                m.mul_(beta1).add_(u, alpha=1.0 - beta1)
                update = alpha * scale * m
            else:
                m.mul_(beta1).add_(alpha * scale * u, alpha=1.0 - beta1)
                update = m
        else:
            update = alpha * scale * u
        if group["weight_decay"] != 0:
            theta.mul_(1.0 - group["weight_decay"] * self._decay_rate(group, alpha, scale))
        theta.sub_(update)
        if theta is not p:
            p.copy_(theta)

    @staticmethod
    def _decay_rate(group: dict[str, Any], alpha: float, scale: float) -> float:
        if group["weight_decay_on"] == "step":
            return alpha * scale
        return group["lr"] if group["lr"] is not None else alpha

    # All tensors of a group at once with torch._foreach_* (per-tensor reductions stay per tensor).
    def _multi(self, group: dict[str, Any], params: list[Tensor]) -> None:
        buckets: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        for p in params:
            buckets.setdefault((p.device, state_dtype(p)), []).append(p)
        for (_, cdtype), ps in buckets.items():
            self._multi_bucket(group, ps, cdtype)

    def _multi_bucket(self, group: dict[str, Any], ps: list[Tensor], cdtype: torch.dtype) -> None:
        states = [self._init_state(group, p) for p in ps]
        alphas, one_minus_b2, eps1s = [], [], []
        for p, st in zip(ps, states):
            st["step"] += 1
            t = st["step"]
            b2 = group["beta2"] if group["beta2"] is not None else 1.0 - t ** (-group["decay_exponent"])
            one_minus_b2.append(1.0 - b2)
            alphas.append(self._step_size(group, t))
            eps1s.append(group["eps1"] if group["eps1"] is not None else torch.finfo(p.dtype).eps)
        grads = [_grad(p).to(cdtype) for p in ps]
        thetas = [p if p.dtype == cdtype else p.to(cdtype) for p in ps]

        # Parameter scale max(ε₂, RMS(θ_{t−1})): one host transfer for the whole bucket.
        scales = [1.0] * len(ps)
        scaled = [i for i, p in enumerate(ps) if self._uses_scale(group, p)]
        if scaled:
            norms = torch.stack(torch._foreach_norm([thetas[i] for i in scaled])).tolist()
            for i, n in zip(scaled, norms):
                scales[i] = max(group["eps2"], n / math.sqrt(ps[i].numel()))

        updates = foreach_preconditioned_gradients(group, states, grads, one_minus_b2, eps1s)

        # Update clipping by RMS: one host transfer for the whole bucket.
        denoms = [1.0] * len(ps)
        if group["clip_threshold"] is not None:
            norms = torch.stack(torch._foreach_norm(updates)).tolist()
            d = group["clip_threshold"]
            denoms = [max(1.0, n / math.sqrt(p.numel()) / d) for n, p in zip(norms, ps)]

        beta1 = group["beta1"]
        if beta1 > 0:
            ms = [st["exp_avg"] for st in states]
            if group["momentum_on"] == "clipped":
                torch._foreach_mul_(updates, [1.0 / dn for dn in denoms])
                torch._foreach_lerp_(ms, updates, 1.0 - beta1)
                torch._foreach_copy_(updates, ms)
                torch._foreach_mul_(updates, [-a * s for a, s in zip(alphas, scales)])
            else:
                torch._foreach_mul_(updates, [a * s / dn for a, s, dn in zip(alphas, scales, denoms)])
                torch._foreach_lerp_(ms, updates, 1.0 - beta1)
                torch._foreach_copy_(updates, ms)
                torch._foreach_neg_(updates)
        else:
            torch._foreach_mul_(updates, [-a * s / dn for a, s, dn in zip(alphas, scales, denoms)])
        if group["weight_decay"] != 0:
            wd = group["weight_decay"]
            torch._foreach_mul_(thetas, [1.0 - wd * self._decay_rate(group, a, s) for a, s in zip(alphas, scales)])
        torch._foreach_add_(thetas, updates)
        for p, th in zip(ps, thetas):
            if th is not p:
                p.copy_(th)


def _rms(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x) / math.sqrt(x.numel())


def _grad(p: Tensor) -> Tensor:
    grad = p.grad
    if grad is None:  # step() passes only parameters with a gradient
        raise RuntimeError(f"expected a gradient on the {tuple(p.shape)} parameter, got None")
    return grad


def _state_spec(group: Any, p: Tensor) -> tuple[StateShapes, StateShapes]:
    """The state ``AdaFactor._init_state`` creates for ``p`` under the (saved) group's factoring settings."""
    shape = tuple(p.shape)
    required: StateShapes = {"step": None}
    axes = _factored_axes(p.shape, group["min_dim_size_to_factor"], group["factor_dims"])
    if axes is None:
        required["exp_avg_sq"] = shape
    else:
        row, col = list(shape), list(shape)
        row[axes[0]] = 1
        col[axes[1]] = 1
        required["exp_avg_sq_row"], required["exp_avg_sq_col"] = tuple(row), tuple(col)
    momentum: StateShapes = {"exp_avg": shape}  # kept if beta1 was set to 0 after it was created
    return (required | momentum, {}) if group["beta1"] > 0 else (required, momentum)


__all__ = ["ADAFACTOR_PRESETS", "AdaFactor", "AdaFactorPreset", "Eps1Mode", "FactorDims", "MomentumOn",
           "WeightDecayOn", "factored_axes"]
