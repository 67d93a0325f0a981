"""The exact and Monte Carlo checks of the `shuffle` reproduction (:mod:`kexue.reproduce.shuffle`, which runs and
judges them): the distribution over permutations of the naive, merge, non-exhausted and scatter schemes by exact
enumeration with fractions; a chi-square test of sampled orders; ``external_shuffle`` run many times on a small real
file; and the short-last-chunk position bias.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import shutil
import tempfile
from fractions import Fraction

import numpy as np

from ..data import shuffle as S
from ..data.shuffle.passes import ProportionalLabels, RowwiseLabels
from ._shuffle_references import scatter_shuffle

Dist = dict[tuple[int, ...], Fraction]


# ------------------------------------------------------------------------------------------- exact distributions
def _chunks(sizes: list[int]) -> list[list[int]]:
    """Items 0..N-1, chunk j holding the next sizes[j] of them."""
    out, start = [], 0
    for n in sizes:
        out.append(list(range(start, start + n)))
        start += n
    return out


def _add(dist: Dist, perm: tuple[int, ...], p: Fraction) -> None:
    dist[perm] = dist.get(perm, Fraction(0)) + p


def naive_distribution(sizes: list[int]) -> Dist:
    """The post's scheme: every in-chunk order, then per row r every order of the chunks that still have a record r.
    Returns output order (a tuple of item ids) -> probability."""
    chunks = _chunks(sizes)
    rows = [[j for j, n in enumerate(sizes) if n > r] for r in range(max(sizes))]
    p = Fraction(1, math.prod(math.factorial(n) for n in sizes) * math.prod(math.factorial(len(a)) for a in rows))
    dist: Dist = {}
    for orders in itertools.product(*(itertools.permutations(c) for c in chunks)):
        for row_perms in itertools.product(*(itertools.permutations(a) for a in rows)):
            _add(dist, tuple(orders[j][r] for r, perm in enumerate(row_perms) for j in perm), p)
    return dist


def _label_words(sizes: list[int], rule: str) -> dict[tuple[int, ...], Fraction]:
    """Distribution of the chunk-label word when the next chunk is drawn by ``rule``: "proportional" (to its
    remaining records: the exact merge) or "uniform" (among non-exhausted chunks: the wrong fix)."""
    words: dict[tuple[int, ...], Fraction] = {}
    left = list(sizes)

    def rec(word: list[int], p: Fraction) -> None:
        total = sum(left)
        if total == 0:
            words[tuple(word)] = words.get(tuple(word), Fraction(0)) + p
            return
        active = [j for j, n in enumerate(left) if n]
        for j in active:
            q = Fraction(left[j], total) if rule == "proportional" else Fraction(1, len(active))
            left[j] -= 1
            word.append(j)
            rec(word, p * q)
            word.pop()
            left[j] += 1

    rec([], Fraction(1))
    return words


def _merge_like(sizes: list[int], rule: str) -> Dist:
    chunks = _chunks(sizes)
    p_orders = Fraction(1, math.prod(math.factorial(n) for n in sizes))
    dist: Dist = {}
    for word, pw in _label_words(sizes, rule).items():
        for orders in itertools.product(*(itertools.permutations(c) for c in chunks)):
            pos = [0] * len(sizes)
            out = []
            for j in word:
                out.append(orders[j][pos[j]])
                pos[j] += 1
            _add(dist, tuple(out), pw * p_orders)
    return dist


def merge_distribution(sizes: list[int]) -> Dist:
    """Exact merge: shuffle each chunk, then draw the next chunk with probability remaining_j / remaining."""
    return _merge_like(sizes, "proportional")


def nonexhausted_distribution(sizes: list[int]) -> Dist:
    """The common wrong fix: the next chunk uniformly among those not yet exhausted."""
    return _merge_like(sizes, "uniform")


def scatter_distribution(n: int, k: int) -> Dist:
    """Rao-Sandelius: each item to one of k buckets uniformly, each bucket shuffled, buckets concatenated."""
    dist: Dist = {}
    for labels in itertools.product(range(k), repeat=n):
        buckets = [[i for i in range(n) if labels[i] == j] for j in range(k)]
        p = Fraction(1, k**n * math.prod(math.factorial(len(b)) for b in buckets))
        for orders in itertools.product(*(itertools.permutations(b) for b in buckets)):
            _add(dist, tuple(i for o in orders for i in o), p)
    return dist


def marginals(dist: Dist, n: int) -> list[list[Fraction]]:
    """P(item i at position t)."""
    m = [[Fraction(0)] * n for _ in range(n)]
    for perm, p in dist.items():
        for t, i in enumerate(perm):
            m[i][t] += p
    return m


def is_uniform(dist: Dist, n: int) -> bool:
    return len(dist) == math.factorial(n) and all(p == Fraction(1, math.factorial(n)) for p in dist.values())


# ------------------------------------------------------------------------------------------------ Monte Carlo
def chisquare_p(outputs: list[tuple[int, ...]], n: int) -> float:
    from scipy import stats

    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    counts = np.zeros(len(index), np.int64)
    for o in outputs:
        counts[index[o]] += 1
    return float(stats.chisquare(counts).pvalue)


def _scratch() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="kexue-shuffle-repro-", dir=base)


def external_runs(method: S.Method, runs: int, memory: int, n: int = 5) -> tuple[list[tuple[int, ...]], int]:
    """``external_shuffle`` of an n-record file, one seed per run: output orders (as item ids) and the chunks."""
    d = _scratch()
    try:
        src = os.path.join(d, "in.txt")
        with open(src, "wb") as f:
            f.write(b"".join(b"%d\n" % i for i in range(n)))
        outs, chunks = [], 0
        for seed in range(runs):
            buf = io.BytesIO()
            r = S.external_shuffle(src, buf, memory=memory, method=method, seed=seed, tmp_dir=d)
            outs.append(tuple(int(x) for x in buf.getvalue().split()))
            chunks = r.chunks
        return outs, chunks
    finally:
        shutil.rmtree(d, ignore_errors=True)


def short_chunk_positions(runs: int, sizes: tuple[int, ...] = (100, 100, 30), seed: int = 0) -> dict[str, tuple]:
    """Mean relative output position of the last (short) chunk's records and its standard error, per method. The
    merge and naive orders come from the label sources the file-based merge uses; scatter from its reference."""
    rng = np.random.default_rng(seed)
    counts = np.array(sizes)
    n = int(counts.sum())
    out = {}
    for name in ("merge", "naive", "scatter"):
        means = []
        for _ in range(runs):
            if name == "scatter":
                order = np.array(scatter_shuffle(list(range(n)), 4, rng))
                pos = np.flatnonzero(order >= n - sizes[-1])
            else:
                src = ProportionalLabels(counts, rng) if name == "merge" else RowwiseLabels(counts, rng)
                parts: list[np.ndarray] = []
                while sum(x.size for x in parts) < n:
                    parts.append(src.draw(64))
                labels = np.concatenate(parts)
                pos = np.flatnonzero(labels == len(sizes) - 1)
            means.append(pos.mean() / (n - 1))
        out[name] = (float(np.mean(means)), float(np.std(means, ddof=1) / math.sqrt(runs)))
    return out
