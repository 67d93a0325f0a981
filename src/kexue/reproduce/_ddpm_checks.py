"""The math part of the `ddpm` reproduction (kexue.fm/archives/9119): the post's variance-reduction derivation, the
two parametrisations, the closed-form marginal q(x_t|x₀), diffusers parity and the post's numbers.

Each check returns its worst error and whether it is within its tolerance; :func:`math_checks` runs them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..generative.ddpm import MLPDenoiser, Schedule, ddpm_loss, ddpm_sample, ddpm_step

#: Tolerances: the spec's 1e-6 for the parametrisations' losses and gradients (float64 here, so far tighter in
#: practice), float64 round-off for identities, diffusers' steps relative to the values (diffusers keeps its schedule
#: in float32 and forms the mean through x̂₀: about 9e-6 at t = 2, the same with float64 inputs), and the Monte Carlo
#: z for the marginal.
GRAD_TOL, IDENTITY_TOL, PARITY_TOL, MC_Z = 1e-6, 1e-10, 5e-5, 4.0
PARITY_STEPS = 20
DIFFUSERS_INSTALL = "pip install 'kexue[test]' (or pip install diffusers)"


def _grads(loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def parametrisations(steps: int = 200, batch: int = 64) -> dict[str, float]:
    """Check (i) of the spec and the derivation behind it, in float64 on a random MLP ε_θ.

    - ``param_loss``/``param_grad``: the post's loss ‖ε − (β̄_t/β_t)ε_θ‖² and the paper's ‖ε − ε̂‖² with
      ε̂ = (β̄_t/β_t)·ε_θ: the largest difference of the losses and of the gradients (per sample).
    - ``rotation``: (ε, ω) = R·(ε̄_{t−1}, ε_t) with R = [[α_tβ̄_{t−1}, β_t], [β_t, −α_tβ̄_{t−1}]]/β̄_t is orthogonal
      for every t (so ε and ω are independent standard normals): max |RRᵀ − I|.
    - ``skip``: the two-step draw x_t = α_t(ᾱ_{t−1}x₀ + β̄_{t−1}ε̄_{t−1}) + β_tε_t equals ᾱ_tx₀ + β̄_tε.
    - ``naive_grad``: the naive loss ‖x_{t−1} − μ(x_t)‖², μ = (x_t − β_tε_θ)/α_t, is quadratic in ω with ε_θ not
      depending on ω, so its gradient averaged over ±ω is its expectation over ω exactly; it must equal the gradient
      of the post's loss weighted by (β_t²/α_t²)(β_t²/β̄_t²): the largest relative difference of the per-sample
      gradients."""
    s = Schedule.rescaled(steps)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    net = MLPDenoiser(3, hidden=32, depth=2, time_dim=16).double()
    params = list(net.parameters())
    ratio = s.beta_bar / s.beta

    def paper_net(x: Tensor, t: Tensor) -> Tensor:
        return ratio[t - 1].to(x)[:, None] * net(x, t)

    x0 = torch.randn(batch, 3, generator=g, dtype=torch.float64)
    t = torch.randint(1, steps + 1, (batch,), generator=g)
    t[:2] = torch.tensor([1, steps])  # the two ends of the chain
    eps = torch.randn(batch, 3, generator=g, dtype=torch.float64)
    omega = torch.randn(batch, 3, generator=g, dtype=torch.float64)
    out = {"param_loss": 0.0, "param_grad": 0.0, "naive_grad": 0.0, "skip": 0.0}
    for i in range(batch):
        xi, ti, ei, wi = x0[i:i + 1], t[i:i + 1], eps[i:i + 1], omega[i:i + 1]
        su = ddpm_loss(net, xi, s, "su", t=ti, noise=ei)
        paper = ddpm_loss(paper_net, xi, s, "paper", t=ti, noise=ei)
        g_su, g_paper = _grads(su, params), _grads(paper, params)
        out["param_loss"] = max(out["param_loss"], abs((su - paper).item()))
        out["param_grad"] = max(out["param_grad"], float((g_su - g_paper).abs().max()))
        k = int(ti) - 1
        a, b, bb = s.alpha[k].item(), s.beta[k].item(), s.beta_bar[k].item()
        ab_prev, bb_prev = (s.alpha_bar[k - 1].item(), s.beta_bar[k - 1].item()) if k else (1.0, 0.0)
        naive = []
        for w in (wi, -wi):
            eps_t = (b * ei - a * bb_prev * w) / bb
            eps_prev = (a * bb_prev * ei + b * w) / bb
            x_prev = ab_prev * xi + bb_prev * eps_prev
            x_t = a * x_prev + b * eps_t
            out["skip"] = max(out["skip"], float((x_t - s.diffuse(xi, ti, ei)).abs().max()))
            mu = (x_t - b * net(x_t, ti)) / a
            naive.append(_grads((x_prev - mu).pow(2).sum(), params))
        weight = (b**2 / a**2) * (b**2 / bb**2)
        mean = (naive[0] + naive[1]) / 2
        rel = float((mean - weight * g_su).abs().max() / (weight * g_su).abs().max().clamp_min(1e-300))
        out["naive_grad"] = max(out["naive_grad"], rel)
    ab_prev_all = torch.cat([torch.ones(1, dtype=torch.float64), s.alpha_bar[:-1]])
    bb_prev_all = torch.sqrt(1 - ab_prev_all**2)
    c = s.alpha * bb_prev_all / s.beta_bar
    d = s.beta / s.beta_bar
    r = torch.stack([torch.stack([c, d], -1), torch.stack([d, -c], -1)], -2)  # (T, 2, 2)
    out["rotation"] = float((r @ r.mT - torch.eye(2, dtype=torch.float64)).abs().max())
    return out


def marginal(schedule: Schedule, n: int, checkpoints: tuple[int, ...], seed: int = 0) -> list[dict[str, float]]:
    """Iterate x_t = α_t x_{t−1} + β_t ε_t (float64, ``n`` chains from each of four x₀ values) and compare the Monte
    Carlo mean and variance at each checkpoint with ᾱ_t·x₀ and β̄_t²: the largest |error| in standard errors
    (mean: β̄_t/√n; variance: β̄_t²·√(2/(n − 1)))."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.tensor([-2.0, -0.5, 0.7, 3.0], dtype=torch.float64)
    x = x0.expand(n, 4).clone()
    rows = []
    for t in range(1, schedule.steps + 1):
        x = schedule.alpha[t - 1] * x + schedule.beta[t - 1] * torch.randn(n, 4, generator=g, dtype=torch.float64)
        if t in checkpoints:
            ab, bb = schedule.alpha_bar[t - 1].item(), schedule.beta_bar[t - 1].item()
            mean_z = ((x.mean(0) - ab * x0).abs() / (bb / math.sqrt(n))).max().item()
            var_z = ((x.var(0) - bb**2).abs() / (bb**2 * math.sqrt(2 / (n - 1)))).max().item()
            rows.append({"t": t, "alpha_bar": ab, "beta_bar_sq": bb**2, "mean_z": mean_z, "var_z": var_z,
                         "mc_var": float(x.var(0).mean())})
    return rows


