"""DDPM in Su's notation: noise schedules, the loss in both parametrisations, sampling, a time embedding, denoisers.

Post: "生成扩散模型漫谈（一）：DDPM = 拆楼 + 建楼" (Generative diffusion models (1): DDPM = demolition + rebuilding),
2022-06-13, https://kexue.fm/archives/9119. The model is Ho, Jain & Abbeel, "Denoising Diffusion Probabilistic
Models" (arXiv 2006.11239).

- Notation (the post's, which clashes with the paper's): α_t² + β_t² = 1, forward step x_t = α_t·x_{t−1} + β_t·ε_t;
  ᾱ_t = Π_{s≤t} α_s, β̄_t = √(1 − ᾱ_t²), skip form x_t = ᾱ_t·x₀ + β̄_t·ε. The paper's β_t^paper = β_t²,
  α_t^paper = α_t², ᾱ_t^paper = ᾱ_t² (:meth:`Schedule.to_paper`, :meth:`Schedule.from_paper`).
- Steps run t = 1..T; tensors indexed by step hold step t at index t − 1. A model is called ``model(x_t, t)`` with
  ``t`` a (batch,) int64 tensor of steps in 1..T.
- Loss, t ~ U{1..T}, ε ~ N(0, I), x_t = ᾱ_t x₀ + β̄_t ε: the paper's L = ‖ε − ε̂(x_t, t)‖² (the network predicts the
  noise) and the post's L = ‖ε − (β̄_t/β_t)·ε_θ(x_t, t)‖²; with ε̂ = (β̄_t/β_t)·ε_θ the two are the same number.
- Reverse step: x_{t−1} = (x_t − β_t·ε_θ)/α_t + σ_t z = (x_t − (β_t²/β̄_t)·ε̂)/α_t + σ_t z, with σ_t = β_t (the post),
  the posterior std β_t·β̄_{t−1}/β̄_t, or 0 (greedy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_int
from ..env import interactive

Parametrization = Literal["paper", "su"]
PARAMETRIZATIONS: tuple[Parametrization, ...] = get_args(Parametrization)
Sigma = Literal["beta", "posterior", "zero"]
SIGMAS: tuple[Sigma, ...] = get_args(Sigma)
Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[Reduction, ...] = get_args(Reduction)

Denoiser = Callable[[Tensor, Tensor], Tensor]


class PaperSchedule(NamedTuple):
    """A schedule in the paper's notation (float64, step t at index t − 1): β_t, α_t = 1 − β_t, ᾱ_t = Π α_s."""

    beta: Tensor
    alpha: Tensor
    alpha_bar: Tensor


def _check_tensor(name: str, x: object, floating: bool = True) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if floating and not x.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"expected {name} to be non-empty, got shape {tuple(x.shape)}")
    return x


