"""Multi-head self-attention through ``torch.nn.functional.scaled_dot_product_attention``.

softmax(QKᵀ/√d_k + M)V per head, M = 0 where the mask allows and −∞ where it does not. The mask is boolean
(True = may attend) or an additive float bias (see :mod:`kexue.nn.masks`).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


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

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.num_heads, self.head_size).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x: (batch, seq, hidden); mask: bool (True = attend) or additive float, broadcastable to
        (batch, heads, seq, seq), or None."""
        q, k, v = self._heads(self.q(x)), self._heads(self.k(x)), self._heads(self.v(x))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        b, h, t, d = out.shape
        return self.o(out.transpose(1, 2).reshape(b, t, h * d))
