"""WGAN with the Lipschitz constraint by construction: gradient normalisation (GN), GraN, the post's inner-product
variant, and the gradient penalty (WGAN-GP) as the reference; 2-D Gaussian mixtures and their mode metrics.

Post: "WGAN新方案：通过梯度归一化来实现L约束" (A new WGAN scheme: the Lipschitz constraint through gradient
normalisation), 2021-11-15, https://kexue.fm/archives/8757. Papers: Wu et al., "Gradient Normalization for Generative
Adversarial Networks" (ICCV 2021, GN-GAN) and Bhaskara et al., "GraN-GAN" (WACV 2022).

- WGAN: min_G max_{‖D‖_L≤1} E_{x~p}[D(x)] − E_{z~q}[D(G(z))]; ‖∇ₓD‖ ≤ 1 everywhere is sufficient.
- Normalised critics, from a raw critic D and its per-sample input gradient g = ‖∇ₓD(x)‖:
  ``"gn"``: D̂ = D/(g + |D|) ∈ [−1, 1]; ``"gran"``: D̂ = D·g/(g² + ε); ``"eps"``: D̂ = D/(g + ε) (→ the ideal D/g as
  ε → 0); ``"inner"`` (Su's variant, which trains badly): D̂ = ⟨∇ₓD, x⟩/(g + ε).
- With ReLU/LeakyReLU and no normalisation layers D is piecewise linear, ∇ₓD is constant inside a linear region and
  there ∇(D/g) = ∇D/g has norm 1, and for GN ∇D̂ = ∇D·g/(g + |D|)², so ‖∇D̂‖ = g²/(g + |D|)² ≤ 1. Across region
  boundaries D/g jumps: the normalised critic is not continuous (the post's puzzle).
- ∇ₓD is taken per sample (the gradient of Σ_batch D w.r.t. x, valid for a critic that treats samples
  independently: no BatchNorm) with ``create_graph=True``, so the critic's *and* the generator's updates
  differentiate through it (double backward; the post's reason GN costs more per step than GP). For a piecewise-linear
  critic the Hessian ∇ₓ²D is 0 almost everywhere, so in the generator's step the path through g adds nothing (the
  gradient equals that with g detached); in the critic's step g depends on the parameters and the path counts.
- Reference, WGAN-GP (Gulrajani et al. 2017): λ·E[(‖∇ₓD(x̂)‖ − 1)²], x̂ = t·x_real + (1 − t)·x_fake,
  t ~ U(0, 1) per sample, λ = 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_generator, check_int

CriticNorm = Literal["gn", "gran", "eps", "inner"]
CRITIC_NORMS: tuple[CriticNorm, ...] = get_args(CriticNorm)
#: A way to keep the critic 1-Lipschitz: one of the normalisations, or the gradient penalty ``"gp"``.
CriticMethod = Literal[CriticNorm, "gp"]
CRITIC_METHODS: tuple[CriticMethod, ...] = get_args(CriticMethod)
GaussianMixture = Literal["8gaussians", "25gaussians"]
GAUSSIAN_MIXTURES: tuple[GaussianMixture, ...] = get_args(GaussianMixture)

Critic = Callable[[Tensor], Tensor]


class CriticGradient(NamedTuple):
    """The critic's values D(x) (batch,), their input gradients ∇ₓD (x's shape) and the gradients' norms (batch,)."""

    value: Tensor
    grad: Tensor
    grad_norm: Tensor


class WGANLosses(NamedTuple):
    """The critic's loss E[D(fake)] − E[D(real)] and the generator's loss −E[D(fake)] (both to minimise)."""

    critic: Tensor
    generator: Tensor


class CriticLoss(NamedTuple):
    """One critic step: ``loss`` = −``wasserstein`` + ``penalty`` (to minimise; the one field with a graph),
    ``wasserstein`` = E[D̂(real)] − E[D̂(fake)] (the critic's estimate of W₁) and ``penalty`` (0 unless the method is
    ``"gp"``), both detached, for logging."""

    loss: Tensor
    wasserstein: Tensor
    penalty: Tensor


class MixtureSample(NamedTuple):
    """Points drawn from a 2-D mixture (n, 2) and the index of the component each came from (n,)."""

    x: Tensor
    mode: Tensor