class Schedule:
    """A noise schedule in the post's notation, from α_t (t = 1..T): β_t = √(1 − α_t²), ᾱ_t = Π_{s≤t} α_s,
    β̄_t = √(1 − ᾱ_t²), all float64 tensors of length T (kexue.fm/archives/9119).

    ``alpha``: a 1-D tensor of α_1..α_T, each in (0, 1). Build one with :meth:`su` (the post's), :meth:`rescaled`
    (small T), :meth:`linear` and :meth:`cosine` (the paper's and Nichol & Dhariwal's) or :meth:`from_paper`."""

    def __init__(self, alpha: Tensor) -> None:
        alpha = _check_tensor("alpha", alpha)
        if alpha.dim() != 1:
            raise ValueError(f"expected alpha of shape (T,), got shape {tuple(alpha.shape)}")
        alpha = alpha.detach().to(torch.float64).cpu()
        bad = ~((alpha > 0) & (alpha < 1))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"expected every alpha in (0, 1), got {alpha[i].item()!r} at step {i + 1}")
        self.alpha = alpha
        self.beta = torch.sqrt(1 - alpha**2)
        self.alpha_bar = torch.cumprod(alpha, 0)
        self.beta_bar = torch.sqrt(1 - self.alpha_bar**2)
        prev = torch.cat([self.beta_bar.new_zeros(1), self.beta_bar[:-1]])
        # the reverse step's numbers as floats (index t − 1): α_t, the model output's coefficient, σ_t
        self._alphas: list[float] = alpha.tolist()
        self._coefs: dict[str, list[float]] = {"su": self.beta.tolist(),
                                               "paper": (self.beta**2 / self.beta_bar).tolist()}
        self._sigmas: dict[str, list[float]] = {"beta": self.beta.tolist(), "zero": [0.0] * len(alpha),
                                                "posterior": (self.beta * prev / self.beta_bar).tolist()}

    @property
    def steps(self) -> int:
        """T, the number of steps."""
        return len(self.alpha)

    def __repr__(self) -> str:
        return f"Schedule(T={self.steps}, alpha_bar_T={self.alpha_bar[-1].item():.4g})"

    @classmethod
    def su(cls, steps: int = 1000, scale: float = 0.02) -> Schedule:
        """The post's schedule α_t = √(1 − scale·t/T), t = 1..T (scale 0.02, Su's rewriting of the paper's linear
        one). Calibrated for T = 1000 (ᾱ_T = 0.00648 ≈ e⁻⁵); at small T, x_T is far from noise: use :meth:`rescaled`."""
        steps = check_int("steps", steps, minimum=1)
        scale = check_float("scale", scale, low=0.0, high=1.0, low_open=True, high_open=True)
        t = torch.arange(1, steps + 1, dtype=torch.float64)
        return cls(torch.sqrt(1 - scale * t / steps))

    @classmethod
    def rescaled(cls, steps: int, alpha_bar_T: float = math.exp(-5)) -> Schedule:
        """The post's linear form α_t = √(1 − c·t/T) with c chosen (bisection) so that ᾱ_T = ``alpha_bar_T``
        (default e⁻⁵, what Su's c = 0.02 gives at T = 1000), for small T (spec 06 §1)."""
        steps = check_int("steps", steps, minimum=1)
        target = check_float("alpha_bar_T", alpha_bar_T, low=0.0, high=1.0, low_open=True, high_open=True)
        t = torch.arange(1, steps + 1, dtype=torch.float64) / steps
        lo, hi = 0.0, 1.0  # log ᾱ_T(c) = ½ Σ log(1 − c·t/T) decreases in c, to −∞ at c = 1
        for _ in range(200):
            c = (lo + hi) / 2
            if 0.5 * torch.log1p(-c * t).sum().item() > math.log(target):
                lo = c
            else:
                hi = c
        return cls(torch.sqrt(1 - lo * t))

    @classmethod
    def linear(cls, steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
        """The paper's linear schedule: β_t^paper evenly from ``beta_start`` to ``beta_end``; α_t = √(1 − β_t^paper)."""
        steps = check_int("steps", steps, minimum=1)
        start = check_float("beta_start", beta_start, low=0.0, high=1.0, low_open=True, high_open=True)
        end = check_float("beta_end", beta_end, low=0.0, high=1.0, low_open=True, high_open=True)
        return cls.from_paper(torch.linspace(start, end, steps, dtype=torch.float64))

    @classmethod
    def cosine(cls, steps: int, offset: float = 0.008, max_beta: float = 0.999) -> Schedule:
        """Nichol & Dhariwal's cosine schedule (arXiv 2102.09672): ᾱ_t^paper = f(t)/f(0), f(t) = cos²(π/2·(t/T + s)/
        (1 + s)), s = ``offset``; β_t^paper = min(1 − ᾱ_t^paper/ᾱ_{t−1}^paper, ``max_beta``)."""
        steps = check_int("steps", steps, minimum=1)
        s = check_float("offset", offset, low=0.0)
        cap = check_float("max_beta", max_beta, low=0.0, high=1.0, low_open=True, high_open=True)
        f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s) * math.pi / 2) ** 2
        return cls.from_paper(torch.clamp(1 - f[1:] / f[:-1], max=cap))

    @classmethod
    def from_paper(cls, beta: Tensor) -> Schedule:
        """From the paper's β_t^paper (t = 1..T, each in (0, 1)): α_t = √(1 − β_t^paper), β_t = √β_t^paper."""
        beta = _check_tensor("beta", beta)
        if beta.dim() != 1:
            raise ValueError(f"expected beta of shape (T,), got shape {tuple(beta.shape)}")
        bad = ~((beta > 0) & (beta < 1))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"expected every beta in (0, 1), got {beta[i].item()!r} at step {i + 1}")
        return cls(torch.sqrt(1 - beta.detach().to(torch.float64)))

    def to_paper(self) -> PaperSchedule:
        """The paper's notation: β_t^paper = β_t², α_t^paper = α_t², ᾱ_t^paper = ᾱ_t² (the post's ᾱ is the paper's
        √ᾱ)."""
        return PaperSchedule(self.beta**2, self.alpha**2, self.alpha_bar**2)

    def sigma(self, kind: Sigma = "beta") -> Tensor:
        """σ_t for t = 1..T (float64): ``"beta"`` β_t (the post; the paper's σ_t² = β_t^paper), ``"posterior"``
        β_t·β̄_{t−1}/β̄_t (β̄_0 = 0; the paper's β̃_t), ``"zero"`` 0 (greedy)."""
        return torch.tensor(self._sigmas[check_choice("kind", kind, Sigma)], dtype=torch.float64)

    def _steps_tensor(self, t: Tensor | int, batch: int) -> Tensor:
        if isinstance(t, Tensor):
            if t.dtype.is_floating_point or t.dtype == torch.bool or t.shape != (batch,):
                raise ValueError(f"expected t to be an integer tensor of shape ({batch},), got {t.dtype} of shape "
                                 f"{tuple(t.shape)}")
            if t.min() < 1 or t.max() > self.steps:
                raise ValueError(f"expected t in 1..{self.steps}, got values from {t.min().item()} to {t.max().item()}")
            return t.long()
        return torch.full((batch,), check_int("t", t, minimum=1, maximum=self.steps), dtype=torch.long)

    def diffuse(self, x0: Tensor, t: Tensor | int, noise: Tensor) -> Tensor:
        """The skip form x_t = ᾱ_t·x₀ + β̄_t·ε (kexue.fm/archives/9119), batched: ``x0`` and ``noise`` of one shape
        (batch, ...), ``t`` an int or a (batch,) integer tensor of steps in 1..T."""
        x0 = _check_tensor("x0", x0)
        noise = _check_tensor("noise", noise)
        if x0.shape != noise.shape or x0.dim() < 1:
            raise ValueError(f"expected x0 and noise of one shape (batch, ...), got {tuple(x0.shape)} and "
                             f"{tuple(noise.shape)}")
        for name, v in (("x0", x0), ("noise", noise)):
            if not torch.isfinite(v).all():
                raise ValueError(f"expected {name} to be finite, got {int((~torch.isfinite(v)).sum())} non-finite "
                                 f"values")
        i = self._steps_tensor(t, x0.shape[0]).cpu() - 1
        view = (-1,) + (1,) * (x0.dim() - 1)
        a = self.alpha_bar[i].to(x0).view(view)
        b = self.beta_bar[i].to(x0).view(view)
        return a * x0 + b * noise


