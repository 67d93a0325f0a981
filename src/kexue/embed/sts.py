"""STS evaluation: Spearman correlation between the cosine similarity of sentence vectors and gold scores.

The metric of BERT-whitening ("你可能不需要BERT-flow：一个线性变换媲美BERT-flow", You may not need BERT-flow,
2021-01-11, https://kexue.fm/archives/8069) and of sentence-transformers' ``EmbeddingSimilarityEvaluator``:

    ρ = Pearson(rank(cos(u_i, v_i)), rank(gold_i)),

with tied values given the mean of the ranks they span (what ``scipy.stats.spearmanr`` does).
The data loaders live in :mod:`kexue.data.datasets` (:func:`~kexue.data.datasets.load_sts`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.datasets import STSPairs
from .encode import encode
from .pooling import Pooling


def _as_numpy(name: str, x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"expected {name} to hold real numbers, got {type(x).__name__} ({e})") from None


def _ranks(name: str, x: Any) -> np.ndarray:
    """:func:`rankdata` with errors naming the argument ``name``."""
    a = _as_numpy(name, x)
    if a.ndim != 1:
        raise ValueError(f"expected {name} to be 1-D, got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"expected {name} without NaN to rank, got {int(np.isnan(a).sum())} NaN of {a.shape[0]}")
    n = a.shape[0]
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    # Start of each run of equal values in sorted order; the run [s, e) gets the mean rank (s + 1 + e) / 2.
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], n]
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def rankdata(x: Any) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties given the average of the ranks they span (scipy's ``method="average"``)."""
    return _ranks("x", x)


def spearman(x: Any, y: Any) -> float:
    """Spearman's ρ of two equally long 1-D sequences: the Pearson correlation of their tie-averaged ranks.

    A constant side has no ranks to correlate (ρ = 0/0): refused with a ``ValueError`` naming it, where scipy returns
    NaN with a warning (a NaN figure in a table says nothing about why).
    """
    rx, ry = _ranks("x", x), _ranks("y", y)
    if rx.shape != ry.shape:
        raise ValueError(f"expected x and y of one length, got {rx.shape[0]} and {ry.shape[0]}")
    if rx.shape[0] < 2:
        raise ValueError(f"expected at least 2 pairs for Spearman's correlation, got {rx.shape[0]}")
    for name, r in (("x", rx), ("y", ry)):
        if r[0] == r[1] and bool((r == r[0]).all()):
            raise ValueError(f"expected {name} to vary (Spearman's correlation of a constant is undefined), got "
                             f"{r.shape[0]} equal values")
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx * rx).sum() * (ry * ry).sum()))


def cosine_scores(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity of two (n, d) tensors (arrays are taken too), computed in float64."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.dim() == 0:
        raise ValueError("expected a and b of shape (n, d), got 0-d tensors")
    if a.shape != b.shape:
        raise ValueError(f"expected a and b of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (F.normalize(a.double(), dim=-1) * F.normalize(b.double(), dim=-1)).sum(-1)


def spearman_eval(
    encode_fn: Callable[[list[str]], Tensor | np.ndarray], pairs: STSPairs | tuple[Sequence[str], Sequence[str]],
    gold: Any = None,
) -> float:
    """Spearman ρ of cos(encode_fn(s1), encode_fn(s2)) against the gold scores, encoding each distinct sentence once.

    ``pairs`` is an :class:`STSPairs` (gold taken from it) or ``(sentences1, sentences2)`` with ``gold`` given.
    ``encode_fn`` maps a list of texts to an (n, d) array or tensor, e.g. a whitened encoder.
    """
    if not callable(encode_fn):
        raise TypeError(f"expected encode_fn to be a callable texts -> vectors, got {type(encode_fn).__name__}")
    s1: Sequence[str]
    s2: Sequence[str]
    if isinstance(pairs, STSPairs):
        s1, s2 = pairs.sentences1, pairs.sentences2
        gold = pairs.scores if gold is None else gold
    else:
        s1, s2 = pairs
        if gold is None:
            raise ValueError("expected gold scores with pairs given as (sentences1, sentences2), got gold=None")
    if len(s1) != len(s2):
        raise ValueError(f"expected as many second sentences as first ones ({len(s1)}), got {len(s2)}")
    gold_shape = tuple(np.shape(gold.detach().cpu() if isinstance(gold, Tensor) else gold))
    if gold_shape != (len(s1),):
        raise ValueError(f"expected one gold score per pair, shape ({len(s1)},), got shape {gold_shape}")
    unique = list(dict.fromkeys([*s1, *s2]))
    index = {s: i for i, s in enumerate(unique)}
    vecs = encode_fn(unique)
    vecs = torch.as_tensor(np.asarray(vecs)) if not isinstance(vecs, Tensor) else vecs
    if vecs.shape[0] != len(unique):
        raise ValueError(f"expected encode_fn to return one vector per sentence ({len(unique)}), got "
                         f"{vecs.shape[0]}")
    i1 = torch.tensor([index[s] for s in s1])
    i2 = torch.tensor([index[s] for s in s2])
    return spearman(cosine_scores(vecs[i1], vecs[i2]), gold)


def evaluate(
    model: nn.Module, tokenizer: Any, dataset: STSPairs, pooling: Pooling = "mean", **encode_kwargs: Any
) -> float:
    """Spearman ρ of the cosine similarity of ``model``'s sentence vectors against ``dataset``'s gold scores.

    Each distinct sentence is encoded once with :func:`kexue.embed.encode` (``pooling`` and ``encode_kwargs``
    passed on, e.g. ``layers=(1, -1)``, ``batch_size=32``).
    """
    if not isinstance(dataset, STSPairs):
        raise TypeError(f"expected an STSPairs (see kexue.data.datasets.load_sts), got {type(dataset).__name__}")
    return spearman_eval(lambda texts: encode(texts, model, tokenizer, pooling=pooling, **encode_kwargs), dataset)


__all__ = ["cosine_scores", "evaluate", "rankdata", "spearman", "spearman_eval"]
