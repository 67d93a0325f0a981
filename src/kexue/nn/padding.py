"""Right padding of variable-length sequences into one batch tensor, with its attention mask.

The one padding routine of the package: the tokenizer's collate, ``embed.encode``, ``train.mlm``'s collate and the
reproductions all call :func:`pad`. It is :func:`torch.nn.utils.rnn.pad_sequence` (``batch_first=True``) plus the
1/0 mask that Hugging Face's ``DataCollatorWithPadding`` returns beside the ids. It lives in ``nn`` (pure torch, no
I/O) so that ``models``, ``train``, ``embed`` and ``reproduce`` all import it downward.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence


def pad(sequences: Sequence[Sequence[int] | Tensor], padding_value: float = 0) -> tuple[Tensor, Tensor]:
    """Right-pad ``sequences`` to the longest: ``(padded, attention_mask)``.

    ``sequences``: token-id lists (made int64 tensors) or tensors of shape ``(length_i, *rest)`` with the same
    ``rest`` and dtype. ``padded`` is ``(batch, longest, *rest)`` holding ``padding_value`` after each sequence's
    end; ``attention_mask`` is ``(batch, longest)`` int64, 1 on real positions and 0 on padding. No sequences give
    two empty ``(0, 0)`` int64 tensors.
    """
    if len(sequences) == 0:
        empty = torch.zeros(0, 0, dtype=torch.long)
        return empty, empty.clone()
    rows: list[Tensor]
    if any(isinstance(s, Tensor) for s in sequences):
        rows = [s if isinstance(s, Tensor) else torch.as_tensor(s, dtype=torch.long) for s in sequences]
        for i, r in enumerate(rows):
            if r.dim() == 0:
                raise ValueError(f"expected sequence {i} of shape (length, ...), got a 0-d tensor")
        lengths = [r.shape[0] for r in rows]
    else:
        # One int64 buffer for the whole batch, cut into views: a tensor per list costs 3x more (MiniLM batches).
        lengths = [len(s) for s in sequences]
        flat = np.fromiter(chain.from_iterable(sequences), dtype=np.int64, count=sum(lengths))
        rows = list(torch.from_numpy(flat).split(lengths))
    padded = pad_sequence(rows, batch_first=True, padding_value=padding_value)
    mask = (torch.arange(padded.shape[1]) < torch.tensor(lengths)[:, None]).long()
    return padded, mask


__all__ = ["pad"]
