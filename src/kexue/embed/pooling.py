"""Sentence vectors from a Transformer's token vectors: ``cls``, ``pooler``, ``mean``, ``emb_avg``,
``first_last_avg`` and an explicit list of layers.

Every averaging pooling is a masked token mean over all non-padding tokens, [CLS] and [SEP] included:

    mean_l = Σ_t m_t · h_l[t] / Σ_t m_t,     m_t = 1 for real tokens, 0 for padding,

where ``h_l = hidden_states[l]`` and ``hidden_states`` lists the embedding output first (index 0) and then the
output of each Transformer block (index 1 … L), as transformers orders them. Then

* ``mean`` (also ``last_avg``): mean_{-1}, the last block's output (sentence-transformers' mean pooling);
* ``emb_avg``: mean_0, the embedding-layer output;
* ``first_last_avg``: (mean_1 + mean_{-1}) / 2, the outputs of the **first Transformer block** and the last one,
  *not* the embeddings. This is what BERT-flow's and BERT-whitening's code compute, whatever the BERT-flow paper's
  name "last2avg" suggests; see "你可能不需要BERT-flow：一个线性变换媲美BERT-flow" (You may not need BERT-flow, 2021-01-11,
  https://kexue.fm/archives/8069) and ``specs/05-embeddings-stats.md`` §1;
* ``layers=(i, j, …)``: (1/k) Σ mean_i over the given ``hidden_states`` indices (``first_last_avg`` is
  ``layers=(1, -1)``; the ``(0, -1)`` reading some later code bases use is ``layers=(0, -1)``);
* ``cls``: the last layer's vector at position 0 ([CLS]);
* ``pooler``: BERT's pooler, tanh(W · h_{-1}[0] + b), as the model computed it (``pooler_output``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

#: Pooling names (hyphenated spellings such as ``"first-last-avg"`` are accepted too).
POOLINGS: tuple[str, ...] = ("cls", "pooler", "mean", "last_avg", "emb_avg", "first_last_avg", "layers")


def normalize_pooling(kind: str) -> str:
    """The canonical name of pooling ``kind`` (``-`` → ``_``; ``last_avg`` → ``mean``); raises on unknown names."""
    if not isinstance(kind, str):
        raise TypeError(f"pooling must be a str, got {type(kind).__name__} {kind!r}")
    k = kind.strip().lower().replace("-", "_")
    if k not in POOLINGS:
        raise ValueError(f"unknown pooling {kind!r}; expected one of {list(POOLINGS)}")
    return "mean" if k == "last_avg" else k


def pooling_layers(kind: str, layers: Sequence[int] | None = None) -> tuple[int, ...] | None:
    """The ``hidden_states`` indices whose token means pooling ``kind`` averages, or None for ``cls``/``pooler``.

    ``layers`` may only be given with ``mean`` (it then replaces the default ``(-1,)``) or ``layers``.
    """
    k = normalize_pooling(kind)
    if layers is not None:
        if k not in ("mean", "layers"):
            raise ValueError(f"layers={tuple(layers)} only goes with pooling 'mean' or 'layers', not {kind!r}")
        lay = tuple(int(i) for i in layers)
        if not lay:
            raise ValueError("layers must name at least one hidden_states index, got an empty sequence")
        return lay
    if k == "layers":
        raise ValueError("pooling 'layers' needs layers=(i, j, ...): the hidden_states indices to average")
    return {"mean": (-1,), "emb_avg": (0,), "first_last_avg": (1, -1)}.get(k)


def needs_hidden_states(kind: str, layers: Sequence[int] | None = None) -> bool:
    """Whether pooling ``kind`` reads anything besides the last hidden state and the pooler output."""
    lay = pooling_layers(kind, layers)
    return lay is not None and any(i != -1 for i in lay)


def masked_mean(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Σ_t m_t h[:, t] / max(Σ_t m_t, 1e-9): (batch, seq, hidden) -> (batch, hidden).

    Computed as sentence-transformers' mean pooling does (multiply by the mask, sum over tokens, divide by the
    clamped count), so the two agree to the last bits.
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} does not match hidden states {tuple(hidden.shape)}"
        )
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def pool(
    hidden_states: Sequence[Tensor] | Tensor,
    attention_mask: Tensor | None,
    kind: str = "mean",
    layers: Sequence[int] | None = None,
    pooler_output: Tensor | None = None,
) -> Tensor:
    """Pool token vectors into one vector per sentence (see the module docstring for the formulas).

    ``hidden_states``: the model's ``hidden_states`` tuple (embedding output first), or a single (batch, seq,
    hidden) tensor taken as the last layer (enough for ``cls`` and ``mean``). ``attention_mask``: (batch, seq), 1
    for real tokens; None means no padding. ``pooler_output``: required for ``pooler``.
    """
    k = normalize_pooling(kind)
    lay = pooling_layers(k, layers)  # checks that layers go with this pooling
    if isinstance(hidden_states, Tensor):
        states: Sequence[Tensor] = (hidden_states,)
        single = True
    else:
        states = hidden_states
        single = False
        if len(states) == 0:
            raise ValueError("hidden_states is empty")
    if k == "pooler":
        if pooler_output is None:
            raise ValueError("pooling 'pooler' needs pooler_output (the model has no pooler, or it was not passed)")
        return pooler_output
    if k == "cls":
        return states[-1][:, 0]
    assert lay is not None
    if single and any(i != -1 for i in lay):
        raise ValueError(
            f"pooling {kind!r} (layers {lay}) needs the hidden_states tuple, but a single tensor was given"
        )
    n = len(states)
    for i in lay:
        if not -n <= i < n:
            raise ValueError(f"layer index {i} is out of range for {n} hidden states (embeddings + {n - 1} blocks)")
    means = [masked_mean(states[i], attention_mask) for i in lay]
    if len(means) == 1:
        return means[0]
    return torch.stack(means).mean(dim=0)


__all__ = ["POOLINGS", "masked_mean", "needs_hidden_states", "normalize_pooling", "pool", "pooling_layers"]
