"""The Johnson–Lindenstrauss lemma: target dimensions, Gaussian random projections, their distortion, and the tail
bounds of the post's two lemmas.

Post: "让人惊叹的Johnson-Lindenstrauss引理：理论篇" (The astonishing Johnson–Lindenstrauss lemma: theory),
2021-09-17, https://kexue.fm/archives/8679. All logarithms are natural.

- Norm lemma: u ∈ ℝⁿ with i.i.d. N(0, 1/n) entries, ε ∈ (0, 1): P(|‖u‖² − 1| ≥ ε) ≤ 2·exp(−ε²n/8)
  (:func:`unit_norm_tail_bound`; Cramér–Chernoff with λ* = nε/(2(1+ε))). Exactly, n‖u‖² ~ χ²ₙ, so the probability
  is P(χ²ₙ ≥ n(1+ε)) + P(χ²ₙ ≤ n(1−ε)) (:func:`unit_norm_tail_exact`).
- Orthogonality lemma: independent u, v as above: P(|⟨u, v⟩| ≥ ε) ≤ 4·exp(−ε²n/8) (:func:`orthogonality_tail_bound`;
  the norm lemma applied to (u ± v)/√2).
- JL (distance form): for N points, n > 24·log N/ε² and A ∈ ℝ^{n×m} with i.i.d. N(0, 1/n) entries keep every squared
  pairwise distance within factors 1 ± ε with probability ≥ 1 − 1/N (failure ≤ N(N−1)·e^{−ε²n/8}); with n > 16·log
  N/ε² such an A merely exists (:func:`jl_min_dim`, ``constant`` 24 or 16). scikit-learn's
  ``johnson_lindenstrauss_min_dim`` uses 4·log N/(ε²/2 − ε³/3), an existence-level bound about 2.8× smaller than
  the post's 24 at ε = 0.1 (:func:`sklearn_min_dim`). Example, N = 1,797, ε = 0.1: 6,424 (sklearn's bound),
  11,991 (16), 17,986 (24).

The entry variance is 1/n with n the *target* dimension, and the bounds are on *squared* distances.
The follow-up post (kexue.fm/archives/8706) reads n > 8.33·ln N (from the minimum-entropy post 7695) as agreeing
with JL in order: 8.33·ln 512 ≈ 52 for an attention head (≈ 64), 96 for N = 10⁵ word vectors, 128 for 5·10⁶. It has
no ε and is not one of the bounds here.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from .._validate import check_float, check_generator, check_int


def _check_eps(eps: float) -> float:
    return check_float("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)


def _strictly_above(bound: float) -> int:
    """The smallest integer n with n > bound."""
    return math.floor(bound) + 1


def jl_min_dim(n_points: int, eps: float, constant: float = 24.0) -> int:
    """The smallest target dimension n with n > constant·log(n_points)/eps² (natural log).

    ``constant = 24`` (the default) is the post's JL bound: a Gaussian projection to n dimensions keeps every squared
    pairwise distance of ``n_points`` points within 1 ± eps with probability ≥ 1 − 1/N. ``constant = 16`` is its
    existence-only form (success probability > 1/N > 0). See :func:`sklearn_min_dim` for scikit-learn's bound.
    ``eps`` lies in (0, 1).
    """
    n_points = check_int("n_points", n_points, minimum=1)
    eps = _check_eps(eps)
    constant = check_float("constant", constant, low=0.0, low_open=True)
    return _strictly_above(constant * math.log(n_points) / eps**2)


def sklearn_min_dim(n_points: int, eps: float) -> int:
    """The smallest target dimension n with n > 4·log(n_points)/(eps²/2 − eps³/3), scikit-learn's JL bound.

    ``sklearn.random_projection.johnson_lindenstrauss_min_dim`` computes the same bound but truncates it, returning
    one less (6,423 for N = 1,797, eps = 0.1; here 6,424) unless the bound is an integer. It is an existence-level
    bound, the counterpart of the post's constant 16 (:func:`jl_min_dim`).
    """
    n_points = check_int("n_points", n_points, minimum=1)
    eps = _check_eps(eps)
    return _strictly_above(4.0 * math.log(n_points) / (eps**2 / 2.0 - eps**3 / 3.0))


def gaussian_projection(in_dim: int, out_dim: int, generator: torch.Generator | None = None,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    """A (out_dim, in_dim) matrix A with i.i.d. N(0, 1/out_dim) entries (std 1/√out_dim: the *target* dimension).

    Project row vectors V (N × in_dim) as ``V @ A.T``; then E‖Av‖² = ‖v‖². ``generator`` makes the draw
    reproducible. Projecting to ``out_dim >= in_dim`` is allowed but pointless.
    """
    in_dim = check_int("in_dim", in_dim, minimum=1)
    out_dim = check_int("out_dim", out_dim, minimum=1)
    check_generator("generator", generator)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"expected dtype to be a floating torch.dtype, got {dtype!r}")
    a = torch.randn(out_dim, in_dim, generator=generator, dtype=dtype)
    return a.mul_(1.0 / math.sqrt(out_dim))


class Distortion(NamedTuple):
    """What :func:`pairwise_distortion` returns.

    ``ratio``: ‖Av_i − Av_j‖²/‖v_i − v_j‖² for every pair i < j (float64, the order of ``torch.triu_indices(N, N, 1)``);
    ``min_ratio``, ``max_ratio``: its extremes; ``max_distortion``: max |ratio − 1|, the smallest ε for which every
    pair satisfies the JL inequality. The fraction of pairs violating a given ε is ``((ratio - 1).abs() > eps)``'s
    mean.
    """

    ratio: Tensor
    min_ratio: float
    max_ratio: float
    max_distortion: float


def _sq_dists(x: Tensor) -> Tensor:
    """Pairwise squared distances (float64) by the Gram form ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩, clamped at 0."""
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min_(0.0)


def pairwise_distortion(V: Tensor, A: Tensor) -> Distortion:
    """How a linear map A (n × m) distorts the squared pairwise distances of the rows of V (N × m).

    ratio_ij = ‖A(v_i − v_j)‖² / ‖v_i − v_j‖² for i < j, computed in float64 with the Gram form of both squared
    distances (relative accuracy about 1e-12 unless two points are far closer together than their norms). Rows of V
    must be distinct (a zero distance has no ratio). Memory O(N²).
    """
    if not isinstance(V, Tensor) or not isinstance(A, Tensor):
        raise TypeError(f"expected V and A to be tensors, got {type(V).__name__} and {type(A).__name__}")
    if V.dim() != 2 or V.shape[0] < 2:
        raise ValueError(f"expected V of shape (N, m) with N >= 2, got {tuple(V.shape)}")
    if A.dim() != 2 or A.shape[1] != V.shape[1]:
        raise ValueError(f"expected A of shape (n, m) with m = V.shape[1] = {V.shape[1]}, got {tuple(A.shape)}")
    if not V.dtype.is_floating_point or not A.dtype.is_floating_point:
        raise TypeError(f"expected floating V and A, got {V.dtype} and {A.dtype}")
    v = V.detach().to(torch.float64)
    a = A.detach().to(v.device, torch.float64)
    if not (torch.isfinite(v).all() and torch.isfinite(a).all()):
        raise ValueError("expected finite V and A, got NaN or infinite entries")
    n = v.shape[0]
    i, j = torch.triu_indices(n, n, 1, device=v.device)
    before = _sq_dists(v)[i, j]
    zero = before == 0
    if bool(zero.any()):
        k = int(zero.nonzero()[0, 0])
        raise ValueError(f"expected distinct rows of V, got rows {int(i[k])} and {int(j[k])} at distance 0")
    after = _sq_dists(v @ a.T)[i, j]
    ratio = after / before
    lo, hi = float(ratio.min()), float(ratio.max())
    return Distortion(ratio, lo, hi, max(abs(lo - 1.0), abs(hi - 1.0)))


def unit_norm_tail_bound(n: int, eps: float) -> float:
    """The norm lemma's bound 2·exp(−eps²·n/8) on P(|‖u‖² − 1| ≥ eps), u with n i.i.d. N(0, 1/n) entries."""
    n = check_int("n", n, minimum=1)
    eps = _check_eps(eps)
    return 2.0 * math.exp(-(eps**2) * n / 8.0)