class ModeCoverage(NamedTuple):
    """``modes_covered`` of ``n_modes`` components have at least ``min_count`` high-quality samples (within k·σ of
    the mode, the nearest one); ``high_quality``: the fraction of all samples within k·σ of their nearest mode;
    ``counts``: high-quality samples per mode (n_modes,)."""

    modes_covered: int
    n_modes: int
    high_quality: float
    counts: Tensor


def _check_tensor(name: str, x: object, min_dim: int = 1) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"expected {name} with at least {min_dim} dimension(s) (batch first), got shape "
                         f"{tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"expected {name} to be non-empty, got shape {tuple(x.shape)}")
    return x


def _check_finite(name: str, x: Tensor) -> Tensor:
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"expected {name} to be finite, got {bad} NaN or infinite entries")
    return x


def _check_input(name: str, x: object) -> Tensor:
    """A finite, non-empty floating-point batch (batch, ...) of at least 2 dimensions."""
    return _check_finite(name, _check_tensor(name, x, min_dim=2))


def _check_critic(critic: object) -> None:
    if not callable(critic):
        raise TypeError(f"expected critic to be callable (an nn.Module mapping x to D(x)), got "
                        f"{type(critic).__name__}")


def _critic_values(critic: Critic, x: Tensor) -> Tensor:
    """critic(x) as one value per sample, shape (batch,): a (batch, 1) output is flattened, anything else refused."""
    out = critic(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"expected critic to return a torch.Tensor, got {type(out).__name__}")
    b = x.shape[0]
    if tuple(out.shape) == (b, 1):
        out = out.reshape(b)
    if tuple(out.shape) != (b,):
        raise ValueError(f"expected critic to return one value per sample, shape ({b},) or ({b}, 1), got "
                         f"{tuple(out.shape)}")
    return out


def critic_gradient(critic: Critic, x: Tensor, create_graph: bool = True) -> CriticGradient:
    """D(x), the per-sample input gradient ∇ₓD(x) and its norm ‖∇ₓD(x)‖ (flattened over all but the batch axis).

    The gradient is that of Σ_i D(x_i) w.r.t. x, which is per sample for a critic that treats samples independently
    (no BatchNorm). ``create_graph=True`` (the default) keeps it differentiable, so a loss built on it backpropagates
    into the critic's parameters and, when x is the generator's output, into the generator (double backward). A
    ``x`` that does not require grad is detached and made to require it. kexue.fm/archives/8757."""
    _check_critic(critic)
    x = _check_input("x", x)
    return _input_gradient(critic, x, check_bool("create_graph", create_graph))


def _input_gradient(critic: Critic, x: Tensor, create_graph: bool = True) -> CriticGradient:
    if not x.requires_grad:
        x = x.detach().requires_grad_(True)
    value = _critic_values(critic, x)
    if not value.requires_grad:
        raise ValueError("expected the critic's output to depend on x through autograd, got an output without grad "
                         "(a critic that detaches, or a call under torch.no_grad())")
    (grad,) = torch.autograd.grad(value.sum(), x, create_graph=create_graph, allow_unused=True)
    if grad is None:  # a constant critic: its gradient is zero
        grad = torch.zeros_like(x)
    return CriticGradient(value, grad, grad.flatten(1).norm(dim=1))


def _normalize(cg: CriticGradient, x: Tensor, mode: CriticNorm, eps: float) -> Tensor:
    d, g = cg.value, cg.grad_norm
    if mode == "gn":
        return d / (g + d.abs())
    if mode == "gran":
        return d * g / (g * g + eps)
    if mode == "eps":
        return d / (g + eps)
    return (cg.grad.flatten(1) * x.flatten(1)).sum(dim=1) / (g + eps)


