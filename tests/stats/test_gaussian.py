"""kexue.stats.gaussian against references: torch.distributions.kl_divergence, POT's Bures–Wasserstein distance and
ot.emd2 on samples, scipy.linalg.sqrtm, Monte Carlo for KL and Bhattacharyya, the 1-D closed forms; gradients by
torch.autograd.gradcheck in float64 at Σ = I (repeated eigenvalues), generic and rank-deficient covariances."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.linalg
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from kexue.stats import (
    bhattacharyya_normal,
    frechet_distance,
    hellinger_normal,
    kl_diag,
    kl_normal,
    sqrtm_psd,
    w2_diag,
    w2_normal,
)

F64 = torch.float64


def _spd(n, rank=None, batch=(), seed=0, dtype=F64):
    """A random PSD matrix A Aᵀ/k with A of shape (n, k): positive definite for k = rank >= n (default n + 2),
    rank-deficient of rank k < n."""
    g = torch.Generator().manual_seed(seed)
    k = rank or n + 2
    a = torch.randn(*batch, n, k, generator=g, dtype=F64)
    return (a @ a.mT / k).to(dtype)


def _vec(n, batch=(), seed=1, dtype=F64):
    return torch.randn(*batch, n, generator=torch.Generator().manual_seed(seed), dtype=F64).to(dtype)


def _t(*a):
    return torch.tensor(a, dtype=F64)


def _sym(x):
    return 0.5 * (x + x.mT)


def _pot_w2sq(mp, sp, mq, sq):
    """POT's W₂² (it returns W₂); torch inputs use POT's torch backend, whose sqrtm clamps negative eigenvalues."""
    return float(ot.gaussian.bures_wasserstein_distance(mp, mq, sp, sq)) ** 2


# ---------------------------------------------------------------- KL


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-3)])
def test_kl_matches_torch_distributions_batched(dtype, tol):
    mp, sp = _vec(4, (3, 1), seed=1, dtype=dtype), _spd(4, batch=(3, 1), seed=2, dtype=dtype)
    mq, sq = _vec(4, (2,), seed=3, dtype=dtype), _spd(4, batch=(2,), seed=4, dtype=dtype)
    ours = kl_normal(mp, sp, mq, sq)
    ref = kl_divergence(MultivariateNormal(mp.double(), sp.double()), MultivariateNormal(mq.double(), sq.double()))
    assert ours.shape == (3, 2) and ours.dtype == dtype
    torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol)


def test_kl_to_standard_normal_default_and_closed_form():
    mp, sp = _vec(5), _spd(5)
    closed = 0.5 * (mp.square().sum() - torch.logdet(sp) + sp.trace() - 5)
    torch.testing.assert_close(kl_normal(mp, sp), closed, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kl_normal(mp, sp, torch.zeros(5, dtype=F64), torch.eye(5, dtype=F64)), closed)


def test_kl_and_bhattacharyya_against_monte_carlo():
    """KL = E_p[log p − log q], BD = −log E_p[√(q/p)], 2·10⁵ samples in n = 3; tolerance 4 standard errors (for BD
    the delta method: SE(log m̂) ≈ SE(m̂)/m̂)."""
    mp, sp, mq, sq = _vec(3, seed=5), _spd(3, seed=6), _vec(3, seed=7) * 0.5, _spd(3, seed=8)
    p, q = MultivariateNormal(mp, sp), MultivariateNormal(mq, sq)
    torch.manual_seed(0)
    x = p.sample((200_000,))
    log_ratio = p.log_prob(x) - q.log_prob(x)
    kl_mc, kl_se = log_ratio.mean(), log_ratio.std() / math.sqrt(len(x))
    assert abs(float(kl_normal(mp, sp, mq, sq) - kl_mc)) < 4 * float(kl_se)
    root = torch.exp(-0.5 * log_ratio)
    bd_mc, bd_se = -root.mean().log(), root.std() / math.sqrt(len(x)) / root.mean()
    assert abs(float(bhattacharyya_normal(mp, sp, mq, sq) - bd_mc)) < 4 * float(bd_se)


def test_kl_diag_equals_full_and_defaults():
    mp, mq = _vec(6, (2,), seed=1), _vec(6, (2,), seed=2)
    vp, vq = _vec(6, (2,), seed=3).exp(), _vec(6, (2,), seed=4).exp()
    torch.testing.assert_close(kl_diag(mp, vp, mq, vq), kl_normal(mp, torch.diag_embed(vp), mq, torch.diag_embed(vq)))
    torch.testing.assert_close(kl_diag(mp, vp), kl_normal(mp, torch.diag_embed(vp)))


# ---------------------------------------------------------------- Bhattacharyya and Hellinger


def test_bhattacharyya_one_dimensional_closed_form_and_symmetry():
    m1, m2, v1, v2 = 0.3, -1.1, 0.5, 2.0
    closed = 0.25 * (m1 - m2) ** 2 / (v1 + v2) + 0.5 * math.log((v1 + v2) / (2 * math.sqrt(v1 * v2)))
    bd = bhattacharyya_normal(_t(m1), _t([v1]), _t(m2), _t([v2]))
    assert abs(float(bd) - closed) < 1e-14
    mp, sp, mq, sq = _vec(4, seed=1), _spd(4, seed=2), _vec(4, seed=3), _spd(4, seed=4)
    torch.testing.assert_close(bhattacharyya_normal(mp, sp, mq, sq), bhattacharyya_normal(mq, sq, mp, sp))
    torch.testing.assert_close(hellinger_normal(mp, sp, mq, sq), 1 - torch.exp(-bhattacharyya_normal(mp, sp, mq, sq)))
    assert float(hellinger_normal(mp, sp, mp, sp)) == pytest.approx(0.0, abs=1e-14)


def test_hellinger_against_numerical_integral_1d():
    """H² = 1 − ∫√(pq) dx by the trapezoid rule on a fine grid."""
    x = np.linspace(-30, 30, 200_001)

    def pdf(m, v):
        return np.exp(-0.5 * (x - m) ** 2 / v) / np.sqrt(2 * np.pi * v)

    ref = 1 - np.trapezoid(np.sqrt(pdf(1.0, 0.7) * pdf(-0.5, 3.0)), x)
    h2 = hellinger_normal(torch.tensor([1.0], dtype=F64), torch.tensor([[0.7]], dtype=F64),
                          torch.tensor([-0.5], dtype=F64), torch.tensor([[3.0]], dtype=F64))
    assert abs(float(h2) - ref) < 1e-10


# ---------------------------------------------------------------- W2


def test_w2_forms_equal_and_match_pot_and_scipy():
    mp, sp, mq, sq = _vec(6, seed=1), _spd(6, seed=2), _vec(6, seed=3), _spd(6, seed=4)
    sym_, fre = w2_normal(mp, sp, mq, sq), w2_normal(mp, sp, mq, sq, form="frechet")
    pot = _pot_w2sq(mp.numpy(), sp.numpy(), mq.numpy(), sq.numpy())
    root = scipy.linalg.sqrtm(sp.numpy() @ sq.numpy()).real  # FID's recipe
    fid = float((mp - mq).square().sum()) + np.trace(sp.numpy() + sq.numpy() - 2 * root)
    for ref in (pot, fid, float(fre)):
        assert float(sym_) == pytest.approx(ref, rel=1e-10)
    torch.testing.assert_close(w2_normal(mq, sq, mp, sp), sym_)  # symmetric


@pytest.mark.parametrize("dtype,tol", [(F64, 1e-10), (torch.float32, 1e-4)])
def test_w2_batched_broadcast_against_pot(dtype, tol):
    mp, sp = _vec(3, (4,), seed=1, dtype=dtype), _spd(3, batch=(4,), seed=2, dtype=dtype)
    mq, sq = _vec(3, seed=3, dtype=dtype), _spd(3, seed=4, dtype=dtype)
    out = w2_normal(mp, sp, mq, sq)
    assert out.shape == (4,) and out.dtype == dtype
    for i in range(4):
        ref = _pot_w2sq(mp[i].double().numpy(), sp[i].double().numpy(), mq.double().numpy(), sq.double().numpy())
        assert float(out[i]) == pytest.approx(ref, rel=tol)


def test_w2_one_dimensional_and_diagonal_identities():
    m1, m2, s1, s2 = 0.4, 2.0, 0.3, 1.7
    for form in ("sym", "frechet", "commuting"):
        w = w2_normal(_t(m1), _t([s1**2]), _t(m2), _t([s2**2]), form=form)
        assert float(w) == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12)
    mp, mq, vp, vq = _vec(5, seed=1), _vec(5, seed=2), _vec(5, seed=3).exp(), _vec(5, seed=4).exp()
    full = w2_normal(mp, torch.diag_embed(vp), mq, torch.diag_embed(vq))
    torch.testing.assert_close(w2_diag(mp, vp, mq, vq), full)
    torch.testing.assert_close(w2_diag(mp, vp), w2_normal(mp, torch.diag_embed(vp)))


def test_w2_commuting_case_and_standard_normal():
    """Σ_p, Σ_q with one eigenbasis: ‖Δμ‖² + ‖Σ_p^½ − Σ_q^½‖_F² equals the general forms; q = N(0, I) default."""
    u, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(0), dtype=F64))
    sp, sq = u @ torch.diag(_vec(5, seed=1).exp()) @ u.T, u @ torch.diag(_vec(5, seed=2).exp()) @ u.T
    mp, mq = _vec(5, seed=3), _vec(5, seed=4)
    com = w2_normal(mp, sp, mq, sq, form="commuting")
    torch.testing.assert_close(com, w2_normal(mp, sp, mq, sq), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(com, w2_normal(mp, sp, mq, sq, form="frechet"), rtol=1e-10, atol=1e-10)
    sp = _sym(sp)
    closed = mp.square().sum() + (sqrtm_psd(sp) - torch.eye(5, dtype=F64)).square().sum()
    torch.testing.assert_close(w2_normal(mp, sp), closed, rtol=1e-10, atol=1e-10)


def test_rank_deficient_stays_real_and_matches_pot_where_scipy_is_complex():
    """Fewer samples than dims (N = 8, 12 < d = 16): scipy.linalg.sqrtm of the non-symmetric product has complex
    parts (the FID projects' failure); ours is real and equals POT's (torch backend: its sqrtm clamps eigenvalues;
    its numpy backend takes √ of the tiny negative ones and fails)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 16)), rng.normal(size=(12, 16)) * 1.5 + 0.3
    cx, cy = np.cov(x.T), np.cov(y.T)
    assert np.iscomplexobj(scipy.linalg.sqrtm(cx @ cy)), "the reference case: scipy's sqrtm returns complex parts"
    ours = frechet_distance(torch.from_numpy(x), torch.from_numpy(y))
    assert ours.dtype == F64 and torch.isfinite(ours)
    mx, my = torch.from_numpy(x.mean(0)), torch.from_numpy(y.mean(0))
    pot = _pot_w2sq(mx, torch.from_numpy(cx), my, torch.from_numpy(cy))
    # POT keeps √ of the round-off eigenvalues (~1e-16 → ~1e-8 each, nine of them here), which ours zeroes
    assert float(ours) == pytest.approx(pot, rel=1e-7)
    fre = w2_normal(mx, torch.from_numpy(cx), my, torch.from_numpy(cy), form="frechet")
    assert float(fre) == pytest.approx(pot, rel=1e-6)  # √ of round-off eigenvalues: ~1e-8 absolute per one


