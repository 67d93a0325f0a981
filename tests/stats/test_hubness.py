"""kexue.stats.hubness against scikit-learn's brute-force NearestNeighbors (self removed), scipy's skewness, and an
exact-arithmetic reference for data with ties and duplicate points."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import skew
from sklearn.neighbors import NearestNeighbors

from kexue.stats.hubness import hub_summary, hub_values, hubness_skew, knn_indices


def _sklearn_knn(x: np.ndarray, k: int, metric: str = "sqeuclidean") -> np.ndarray:
    """k+1 neighbours of each point with itself then removed (by index, wherever it sits in the list)."""
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute", metric=metric).fit(x)
    idx = nn.kneighbors(x, return_distance=False)
    return np.stack([row[row != i][:k] for i, row in enumerate(idx)])


@pytest.mark.parametrize("k", [1, 5, 10])
def test_neighbours_and_hub_values_equal_sklearn(k):
    x = torch.randn(600, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _sklearn_knn(x.numpy(), k)
    np.testing.assert_array_equal(knn_indices(x, k, chunk=128).numpy(), ref)
    h = hub_values(x, k, chunk=128)
    assert h.dtype == torch.long
    np.testing.assert_array_equal(h.numpy(), np.bincount(ref.ravel(), minlength=600))
    assert int(h.sum()) == 600 * k and h.double().mean().item() == k


def test_cosine_metric_equals_sklearn():
    x = torch.randn(400, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    np.testing.assert_array_equal(knn_indices(x, 5, "cosine", chunk=64).numpy(), _sklearn_knn(x.numpy(), 5, "cosine"))


def test_float32_input_gives_the_float64_neighbours_on_well_separated_data():
    x = torch.randn(500, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(hub_values(x.float(), 5), hub_values(x, 5))


@pytest.mark.parametrize("chunk", [1, 7, 100, 299, 300, 1000])
def test_chunked_queries_equal_one_block(chunk):
    # one (chunk × N) block at a time: any chunk smaller than N gives the result of a single N × N block
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(3))
    x[10] = x[20]  # a duplicate pair, so ties cross chunk boundaries too
    assert torch.equal(knn_indices(x, 5, chunk=chunk), knn_indices(x, 5, chunk=300))


def _exact_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Reference on integer data: exact int64 squared distances, self removed, ties to the lower index."""
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    out = []
    for i in range(len(x)):
        order = np.lexsort((np.arange(len(x)), d[i]))  # by distance, then by index
        out.append(order[order != i][:k])
    return np.stack(out)


def test_ties_and_duplicates_follow_the_documented_rule():
    # a small integer lattice with repeated points: many exact ties, exactly representable in float32
    g = np.random.default_rng(4)
    x = g.integers(0, 4, size=(200, 3)).astype(np.int64)
    x[50:60] = x[0]  # ten copies of point 0
    ref = _exact_knn(x, 6)
    got = knn_indices(torch.from_numpy(x).float(), 6, chunk=37).numpy()
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(hub_values(torch.from_numpy(x).double(), 6).numpy(),
                                  np.bincount(ref.ravel(), minlength=200))
    assert not (got == np.arange(200)[:, None]).any()  # never its own neighbour, duplicates or not


def test_duplicates_are_each_others_neighbours_and_the_lower_index_wins():
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    nn = knn_indices(x, 2)
    assert nn[0].tolist() == [2, 5] and nn[2].tolist() == [0, 5] and nn[5].tolist() == [0, 2]
    # point 3 sees 0, 2, 5 at distance 1: the two lowest indices
    assert nn[3].tolist() == [0, 2]


def test_skew_occupancy_against_scipy_and_the_definitions():
    x = torch.randn(1500, 64, generator=torch.Generator().manual_seed(5))
    h = hub_values(x, 5)
    s = hub_summary(h, 5)
    v = h.numpy()
    assert s.skew == pytest.approx(skew(v), rel=1e-12)
    assert s.max == v.max()
    hubs = v > 10
    assert s.hub_occupancy == pytest.approx(v[hubs].sum() / (1500 * 5))
    assert s.hub_fraction == pytest.approx(hubs.mean()) and s.antihub_fraction == pytest.approx((v == 0).mean())
    assert hubness_skew(x, 5) == s.skew
    assert hub_summary(h, 5, hub_size=3.0).hub_occupancy == pytest.approx(v[v > 15].sum() / (1500 * 5))


def test_hubness_grows_with_dimension():
    g = torch.Generator().manual_seed(6)
    low = hubness_skew(torch.randn(2000, 2, generator=g), 5)
    high = hubness_skew(torch.randn(2000, 100, generator=g), 5)
    assert high > low + 1.0


def test_constant_hub_values_have_zero_skew():
    # on a regular ring every point has the same two neighbours pattern: N_k = k for all
    t = torch.arange(12, dtype=torch.float64) * (2 * torch.pi / 12)
    ring = torch.stack([t.cos(), t.sin()], 1)
    h = hub_values(ring, 2)
    assert h.tolist() == [2] * 12
    assert hub_summary(h, 2).skew == 0.0


def test_no_block_larger_than_chunk_by_n_is_built(monkeypatch):
    # every distance block comes from one addmm; record their shapes: (chunk, N) at most, never N × N
    shapes = []
    real = torch.addmm

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "addmm", spy)
    x = torch.randn(1000, 4, generator=torch.Generator().manual_seed(7))
    hub_values(x, 5, chunk=128)
    assert shapes and max(shapes) == (128, 1000) and len(shapes) == 8  # 7 full blocks and one of 104 rows
    assert shapes[-1] == (1000 - 7 * 128, 1000)
