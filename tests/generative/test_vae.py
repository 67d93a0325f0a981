"""kexue.generative.vae on probabilistic PCA, where everything is known in closed form: x = Wz + μ + σε with
z ~ N(0, I) has log p(x) = log N(x; μ, WWᵀ + σ²I) (torch's MultivariateNormal is the reference), the posterior is
Gaussian, the ELBO of a Gaussian proposal is log p(x) − KL(q ‖ posterior) (torch's kl_divergence), and the relative
variance of the importance weights is E_q[(p(z|x)/q(z|x))²] − 1, a Rényi-2 divergence in closed form. Plus the
Bernoulli and Gaussian likelihoods against torch.distributions, chunking, repeatability, gradients and state_dict.

Monte Carlo claims are checked in expectation with tolerances from the measured standard error (4 standard errors),
with seeded generators so each run draws the same numbers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, MultivariateNormal, Normal, kl_divergence

from kexue.generative import LIKELIHOODS, VAE, ImportanceWeights, LogLikelihood, Proposal, vae_decoder, vae_encoder

D_X, D_Z, SIGMA = 8, 2, 0.5
F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class PPCA:
    """A PPCA model with W of orthogonal columns (the rotation W₀V of a random W₀: the prior N(0, I) is rotation
    invariant, so the marginal is unchanged and every PPCA is one of these), where the exact posterior is a
    diagonal Gaussian: q*(z|x) = N(A(x − μ), σ²M⁻¹), M = WᵀW + σ²I diagonal, A = M⁻¹Wᵀ."""

    def __init__(self, seed: int = 0) -> None:
        g = _gen(seed)
        self.w0 = torch.randn(D_X, D_Z, generator=g, dtype=F64)
        self.mu = torch.randn(D_X, generator=g, dtype=F64)
        u, s, _ = torch.linalg.svd(self.w0, full_matrices=False)
        self.w = u * s
        self.m_diag = s**2 + SIGMA**2
        self.a = self.w.T / self.m_diag[:, None]
        self.post_log_std = 0.5 * torch.log(SIGMA**2 / self.m_diag)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        g = _gen(seed)
        z = torch.randn(n, D_Z, generator=g, dtype=F64)
        return z @ self.w.T + self.mu + SIGMA * torch.randn(n, D_X, generator=g, dtype=F64)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.w0 @ self.w0.T + SIGMA**2 * torch.eye(D_X, dtype=F64)
        return MultivariateNormal(self.mu, cov).log_prob(x)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of the exact posterior, each (batch, D_Z)."""
        return (x - self.mu) @ self.a.T, self.post_log_std.exp().expand(x.shape[0], D_Z)

    def encoder(self, scale: float = 1.0, shift: float = 0.0, std_factor: float = 1.0) -> nn.Linear:
        """A linear encoder whose proposal is N(scale·A(x − μ) + shift, (std_factor·posterior std)²); the exact
        posterior with the defaults."""
        enc = nn.Linear(D_X, 2 * D_Z).double()
        with torch.no_grad():
            enc.weight.zero_()
            enc.weight[:D_Z] = scale * self.a
            enc.bias[:D_Z] = -scale * self.a @ self.mu + shift
            enc.bias[D_Z:] = self.post_log_std + math.log(std_factor)
        return enc

    def vae(self, encoder: nn.Module, learn_sigma: bool = False) -> VAE:
        dec = nn.Linear(D_Z, D_X).double()
        with torch.no_grad():
            dec.weight.copy_(self.w)
            dec.bias.copy_(self.mu)
        vae = VAE(encoder, dec, likelihood="gaussian", sigma=SIGMA, learn_sigma=learn_sigma).double()
        with torch.no_grad():  # σ was stored in float32 (the default dtype) before .double(): restore its last digits
            assert vae.log_sigma is not None
            vae.log_sigma.fill_(math.log(SIGMA))
        return vae


WRONG = {"scale": 0.95, "shift": 0.1, "std_factor": 1.3}  # a deliberately wrong proposal, over-dispersed (V ≈ 1)


@pytest.fixture(scope="module")
def ppca() -> PPCA:
    return PPCA()


def _relative_weight_variance(ppca: PPCA, x: torch.Tensor) -> torch.Tensor:
    """E_q[(p(z|x)/q(z|x))²] − 1 per row, for the WRONG proposal q, from the closed-form Rényi-2 divergence of two
    univariate Gaussians (the posterior p = N(a, s²), q = N(b, t²)): ∫p²/q = t²/(s√(2t² − s²))·exp((a − b)²/(2t² − s²)),
    a product over the (independent) latent dimensions."""
    a, s = ppca.posterior(x)
    b = WRONG["scale"] * a + WRONG["shift"]
    t = WRONG["std_factor"] * s
    v = 2 * t**2 - s**2
    return (t**2 / (s * v.sqrt()) * torch.exp((a - b) ** 2 / v)).prod(-1) - 1


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