def test_frechet_distance_against_emd_on_samples_1d():
    """W₂² between the empirical distributions (ot.emd2, squared cost) converges to the Gaussians' slowly: with
    1,000 samples per side its excess over the Gaussian-fit value measured 0.005 ± 0.002 (10 seeds); tolerance 0.03
    against W₂² = 1 + 1 = 2."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1000, 1)), 2 * rng.normal(size=(1000, 1)) + 1
    w = np.full(1000, 1e-3)
    emd = ot.emd2(w, w, ot.dist(x, y))
    fd = float(frechet_distance(torch.from_numpy(x), torch.from_numpy(y)))
    assert abs(emd - fd) < 0.03


def test_frechet_distance_moments_and_batching():
    x, y = torch.randn(2, 30, 4, dtype=torch.float32), torch.randn(30, 4, dtype=torch.float32) + 1
    out = frechet_distance(x, y)
    assert out.shape == (2,) and out.dtype == torch.float32
    for i in range(2):
        cx, cy = np.cov(x[i].double().numpy().T), np.cov(y.double().numpy().T)
        ref = _pot_w2sq(x[i].double().mean(0).numpy(), cx, y.double().mean(0).numpy(), cy)
        assert float(out[i]) == pytest.approx(ref, rel=1e-4)


# ---------------------------------------------------------------- square root and gradients


def test_sqrtm_psd_against_scipy_batched_and_clamped():
    s = _spd(5, batch=(3,))
    r = sqrtm_psd(s)
    for i in range(3):
        np.testing.assert_allclose(r[i].numpy(), scipy.linalg.sqrtm(s[i].numpy()).real, rtol=1e-9, atol=1e-12)
    low = _spd(6, rank=2)
    torch.testing.assert_close(sqrtm_psd(low) @ sqrtm_psd(low), low, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(sqrtm_psd(low)).all()


def _gc(fn, *inputs):
    """gradcheck in float64 of fn over symmetric inputs (the parametrization (X + Xᵀ)/2 keeps them symmetric)."""
    args = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    return torch.autograd.gradcheck(lambda *a: fn(*(_sym(t) for t in a)), args)


EYE = torch.eye(4, dtype=F64)


@pytest.mark.parametrize("form", ["sym", "frechet"])
@pytest.mark.parametrize("case", ["identity", "identity_vs_scaled", "generic"])
def test_w2_gradcheck(form, case):
    """Σ = I has one eigenvalue four times: eigh's own backward divides by zero there; ours is finite and right."""
    sp, sq = {"identity": (EYE, EYE), "identity_vs_scaled": (EYE, 2 * EYE), "generic": (_spd(4), _spd(4, seed=3))}[case]
    mp, mq = _vec(4, seed=1), _vec(4, seed=2)
    assert _gc(lambda a, b: w2_normal(mp, a, mq, b, form=form), sp, sq)


