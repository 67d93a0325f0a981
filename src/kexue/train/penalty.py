"""Gradient penalties, and the inequality between the input- and the parameter-gradient penalty.

Input-gradient penalty (对抗训练浅谈：意义、方法和思考（附Keras实现）, 2020-03-01, https://kexue.fm/archives/7234).
FGM with the step Δx = ε·∇_xL is, to first order, the gradient penalty

    ∇_θ L(x + ε∇_xL) ≈ ∇_θ [ L + ½ε·‖∇_xL‖² ],

and with the normalised step Δx = ε·∇_xL/‖∇_xL‖ the penalty ε·‖∇_xL‖. Su's gradient penalty is
``loss + 0.5 * epsilon * sum(grad**2)`` with ε = 1, the gradient taken with respect to the embedding *outputs*
(one row per token occurrence: Keras's IndexedSlices ``.values``), not the embedding matrix (where repeated tokens
would sum their rows). It needs a twice-differentiable loss and ``create_graph=True`` (double backward).

The inequality (输入梯度惩罚与参数梯度惩罚的一个不等式, 2021-12-11, https://kexue.fm/archives/8796). For an MLP
z^{(t+1)} = W^{(t)} h^{(t)} + b^{(t)}, h^{(t+1)} = g^{(t)}(z^{(t+1)}), h^{(1)} = x, t = 1..l, and any scalar f of
h^{(l+1)}, per sample:

    ‖∇_x f‖² · Σ_t (1 + ‖h^{(t)}‖²) / (‖W^{(t)}‖₂² ‖∇_x h^{(t)}‖₂²)
        ≤  ‖∇_θ f‖² = Σ_t ‖∇_{W^{(t)}} f‖_F² + ‖∇_{b^{(t)}} f‖²

(spectral norms; ∇_x h^{(1)} = I; the "1 +" belongs to the bias and goes for a bias-free layer). Proof per layer,
with δ = ∂f/∂z^{(t+1)}: ∇_W f = δ h^{(t)ᵀ}, ∇_b f = δ and ∇_x f = J_tᵀ W^{(t)ᵀ} δ, so ‖∇_x f‖ ≤ ‖J_t‖‖W^{(t)}‖‖δ‖.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Literal, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Form = Literal["squared", "norm"]
FORMS: tuple[str, ...] = ("squared", "norm")


def _as_list(inputs: Tensor | Sequence[Tensor]) -> list[Tensor]:
    return [inputs] if isinstance(inputs, Tensor) else list(inputs)


def _check_loss(loss: Tensor) -> None:
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"expected a scalar loss tensor, got {shape}")
    if not loss.requires_grad:
        raise ValueError("the loss does not require grad: compute it with autograd on (not under torch.no_grad())")


def input_gradients(loss: Tensor, inputs: Tensor | Sequence[Tensor], create_graph: bool = True,
                    scaler: Any | None = None) -> list[Tensor]:
    """∂loss/∂inputs for each tensor of ``inputs`` (which must take part in ``loss``'s graph), in float32 or wider.

    ``create_graph=True`` keeps the graph of the gradient so that a penalty built from it back-propagates (double
    backward). ``scaler`` (a ``torch.amp.GradScaler``): differentiate ``scaler.scale(loss)`` and divide by the scale,
    so fp16 gradients do not underflow; the result is the unscaled gradient.
    """
    _check_loss(loss)
    xs = _as_list(inputs)
    for i, x in enumerate(xs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise ValueError(f"inputs[{i}] must be a tensor that requires grad (an activation of the loss's graph)")
    scale = None
    if scaler is not None and scaler.is_enabled():
        scale = float(scaler.get_scale())
        loss = loss * scale
    grads = torch.autograd.grad(loss, xs, create_graph=create_graph, allow_unused=True)
    out = []
    for i, g in enumerate(grads):
        if g is None:
            raise ValueError(f"inputs[{i}] (shape {tuple(xs[i].shape)}) is not part of the loss's graph: record it "
                             f"during the forward pass that produced this loss")
        if g.dtype in (torch.float16, torch.bfloat16):
            g = g.float()  # the penalty is not scale-invariant: square it in float32
        out.append(g / scale if scale is not None else g)
    return out


def _masked(g: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return g
    if mask.shape != g.shape[: mask.dim()]:
        raise ValueError(f"mask shape {tuple(mask.shape)} must match the leading dimensions of the gradient "
                         f"{tuple(g.shape)} (e.g. (batch, seq) for embedding outputs (batch, seq, hidden))")
    m = mask.to(g.dtype).reshape(*mask.shape, *([1] * (g.dim() - mask.dim())))
    return g * m


def input_grad_penalty(loss: Tensor, inputs: Tensor | Sequence[Tensor], weight: float = 1.0, form: Form = "squared",
                       mask: Tensor | None = None, create_graph: bool = True, scaler: Any | None = None) -> Tensor:
    """The input-gradient penalty ``weight · Σ ‖∂loss/∂inputs‖²`` (``form="squared"``) or ``weight · ‖∂loss/∂inputs‖``
    (``form="norm"``, the norm over every element of every input), as a differentiable scalar.

    ``inputs``: tensors of ``loss``'s graph (embedding outputs, or a weight matrix for the matrix form). ``mask``
    (leading dimensions of the gradient, e.g. (batch, seq), 1 = keep) drops padding positions. Add the result to the
    loss and back-propagate: the gradient goes through ``∂loss/∂inputs`` (double backward).
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    grads = [_masked(g, mask) for g in input_gradients(loss, inputs, create_graph=create_graph, scaler=scaler)]
    sq = sum(g.pow(2).sum() for g in grads)
    if form == "squared":
        return weight * sq
    # vector_norm has a zero (sub)gradient at 0, where sqrt(sum of squares) has a NaN one
    return weight * torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))


