"""The pieces of the kexue Transformer around its blocks: embeddings, the FFN, the norms, and the heads.

Embeddings: LN(word + segment + position), then dropout (BERT's; summed in transformers' order, so rounding matches).
FFN: down(act(up(x))). Pooler: tanh(Dense(h_[CLS])). MLM head: Dense -> activation -> LayerNorm -> logits, the decoder
tied to the word embeddings unless ``tie_word_embeddings=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.activations import get_activation
from ..nn.dropout import Dropout
from ..nn.frozen_linear import ONEDNN_GELU, FrozenLinear, Kernel
from .config import TransformerConfig


class Embeddings(nn.Module):
    """dropout(LN((word(ids) + segment(type_ids)) + position(pos))); ``position_ids`` as ``config.position_style``
    counts them."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.segment = nn.Embedding(config.type_vocab_size, config.hidden_size) if config.type_vocab_size else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout)

    def position_ids(self, input_ids: Tensor) -> Tensor:
        c = self.config
        if c.position_style == "roberta":
            # RoBERTa counts positions over non-padding tokens, starting after the padding index.
            keep = input_ids.ne(c.pad_token_id).long()
            return keep.cumsum(dim=1) * keep + c.pad_token_id
        return torch.arange(input_ids.shape[1], device=input_ids.device)[None]

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, position_ids: Tensor | None) -> Tensor:
        seq_len = input_ids.shape[1]
        if position_ids is None:
            position_ids = self.position_ids(input_ids)
        lo, hi = torch.stack(torch.aminmax(position_ids)).tolist()  # one device sync
        if lo < 0:
            raise ValueError(f"expected position_ids >= 0, got {lo}")
        if hi >= self.config.max_position_embeddings:
            raise ValueError(f"expected positions < max_position_embeddings = {self.config.max_position_embeddings}, "
                             f"got position {hi} (a sequence of length {seq_len})")
        # (word + segment) + position: the order transformers sums them in, so rounding matches it too.
        x = self.word(input_ids)
        if self.segment is not None:
            x = x + (self.segment.weight[0] if token_type_ids is None else self.segment(token_type_ids))
        x = x + self.position(position_ids)
        return self.dropout(self.norm(x))


class FeedForward(nn.Module):
    """FFN(x) = down(act(up(x))), with an inference snapshot (:meth:`freeze`) for ``fast_inference``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act_name = config.hidden_act
        self.act = get_activation(config.hidden_act)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)
        # (up, down, activation fused into up) inference snapshot, or None; see freeze().
        self._frozen: tuple[FrozenLinear, FrozenLinear, bool] | None = None

    def freeze(self, kernel: Kernel | None) -> None:
        """Snapshot the two projections for inference on ``kernel`` (only "onednn" changes anything; it also fuses
        a GELU activation into the up-projection), or drop it."""
        if kernel in (None, "torch"):
            self._frozen = None
            return
        fuse = self.act_name in ONEDNN_GELU
        up = FrozenLinear([self.up], kernel, gelu=self.act_name if fuse else None)
        self._frozen = (up, FrozenLinear([self.down], kernel), fuse)

    def forward(self, x: Tensor) -> Tensor:
        frozen = self._frozen
        if frozen is not None and not torch.is_grad_enabled():
            up, down, fused = frozen
            return down(up(x) if fused else self.act(up(x)))
        return self.down(self.act(self.up(x)))


def _make_norm(config: TransformerConfig) -> nn.Module:
    """LayerNorm (x − μ)/√(σ² + ε)·γ + β, or RMSNorm x/√(mean(x²) + ε)·γ (torch's, ε inside the root)."""
    if config.norm_kind == "rmsnorm":
        return nn.RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)


class Pooler(nn.Module):
    """tanh(Dense(h_[CLS])), BERT's pooled vector."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MLMHead(nn.Module):
    """Dense -> activation -> LayerNorm -> logits over the vocabulary (decoder tied to the word embeddings)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = get_activation(config.mlm_hidden_act or config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = (None if config.tie_word_embeddings
                        else nn.Linear(config.hidden_size, config.vocab_size, bias=False))
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: Tensor, word_embeddings: Tensor) -> Tensor:
        h = self.norm(self.act(self.dense(hidden)))
        weight = word_embeddings if self.decoder is None else self.decoder.weight
        return F.linear(h, weight, self.bias)


__all__ = ["Embeddings", "FeedForward", "MLMHead", "Pooler"]
