"""Right padding of variable-length sequences into one batch tensor, with its attention mask.

The one padding routine of the package: the tokenizer's collate, ``embed.encode``, ``train.mlm``'s collate and the
reproductions all call :func:`pad`. It is :func:`torch.nn.utils.rnn.pad_sequence` (``batch_first=True``) plus the
1/0 mask that Hugging Face's ``DataCollatorWithPadding`` returns beside the ids. It lives in ``nn`` (pure torch, no
I/O) so that ``models``, ``train``, ``embed`` and ``reproduce`` all import it downward.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from itertools import chain
from typing import NoReturn

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


def pad(sequences: Sequence[Sequence[int] | Tensor], padding_value: float = 0) -> tuple[Tensor, Tensor]:
    """Right-pad ``sequences`` to the longest: ``(padded, attention_mask)``.

    ``sequences``: token-id lists (made int64 tensors) or tensors of shape ``(length_i, *rest)`` with the same
    ``rest`` and dtype. ``padded`` is ``(batch, longest, *rest)`` holding ``padding_value`` after each sequence's
    end; ``attention_mask`` is ``(batch, longest)`` int64, 1 on real positions and 0 on padding. No sequences give
    two empty ``(0, 0)`` int64 tensors. Token ids must be integers (a float id is refused, not truncated), and so
    must ``padding_value`` for integer sequences.
    """
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"expected sequences to be a list of token-id lists or tensors, got "
                        f"{type(sequences).__name__}")
    if isinstance(padding_value, Tensor) or not isinstance(padding_value, numbers.Real):
        raise TypeError(f"expected padding_value to be a real number, got {padding_value!r} "
                        f"({type(padding_value).__name__})")
    for i, s in enumerate(sequences):
        if not (isinstance(s, (Tensor, np.ndarray)) or (isinstance(s, Sequence) and not isinstance(s, (str, bytes)))):
            raise TypeError(f"expected sequence {i} to be a list of token ids or a tensor, got {type(s).__name__}")
    if len(sequences) == 0:
        empty = torch.zeros(0, 0, dtype=torch.long)
        return empty, empty.clone()
    rows: list[Tensor]
    if any(isinstance(s, Tensor) for s in sequences):
        rows = [s if isinstance(s, Tensor) else torch.as_tensor(s, dtype=torch.long) for s in sequences]
        for i, r in enumerate(rows):
            if r.dim() == 0:
                raise ValueError(f"expected sequence {i} of shape (length, ...), got a 0-d tensor")
            if r.shape[1:] != rows[0].shape[1:] or r.dtype != rows[0].dtype:
                raise ValueError(f"expected sequences of one trailing shape and dtype, got {tuple(rows[0].shape[1:])} "
                                 f"{rows[0].dtype} (sequence 0) and {tuple(r.shape[1:])} {r.dtype} (sequence {i})")
        lengths = [r.shape[0] for r in rows]
    else:
        # One int64 buffer for the whole batch, cut into views: a tensor per list costs 3x more (MiniLM batches).
        # np.array infers the type, so a float, a string or a nested list is seen (np.fromiter would cast it).
        lengths = [len(s) for s in sequences]
        try:
            flat = np.array(list(chain.from_iterable(sequences))) if sum(lengths) else np.zeros(0, np.int64)
        except ValueError:  # ragged nested lists
            _refuse_ids(sequences)
        if flat.ndim != 1 or flat.dtype.kind not in "ib":
            _refuse_ids(sequences)
        rows = list(torch.from_numpy(flat.astype(np.int64, copy=False)).split(lengths))
    if not rows[0].is_floating_point() and not float(padding_value).is_integer():
        raise ValueError(f"expected an integer padding_value for {rows[0].dtype} sequences, got {padding_value!r}")
    padded = pad_sequence(rows, batch_first=True, padding_value=padding_value)
    mask = (torch.arange(padded.shape[1]) < torch.tensor(lengths)[:, None]).long()
    return padded, mask


def _refuse_ids(sequences: Sequence[Sequence[int] | Tensor]) -> NoReturn:
    """Say which token id of ``sequences`` is not an int64 integer."""
    for i, s in enumerate(sequences):
        for x in s:
            if not isinstance(x, numbers.Integral):
                raise TypeError(f"expected integer token ids, got {x!r} ({type(x).__name__}) in sequence {i}")
            if not -(1 << 63) <= int(x) < (1 << 63):
                raise ValueError(f"expected token ids within int64, got {x} in sequence {i}")
    raise TypeError("expected integer token ids, got another type")  # not reached: np.array infers from these


__all__ = ["pad"]
