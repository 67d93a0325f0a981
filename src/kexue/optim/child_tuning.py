"""ChildTuning: dropout on the gradient (F) or a fixed Fisher mask (D), around any optimizer.

Su Jianlin, "ChildTuning：试试把Dropout加到梯度上去？" (ChildTuning: what if we put dropout on the gradient?),
2021-11-22, https://kexue.fm/archives/8764; Xu et al., "Raise a Child in Large Language Model", arXiv 2109.05687.

- **ChildTuning-F** (task-free): every step draws M ~ Bernoulli(p) element-wise and sets g ← g ⊗ M/p.
- **ChildTuning-D** (task-dependent): a fixed 0/1 mask M over the top-p fraction of scalar parameters by Fisher
  information F_i = (1/n)·Σ_j (∂ log p(y_j|x_j; θ)/∂θ_i)², computed before fine-tuning; g ← g ⊗ M/p.

Su's reading: under Adam, gradient dropout in the long run scales the learning rate by √p (the step tends to
η·√p·E[g]/√E[g²]) rather than adding variance; his CLUE runs show small, mixed effects. He also tried masking the
parameter *increment*, Δθ ← Δθ ⊗ M/p, with the optimizer state seeing the full gradient (``mask_on="update"``).

Where the official code (AliceMind ``ChildTuningAdamW``) and the post differ, the library follows the post: the
official D mode multiplies by M without dividing by p; ``rescale=False`` reproduces it (both divide in F mode, and
``rescale=False`` drops the division there too). Under Adam the difference is almost nil (near scale invariance);
under SGD it changes the effective lr by 1/p.

Order of operations: the mask is applied in ``step()``, once per optimizer step, after gradient accumulation and AMP
unscaling, and after any gradient clipping the caller does before ``step()`` (clip, then mask). With an accumulating
optimizer from :mod:`kexue.optim.accumulate` (ordinary path, not gradient release) one F mask is drawn per cycle and
used for all its micro-batches, so each update sees one mask. Under ``DistributedDataParallel`` seed ``generator``
identically on every rank so that the ranks draw the same masks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from itertools import chain
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from .._validate import check_choice, check_float, check_generator
from ._common import check_flag, check_grad, check_optional_float, check_state_dict, check_state_dict_form, run_closure

ChildTuningMode = Literal["F", "D"]
MaskOn = Literal["grad", "update"]
FisherScope = Literal["global", "per_tensor"]
ParamFilter = Callable[[str, Tensor], bool]

# Optimizers whose weight_decay is L2 added to the gradient (they carry no "decoupled_weight_decay" flag).
_COUPLED = (torch.optim.SGD, torch.optim.Adagrad, torch.optim.RMSprop, torch.optim.Adamax, torch.optim.ASGD)


class ChildTuning(Optimizer):
    """Masks the gradients (or the parameter increments) of another optimizer, as ChildTuning-F or -D.

    Shares the base optimizer's ``param_groups`` and ``state`` (so learning-rate schedulers work on either); its
    ``state_dict`` is the base's plus the D masks and the generator state.

    Args:
        base: the optimizer to wrap (any ``torch.optim.Optimizer``).
        mode: ``"F"`` (a fresh Bernoulli(``reserve_p``) mask per step) or ``"D"`` (the fixed ``masks``).
        reserve_p: p, the kept fraction.
        mask_on: ``"grad"`` masks ``p.grad`` before ``base.step()``; ``"update"`` masks the increment
            Δθ = θ_after − θ_before that ``base.step()`` made (weight decay included).
        rescale: divide by p (the post; default). ``False`` with D reproduces the official code.
        masks: D mode: ``{parameter: bool mask}`` (see :func:`fisher_mask`); parameters without one update normally.
        mask_weight_decay: with ``mask_on="grad"``, apply the base's weight decay only where the mask is 1 (by default
            decoupled decay still shrinks masked entries, so masked is not frozen). Needs a base whose decay rule is
            known: a ``decoupled_weight_decay`` group flag (θ ← θ(1 − lr·λ), e.g. ``torch.optim.AdamW``) or an L2
            optimizer such as ``torch.optim.SGD``.
        param_filter: F mode: ``(name, parameter) -> bool`` choosing the parameters to mask (names are those given
            to the base optimizer as named parameters, else ``""``); default all.
        generator: the ``torch.Generator`` for F masks (default: torch's global generator); its state is saved.
    """

    def __init__(self, base: Optimizer, mode: ChildTuningMode = "F", reserve_p: float = 0.2, mask_on: MaskOn = "grad",
                 rescale: bool = True, masks: Mapping[Tensor, Tensor] | None = None,
                 mask_weight_decay: bool = False, param_filter: ParamFilter | None = None,
                 generator: torch.Generator | None = None) -> None:
        if not isinstance(base, Optimizer):
            raise TypeError(f"expected base to be a torch.optim.Optimizer, got {type(base).__name__}")
        check_choice("mode", mode, ChildTuningMode)
        check_choice("mask_on", mask_on, MaskOn)
        check_float("reserve_p", reserve_p, low=0.0, high=1.0, low_open=True)
        check_flag("rescale", rescale)
        check_flag("mask_weight_decay", mask_weight_decay)
        if masks is not None and not isinstance(masks, Mapping):
            raise TypeError(f"expected masks to be a {{parameter: bool mask}} mapping (see fisher_mask), got "
                            f"{type(masks).__name__}")
        if param_filter is not None and not callable(param_filter):
            raise TypeError(f"expected param_filter to be a callable (name, parameter) -> bool, or None, got "
                            f"{type(param_filter).__name__}")
        check_generator("generator", generator)
        if mode == "D" and masks is None:
            raise ValueError("expected masks with mode='D' (compute them with fisher_mask(model, loader, loss_fn, "
                             "reserve_p)), got None")
        if mode == "F" and masks is not None:
            raise ValueError("expected masks=None with mode='F' (it draws its own masks; masks are for mode='D'), "
                             f"got masks for {len(masks)} parameters")
        if mode == "D" and param_filter is not None:
            raise ValueError("expected param_filter=None with mode='D' (it masks exactly the parameters in masks; "
                             "param_filter is for mode='F'), got a filter")
        if mask_weight_decay and mask_on == "update":
            raise ValueError("expected mask_on='grad' with mask_weight_decay=True (mask_on='update' already masks "
                             "the whole increment, weight decay included), got mask_on='update'")
        self.base = base
        self.mode: ChildTuningMode = mode
        self.reserve_p = float(reserve_p)
        self.mask_on: MaskOn = mask_on
        self.rescale = rescale
        self.mask_weight_decay = mask_weight_decay
        self.generator = generator
        super().__init__(base.param_groups, base.defaults)
        self.param_groups = base.param_groups
        self.state = base.state
        all_params = list(chain.from_iterable(g["params"] for g in self.param_groups))
        known = {id(p) for p in all_params}
        self.masks: dict[Tensor, Tensor] = {}
        if masks is not None:
            for p, m in masks.items():
                if id(p) not in known:
                    raise ValueError(f"expected masks keyed by parameters of the base optimizer, got a "
                                     f"{tuple(p.shape)} tensor that is not one")
                if m.shape != p.shape or m.dtype != torch.bool:
                    raise ValueError(f"expected a bool mask of shape {tuple(p.shape)}, got {m.dtype} "
                                     f"{tuple(m.shape)}")
                self.masks[p] = m.to(p.device)
        # F mode: which parameters get gradient dropout
        self._f_params: list[Tensor] = []
        if mode == "F":
            for g in self.param_groups:
                names = g.get("param_names") or [""] * len(g["params"])
                self._f_params += [p for n, p in zip(names, g["params"]) if param_filter is None or param_filter(n, p)]
        self._current: dict[Tensor, Tensor] = {}  # the F masks in use (kept for a whole accumulation cycle)
        self._n_steps = 0  # step() calls so far
        self._drawn_at = -1  # the step the current F masks were drawn (or confirmed) for
        if mask_weight_decay:
            for g in self.param_groups:
                if g.get("weight_decay", 0) and "decoupled_weight_decay" not in g and not isinstance(base, _COUPLED):
                    raise ValueError(f"expected a base whose weight decay rule is known with mask_weight_decay=True "
                                     f"(a 'decoupled_weight_decay' group flag, or an L2 optimizer such as SGD), got "
                                     f"{type(base).__name__}")

    def __getattr__(self, name: str) -> Any:
        # is_update_step, will_update, update_count, micro_step, k... of an accumulating base
        if name == "base" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    # ------------------------------------------------------------------------------------------ masks
    def _draw(self, p: Tensor) -> Tensor:
        gen = self.generator
        device = gen.device if gen is not None else p.device
        return (torch.rand(p.shape, generator=gen, device=device) < self.reserve_p).to(p.device)

    def current_masks(self) -> dict[Tensor, Tensor]:
        """The masks the next ``step()`` applies: the D masks, or F masks drawn now (kept through an accumulation
        cycle of an accumulating base)."""
        if self.mode == "D":
            return self.masks
        if self._drawn_at == self._n_steps:
            return self._current
        k = getattr(self.base, "k", 1)
        first_of_cycle = k == 1 or getattr(self.base, "micro_step", 0) % k == 0 or not getattr(
            self.base, "update_every_k", True)
        if first_of_cycle or not self._current:
            self._current = {p: self._draw(p) for p in self._f_params}
        self._drawn_at = self._n_steps
        return self._current

    # ------------------------------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = run_closure(closure)
        if getattr(self.base, "releases_gradients", False):
            raise RuntimeError("expected a base optimizer on the ordinary path (ChildTuning masks .grad in step()), "
                               "got one that releases gradients inside backward (release_gradients()), which leaves "
                               "nothing to mask")
        masks = self.current_masks()
        for p in masks:
            if p.grad is not None:
                check_grad(p, p.grad, "ChildTuning")
        self._n_steps += 1
        scale = 1.0 / self.reserve_p if self.rescale else 1.0
        if self.mask_on == "update":
            before = {p: p.detach().clone() for p in masks if p.grad is not None}
            self.base.step()
            for p, old in before.items():
                p.sub_(old).mul_(masks[p])
                if scale != 1.0:
                    p.mul_(scale)
                p.add_(old)
            return loss
        saved_wd = self._take_weight_decay(masks) if self.mask_weight_decay else None
        for p, m in masks.items():
            if p.grad is not None:
                p.grad.mul_(m)
                if scale != 1.0:
                    p.grad.mul_(scale)
        try:
            self.base.step()
        finally:
            if saved_wd is not None:
                for g, wd in saved_wd:
                    g["weight_decay"] = wd
        return loss

    def _take_weight_decay(self, masks: dict[Tensor, Tensor]) -> list[tuple[dict[str, Any], float]]:
        """Apply the base's weight decay ourselves, masked, and switch it off in the base for this step."""
        saved = []
        will_update = getattr(self.base, "will_update", True)
        for g in self.param_groups:
            wd = g.get("weight_decay", 0.0)
            if not wd:
                continue
            saved.append((g, wd))
            g["weight_decay"] = 0.0
            decoupled = bool(g.get("decoupled_weight_decay", False))
            for p in g["params"]:
                if p.grad is None:
                    continue
                m = masks.get(p)
                if decoupled:
                    if will_update:  # θ ← θ − lr·λ·M⊙θ, where the base would have applied θ(1 − lr·λ)
                        p.sub_(p * (m if m is not None else 1.0), alpha=g["lr"] * wd)
                else:  # L2: λθ joins the gradient before it is masked
                    p.grad.add_(p, alpha=wd)
        return saved

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        sd = self.base.state_dict()
        index = {id(p): i for i, p in enumerate(chain.from_iterable(g["params"] for g in self.param_groups))}
        sd["child_tuning"] = {
            "mode": self.mode, "reserve_p": self.reserve_p, "mask_on": self.mask_on, "rescale": self.rescale,
            "masks": {index[id(p)]: m.clone() for p, m in self.masks.items()},
            "f_masks": {index[id(p)]: m.clone() for p, m in self._current.items()},
            "generator": self.generator.get_state() if self.generator is not None else None,
            "n_steps": self._n_steps, "drawn_at": self._drawn_at,
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: ValueError saying what does not fit (a state without ChildTuning's
        entry, other settings, groups or parameters, masks of other shapes), before any change; the base optimizer
        checks its own per-parameter state."""
        check_state_dict_form(state_dict)
        state_dict = dict(state_dict)
        ct = state_dict.pop("child_tuning", None)
        if not isinstance(ct, dict):
            raise ValueError("expected a state dict saved by ChildTuning (with a 'child_tuning' entry), got one "
                             "without it")
        mine = {"mode": self.mode, "reserve_p": self.reserve_p, "mask_on": self.mask_on, "rescale": self.rescale}
        theirs = {k: ct.get(k) for k in mine}
        if theirs != mine:
            raise ValueError(f"expected a state dict saved with this ChildTuning's {mine}, got one saved with "
                             f"{theirs}")
        # groups and parameters here; the base optimizer checks its per-parameter state itself
        check_state_dict(self, state_dict, name=f"ChildTuning over {type(self.base).__name__}")
        params = list(chain.from_iterable(g["params"] for g in self.param_groups))
        for entry in ("masks", "f_masks"):
            for i, m in ct[entry].items():
                if not 0 <= i < len(params):
                    raise ValueError(f"expected {entry} for parameter indices 0..{len(params) - 1}, got index {i}")
                if tuple(m.shape) != tuple(params[i].shape):
                    raise ValueError(f"expected the {entry} entry of parameter {i} to have its shape "
                                     f"{tuple(params[i].shape)}, got {tuple(m.shape)}")
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state
        self.masks = {params[i]: m.to(params[i].device) for i, m in ct["masks"].items()}
        self._current = {params[i]: m.to(params[i].device) for i, m in ct["f_masks"].items()}
        self._n_steps, self._drawn_at = ct["n_steps"], ct["drawn_at"]
        if ct["generator"] is not None:
            if self.generator is None:
                raise ValueError("expected a ChildTuning with a generator to load a state dict that holds a generator "
                                 "state, got generator=None")
            self.generator.set_state(ct["generator"])


# ---------------------------------------------------------------------------------------------- Fisher (D mode)
def fisher_information(model: nn.Module, loader: Iterable[Any], loss_fn: Callable[[nn.Module, Any], Tensor],
                       max_grad_norm: float | None = None, param_filter: ParamFilter | None = None,
                       train_mode: bool = False) -> dict[str, Tensor]:
    """The empirical Fisher information of each scored parameter, as the official ChildTuning code computes it.

    F = (1/N)·Σ_batches g_b², with g_b the gradient of ``loss_fn(model, batch)`` (the mean negative log-likelihood
    of the true labels), optionally clipped per tensor to ``max_grad_norm`` first, and N the number of batches. With
    batches of one example this is the post's (1/n)·Σ_j (∂ log p(y_j|x_j; θ)/∂θ)².

    Runs in eval mode (dropout off, for determinism) unless ``train_mode=True`` (the official pass runs in train
    mode); the model's mode and any existing gradients are restored afterwards. Returns ``{name: F}`` for the
    parameters that require grad and pass ``param_filter(name, parameter)``. ValueError when ``loss_fn`` gives
    something other than a scalar tensor, or a loss or gradient is not finite (the scores would be NaN and a mask
    drawn from them empty).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(loader, Iterable):
        raise TypeError(f"expected loader to be an iterable of batches, got {type(loader).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"expected loss_fn to be a callable (model, batch) -> loss, got {type(loss_fn).__name__}")
    if param_filter is not None and not callable(param_filter):
        raise TypeError(f"expected param_filter to be a callable (name, parameter) -> bool, or None, got "
                        f"{type(param_filter).__name__}")
    check_optional_float("max_grad_norm", max_grad_norm, low=0.0, low_open=True)
    named = [(n, p) for n, p in model.named_parameters()
             if p.requires_grad and (param_filter is None or param_filter(n, p))]
    if not named:
        raise ValueError("expected at least one trainable parameter that param_filter accepts, got none")
    was_training = model.training
    saved_grads = {p: p.grad for _, p in model.named_parameters()}
    scores = {n: torch.zeros_like(p, dtype=torch.float64 if p.dtype == torch.float64 else torch.float32)
              for n, p in named}
    batches = 0
    try:
        model.train(train_mode)
        for batch in loader:
            for p in saved_grads:
                p.grad = None
            with torch.enable_grad():
                loss = loss_fn(model, batch)
                if not isinstance(loss, Tensor) or loss.dim() != 0:
                    got = f"a {tuple(loss.shape)} tensor" if isinstance(loss, Tensor) else type(loss).__name__
                    raise ValueError(f"expected loss_fn to return a scalar tensor, got {got} for batch {batches}")
                loss.backward()
            for n, p in named:
                if p.grad is None:
                    continue
                if max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(p, max_grad_norm)  # per tensor, as the official code does
                scores[n].addcmul_(p.grad, p.grad)
            batches += 1
    finally:
        model.train(was_training)
        for p, g in saved_grads.items():
            p.grad = g
    if batches == 0:
        raise ValueError("expected a loader that yields batches, got one that yielded none")
    for n, s in scores.items():
        if not bool(torch.isfinite(s).all()):
            raise ValueError(f"expected finite Fisher information, got non-finite scores for {n!r} (a loss or "
                             f"gradient was nan or inf)")
        s.div_(batches)
    return scores


def _percentile(x: Tensor, q: float) -> Tensor:
    """``numpy.percentile(x, q)`` (linear interpolation) for a flat tensor, with ``torch.kthvalue`` (no size limit,
    unlike ``torch.quantile``)."""
    check_float("q", q, low=0.0, high=100.0)
    x = x.reshape(-1)
    n = x.numel()
    if n == 0:
        raise ValueError("expected a non-empty tensor, got one with no element")
    pos = q / 100.0 * (n - 1)
    lo = int(pos)
    frac = pos - lo
    a = torch.kthvalue(x, lo + 1).values
    if frac == 0.0 or lo + 1 >= n:
        return a
    b = torch.kthvalue(x, lo + 2).values
    diff = b - a
    # numpy's _lerp: a + (b − a)·t, computed from b when t ≥ 0.5
    return b - diff * (1.0 - frac) if frac >= 0.5 else a + diff * frac


def fisher_mask(model: nn.Module, loader: Iterable[Any], loss_fn: Callable[[nn.Module, Any], Tensor],
                reserve_p: float, scope: FisherScope = "global",
                max_grad_norm: float | None = None, param_filter: ParamFilter | None = None,
                train_mode: bool = False) -> dict[Tensor, Tensor]:
    """ChildTuning-D's mask: the top-``reserve_p`` fraction of scored parameters by Fisher information.

    The threshold is the (1 − p)·100-th percentile (``numpy.percentile``) of the scores over all scored parameters
    (``scope="global"``, the official code, which scores the encoder layers only: pass
    ``param_filter=lambda n, p: "layer" in n`` for that) or within each tensor (``"per_tensor"``); a parameter is kept
    when its score is ≥ the threshold. See :func:`fisher_information` for the scores. Returns ``{parameter: bool}``.
    """
    check_float("reserve_p", reserve_p, low=0.0, high=1.0, low_open=True)
    check_choice("scope", scope, FisherScope)
    scores = fisher_information(model, loader, loss_fn, max_grad_norm, param_filter, train_mode)
    params = dict(model.named_parameters())
    q = (1.0 - reserve_p) * 100.0
    if scope == "global":
        thr = _percentile(torch.cat([s.reshape(-1) for s in scores.values()]), q)
        return {params[n]: s >= thr for n, s in scores.items()}
    return {params[n]: s >= _percentile(s, q) for n, s in scores.items()}


__all__ = ["ChildTuning", "ChildTuningMode", "FisherScope", "MaskOn", "ParamFilter", "fisher_information",
           "fisher_mask"]