def orthogonality_tail_bound(n: int, eps: float) -> float:
    """The orthogonality lemma's bound 4·exp(−eps²·n/8) on P(|⟨u, v⟩| ≥ eps), u, v independent with n i.i.d.
    N(0, 1/n) entries each."""
    n = check_int("n", n, minimum=1)
    eps = _check_eps(eps)
    return 4.0 * math.exp(-(eps**2) * n / 8.0)


def unit_norm_tail_exact(n: int, eps: float) -> float:
    """The exact P(|‖u‖² − 1| ≥ eps) for u with n i.i.d. N(0, 1/n) entries: n‖u‖² ~ χ²ₙ, so it is
    Q(n/2, n(1+eps)/2) + P(n/2, n(1−eps)/2) with the regularized incomplete gamma functions
    (``scipy.stats.chi2.sf(n(1+eps), n) + chi2.cdf(n(1-eps), n)``), computed in float64."""
    n = check_int("n", n, minimum=1)
    eps = _check_eps(eps)
    half = torch.tensor(n / 2.0, dtype=torch.float64)
    upper = torch.special.gammaincc(half, torch.tensor(n * (1.0 + eps) / 2.0, dtype=torch.float64))
    lower = torch.special.gammainc(half, torch.tensor(n * (1.0 - eps) / 2.0, dtype=torch.float64))
    return float(upper + lower)


__all__ = ["Distortion", "gaussian_projection", "jl_min_dim", "orthogonality_tail_bound", "pairwise_distortion",
           "sklearn_min_dim", "unit_norm_tail_bound", "unit_norm_tail_exact"]
