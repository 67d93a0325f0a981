"""kexue.generative.latents (kexue.fm/archives/9147): hub-filtered latents against brute-force k-NN counts from
scikit-learn, the mean-k identity, strict threshold, rounds and their bookkeeping, chunk invariance, repeatability,
"near the centre", and the truncation trick."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

from kexue.generative import HubFiltered, hub_filtered_latents, standard_normal, truncation


class Recorder:
    """A float64 N(0, I) sample_fn that keeps every pool it draws."""

    def __init__(self, dim: int) -> None:
        self.dim, self.pools = dim, []

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        self.pools.append(z)
        return z


def brute_counts(z: torch.Tensor, k: int) -> np.ndarray:
    """N_k by scikit-learn's exact search: kneighbors() without a query excludes each point itself."""
    idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(z.numpy()).kneighbors(return_distance=False)
    return np.bincount(idx.ravel(), minlength=len(z))


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_accepted_latents_and_their_counts_match_brute_force():
    rec, k, t = Recorder(32), 5, 12
    out = hub_filtered_latents(rec, 20, k=k, pool=800, threshold=t, chunk=128, generator=g(0))
    assert isinstance(out, HubFiltered) and out.rounds == 1 and len(rec.pools) == 1
    pool = rec.pools[0]
    counts = brute_counts(pool, k)
    assert counts.sum() == 800 * k and counts.mean() == k  # the identity mean(N_k) = k
    keep = counts > t
    assert out.accepted == int(keep.sum()) > 20
    torch.testing.assert_close(out.latents, pool[torch.from_numpy(keep)][:20], rtol=0, atol=0)
    np.testing.assert_array_equal(out.hub_values.numpy(), counts[keep][:20])
    assert out.acceptance_rate == out.accepted / 800 and out.drawn == 800


def test_threshold_is_strict():
    rec = Recorder(16)
    hub_filtered_latents(rec, 1, pool=500, threshold=0, generator=g(1))
    counts = brute_counts(rec.pools[0], 5)
    c = int(np.median(counts[counts > 5]))  # a count held by several points
    assert (counts == c).sum() > 1
    n_gt, n_ge = int((counts > c).sum()), int((counts >= c).sum())
    strict = hub_filtered_latents(Recorder(16), n_gt, pool=500, threshold=c, generator=g(1))
    # the prose's "at least c" is a threshold just below c
    at_least = hub_filtered_latents(Recorder(16), n_ge, pool=500, threshold=c - 0.5, generator=g(1))
    assert strict.rounds == at_least.rounds == 1 and strict.accepted == n_gt and at_least.accepted == n_ge > n_gt
    assert int(strict.hub_values.min()) > c and int(at_least.hub_values.min()) == c


def test_rounds_collect_from_successive_pools_in_order():
    rec, t = Recorder(24), 15
    out = hub_filtered_latents(rec, 40, pool=400, threshold=t, generator=g(2))
    assert out.rounds == len(rec.pools) > 1 and out.drawn == out.rounds * 400
    kept = [p[torch.from_numpy(brute_counts(p, 5) > t)] for p in rec.pools]
    assert out.accepted == sum(len(x) for x in kept) >= 40
    assert sum(len(x) for x in kept[:-1]) < 40  # it stopped at the first round that reached size
    torch.testing.assert_close(out.latents, torch.cat(kept)[:40], rtol=0, atol=0)
    assert out.latents.shape == (40, 24) and out.acceptance_rate == out.accepted / out.drawn


def test_chunk_invariance():
    runs = [hub_filtered_latents(Recorder(20), 30, pool=700, threshold=10, chunk=c, generator=g(3))
            for c in (1, 33, 700, 5000)]
    for r in runs[1:]:
        assert torch.equal(r.latents, runs[0].latents) and torch.equal(r.hub_values, runs[0].hub_values)
        assert (r.rounds, r.accepted) == (runs[0].rounds, runs[0].accepted)


def test_repeatable_with_a_generator_and_an_int_dim_is_standard_normal():
    a = hub_filtered_latents(16, 25, pool=1000, threshold=10, generator=g(4))
    b = hub_filtered_latents(standard_normal(16), 25, pool=1000, threshold=10, generator=g(4))
    c = hub_filtered_latents(16, 25, pool=1000, threshold=10, generator=g(5))
    assert torch.equal(a.latents, b.latents) and a.latents.dtype == torch.get_default_dtype()
    assert not torch.equal(a.latents, c.latents)


def test_accepted_latents_are_nearer_the_centre():
    rec = Recorder(64)
    out = hub_filtered_latents(rec, 20, pool=3000, threshold=25, generator=g(6))
    pool_norms, acc_norms = rec.pools[0].norm(dim=1), out.latents.norm(dim=1)
    se = (acc_norms.var() / len(acc_norms) + pool_norms.var() / len(pool_norms)).sqrt()
    assert pool_norms.mean() - acc_norms.mean() > 5 * se  # about 1.6 against a standard error near 0.1


def test_too_few_hubs_raises_naming_the_rate_and_the_fix():
    with pytest.raises(RuntimeError, match=r"expected 100 latents .* within max_rounds = 2 pools of 300, got \d+ "
                                           r"\(acceptance rate .*: lower threshold or raise max_rounds"):
        hub_filtered_latents(4, 100, pool=300, threshold=25, max_rounds=2, generator=g(7))


def test_sample_fn_changing_dimension_between_rounds_is_refused():
    dims = iter([8, 9])

    def changing(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, next(dims), generator=generator)

    with pytest.raises(ValueError, match=r"expected sample_fn\(pool, generator\) to return shape \(200, 8\), got "
                                         r"\(200, 9\)"):
        hub_filtered_latents(changing, 10_000, pool=200, threshold=100, generator=g(8))


def test_truncation():
    z = torch.randn(50, 6, generator=g(9))
    torch.testing.assert_close(truncation(z, 0.5), 0.5 * z)
    assert torch.equal(truncation(z, 1.0), z)
    m = torch.randn(6, generator=g(10))
    t = truncation(z, 0.7, mean=m)
    torch.testing.assert_close(t - m, 0.7 * (z - m))
    assert (t - m).norm(dim=1).mean() < (z - m).norm(dim=1).mean()