def embedding_gradient_penalty(loss: Tensor, embed_out: Tensor, epsilon: float = 1.0, form: Form = "squared",
                               mask: Tensor | None = None, scaler: Any | None = None) -> Tensor:
    """Su's gradient penalty on the embedding output (kexue.fm/archives/7234, 2020-03-01).

    ``form="squared"``: ½ε·Σ_i ‖∂L/∂e_i‖² (the post's ``0.5 * epsilon * K.sum(grads**2)``, ε = 1), the first-order
    equivalent of FGM with the unnormalised step ε·∇_eL. ``form="norm"``: ε·‖∂L/∂e‖, the equivalent of the normalised
    step ε·∇_eL/‖∇_eL‖. ``embed_out``: the embedding module's output in the forward pass that gave ``loss`` (see
    :func:`kexue.train.record_output`), one row per token occurrence. Train on ``loss + penalty``.
    """
    if epsilon < 0:
        raise ValueError(f"expected epsilon >= 0, got {epsilon}")
    weight = 0.5 * epsilon if form == "squared" else epsilon
    return input_grad_penalty(loss, embed_out, weight=weight, form=form, mask=mask, scaler=scaler)


def double_backward_attention() -> contextlib.AbstractContextManager:
    """Run the forward passes inside on SDPA's math backend. The fused CPU/GPU attention kernels (flash,
    memory-efficient) have no double backward ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"); the math backend is built from differentiable ops, so a penalty on a gradient can
    back-propagate through attention. Wrap every forward whose loss gets an input-gradient penalty."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def gradient_penalty_loss(model: nn.Module, batch: Any, loss_fn: Callable[[nn.Module, Any], Tensor],
                          epsilon: float = 1.0, form: Form = "squared", mask: Tensor | None = None,
                          embedding: nn.Module | None = None,
                          autocast_dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One forward with Su's penalty: ``(loss + penalty, loss, penalty)``; call ``.backward()`` on the first.

    ``loss_fn(model, batch)`` returns the scalar loss. The input embedding is found with
    :func:`kexue.train.find_input_embedding` unless given. The forward runs under :func:`double_backward_attention`
    (SDPA's math backend, which has a double backward) and, with ``autocast_dtype``, under ``torch.autocast`` (the
    penalty is squared in float32). Works under DDP (the double backward reaches the parameters through one
    ``backward()``) and with gradient accumulation (scale the returned total yourself).
    """
    from ._embedding import autocast_for, find_input_embedding, record_output

    emb = embedding if embedding is not None else find_input_embedding(model)
    with record_output(emb) as rec, autocast_for(model, autocast_dtype), double_backward_attention():
        loss = loss_fn(model, batch)
    penalty = embedding_gradient_penalty(loss, rec.output, epsilon=epsilon, form=form, mask=mask)
    return loss + penalty, loss, penalty


# ----------------------------------------------------------------------------------------- parameter penalties
def batch_param_grad_penalty(loss: Tensor, params: Sequence[Tensor], weight: float = 1.0) -> Tensor:
    """``weight · ‖∇_θ L‖²`` for the (batch) loss L: the penalty that SGD applies implicitly (implicit gradient
    regularisation), differentiable (``create_graph=True``). For the per-sample form see :func:`param_grad_penalty`."""
    params = list(params)
    grads = input_gradients(loss, params, create_graph=True)
    return weight * sum(g.pow(2).sum() for g in grads)


