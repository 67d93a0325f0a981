"""kexue.generative.ddpm (kexue.fm/archives/9119): schedule identities and converters, the skip form and the reverse
step against diffusers' DDPMScheduler at every step of a short chain, the two loss parametrisations (and the naive
loss they come from), the time embedding against its formula, and the denoisers."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.generative import (
    ConvDenoiser,
    MLPDenoiser,
    Schedule,
    SinusoidalTimeEmbedding,
    ddpm_loss,
    ddpm_sample,
    ddpm_step,
)

T = 20


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed nonlinear 'noise predictor' that depends on x and t (no parameters)."""
    view = (-1,) + (1,) * (x.dim() - 1)
    return 0.7 * torch.tanh(x) + 0.03 * t.to(x.dtype).view(view) - 0.2


# ---- schedules ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schedule", [Schedule.su(1000), Schedule.su(50), Schedule.rescaled(200),
                                      Schedule.linear(100), Schedule.cosine(100)], ids=repr)
def test_schedule_identities(schedule):
    s = schedule
    one = torch.ones_like(s.alpha)
    torch.testing.assert_close(s.alpha**2 + s.beta**2, one, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.alpha_bar**2 + s.beta_bar**2, one, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.alpha_bar, torch.tensor([math.prod(s.alpha[:k + 1].tolist())
                                                          for k in range(s.steps)], dtype=torch.float64))
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert s.beta_bar[0] == pytest.approx(s.beta[0].item())  # β̄_1 = β_1


def test_su_schedule_values():
    s = Schedule.su(1000)
    t = torch.arange(1, 1001, dtype=torch.float64)
    torch.testing.assert_close(s.alpha, torch.sqrt(1 - 0.02 * t / 1000))
    assert s.alpha_bar[-1].item() == pytest.approx(0.00648, abs=5e-6)  # spec: 0.00648 against e⁻⁵ = 0.00674
    assert math.log(s.alpha_bar[-1].item()) < -0.005 * 1001  # the post's bound log ᾱ_T < −0.005(T+1)
    assert math.log(Schedule.su(100).alpha_bar[-1].item()) == pytest.approx(-0.5, abs=0.02)  # far from noise


@pytest.mark.parametrize("steps", [10, 50, 200, 1000])
def test_rescaled_schedule_reaches_target(steps):
    s = Schedule.rescaled(steps)
    assert s.alpha_bar[-1].item() == pytest.approx(math.exp(-5), rel=1e-9)
    c = s.beta[0].item() ** 2 * steps  # β_1² = c/T: the form stays β_t² = 1 − α_t² = c·t/T
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    torch.testing.assert_close(s.beta**2, c * t / steps)
    if steps == 1000:
        assert c == pytest.approx(0.02, rel=0.03)  # Su's constant is the T = 1000 answer
    assert Schedule.rescaled(50, alpha_bar_T=0.1).alpha_bar[-1].item() == pytest.approx(0.1)


def test_converters_round_trip():
    s = Schedule.su(100)
    p = s.to_paper()
    torch.testing.assert_close(p.beta, 0.02 * torch.arange(1, 101, dtype=torch.float64) / 100)
    torch.testing.assert_close(p.alpha, 1 - p.beta)
    torch.testing.assert_close(p.alpha_bar, torch.cumprod(1 - p.beta, 0))  # the paper's ᾱ is the square of Su's
    torch.testing.assert_close(Schedule.from_paper(p.beta).alpha, s.alpha)
    betas = torch.rand(30, generator=_gen(0), dtype=torch.float64) * 0.5 + 1e-3
    torch.testing.assert_close(Schedule.from_paper(betas).to_paper().beta, betas)
    torch.testing.assert_close(Schedule.linear(40, 1e-4, 0.02).to_paper().beta,
                               torch.linspace(1e-4, 0.02, 40, dtype=torch.float64))


def test_cosine_schedule_formula():
    s, steps = Schedule.cosine(100), 100
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + 0.008) / 1.008 * math.pi / 2) ** 2
    ab = s.to_paper().alpha_bar
    torch.testing.assert_close(ab[:-1], (f[1:] / f[0])[:-1])  # the last step is capped at β = 0.999
    assert s.to_paper().beta.max().item() == pytest.approx(0.999)


