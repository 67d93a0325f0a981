"""SimSiam: the symmetric stop-gradient loss, a small model, a collapse measure and the post's toy dynamics.

Post: "从动力学角度看优化算法（六）：为什么SimSiam不退化？" (Optimization algorithms from a dynamics viewpoint (6):
why does SimSiam not collapse?), 2020-12-11, https://kexue.fm/archives/7980. The model is Chen & He, "Exploring
Simple Siamese Representation Learning" (arXiv 2011.10566).

- Loss: with z_i = f(x_i) (encoder) and p_i = h(z_i) (predictor) for two augmentations x₁, x₂ of one input,
  L = ½[D(p₁, sg(z₂)) + D(p₂, sg(z₁))], D(p, z) = −⟨p, z⟩/(‖p‖‖z‖) averaged over the batch; sg is the
  stop-gradient, applied to the target branch z only (the predictor branch p keeps its gradient).
- Collapse: std over samples of the L2-normalised outputs z/‖z‖, averaged over the d coordinates, times √d. For
  outputs spread like an isotropic Gaussian each coordinate of z/‖z‖ has variance 1/d, so the measure is ≈ 1; for a
  collapsed encoder (every row the same direction) it is 0. The loss cannot show collapse: collapsed runs reach the
  lowest loss, −1.
- The post's toy (scalars, l = ½(φθ − θ)², predictor φ, encoder θ): gradient flow dφ/dt = −∂l/∂h·∂h/∂φ =
  −(φθ − θ)θ and dθ/dt = −(φθ − θ)φ through the predictor only (stop-gradient), plus the direct term +(φθ − θ) without
  it (``"full"``), or the direct term alone (``"direct_only"``). Exact invariants (checked in the tests): φ² − θ²
  with stop-gradient (so from (0.6, 0.1): φ → 1, θ → √0.65), (φ − 1)² − θ² with the full gradient (θ → 0,
  φ → 1 − √0.15), φ + θ²/2 with the direct term alone (θ → 0, φ → 0.605). The post presents the argument as a
  heuristic, not a proof.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_int

ToyMode = Literal["stopgrad", "full", "direct_only"]
TOY_MODES: tuple[ToyMode, ...] = get_args(ToyMode)

#: The most Euler steps :func:`toy_dynamics` takes (T/dt); beyond it the loop would run for minutes.
MAX_TOY_STEPS = 10_000_000


class SimSiamOutput(NamedTuple):
    """The two predictions and the two encodings of a pair of views: p_i = h(z_i), z_i = f(x_i)."""

    p1: Tensor
    p2: Tensor
    z1: Tensor
    z2: Tensor


class ToyTrajectory(NamedTuple):
    """The toy's trajectory: times t₀ = 0, ..., T and φ, θ at those times (float64 arrays of one length)."""

    t: np.ndarray
    phi: np.ndarray
    theta: np.ndarray


def _check_batch(name: str, x: object) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected {name} to be a floating-point tensor, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"expected {name} of shape (batch, dim), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"expected {name} to be non-empty, got shape {tuple(x.shape)}")
    return x


def _neg_cosine(p: Tensor, z: Tensor) -> Tensor:
    """D(p, z) = −mean over rows of cos(p, z)."""
    return -F.cosine_similarity(p, z, dim=-1).mean()


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, stop_grad: bool = True) -> Tensor:
    """SimSiam's symmetric loss ½[D(p₁, sg(z₂)) + D(p₂, sg(z₁))], D the negative cosine similarity averaged over the
    batch (kexue.fm/archives/7980; Chen & He 2020, Algorithm 1).

    ``p1, p2, z1, z2``: (batch, dim) tensors of one shape, the predictions and encodings of the two views.
    ``stop_grad``: detach the targets z₁, z₂ (the default, SimSiam); ``False`` lets gradients flow into z through
    the targets as well (the "full gradient" that collapses). The predictions always keep their gradient, and z
    still receives gradient through p = h(z) in the model. Ranges over [−1, 1]; −1 is perfect alignment (also the
    value a collapsed encoder reaches, so use :func:`collapse_std` to see collapse).
    """
    xs = [_check_batch(n, x) for n, x in (("p1", p1), ("p2", p2), ("z1", z1), ("z2", z2))]
    shapes = [tuple(x.shape) for x in xs]
    if len(set(shapes)) != 1:
        raise ValueError(f"expected p1, p2, z1, z2 of one shape, got {', '.join(str(s) for s in shapes)}")
    stop_grad = check_bool("stop_grad", stop_grad)
    t1, t2 = (z1.detach(), z2.detach()) if stop_grad else (z1, z2)
    return 0.5 * (_neg_cosine(p1, t2) + _neg_cosine(p2, t1))


def collapse_std(z: Tensor) -> Tensor:
    """√d · mean over coordinates of std over samples of z/‖z‖ (a 0-dim tensor), for ``z`` of shape (N, d), N ≥ 2.

    ≈ 1 for healthy outputs (isotropic Gaussian rows give exactly 1 in expectation: each coordinate of a unit vector
    has variance 1/d), 0 when every row points the same way (collapse). The std is the sample std (N − 1); a zero row
    normalises to the zero vector. Chen & He 2020 (Fig. 2) plot the same std without the √d; the post
    (kexue.fm/archives/7980) is about why SimSiam stays away from 0.
    """
    z = _check_batch("z", z)
    if z.shape[0] < 2:
        raise ValueError(f"expected z with at least 2 rows (a std over samples), got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"expected z to be finite, got {int((~torch.isfinite(z)).sum())} NaN or infinite entries")
    u = F.normalize(z, dim=1)
    return u.std(dim=0).mean() * math.sqrt(z.shape[1])


def mlp_encoder(in_dim: int = 64, hidden_dim: int = 256, out_dim: int = 64) -> nn.Sequential:
    """The spec's small encoder f: Linear(in→hidden) → BN → ReLU → Linear(hidden→out) → BN (the linear layers before
    a BatchNorm have no bias: BN's shift replaces it), as SimSiam's projector ends in BN."""
    in_dim, hidden_dim, out_dim = (check_int(n, v, minimum=1) for n, v in
                                   (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)))
    return nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim))


