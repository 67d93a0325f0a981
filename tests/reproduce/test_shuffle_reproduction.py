"""The shuffle reproduction's in-memory references of the three schemes against the exact distributions it
enumerates (Monte Carlo, chi-square)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from kexue.reproduce._shuffle_references import merge_shuffle, naive_rowwise_shuffle, scatter_shuffle
from kexue.reproduce.shuffle import merge_distribution, naive_distribution, scatter_distribution

stats = pytest.importorskip("scipy.stats")
ALPHA = 1e-3  # significance of the chi-square tests; the seed is fixed, so the outcome is reproducible


def test_in_memory_references_match_exact_distributions():
    """Monte Carlo of the in-memory references against the exact distributions the reproduction enumerates."""
    rng = np.random.default_rng(0)
    runs = 12000
    cases = [
        ("naive", [2, 2], lambda rng: naive_rowwise_shuffle([[0, 1], [2, 3]], rng), naive_distribution([2, 2])),
        ("merge", [3, 1], lambda rng: merge_shuffle([[0, 1, 2], [3]], rng), merge_distribution([3, 1])),
        ("scatter", [4], lambda rng: scatter_shuffle([0, 1, 2, 3], 3, rng), scatter_distribution(4, 3)),
    ]
    for name, _, fn, exact in cases:
        got = Counter(tuple(fn(rng)) for _ in range(runs))
        support = sorted(p for p, q in exact.items() if q > 0)
        assert set(got) <= set(support), name
        observed = np.array([got.get(p, 0) for p in support])
        expected = np.array([float(exact[p]) for p in support]) * runs
        assert stats.chisquare(observed, expected).pvalue > ALPHA, name