# -- PPCA: exactness --------------------------------------------------------------------------------------------


def test_the_rotated_ppca_has_the_marginal_of_the_original(ppca):
    x = ppca.sample(50, seed=1)
    cov_rot = ppca.w @ ppca.w.T + SIGMA**2 * torch.eye(D_X, dtype=F64)
    torch.testing.assert_close(MultivariateNormal(ppca.mu, cov_rot).log_prob(x), ppca.log_px(x), rtol=0, atol=1e-12)
    wtw = ppca.w.T @ ppca.w
    assert float((wtw - torch.diag(torch.diagonal(wtw))).abs().max()) < 1e-12


def test_the_exact_posterior_gives_the_exact_log_likelihood_with_one_sample(ppca):
    x = ppca.sample(200, seed=2)
    vae = ppca.vae(ppca.encoder())
    truth = ppca.log_px(x)
    est = vae.log_likelihood(x, n_samples=1, generator=_gen(3))
    assert isinstance(est, LogLikelihood)
    torch.testing.assert_close(est.log_px, truth, rtol=0, atol=1e-10)
    iw = vae.log_importance_weights(x, n_samples=7, generator=_gen(4))
    assert iw.log_w.shape == (7, 200)
    torch.testing.assert_close(iw.log_w, truth.expand(7, -1), rtol=0, atol=1e-10)  # every weight is p(x)
    many = vae.log_likelihood(x, n_samples=50, chunk=16, generator=_gen(5))
    torch.testing.assert_close(many.ess, torch.full_like(truth, 50.0), rtol=1e-9, atol=0)
    assert float(many.stderr.max()) < 1e-6
    torch.testing.assert_close(vae.elbo(x, 3, _gen(6)), truth, rtol=0, atol=1e-10)
    torch.testing.assert_close(vae.iwae_bound(x, 3, _gen(6)), truth, rtol=0, atol=1e-10)


def test_the_elbo_is_log_px_minus_kl_to_the_posterior(ppca):
    """The reparameterised ELBO estimate against log p(x) − KL(q ‖ posterior) from torch's kl_divergence, per row,
    within 4 standard errors of the mean of log w."""
    x = ppca.sample(20, seed=7)
    vae = ppca.vae(ppca.encoder(**WRONG))
    with torch.no_grad():
        q = vae.encode(x)
    post_mean, post_std = ppca.posterior(x)
    kl = kl_divergence(MultivariateNormal(q.mean, torch.diag_embed(q.log_std.exp() ** 2)),
                       MultivariateNormal(post_mean, torch.diag_embed(post_std**2)))
    exact = ppca.log_px(x) - kl
    with torch.no_grad():
        log_w = vae.log_importance_weights(x, n_samples=4000, generator=_gen(8)).log_w
    se = log_w.std(0) / math.sqrt(log_w.shape[0])
    assert bool(((log_w.mean(0) - exact).abs() <= 4 * se).all()), ((log_w.mean(0) - exact) / se).tolist()
    assert bool((kl > 5 * se).all())  # the proposal is wrong enough for the KL to show


def test_iwae_is_a_lower_bound_that_rises_with_k_and_converges_at_the_delta_method_rate(ppca):
    """With the wrong proposal: E[IWAE_K] ≤ log p(x) for each K, it rises with K (each step no lower than 4 paired
    standard errors, the whole range clearly higher); the gap log p − E[IWAE_K] is KL(q ‖ posterior) at K = 1 and
    matches the first-order (delta-method) bias V/(2K) for K ≥ 16, V the relative variance of the weights in closed
    form (Rényi-2; the next term, O(1/K²), is below the standard error there). The same seed for every K gives
    nested draws (noise comes in fixed blocks), so differences between K are paired."""
    x = ppca.sample(8000, seed=9)
    vae = ppca.vae(ppca.encoder(**WRONG))
    truth = ppca.log_px(x)
    v = _relative_weight_variance(ppca, x)
    ks = (1, 4, 16, 64)
    with torch.no_grad():
        gaps = {k: truth - vae.iwae_bound(x, k, _gen(10)) for k in ks}
        q = vae.encode(x)
    post_mean, post_std = ppca.posterior(x)
    kl = kl_divergence(Normal(q.mean, q.log_std.exp()), Normal(post_mean, post_std)).sum(-1)
    for k in ks:
        m, se = _mean_se(gaps[k])
        assert m > -4 * se, (k, m, se)  # a lower bound in expectation
        if k == 1:
            assert abs(m - float(kl.mean())) <= 4 * se, (m, float(kl.mean()), se)
        elif k >= 16:
            pred = float(v.mean()) / (2 * k)
            assert abs(m - pred) <= 4 * se, (k, m, pred, se)
    for k1, k2 in zip(ks, ks[1:]):
        m, se = _mean_se(gaps[k1] - gaps[k2])
        assert m > -4 * se, (k1, k2, m, se)  # never significantly lower with more samples
    m, se = _mean_se(gaps[1] - gaps[ks[-1]])
    assert m > 4 * se, (m, se)


