"""The von Mises–Fisher distribution on the unit sphere S^{d−1}: its mean cosine A_d(κ) and a reparameterised sampler
(re-exported by :mod:`kexue.generative.univae` and :mod:`kexue.generative`).

Post: Su Jianlin, "变分自编码器（七）：球面上的VAE（vMF-VAE）" (VAE (7): a VAE on the sphere), 2021-05-17,
https://kexue.fm/archives/8404, used by UniVAE (https://kexue.fm/archives/8475).

- Density: p(z) ∝ exp(κ μᵀz) on ‖z‖ = 1, with mean direction μ (‖μ‖ = 1) and concentration κ ≥ 0 (κ = 0: uniform).
- The cosine w = μᵀz has the marginal density p(w) ∝ exp(κw)(1 − w²)^{(d−3)/2} on [−1, 1], whatever μ is, and the
  mean E[w] = A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ) (modified Bessel functions of the first kind).
- Reparameterisation (the post's): draw w from p(w), which does not depend on μ, draw ε ~ N(0, I_d), take the unit
  vector ν = (ε − (εᵀμ)μ)/‖ε − (εᵀμ)μ‖ orthogonal to μ (uniform on that great sphere), and return
  z = w·μ + √(1 − w²)·ν. The gradient reaches μ through the two terms; w carries none (κ is fixed).
- w is drawn by Wood's rejection algorithm (Wood 1994, "Simulation of the von Mises Fisher distribution", as the
  hyperspherical VAE of Davidson et al. 2018 uses it): b = (d−1)/(2κ + √(4κ² + (d−1)²)), x₀ = (1−b)/(1+b),
  c = κx₀ + (d−1)·log(1 − x₀²); repeat x ~ Beta((d−1)/2, (d−1)/2), u ~ U(0, 1), w = (1 − (1+b)x)/(1 − (1−b)x) until
  κw + (d−1)·log(1 − x₀w) − c ≥ log u. It is exact; the author's code uses an inverse-CDF table of 10⁷ entries
  instead. Beta((d−1)/2, (d−1)/2) is X/(X + Y) with X, Y ~ χ²_{d−1} (sums of d − 1 squared normals), so every draw
  comes from ``torch.randn``/``torch.rand`` and a ``torch.Generator`` makes it repeatable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_float, check_generator, check_int

#: Relative agreement of two successive depths of the continued fraction at which A_d(κ) is returned.
_RATIO_TOL = 1e-15
#: The deepest continued fraction tried (κ up to about 10⁷ converges well before it).
_MAX_DEPTH = 1 << 26
#: The largest κ taken: beyond about 10¹⁵ Wood's x₀ = (1 − b)/(1 + b) rounds to 1 in float64 (and κ² overflows past
#: 10¹⁵⁴); at 10¹² a sample's angle to μ is already about 10⁻⁶.
MAX_KAPPA = 1e12


def _check_kappa(kappa: object) -> float:
    """κ as a float if it is a real number in [0, :data:`MAX_KAPPA`] (the one check of every entry that takes κ)."""
    return check_float("kappa", kappa, 0.0, MAX_KAPPA)


def _ratio(nu: float, x: float, depth: int) -> float:
    """I_ν(x)/I_{ν−1}(x) by the backward recurrence r_ν = x/(2ν + x·r_{ν+1}) (from I_{ν−1} − I_{ν+1} = (2ν/x)I_ν),
    started ``depth`` orders up at the estimate r_m ≈ x/(m − ½ + √((m + ½)² + x²)). The recurrence is stable
    backwards (I_ν is its minimal solution) and each step shrinks the start's error by about r²."""
    m = nu + depth
    r = x / (m - 0.5 + math.sqrt((m + 0.5) ** 2 + x * x))
    for k in range(depth - 1, -1, -1):
        r = x / (2.0 * (nu + k) + x * r)
    return r


def _mean_cosine(dim: int, kappa: float) -> float:
    """:func:`vmf_mean_cosine` on checked arguments."""
    if kappa == 0.0:
        return 0.0
    nu = dim / 2.0
    depth, prev = 16, _ratio(nu, kappa, 8)
    while True:
        r = _ratio(nu, kappa, depth)
        if abs(r - prev) <= _RATIO_TOL * r or depth >= _MAX_DEPTH:
            return r
        prev, depth = r, depth * 2


def vmf_mean_cosine(dim: int, kappa: float) -> float:
    """A_d(κ) = I_{d/2}(κ)/I_{d/2−1}(κ), the mean cosine E[μᵀz] of a von Mises–Fisher sample z on S^{d−1} around μ
    with concentration κ ∈ [0, 10¹²] (kexue.fm/archives/8404). 0 at κ = 0 (uniform); about 1 − (d − 1)/(2κ) for
    κ ≫ d.

    Computed in float64 by the backward recurrence (a continued fraction) of the Bessel ratio, deepened until two
    depths agree to 1e−15 relative, so neither Bessel function is formed (they overflow for large κ); agrees with
    ``scipy.special.ive(d/2, κ)/ive(d/2 − 1, κ)`` to about 1e−13 (tested).

    >>> round(vmf_mean_cosine(16, 32.0), 4)
    0.7899
    """
    check_int("dim", dim, 2)
    return _mean_cosine(dim, _check_kappa(kappa))