def param_grad_penalty(per_sample_loss_fn: Callable[..., Tensor], params: Mapping[str, Tensor],
                       inputs: Sequence[Tensor], weight: float = 1.0) -> Tensor:
    """``weight · mean_i ‖∇_θ ℓ_i‖²``, the per-sample parameter-gradient penalty, with
    ``torch.func.vmap(torch.func.grad(per_sample_loss_fn))``.

    ``per_sample_loss_fn(params, *sample)`` returns the scalar loss of one sample (unbatched tensors), ``params`` a
    dict name → tensor (e.g. ``dict(model.named_parameters())`` with ``torch.func.functional_call`` inside the loss),
    ``inputs`` the batched tensors (dimension 0 is the sample). Differentiable with respect to ``params`` when they
    require grad, so it can be added to a training loss.
    """
    if not inputs:
        raise ValueError("expected at least one batched input tensor")
    n = inputs[0].shape[0]
    for i, x in enumerate(inputs):
        if x.shape[0] != n:
            raise ValueError(f"inputs[{i}] has {x.shape[0]} samples, inputs[0] has {n}")
    grad_fn = torch.func.grad(per_sample_loss_fn)
    grads = torch.func.vmap(grad_fn, in_dims=(None, *([0] * len(inputs))))(dict(params), *inputs)
    sq = sum(g.reshape(n, -1).pow(2).sum(1) for g in grads.values())
    return weight * sq.mean()


def mlp_param_grad_sq(linears: Sequence[nn.Linear], activations: Sequence[Callable[[Tensor], Tensor]], x: Tensor,
                      per_sample_loss: Callable[[Tensor], Tensor]) -> Tensor:
    """Per-sample ‖∇_θ ℓ_i‖² of an MLP in closed form, differentiable: shape (batch,).

    The structure the inequality's proof uses (kexue.fm/archives/8796): with δ_i^{(t)} = ∂ℓ_i/∂z_i^{(t+1)},
    ∇_W ℓ_i = δ_i h_iᵀ and ∇_b ℓ_i = δ_i, so ‖∇_θ ℓ_i‖² = Σ_t ‖δ_i^{(t)}‖²(‖h_i^{(t)}‖² + 1) (no "+ 1" without a
    bias). One backward of Σ_i ℓ_i gives every δ_i at once (the samples do not interact), so this costs about one
    double backward instead of :func:`param_grad_penalty`'s per-sample ``vmap``. ``x``: (batch, in_features);
    ``per_sample_loss(output) -> (batch,)``; the MLP is ``h ← activations[t](linears[t](h))``.
    """
    linears, activations = list(linears), list(activations)
    if len(activations) != len(linears):
        raise ValueError(f"expected one activation per layer: {len(linears)} layers, {len(activations)} activations")
    if x.dim() != 2:
        raise ValueError(f"expected x of shape (batch, features), got {tuple(x.shape)}")
    hs, zs = [], []
    h = x
    for lin, act in zip(linears, activations):
        hs.append(h)
        z = lin(h)
        zs.append(z)
        h = act(z)
    losses = per_sample_loss(h)
    if losses.shape != (x.shape[0],):
        raise ValueError(f"per_sample_loss must return shape ({x.shape[0]},), got {tuple(losses.shape)}")
    deltas = torch.autograd.grad(losses.sum(), zs, create_graph=True)
    out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for lin, h, d in zip(linears, hs, deltas):
        hh = h.pow(2).sum(1) + (1.0 if lin.bias is not None else 0.0)
        out = out + d.pow(2).sum(1) * hh
    return out


# ----------------------------------------------------------------------------------------- the inequality
def _spectral(m: Tensor, norm: str) -> Tensor:
    return torch.linalg.matrix_norm(m, ord=2 if norm == "spectral" else "fro")


