"""kexue.generative.wgan (kexue.fm/archives/8757): the normalised critics' bounds on random LeakyReLU critics
(hypothesis), each formula against a per-sample loop, WGAN-GP against its hand formula, double backward checked by
finite differences in both steps, the mixtures' moments and the mode metrics on constructed samples."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.generative import (
    CRITIC_METHODS,
    CRITIC_NORMS,
    critic_gradient,
    critic_loss,
    generator_loss,
    gradient_normalized,
    gradient_penalty,
    mixture_modes,
    mlp_critic,
    mlp_generator,
    mode_coverage,
    sample_mixture,
    sample_w2,
    wgan_losses,
)


def _random_critic(in_dim: int, widths: list[int], slope: float, seed: int, act: type = nn.LeakyReLU) -> nn.Module:
    """A float64 MLP critic with weights N(0, 1/fan_in) and biases N(0, 1) from ``seed``; LeakyReLU(slope) by
    default (piecewise linear), or another activation class (``nn.Tanh``: smooth)."""
    g = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    d = in_dim
    for w in [*widths, 1]:
        lin = nn.Linear(d, w).double()
        with torch.no_grad():
            lin.weight.copy_(torch.randn(w, d, generator=g, dtype=torch.float64) / math.sqrt(d))
            lin.bias.copy_(torch.randn(w, generator=g, dtype=torch.float64))
        layers += [lin, act(slope) if act is nn.LeakyReLU else act()]
        d = w
    return nn.Sequential(*layers[:-1], nn.Flatten(0))


critics = st.fixed_dictionaries({
    "in_dim": st.integers(1, 4),
    "widths": st.lists(st.integers(1, 12), min_size=1, max_size=3),
    "slope": st.sampled_from([0.01, 0.1, 0.2, 0.5]),
    "seed": st.integers(0, 2**31 - 1),
})
inputs = st.fixed_dictionaries({"batch": st.integers(1, 6), "scale": st.sampled_from([0.1, 1.0, 10.0]),
                                "seed": st.integers(0, 2**31 - 1)})


def _x(spec: dict, in_dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(spec["seed"])
    return (spec["scale"] * torch.randn(spec["batch"], in_dim, generator=g, dtype=torch.float64)).requires_grad_(True)


def _grad_of(d_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(d_hat.sum(), x)[0]


def _check_gn_bounds(c: dict, i: dict) -> None:
    D = _random_critic(**c)
    x = _x(i, c["in_dim"])
    d_hat = gradient_normalized(D, x, mode="gn")
    cg = critic_gradient(D, x)
    assume(bool((cg.grad_norm > 1e-9).all()))
    assert (d_hat.abs() <= 1 + 1e-12).all()
    norm = _grad_of(d_hat, x).norm(dim=1)  # autograd through the normalisation, ‖∇D‖ included
    assert (norm <= 1 + 1e-9).all(), norm
    # inside a linear region ∇D̂ = ∇D·g/(g + |D|)², so ‖∇D̂‖ = g²/(g + |D|)² (the post's second derivation)
    g, d = cg.grad_norm.detach(), cg.value.detach()
    torch.testing.assert_close(norm, g**2 / (g + d.abs()) ** 2, rtol=1e-9, atol=1e-12)


@settings(max_examples=40)
@given(c=critics, i=inputs)
def test_gn_is_bounded_with_gradient_norm_at_most_one(c, i):
    _check_gn_bounds(c, i)


@pytest.mark.slow
@settings(max_examples=1000)
@given(c=critics, i=inputs)
def test_gn_bounds_extended(c, i):
    _check_gn_bounds(c, i)


def _same_region(D: nn.Module, x: torch.Tensor, v: torch.Tensor, h: float) -> torch.Tensor:
    """Per sample: ∇D at x ± h·v equals ∇D at x (x and both probes in one linear region, for all we can tell)."""
    grads = [critic_gradient(D, (x + s * h * v).detach()).grad for s in (-1, 0, 1)]
    return torch.stack([torch.isclose(grads[0], grads[1], rtol=1e-12, atol=1e-14).all(dim=1),
                        torch.isclose(grads[2], grads[1], rtol=1e-12, atol=1e-14).all(dim=1)]).all(dim=0)


@settings(max_examples=40)
@given(c=critics, i=inputs, vseed=st.integers(0, 2**31 - 1))
def test_ideal_normalisation_has_unit_gradient_inside_a_linear_region(c, i, vseed):
    """D/‖∇D‖ (mode "eps" with ε = 0): its gradient has norm 1 to 1e-6 (autograd), and a central finite difference
    across a small step inside the region agrees with it."""
    D = _random_critic(**c)
    x = _x(i, c["in_dim"])
    assume(bool((critic_gradient(D, x).grad_norm > 1e-6).all()))
    d_hat = gradient_normalized(D, x, mode="eps", eps=0.0)
    grad = _grad_of(d_hat, x)
    torch.testing.assert_close(grad.norm(dim=1), torch.ones(len(x), dtype=torch.float64), rtol=0, atol=1e-6)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(vseed), dtype=torch.float64)
    h = 1e-6 * (1 + x.detach().abs().max())
    inside = _same_region(D, x.detach(), v, float(h))
    assume(bool(inside.any()))
    plus = gradient_normalized(D, (x + h * v).detach(), mode="eps", eps=0.0).detach()
    minus = gradient_normalized(D, (x - h * v).detach(), mode="eps", eps=0.0).detach()
    fd = (plus - minus) / (2 * h)
    torch.testing.assert_close(fd[inside], (grad * v).sum(dim=1)[inside], rtol=1e-5, atol=1e-5)


def _per_sample(D: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: D and ∇ₓD one sample at a time."""
    vals, grads = [], []
    for row in x:
        xi = row.detach().unsqueeze(0).requires_grad_(True)
        d = D(xi).sum()
        vals.append(d.detach())
        grads.append(torch.autograd.grad(d, xi)[0][0])
    return torch.stack(vals), torch.stack(grads)