def test_sigma_choices():
    s = Schedule.su(T)
    torch.testing.assert_close(s.sigma("beta"), s.beta)
    assert (s.sigma("zero") == 0).all()
    post = s.sigma("posterior")
    assert post[0] == 0
    paper = s.to_paper()  # the paper's β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t
    torch.testing.assert_close(post[1:] ** 2, (1 - paper.alpha_bar[:-1]) / (1 - paper.alpha_bar[1:]) * paper.beta[1:])


def test_forward_chain_matches_skip_form():
    """Iterated forward steps x_t = α_t x_{t−1} + β_t ε_t have mean ᾱ_t x₀ and variance β̄_t² (Monte Carlo)."""
    s, n, x0 = Schedule.su(T), 40_000, 1.5
    g = _gen(1)
    x = torch.full((n,), x0, dtype=torch.float64)
    for k in range(T):
        x = s.alpha[k] * x + s.beta[k] * torch.randn(n, generator=g, dtype=torch.float64)
        var = s.beta_bar[k].item() ** 2
        assert x.mean().item() == pytest.approx(s.alpha_bar[k].item() * x0, abs=5 * math.sqrt(var / n))
        assert x.var().item() == pytest.approx(var, rel=5 * math.sqrt(2 / n))


# ---- diffusers parity ---------------------------------------------------------------------------------------------

def _diffusers(steps: int, variance_type: str = "fixed_large"):
    diffusers = pytest.importorskip("diffusers")
    betas = (0.02 * torch.arange(1, steps + 1, dtype=torch.float64) / steps).numpy()  # trained_betas = β_t² (Su)
    return diffusers.DDPMScheduler(num_train_timesteps=steps, trained_betas=betas, variance_type=variance_type,
                                   clip_sample=False, prediction_type="epsilon")


def test_add_noise_equals_skip_form_at_every_step():
    d, s = _diffusers(T), Schedule.su(T)
    x0 = torch.randn(T, 3, 8, 8, generator=_gen(2))
    noise = torch.randn(x0.shape, generator=_gen(3))
    steps = torch.arange(1, T + 1)  # one row per step t = 1..T; diffusers indexes step t as t − 1
    ours = s.diffuse(x0, steps, noise)
    torch.testing.assert_close(ours, d.add_noise(x0, noise, steps - 1), rtol=1e-5, atol=1e-6)
    k = 7
    torch.testing.assert_close(s.diffuse(x0[k:k + 1], k + 1, noise[k:k + 1]), ours[k:k + 1])


def test_reverse_step_equals_diffusers_at_every_step():
    """Given the same x_t, model output ε̂ and noise z, each step t = T..1 equals DDPMScheduler.step (σ_t = β_t;
    diffusers adds no noise at its index 0, our step 1)."""
    d, s = _diffusers(T), Schedule.su(T)
    d.set_timesteps(T)
    assert d.timesteps.tolist() == list(range(T - 1, -1, -1))
    x = torch.randn(4, 1, 8, 8, generator=_gen(4))
    for index in d.timesteps.tolist():
        t = index + 1
        eps_hat = _toy_model(x, torch.full((4,), t))
        ref = d.step(eps_hat, index, x, generator=_gen(100 + t)).prev_sample
        z = torch.randn(x.shape, generator=_gen(100 + t)) if t > 1 else None
        ours = ddpm_step(eps_hat, x, t, s, "paper", "beta", z)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        # the post's parametrisation gives the same step with ε_θ = (β_t/β̄_t)·ε̂
        eps_su = eps_hat * (s.beta[t - 1] / s.beta_bar[t - 1]).item()
        torch.testing.assert_close(ddpm_step(eps_su, x, t, s, "su", "beta", z), ours, rtol=1e-5, atol=1e-6)
        x = ref  # both continue from the same state


@pytest.mark.parametrize(("variance_type", "sigma"), [("fixed_large", "beta"), ("fixed_small", "posterior")])
def test_sample_chain_equals_diffusers_loop(variance_type, sigma):
    """The whole chain: our ``sample`` and diffusers' loop with one seed draw the same noises in the same order."""
    d, s = _diffusers(T, variance_type), Schedule.su(T)
    d.set_timesteps(T)
    g = _gen(5)
    x = torch.randn(3, 1, 8, 8, generator=g)
    for index in d.timesteps.tolist():
        x = d.step(_toy_model(x, torch.full((3,), index + 1)), index, x, generator=g).prev_sample
    ours = ddpm_sample(_toy_model, s, (3, 1, 8, 8), sigma=sigma, generator=_gen(5), progress=False)
    torch.testing.assert_close(ours, x, rtol=1e-4, atol=1e-5)


