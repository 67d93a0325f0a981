"""What the accumulating optimizers of :mod:`kexue.optim.accumulate` share: the micro-step counter, folding each
micro-batch gradient into the moments, updates on update steps, the state dict, and gradient release.

Su Jianlin, "隐藏在动量中的梯度累积：少更新几步，效果反而更好？" (Gradient accumulation hidden in momentum: update less
often and do better?), 2021-08-24, https://kexue.fm/archives/8634. With χ_{t/k} = 1 when k divides the micro-step t::

    m_t = [(β − 1)·χ_{(t−1)/k} + 1]·m_{t−1} + ((1 − β)/k)·g_t      (decay once, at the first micro-step of a cycle)
    θ_t = θ_{t−1} − χ_{t/k}·α_t·m_t                                 (move only at the last micro-step of a cycle)

The modes, the update rules of SGDM and Adam and how to drive the optimizers are in :mod:`kexue.optim.accumulate`'s
docstring; :class:`AccumMode` and :class:`GradientRelease` are exported from there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.utils.hooks import RemovableHandle

from .._validate import check_choice, check_float, check_int
from ._common import (
    StateShapes,
    check_count,
    check_flag,
    check_grad,
    check_optional_float,
    check_params,
    check_state_dict,
    check_state_dict_form,
    restore_state_precision,
    run_closure,
    state_dtype,
)

AccumMode = Literal["exact_m", "tilde_beta", "plain"]


class GradientRelease:
    """The hooks :meth:`_Accumulating.release_gradients` registered; ``remove()`` (or leaving a ``with`` block)
    returns the optimizer to the ordinary path."""

    def __init__(self, optimizer: _Accumulating, handles: list[RemovableHandle]) -> None:
        if not isinstance(optimizer, _Accumulating):
            raise TypeError(f"expected optimizer to be an AccumSGDM, AccumAdam or AccumAdamW (get the handle from its "
                            f"release_gradients()), got {type(optimizer).__name__}")
        if not isinstance(handles, list) or not all(isinstance(h, RemovableHandle) for h in handles):
            raise TypeError(f"expected handles to be a list of the hook handles release_gradients() registered, got "
                            f"{handles!r}")
        self.optimizer = optimizer
        self._handles = handles

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.optimizer._release = None

    def __enter__(self) -> GradientRelease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


class _Accumulating(Optimizer):
    """What the accumulating optimizers share: the micro-step counter, folding, updates, gradient release."""

    #: (state key, index of its β in the group's betas, squared gradient?) for each moment.
    _moments: tuple[tuple[str, int, bool], ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any], k: int, mode: AccumMode, update_every_k: bool) -> None:
        check_int("k", k, minimum=1)
        check_choice("mode", mode, AccumMode)
        check_flag("update_every_k", update_every_k)
        if mode == "exact_m" and not update_every_k and k > 1:
            raise ValueError("expected mode='tilde_beta' or 'plain' with update_every_k=False (mode='exact_m' folds "
                             "k micro-batches into one update, so it updates every k micro-steps), got "
                             "mode='exact_m'")
        self.k = k
        self.mode: AccumMode = mode
        self.update_every_k = update_every_k
        #: Micro-steps completed (t in the post).
        self.micro_step = 0
        self._release: GradientRelease | None = None
        #: ids of the parameters folded by the release hooks since the last ``step()`` (one backward per micro-step).
        self._released_ids: set[int] = set()
        super().__init__(params, defaults)

    @property
    def releases_gradients(self) -> bool:
        """Whether gradient release is on (:meth:`release_gradients`, until its handle is removed): each
        ``backward()`` folds gradients into the state inside the hooks, and ``.grad`` stays None."""
        return self._release is not None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (options not given are the constructor's); ValueError or TypeError naming a bad
        option, a repeated or a complex parameter, and the optimizer is left as it was."""
        super().add_param_group(param_group)
        gi = len(self.param_groups) - 1
        try:
            check_params(self.param_groups[gi], gi)
            self._check_group(self.param_groups[gi])
        except (TypeError, ValueError):
            del self.param_groups[gi]
            raise

    @staticmethod
    def _check_group(group: dict[str, Any]) -> None:
        """The options of one parameter group (the constructor's defaults, an added group, a loaded group)."""
        check_float("lr", group["lr"], low=0.0)
        check_float("weight_decay", group["weight_decay"], low=0.0)
        check_optional_float("max_update_norm", group["max_update_norm"], low=0.0, low_open=True)

    # ------------------------------------------------------------------------------------------ counting
    def _updates_at(self, t: int) -> bool:
        return t % self.k == 0 if self.update_every_k else True

    @property
    def is_update_step(self) -> bool:
        """Whether the last ``step()`` moved the parameters."""
        return self.micro_step > 0 and self._updates_at(self.micro_step)

    @property
    def will_update(self) -> bool:
        """Whether the next ``step()`` will move the parameters."""
        return self._updates_at(self.micro_step + 1)

    @property
    def update_count(self) -> int:
        """Parameter updates so far (what learning-rate schedules count)."""
        return self.micro_step // self.k if self.update_every_k else self.micro_step

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["accumulate"] = {"micro_step": self.micro_step, "k": self.k, "mode": self.mode,
                            "update_every_k": self.update_every_k, "optimizer": type(self).__name__}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: ValueError saying what does not fit (another optimizer's state, other
        accumulation settings, groups, parameters, state keys or shapes, bad group options), before any change."""
        check_state_dict_form(state_dict)
        state_dict = dict(state_dict)
        acc = state_dict.pop("accumulate", None)
        if not isinstance(acc, dict):
            raise ValueError(f"expected a state dict saved by an accumulating optimizer (with an 'accumulate' entry, "
                             f"the micro-step counter {type(self).__name__} resumes from), got one without it")
        mine = {"k": self.k, "mode": self.mode, "update_every_k": self.update_every_k}
        theirs = {key: acc.get(key) for key in mine}
        if theirs != mine:
            raise ValueError(f"expected a state dict saved with this optimizer's {mine}, got one saved with {theirs}")
        kind = acc.get("optimizer", type(self).__name__)  # absent in state dicts saved before it was recorded
        if kind != type(self).__name__:
            raise ValueError(f"expected a state dict saved by {type(self).__name__}, got one saved by {kind}")
        check_state_dict(self, state_dict, self._state_spec)
        check_count("micro_step", acc.get("micro_step"))
        for group in state_dict["param_groups"]:
            self._check_group(group)
        super().load_state_dict(state_dict)
        restore_state_precision(self, state_dict)
        self.micro_step = int(acc["micro_step"])

    def _state_spec(self, group: Any, p: Tensor) -> tuple[StateShapes, StateShapes]:
        """The state :meth:`_fold` creates for ``p``: the moments (``p``'s shape) and the counters."""
        required: StateShapes = {key: tuple(p.shape) for key, _, _ in self._moments}
        required.update(cycle=None, micro=None, updates=None, pending=None)
        return required, {}

    # ------------------------------------------------------------------------------------------ folding
    def _betas(self, group: dict[str, Any]) -> tuple[float, ...]:
        raise NotImplementedError

    def _fold(self, group: dict[str, Any], p: Tensor, grad: Tensor) -> None:
        """Fold one micro-batch gradient of ``p`` into its moments, at micro-step ``micro_step + 1``."""
        check_grad(p, grad, type(self).__name__)
        state = self.state[p]
        dtype = state_dtype(p)
        if len(state) == 0:
            for key, _, _ in self._moments:
                state[key] = torch.zeros(p.shape, dtype=dtype, device=p.device)
            state["cycle"] = -1  # the last cycle whose decay was applied
            state["micro"] = 0  # micro-batches folded
            state["updates"] = 0  # updates applied
            state["pending"] = False  # folded since the last update
        g = grad.to(dtype)
        wd = group.get("weight_decay", 0.0)
        if wd and not group["decoupled_weight_decay"]:
            # L2 (Adam's coupled decay): θ is constant within a cycle, so adding λθ to every micro-batch gradient
            # adds exactly λθ to their mean.
            g = g.add(p.to(dtype), alpha=wd)
        betas = self._betas(group)
        k = self.k
        if self.mode == "exact_m":
            cycle = self.micro_step // k  # = (t − 1) // k for the micro-step t = micro_step + 1
            first = state["cycle"] != cycle
            for key, bi, sq in self._moments:
                beta = betas[bi]
                buf = state[key]
                if first:
                    buf.mul_(beta)
                if sq:
                    buf.addcmul_(g, g, value=(1.0 - beta) / k)
                else:
                    buf.add_(g, alpha=(1.0 - beta) / k)
            state["cycle"] = cycle
        else:
            for key, bi, sq in self._moments:
                beta = betas[bi] if self.mode == "plain" else 1.0 - (1.0 - betas[bi]) / k
                buf = state[key]
                if sq:  # the forms torch.optim.Adam uses, so that k = 1 reproduces it to the last bit
                    buf.mul_(beta).addcmul_(g, g, value=1.0 - beta)
                else:
                    buf.lerp_(g, 1.0 - beta)
        state["micro"] += 1
        state["pending"] = True

    def _update(self, group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _clip(self, group: dict[str, Any], direction: Tensor) -> Tensor:
        c = group["max_update_norm"]
        norm = torch.linalg.vector_norm(direction)
        return direction * torch.clamp(c / (norm + 1e-12), max=1.0)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Finish one micro-step: fold the gradients present, advance the counter, move parameters on update steps."""
        loss = run_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._fold(group, p, p.grad)
        self.micro_step += 1
        if self._updates_at(self.micro_step):
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state.get(p)
                    if state and state["pending"]:
                        self._update(group, p, state)
                        state["pending"] = False
                        state["updates"] += 1
        self._released_ids.clear()
        return loss

    # ------------------------------------------------------------------------------------------ release
    def release_gradients(self) -> GradientRelease:
        """Fold every parameter's gradient into the optimizer state inside backward, then free ``.grad``.

        Registers a ``Tensor.register_post_accumulate_grad_hook`` on each parameter: as soon as backward has
        accumulated a parameter's gradient it is folded (decay at the first micro-step of a cycle, (1 − β)/k·g
        added) and ``p.grad`` is set to None. Keep calling ``step()`` after each ``backward()``: it advances the
        micro-step counter and moves the parameters on update steps. Returns a handle; ``remove()`` undoes it.
        Not for ``DistributedDataParallel`` (see the module docstring).

        One ``backward()`` per micro-step: a second one before ``step()`` raises RuntimeError, since folding each
        backward's gradient separately would put Σgᵢ² instead of (Σgᵢ)² into Adam's second moment (and decay twice
        outside ``"exact_m"``). Several losses are summed first and back-propagated once.
        """
        if self._release is not None:
            raise RuntimeError("expected gradient release off before release_gradients(), got it already on for this "
                               "optimizer (remove() the handle first)")
        handles = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    handles.append(p.register_post_accumulate_grad_hook(self._make_hook(group)))
        self._released_ids.clear()
        self._release = GradientRelease(self, handles)
        return self._release

    def _make_hook(self, group: dict[str, Any]) -> Callable[[Tensor], None]:
        def hook(p: Tensor) -> None:
            if p.grad is None:  # backward has just accumulated it; nothing to fold otherwise
                return
            if id(p) in self._released_ids:
                raise RuntimeError(f"expected one backward() per micro-step with gradient release on, got a second "
                                   f"backward() for a {tuple(p.shape)} parameter before step() (each pass would be "
                                   f"folded on its own: Σg² instead of (Σg)² in a second moment); sum the losses and "
                                   f"call backward() once per micro-step, or remove() the release handle")
            self._released_ids.add(id(p))
            with torch.no_grad():
                self._fold(group, p, p.grad)
            p.grad = None

        return hook


__all__ = ["AccumMode", "GradientRelease"]
