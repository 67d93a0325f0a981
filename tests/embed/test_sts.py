"""Spearman's ρ and the STS evaluation helpers against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data.datasets import STSPairs
from kexue.embed.sts import cosine_scores, rankdata, spearman, spearman_eval

scipy_stats = pytest.importorskip("scipy.stats")


@settings(max_examples=200, deadline=None)
@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@given(st.lists(st.tuples(st.integers(-3, 3), st.floats(-1e3, 1e3, allow_nan=False)), min_size=2, max_size=60))
def test_spearman_matches_scipy_with_ties(pairs):
    """Many ties on the integer side (like gold scores), few on the float side."""
    x = np.array([p[0] for p in pairs], dtype=np.float64)
    y = np.array([p[1] for p in pairs], dtype=np.float64)
    np.testing.assert_array_equal(rankdata(x), scipy_stats.rankdata(x))
    np.testing.assert_array_equal(rankdata(y), scipy_stats.rankdata(y))
    want = scipy_stats.spearmanr(x, y).statistic
    if math.isnan(want):  # a constant side: scipy's NaN, refused here
        with pytest.raises(ValueError, match=r"^expected [xy] to vary"):
            spearman(x, y)
    else:
        assert spearman(x, y) == pytest.approx(want, abs=1e-12)


def test_spearman_accepts_tensors_and_lists():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    y = np.round(x + rng.normal(size=500), 1)  # ties
    want = scipy_stats.spearmanr(x, y).statistic
    assert spearman(torch.tensor(x, dtype=torch.float32), y.tolist()) == pytest.approx(
        scipy_stats.spearmanr(x.astype(np.float32), y).statistic, abs=1e-12)
    assert spearman(x, y) == pytest.approx(want, abs=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_spearman_bad_input():
    with pytest.raises(ValueError, match=r"^expected x and y of one length, got 3 and 2$"):
        spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match=r"^expected at least 2 pairs for Spearman's correlation, got 1$"):
        spearman([1], [2])
    with pytest.raises(ValueError, match=r"^expected x without NaN to rank, got 1 NaN of 2$"):
        spearman([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match=r"^expected x to be 1-D, got shape \(2, 2\)$"):
        rankdata(np.zeros((2, 2)))
    # scipy returns NaN for a constant side; a NaN in a table says nothing of why, so it is refused
    with pytest.raises(ValueError, match=r"^expected x to vary \(Spearman's correlation of a constant is undefined\), "
                                         r"got 3 equal values$"):
        spearman([1, 1, 1], [1, 2, 3])


def test_cosine_scores():
    a, b = torch.randn(20, 8), torch.randn(20, 8)
    want = torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)
    torch.testing.assert_close(cosine_scores(a, b), want)
    with pytest.raises(ValueError, match=r"^expected a and b of one shape, got \(20, 8\) and \(5, 8\)$"):
        cosine_scores(a, b[:5])


def test_spearman_eval_encodes_each_sentence_once():
    """A toy bag-of-letters encoder: the result equals scipy on the cosines computed directly."""

    def bag(texts):
        calls.append(list(texts))
        out = np.zeros((len(texts), 26))
        for i, t in enumerate(texts):
            for ch in t.lower():
                if ch.isalpha():
                    out[i, ord(ch) - 97] += 1
        return out

    s1 = ["a cat sat", "dogs bark", "a cat sat", "the sun", "rain falls"]
    s2 = ["the cat sat", "cats purr", "dogs bark", "sunlight", "snow falls"]
    gold = np.array([4.5, 1.0, 0.5, 3.0, 2.5])
    calls = []
    got = spearman_eval(bag, STSPairs("toy", "test", s1, s2, gold))
    assert len(calls) == 1 and sorted(calls[0]) == sorted(set(s1 + s2))
    e1, e2 = bag(s1), bag(s2)
    cos = (e1 * e2).sum(1) / np.linalg.norm(e1, axis=1) / np.linalg.norm(e2, axis=1)
    assert got == pytest.approx(scipy_stats.spearmanr(cos, gold).statistic, abs=1e-12)
    assert spearman_eval(bag, (s1, s2), gold) == pytest.approx(got, abs=1e-15)
    with pytest.raises(ValueError, match=r"^expected gold scores with pairs given as \(sentences1, sentences2\), got"):
        spearman_eval(bag, (s1, s2))
    with pytest.raises(ValueError, match=r"^expected as many second sentences as first ones \(5\), got 4$"):
        spearman_eval(bag, (s1, s2[:4]), gold)
    with pytest.raises(ValueError, match=r"^expected encode_fn to return one vector per sentence \(8\), got 1$"):
        spearman_eval(lambda t: np.zeros((1, 3)), (s1, s2), gold)
