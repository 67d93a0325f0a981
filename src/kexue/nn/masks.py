"""Attention masks: padding, causal (LM) and UniLM (prefix) masks.

All masks are boolean with True meaning "may attend", shaped to broadcast against attention scores
(batch, heads, queries, keys). :func:`to_bias` turns one into the additive float form.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(attention_mask: Tensor) -> Tensor:
    """(batch, keys) 1/0 or bool -> (batch, 1, 1, keys) bool: each query may attend to every non-padding key."""
    if attention_mask.dim() != 2:
        raise ValueError(f"expected attention_mask of shape (batch, seq), got {tuple(attention_mask.shape)}")
    return attention_mask.bool()[:, None, None, :]


def causal_mask(seq_len: int, device: torch.device | None = None) -> Tensor:
    """(1, 1, seq, seq) bool, lower triangular: query i sees keys j <= i (the LM mask)."""
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()[None, None]


def unilm_mask(token_type_ids: Tensor) -> Tensor:
    """UniLM seq2seq mask from segment ids (batch, seq) -> (batch, 1, seq, seq) bool.

    Segment 0 is the source: every token sees all of it. Segment 1 is the target: a target token sees the source
    and the target tokens up to itself. As bert4keras builds it: idx = cumsum(segment_ids); j visible from i iff
    idx[j] <= idx[i].
    """
    if token_type_ids.dim() != 2:
        raise ValueError(f"expected token_type_ids of shape (batch, seq), got {tuple(token_type_ids.shape)}")
    idx = token_type_ids.long().cumsum(dim=1)
    return (idx[:, None, :] <= idx[:, :, None])[:, None]


def to_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Bool mask -> additive bias: 0 where allowed, the dtype's most negative finite value where not.

    ``finfo(dtype).min`` rather than a constant like -1e12, which overflows in fp16 (a pitfall the specs name).
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


__all__ = ["causal_mask", "padding_mask", "to_bias", "unilm_mask"]