def _check_model(model: object) -> None:
    if not callable(model):
        raise TypeError(f"expected model to be callable as model(x_t, t), got {type(model).__name__}")


def _check_output(out: object, x: Tensor) -> Tensor:
    if not isinstance(out, Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"expected the model output of shape {tuple(x.shape)} (that of x_t), got {got}")
    return out


def ddpm_loss(model: Denoiser, x0: Tensor, schedule: Schedule, parametrization: Parametrization = "paper", *,
              t: Tensor | None = None, noise: Tensor | None = None, generator: torch.Generator | None = None,
              reduction: Reduction = "mean") -> Tensor:
    """The DDPM loss (kexue.fm/archives/9119): x_t = ᾱ_t x₀ + β̄_t ε with t ~ U{1..T}, ε ~ N(0, I), and the squared
    error summed over all but the batch dimension:

    - ``"paper"`` (the network predicts the noise): L = ‖ε − ε̂(x_t, t)‖²;
    - ``"su"`` (the post's ε_θ, from μ(x_t) = (x_t − β_t ε_θ)/α_t): L = ‖ε − (β̄_t/β_t)·ε_θ(x_t, t)‖².

    Both are the variance-reduced form of the naive ‖x_{t−1} − μ(x_t)‖² = (β_t²/α_t²)‖ε_t − ε_θ‖² with the weight
    β_t²/α_t² dropped; with ε̂ = (β̄_t/β_t)·ε_θ they are the same number. ``t`` and ``noise`` fix the draws (else
    drawn from ``generator``, on x0's device); ``reduction`` over the batch: ``"mean"``, ``"sum"`` or ``"none"``
    (per sample)."""
    check_choice("parametrization", parametrization, Parametrization)
    check_choice("reduction", reduction, Reduction)
    _check_model(model)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"expected schedule to be a Schedule, got {type(schedule).__name__}")
    x0 = _check_tensor("x0", x0)
    if x0.dim() < 2:
        raise ValueError(f"expected x0 of shape (batch, ...) with at least 2 dims, got shape {tuple(x0.shape)}")
    batch = x0.shape[0]
    if t is None:
        t = torch.randint(1, schedule.steps + 1, (batch,), generator=generator, device=x0.device)
    t = schedule._steps_tensor(t, batch)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    x_t = schedule.diffuse(x0, t, noise)
    out = _check_output(model(x_t, t.to(x0.device)), x_t)
    if parametrization == "su":
        view = (-1,) + (1,) * (x0.dim() - 1)
        out = out * (schedule.beta_bar / schedule.beta)[t.cpu() - 1].to(out).view(view)
    per_sample = (noise - out).pow(2).flatten(1).sum(1)
    if reduction == "none":
        return per_sample
    return per_sample.sum() if reduction == "sum" else per_sample.mean()


