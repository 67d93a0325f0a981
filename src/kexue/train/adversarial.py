"""Adversarial training with FGM on the embeddings (对抗训练浅谈：意义、方法和思考（附Keras实现）, 2020-03-01,
https://kexue.fm/archives/7234).

FGM takes one normalised gradient-ascent step on the input and trains at the moved point:

    g = ∇_E L(x, y; θ),   δ = ε·g/(‖g‖ + 1e-8),   update θ with ∇_θ L(E + δ)   (then E ← E − δ).

Su perturbs the embedding *matrix* E (so a token gets the same δ wherever it occurs); the norm is one Frobenius norm
over the whole matrix gradient of the batch (bert4keras: ``delta = epsilon * grads / (sqrt(sum(grads**2)) + 1e-8)``),
and only the adversarial loss drives the update (ε = 1 in the routine's signature, 0.5 in the IFLYTEK example).
The PyTorch FGM copied across the web instead back-propagates the clean loss first and adds the adversarial
gradient (``loss.backward(); attack(); loss_adv.backward(); restore()``): a different objective, L(x) + L(x + δ).
Both are here, named (:data:`FGM_PRESETS`, :meth:`FGM.preset`): ``"post"`` and ``"pytorch"``.

Departures, each on purpose: δ comes from the gradient of the current (micro-)batch only, never from ``.grad``
(which holds earlier micro-batches under gradient accumulation; the copied PyTorch code reads ``param.grad``);
the perturbed rows are restored from a copy (bit-exact), not by subtracting δ (float addition does not undo
exactly); a gradient that is not finite (fp16 overflow) gives no perturbation (the step is then a clean step).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_float
from ..models.recompute import unwrap
from ._embedding import _find_input_embedding, autocast_for

FGMNorm = Literal["l2", "row", "sign"]
FGMScope = Literal["weight", "output"]
FGMUpdate = Literal["adv_only", "clean+adv"]
FGMPreset = Literal["post", "pytorch"]

#: Named forms (:meth:`FGM.preset`), one entry per name of :data:`FGMPreset`. ``post``: the post's / bert4keras's
#: FGM (matrix scope, one Frobenius norm over the whole table gradient, only the adversarial loss drives the update,
#: ε = 0.5 as in the IFLYTEK example). ``pytorch``: the widely copied PyTorch FGM (the same perturbation, ε = 1,
#: clean plus adversarial gradient).
FGM_PRESETS: dict[FGMPreset, dict[str, Any]] = {
    "post": dict(epsilon=0.5, norm="l2", scope="weight", update="adv_only"),
    "pytorch": dict(epsilon=1.0, norm="l2", scope="weight", update="clean+adv"),
}


class FGMLosses(NamedTuple):
    """What :func:`fgm_step` returns: the clean and the adversarial loss of the step, detached."""

    clean: Tensor
    adversarial: Tensor


def perturbation(grad: Tensor, epsilon: float, norm: FGMNorm, eps: float = 1e-8) -> Tensor:
    """δ from a gradient: ``"l2"`` ε·g/(‖g‖_F + eps) over the whole tensor (bert4keras), ``"row"`` the same per last-
    dimension row (per token row of the table, or per position of the embedding output), ``"sign"`` ε·sign(g) (FGSM).
    Computed in float32 or wider."""
    if not isinstance(grad, Tensor) or not grad.is_floating_point():
        got = grad.dtype if isinstance(grad, Tensor) else type(grad).__name__
        raise TypeError(f"expected grad to be a floating-point tensor, got {got}")
    check_float("epsilon", epsilon, low=0.0)
    check_float("eps", eps, low=0.0)
    check_choice("norm", norm, FGMNorm)
    return _perturbation(grad, epsilon, norm, eps)


def _perturbation(grad: Tensor, epsilon: float, norm: FGMNorm, eps: float) -> Tensor:
    """:func:`perturbation` of arguments already checked (by it, or by :class:`FGM`'s constructor)."""
    g = grad.float() if grad.dtype in (torch.float16, torch.bfloat16) else grad
    if norm in ("l2", "row"):
        n = torch.linalg.vector_norm(g) if norm == "l2" else torch.linalg.vector_norm(g, dim=-1, keepdim=True)
        denom = n + eps
        # a zero gradient gives no step (not 0/0 when eps = 0)
        return torch.where(denom > 0, epsilon * g / denom.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))
    return epsilon * torch.sign(g)