HAND = {
    "gn": lambda d, g, gx, x, eps: d / (g + d.abs()),
    "gran": lambda d, g, gx, x, eps: d * g / (g**2 + eps),
    "eps": lambda d, g, gx, x, eps: d / (g + eps),
    "inner": lambda d, g, gx, x, eps: (gx * x).sum(dim=1) / (g + eps),
}


@pytest.mark.parametrize("mode", CRITIC_NORMS)
@pytest.mark.parametrize("eps", [1e-8, 0.5])
def test_each_normalisation_against_its_formula_sample_by_sample(mode, eps):
    D = _random_critic(3, [8, 5], 0.2, seed=3)
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    d, gx = _per_sample(D, x)
    cg = critic_gradient(D, x)
    torch.testing.assert_close(cg.value.detach(), d)
    torch.testing.assert_close(cg.grad.detach(), gx)
    torch.testing.assert_close(cg.grad_norm.detach(), gx.norm(dim=1))
    want = HAND[mode](d, gx.norm(dim=1), gx, x, eps)
    torch.testing.assert_close(gradient_normalized(D, x, mode=mode, eps=eps).detach(), want)


def test_gran_with_tiny_eps_is_d_over_grad_norm_and_unbounded():
    D = _random_critic(2, [6], 0.2, seed=5)
    x = 100 * torch.randn(5, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    cg = critic_gradient(D, x)
    gran = gradient_normalized(D, x, mode="gran", eps=1e-8).detach()
    torch.testing.assert_close(gran, (cg.value / cg.grad_norm).detach(), rtol=1e-6, atol=0)
    assert gran.abs().max() > 1  # far from the data D/‖∇D‖ is large: GraN does not bound the critic


def test_gradient_penalty_against_the_hand_formula():
    D = _random_critic(2, [16, 16], 0.2, seed=7)
    g = torch.Generator().manual_seed(8)
    real, fake = torch.randn(2, 9, 2, generator=g, dtype=torch.float64)
    t = torch.rand(9, generator=g, dtype=torch.float64)
    _, gx = _per_sample(D, t[:, None] * real + (1 - t[:, None]) * fake)
    want = 10.0 * ((gx.norm(dim=1) - 1) ** 2).mean()
    torch.testing.assert_close(gradient_penalty(D, real, fake, t=t).detach(), want)
    torch.testing.assert_close(gradient_penalty(D, real, fake, weight=2.5, t=t).detach(), want / 4)
    # drawn mixing weights: U(0, 1) from the generator, so the same seed gives the hand formula at those weights
    t1 = torch.rand(9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, gx1 = _per_sample(D, t1[:, None] * real + (1 - t1[:, None]) * fake)
    drawn = gradient_penalty(D, real, fake, generator=torch.Generator().manual_seed(1)).detach()
    torch.testing.assert_close(drawn, 10.0 * ((gx1.norm(dim=1) - 1) ** 2).mean())
    # t = 1 puts x̂ on the real points
    _, gr = _per_sample(D, real)
    torch.testing.assert_close(gradient_penalty(D, real, fake, t=torch.ones(9, dtype=torch.float64)).detach(),
                               10.0 * ((gr.norm(dim=1) - 1) ** 2).mean())


def test_gradient_penalty_of_a_linear_critic():
    lin = nn.Linear(3, 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
    x = torch.randn(4, 3, dtype=torch.float64)
    assert float(gradient_penalty(lin, x, -x).detach()) == pytest.approx(10.0 * (5.0 - 1.0) ** 2)


def test_wgan_losses():
    out = wgan_losses(torch.tensor([1.0, 3.0]), torch.tensor([0.0, -1.0, 4.0]))
    assert float(out.critic) == pytest.approx(1.0 - 2.0)
    assert float(out.generator) == pytest.approx(-1.0)


def _smooth_pair(seed: int) -> tuple[nn.Module, nn.Module]:
    D = _random_critic(2, [6], 0.0, seed=seed, act=nn.Tanh)
    torch.manual_seed(seed)
    G = mlp_generator(latent_dim=2, hidden_dim=5, depth=1).double()
    return D, G


@pytest.mark.parametrize("method", CRITIC_METHODS)
def test_generator_step_reaches_the_generator_through_double_backward(method):
    """The generator's loss differentiated w.r.t. G's last bias matches finite differences (gradcheck), with a smooth
    critic so that ∇ₓ‖∇ₓD‖ ≠ 0 and the second-order path through x counts; it reaches the critic's parameters too."""
    D, G = _smooth_pair(11)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64)
    bias = G[-1].bias

    def loss_of(b: torch.Tensor) -> torch.Tensor:
        fake = torch.func.functional_call(G, {"2.bias": b}, (z,))
        return generator_loss(D, fake, method=method, eps=0.1)

    assert torch.autograd.gradcheck(loss_of, (bias.detach().clone().requires_grad_(True),))
    loss = generator_loss(D, G(z), method=method, eps=0.1)
    loss.backward()
    # every parameter gets a gradient, except the critic's output bias for "inner" (⟨∇D, x⟩/‖∇D‖ ignores D's value)
    params = [*G.parameters(), *D.parameters()][: -1 if method == "inner" else None]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("method", CRITIC_METHODS)
def test_critic_step_differentiates_through_the_input_gradient(method):
    """The critic's loss w.r.t. its first-layer weight matches finite differences (gradcheck), the ‖∇ₓD‖ term
    included; a LeakyReLU critic too (piecewise linear in its weights within a region). G gets no gradient."""
    for act, slope in ((nn.Tanh, 0.0), (nn.LeakyReLU, 0.2)):
        D = _random_critic(2, [6, 4], slope, seed=13, act=act)
        torch.manual_seed(13)
        G = mlp_generator(hidden_dim=5, depth=1).double()
        g = torch.Generator().manual_seed(14)
        real = torch.randn(5, 2, generator=g, dtype=torch.float64)
        fake = G(torch.randn(5, 2, generator=g, dtype=torch.float64))
        weight = D[0].weight

        def loss_of(w: torch.Tensor, D: nn.Module = D, real: torch.Tensor = real, fake: torch.Tensor = fake):
            def critic(x: torch.Tensor) -> torch.Tensor:
                return torch.func.functional_call(D, {"0.weight": w}, (x,))

            return critic_loss(critic, real, fake, method=method, eps=0.1,
                               generator=torch.Generator().manual_seed(0)).loss

        assert torch.autograd.gradcheck(loss_of, (weight.detach().clone().requires_grad_(True),))
        critic_loss(D, real, fake, method=method).loss.backward()
        # the output bias cancels from E D(real) − E D(fake) and from ∇D ("gp", "inner"), and for a piecewise-linear
        # critic ∇D does not depend on any bias ("inner"): for those the weight matrices get gradients
        params = [p for p in D.parameters() if method not in ("gp", "inner") or p.dim() == 2]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        assert all(p.grad is None for p in G.parameters())


def test_the_normalised_critic_loss_depends_on_the_critic_through_its_gradient_norm():
    """GN's critic step is not the plain WGAN step on D/(const): detaching ‖∇D‖ changes the parameter gradient."""
    D = _random_critic(2, [8], 0.2, seed=15)
    g = torch.Generator().manual_seed(16)
    real, fake = torch.randn(2, 8, 2, generator=g, dtype=torch.float64)
    full = torch.autograd.grad(critic_loss(D, real, fake, method="gn").loss, D[0].weight)[0]
    x = torch.cat([real, fake])
    g = critic_gradient(D, x, create_graph=False).grad_norm.detach()
    d = D(x)
    d_hat = d / (g + d.abs())
    frozen = torch.autograd.grad(d_hat[8:].mean() - d_hat[:8].mean(), D[0].weight)[0]
    assert (full - frozen).abs().max() > 1e-3


@pytest.mark.parametrize("method", CRITIC_METHODS)
def test_a_few_training_steps_of_each_method_run_and_move_both_networks(method):
    """The loop of the post's runs (n_critic critic steps, one generator step, Adam(1e-4, (0.5, 0.9))), shrunk:
    finite losses, every weight matrix of both networks updated."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    D, G = mlp_critic(hidden_dim=16), mlp_generator(hidden_dim=16)
    before = [p.detach().clone() for p in [*D.parameters(), *G.parameters()]]
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.9))
    for _ in range(3):
        for _ in range(2):
            real = sample_mixture("8gaussians", 32, generator=g).x
            out = critic_loss(D, real, G(torch.randn(32, 2, generator=g)), method=method, generator=g)
            opt_d.zero_grad()
            out.loss.backward()
            opt_d.step()
            assert torch.isfinite(out.loss) and not out.wasserstein.requires_grad
        loss = generator_loss(D, G(torch.randn(32, 2, generator=g)), method=method)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        assert torch.isfinite(loss)
    after = [*D.parameters(), *G.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True) if a.dim() == 2)


@pytest.mark.parametrize("mode", CRITIC_NORMS)
def test_with_a_piecewise_linear_critic_the_generator_step_gains_nothing_from_the_second_order_path(mode):
    """∇ₓ²D = 0 almost everywhere for a LeakyReLU critic, so G's gradient equals the one with ‖∇D‖ (and ∇D) held
    constant, while a smooth critic makes them differ (the path through g is real, and the tests above check it)."""
    for act, slope, same in ((nn.LeakyReLU, 0.2, True), (nn.Tanh, 0.0, False)):
        D = _random_critic(2, [8, 8], slope, seed=17, act=act)
        torch.manual_seed(17)
        G = mlp_generator(hidden_dim=8, depth=1).double()
        z = torch.randn(16, 2, generator=torch.Generator().manual_seed(18), dtype=torch.float64)
        full = torch.autograd.grad(generator_loss(D, G(z), method=mode, eps=0.1), G[0].weight)[0]
        fake = G(z)
        gx = critic_gradient(D, fake.detach(), create_graph=False).grad.detach()  # held constant
        frozen_hat = HAND[mode](D(fake), gx.norm(dim=1), gx, fake, 0.1)
        frozen = torch.autograd.grad(-frozen_hat.mean(), G[0].weight)[0]
        assert torch.allclose(full, frozen, rtol=1e-10, atol=1e-12) == same


def test_mlp_critic_and_generator_shapes():
    D, G = mlp_critic(), mlp_generator(latent_dim=3)
    z = torch.randn(10, 3)
    assert G(z).shape == (10, 2)
    assert D(G(z)).shape == (10,)
    assert sum(isinstance(m, nn.Linear) for m in D) == 3 and sum(isinstance(m, nn.LeakyReLU) for m in D) == 2
    assert mlp_critic(depth=0)(torch.randn(4, 2)).shape == (4,)


def test_mixture_modes():
    ring = mixture_modes("8gaussians")
    torch.testing.assert_close(ring.norm(dim=1), torch.full((8,), 2.0))
    angles = torch.atan2(ring[:, 1], ring[:, 0]).remainder(2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(8) * (2 * math.pi / 8))
    grid = mixture_modes("25gaussians", scale=1.5)
    assert grid.shape == (25, 2) and set(grid[:, 0].tolist()) == {-3.0, -1.5, 0.0, 1.5, 3.0}
    assert len({tuple(p) for p in grid.tolist()}) == 25


@pytest.mark.parametrize(("name", "coord_var"), [("8gaussians", 2.0), ("25gaussians", 8.0)])
def test_mixture_samples_means_and_covariances(name, coord_var):
    """Mean 0 and covariance (Var of a mode coordinate + σ²)·I: 4/2 for the ring of radius 2, (16+4+0+4+16)/5 for the
    grid; around its own mode each point is N(0, σ²I); components equally likely; the generator makes it repeatable."""
    n, std = 200_000, 0.05
    s = sample_mixture(name, n, std=std, generator=torch.Generator().manual_seed(0))
    x = s.x.double()
    se = math.sqrt(coord_var / n)
    assert x.mean(dim=0).abs().max() < 5 * se
    cov = torch.cov(x.T)
    torch.testing.assert_close(cov, (coord_var + std**2) * torch.eye(2, dtype=torch.float64), rtol=0,
                               atol=5 * coord_var * math.sqrt(2 / n) + 5 * se)
    resid = x - mixture_modes(name).double()[s.mode]
    torch.testing.assert_close(torch.cov(resid.T), std**2 * torch.eye(2, dtype=torch.float64), rtol=0,
                               atol=std**2 * 0.02)
    k = len(mixture_modes(name))
    counts = torch.bincount(s.mode, minlength=k).double()
    assert (counts - n / k).abs().max() < 5 * math.sqrt(n / k)
    again = sample_mixture(name, n, std=std, generator=torch.Generator().manual_seed(0))
    other = sample_mixture(name, n, std=std, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s.x, again.x) and torch.equal(s.mode, again.mode) and not torch.equal(s.x, other.x)


def test_mode_coverage_on_constructed_samples():
    modes = mixture_modes("8gaussians")
    everywhere = modes.repeat(3, 1)
    cov = mode_coverage(everywhere, modes)
    assert (cov.modes_covered, cov.n_modes, cov.high_quality) == (8, 8, 1.0)
    assert cov.counts.tolist() == [3] * 8
    one = modes[2].expand(10, 2) + 0.1 * torch.tensor([1.0, 0.0])  # 0.1 < 3·0.05 from mode 2
    cov = mode_coverage(one, modes)
    assert (cov.modes_covered, cov.high_quality) == (1, 1.0) and cov.counts[2] == 10
    # half of them off the modes (at the centre, 2 from every mode): low quality and covering nothing
    mixed = torch.cat([everywhere[:8], torch.zeros(8, 2)])
    cov = mode_coverage(mixed, modes)
    assert (cov.modes_covered, cov.high_quality) == (8, 0.5)
    # the k·σ radius: 0.16 is out at 3σ = 0.15, in at 4σ; min_count needs that many per mode
    near = modes + torch.tensor([0.16, 0.0])
    assert mode_coverage(near, modes).modes_covered == 0 and mode_coverage(near, modes).high_quality == 0.0
    assert mode_coverage(near, modes, k=4.0).modes_covered == 8
    assert mode_coverage(everywhere, modes, min_count=4).modes_covered == 0
    # generated-looking data: the true mixture covers every mode with ≈ 98.9 % (χ²₂ ≤ 9) high-quality samples
    s = sample_mixture("25gaussians", 20_000, generator=torch.Generator().manual_seed(3))
    cov = mode_coverage(s.x, mixture_modes("25gaussians"))
    assert cov.modes_covered == 25 and abs(cov.high_quality - (1 - math.exp(-4.5))) < 0.005


def test_sample_w2_against_pot_and_closed_forms():
    """Exact W₂ of uniform point clouds: against POT's ot.emd2; 0 for a permutation of the same points; a shift by v
    moves it by ‖v‖ exactly (the optimal plan is the identity); two draws of the ring against one collapsed mode."""
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(2, 60, 2, generator=g, dtype=torch.float64)
    cost = torch.cdist(x, y).square().numpy()
    w = torch.full((60,), 1 / 60, dtype=torch.float64).numpy()
    assert sample_w2(x, y) == pytest.approx(math.sqrt(ot.emd2(w, w, cost)), rel=1e-9)
    assert sample_w2(x, x[torch.randperm(60, generator=g)]) == pytest.approx(0.0, abs=1e-12)
    assert sample_w2(x, x + torch.tensor([3.0, 4.0], dtype=torch.float64)) == pytest.approx(5.0, rel=1e-12)
    a = sample_mixture("8gaussians", 500, generator=torch.Generator().manual_seed(6)).x
    b = sample_mixture("8gaussians", 500, generator=torch.Generator().manual_seed(7)).x
    collapsed = mixture_modes("8gaussians")[0].expand(500, 2)
    # the floor is set by the modes' counts differing between two draws (moving the excess to a neighbouring mode,
    # 1.53 away): about 0.5 at n = 500; all on one mode: W₂² ≈ E‖μ_k − μ_0‖² = 2r² = 8
    assert sample_w2(a, b) < 1.0
    assert sample_w2(collapsed, b) == pytest.approx(math.sqrt(8.0), abs=0.15)