def test_w2_gradcheck_rank_deficient_where_the_gradient_exists():
    """W₂² is differentiable in Σ_p where Σ_p is positive definite, whatever Σ_q's rank (the zero eigenvalues of
    Σ_p^½Σ_qΣ_p^½ stay zero), and symmetrically; and in both, along their common range, where they share one (a
    free perturbation of a singular matrix leaves the PSD cone, so it is Σ = U A Uᵀ with U 4×2, A 2×2 free)."""
    mp, mq, full, low = _vec(4, seed=1), _vec(4, seed=2), _spd(4), _spd(4, rank=2, seed=5)
    assert _gc(lambda a: w2_normal(mp, a, mq, low), full)
    assert _gc(lambda b: w2_normal(mp, low, mq, b), full)
    u = torch.linalg.qr(torch.randn(4, 2, generator=torch.Generator().manual_seed(7), dtype=F64))[0]
    ap, aq = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=F64), torch.tensor([[0.5, 0.0], [0.0, 3.0]], dtype=F64)
    for form in ("sym", "frechet"):

        def f(a, b, form=form):
            return w2_normal(mp, u @ a @ u.T, mq, u @ b @ u.T, form=form)

        assert _gc(f, ap, aq)
        assert _gc(f, torch.eye(2, dtype=F64), torch.eye(2, dtype=F64))