def _reverse(model_output: Tensor, x_t: Tensor, i: int, schedule: Schedule, parametrization: Parametrization,
             sigma: Sigma, noise: Tensor | None) -> Tensor:
    """x_{t−1} = (x_t − c_t·out)/α_t + σ_t·z at i = t − 1 (checked arguments): a new tensor, then in place."""
    x = torch.add(x_t, model_output, alpha=-schedule._coefs[parametrization][i]).div_(schedule._alphas[i])
    if noise is not None:
        x = x.add_(noise, alpha=schedule._sigmas[sigma][i]) if noise.dtype == x.dtype else \
            x + schedule._sigmas[sigma][i] * noise
    return x


def ddpm_step(model_output: Tensor, x_t: Tensor, t: int, schedule: Schedule,
              parametrization: Parametrization = "paper", sigma: Sigma = "beta",
              noise: Tensor | None = None) -> Tensor:
    """One rebuilding step t → t − 1 (kexue.fm/archives/9119), batched over x_t's first dimension:
    x_{t−1} = (x_t − β_t·ε_θ)/α_t + σ_t·z (``"su"``) = (x_t − (β_t²/β̄_t)·ε̂)/α_t + σ_t·z (``"paper"``), where
    ``model_output`` is ε_θ or ε̂ at (x_t, t), z = ``noise`` (nothing added when None) and σ_t from
    :meth:`Schedule.sigma`. The ``"paper"`` mean equals the paper's (and diffusers') posterior mean."""
    check_choice("parametrization", parametrization, Parametrization)
    check_choice("sigma", sigma, Sigma)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"expected schedule to be a Schedule, got {type(schedule).__name__}")
    x_t = _check_tensor("x_t", x_t)
    model_output = _check_output(_check_tensor("model_output", model_output), x_t)
    i = check_int("t", t, minimum=1, maximum=schedule.steps) - 1
    if noise is not None:
        noise = _check_tensor("noise", noise)
        if noise.shape != x_t.shape:
            raise ValueError(f"expected noise of shape {tuple(x_t.shape)} (that of x_t), got {tuple(noise.shape)}")
    return _reverse(model_output, x_t, i, schedule, parametrization, sigma, noise)


