"""In-memory references of the three shuffle schemes of the ``shuffle`` reproduction (kexue.fm/archives/8662): the
post's row-wise interleave, the exact merge and Rao-Sandelius scatter, checked by Monte Carlo against the exact
distributions the reproduction enumerates (the file-based code is :mod:`kexue.data.shuffle`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def naive_rowwise_shuffle(chunks: Sequence[Sequence[Any]], rng: np.random.Generator) -> list[Any]:
    """The post's scheme on in-memory chunks: shuffle each chunk, then for r = 0, 1, ... emit item r of every chunk
    that still has one, in a uniformly random order. Not a uniform permutation (see the module docstring)."""
    shuffled = [[c[i] for i in rng.permutation(len(c))] for c in chunks]
    out: list[Any] = []
    for r in range(max((len(c) for c in shuffled), default=0)):
        row = [c[r] for c in shuffled if r < len(c)]
        out.extend(row[i] for i in rng.permutation(len(row)))
    return out


def merge_shuffle(chunks: Sequence[Sequence[Any]], rng: np.random.Generator) -> list[Any]:
    """Exact merge, one draw per item: shuffle each chunk, then repeatedly take the next item of chunk j with
    probability (remaining in j) / (remaining in all)."""
    shuffled = [[c[i] for i in rng.permutation(len(c))] for c in chunks]
    left = np.array([len(c) for c in shuffled], dtype=np.int64)
    pos = [0] * len(shuffled)
    out: list[Any] = []
    while left.sum():
        j = int(rng.choice(len(left), p=left / left.sum()))
        out.append(shuffled[j][pos[j]])
        pos[j] += 1
        left[j] -= 1
    return out


def scatter_shuffle(records: Sequence[Any], K: int, rng: np.random.Generator) -> list[Any]:
    """Rao-Sandelius: send each item to one of ``K`` buckets uniformly at random, shuffle each bucket, concatenate."""
    if K < 1:
        raise ValueError(f"expected K >= 1 buckets, got {K}")
    labels = rng.integers(K, size=len(records))
    out: list[Any] = []
    for j in range(K):
        bucket = [records[int(i)] for i in np.flatnonzero(labels == j)]
        out.extend(bucket[i] for i in rng.permutation(len(bucket)))
    return out