def mlp_predictor(dim: int = 64, hidden_dim: int = 32) -> nn.Sequential:
    """The predictor h with a bottleneck hidden layer and BatchNorm (SimSiam's predictor needs both): Linear(dim →
    hidden) → BN → ReLU → Linear(hidden → dim)."""
    dim, hidden_dim = check_int("dim", dim, minimum=1), check_int("hidden_dim", hidden_dim, minimum=1)
    return nn.Sequential(nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                         nn.Linear(hidden_dim, dim))


class SimSiam(nn.Module):
    """An encoder f and a predictor h applied to two views: ``forward(x1, x2)`` returns
    :class:`SimSiamOutput` (p₁, p₂, z₁, z₂) with z_i = f(x_i), p_i = h(z_i); feed it to :func:`simsiam_loss`
    (``simsiam_loss(*model(x1, x2))``). For the ablation without a predictor pass ``nn.Identity()``
    (kexue.fm/archives/7980; :func:`mlp_encoder` and :func:`mlp_predictor` build the small MLPs of the
    reproduction)."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        for name, m in (("encoder", encoder), ("predictor", predictor)):
            if not isinstance(m, nn.Module):
                raise TypeError(f"expected {name} to be a torch.nn.Module, got {type(m).__name__}")
        self.encoder = encoder
        self.predictor = predictor

    def forward(self, x1: Tensor, x2: Tensor) -> SimSiamOutput:
        for name, x in (("x1", x1), ("x2", x2)):
            if not isinstance(x, Tensor):
                raise TypeError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
        if x1.shape != x2.shape:
            raise ValueError(f"expected x1 and x2 (two views of one batch) of one shape, got {tuple(x1.shape)} and "
                             f"{tuple(x2.shape)}")
        z1, z2 = self.encoder(x1), self.encoder(x2)
        return SimSiamOutput(self.predictor(z1), self.predictor(z2), z1, z2)


def _rates(phi: float, theta: float, mode: ToyMode) -> tuple[float, float]:
    """(dφ/dt, dθ/dt) of the toy l = ½(φθ − θ)² (module docstring)."""
    r = phi * theta - theta  # ∂l/∂h, h = φθ the prediction
    dphi = -r * theta
    via_h = -r * phi  # ∂l/∂h · ∂h/∂θ
    direct = r  # −∂l/∂f with f = θ the target
    dtheta = via_h if mode == "stopgrad" else via_h + direct if mode == "full" else direct
    return dphi, dtheta


def toy_dynamics(phi0: float = 0.6, theta0: float = 0.1, mode: ToyMode = "stopgrad", T: float = 20.0,
                 dt: float = 1e-3) -> ToyTrajectory:
    """Integrate the post's toy gradient flow for l = ½(φθ − θ)² by explicit Euler from (φ₀, θ₀) up to time T.

    - ``"stopgrad"``: dφ/dt = −(φθ − θ)θ, dθ/dt = −(φθ − θ)φ (the target θ detached: only the path through the
      predictor h = φθ).
    - ``"full"``: dθ/dt gains the direct term +(φθ − θ), i.e. dθ/dt = −θ(φ − 1)².
    - ``"direct_only"``: dθ/dt = +(φθ − θ) alone (φ as above).

    Steps of ``dt`` (the last one shortened to end at T); Euler's error is O(dt), so dt = 1e-3 keeps the invariants
    of the module docstring to about 1e-3 (kexue.fm/archives/7980, whose plots use such a step).
    """
    phi = check_float("phi0", phi0)
    theta = check_float("theta0", theta0)
    check_choice("mode", mode, ToyMode)
    T = check_float("T", T, low=0.0, low_open=True)
    dt = check_float("dt", dt, low=0.0, low_open=True)
    n = math.ceil(T / dt - 1e-9)
    if n > MAX_TOY_STEPS:
        raise ValueError(f"expected T/dt <= {MAX_TOY_STEPS:,} Euler steps, got T = {T:g}, dt = {dt:g} ({n:,} steps)")
    t = np.minimum(np.arange(n + 1, dtype=np.float64) * dt, T)
    phis = np.empty(n + 1)
    thetas = np.empty(n + 1)
    phis[0], thetas[0] = phi, theta
    for k in range(n):
        h = float(t[k + 1] - t[k])  # Python floats: an overflow is inf, caught below
        dphi, dtheta = _rates(phi, theta, mode)
        phi, theta = phi + h * dphi, theta + h * dtheta
        if not (math.isfinite(phi) and math.isfinite(theta)):
            raise ValueError(f"expected a finite trajectory, got φ = {phi}, θ = {theta} at t = {t[k + 1]:g} (the flow "
                             f"diverges from phi0 = {phi0}, theta0 = {theta0}; try a smaller dt)")
        phis[k + 1], thetas[k + 1] = phi, theta
    return ToyTrajectory(t, phis, thetas)


__all__ = ["MAX_TOY_STEPS", "TOY_MODES", "SimSiam", "SimSiamOutput", "ToyMode", "ToyTrajectory", "collapse_std",
           "mlp_encoder", "mlp_predictor", "simsiam_loss", "toy_dynamics"]
