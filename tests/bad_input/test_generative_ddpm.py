"""Bad-input rows: kexue.generative's DDPM (schedules, loss, reverse step, sampler, time embedding, denoisers)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.generative import (
    ConvDenoiser,
    MLPDenoiser,
    Schedule,
    SinusoidalTimeEmbedding,
    ddpm_loss,
    ddpm_sample,
    ddpm_step,
)

NAN, INF = float("nan"), float("inf")
S = Schedule.su(10)
X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
V = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
STEPS = torch.tensor([1, 2, 3, 4])
MLP = MLPDenoiser(3, hidden=8, depth=1, time_dim=4)
CONV = ConvDenoiser(1, width=8, depth=1, time_dim=4)
EMB = SinusoidalTimeEmbedding(4)


def zero(x, t):
    return torch.zeros_like(x)


def flat(x, t):  # drops the trailing dims: the wrong output shape
    return torch.zeros(x.shape[0], 1)


def _with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x.view(-1)[3] = NAN
    return x


ROWS = [
    # Schedule(alpha)
    Bad("kexue.generative.Schedule", "alpha a list", lambda: Schedule([0.9, 0.8]), TypeError,
        r"expected alpha to be a torch\.Tensor, got list"),
    Bad("kexue.generative.Schedule", "alpha = 1 (β = 0)", lambda: Schedule(torch.tensor([0.9, 1.0])), ValueError,
        r"expected every alpha in \(0, 1\), got 1\.0 at step 2"),
    Bad("kexue.generative.Schedule", "alpha nan", lambda: Schedule(torch.tensor([NAN, 0.9])), ValueError,
        r"expected every alpha in \(0, 1\), got nan at step 1"),
    Bad("kexue.generative.Schedule", "alpha 2-D", lambda: Schedule(torch.full((2, 3), 0.9)), ValueError,
        r"expected alpha of shape \(T,\), got shape \(2, 3\)"),
    Bad("kexue.generative.Schedule", "alpha empty", lambda: Schedule(torch.zeros(0)), ValueError,
        r"expected alpha to be non-empty, got shape \(0,\)"),
    Bad("kexue.generative.Schedule", "alpha integer", lambda: Schedule(torch.tensor([1, 2])), TypeError,
        r"expected alpha to be a floating-point tensor, got torch\.int64"),
    # Schedule.su
    Bad("kexue.generative.Schedule.su", "steps = 0", lambda: Schedule.su(0), ValueError,
        r"expected steps >= 1, got 0"),
    Bad("kexue.generative.Schedule.su", "steps a float", lambda: Schedule.su(100.0), TypeError,
        r"expected steps to be an integer, got 100\.0"),
    Bad("kexue.generative.Schedule.su", "scale = 1 (α_T = 0)", lambda: Schedule.su(10, scale=1.0), ValueError,
        r"expected scale < 1\.0, got 1\.0"),
    Bad("kexue.generative.Schedule.su", "scale nan", lambda: Schedule.su(10, scale=NAN), ValueError,
        r"expected scale to be finite, got nan"),
    # Schedule.rescaled
    Bad("kexue.generative.Schedule.rescaled", "alpha_bar_T = 0", lambda: Schedule.rescaled(10, alpha_bar_T=0.0),
        ValueError, r"expected alpha_bar_T > 0\.0, got 0\.0"),
    Bad("kexue.generative.Schedule.rescaled", "alpha_bar_T = 1", lambda: Schedule.rescaled(10, alpha_bar_T=1),
        ValueError, r"expected alpha_bar_T < 1\.0, got 1"),
    Bad("kexue.generative.Schedule.rescaled", "steps negative", lambda: Schedule.rescaled(-5), ValueError,
        r"expected steps >= 1, got -5"),
    # Schedule.linear
    Bad("kexue.generative.Schedule.linear", "beta_end = 1", lambda: Schedule.linear(10, beta_end=1.0), ValueError,
        r"expected beta_end < 1\.0, got 1\.0"),
    Bad("kexue.generative.Schedule.linear", "beta_start = 0", lambda: Schedule.linear(10, beta_start=0), ValueError,
        r"expected beta_start > 0\.0, got 0"),
    Bad("kexue.generative.Schedule.linear", "steps a string", lambda: Schedule.linear("10"), TypeError,
        r"expected steps to be an integer, got '10'"),
    # Schedule.cosine
    Bad("kexue.generative.Schedule.cosine", "offset negative", lambda: Schedule.cosine(10, offset=-0.1), ValueError,
        r"expected offset >= 0\.0, got -0\.1"),
    Bad("kexue.generative.Schedule.cosine", "max_beta = 1", lambda: Schedule.cosine(10, max_beta=1.0), ValueError,
        r"expected max_beta < 1\.0, got 1\.0"),
    Bad("kexue.generative.Schedule.cosine", "steps = 0", lambda: Schedule.cosine(0), ValueError,
        r"expected steps >= 1, got 0"),
    # Schedule.from_paper
    Bad("kexue.generative.Schedule.from_paper", "beta = 1", lambda: Schedule.from_paper(torch.tensor([0.1, 1.0])),
        ValueError, r"expected every beta in \(0, 1\), got 1\.0 at step 2"),
    Bad("kexue.generative.Schedule.from_paper", "beta = 0", lambda: Schedule.from_paper(torch.tensor([0.0, 0.1])),
        ValueError, r"expected every beta in \(0, 1\), got 0\.0 at step 1"),
    Bad("kexue.generative.Schedule.from_paper", "beta a numpy array",
        lambda: Schedule.from_paper(torch.ones(3).numpy() * 0.1), TypeError,
        r"expected beta to be a torch\.Tensor, got ndarray"),
    Bad("kexue.generative.Schedule.from_paper", "beta 2-D", lambda: Schedule.from_paper(torch.full((2, 2), 0.1)),
        ValueError, r"expected beta of shape \(T,\), got shape \(2, 2\)"),
    # Schedule.sigma
    Bad("kexue.generative.Schedule.sigma", "unknown kind", lambda: S.sigma("large"), ValueError,
        r"expected kind to be one of \['beta', 'posterior', 'zero'\], got 'large'"),
    # Schedule.diffuse
    Bad("kexue.generative.Schedule.diffuse", "t = 0 (steps run 1..T)", lambda: S.diffuse(X, 0, X), ValueError,
        r"expected t >= 1, got 0"),
    Bad("kexue.generative.Schedule.diffuse", "t tensor beyond T", lambda: S.diffuse(X, torch.tensor([1, 2, 3, 11]), X),
        ValueError, r"expected t in 1\.\.10, got values from 1 to 11"),
    Bad("kexue.generative.Schedule.diffuse", "t float tensor", lambda: S.diffuse(X, STEPS.float(), X), ValueError,
        r"expected t to be an integer tensor of shape \(4,\), got torch\.float32"),
    Bad("kexue.generative.Schedule.diffuse", "t of another batch size", lambda: S.diffuse(X, STEPS[:3], X),
        ValueError, r"expected t to be an integer tensor of shape \(4,\), got torch\.int64 of shape \(3,\)"),
    Bad("kexue.generative.Schedule.diffuse", "noise of another shape", lambda: S.diffuse(X, 1, X[:2]), ValueError,
        r"expected x0 and noise of one shape \(batch, \.\.\.\), got \(4, 1, 8, 8\) and \(2, 1, 8, 8\)"),
    Bad("kexue.generative.Schedule.diffuse", "x0 with nan (else a NaN x_t)", lambda: S.diffuse(_with_nan(X), 1, X),
        ValueError, r"expected x0 to be finite, got 1 non-finite values"),
    # ddpm_loss
    Bad("kexue.generative.ddpm_loss", "unknown parametrization", lambda: ddpm_loss(zero, X, S, "eps"), ValueError,
        r"expected parametrization to be one of \['paper', 'su'\], got 'eps'"),
    Bad("kexue.generative.ddpm_loss", "unknown reduction", lambda: ddpm_loss(zero, X, S, reduction="avg"),
        ValueError, r"expected reduction to be one of \['mean', 'sum', 'none'\], got 'avg'"),
    Bad("kexue.generative.ddpm_loss", "model output of another shape", lambda: ddpm_loss(flat, X, S), ValueError,
        r"expected the model output of shape \(4, 1, 8, 8\) \(that of x_t\), got \(4, 1\)"),
    Bad("kexue.generative.ddpm_loss", "model not callable", lambda: ddpm_loss("net", X, S), TypeError,
        r"expected model to be callable as model\(x_t, t\), got str"),
    Bad("kexue.generative.ddpm_loss", "schedule a tensor", lambda: ddpm_loss(zero, X, S.alpha), TypeError,
        r"expected schedule to be a Schedule, got Tensor"),
    Bad("kexue.generative.ddpm_loss", "1-D x0", lambda: ddpm_loss(zero, X.flatten(), S), ValueError,
        r"expected x0 of shape \(batch, \.\.\.\) with at least 2 dims, got shape \(256,\)"),
    Bad("kexue.generative.ddpm_loss", "t out of range", lambda: ddpm_loss(zero, X, S, t=STEPS + 7), ValueError,
        r"expected t in 1\.\.10, got values from 8 to 11"),
    Bad("kexue.generative.ddpm_loss", "x0 with nan", lambda: ddpm_loss(zero, _with_nan(X), S), ValueError,
        r"expected x0 to be finite, got 1 non-finite values"),
    Bad("kexue.generative.ddpm_loss", "noise of another shape", lambda: ddpm_loss(zero, X, S, noise=X[:, :, :4]),
        ValueError, r"expected x0 and noise of one shape .*got \(4, 1, 8, 8\) and \(4, 1, 4, 8\)"),
    # ddpm_step
    Bad("kexue.generative.ddpm_step", "t = 0", lambda: ddpm_step(X, X, 0, S), ValueError,
        r"expected t >= 1, got 0"),
    Bad("kexue.generative.ddpm_step", "t > T", lambda: ddpm_step(X, X, 11, S), ValueError,
        r"expected t <= 10, got 11"),
    Bad("kexue.generative.ddpm_step", "model_output of another shape", lambda: ddpm_step(X[:2], X, 3, S), ValueError,
        r"expected the model output of shape \(4, 1, 8, 8\) \(that of x_t\), got \(2, 1, 8, 8\)"),
    Bad("kexue.generative.ddpm_step", "noise of another shape", lambda: ddpm_step(X, X, 3, S, noise=V), ValueError,
        r"expected noise of shape \(4, 1, 8, 8\) \(that of x_t\), got \(4, 3\)"),
    Bad("kexue.generative.ddpm_step", "unknown sigma", lambda: ddpm_step(X, X, 3, S, sigma="large"), ValueError,
        r"expected sigma to be one of \['beta', 'posterior', 'zero'\], got 'large'"),
    Bad("kexue.generative.ddpm_step", "integer x_t", lambda: ddpm_step(X, X.long(), 3, S), TypeError,
        r"expected x_t to be a floating-point tensor, got torch\.int64"),
    # ddpm_sample
    Bad("kexue.generative.ddpm_sample", "shape an int", lambda: ddpm_sample(zero, S, 4), ValueError,
        r"expected shape to be a tuple \(batch, \.\.\.\), got 4"),
    Bad("kexue.generative.ddpm_sample", "empty batch", lambda: ddpm_sample(zero, S, (0, 3)), ValueError,
        r"expected shape\[0\] >= 1, got 0"),
    Bad("kexue.generative.ddpm_sample", "unknown sigma", lambda: ddpm_sample(zero, S, (2, 3), sigma="1"), ValueError,
        r"expected sigma to be one of \['beta', 'posterior', 'zero'\], got '1'"),
    Bad("kexue.generative.ddpm_sample", "unknown parametrization",
        lambda: ddpm_sample(zero, S, (2, 3), parametrization="eps"), ValueError,
        r"expected parametrization to be one of \['paper', 'su'\], got 'eps'"),
    Bad("kexue.generative.ddpm_sample", "progress a string", lambda: ddpm_sample(zero, S, (2, 3), progress="no"),
        TypeError, r"expected progress to be a bool, got 'no'"),
    Bad("kexue.generative.ddpm_sample", "model output of another shape", lambda: ddpm_sample(flat, S, (2, 3)),
        ValueError, r"expected the model output of shape \(2, 3\) \(that of x_t\), got \(2, 1\)"),
    Bad("kexue.generative.ddpm_sample", "schedule an int", lambda: ddpm_sample(zero, 10, (2, 3)), TypeError,
        r"expected schedule to be a Schedule, got int"),
    # SinusoidalTimeEmbedding
    Bad("kexue.generative.SinusoidalTimeEmbedding", "odd dim", lambda: SinusoidalTimeEmbedding(5), ValueError,
        r"expected dim to be even, got 5"),
    Bad("kexue.generative.SinusoidalTimeEmbedding", "dim = 0", lambda: SinusoidalTimeEmbedding(0), ValueError,
        r"expected dim >= 2, got 0"),
    Bad("kexue.generative.SinusoidalTimeEmbedding", "max_period = 1", lambda: SinusoidalTimeEmbedding(4, 1.0),
        ValueError, r"expected max_period > 1\.0, got 1\.0"),
    Bad("kexue.generative.SinusoidalTimeEmbedding.forward", "t 2-D", lambda: EMB(STEPS[:, None]), ValueError,
        r"expected t of shape \(batch,\) holding numbers, got torch\.int64 of shape \(4, 1\)"),
    Bad("kexue.generative.SinusoidalTimeEmbedding.forward", "t a list", lambda: EMB([1, 2]), TypeError,
        r"expected t to be a torch\.Tensor, got list"),
    # MLPDenoiser
    Bad("kexue.generative.MLPDenoiser", "dim = 0", lambda: MLPDenoiser(0), ValueError, r"expected dim >= 1, got 0"),
    Bad("kexue.generative.MLPDenoiser", "odd time_dim", lambda: MLPDenoiser(3, time_dim=7), ValueError,
        r"expected dim to be even, got 7"),
    Bad("kexue.generative.MLPDenoiser", "depth a float", lambda: MLPDenoiser(3, depth=2.0), TypeError,
        r"expected depth to be an integer, got 2\.0"),
    Bad("kexue.generative.MLPDenoiser.forward", "x of another width", lambda: MLP(V[:, :2], STEPS), ValueError,
        r"expected x of shape \(batch, 3\), got shape \(4, 2\)"),
    Bad("kexue.generative.MLPDenoiser.forward", "t of another batch size", lambda: MLP(V, STEPS[:2]), ValueError,
        r"expected t of shape \(4,\) \(one step per row of x\), got \(2,\)"),
    Bad("kexue.generative.MLPDenoiser.forward", "images given to the MLP", lambda: MLP(X, STEPS), ValueError,
        r"expected x of shape \(batch, dim\), got shape \(4, 1, 8, 8\)"),
    # ConvDenoiser
    Bad("kexue.generative.ConvDenoiser", "channels = 0", lambda: ConvDenoiser(0), ValueError,
        r"expected channels >= 1, got 0"),
    Bad("kexue.generative.ConvDenoiser", "width negative", lambda: ConvDenoiser(1, width=-8), ValueError,
        r"expected width >= 1, got -8"),
    Bad("kexue.generative.ConvDenoiser.forward", "flat x", lambda: CONV(V, STEPS), ValueError,
        r"expected x of shape \(batch, channels, H, W\), got shape \(4, 3\)"),
    Bad("kexue.generative.ConvDenoiser.forward", "3 channels for a 1-channel net",
        lambda: CONV(X.expand(4, 3, 8, 8), STEPS), ValueError, r"expected x with 1 channels, got shape \(4, 3, 8, 8\)"),
    Bad("kexue.generative.ConvDenoiser.forward", "t a float", lambda: CONV(X, 3.0), TypeError,
        r"expected t to be a torch\.Tensor, got float"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