def test_elbo_is_at_most_iwae_on_the_same_draws(ppca):
    x = ppca.sample(300, seed=11)
    vae = ppca.vae(ppca.encoder(**WRONG))
    with torch.no_grad():
        for k in (1, 5, 40):
            elbo, iwae = vae.elbo(x, k, _gen(12)), vae.iwae_bound(x, k, _gen(12))
            assert bool((elbo <= iwae + 1e-12).all())
            if k == 1:
                torch.testing.assert_close(elbo, iwae, rtol=0, atol=1e-12)


def test_many_samples_reach_the_truth_within_the_reported_standard_error(ppca):
    """The chunked estimator with the wrong proposal (K = 5000) and with the prior as the proposal (the brute-force
    estimate, K = 20000, feasible in 2 dimensions) against MultivariateNormal.log_prob, per row within 5 of the
    estimator's own standard errors; the standard errors are calibrated (z-scores with std near 1)."""
    x = ppca.sample(200, seed=13)
    truth = ppca.log_px(x)
    est = ppca.vae(ppca.encoder(**WRONG)).log_likelihood(x, n_samples=5000, chunk=500, generator=_gen(14))
    z = (est.log_px - truth) / est.stderr
    assert float(z.abs().max()) < 5, z.abs().max()
    assert 0.75 < float(z.std()) < 1.25  # the std of 200 z-scores has a standard error of about 0.05
    assert float(est.ess.min()) > 100
    prior = nn.Linear(D_X, 2 * D_Z).double()
    nn.init.zeros_(prior.weight)
    nn.init.zeros_(prior.bias)
    brute = ppca.vae(prior).log_likelihood(x[:20], n_samples=20_000, chunk=2000, generator=_gen(15))
    assert float(((brute.log_px - truth[:20]) / brute.stderr).abs().max()) < 5


# -- chunking, repeatability ------------------------------------------------------------------------------------