def gradient_normalized(critic: Critic, x: Tensor, mode: CriticNorm = "gn", eps: float = 1e-8) -> Tensor:
    """The normalised critic D̂(x), shape (batch,), from the raw critic D and g = ‖∇ₓD(x)‖ (kexue.fm/archives/8757):

    - ``"gn"`` (GN-GAN): D̂ = D/(g + |D|), in [−1, 1] (``eps`` unused; 0/0 only where D = 0 and ∇D = 0);
    - ``"gran"`` (GraN-GAN): D̂ = D·g/(g² + ε), unbounded for a tiny ε;
    - ``"eps"``: D̂ = D/(g + ε); with ε = 0 the ideal D/‖∇D‖, of unit gradient norm inside a linear region;
    - ``"inner"`` (Su's variant): D̂ = ⟨∇ₓD, x⟩/(g + ε).

    The gradient is taken with ``create_graph=True`` (see :func:`critic_gradient`), so D̂ backpropagates into the
    critic and, through x, into the generator."""
    _check_critic(critic)
    x = _check_input("x", x)
    check_choice("mode", mode, CriticNorm)
    eps = check_float("eps", eps, low=0.0)
    return _normalize(_input_gradient(critic, x), x, mode, eps)


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, weight: float = 10.0, t: Tensor | None = None,
                     generator: torch.Generator | None = None) -> Tensor:
    """WGAN-GP's penalty λ·mean_i (‖∇ₓD(x̂_i)‖ − 1)², x̂_i = t_i·real_i + (1 − t_i)·fake_i (Gulrajani et al. 2017; the
    post's reference, kexue.fm/archives/8757), a scalar that backpropagates into the critic's parameters.

    ``real, fake``: batches of one shape (detached here: the penalty trains the critic only). ``weight``: λ ≥ 0
    (10 in WGAN-GP). ``t``: the mixing weights (batch,) in [0, 1]; by default drawn U(0, 1) with ``generator``."""
    _check_critic(critic)
    real, fake = _check_input("real", real), _check_input("fake", fake)
    if real.shape != fake.shape:
        raise ValueError(f"expected real and fake of one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    weight = check_float("weight", weight, low=0.0)
    check_generator("generator", generator)
    b = real.shape[0]
    if t is not None:
        t = _check_tensor("t", t)
        if tuple(t.shape) != (b,):
            raise ValueError(f"expected t of shape ({b},) (one weight per sample), got {tuple(t.shape)}")
        if not bool(((t >= 0) & (t <= 1)).all()):  # NaN fails both comparisons
            raise ValueError(f"expected t in [0, 1], got values from {float(t.min()):g} to {float(t.max()):g}")
    return _penalty(critic, real, fake, weight, t, generator)


def _penalty(critic: Critic, real: Tensor, fake: Tensor, weight: float, t: Tensor | None,
             generator: torch.Generator | None) -> Tensor:
    b = real.shape[0]
    if t is None:
        t = torch.rand(b, generator=generator, dtype=real.dtype, device=real.device)
    tt = t.detach().reshape(b, *([1] * (real.dim() - 1)))
    x_hat = tt * real.detach() + (1 - tt) * fake.detach()
    return weight * ((_input_gradient(critic, x_hat).grad_norm - 1) ** 2).mean()


def _check_values(name: str, d: object) -> Tensor:
    d = _check_tensor(name, d)
    if d.dim() != 1:
        raise ValueError(f"expected {name} of shape (batch,), one critic value per sample, got {tuple(d.shape)}")
    return _check_finite(name, d)


def wgan_losses(d_real: Tensor, d_fake: Tensor) -> WGANLosses:
    """The WGAN losses from critic values (batch,): critic E[D(fake)] − E[D(real)], generator −E[D(fake)]
    (kexue.fm/archives/8757). For the generator step pass values of D(G(z)) not detached from G."""
    d_real, d_fake = _check_values("d_real", d_real), _check_values("d_fake", d_fake)  # finite too
    return WGANLosses(d_fake.mean() - d_real.mean(), -d_fake.mean())


def _critic_output(critic: Critic, x: Tensor, method: CriticMethod, eps: float) -> Tensor:
    if method == "gp":
        return _critic_values(critic, x)
    return _normalize(_input_gradient(critic, x), x, method, eps)


def critic_loss(critic: Critic, real: Tensor, fake: Tensor, method: CriticMethod = "gn", eps: float = 1e-8,
                gp_weight: float = 10.0, generator: torch.Generator | None = None) -> CriticLoss:
    """The critic's loss for one step: −(E[D̂(real)] − E[D̂(fake)]) with D̂ the normalised critic of ``method``
    (see :func:`gradient_normalized`), or for ``"gp"`` with the raw critic plus :func:`gradient_penalty` (weight
    ``gp_weight``, mixing weights drawn with ``generator``). ``fake`` is detached (the step trains the critic only);
    the normalised critics still differentiate through ∇ₓD (double backward). kexue.fm/archives/8757."""
    _check_critic(critic)
    check_choice("method", method, CriticMethod)
    eps = check_float("eps", eps, low=0.0)
    gp_weight = check_float("gp_weight", gp_weight, low=0.0)
    real, fake = _check_input("real", real), _check_input("fake", fake)
    check_generator("generator", generator)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"expected real and fake samples of one shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    fake = fake.detach()
    d = _critic_output(critic, torch.cat([real.detach(), fake]), method, eps)
    wasserstein = d[: real.shape[0]].mean() - d[real.shape[0]:].mean()
    if method == "gp":
        n = min(real.shape[0], fake.shape[0])
        penalty = _penalty(critic, real[:n], fake[:n], gp_weight, None, generator)
    else:
        penalty = torch.zeros((), dtype=d.dtype, device=d.device)
    return CriticLoss(penalty - wasserstein, wasserstein.detach(), penalty.detach())


def generator_loss(critic: Critic, fake: Tensor, method: CriticMethod = "gn", eps: float = 1e-8) -> Tensor:
    """The generator's loss −E[D̂(G(z))] (raw D for ``"gp"``), a scalar that backpropagates through the critic (and,
    for the normalised critics, through ∇ₓD: double backward) into the generator. ``fake`` must be G's output,
    still attached to G's graph. kexue.fm/archives/8757."""
    _check_critic(critic)
    check_choice("method", method, CriticMethod)
    eps = check_float("eps", eps, low=0.0)
    fake = _check_input("fake", fake)
    if not fake.requires_grad:
        raise ValueError("expected fake to be the generator's output (requires_grad), got a tensor without grad: the "
                         "loss would not reach the generator")
    return -_critic_output(critic, fake, method, eps).mean()


def _mlp(in_dim: int, out_dim: int, hidden_dim: int, depth: int, negative_slope: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim), nn.LeakyReLU(negative_slope)]
    layers.append(nn.Linear(hidden_dim if depth else in_dim, out_dim))
    return layers