def test_w2_gradient_in_sigma_q_is_the_closed_form():
    """∂W₂²/∂Σ_q = I − Σ_p^½ S^(−½) Σ_p^½, S = Σ_p^½ Σ_q Σ_p^½ (kexue.fm/archives/11738), with scipy's sqrtm."""
    sp, sq = _spd(4), _spd(4, seed=3)
    b = sq.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(w2_normal(_vec(4), sp, _vec(4, seed=2), b), b)
    ph = scipy.linalg.sqrtm(sp.numpy()).real
    s_inv_half = np.linalg.inv(scipy.linalg.sqrtm(ph @ sq.numpy() @ ph).real)
    np.testing.assert_allclose(g.numpy(), np.eye(4) - ph @ s_inv_half @ ph, rtol=1e-8, atol=1e-10)


def test_other_gradchecks_at_identity_and_generic():
    mp, mq = _vec(4, seed=1), _vec(4, seed=2)
    for sp, sq in ((EYE, EYE), (_spd(4), 3 * EYE)):
        assert _gc(sqrtm_psd, sp)
        assert _gc(lambda a, b: kl_normal(mp, a, mq, b), sp, sq)
        assert _gc(lambda a, b: bhattacharyya_normal(mp, a, mq, b), sp, sq)
        assert _gc(lambda a, b: hellinger_normal(mp, a, mq, b), sp, sq)
    vp, vq = _vec(4, seed=3).exp().requires_grad_(True), _vec(4, seed=4).exp().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: kl_diag(mp, a, mq, b) + w2_diag(mp, a, mq, b), (vp, vq))