def test_chunking_and_the_generator_give_one_value(ppca):
    x = ppca.sample(30, seed=16)
    vae = ppca.vae(ppca.encoder(**WRONG))
    ref = vae.log_likelihood(x, n_samples=300, chunk=300, generator=_gen(17))
    for chunk in (1, 7, 32, 64, 299, 1000):
        out = vae.log_likelihood(x, n_samples=300, chunk=chunk, generator=_gen(17))
        for a, b in zip(out, ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        log_w = vae.log_importance_weights(x, 300, _gen(17)).log_w
    torch.testing.assert_close(ref.log_px, torch.logsumexp(log_w, 0) - math.log(300), rtol=0, atol=1e-12)
    other = vae.log_likelihood(x, n_samples=300, generator=_gen(18))
    assert not torch.equal(other.log_px, ref.log_px)


def test_a_batch_row_gets_the_estimate_of_its_own(ppca):
    """Rows do not mix: with the exact posterior each row of a batch is its own log p(x), and a row estimated
    alone equals MultivariateNormal's value as well."""
    x = ppca.sample(5, seed=19)
    vae = ppca.vae(ppca.encoder())
    whole = vae.log_likelihood(x, n_samples=10).log_px
    for i in range(5):
        torch.testing.assert_close(vae.log_likelihood(x[i:i + 1], n_samples=10).log_px, whole[i:i + 1], rtol=0,
                                   atol=1e-10)


# -- the likelihoods against torch.distributions ------------------------------------------------------------------


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_weights_match_torch_distributions(likelihood):
    torch.manual_seed(0)
    enc, dec = vae_encoder(64, 32, 4), vae_decoder(4, 32, 64)
    g = _gen(20)
    if likelihood == "bernoulli":
        vae = VAE(enc, dec, likelihood="bernoulli")
        x = (torch.rand(6, 64, generator=g) < 0.4).float()
    else:
        vae = VAE(enc, dec, likelihood="gaussian", sigma=0.3)
        x = torch.randn(6, 64, generator=g)
    iw = vae.log_importance_weights(x, n_samples=3, generator=_gen(21))
    assert isinstance(iw, ImportanceWeights) and iw.z.shape == (3, 6, 4)
    out = dec(iw.z)
    ref_px = (Bernoulli(logits=out) if likelihood == "bernoulli" else Normal(out, 0.3)).log_prob(x).sum(-1)
    q = vae.encode(x)
    assert isinstance(q, Proposal) and q.mean.shape == (6, 4)
    ref_qz = Normal(q.mean, q.log_std.exp()).log_prob(iw.z).sum(-1)
    ref_pz = Normal(0.0, 1.0).log_prob(iw.z).sum(-1)
    torch.testing.assert_close(iw.log_px_z, ref_px)
    torch.testing.assert_close(iw.log_qz, ref_qz)
    torch.testing.assert_close(iw.log_pz, ref_pz)
    torch.testing.assert_close(iw.log_w, ref_px + ref_pz - ref_qz)
    mean = vae.decode(iw.z[0])
    torch.testing.assert_close(mean, torch.sigmoid(out[0]) if likelihood == "bernoulli" else out[0])


# -- gradients --------------------------------------------------------------------------------------------------


def test_reparameterised_gradients_match_the_closed_form_elbo(ppca):
    """The gradient of the MC ELBO (K = 200, 30 seeds) for every parameter (encoder, decoder, σ) against autograd
    through the closed-form ELBO E_q[log p(x|z)] − KL(q ‖ N(0, I)), within 5 standard errors per coordinate. The
    closed form is also checked against log p(x) − KL(q ‖ posterior)."""
    x = ppca.sample(5, seed=22)
    vae = ppca.vae(ppca.encoder(**WRONG), learn_sigma=True)
    params = [p for p in vae.parameters() if p.requires_grad]
    assert len(params) == 5  # encoder weight and bias, decoder weight and bias, log σ

    q = vae.encode(x)
    w, b, log_s = vae.decoder.weight, vae.decoder.bias, vae.log_sigma
    var = q.log_std.exp() ** 2
    resid = x - q.mean @ w.T - b
    e_log_px = -D_X * (0.5 * math.log(2 * math.pi) + log_s) - 0.5 * torch.exp(-2 * log_s) * (
        (resid**2).sum(-1) + (var * (w**2).sum(0)).sum(-1))
    kl_prior = kl_divergence(Normal(q.mean, q.log_std.exp()), Normal(0.0, 1.0)).sum(-1)
    closed = e_log_px - kl_prior
    post_mean, post_std = ppca.posterior(x)
    kl_post = kl_divergence(Normal(q.mean, q.log_std.exp()), Normal(post_mean, post_std)).sum(-1)
    torch.testing.assert_close(closed, ppca.log_px(x) - kl_post, rtol=0, atol=1e-10)
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(closed.sum(), params)])

    runs = []
    for seed in range(30):
        grads = torch.autograd.grad(vae.elbo(x, n_samples=200, generator=_gen(100 + seed)).sum(), params)
        runs.append(torch.cat([g.flatten() for g in grads]))
    mc = torch.stack(runs)
    se = mc.std(0) / math.sqrt(mc.shape[0])
    assert bool(((mc.mean(0) - exact).abs() <= 5 * se + 1e-9).all()), ((mc.mean(0) - exact) / se).tolist()
    assert float(exact.abs().max()) > 10 * float(se.max())


def test_the_iwae_loss_trains_every_parameter():
    torch.manual_seed(1)
    vae = VAE(vae_encoder(64, 16, 3), vae_decoder(3, 16, 64))
    x = (torch.rand(8, 64, generator=_gen(23)) < 0.5).float()
    loss = vae.loss(x, n_samples=5, generator=_gen(24))
    assert loss.dim() == 0
    loss.backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0, name
    torch.testing.assert_close(vae.loss(x, 1, _gen(25)), -vae.elbo(x, 1, _gen(25)).mean())


# -- builders and state ---------------------------------------------------------------------------------------


def test_builders_and_state_dict_round_trip():
    torch.manual_seed(2)
    enc, dec = vae_encoder(latent_dim=5), vae_decoder(latent_dim=5)
    assert enc(torch.zeros(3, 64)).shape == (3, 10) and dec(torch.zeros(3, 5)).shape == (3, 64)
    vae = VAE(enc, dec, likelihood="gaussian", sigma=0.7, learn_sigma=True)
    assert "log_sigma" in vae.state_dict()
    torch.manual_seed(3)
    other = VAE(vae_encoder(latent_dim=5), vae_decoder(latent_dim=5), likelihood="gaussian", learn_sigma=True)
    x = torch.randn(4, 64, generator=_gen(26))
    before = other.log_likelihood(x, 50, generator=_gen(27)).log_px
    other.load_state_dict(vae.state_dict())
    after = other.log_likelihood(x, 50, generator=_gen(27)).log_px
    torch.testing.assert_close(after, vae.log_likelihood(x, 50, generator=_gen(27)).log_px, rtol=0, atol=0)
    assert not torch.equal(before, after)
    assert math.isclose(float(other.log_sigma.detach().exp()), 0.7, rel_tol=1e-6)