def _toy_model(x: Tensor, t: Tensor) -> Tensor:
    """A fixed nonlinear stand-in for ε̂ (so every step sees a different output)."""
    return torch.tanh(x * 0.7 + t.to(x).view(-1, *([1] * (x.dim() - 1))) / PARITY_STEPS) * 0.9


def diffusers_parity() -> dict[str, Any] | None:
    """diffusers' DDPMScheduler with trained_betas = 0.02·t/T (t = 1..T), variance_type="fixed_large",
    clip_sample=False against ours on Su's schedule with T = 20: ``add_noise`` against the skip form at every t,
    and every reverse step of a chain given the same x_t, model output and noise (σ_t = β_t; diffusers adds no noise
    at the last step). The largest absolute differences relative to the largest |value| (diffusers' schedule is
    float32), and diffusers' default linear schedule's √ᾱ_T^paper at T = 1000; ``None`` when diffusers is not
    installed."""
    try:
        import diffusers
    except ImportError:
        return None
    steps = PARITY_STEPS
    betas = (0.02 * torch.arange(1, steps + 1, dtype=torch.float64) / steps).numpy()
    d: Any = diffusers.DDPMScheduler(num_train_timesteps=steps, trained_betas=betas, variance_type="fixed_large",
                                clip_sample=False, prediction_type="epsilon")
    s = Schedule.su(steps)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(steps, 1, 8, 8, generator=g)
    noise = torch.randn(x0.shape, generator=g)
    t_all = torch.arange(1, steps + 1)
    ref_noise = d.add_noise(x0, noise, t_all - 1)
    add_noise = float((s.diffuse(x0, t_all, noise) - ref_noise).abs().max() / ref_noise.abs().max())
    d.set_timesteps(steps)
    x = torch.randn(4, 1, 8, 8, generator=g)
    step_err, n_steps = 0.0, 0
    for index in d.timesteps.tolist():
        t = index + 1
        eps_hat = _toy_model(x, torch.full((4,), t))
        ref = d.step(eps_hat, index, x, generator=torch.Generator().manual_seed(100 + t)).prev_sample
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + t)) if t > 1 else None
        ours = ddpm_step(eps_hat, x, t, s, "paper", "beta", z)
        step_err = max(step_err, float((ours - ref).abs().max() / ref.abs().max()))
        n_steps += 1
        x = ref
    default: Any = diffusers.DDPMScheduler(num_train_timesteps=1000)
    return {"add_noise": add_noise, "step": step_err, "steps_checked": n_steps, "version": diffusers.__version__,
            "default_alpha_bar_T": math.sqrt(float(default.alphas_cumprod[-1]))}


