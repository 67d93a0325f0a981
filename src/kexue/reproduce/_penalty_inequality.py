"""The input/parameter-gradient penalty inequality, for the ``gradient_penalty_inequality`` reproduction.

输入梯度惩罚与参数梯度惩罚的一个不等式 (An inequality between the input-gradient and the parameter-gradient penalty),
2021-12-11, https://kexue.fm/archives/8796. For an MLP z^{(t+1)} = W^{(t)} h^{(t)} + b^{(t)}, h^{(t+1)} =
g^{(t)}(z^{(t+1)}), h^{(1)} = x, t = 1..l, and any scalar f of h^{(l+1)}, per sample:

    ‖∇_x f‖² · Σ_t (1 + ‖h^{(t)}‖²) / (‖W^{(t)}‖₂² ‖∇_x h^{(t)}‖₂²)
        ≤  ‖∇_θ f‖² = Σ_t ‖∇_{W^{(t)}} f‖_F² + ‖∇_{b^{(t)}} f‖²

(spectral norms; ∇_x h^{(1)} = I; the "1 +" belongs to the bias and goes for a bias-free layer). Proof per layer,
with δ = ∂f/∂z^{(t+1)}: ∇_W f = δ h^{(t)ᵀ}, ∇_b f = δ and ∇_x f = J_tᵀ W^{(t)ᵀ} δ, so ‖∇_x f‖ ≤ ‖J_t‖‖W^{(t)}‖‖δ‖.

:func:`gp_inequality` computes both sides for one sample; :func:`mlp_param_grad_sq` is the per-sample parameter
gradient norm in closed form that the reproduction's training runs penalise (the user-facing penalties are in
:mod:`kexue.train.penalty`); :func:`cross_entropy_readout` is one of the scalars f it checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp_param_grad_sq(linears: Sequence[nn.Linear], activations: Sequence[Callable[[Tensor], Tensor]], x: Tensor,
                      per_sample_loss: Callable[[Tensor], Tensor]) -> Tensor:
    """Per-sample ‖∇_θ ℓ_i‖² of an MLP in closed form, differentiable: shape (batch,).

    The structure the inequality's proof uses (kexue.fm/archives/8796): with δ_i^{(t)} = ∂ℓ_i/∂z_i^{(t+1)},
    ∇_W ℓ_i = δ_i h_iᵀ and ∇_b ℓ_i = δ_i, so ‖∇_θ ℓ_i‖² = Σ_t ‖δ_i^{(t)}‖²(‖h_i^{(t)}‖² + 1) (no "+ 1" without a
    bias). One backward of Σ_i ℓ_i gives every δ_i at once (the samples do not interact), so this costs about one
    double backward instead of :func:`kexue.train.param_grad_penalty`'s per-sample ``vmap``. ``x``: (batch,
    in_features); ``per_sample_loss(output) -> (batch,)``; the MLP is ``h ← activations[t](linears[t](h))``.
    """
    linears, activations = list(linears), list(activations)
    if len(activations) != len(linears):
        raise ValueError(f"expected one activation per layer: {len(linears)} layers, {len(activations)} activations")
    if x.dim() != 2:
        raise ValueError(f"expected x of shape (batch, features), got {tuple(x.shape)}")
    hs, zs = [], []
    h = x
    for lin, act in zip(linears, activations, strict=True):
        hs.append(h)
        z = lin(h)
        zs.append(z)
        h = act(z)
    losses = per_sample_loss(h)
    if losses.shape != (x.shape[0],):
        raise ValueError(f"per_sample_loss must return shape ({x.shape[0]},), got {tuple(losses.shape)}")
    deltas = torch.autograd.grad(losses.sum(), zs, create_graph=True)
    out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for lin, h, d in zip(linears, hs, deltas, strict=True):
        hh = h.pow(2).sum(1) + (1.0 if lin.bias is not None else 0.0)
        out = out + d.pow(2).sum(1) * hh
    return out


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
    bs: list[Tensor | None] = [None if lin.bias is None else lin.bias.detach().to(dtype) for lin in linears]
    x = x.detach().to(dtype)

    def layer_inputs(x: Tensor, Ws: Sequence[Tensor], bs: Sequence[Tensor | None]) -> list[Tensor]:
        """h^{(1)} = x, ..., h^{(l+1)}: the input of each layer, then the network's output."""
        hs = [x]
        for W, b, act in zip(Ws, bs, activations, strict=True):
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
    for W, b, h, J, gw, gbt in zip(Ws, bs, hs[:-1], jacs, gW, gb, strict=True):
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
