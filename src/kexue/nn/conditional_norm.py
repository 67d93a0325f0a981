"""Conditional LayerNorm: a LayerNorm whose gain and bias are shifted by projections of a condition vector.

Post: "bert4keras在手，baseline我有：百度LIC2020" (With bert4keras in hand, baselines are easy: Baidu LIC2020),
2020-04-02, https://kexue.fm/archives/7321 — the relation-extraction baseline feeds the subject into the object
head through it; bert4keras's ``LayerNormalization(conditional=True)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_float, check_int


class ConditionalLayerNorm(nn.Module):
    """LayerNorm with γ and β shifted by zero-initialised linear maps of a condition c (kexue.fm/archives/7321):

        y = (x − μ(x)) / √(σ²(x) + ε) · (γ + c W_γ) + (β + c W_β)

    with μ, σ² over the last dimension (size ``d``), γ = 1 and β = 0 at init (as ``torch.nn.LayerNorm``) and W_γ,
    W_β of shape (cond_dim, d), without bias, **zero at init**: before training the layer equals a plain LayerNorm
    whatever the condition, so a pretrained block's LayerNorm can be swapped for it (:meth:`from_layer_norm`; the
    ``weight`` and ``bias`` keys of its ``state_dict`` are those of ``torch.nn.LayerNorm``) and the condition's
    influence is learnt from there. bert4keras's ``LayerNormalization(conditional=True)`` with ``hidden_units=None``.

    Args:
        d: the normalised (last) dimension of x.
        cond_dim: the last dimension of the condition c.
        eps: ε added to the variance; 1e-12 as BERT's LayerNorm (``torch.nn.LayerNorm`` uses 1e-5).

    ``forward(x, cond)``: x of shape (..., d); cond of shape (*lead, cond_dim) where ``lead`` is a prefix of x's
    leading shape (e.g. (batch, cond_dim) for x of (batch, seq, d): one condition per sequence, broadcast over the
    positions, as bert4keras expands it).
    """

    def __init__(self, d: int, cond_dim: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.d = check_int("d", d, 1)
        self.cond_dim = check_int("cond_dim", cond_dim, 1)
        self.eps = check_float("eps", eps, 0.0, low_open=True)
        self.weight = nn.Parameter(torch.ones(self.d))
        self.bias = nn.Parameter(torch.zeros(self.d))
        self.gamma_proj = nn.Linear(self.cond_dim, self.d, bias=False)
        self.beta_proj = nn.Linear(self.cond_dim, self.d, bias=False)
        nn.init.zeros_(self.gamma_proj.weight)
        nn.init.zeros_(self.beta_proj.weight)

    @classmethod
    def from_layer_norm(cls, layer_norm: nn.LayerNorm, cond_dim: int) -> ConditionalLayerNorm:
        """A conditional LayerNorm that starts as ``layer_norm`` (its γ, β and ε copied; the projections zero), on
        the same device and dtype."""
        if not isinstance(layer_norm, nn.LayerNorm):
            raise TypeError(f"expected layer_norm to be a torch.nn.LayerNorm, got {type(layer_norm).__name__}")
        shape = tuple(layer_norm.normalized_shape)
        if len(shape) != 1 or layer_norm.weight is None or layer_norm.bias is None:
            raise ValueError(f"expected layer_norm over one dimension with a weight and a bias, got normalized_shape "
                             f"{shape}, elementwise_affine={layer_norm.elementwise_affine}, "
                             f"bias={layer_norm.bias is not None}")
        out = cls(shape[0], cond_dim, eps=layer_norm.eps)
        out.to(device=layer_norm.weight.device, dtype=layer_norm.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(layer_norm.weight)
            out.bias.copy_(layer_norm.bias)
        return out

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"expected x to be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if not isinstance(cond, Tensor) or not cond.is_floating_point():
            raise TypeError(f"expected cond to be a floating-point tensor, got "
                            f"{getattr(cond, 'dtype', type(cond).__name__)}")
        if x.dim() == 0 or x.shape[-1] != self.d:
            raise ValueError(f"expected x of shape (..., {self.d}), got {tuple(x.shape)}")
        lead = tuple(cond.shape[:-1])
        if cond.dim() == 0 or cond.shape[-1] != self.cond_dim or lead != tuple(x.shape[: len(lead)]) \
                or len(lead) >= x.dim():
            raise ValueError(f"expected cond of shape (*lead, {self.cond_dim}) with lead a prefix of x's leading "
                             f"shape {tuple(x.shape[:-1])}, got {tuple(cond.shape)}")
        # (*lead, d) -> (*lead, 1, ..., 1, d): one shift per condition, broadcast over x's remaining positions
        view = lead + (1,) * (x.dim() - 1 - len(lead)) + (self.d,)
        gamma = (self.weight + self.gamma_proj(cond)).reshape(view)
        beta = (self.bias + self.beta_proj(cond)).reshape(view)
        return F.layer_norm(x, (self.d,), None, None, self.eps) * gamma + beta

    def extra_repr(self) -> str:
        return f"d={self.d}, cond_dim={self.cond_dim}, eps={self.eps}"


__all__ = ["ConditionalLayerNorm"]