def gp_inequality(linears: Sequence[nn.Linear], activations: Sequence[Callable[[Tensor], Tensor]], x: Tensor,
                  f: Callable[[Tensor], Tensor], dtype: torch.dtype = torch.float64,
                  norm: Literal["spectral", "frobenius"] = "spectral") -> dict[str, Any]:
    """Both sides of the Geometric-Occam's-razor inequality (kexue.fm/archives/8796, 2021-12-11) for one sample.

    The MLP is ``h ← activations[t](linears[t](h))`` for t = 0..l−1 starting from ``x`` (shape (in_features,): the
    inequality is per sample), ``f`` maps the last output to a scalar. Computed in ``dtype`` on copies of the weights:

    - left: ‖∇_x f‖² · Σ_t (1 + ‖h^{(t)}‖²)/(‖W^{(t)}‖²·‖J_t‖²), with ∇_x f by ``torch.func.grad``, the Jacobians
      J_t = ∂h^{(t)}/∂x by ``torch.func.jacrev`` (J_1 = I) and exact SVD norms (``norm="frobenius"``: the looser
      Frobenius form). For a bias-free layer the "1 +" term is dropped;
    - right: ‖∇_θ f‖² from ``torch.func.grad`` with respect to the weights and biases.

    Returns ``lhs``, ``rhs``, ``ratio`` (lhs/rhs; 0 when both are 0), ``per_layer`` (a list of
    (lhs_W, rhs_W, lhs_b, rhs_b), each inequality lhs ≤ rhs on its own), ``grad_x_sq`` = ‖∇_x f‖² and
    ``param_grad_sq`` = ‖∇_θ f‖².
    """
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"unknown norm {norm!r}; expected 'spectral' or 'frobenius'")
    linears, activations = list(linears), list(activations)
    if not linears:
        raise ValueError("expected at least one linear layer")
    if len(activations) != len(linears):
        raise ValueError(f"expected one activation per layer: {len(linears)} layers, {len(activations)} activations")
    for t, lin in enumerate(linears):
        if not isinstance(lin, nn.Linear):
            raise ValueError(f"linears[{t}] must be an nn.Linear, got {type(lin).__name__}")
        if t and lin.in_features != linears[t - 1].out_features:
            raise ValueError(f"linears[{t}].in_features = {lin.in_features} != linears[{t - 1}].out_features = "
                             f"{linears[t - 1].out_features}")
    if x.dim() != 1 or x.shape[0] != linears[0].in_features:
        raise ValueError(f"the inequality is per sample: expected x of shape ({linears[0].in_features},), "
                         f"got {tuple(x.shape)}")
    Ws = [lin.weight.detach().to(dtype) for lin in linears]
    bs = [None if lin.bias is None else lin.bias.detach().to(dtype) for lin in linears]
    x = x.detach().to(dtype)

    def layer_inputs(x: Tensor, Ws: list[Tensor], bs: list[Tensor | None]) -> list[Tensor]:
        """h^{(1)} = x, ..., h^{(l+1)}: the input of each layer, then the network's output."""
        hs = [x]
        for W, b, act in zip(Ws, bs, activations):
            z = W @ hs[-1]
            hs.append(act(z if b is None else z + b))
        return hs

    def scalar(y: Tensor) -> Tensor:
        out = f(y)
        if not isinstance(out, Tensor) or out.numel() != 1:
            raise ValueError(f"f must return a scalar, got {getattr(out, 'shape', type(out).__name__)}")
        return out.reshape(())

    # left side: ∇_x f, the layer inputs and their Jacobians with respect to x
    grad_x = torch.func.grad(lambda x: scalar(layer_inputs(x, Ws, bs)[-1]))(x)
    hs = layer_inputs(x, Ws, bs)
    jacs = [torch.eye(x.shape[0], dtype=dtype)]
    if len(Ws) > 1:
        jacs += list(torch.func.jacrev(lambda x: tuple(layer_inputs(x, Ws, bs)[1:-1]))(x))
    gx2 = grad_x.pow(2).sum()

    # right side: ∇_θ f, independently of the left side
    def f_of_params(Ws: list[Tensor], bs: list[Tensor | None]) -> Tensor:
        return scalar(layer_inputs(x, Ws, bs)[-1])

    has_bias = [b is not None for b in bs]
    b_args = [b for b in bs if b is not None]

    def f_split(Ws: list[Tensor], b_args: list[Tensor]) -> Tensor:
        it = iter(b_args)
        return f_of_params(Ws, [next(it) if hb else None for hb in has_bias])

    gW, gb_list = torch.func.grad(f_split, argnums=(0, 1))(Ws, b_args)
    it = iter(gb_list)
    gb = [next(it) if hb else None for hb in has_bias]

    per_layer = []
    for W, b, h, J, gw, gbt in zip(Ws, bs, hs, jacs, gW, gb):
        denom = _spectral(W, norm).pow(2) * _spectral(J, norm).pow(2)
        # ‖J‖·‖W‖ = 0 forces ∇_x f = J^T W^T δ = 0: the term is 0 (not 0/0)
        scale = gx2 / denom if float(denom) > 0 else torch.zeros((), dtype=dtype)
        lhs_w = float(scale * h.pow(2).sum())
        lhs_b = float(scale) if b is not None else 0.0
        rhs_w = float(gw.pow(2).sum())
        rhs_b = float(gbt.pow(2).sum()) if gbt is not None else 0.0
        per_layer.append((lhs_w, rhs_w, lhs_b, rhs_b))
    lhs = sum(p[0] + p[2] for p in per_layer)
    rhs = sum(p[1] + p[3] for p in per_layer)
    ratio = lhs / rhs if rhs > 0 else (0.0 if lhs == 0 else float("inf"))
    return {"lhs": lhs, "rhs": rhs, "ratio": ratio, "per_layer": per_layer, "grad_x_sq": float(gx2),
            "param_grad_sq": rhs}


def cross_entropy_readout(label: int) -> Callable[[Tensor], Tensor]:
    """f(y) = cross-entropy of the logits y against a fixed ``label`` (a twice-differentiable scalar of the output)."""
    target = torch.tensor([label])
    return lambda y: F.cross_entropy(y[None], target.to(y.device))