@pytest.mark.parametrize("lp,lq", [(torch.zeros(4), torch.zeros(4)), (torch.zeros(4), torch.full((4,), 0.7)),
                                   (torch.tensor([0.1, -1.0, 0.5, 2.0]), torch.tensor([1.0, 0.0, 0.0, -0.3]))])
def test_commuting_form_gradcheck(lp, lq):
    """The commuting form along commuting covariances (one eigenbasis U, eigenvalues e^l free): at l = 0 both are I,
    one eigenvalue four times."""
    u = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=F64))[0]
    mp, mq = _vec(4, seed=1), _vec(4, seed=2)

    def cov(log_eig):
        return _sym(u @ torch.diag_embed(log_eig.exp()) @ u.T)

    args = (lp.double().requires_grad_(True), lq.double().requires_grad_(True))
    assert torch.autograd.gradcheck(lambda a, b: w2_normal(mp, cov(a), mq, cov(b), form="commuting"), args)


def test_float32_gradient_finite_at_identity():
    a = torch.eye(8).requires_grad_(True)
    w2_normal(torch.zeros(8), a, torch.ones(8), torch.eye(8)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, torch.zeros(8, 8))  # W₂² = ‖Δμ‖² + Tr(Σ_p^½ − I)² has zero gradient at I


def test_float32_w2_of_close_ill_conditioned_gaussians():
    """Σ_p of condition number 10³ in 50 dims, Σ_q = Σ_p^½ C Σ_p^½ with C near I: W₂² ≈ 0.1 against traces ≈ 14.
    float32 against float64 (itself equal to POT's to 1e-10): the SVD of Σ_q^½Σ_p^½ keeps the relative error at
    5e-6 here (measured); √ of the eigenvalues of the symmetric product by ``eigh`` lost 9e-4, the Fréchet form
    15 %."""
    g = torch.Generator().manual_seed(10)
    n = 50
    u = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))[0]
    half = u @ torch.diag(torch.logspace(0, -3, n, dtype=F64).sqrt()) @ u.T
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))[0]
    c = v @ torch.diag(torch.exp(2.0 * torch.randn(n, generator=g, dtype=F64) / math.sqrt(n))) @ v.T
    sp, sq = _sym(half @ half), _sym(half @ c @ half)
    mp = torch.zeros(n, dtype=F64)
    mq = half @ (0.5 * torch.randn(n, generator=g, dtype=F64) / math.sqrt(n))
    ref = w2_normal(mp, sp, mq, sq)
    assert float(ref) == pytest.approx(_pot_w2sq(mp.numpy(), sp.numpy(), mq.numpy(), sq.numpy()), rel=1e-10)
    f32 = w2_normal(mp.float(), sp.float(), mq.float(), sq.float())
    assert abs(float(f32) - float(ref)) / float(ref) < 1e-4