def _sample_cosine(dim: int, kappa: float, n: int, generator: torch.Generator | None,
                   device: torch.device) -> Tensor:
    """n draws of w = μᵀz from p(w) ∝ exp(κw)(1 − w²)^{(d−3)/2} by Wood's rejection algorithm, float64 (n,)."""
    d1 = dim - 1
    b = d1 / (2.0 * kappa + math.sqrt(4.0 * kappa * kappa + d1 * d1))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + d1 * math.log1p(-x0 * x0)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel():
        m = todo.numel()
        chi2 = torch.randn(2, m, d1, generator=generator, dtype=torch.float64, device=device).square().sum(-1)
        x = chi2[0] / (chi2[0] + chi2[1])  # Beta((d-1)/2, (d-1)/2)
        u = torch.rand(m, generator=generator, dtype=torch.float64, device=device)
        w = (1.0 - (1.0 + b) * x) / (1.0 - (1.0 - b) * x)
        ok = kappa * w + d1 * torch.log1p(-x0 * w) - c >= torch.log(u)
        out[todo[ok]] = w[ok]
        todo = todo[~ok]
    return out


def _sample_vmf(mu: Tensor, kappa: float, generator: torch.Generator | None) -> Tensor:
    """z = w·μ + √(1 − w²)·ν on checked unit vectors ``mu`` (..., d); see :class:`VonMisesFisherSampler`."""
    dim = mu.shape[-1]
    flat = mu.reshape(-1, dim)
    w64 = _sample_cosine(dim, kappa, flat.shape[0], generator, mu.device)
    s64 = ((1.0 - w64) * (1.0 + w64)).clamp_min(0.0).sqrt()
    eps = torch.randn(flat.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    nu = F.normalize(eps - (eps * flat).sum(-1, keepdim=True) * flat, dim=-1)
    z = w64.to(mu.dtype)[:, None] * flat + s64.to(mu.dtype)[:, None] * nu
    return z.reshape(mu.shape)


class VonMisesFisherSampler(nn.Module):
    """Reparameterised von Mises–Fisher sampling on S^{dim−1} with a fixed concentration ``kappa``
    (kexue.fm/archives/8404): ``sampler(mu, generator=None)`` maps unit vectors ``mu`` (..., dim) to samples z of
    the same shape, ‖z‖ = 1, with z = w·μ + √(1 − w²)·ν, w ~ p(w) ∝ exp(κw)(1 − w²)^{(dim−3)/2} (Wood's algorithm)
    and ν uniform among the unit vectors orthogonal to μ. Gradients flow to ``mu``; E[μᵀz] = A_dim(κ)
    (:func:`vmf_mean_cosine`, the attribute :attr:`mean_cosine`). No parameters; the same draws for the same
    ``generator`` state. κ = 0 samples the uniform distribution on the sphere; κ is at most :data:`MAX_KAPPA`.

    With a uniform prior on the sphere, KL(vMF(μ, κ) ‖ uniform) does not depend on μ, so a VAE with this posterior
    and fixed κ has a constant KL term and κ alone sets its information rate (UniVAE, kexue.fm/archives/8475).
    """

    def __init__(self, dim: int, kappa: float) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, 2)
        self.kappa = _check_kappa(kappa)
        #: A_dim(κ), the mean cosine of a sample with its mean direction.
        self.mean_cosine = _mean_cosine(self.dim, self.kappa)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kappa={self.kappa}"

    def forward(self, mu: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One sample around each row of ``mu`` (..., dim), unit vectors (checked to 1e−3), floating point."""
        if not isinstance(mu, Tensor):
            raise TypeError(f"expected mu to be a torch.Tensor, got {type(mu).__name__}")
        if not mu.is_floating_point():
            raise TypeError(f"expected mu to be a floating-point tensor, got {mu.dtype}")
        if mu.dim() < 1 or mu.shape[-1] != self.dim:
            raise ValueError(f"expected mu of shape (..., dim={self.dim}), got {tuple(mu.shape)}")
        check_generator("generator", generator)
        if mu.numel():
            norms = mu.detach().norm(dim=-1)
            lo, hi = torch.stack(torch.aminmax(norms)).tolist()  # one device sync; NaN propagates into both
            if not (abs(lo - 1.0) <= 1e-3 and abs(hi - 1.0) <= 1e-3):
                raise ValueError(f"expected mu of unit norm along the last dimension (L2-normalise it), got norms "
                                 f"from {lo:.4g} to {hi:.4g}")
        return _sample_vmf(mu, self.kappa, generator)


__all__ = ["MAX_KAPPA", "VonMisesFisherSampler", "vmf_mean_cosine"]
