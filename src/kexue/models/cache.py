"""The key/value cache of incremental decoding with the kexue Transformer (see :mod:`kexue.models.decoding`)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._validate import check_int


def check_rows(name: str, index: Tensor, rows: int | None) -> None:
    """``index`` a 1-D integer tensor of row numbers in [0, rows) (``rows`` None: any), else an error naming it."""
    if not isinstance(index, Tensor):
        raise TypeError(f"expected {name} to be a 1-D integer Tensor, got {type(index).__name__}")
    if index.dim() != 1 or index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"expected {name} to be a 1-D integer Tensor, got shape {tuple(index.shape)} of {index.dtype}")
    if rows is not None and index.numel():
        lo, hi = torch.stack(torch.aminmax(index)).tolist()  # one device sync
        if lo < 0 or hi >= rows:
            raise ValueError(f"expected {name} in [0, {rows}) (the cached rows), got {lo if lo < 0 else hi}")


class KVCache:
    """Keys and values of every layer for incremental decoding with an ``lm`` or ``unilm`` mask.

    Pass the same cache to successive calls of :class:`Transformer`: each call appends its tokens' keys and values,
    and its tokens attend to everything cached plus themselves (causally). Positions continue from the cached length.
    For ``unilm`` the cache keeps the running segment index (cumsum of segment ids), so a call's new tokens see the
    whole source and the target up to themselves. :meth:`reorder` selects batch rows (beam search).
    """

    def __init__(self, num_layers: int) -> None:
        check_int("num_layers", num_layers, 1)
        self.layers: list[dict[str, Tensor]] = [{} for _ in range(num_layers)]
        self.segment_index: Tensor | None = None  # (batch, cached) cumsum of segment ids (unilm)
        self.padding: Tensor | None = None  # (batch, cached) 1 = real token

    @property
    def length(self) -> int:
        return 0 if not self.layers or "k" not in self.layers[0] else self.layers[0]["k"].shape[2]

    @property
    def batch_size(self) -> int | None:
        """Rows of the cached tensors; None while the cache is empty."""
        return None if not self.layers or "k" not in self.layers[0] else self.layers[0]["k"].shape[0]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (in that order) of every cached tensor."""
        check_rows("index", index, self.batch_size)
        self._reorder(index)

    def _reorder(self, index: Tensor) -> None:
        """:meth:`reorder` with ``index`` already checked."""
        for layer in self.layers:
            for key in list(layer):
                layer[key] = layer[key].index_select(0, index)
        if self.segment_index is not None:
            self.segment_index = self.segment_index.index_select(0, index)
        if self.padding is not None:
            self.padding = self.padding.index_select(0, index)


__all__ = ["KVCache", "check_rows"]
