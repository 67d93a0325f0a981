"""The key/value cache of incremental decoding with the kexue Transformer (see :mod:`kexue.models.decoding`)."""

from __future__ import annotations

from torch import Tensor


class KVCache:
    """Keys and values of every layer for incremental decoding with an ``lm`` or ``unilm`` mask.

    Pass the same cache to successive calls of :class:`Transformer`: each call appends its tokens' keys and values,
    and its tokens attend to everything cached plus themselves (causally). Positions continue from the cached length.
    For ``unilm`` the cache keeps the running segment index (cumsum of segment ids), so a call's new tokens see the
    whole source and the target up to themselves. :meth:`reorder` selects batch rows (beam search).
    """

    def __init__(self, num_layers: int) -> None:
        self.layers: list[dict[str, Tensor]] = [{} for _ in range(num_layers)]
        self.segment_index: Tensor | None = None  # (batch, cached) cumsum of segment ids (unilm)
        self.padding: Tensor | None = None  # (batch, cached) 1 = real token

    @property
    def length(self) -> int:
        return 0 if not self.layers or "k" not in self.layers[0] else self.layers[0]["k"].shape[2]

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (in that order) of every cached tensor."""
        for layer in self.layers:
            for key in list(layer):
                layer[key] = layer[key].index_select(0, index)
        if self.segment_index is not None:
            self.segment_index = self.segment_index.index_select(0, index)
        if self.padding is not None:
            self.padding = self.padding.index_select(0, index)


__all__ = ["KVCache"]