class FGM:
    """Fast gradient method on a model's input embedding (kexue.fm/archives/7234, 2020-03-01).

    ``FGM(model_or_embedding, epsilon=0.5, norm="l2", scope="weight", update="adv_only")``:

    - ``model_or_embedding``: the ``nn.Embedding`` to perturb, or a model whose input embedding
      :func:`kexue.train.find_input_embedding` finds (kexue, transformers, DDP-wrapped);
    - ``norm``: ``"l2"`` (one norm over the whole gradient, the post), ``"row"`` (each token row / position on its
      own), ``"sign"`` (FGSM);
    - ``scope``: ``"weight"`` perturbs the embedding matrix (the post: a token gets the same δ everywhere);
      ``"output"`` adds δ to the embedding output through a forward hook (one δ per token position; a different,
      stronger perturbation; padding positions can be masked);
    - ``update``: ``"adv_only"`` (the post: only L(x + δ) drives the update; the clean gradient goes to the
      embedding alone, not into ``.grad``) or ``"clean+adv"`` (the common PyTorch form: the clean loss is
      back-propagated into ``.grad`` too).

    Use as a context manager around the adversarial forward and backward::

        loss = loss_fn(model(batch))
        with fgm.perturbed(loss):            # clean gradient, then E + δ (restored on exit, also on an exception)
            loss_fn(model(batch)).backward()
        optimizer.step()                     # after the block: the update applies to the clean weights

    or :func:`fgm_step` for the whole step (DDP, gradient accumulation, GradScaler, autocast). Named forms:
    :meth:`preset` (``"post"``, ``"pytorch"``).
    """

    def __init__(self, model_or_embedding: nn.Module, epsilon: float = 0.5, norm: FGMNorm = "l2",
                 scope: FGMScope = "weight", update: FGMUpdate = "adv_only", eps: float = 1e-8) -> None:
        check_choice("norm", norm, FGMNorm)
        check_choice("scope", scope, FGMScope)
        check_choice("update", update, FGMUpdate)
        self.epsilon = check_float("epsilon", epsilon, low=0.0)
        self.eps = check_float("eps", eps, low=0.0)
        self.embedding = _find_input_embedding(model_or_embedding, "model_or_embedding")
        self.norm, self.scope, self.update = norm, scope, update
        self._active = False
        self._output_delta: Tensor | None = None
        self._last_output: Tensor | None = None
        self._hook = self.embedding.register_forward_hook(self._on_output) if scope == "output" else None
        #: After each :meth:`perturbed`: the norm of δ (0.0 when skipped) and whether a non-finite gradient skipped it.
        self.last_delta_norm = 0.0
        self.skipped = False

    @classmethod
    def preset(cls, name: FGMPreset, model_or_embedding: nn.Module, **overrides: Any) -> FGM:
        """A named form of FGM (see :data:`FGM_PRESETS`: ``"post"``, ``"pytorch"``), with any argument overridden."""
        check_choice("name", name, FGMPreset)
        return cls(model_or_embedding, **{**FGM_PRESETS[name], **overrides})

    def __repr__(self) -> str:
        return (f"FGM(epsilon={self.epsilon}, norm={self.norm!r}, scope={self.scope!r}, update={self.update!r}, "
                f"embedding={type(self.embedding).__name__}{tuple(self.embedding.weight.shape)})")

    # ------------------------------------------------------------------------------------------- output scope
    def _on_output(self, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor | None:
        if self._output_delta is not None:
            delta = self._output_delta
            if delta.shape != output.shape:
                raise RuntimeError(f"expected the perturbed forward's embedding output in the shape of the clean one, "
                                   f"{tuple(delta.shape)}, got {tuple(output.shape)}: run the same batch")
            return output + delta.to(output.dtype)
        if torch.is_grad_enabled() and output.requires_grad:
            self._last_output = output  # for the clean gradient of the next perturbed()
        return None

    def remove(self) -> None:
        """Remove the forward hook of the output scope (the FGM is unusable afterwards)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self._last_output = None

    # ------------------------------------------------------------------------------------------- the gradient
    def _clean_gradient(self, loss: Tensor, scaler: Any | None) -> Tensor:
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"expected loss to be a scalar tensor (the clean loss), got {got}")
        if not loss.requires_grad:
            raise ValueError("expected a clean loss that requires grad, got one that does not: compute it with "
                             "autograd on")
        if self.scope == "weight":
            target = self.embedding.weight
            if not target.requires_grad:
                raise ValueError("expected an embedding weight that requires grad for scope='weight', got a frozen "
                                 "one: unfreeze it or use scope='output'")
        else:
            if self._hook is None:
                raise RuntimeError("expected an FGM with its forward hook, got one after remove()")
            recorded = self._last_output
            if recorded is None:
                raise RuntimeError("expected an embedding output recorded by the clean forward (scope='output'), got "
                                   "none: compute the clean loss with autograd on, through the embedding this FGM was "
                                   "built for")
            target = recorded
        scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else None
        scaled = loss * scale if scale is not None else loss
        if self.update == "adv_only":
            try:
                (g,) = torch.autograd.grad(scaled, [target])
            except RuntimeError as e:
                if "not have been used in the graph" in str(e):
                    raise RuntimeError("expected a clean loss that depends on the FGM's embedding (or its recorded "
                                       "output), got one that does not: compute it from the model this FGM was "
                                       "built for") from e
                raise
        else:  # clean + adv: the clean loss goes into .grad; a hook catches this backward's embedding gradient
            caught: list[Tensor] = []
            handle = target.register_hook(lambda grad: caught.append(grad))
            try:
                scaled.backward()
            finally:
                handle.remove()
            if not caught:
                raise RuntimeError("expected a clean loss that depends on the FGM's embedding, got one that does not")
            g = caught[0]
            for more in caught[1:]:  # a tied table used twice in the graph
                g = g + more
        g = g.float() if g.dtype in (torch.float16, torch.bfloat16) else g
        return g / scale if scale is not None else g

    # ------------------------------------------------------------------------------------------- the block
    @contextlib.contextmanager
    def perturbed(self, loss: Tensor, mask: Tensor | None = None, scaler: Any | None = None) -> Iterator[FGM]:
        """Take the gradient of the clean ``loss`` with respect to the embedding, move the embedding by δ for the
        duration of the block, restore it exactly on exit (also when the block raises).

        ``"adv_only"``: the clean gradient reaches the embedding only (``torch.autograd.grad``); ``"clean+adv"``:
        ``loss`` is back-propagated into ``.grad`` (through ``scaler.scale`` when a ``GradScaler`` is given).
        ``scaler``: δ is computed from the unscaled gradient. ``mask`` (scope ``"output"``: (batch, seq), 1 = real
        token): no perturbation at padding, and padding does not count in the norm. Do the adversarial forward *and*
        backward inside the block, ``optimizer.step()`` after it. Under ``DistributedDataParallel`` compute the clean
        loss inside ``model.no_sync()`` (its gradient must not start an all-reduce); :func:`fgm_step` does that.
        """
        if self._active:
            raise RuntimeError("expected FGM.perturbed() blocks one after another, got one inside another: blocks "
                               "cannot nest")
        if mask is not None and self.scope != "output":
            raise ValueError("expected mask=None with scope='weight' (it perturbs table rows, not positions; mask "
                             "applies to scope 'output'), got a mask")
        g = self._clean_gradient(loss, scaler)
        self._last_output = None
        if mask is not None:
            if mask.shape != g.shape[:-1]:
                raise ValueError(f"expected mask in the embedding output's shape {tuple(g.shape[:-1])}, got "
                                 f"{tuple(mask.shape)}")
            g = g * mask.unsqueeze(-1).to(g.dtype)
        rows = None
        if self.scope == "weight":
            # only the batch's tokens (and a tied decoder's rows) have a gradient: work on those rows alone, not on
            # the whole (vocab, hidden) table; the l2 norm over them is the norm over the table (NaN/inf rows kept)
            rows = g.ne(0).any(dim=-1).nonzero().squeeze(-1)
            g = g.index_select(0, rows)
        self.skipped = not bool(torch.isfinite(g).all())
        if self.skipped:
            self.last_delta_norm = 0.0
            yield self
            return
        delta = _perturbation(g, self.epsilon, self.norm, self.eps)
        self.last_delta_norm = float(torch.linalg.vector_norm(delta))
        self._active = True
        try:
            if rows is None:
                self._output_delta = delta.detach()
                try:
                    yield self
                finally:
                    self._output_delta = None
            else:
                with self._weight_perturbed(rows, delta):
                    yield self
        finally:
            self._active = False

    @contextlib.contextmanager
    def _weight_perturbed(self, rows: Tensor, delta: Tensor) -> Iterator[None]:
        """Add ``delta`` (one row per index of ``rows``) to the embedding weight; restore the rows from a copy."""
        w = self.embedding.weight
        with torch.no_grad():
            backup = w.index_select(0, rows)
            w.index_add_(0, rows, delta.to(w.dtype))
        version = w._version
        try:
            yield
        except BaseException:
            with torch.no_grad():
                w.index_copy_(0, rows, backup)
            raise
        if w._version != version:  # the weight changed inside the block: keep that change, take δ back off
            with torch.no_grad():
                w.index_add_(0, rows, -delta.to(w.dtype))
            raise RuntimeError("expected the embedding weight unchanged inside FGM.perturbed(), got it modified "
                               "inside the block (optimizer.step() inside it?): δ was subtracted, but the restore is "
                               "no longer exact; step after the block")
        with torch.no_grad():
            w.index_copy_(0, rows, backup)


def _no_sync(model: nn.Module) -> contextlib.AbstractContextManager[Any]:
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if callable(no_sync) else contextlib.nullcontext()


def fgm_step(model: nn.Module, batch: Any, loss_fn: Callable[[nn.Module, Any], Tensor],
             optimizer: torch.optim.Optimizer | None, fgm: FGM, scaler: Any | None = None, mask: Tensor | None = None,
             autocast_dtype: torch.dtype | None = None) -> FGMLosses:
    """One FGM training step: :class:`FGMLosses` ``(clean, adversarial)``, the two losses, detached.

    ``loss_fn(model, batch)`` returns the scalar loss (already divided by the number of micro-steps under gradient
    accumulation). The clean forward and its gradient run first (under ``model.no_sync()`` when ``model`` is
    ``DistributedDataParallel``, so only the adversarial backward all-reduces; each rank's δ comes from its own
    batch, as each micro-batch's does), then the adversarial forward and backward inside :meth:`FGM.perturbed`.
    With an ``optimizer`` the step follows (``scaler.step``/``update`` with a scaler) and the gradients are zeroed;
    with ``optimizer=None`` the gradients stay in ``.grad`` (accumulate over micro-steps, then step yourself; for
    DDP wrap non-final micro-steps in ``model.no_sync()`` as usual). ``autocast_dtype`` runs both forwards under
    ``torch.autocast`` (e.g. ``torch.bfloat16`` on CPU).

    With gradient release on (:meth:`kexue.optim.AccumAdam.release_gradients` and its kin: one ``backward()`` per
    micro-step) only ``update="adv_only"`` works, the clean gradient never reaching ``.grad``; ``"clean+adv"`` (the
    ``"pytorch"`` preset) is refused before anything runs, as its two backward passes would be folded one by one.
    """
    if not isinstance(fgm, FGM):
        raise TypeError(f"expected fgm to be an FGM, got {fgm!r}")
    if fgm.update == "clean+adv" and getattr(optimizer, "releases_gradients", False):
        raise ValueError("expected fgm.update='adv_only' with gradient release on (the optimizer folds each "
                         "backward() on its own, and 'clean+adv' back-propagates the clean and the adversarial loss), "
                         "got 'clean+adv': use FGM.preset('post') or update='adv_only', or remove() the release "
                         "handle")
    if fgm.embedding not in set(unwrap(model).modules()):
        raise ValueError(f"expected model to contain the FGM's embedding, got a {type(unwrap(model)).__name__} "
                         f"without it")
    with contextlib.ExitStack() as stack:
        # the clean pass never all-reduces: 'adv_only' takes no parameter gradient from it, 'clean+adv' accumulates
        # it locally and the adversarial backward's all-reduce then covers both
        with _no_sync(model):
            with autocast_for(model, autocast_dtype):
                clean = loss_fn(model, batch)
            stack.enter_context(fgm.perturbed(clean, mask=mask, scaler=scaler))
        with autocast_for(model, autocast_dtype):
            adv = loss_fn(model, batch)
        (scaler.scale(adv) if scaler is not None else adv).backward()
    if optimizer is not None:
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return FGMLosses(clean.detach(), adv.detach())


__all__ = ["FGM", "FGMLosses", "FGMNorm", "FGMPreset", "FGMScope", "FGMUpdate", "FGM_PRESETS", "fgm_step",
           "perturbation"]
