"""Gradient penalties: on the input (embedding) gradient, and on the parameter gradient.

Input-gradient penalty (对抗训练浅谈：意义、方法和思考（附Keras实现）, 2020-03-01, https://kexue.fm/archives/7234).
FGM with the step Δx = ε·∇_xL is, to first order, the gradient penalty

    ∇_θ L(x + ε∇_xL) ≈ ∇_θ [ L + ½ε·‖∇_xL‖² ],

and with the normalised step Δx = ε·∇_xL/‖∇_xL‖ the penalty ε·‖∇_xL‖. Su's gradient penalty is
``loss + 0.5 * epsilon * sum(grad**2)`` with ε = 1, the gradient taken with respect to the embedding *outputs*
(one row per token occurrence: Keras's IndexedSlices ``.values``), not the embedding matrix (where repeated tokens
would sum their rows). It needs a twice-differentiable loss and ``create_graph=True`` (double backward).

Parameter-gradient penalty λ·‖∇_θ L‖² (batch) or λ·mean_i ‖∇_θ ℓ_i‖² (per sample): per sample it bounds the
input-gradient penalty from above (输入梯度惩罚与参数梯度惩罚的一个不等式, 2021-12-11,
https://kexue.fm/archives/8796), so it also flattens the model in its input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from .._validate import check_choice, check_float
from ._embedding import autocast_for, find_input_embedding, record_output

PenaltyForm = Literal["squared", "norm"]


class PenalizedLoss(NamedTuple):
    """A loss with its gradient penalty: call ``.backward()`` on ``total`` (= ``loss + penalty``)."""

    total: Tensor
    loss: Tensor
    penalty: Tensor


def _as_list(inputs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [inputs] if isinstance(inputs, Tensor) else list(inputs)


def _check_loss(loss: Tensor) -> None:
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        got = f"shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"expected loss to be a scalar tensor, got {got}")
    if not loss.requires_grad:
        raise ValueError("expected a loss that requires grad, got one that does not: compute it with autograd on "
                         "(not under torch.no_grad())")


def input_gradients(loss: Tensor, inputs: Tensor | Sequence[Tensor], create_graph: bool = True,
                    scaler: Any | None = None) -> list[Tensor]:
    """∂loss/∂inputs for each tensor of ``inputs`` (which must take part in ``loss``'s graph), in float32 or wider.

    ``create_graph=True`` keeps the graph of the gradient so that a penalty built from it back-propagates (double
    backward). ``scaler`` (a ``torch.amp.GradScaler``): differentiate ``scaler.scale(loss)`` and divide by the scale,
    so fp16 gradients do not underflow; the result is the unscaled gradient.
    """
    return _input_gradients(loss, inputs, create_graph, scaler, "inputs")


def _input_gradients(loss: Tensor, inputs: Tensor | Sequence[Tensor], create_graph: bool, scaler: Any | None,
                     name: str) -> list[Tensor]:
    """:func:`input_gradients`, its errors naming the argument ``name`` that holds ``inputs``."""
    _check_loss(loss)
    xs = _as_list(inputs)
    if not xs:
        raise ValueError(f"expected at least one tensor in {name}, got none")
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            got = "a tensor that does not require grad" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected {name}[{i}] to be a tensor that requires grad (an activation of the loss's "
                             f"graph), got {got}")
    scale = None
    if scaler is not None and scaler.is_enabled():
        scale = float(scaler.get_scale())
        loss = loss * scale
    grads = torch.autograd.grad(loss, xs, create_graph=create_graph, allow_unused=True)
    out = []
    for i, g in enumerate(grads):
        if g is None:
            raise ValueError(f"expected {name}[{i}] to be part of the loss's graph, got a {tuple(xs[i].shape)} "
                             f"tensor that is not: record it during the forward pass that produced this loss")
        if g.dtype in (torch.float16, torch.bfloat16):
            g = g.float()  # the penalty is not scale-invariant: square it in float32
        out.append(g / scale if scale is not None else g)
    return out


def _sum_of_squares(grads: Sequence[Tensor]) -> Tensor:
    """Σ_i ‖g_i‖² over a non-empty list of tensors, added in order."""
    total = grads[0].pow(2).sum()
    for g in grads[1:]:
        total = total + g.pow(2).sum()
    return total


def _masked(g: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return g
    if mask.shape != g.shape[: mask.dim()]:
        raise ValueError(f"expected mask in the leading dimensions of the gradient {tuple(g.shape)} (e.g. (batch, "
                         f"seq) for embedding outputs (batch, seq, hidden)), got {tuple(mask.shape)}")
    m = mask.to(g.dtype).reshape(*mask.shape, *([1] * (g.dim() - mask.dim())))
    return g * m


def input_grad_penalty(loss: Tensor, inputs: Tensor | Sequence[Tensor], weight: float = 1.0,
                       form: PenaltyForm = "squared", mask: Tensor | None = None, create_graph: bool = True,
                       scaler: Any | None = None) -> Tensor:
    """The input-gradient penalty ``weight · Σ ‖∂loss/∂inputs‖²`` (``form="squared"``) or ``weight · ‖∂loss/∂inputs‖``
    (``form="norm"``, the norm over every element of every input), as a differentiable scalar.

    ``inputs``: tensors of ``loss``'s graph (embedding outputs, or a weight matrix for the matrix form). ``mask``
    (leading dimensions of the gradient, e.g. (batch, seq), 1 = keep) drops padding positions. Add the result to the
    loss and back-propagate: the gradient goes through ``∂loss/∂inputs`` (double backward).
    """
    check_choice("form", form, PenaltyForm)
    weight = check_float("weight", weight, low=0.0)
    grads = [_masked(g, mask) for g in input_gradients(loss, inputs, create_graph=create_graph, scaler=scaler)]
    sq = _sum_of_squares(grads)
    if form == "squared":
        return weight * sq
    # vector_norm has a zero (sub)gradient at 0, where sqrt(sum of squares) has a NaN one
    return weight * torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))


def embedding_gradient_penalty(loss: Tensor, embed_out: Tensor, epsilon: float = 1.0, form: PenaltyForm = "squared",
                               mask: Tensor | None = None, scaler: Any | None = None) -> Tensor:
    """Su's gradient penalty on the embedding output (kexue.fm/archives/7234, 2020-03-01).

    ``form="squared"``: ½ε·Σ_i ‖∂L/∂e_i‖² (the post's ``0.5 * epsilon * K.sum(grads**2)``, ε = 1), the first-order
    equivalent of FGM with the unnormalised step ε·∇_eL. ``form="norm"``: ε·‖∂L/∂e‖, the equivalent of the normalised
    step ε·∇_eL/‖∇_eL‖. ``embed_out``: the embedding module's output in the forward pass that gave ``loss`` (see
    :func:`kexue.train.record_output`), one row per token occurrence. Train on ``loss + penalty``.
    """
    epsilon = check_float("epsilon", epsilon, low=0.0)
    weight = 0.5 * epsilon if form == "squared" else epsilon
    return input_grad_penalty(loss, embed_out, weight=weight, form=form, mask=mask, scaler=scaler)


def double_backward_attention() -> contextlib.AbstractContextManager[Any]:
    """Run the forward passes inside on SDPA's math backend. The fused CPU/GPU attention kernels (flash,
    memory-efficient) have no double backward ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"); the math backend is built from
    differentiable ops, so a penalty on a gradient can back-propagate through attention. Wrap every forward whose
    loss gets an input-gradient penalty."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def gradient_penalty_loss(model: nn.Module, batch: Any, loss_fn: Callable[[nn.Module, Any], Tensor],
                          epsilon: float = 1.0, form: PenaltyForm = "squared", mask: Tensor | None = None,
                          embedding: nn.Module | None = None,
                          autocast_dtype: torch.dtype | None = None) -> PenalizedLoss:
    """One forward with Su's penalty: :class:`PenalizedLoss` ``(total, loss, penalty)`` with total = loss + penalty;
    call ``total.backward()``.

    ``loss_fn(model, batch)`` returns the scalar loss. The input embedding is found with
    :func:`kexue.train.find_input_embedding` unless given. The forward runs under :func:`double_backward_attention`
    (SDPA's math backend, which has a double backward) and, with ``autocast_dtype``, under ``torch.autocast`` (the
    penalty is squared in float32). Works under DDP (the double backward reaches the parameters through one
    ``backward()``) and with gradient accumulation (scale the returned total yourself).
    """
    emb = embedding if embedding is not None else find_input_embedding(model)
    with record_output(emb) as rec, autocast_for(model, autocast_dtype), double_backward_attention():
        loss = loss_fn(model, batch)
    penalty = embedding_gradient_penalty(loss, rec.output, epsilon=epsilon, form=form, mask=mask)
    return PenalizedLoss(loss + penalty, loss, penalty)


