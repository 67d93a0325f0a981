"""The checks of the kexue Transformer's inputs (internal): :meth:`~kexue.models.Transformer.forward`,
``run_encoder`` and ``attention_mask`` call :func:`check_inputs` once per call."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import TransformerConfig


def _check_range(name: str, ids: Tensor, size: int, size_name: str) -> None:
    """ids in [0, size): one min/max reduction (embedding lookups out of range fail without naming the argument)."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"expected {name} of an integer dtype, got {ids.dtype}")
    if not ids.numel():
        return
    lo, hi = torch.stack(torch.aminmax(ids)).tolist()  # one device sync
    if lo < 0 or hi >= size:
        raise ValueError(f"expected {name} in [0, {size_name}={size}), got {lo if lo < 0 else hi}")


def check_inputs(config: TransformerConfig, input_ids: Tensor, attention_mask: Tensor | None,
                 token_type_ids: Tensor | None, position_ids: Tensor | None) -> None:
    """The checks of the Transformer's inputs, each error naming the argument: ``input_ids`` an int64/int32
    (batch, seq) tensor, seq >= 1, ids in [0, vocab_size); ``attention_mask`` and ``token_type_ids`` of its shape,
    the mask of 1s and 0s (or bool), segment ids in [0, type_vocab_size); ``position_ids`` of shape (batch or 1,
    seq). A min/max reduction over each tensor, no copy."""
    c = config
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"expected input_ids to be a Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(f"expected input_ids of shape (batch, seq), got {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected input_ids of dtype int64 or int32, got {input_ids.dtype}")
    if input_ids.shape[1] == 0:
        raise ValueError(f"expected input_ids with at least one position, got shape {tuple(input_ids.shape)}")
    _check_range("input_ids", input_ids, c.vocab_size, "vocab_size")
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"expected attention_mask of input_ids' shape {tuple(input_ids.shape)}, got "
                             f"{tuple(attention_mask.shape)}")
        if attention_mask.dtype != torch.bool:
            odd = (attention_mask != 0) & (attention_mask != 1)
            if bool(odd.any()):
                raise ValueError(f"expected attention_mask values 1 (token) and 0 (padding), got "
                                 f"{attention_mask[odd][0].item()!r} (an additive mask? pass the 1/0 mask)")
    if token_type_ids is not None:
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(f"expected token_type_ids of input_ids' shape {tuple(input_ids.shape)}, got "
                             f"{tuple(token_type_ids.shape)}")
        if c.type_vocab_size:
            _check_range("token_type_ids", token_type_ids, c.type_vocab_size, "type_vocab_size")
    if position_ids is not None and (position_ids.dim() != 2 or position_ids.shape[1] != input_ids.shape[1]
                                     or position_ids.shape[0] not in (1, input_ids.shape[0])):
        raise ValueError(f"expected position_ids of shape ({input_ids.shape[0]} or 1, {input_ids.shape[1]}) for "
                         f"input_ids of shape {tuple(input_ids.shape)}, got {tuple(position_ids.shape)}")


__all__ = ["check_inputs"]
