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
  name "last2avg" suggests; see "你可能不需要BERT-flow：一个线性变换媲美BERT-flow" (You may not need BERT-flow,
  2021-01-11, https://kexue.fm/archives/8069) and ``specs/05-embeddings-stats.md`` §1;
* ``layers=(i, j, …)``: (1/k) Σ mean_i over the given ``hidden_states`` indices (``first_last_avg`` is
  ``layers=(1, -1)``; the ``(0, -1)`` reading some later code bases use is ``layers=(0, -1)``);
* ``cls``: the last layer's vector at position 0 ([CLS]);
* ``pooler``: BERT's pooler, tanh(W · h_{-1}[0] + b), as the model computed it (``pooler_output``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import torch
from torch import Tensor

from .._validate import check_choice

#: Pooling names (hyphenated or capitalised spellings such as ``"First-Last-Avg"`` are accepted too; ``last_avg`` is
#: ``mean``).
Pooling = Literal["cls", "pooler", "mean", "last_avg", "emb_avg", "first_last_avg", "layers"]
POOLINGS: tuple[Pooling, ...] = get_args(Pooling)


def _canonical(pooling: str) -> str:
    """The canonical name of ``pooling`` (``-`` → ``_``, lower case; ``last_avg`` → ``mean``)."""
    if not isinstance(pooling, str):
        raise TypeError(f"expected pooling to be a str, got {pooling!r} ({type(pooling).__name__})")
    k = pooling.strip().lower().replace("-", "_")
    if k not in POOLINGS:
        check_choice("pooling", pooling, Pooling)  # raises: neither the spelling given nor its canonical form is one
    return "mean" if k == "last_avg" else k


def _layers(pooling: str, layers: Sequence[int] | None = None) -> tuple[int, ...] | None:
    """The ``hidden_states`` indices whose token means ``pooling`` averages, or None for ``cls``/``pooler``.

    ``layers`` may only be given with ``mean`` (it then replaces the default ``(-1,)``) or ``layers``.
    """
    k = _canonical(pooling)
    if layers is not None:
        if k not in ("mean", "layers"):
            raise ValueError(f"expected pooling 'mean' or 'layers' with layers={tuple(layers)}, got {pooling!r}")
        lay = tuple(int(i) for i in layers)
        if not lay:
            raise ValueError("expected layers to name at least one hidden_states index, got an empty sequence")
        return lay
    if k == "layers":
        raise ValueError("expected layers=(i, j, ...), the hidden_states indices to average, with pooling 'layers', "
                         "got layers=None")
    return {"mean": (-1,), "emb_avg": (0,), "first_last_avg": (1, -1)}.get(k)


def _needs_hidden_states(pooling: str, layers: Sequence[int] | None = None) -> bool:
    """Whether ``pooling`` reads anything besides the last hidden state and the pooler output."""
    lay = _layers(pooling, layers)
    return lay is not None and any(i != -1 for i in lay)


def _check_tokens(name: str, hidden: Tensor) -> None:
    """``hidden`` a (batch, seq, hidden) tensor of token vectors, else an error naming it."""
    if not isinstance(hidden, Tensor):
        raise TypeError(f"expected {name} to be a (batch, seq, hidden) Tensor, got {type(hidden).__name__}")
    if hidden.dim() != 3:
        raise ValueError(f"expected {name} of shape (batch, seq, hidden), got shape {tuple(hidden.shape)}")


def masked_mean(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """Σ_t m_t h[:, t] / max(Σ_t m_t, 1e-9): (batch, seq, hidden) -> (batch, hidden).

    Computed as sentence-transformers' mean pooling does (multiply by the mask, sum over tokens, divide by the
    clamped count), so the two agree to the last bits.
    """
    _check_tokens("hidden", hidden)
    return _masked_mean(hidden, attention_mask)


def _masked_mean(hidden: Tensor, attention_mask: Tensor | None) -> Tensor:
    """:func:`masked_mean` of a checked (batch, seq, hidden) tensor."""
    if attention_mask is None:
        return hidden.mean(dim=1)
    if attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"expected attention_mask of the hidden states' (batch, seq) shape {tuple(hidden.shape[:2])}, "
                         f"got {tuple(attention_mask.shape)}")
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def pool(
    hidden_states: Sequence[Tensor] | Tensor,
    attention_mask: Tensor | None,
    pooling: Pooling = "mean",
    layers: Sequence[int] | None = None,
    pooler_output: Tensor | None = None,
) -> Tensor:
    """Pool token vectors into one vector per sentence (see the module docstring for the formulas).

    ``hidden_states``: the model's ``hidden_states`` tuple (embedding output first), or a single (batch, seq,
    hidden) tensor taken as the last layer (enough for ``cls`` and ``mean``). ``attention_mask``: (batch, seq), 1
    for real tokens; None means no padding. ``pooling``: one of :data:`POOLINGS`. ``pooler_output``: required for
    ``pooler``.
    """
    k = _canonical(pooling)
    lay = _layers(k, layers)  # checks that layers go with this pooling
    if isinstance(hidden_states, Tensor):
        states: Sequence[Tensor] = (hidden_states,)
        single = True
    else:
        states = hidden_states
        single = False
        if len(states) == 0:
            raise ValueError("expected at least one tensor in hidden_states, got an empty sequence")
    if k == "pooler":
        if pooler_output is None:
            raise ValueError("expected pooler_output with pooling 'pooler', got None (the model has no pooler, or it "
                             "was not passed)")
        return pooler_output
    if k == "cls":
        _check_tokens("hidden_states", states[-1])
        return states[-1][:, 0]
    assert lay is not None  # every pooling but cls and pooler averages layers
    if single and any(i != -1 for i in lay):
        raise ValueError(f"expected the hidden_states tuple for pooling {pooling!r} (layers {lay}), got a single "
                         f"tensor")
    n = len(states)
    for i in lay:
        if not -n <= i < n:
            raise ValueError(f"expected layer indices in [-{n}, {n}) for {n} hidden states (embeddings + {n - 1} "
                             f"blocks), got {i}")
    for i in lay:
        _check_tokens(f"hidden_states[{i}]" if not single else "hidden_states", states[i])
    means = [_masked_mean(states[i], attention_mask) for i in lay]
    if len(means) == 1:
        return means[0]
    return torch.stack(means).mean(dim=0)


__all__ = ["POOLINGS", "Pooling", "masked_mean", "pool"]