@torch.no_grad()
def ddpm_sample(model: Denoiser, schedule: Schedule, shape: tuple[int, ...],
                parametrization: Parametrization = "paper", sigma: Sigma = "beta", *,
                generator: torch.Generator | None = None, noise_at_last: bool = False,
                device: torch.device | str | None = None, dtype: torch.dtype = torch.float32,
                progress: bool | None = None) -> Tensor:
    """Sample x₀ by running :func:`ddpm_step` for t = T..1 from x_T ~ N(0, I) (kexue.fm/archives/9119).

    ``shape``: (batch, ...) of the samples. ``sigma``: σ_t = β_t (``"beta"``, the post), the posterior std or 0
    (greedy). ``noise_at_last``: add σ_1·z at the last step too (Su's Keras code does; the paper's Algorithm 2 and
    diffusers do not). All draws come from ``generator`` (on ``device``), so a seeded generator repeats the samples.
    ``progress``: a tqdm bar over the steps (default: when stderr is a terminal, :func:`kexue.env.interactive`).
    Arguments are checked once; a step is then three tensor ops and a draw into one buffer, no device sync
    (``benchmarks/generative.py`` times it against diffusers' scheduler loop)."""
    _check_model(model)
    if not isinstance(schedule, Schedule):
        raise TypeError(f"expected schedule to be a Schedule, got {type(schedule).__name__}")
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 1:
        raise ValueError(f"expected shape to be a tuple (batch, ...), got {shape!r}")
    shape = tuple(check_int(f"shape[{k}]", n, minimum=1) for k, n in enumerate(shape))
    check_choice("parametrization", parametrization, Parametrization)
    check_choice("sigma", sigma, Sigma)
    last = check_bool("noise_at_last", noise_at_last)
    show = interactive() if progress is None else check_bool("progress", progress)
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    z = None if sigma == "zero" else torch.empty_like(x)  # z.normal_ draws what torch.randn(shape) would
    steps = range(schedule.steps, 0, -1)
    if show:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="ddpm sample", unit="step", leave=False)
    for t in steps:
        out = _check_output(_check_tensor("model_output", model(x, torch.full((shape[0],), t, dtype=torch.long,
                                                                                  device=x.device))), x)
        noise = z.normal_(generator=generator) if z is not None and (t > 1 or last) else None
        x = _reverse(out, x, t - 1, schedule, parametrization, sigma, noise)
    return x


class SinusoidalTimeEmbedding(nn.Module):
    """The Transformer's sinusoids of a step t (the paper's time embedding; the post: "t enters through sinusoidal
    embeddings"): e(t) = [sin(t·ω_0), …, sin(t·ω_{h−1}), cos(t·ω_0), …, cos(t·ω_{h−1})], ω_k = P^{−k/h}, h = dim/2,
    P = ``max_period``. ``forward(t)``: t of shape (batch,), integer or float → (batch, dim) float32."""

    freqs: Tensor

    def __init__(self, dim: int, max_period: float = 10_000.0) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, minimum=2)
        if dim % 2:
            raise ValueError(f"expected dim to be even, got {dim}")
        period = check_float("max_period", max_period, low=1.0, low_open=True)
        half = dim // 2
        self.register_buffer("freqs", period ** (-torch.arange(half, dtype=torch.float32) / half), persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        t = _check_tensor("t", t, floating=False)
        if t.dim() != 1 or t.dtype == torch.bool:
            raise ValueError(f"expected t of shape (batch,) holding numbers, got {t.dtype} of shape {tuple(t.shape)}")
        angles = t.to(self.freqs.dtype)[:, None] * self.freqs
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _check_input(x: object, dims: int, what: str, t: object) -> tuple[Tensor, Tensor]:
    x = _check_tensor("x", x)
    if x.dim() != dims:
        raise ValueError(f"expected x of shape {what}, got shape {tuple(x.shape)}")
    t = _check_tensor("t", t, floating=False)
    if t.shape != (x.shape[0],):
        raise ValueError(f"expected t of shape ({x.shape[0]},) (one step per row of x), got {tuple(t.shape)}")
    return x, t


class _MLPBlock(nn.Module):
    """h + W₂ SiLU(W₁ SiLU(h) + E e)."""

    def __init__(self, hidden: int, time_dim: int) -> None:
        super().__init__()
        self.w1, self.emb, self.w2 = nn.Linear(hidden, hidden), nn.Linear(time_dim, hidden), nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        act = nn.functional.silu
        return h + self.w2(act(self.w1(act(h)) + self.emb(e)))


class _ConvBlock(nn.Module):
    """h + C₂ SiLU(GN(C₁ SiLU(GN(h)) + E e))."""

    def __init__(self, width: int, time_dim: int, groups: int) -> None:
        super().__init__()
        self.gn1, self.gn2 = nn.GroupNorm(groups, width), nn.GroupNorm(groups, width)
        self.c1, self.c2 = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)
        self.emb = nn.Linear(time_dim, width)

    def forward(self, h: Tensor, e: Tensor) -> Tensor:
        act = nn.functional.silu
        u = self.c1(act(self.gn1(h))) + self.emb(e)[:, :, None, None]
        return h + self.c2(act(self.gn2(u)))