def post_numbers() -> dict[str, float]:
    """The post's claims about its hyperparameters: ᾱ_T of α_t = √(1 − 0.02t/T) at T = 1000 (≈ e⁻⁵) and the bound
    log ᾱ_T < −0.005(T + 1) at T = 1000, 200, 100 (the small-T pitfall), the paper's linear schedule (β^paper from
    1e−4 to 0.02) at T = 1000, the rescaled constant at T = 200, and the number of network calls of one sampling
    chain at T = 1000 (counted)."""
    out: dict[str, float] = {"e^-5": math.exp(-5)}
    for steps in (1000, 200, 100):
        ab = Schedule.su(steps).alpha_bar[-1].item()
        out[f"su_{steps}"] = ab
        out[f"bound_{steps}"] = -0.005 * (steps + 1)
    out["linear_1000"] = Schedule.linear(1000).alpha_bar[-1].item()
    r = Schedule.rescaled(200)
    out["rescaled_200"] = r.alpha_bar[-1].item()
    out["rescaled_200_c"] = float(1 - r.alpha[-1].item() ** 2)  # c in α_t = √(1 − c·t/T), read at t = T
    calls = [0]

    def counting(x: Tensor, t: Tensor) -> Tensor:
        calls[0] += 1
        return torch.zeros_like(x)

    ddpm_sample(counting, Schedule.su(1000), (1, 1), generator=torch.Generator().manual_seed(0), progress=False)
    out["calls_1000"] = float(calls[0])
    return out


def math_checks(quick: bool) -> dict[str, Any]:
    """All the math checks, their worst errors and one ``ok`` per check (``parity`` ``None``: diffusers missing)."""
    par = parametrisations()
    n = 20_000 if quick else 100_000
    marg = {"rescaled T = 200": marginal(Schedule.rescaled(200), n, (1, 10, 50, 100, 200)),
            "Su T = 1000": marginal(Schedule.su(1000), n // 4, (1, 100, 500, 1000), seed=1)}
    parity = diffusers_parity()
    numbers = post_numbers()
    ok = {
        "parametrisations": par["param_loss"] <= GRAD_TOL and par["param_grad"] <= GRAD_TOL,
        "derivation": par["rotation"] <= IDENTITY_TOL and par["skip"] <= IDENTITY_TOL
        and par["naive_grad"] <= GRAD_TOL,
        "marginal": all(r["mean_z"] <= MC_Z and r["var_z"] <= MC_Z for rows in marg.values() for r in rows),
        "post_numbers": abs(numbers["su_1000"] - 0.00648) < 5e-6 and numbers["calls_1000"] == 1000
        and all(math.log(numbers[f"su_{k}"]) < numbers[f"bound_{k}"] for k in (1000, 200, 100)),
    }
    parity_ok = None if parity is None else parity["add_noise"] <= PARITY_TOL and parity["step"] <= PARITY_TOL
    return {"parametrisations": par, "marginal": marg, "parity": parity, "numbers": numbers, "ok": ok,
            "parity_ok": parity_ok}
