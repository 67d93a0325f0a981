"""Multi-head self-attention through ``torch.nn.functional.scaled_dot_product_attention``.

softmax(QKᵀ/√d_k + M)V per head, M = 0 where the mask allows and −∞ where it does not. The mask is boolean
(True = may attend) or an additive float bias (see :mod:`kexue.nn.masks`).

For inference, :meth:`Attention.freeze` takes a snapshot of the projections with Q, K and V fused into one matrix
product (:class:`kexue.nn.frozen_linear.FrozenLinear`); the forward uses it while autograd is off and the snapshot
is set. :meth:`kexue.models.Transformer.fast_inference` sets and drops it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .frozen_linear import FrozenLinear, Kernel


class Attention(nn.Module):
    """Self-attention with separate Q, K, V projections (as BERT's checkpoints store them) and an output projection."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(
                f"expected hidden_size divisible by num_heads ({hidden_size} % {num_heads} = {hidden_size % num_heads})"
            )
        self.num_heads = num_heads
        self.head_size = hidden_size // num_heads
        self.dropout = dropout
        self.q = nn.Linear(hidden_size, hidden_size)
        self.k = nn.Linear(hidden_size, hidden_size)
        self.v = nn.Linear(hidden_size, hidden_size)
        self.o = nn.Linear(hidden_size, hidden_size)
        # (fused q/k/v, o) snapshot for inference, or None; see freeze().
        self._frozen: tuple[FrozenLinear, FrozenLinear | nn.Linear] | None = None

    def freeze(self, kernel: Kernel | None = "torch") -> None:
        """Snapshot the projections for inference (Q, K, V fused into one product), or drop it (``None``).

        While a snapshot is set and autograd is off, the forward uses it; changing the weights afterwards does not
        reach it until ``freeze`` is called again.
        """
        if kernel is None:
            self._frozen = None
            return
        o = FrozenLinear([self.o], kernel) if kernel != "torch" else self.o
        self._frozen = (FrozenLinear([self.q, self.k, self.v], kernel), o)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (batch, seq, hidden); mask: bool (True = attend) or additive float, broadcastable to
        (batch, heads, seq, seq), or None."""
        frozen = self._frozen
        if frozen is not None and not torch.is_grad_enabled():
            b, t, _ = x.shape
            qkv = frozen[0](x).view(b, t, 3, self.num_heads, self.head_size)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
            return frozen[1](out.transpose(1, 2).reshape(b, t, self.num_heads * self.head_size))
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        b, h, t, d = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, h * d))