class MLPDenoiser(nn.Module):
    """An MLP noise predictor for (batch, dim) inputs: h = W_in x, then ``depth`` residual blocks
    h ← h + W₂ SiLU(W₁ SiLU(h) + E(e(t))), out = W_out SiLU(h); e the sinusoidal embedding of t, E a per-block linear
    map (the post: the embedding enters inside the residual blocks). ``forward(x, t)`` → (batch, dim)."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, time_dim: int = 64) -> None:
        super().__init__()
        dim, hidden = check_int("dim", dim, minimum=1), check_int("hidden", hidden, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        self.embed = SinusoidalTimeEmbedding(time_dim)
        self.inp, self.out = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.blocks = nn.ModuleList(_MLPBlock(hidden, time_dim) for _ in range(depth))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        x, t = _check_input(x, 2, "(batch, dim)", t)
        if x.shape[1] != self.inp.in_features:
            raise ValueError(f"expected x of shape (batch, {self.inp.in_features}), got shape {tuple(x.shape)}")
        e, h = self.embed(t).to(x.dtype), self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.out(nn.functional.silu(h))


class ConvDenoiser(nn.Module):
    """A small convolutional noise predictor for (batch, channels, H, W) images (8×8 digits): a 3×3 convolution to
    ``width`` channels, ``depth`` residual blocks h ← h + C₂ SiLU(GN(C₁ SiLU(GN(h)) + E(e(t)))) with 3×3 convolutions
    C, GroupNorm GN and the sinusoidal time embedding e projected per block and added per channel, then a 3×3
    convolution back to ``channels``. ``forward(x, t)`` → the shape of x."""

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 2, time_dim: int = 64) -> None:
        super().__init__()
        channels, width = check_int("channels", channels, minimum=1), check_int("width", width, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        groups = math.gcd(width, 8)
        self.embed = SinusoidalTimeEmbedding(time_dim)
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.out = nn.Sequential(nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))
        self.blocks = nn.ModuleList(_ConvBlock(width, time_dim, groups) for _ in range(depth))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        x, t = _check_input(x, 4, "(batch, channels, H, W)", t)
        if x.shape[1] != self.inp.in_channels:
            raise ValueError(f"expected x with {self.inp.in_channels} channels, got shape {tuple(x.shape)}")
        e, h = self.embed(t).to(x.dtype), self.inp(x)
        for block in self.blocks:
            h = block(h, e)
        return self.out(h)


__all__ = ["PARAMETRIZATIONS", "REDUCTIONS", "SIGMAS", "ConvDenoiser", "MLPDenoiser", "PaperSchedule",
           "Parametrization", "Reduction", "Schedule", "Sigma", "SinusoidalTimeEmbedding", "ddpm_loss", "ddpm_sample",
           "ddpm_step"]