def _check_mlp(**kw: int) -> None:
    for name, v in kw.items():
        check_int(name, v, minimum=0 if name == "depth" else 1)


def mlp_critic(in_dim: int = 2, hidden_dim: int = 128, depth: int = 2, negative_slope: float = 0.2) -> nn.Sequential:
    """A piecewise-linear critic for flat inputs: ``depth`` hidden Linear + LeakyReLU(``negative_slope``) layers, a
    Linear to one unit, flattened to shape (batch,). No normalisation layers (the GN theory needs a piecewise-linear
    critic that treats samples independently). The post's experiments: 2 hidden layers of 128, slope 0.2."""
    _check_mlp(in_dim=in_dim, hidden_dim=hidden_dim, depth=depth)
    slope = check_float("negative_slope", negative_slope, low=0.0)
    return nn.Sequential(*_mlp(in_dim, 1, hidden_dim, depth, slope), nn.Flatten(0))


def mlp_generator(latent_dim: int = 2, out_dim: int = 2, hidden_dim: int = 128, depth: int = 2,
                  negative_slope: float = 0.2) -> nn.Sequential:
    """A generator z ↦ G(z): ``depth`` hidden Linear + LeakyReLU(``negative_slope``) layers and a Linear to
    ``out_dim`` (2 for the mixtures)."""
    _check_mlp(latent_dim=latent_dim, out_dim=out_dim, hidden_dim=hidden_dim, depth=depth)
    slope = check_float("negative_slope", negative_slope, low=0.0)
    return nn.Sequential(*_mlp(latent_dim, out_dim, hidden_dim, depth, slope))