# ----------------------------------------------------------------------------------------- parameter penalties
def batch_param_grad_penalty(loss: Tensor, params: Sequence[Tensor], weight: float = 1.0) -> Tensor:
    """``weight · ‖∇_θ L‖²`` for the (batch) loss L: the penalty that SGD applies implicitly (implicit gradient
    regularisation), differentiable (``create_graph=True``). For the per-sample form see :func:`param_grad_penalty`."""
    weight = check_float("weight", weight, low=0.0)
    grads = _input_gradients(loss, list(params), True, None, "params")
    return weight * _sum_of_squares(grads)


def param_grad_penalty(per_sample_loss_fn: Callable[..., Tensor], params: Mapping[str, Tensor],
                       inputs: Sequence[Tensor], weight: float = 1.0) -> Tensor:
    """``weight · mean_i ‖∇_θ ℓ_i‖²``, the per-sample parameter-gradient penalty, with
    ``torch.func.vmap(torch.func.grad(per_sample_loss_fn))``.

    ``per_sample_loss_fn(params, *sample)`` returns the scalar loss of one sample (unbatched tensors), ``params`` a
    dict name → tensor (e.g. ``dict(model.named_parameters())`` with ``torch.func.functional_call`` inside the loss),
    ``inputs`` the batched tensors (dimension 0 is the sample). Differentiable with respect to ``params`` when they
    require grad, so it can be added to a training loss.
    """
    weight = check_float("weight", weight, low=0.0)
    if not inputs:
        raise ValueError("expected at least one batched input tensor, got none")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or x.dim() == 0:
            got = "a 0-d tensor" if isinstance(x, Tensor) else type(x).__name__
            raise TypeError(f"expected inputs[{i}] to be a tensor with a sample dimension, got {got}")
    n = inputs[0].shape[0]
    for i, x in enumerate(inputs):
        if x.shape[0] != n:
            raise ValueError(f"expected inputs[{i}] to have the {n} samples of inputs[0], got {x.shape[0]}")
    grad_fn = torch.func.grad(per_sample_loss_fn)
    grads = torch.func.vmap(grad_fn, in_dims=(None, *([0] * len(inputs))))(dict(params), *inputs)
    sq = sum(g.reshape(n, -1).pow(2).sum(1) for g in grads.values())
    return weight * sq.mean()


__all__ = ["PenalizedLoss", "PenaltyForm", "batch_param_grad_penalty", "double_backward_attention",
           "embedding_gradient_penalty", "gradient_penalty_loss", "input_grad_penalty", "input_gradients",
           "param_grad_penalty"]
