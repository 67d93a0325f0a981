"""The checks of the kexue Transformer's inputs (internal): :meth:`~kexue.models.Transformer.forward`,
``run_encoder`` and ``attention_mask`` call :func:`check_inputs` once per call."""

from __future__ import annotations

import torch
from torch import Tensor

from ..nn.masks import _odd_mask_values, _refuse_odd_mask
from .config import TransformerConfig


def _integer(name: str, ids: Tensor) -> None:
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"expected {name} to be an integer tensor, got {ids.dtype}")


def _outside(ids: Tensor, size: int) -> Tensor:
    return ((ids < 0) | (ids >= size)).any()


def _check_values(config: TransformerConfig, input_ids: Tensor, attention_mask: Tensor | None,
                  token_type_ids: Tensor | None) -> None:
    """The value checks (ids in range, a 1/0 mask) as one reduction per tensor and ONE device sync; the message,
    naming the first bad value, is worked out only on the error path. Skipped while torch.compile traces (a sync
    there breaks the graph): shapes and dtypes are still checked."""
    if torch.compiler.is_compiling():
        return
    checks: list[tuple[str, Tensor]] = [("input_ids", _outside(input_ids, config.vocab_size))]
    if attention_mask is not None:
        checks.append(("attention_mask", _odd_mask_values(attention_mask)))
    if token_type_ids is not None and config.type_vocab_size:
        checks.append(("token_type_ids", _outside(token_type_ids, config.type_vocab_size)))
    flags = torch.stack([flag for _, flag in checks]).tolist()  # the one device sync
    for (name, _), bad in zip(checks, flags):
        if not bad:
            continue
        if name == "attention_mask":
            assert attention_mask is not None
            _refuse_odd_mask(attention_mask)
        ids, size, size_name = ((input_ids, config.vocab_size, "vocab_size") if name == "input_ids" else
                                (token_type_ids, config.type_vocab_size, "type_vocab_size"))
        assert ids is not None
        lo, hi = torch.stack(torch.aminmax(ids)).tolist()
        raise ValueError(f"expected {name} in [0, {size_name}={size}), got {lo if lo < 0 else hi}")


def check_inputs(config: TransformerConfig, input_ids: Tensor, attention_mask: Tensor | None,
                 token_type_ids: Tensor | None, position_ids: Tensor | None) -> None:
    """The checks of the Transformer's inputs, each error naming the argument: ``input_ids`` an int64/int32
    (batch, seq) tensor, seq >= 1, ids in [0, vocab_size); ``attention_mask`` and ``token_type_ids`` of its shape,
    the mask of 1s and 0s (or bool), segment ids in [0, type_vocab_size); ``position_ids`` of shape (batch or 1,
    seq). Values: one reduction over each tensor and one device sync per call (none while torch.compile traces)."""
    c = config
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"expected input_ids to be a Tensor, got {type(input_ids).__name__}")
    if input_ids.dim() != 2:
        raise ValueError(f"expected input_ids of shape (batch, seq), got {tuple(input_ids.shape)}")
    if input_ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected input_ids of dtype int64 or int32, got {input_ids.dtype}")
    if input_ids.shape[1] == 0:
        raise ValueError(f"expected input_ids with at least one position, got shape {tuple(input_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(f"expected attention_mask of input_ids' shape {tuple(input_ids.shape)}, got "
                         f"{tuple(attention_mask.shape)}")
    if token_type_ids is not None:
        if token_type_ids.shape != input_ids.shape:
            raise ValueError(f"expected token_type_ids of input_ids' shape {tuple(input_ids.shape)}, got "
                             f"{tuple(token_type_ids.shape)}")
        _integer("token_type_ids", token_type_ids)
    if position_ids is not None and (position_ids.dim() != 2 or position_ids.shape[1] != input_ids.shape[1]
                                     or position_ids.shape[0] not in (1, input_ids.shape[0])):
        raise ValueError(f"expected position_ids of shape ({input_ids.shape[0]} or 1, {input_ids.shape[1]}) for "
                         f"input_ids of shape {tuple(input_ids.shape)}, got {tuple(position_ids.shape)}")
    _check_values(c, input_ids, attention_mask, token_type_ids)


__all__ = ["check_inputs"]
