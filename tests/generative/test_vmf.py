"""The von Mises–Fisher pieces of kexue.generative.univae (post 8404): the mean cosine A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ)
against scipy's scaled Bessel functions, and the sampler against it (Monte Carlo, within 4 standard errors), the
cosine's whole distribution (Kolmogorov–Smirnov against its CDF), the isotropy of the orthogonal part, unit norm,
repeatability and gradients (gradcheck: with a fixed generator seed the sample is a smooth function of μ)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.generative import MAX_KAPPA, VonMisesFisherSampler, vmf_mean_cosine

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit(n: int, d: int, seed: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=_gen(seed), dtype=dtype), dim=-1)


def test_mean_cosine_equals_the_bessel_ratio():
    ive = pytest.importorskip("scipy.special").ive
    worst = 0.0
    for d in (2, 3, 4, 16, 64, 768):
        for kappa in (1e-3, 0.5, 1.0, 16.0, 32.0, 300.0, 1e4):
            if d == 768 and kappa < 100:  # ive(384, κ) underflows to 0 in float64 there
                continue
            exact = ive(d / 2, kappa) / ive(d / 2 - 1, kappa)
            assert math.isfinite(exact) and exact > 0
            worst = max(worst, abs(vmf_mean_cosine(d, kappa) - exact) / exact)
    assert worst < 1e-12


def test_mean_cosine_limits():
    assert vmf_mean_cosine(16, 0.0) == 0.0  # uniform
    assert vmf_mean_cosine(3, 2.0) == pytest.approx(1 / math.tanh(2.0) - 1 / 2.0, rel=1e-14)  # Langevin function
    for d in (3, 16):  # A_d(κ) = 1 − (d − 1)/(2κ) + O(κ⁻²)
        assert vmf_mean_cosine(d, 1e6) == pytest.approx(1 - (d - 1) / 2e6, abs=1e-10)
    assert vmf_mean_cosine(16, 1e-4) == pytest.approx(1e-4 / 16, rel=1e-6)  # κ/d for small κ
    assert vmf_mean_cosine(768, MAX_KAPPA) == pytest.approx(1 - 767 / 2e12, abs=1e-15)


def test_largest_kappa_samples_next_to_mu():
    mu = _unit(1000, 16, 11)
    z = VonMisesFisherSampler(16, MAX_KAPPA)(mu, generator=_gen(12))
    one_minus_w = 1 - (mu * z).sum(-1)
    assert bool(torch.isfinite(z).all()) and float(one_minus_w.abs().max()) < 1e-9


@pytest.mark.parametrize("d,kappa", [(2, 1.0), (3, 5.0), (16, 32.0), (64, 10.0), (16, 0.0), (8, 500.0)])
def test_sample_mean_cosine_matches_a_d_kappa(d, kappa):
    n = 20_000
    mu = _unit(n, d, 1)
    z = VonMisesFisherSampler(d, kappa)(mu, generator=_gen(2))
    cos = (mu * z).sum(-1)
    se = float(cos.std()) / math.sqrt(n)
    assert abs(float(cos.mean()) - vmf_mean_cosine(d, kappa)) < 4 * se
    assert float((z.norm(dim=-1) - 1).abs().max()) < 1e-12


@pytest.mark.parametrize("d,kappa", [(3, 2.0), (16, 32.0), (5, 0.7)])
def test_cosine_follows_its_density(d, kappa):
    """KS distance of w = μᵀz to the CDF of p(w) ∝ exp(κw)(1 − w²)^{(d−3)/2} (closed form for d = 3, else a fine
    trapezoid rule), below the 0.1 % critical value 1.95/√n."""
    n = 20_000
    mu = _unit(n, d, 3)
    w = (mu * VonMisesFisherSampler(d, kappa)(mu, generator=_gen(4))).sum(-1).sort().values
    if d == 3:
        cdf = torch.expm1(kappa * (w + 1)) / math.expm1(2 * kappa)
    else:
        grid = torch.linspace(-1, 1, 400_001, dtype=F64)
        logp = kappa * grid + (d - 3) / 2 * torch.log1p(-grid.square()).nan_to_num(neginf=-1e300)
        p = (logp - logp.max()).exp()
        c = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum((p[1:] + p[:-1]) / 2, 0)])
        cdf_grid = c / c[-1]
        idx = torch.searchsorted(grid, w).clamp(1, grid.numel() - 1)
        t = (w - grid[idx - 1]) / (grid[idx] - grid[idx - 1])
        cdf = cdf_grid[idx - 1] + t * (cdf_grid[idx] - cdf_grid[idx - 1])
    emp_hi = torch.arange(1, n + 1, dtype=F64) / n
    ks = float(torch.maximum(emp_hi - cdf, cdf - (emp_hi - 1 / n)).max())
    assert ks < 1.95 / math.sqrt(n)


def test_orthogonal_part_is_isotropic():
    """For one μ, E[z] = A_d(κ)·μ and, for a unit e ⊥ μ, E[(eᵀz)²] = (1 − E[w²])/(d − 1): the direction orthogonal
    to μ is uniform, not tied to a basis."""
    d, kappa, n = 6, 4.0, 40_000
    mu = F.normalize(torch.arange(1.0, d + 1, dtype=F64), dim=0)
    z = VonMisesFisherSampler(d, kappa)(mu.expand(n, d).contiguous(), generator=_gen(5))
    mean, se = z.mean(0), z.std(0) / math.sqrt(n)
    assert bool(((mean - vmf_mean_cosine(d, kappa) * mu).abs() < 4 * se).all())
    w2 = ((z @ mu) ** 2).mean()
    e = F.normalize(torch.tensor([2.0, -1, 0, 0, 0, 0], dtype=F64), dim=0)
    assert abs(float(e @ mu)) < 1e-15
    proj2 = (z @ e) ** 2
    assert abs(float(proj2.mean() - (1 - w2) / (d - 1))) < 4 * float(proj2.std()) / math.sqrt(n)


def test_shapes_unit_norm_and_dtype():
    mu = F.normalize(torch.randn(4, 5, 16, generator=_gen(6)), dim=-1)
    z = VonMisesFisherSampler(16, 32.0)(mu, generator=_gen(7))
    assert z.shape == mu.shape and z.dtype == torch.float32
    assert float((z.norm(dim=-1) - 1).abs().max()) < 1e-6
    assert VonMisesFisherSampler(16, 32.0)(mu[:0]).shape == (0, 5, 16)


def test_seeds_repeat_and_differ():
    s, mu = VonMisesFisherSampler(16, 32.0), _unit(64, 16, 8)
    assert torch.equal(s(mu, _gen(1)), s(mu, _gen(1)))
    assert not torch.equal(s(mu, _gen(1)), s(mu, _gen(2)))


def test_gradient_flows_to_mu():
    # the draws (w, ε) do not depend on μ, so with a fixed seed the sample is a smooth function of μ
    s = VonMisesFisherSampler(5, 8.0)
    mu0 = _unit(3, 5, 9).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: s(F.normalize(m, dim=-1), _gen(10)), (mu0,))
    mu = _unit(3, 5, 9).requires_grad_(True)
    s(mu, _gen(10)).sum().backward()
    assert mu.grad is not None and bool(torch.isfinite(mu.grad).all()) and float(mu.grad.abs().sum()) > 0


def test_module_has_no_parameters_and_reports_its_mean():
    s = VonMisesFisherSampler(16, 32.0)
    assert list(s.parameters()) == [] and s.state_dict() == {}
    assert s.mean_cosine == vmf_mean_cosine(16, 32.0)
    assert "dim=16, kappa=32.0" in repr(s)