def mixture_modes(name: GaussianMixture = "8gaussians", scale: float = 2.0) -> Tensor:
    """The component means (k, 2), float32: ``"8gaussians"``, 8 points on the circle of radius ``scale`` at angles
    2πi/8; ``"25gaussians"``, the 5 × 5 grid {−2, −1, 0, 1, 2}²·``scale`` (the WGAN-GP/VEEGAN toys, scale 2)."""
    check_choice("name", name, GaussianMixture)
    scale = check_float("scale", scale, low=0.0, low_open=True)
    if name == "8gaussians":
        a = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        modes = torch.stack([a.cos(), a.sin()], dim=1)
    else:
        g = torch.arange(-2, 3, dtype=torch.float64)
        modes = torch.cartesian_prod(g, g)
    return (modes * scale).float()


def sample_mixture(name: GaussianMixture, n: int, std: float = 0.05, scale: float = 2.0,
                   generator: torch.Generator | None = None) -> MixtureSample:
    """``n`` points (float32) of the equal-weight mixture of isotropic Gaussians N(μ_k, std²·I) around
    :func:`mixture_modes`; the same ``generator`` state gives the same points."""
    modes = mixture_modes(name, scale)
    n = check_int("n", n, minimum=1)
    std = check_float("std", std, low=0.0)
    check_generator("generator", generator)
    idx = torch.randint(len(modes), (n,), generator=generator)
    return MixtureSample(modes[idx] + std * torch.randn(n, 2, generator=generator), idx)


def mode_coverage(samples: Tensor, modes: Tensor, std: float = 0.05, k: float = 3.0,
                  min_count: int = 1) -> ModeCoverage:
    """Mode metrics of generated 2-D (any-D) ``samples`` (n, d) against the mixture's ``modes`` (m, d): a sample is
    high quality when within k·``std`` of its nearest mode; a mode is covered when at least ``min_count`` high-quality
    samples are nearest to it (the VEEGAN/PacGAN protocol; the post's runs use 3σ = 0.15)."""
    samples = _check_finite("samples", _check_tensor("samples", samples))
    modes = _check_finite("modes", _check_tensor("modes", modes))
    if samples.dim() != 2 or modes.dim() != 2 or samples.shape[1] != modes.shape[1]:
        raise ValueError(f"expected samples (n, d) and modes (m, d) of one dimension d, got {tuple(samples.shape)} "
                         f"and {tuple(modes.shape)}")
    std = check_float("std", std, low=0.0, low_open=True)
    k = check_float("k", k, low=0.0, low_open=True)
    min_count = check_int("min_count", min_count, minimum=1)
    dist, nearest = torch.cdist(samples.double(), modes.to(samples.device).double()).min(dim=1)
    good = dist <= k * std
    counts = torch.bincount(nearest[good], minlength=len(modes))
    return ModeCoverage(int((counts >= min_count).sum()), len(modes), float(good.double().mean()), counts)


def sample_w2(samples: Tensor, target: Tensor) -> float:
    """The 2-Wasserstein distance between two empirical distributions of n points each (uniform weights):
    W₂ = (min over permutations σ of (1/n)·Σᵢ ‖xᵢ − y_σ(i)‖²)^½, exact, by the assignment problem
    (``scipy.optimize.linear_sum_assignment``, O(n³): a few thousand points). For generated points against fresh
    target samples; two independent target samples give the floor (the sampling noise of W₂ at this n)."""
    samples = _check_finite("samples", _check_tensor("samples", samples))
    target = _check_finite("target", _check_tensor("target", target))
    if samples.dim() != 2 or samples.shape != target.shape:
        raise ValueError(f"expected samples and target of one shape (n, d), got {tuple(samples.shape)} and "
                         f"{tuple(target.shape)}")
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(samples.detach().double().cpu(), target.detach().double().cpu(),
                       compute_mode="donot_use_mm_for_euclid_dist").square().numpy()  # exact 0 for equal points
    rows, cols = linear_sum_assignment(cost)
    return math.sqrt(float(cost[rows, cols].mean()))


__all__ = ["CRITIC_METHODS", "CRITIC_NORMS", "GAUSSIAN_MIXTURES", "CriticGradient", "CriticLoss", "CriticMethod",
           "CriticNorm", "GaussianMixture", "MixtureSample", "ModeCoverage", "WGANLosses", "critic_gradient",
           "critic_loss", "generator_loss", "gradient_normalized", "gradient_penalty", "mixture_modes", "mlp_critic",
           "mlp_generator", "mode_coverage", "sample_mixture", "sample_w2", "wgan_losses"]