# ---- loss ---------------------------------------------------------------------------------------------------------

def test_the_two_parametrisations_give_one_loss_and_gradient():
    """With ε̂ = (β̄_t/β_t)·ε_θ the paper's ‖ε − ε̂‖² and the post's ‖ε − (β̄_t/β_t)ε_θ‖² are one number, and so are
    their gradients (spec 06 §1, check (i), to 1e−6)."""
    torch.manual_seed(0)
    s = Schedule.rescaled(T)
    net = MLPDenoiser(2, hidden=16, depth=2, time_dim=8).double()

    def su_model(x, t):  # the same network read in the post's parametrisation
        return net(x, t) * (s.beta / s.beta_bar)[t - 1].view(-1, 1)

    x0 = torch.randn(64, 2, generator=_gen(6), dtype=torch.float64)
    t = torch.randint(1, T + 1, (64,), generator=_gen(7))
    noise = torch.randn(x0.shape, generator=_gen(8), dtype=torch.float64)
    grads = []
    for model, param in ((net, "paper"), (su_model, "su")):
        net.zero_grad()
        loss = ddpm_loss(model, x0, s, param, t=t, noise=noise)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=0)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    expected = (noise - net(s.diffuse(x0, t, noise), t)).pow(2).sum(1)  # by hand: summed over coordinates
    torch.testing.assert_close(ddpm_loss(net, x0, s, t=t, noise=noise, reduction="none"), expected)
    assert ddpm_loss(net, x0, s, t=t, noise=noise, reduction="sum").item() == pytest.approx(expected.sum().item())


def test_naive_loss_is_the_post_loss_up_to_its_weight():
    """The naive ‖x_{t−1} − μ(x_t)‖² = (β_t²/α_t²)‖ε_t − ε_θ‖² averages, over the part ω of the noise that x_t does
    not see, to (β_t²/α_t²)·[(β_t²/β̄_t²)·L_su + (α_t β̄_{t−1}/β̄_t)²·d] (the post's variance reduction)."""
    s, t, n, d = Schedule.su(T), 9, 200_000, 2
    a, b, bb, bb_prev = (s.alpha[t - 1].item(), s.beta[t - 1].item(), s.beta_bar[t - 1].item(),
                         s.beta_bar[t - 2].item())
    g = _gen(9)
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    eps_prev, eps_t = (torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2))
    x_prev = s.alpha_bar[t - 2].item() * x0 + bb_prev * eps_prev
    x_t = a * x_prev + b * eps_t
    steps = torch.full((n,), t)
    eps_theta = _toy_model(x_t, steps)
    naive = (x_prev - (x_t - b * eps_theta) / a).pow(2).sum(1)
    torch.testing.assert_close(naive, b**2 / a**2 * (eps_t - eps_theta).pow(2).sum(1))
    eps = (a * bb_prev * eps_prev + b * eps_t) / bb  # the merged noise: x_t = ᾱ_t x₀ + β̄_t ε
    torch.testing.assert_close(x_t, s.diffuse(x0, steps, eps))
    l_su = ddpm_loss(_toy_model, x0, s, "su", t=steps, noise=eps, reduction="none")
    reduced = b**2 / a**2 * (b**2 / bb**2 * l_su + (a * bb_prev / bb) ** 2 * d)
    se = (naive - reduced).std().item() / math.sqrt(n)
    assert naive.mean().item() == pytest.approx(reduced.mean().item(), abs=5 * se)
    assert reduced.var() < naive.var()  # three random variables instead of four: lower variance


def test_loss_draws_are_repeatable():
    s, x0 = Schedule.su(T), torch.randn(8, 1, 8, 8, generator=_gen(10))
    net = ConvDenoiser(width=8, depth=1, time_dim=8)
    a = ddpm_loss(net, x0, s, generator=_gen(11))
    assert a.shape == () and torch.isfinite(a)
    assert torch.equal(a, ddpm_loss(net, x0, s, generator=_gen(11)))
    assert not torch.equal(a, ddpm_loss(net, x0, s, generator=_gen(12)))


# ---- sampling -----------------------------------------------------------------------------------------------------

