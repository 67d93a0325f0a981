"""kexue.stats.jl against scikit-learn's bound, the exact χ² tail (scipy) and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2
from sklearn.random_projection import johnson_lindenstrauss_min_dim

from kexue.stats.jl import (
    gaussian_projection,
    jl_min_dim,
    orthogonality_tail_bound,
    pairwise_distortion,
    sklearn_min_dim,
    unit_norm_tail_bound,
    unit_norm_tail_exact,
)


def test_the_additions_example_n1797_eps01():
    assert sklearn_min_dim(1797, 0.1) == 6424
    assert jl_min_dim(1797, 0.1, constant=16) == 11991
    assert jl_min_dim(1797, 0.1) == 17986


@pytest.mark.parametrize("n_points", [2, 10, 1797, 10**5, 5 * 10**6])
@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3, 0.5, 0.9])
def test_sklearn_bound_is_sklearns_plus_one_and_ours_is_strictly_above(n_points, eps):
    ref = int(johnson_lindenstrauss_min_dim(n_points, eps=eps))  # sklearn truncates the bound
    bound = 4 * math.log(n_points) / (eps**2 / 2 - eps**3 / 3)
    assert sklearn_min_dim(n_points, eps) == (ref if bound == ref else ref + 1)
    for c in (16, 24):
        n = jl_min_dim(n_points, eps, constant=c)
        assert n > c * math.log(n_points) / eps**2 >= n - 1


def test_post_constant_over_sklearns_ratio():
    # the Additions: about 2.8x at eps = 0.1 and 2x at eps = 0.5
    assert jl_min_dim(10**6, 0.1) / sklearn_min_dim(10**6, 0.1) == pytest.approx(2.8, abs=0.05)
    assert jl_min_dim(10**6, 0.5) / sklearn_min_dim(10**6, 0.5) == pytest.approx(2.0, abs=0.02)
    assert jl_min_dim(1, 0.5) == 1


def test_gaussian_projection_std_is_one_over_sqrt_target_dim():
    g = torch.Generator().manual_seed(0)
    a = gaussian_projection(400, 100, g, dtype=torch.float64)
    assert a.shape == (100, 400) and a.dtype == torch.float64
    assert a.std().item() == pytest.approx(0.1, rel=0.01)  # 40,000 draws: s.e. of the s.d. 0.35 %
    assert abs(a.mean().item()) < 4 * 0.1 / 200
    b = gaussian_projection(400, 100, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(a, b)


def test_pairwise_distortion_against_direct_differences():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(30, 200, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, 200, dtype=torch.float64)
    a = gaussian_projection(200, 50, g, dtype=torch.float64)
    out = pairwise_distortion(v, a)
    i, j = torch.triu_indices(30, 30, 1)
    diff = v[i] - v[j]
    direct = ((diff @ a.T) ** 2).sum(1) / (diff**2).sum(1)
    np.testing.assert_allclose(out.ratio.numpy(), direct.numpy(), rtol=1e-10, atol=0)
    assert out.min_ratio == out.ratio.min().item() == pytest.approx(direct.min().item(), rel=1e-10)
    assert out.max_ratio == out.ratio.max().item() == pytest.approx(direct.max().item(), rel=1e-10)
    assert out.max_distortion == pytest.approx(max(1 - direct.min().item(), direct.max().item() - 1))
    # the identity map and an orthogonal map preserve every distance
    q, _ = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=torch.float64))
    assert pairwise_distortion(v, q).max_distortion < 1e-10


@pytest.mark.parametrize("n", [1, 5, 50, 200, 1000])
@pytest.mark.parametrize("eps", [0.05, 0.2, 0.5, 0.9])
def test_exact_tail_equals_scipy_chi2_and_the_bounds_dominate_it(n, eps):
    exact = chi2.sf(n * (1 + eps), n) + chi2.cdf(n * (1 - eps), n)
    assert unit_norm_tail_exact(n, eps) == pytest.approx(exact, rel=1e-9, abs=1e-300)
    assert unit_norm_tail_bound(n, eps) == 2 * math.exp(-(eps**2) * n / 8)
    assert unit_norm_tail_bound(n, eps) >= exact
    assert orthogonality_tail_bound(n, eps) == 2 * unit_norm_tail_bound(n, eps)


def _mc_se(p: float, draws: int) -> float:
    return math.sqrt(max(p * (1 - p), 1 / draws) / draws)


@pytest.mark.parametrize("n,eps", [(50, 0.3), (200, 0.2)])
def test_monte_carlo_tails_lie_under_the_bounds(n, eps):
    draws = 20000
    g = torch.Generator().manual_seed(2)
    u = torch.randn(draws, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    v = torch.randn(draws, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    p_norm = ((u.pow(2).sum(1) - 1).abs() >= eps).double().mean().item()
    exact = unit_norm_tail_exact(n, eps)
    assert abs(p_norm - exact) < 4 * _mc_se(exact, draws)
    assert p_norm <= unit_norm_tail_bound(n, eps) + 4 * _mc_se(p_norm, draws)
    p_dot = ((u * v).sum(1).abs() >= eps).double().mean().item()
    assert p_dot <= orthogonality_tail_bound(n, eps) + 4 * _mc_se(p_dot, draws)


def test_projection_to_the_post_bound_keeps_every_pair():
    # N = 60 points in 3,000 dims, eps = 0.5: n0 = 394; failure probability <= N(N-1)e^{-eps^2 n0/8} < 1e-2
    g = torch.Generator().manual_seed(3)
    v = torch.randn(60, 3000, generator=g, dtype=torch.float64)
    n0 = jl_min_dim(60, 0.5)
    assert n0 < 3000
    out = pairwise_distortion(v, gaussian_projection(3000, n0, g, dtype=torch.float64))
    assert out.max_distortion < 0.5
    assert np.isfinite(out.ratio.numpy()).all()
