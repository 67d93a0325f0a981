"""Bad-input rows: kexue.generative's WGAN pieces (gradient normalisation, the gradient penalty, the losses, the MLPs,
the 2-D mixtures and their mode metrics; kexue.fm/archives/8757)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.generative import (
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

NAN = float("nan")
X = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
Y = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
XN = X.clone()
XN[1, 0] = NAN
D = mlp_critic(hidden_dim=8)
G = mlp_generator(hidden_dim=8)
MODES = mixture_modes()
V = torch.randn(4)


def _wide(x: torch.Tensor) -> torch.Tensor:  # a critic with three outputs per sample
    return x @ torch.ones(2, 3)


def _detached(x: torch.Tensor) -> torch.Tensor:  # a critic that cuts the graph
    return x.detach().sum(dim=1)


ROWS = [
    # critic_gradient
    Bad("kexue.generative.critic_gradient", "critic not callable", lambda: critic_gradient("D", X), TypeError,
        r"expected critic to be callable \(an nn\.Module mapping x to D\(x\)\), got str"),
    Bad("kexue.generative.critic_gradient", "1-D x (no batch axis)", lambda: critic_gradient(D, X[0]), ValueError,
        r"expected x with at least 2 dimension\(s\) \(batch first\), got shape \(2,\)"),
    Bad("kexue.generative.critic_gradient", "integer x", lambda: critic_gradient(D, X.long()), TypeError,
        r"expected x to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.generative.critic_gradient", "x with NaN (else NaN gradients)", lambda: critic_gradient(D, XN),
        ValueError, r"expected x to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.critic_gradient", "empty x", lambda: critic_gradient(D, X[:0]), ValueError,
        r"expected x to be non-empty, got shape \(0, 2\)"),
    Bad("kexue.generative.critic_gradient", "a critic with 3 outputs per sample", lambda: critic_gradient(_wide, X),
        ValueError, r"expected critic to return one value per sample, shape \(4,\) or \(4, 1\), got \(4, 3\)"),
    Bad("kexue.generative.critic_gradient", "a critic returning a list",
        lambda: critic_gradient(lambda x: x.sum(dim=1).tolist(), X), TypeError,
        r"expected critic to return a torch\.Tensor, got list"),
    Bad("kexue.generative.critic_gradient", "a critic that detaches (autograd.grad would fail obscurely)",
        lambda: critic_gradient(_detached, X), ValueError,
        r"expected the critic's output to depend on x through autograd, got an output without grad"),
    Bad("kexue.generative.critic_gradient", "create_graph a string", lambda: critic_gradient(D, X, create_graph="no"),
        TypeError, r"expected create_graph to be a bool, got 'no'"),
    # gradient_normalized
    Bad("kexue.generative.gradient_normalized", "unknown mode", lambda: gradient_normalized(D, X, mode="gp"),
        ValueError, r"expected mode to be one of \['gn', 'gran', 'eps', 'inner'\], got 'gp'"),
    Bad("kexue.generative.gradient_normalized", "eps negative", lambda: gradient_normalized(D, X, eps=-1e-8),
        ValueError, r"expected eps >= 0\.0, got -1e-08"),
    Bad("kexue.generative.gradient_normalized", "eps NaN", lambda: gradient_normalized(D, X, mode="gran", eps=NAN),
        ValueError, r"expected eps to be finite, got nan"),
    Bad("kexue.generative.gradient_normalized", "x a list", lambda: gradient_normalized(D, X.tolist()), TypeError,
        r"expected x to be a torch\.Tensor, got list"),
    Bad("kexue.generative.gradient_normalized", "critic None", lambda: gradient_normalized(None, X), TypeError,
        r"expected critic to be callable .*got NoneType"),
    # gradient_penalty
    Bad("kexue.generative.gradient_penalty", "real and fake of different batch sizes",
        lambda: gradient_penalty(D, X, Y[:3]), ValueError,
        r"expected real and fake of one shape, got \(4, 2\) and \(3, 2\)"),
    Bad("kexue.generative.gradient_penalty", "weight negative", lambda: gradient_penalty(D, X, Y, weight=-10.0),
        ValueError, r"expected weight >= 0\.0, got -10\.0"),
    Bad("kexue.generative.gradient_penalty", "t of the wrong shape", lambda: gradient_penalty(D, X, Y, t=torch.rand(3)),
        ValueError, r"expected t of shape \(4,\) \(one weight per sample\), got \(3,\)"),
    Bad("kexue.generative.gradient_penalty", "t outside [0, 1] (extrapolates)",
        lambda: gradient_penalty(D, X, Y, t=torch.tensor([0.0, 0.5, 1.5, 1.0])), ValueError,
        r"expected t in \[0, 1\], got values from 0 to 1\.5"),
    Bad("kexue.generative.gradient_penalty", "fake with NaN", lambda: gradient_penalty(D, X, XN), ValueError,
        r"expected fake to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.gradient_penalty", "generator a seed", lambda: gradient_penalty(D, X, Y, generator=0),
        TypeError, r"expected generator to be a torch\.Generator or None, got int"),
    # wgan_losses
    Bad("kexue.generative.wgan_losses", "d_fake of shape (batch, 1)", lambda: wgan_losses(V, V[:, None]), ValueError,
        r"expected d_fake of shape \(batch,\), one critic value per sample, got \(4, 1\)"),
    Bad("kexue.generative.wgan_losses", "empty d_real (else NaN)", lambda: wgan_losses(V[:0], V), ValueError,
        r"expected d_real to be non-empty, got shape \(0,\)"),
    Bad("kexue.generative.wgan_losses", "integer d_real", lambda: wgan_losses(V.long(), V), TypeError,
        r"expected d_real to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.generative.wgan_losses", "d_fake with inf", lambda: wgan_losses(V, torch.tensor([1.0, float("inf")])),
        ValueError, r"expected d_fake to be finite, got 1 NaN or infinite entries"),
    # critic_loss
    Bad("kexue.generative.critic_loss", "unknown method", lambda: critic_loss(D, X, Y, method="wgan-gp"), ValueError,
        r"expected method to be one of \['gn', 'gran', 'eps', 'inner', 'gp'\], got 'wgan-gp'"),
    Bad("kexue.generative.critic_loss", "samples of different dimensions",
        lambda: critic_loss(D, X, torch.randn(4, 3)), ValueError,
        r"expected real and fake samples of one shape, got \(4, 2\) and \(4, 3\)"),
    Bad("kexue.generative.critic_loss", "gp_weight negative", lambda: critic_loss(D, X, Y, method="gp", gp_weight=-1),
        ValueError, r"expected gp_weight >= 0\.0, got -1"),
    Bad("kexue.generative.critic_loss", "eps negative", lambda: critic_loss(D, X, Y, method="eps", eps=-0.1),
        ValueError, r"expected eps >= 0\.0, got -0\.1"),
    Bad("kexue.generative.critic_loss", "real with NaN", lambda: critic_loss(D, XN, Y), ValueError,
        r"expected real to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.critic_loss", "real a numpy array", lambda: critic_loss(D, X.numpy(), Y), TypeError,
        r"expected real to be a torch\.Tensor, got ndarray"),
    Bad("kexue.generative.critic_loss", "generator a string", lambda: critic_loss(D, X, Y, "gp", generator="0"),
        TypeError, r"expected generator to be a torch\.Generator or None, got str"),
    # generator_loss
    Bad("kexue.generative.generator_loss", "fake detached from G (the loss would not reach it)",
        lambda: generator_loss(D, G(X).detach()), ValueError,
        r"expected fake to be the generator's output \(requires_grad\), got a tensor without grad"),
    Bad("kexue.generative.generator_loss", "unknown method", lambda: generator_loss(D, G(X), method="GN"), ValueError,
        r"expected method to be one of \['gn', 'gran', 'eps', 'inner', 'gp'\], got 'GN'"),
    Bad("kexue.generative.generator_loss", "1-D fake", lambda: generator_loss(D, G(X)[0]), ValueError,
        r"expected fake with at least 2 dimension\(s\) \(batch first\), got shape \(2,\)"),
    Bad("kexue.generative.generator_loss", "eps infinite", lambda: generator_loss(D, G(X), "gran", float("inf")),
        ValueError, r"expected eps to be finite, got inf"),
    # mlp_critic, mlp_generator
    Bad("kexue.generative.mlp_critic", "in_dim 0", lambda: mlp_critic(in_dim=0), ValueError,
        r"expected in_dim >= 1, got 0"),
    Bad("kexue.generative.mlp_critic", "depth negative", lambda: mlp_critic(depth=-1), ValueError,
        r"expected depth >= 0, got -1"),
    Bad("kexue.generative.mlp_critic", "hidden_dim a float", lambda: mlp_critic(hidden_dim=128.0), TypeError,
        r"expected hidden_dim to be an integer, got 128\.0"),
    Bad("kexue.generative.mlp_critic", "negative_slope negative", lambda: mlp_critic(negative_slope=-0.2),
        ValueError, r"expected negative_slope >= 0\.0, got -0\.2"),
    Bad("kexue.generative.mlp_generator", "latent_dim 0", lambda: mlp_generator(latent_dim=0), ValueError,
        r"expected latent_dim >= 1, got 0"),
    Bad("kexue.generative.mlp_generator", "out_dim a string", lambda: mlp_generator(out_dim="2"), TypeError,
        r"expected out_dim to be an integer, got '2'"),
    Bad("kexue.generative.mlp_generator", "negative_slope NaN", lambda: mlp_generator(negative_slope=NAN), ValueError,
        r"expected negative_slope to be finite, got nan"),
    # mixture_modes, sample_mixture
    Bad("kexue.generative.mixture_modes", "unknown name", lambda: mixture_modes("8"), ValueError,
        r"expected name to be one of \['8gaussians', '25gaussians'\], got '8'"),
    Bad("kexue.generative.mixture_modes", "scale 0 (every mode at the origin)", lambda: mixture_modes(scale=0.0),
        ValueError, r"expected scale > 0\.0, got 0\.0"),
    Bad("kexue.generative.mixture_modes", "scale a string", lambda: mixture_modes(scale="2"), TypeError,
        r"expected scale to be a real number, got '2'"),
    Bad("kexue.generative.sample_mixture", "n 0", lambda: sample_mixture("8gaussians", 0), ValueError,
        r"expected n >= 1, got 0"),
    Bad("kexue.generative.sample_mixture", "n a float", lambda: sample_mixture("8gaussians", 1e3), TypeError,
        r"expected n to be an integer, got 1000\.0"),
    Bad("kexue.generative.sample_mixture", "std negative", lambda: sample_mixture("25gaussians", 8, std=-0.05),
        ValueError, r"expected std >= 0\.0, got -0\.05"),
    Bad("kexue.generative.sample_mixture", "unknown name", lambda: sample_mixture("25-gaussians", 8), ValueError,
        r"expected name to be one of \['8gaussians', '25gaussians'\], got '25-gaussians'"),
    Bad("kexue.generative.sample_mixture", "generator a seed", lambda: sample_mixture("8gaussians", 8, generator=3),
        TypeError, r"expected generator to be a torch\.Generator or None, got int"),
    # mode_coverage
    Bad("kexue.generative.mode_coverage", "samples and modes of different dimensions",
        lambda: mode_coverage(torch.randn(5, 3), MODES), ValueError,
        r"expected samples \(n, d\) and modes \(m, d\) of one dimension d, got \(5, 3\) and \(8, 2\)"),
    Bad("kexue.generative.mode_coverage", "1-D samples", lambda: mode_coverage(V, MODES), ValueError,
        r"expected samples \(n, d\) and modes \(m, d\) of one dimension d, got \(4,\) and \(8, 2\)"),
    Bad("kexue.generative.mode_coverage", "samples with NaN (a diverged generator)",
        lambda: mode_coverage(XN, MODES), ValueError, r"expected samples to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.mode_coverage", "empty samples (else NaN)", lambda: mode_coverage(X[:0], MODES),
        ValueError, r"expected samples to be non-empty, got shape \(0, 2\)"),
    Bad("kexue.generative.mode_coverage", "std 0", lambda: mode_coverage(X, MODES, std=0.0), ValueError,
        r"expected std > 0\.0, got 0\.0"),
    Bad("kexue.generative.mode_coverage", "k negative", lambda: mode_coverage(X, MODES, k=-3), ValueError,
        r"expected k > 0\.0, got -3"),
    Bad("kexue.generative.mode_coverage", "min_count 0 (every mode covered)",
        lambda: mode_coverage(X, MODES, min_count=0), ValueError, r"expected min_count >= 1, got 0"),
    Bad("kexue.generative.mode_coverage", "modes a list", lambda: mode_coverage(X, MODES.tolist()), TypeError,
        r"expected modes to be a torch\.Tensor, got list"),
    # sample_w2
    Bad("kexue.generative.sample_w2", "different numbers of points (no uniform assignment)",
        lambda: sample_w2(X, Y[:3]), ValueError,
        r"expected samples and target of one shape \(n, d\), got \(4, 2\) and \(3, 2\)"),
    Bad("kexue.generative.sample_w2", "1-D samples", lambda: sample_w2(V, V), ValueError,
        r"expected samples and target of one shape \(n, d\), got \(4,\) and \(4,\)"),
    Bad("kexue.generative.sample_w2", "target with NaN (scipy would raise 'matrix contains invalid numeric entries')",
        lambda: sample_w2(X, XN), ValueError, r"expected target to be finite, got 1 NaN or infinite entries"),
    Bad("kexue.generative.sample_w2", "empty samples", lambda: sample_w2(X[:0], Y[:0]), ValueError,
        r"expected samples to be non-empty, got shape \(0, 2\)"),
    Bad("kexue.generative.sample_w2", "integer target", lambda: sample_w2(X, Y.long()), TypeError,
        r"expected target to be a floating-point tensor, got torch\.int64"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