def test_sampling_is_repeatable_and_greedy_is_deterministic(capsys):
    s = Schedule.su(T)
    a = ddpm_sample(_toy_model, s, (5, 2), generator=_gen(13))
    assert a.shape == (5, 2) and torch.equal(a, ddpm_sample(_toy_model, s, (5, 2), generator=_gen(13)))
    assert not torch.equal(a, ddpm_sample(_toy_model, s, (5, 2), generator=_gen(14)))
    assert capsys.readouterr().err == ""  # no bar when stderr is not a terminal
    greedy = ddpm_sample(_toy_model, s, (5, 2), sigma="zero", generator=_gen(13))
    x = torch.randn(5, 2, generator=_gen(13))  # greedy: only x_T is drawn, then the means
    for t in range(T, 0, -1):
        x = (x - s.beta[t - 1].item() ** 2 / s.beta_bar[t - 1].item() * _toy_model(x, torch.full((5,), t))) \
            / s.alpha[t - 1].item()
    torch.testing.assert_close(greedy, x)
    # Su's code also adds σ_1 z at the last step: one more draw, a different result
    assert not torch.equal(a, ddpm_sample(_toy_model, s, (5, 2), generator=_gen(13), noise_at_last=True))


def test_sampling_in_the_post_parametrisation_and_the_bar(capsys):
    """A model read as Su's ε_θ = (β_t/β̄_t)·ε̂ samples the same chain; ``progress=True`` draws a bar on stderr."""
    s = Schedule.su(T)

    def su_model(x, t):
        return _toy_model(x, t) * (s.beta / s.beta_bar)[t - 1].to(x.dtype).view(-1, 1)

    paper = ddpm_sample(_toy_model, s, (5, 2), generator=_gen(17), progress=True)
    assert "ddpm sample" in capsys.readouterr().err
    su = ddpm_sample(su_model, s, (5, 2), "su", generator=_gen(17), progress=False)
    torch.testing.assert_close(su, paper, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("parametrization", "sigma", "last"), [("paper", "beta", False), ("su", "posterior", True),
                                                                 ("paper", "zero", False)])
def test_sample_is_the_step_in_a_loop(parametrization, sigma, last):
    """ddpm_sample (checked once, z drawn into one reused buffer) gives bit for bit the chain of ddpm_step calls with
    fresh torch.randn draws from the same generator."""
    s, g = Schedule.rescaled(T), _gen(18)
    x = torch.randn(4, 3, generator=g)
    for t in range(T, 0, -1):
        out = _toy_model(x, torch.full((4,), t))
        z = torch.randn(4, 3, generator=g) if sigma != "zero" and (t > 1 or last) else None
        x = ddpm_step(out, x, t, s, parametrization, sigma, z)
    ours = ddpm_sample(_toy_model, s, (4, 3), parametrization, sigma, generator=_gen(18), noise_at_last=last)
    assert torch.equal(ours, x)


# ---- time embedding and denoisers ---------------------------------------------------------------------------------

def test_time_embedding_hand_formula():
    emb = SinusoidalTimeEmbedding(6, max_period=100.0)
    out = emb(torch.tensor([0, 1, 7, 500]))
    assert out.shape == (4, 6)
    for i, t in enumerate([0, 1, 7, 500]):
        hand = [math.sin(t * 100 ** (-k / 3)) for k in range(3)] + [math.cos(t * 100 ** (-k / 3)) for k in range(3)]
        torch.testing.assert_close(out[i], torch.tensor(hand, dtype=torch.float32), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(emb(torch.tensor([7.0])), out[2:3])  # float steps too


@pytest.mark.parametrize("make", [lambda: (MLPDenoiser(4, hidden=16, depth=2, time_dim=8), (6, 4)),
                                  lambda: (ConvDenoiser(1, width=8, depth=2, time_dim=8), (6, 1, 8, 8))],
                         ids=["mlp", "conv"])
def test_denoiser_gradients_and_state_dict(make):
    torch.manual_seed(1)
    net, shape = make()
    x0 = torch.randn(shape, generator=_gen(15))
    ddpm_loss(net, x0, Schedule.su(T), generator=_gen(16)).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    t = torch.arange(1, shape[0] + 1)
    out = net(x0, t)
    assert out.shape == x0.shape
    assert not torch.allclose(out, net(x0, t + 5))  # the output depends on t
    torch.manual_seed(2)
    twin, _ = make()
    assert not torch.equal(twin(x0, t), out)
    twin.load_state_dict(net.state_dict())
    assert torch.equal(twin(x0, t), out)
