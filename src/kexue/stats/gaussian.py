"""KL divergence, Bhattacharyya and Hellinger distances and the 2-Wasserstein distance between multivariate normals.

Post: "两个多元正态分布的KL散度、巴氏距离和W距离" (KL divergence, Bhattacharyya distance and W distance between two
multivariate normals), 2021-07-08, https://kexue.fm/archives/8512. For p = N(μ_p, Σ_p), q = N(μ_q, Σ_q) in n dims,
Δμ = μ_p − μ_q:

- KL(p‖q) = ½[Δμᵀ Σ_q⁻¹ Δμ − log det(Σ_q⁻¹Σ_p) + Tr(Σ_q⁻¹Σ_p) − n]; for q = N(0, I): ½[‖μ_p‖² − log det Σ_p +
  Tr Σ_p − n];
- Bhattacharyya BD = −log∫√(pq) = ⅛ Δμᵀ Σ⁻¹ Δμ + ½ log[det Σ / √(det Σ_p det Σ_q)], Σ = (Σ_p + Σ_q)/2; the squared
  Hellinger distance H² = 1 − e^{−BD};
- W₂² = ‖Δμ‖² + Tr Σ_p + Tr Σ_q − 2 Tr((Σ_p^½ Σ_q Σ_p^½)^½) ("sym"), which the post proves equal to the Fréchet form
  with Tr((Σ_p Σ_q)^½) (FID's); for commuting covariances ‖Δμ‖² + ‖Σ_p^½ − Σ_q^½‖_F², for diagonal ones
  ‖Δμ‖² + ‖σ_p − σ_q‖².

Every function is batched over leading dims (broadcast between p and q), works in float32 and float64, and takes an
optional ``eps`` added as eps·I to each covariance. Log-determinants and inverses go through Cholesky factors
(log det Σ = 2 Σ_i log L_ii); KL and Bhattacharyya need positive definite covariances and refuse a singular one,
naming it. W₂ accepts rank-deficient ones (fewer samples than dims): Tr((AB)^½) is computed as the sum of the
singular values of B^½A^½ (whose squares are the eigenvalues of the symmetric A^½BA^½), the square roots from
``eigh`` with eigenvalues clamped at 0, so it stays real where ``scipy.linalg.sqrtm`` of the non-symmetric product
returns complex parts. Its backward never divides by a difference of eigenvalues (see
:mod:`kexue.stats._psd`), so gradients are finite at repeated eigenvalues such as Σ = I; the gradient of W₂² with
respect to Σ_q is I − Σ_p^½ S^{−½} Σ_p^½, S = Σ_p^½ Σ_q Σ_p^½ (the blog's later post, kexue.fm/archives/11738).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

from .._validate import check_choice, check_float
from ._psd import (
    check_symmetric,
    check_tensor,
    eigh_psd,
    psd_tol,
    sqrtm,
    sym,
    trace_sqrt_product,
)

W2Form = Literal["sym", "frechet", "commuting"]
W2_FORMS: tuple[W2Form, ...] = get_args(W2Form)


def _eye_like(s: Tensor) -> Tensor:
    return torch.eye(s.shape[-1], dtype=s.dtype, device=s.device)


def _gaussians(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor | None, sigma_q: Tensor | None,
               eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checked (μ_p, Σ_p + εI, μ_q, Σ_q + εI) broadcast to one batch shape; q defaults to N(0, I) where None."""
    check_float("eps", eps, low=0.0)
    mu_p = check_tensor("mu_p", mu_p, 1)
    sigma_p = check_symmetric("sigma_p", check_tensor("sigma_p", sigma_p, 2))
    n = mu_p.shape[-1]
    if sigma_p.shape[-1] != n:
        raise ValueError(f"expected sigma_p of shape (..., {n}, {n}) to match mu_p's last dim {n}, got shape "
                         f"{tuple(sigma_p.shape)}")
    mu_q = torch.zeros_like(mu_p) if mu_q is None else check_tensor("mu_q", mu_q, 1)
    sigma_q = _eye_like(sigma_p) if sigma_q is None else check_symmetric(
        "sigma_q", check_tensor("sigma_q", sigma_q, 2))
    for name, x in (("mu_q", mu_q), ("sigma_q", sigma_q), ("sigma_p", sigma_p)):
        if x.dtype != mu_p.dtype:
            raise TypeError(f"expected {name} to have mu_p's dtype {mu_p.dtype}, got {x.dtype}")
    if mu_q.shape[-1] != n or sigma_q.shape[-1] != n:
        raise ValueError(f"expected p and q of one dimension, got mu_p {tuple(mu_p.shape)}, sigma_p "
                         f"{tuple(sigma_p.shape)}, mu_q {tuple(mu_q.shape)}, sigma_q {tuple(sigma_q.shape)}")
    try:
        batch = torch.broadcast_shapes(mu_p.shape[:-1], sigma_p.shape[:-2], mu_q.shape[:-1], sigma_q.shape[:-2])
    except RuntimeError:
        raise ValueError(f"expected the batch shapes of mu_p, sigma_p, mu_q, sigma_q to broadcast, got "
                         f"{tuple(mu_p.shape[:-1])}, {tuple(sigma_p.shape[:-2])}, {tuple(mu_q.shape[:-1])}, "
                         f"{tuple(sigma_q.shape[:-2])}") from None
    if eps:
        sigma_p, sigma_q = sigma_p + eps * _eye_like(sigma_p), sigma_q + eps * _eye_like(sigma_p)
    return (mu_p.expand(*batch, n), sigma_p.expand(*batch, n, n), mu_q.expand(*batch, n),
            sigma_q.expand(*batch, n, n))


def _cholesky(name: str, s: Tensor) -> Tensor:
    """The Cholesky factor of ``s``, or ``ValueError`` naming it when ``s`` is not positive definite."""
    chol, info = torch.linalg.cholesky_ex(s)
    if bool((info > 0).any()):
        col = int(info[info > 0].min())
        raise ValueError(f"expected {name} to be positive definite, got a singular or indefinite matrix (Cholesky "
                         f"fails at column {col}); a rank-deficient covariance needs eps > 0 here")
    return chol


def _logdet(chol: Tensor) -> Tensor:
    return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _solve(chol: Tensor, rhs: Tensor) -> Tensor:
    return torch.linalg.solve_triangular(chol, rhs, upper=False)


def kl_normal(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor | None = None, sigma_q: Tensor | None = None, *,
              eps: float = 0.0) -> Tensor:
    """KL(p‖q) = ½[Δμᵀ Σ_q⁻¹ Δμ − log det(Σ_q⁻¹Σ_p) + Tr(Σ_q⁻¹Σ_p) − n] for p = N(mu_p, sigma_p), q = N(mu_q,
    sigma_q) (kexue.fm/archives/8512); q defaults to N(0, I) (mean 0 where ``mu_q`` is None, covariance I where
    ``sigma_q`` is None). Shapes (..., n) and (..., n, n), batch dims broadcast; returns (...,). Both covariances
    (+ eps·I) must be positive definite. Through Cholesky factors L_p, L_q: Tr(Σ_q⁻¹Σ_p) = ‖L_q⁻¹L_p‖_F²,
    log det Σ = 2 Σ log diag L."""
    mu_p, sigma_p, mu_q, sigma_q = _gaussians(mu_p, sigma_p, mu_q, sigma_q, eps)
    lp, lq = _cholesky("sigma_p", sigma_p), _cholesky("sigma_q", sigma_q)
    maha = _solve(lq, (mu_p - mu_q)[..., None]).square().sum((-2, -1))
    trace = _solve(lq, lp).square().sum((-2, -1))
    return 0.5 * (maha + trace - mu_p.shape[-1] + _logdet(lq) - _logdet(lp))


def bhattacharyya_normal(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor, sigma_q: Tensor, *, eps: float = 0.0) -> Tensor:
    """BD(p, q) = −log∫√(p q) dx = ⅛ Δμᵀ Σ⁻¹ Δμ + ½ log det Σ − ¼ log det Σ_p − ¼ log det Σ_q with
    Σ = (Σ_p + Σ_q)/2 (kexue.fm/archives/8512); symmetric in p and q. Shapes as :func:`kl_normal`; covariances
    (+ eps·I) positive definite."""
    mu_p, sigma_p, mu_q, sigma_q = _gaussians(mu_p, sigma_p, mu_q, sigma_q, eps)
    lp, lq = _cholesky("sigma_p", sigma_p), _cholesky("sigma_q", sigma_q)
    lm = torch.linalg.cholesky(0.5 * (sigma_p + sigma_q))  # the mean of two PD matrices is PD
    maha = _solve(lm, (mu_p - mu_q)[..., None]).square().sum((-2, -1))
    return 0.125 * maha + 0.5 * _logdet(lm) - 0.25 * (_logdet(lp) + _logdet(lq))


def hellinger_normal(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor, sigma_q: Tensor, *, eps: float = 0.0) -> Tensor:
    """The squared Hellinger distance H²(p, q) = 1 − ∫√(p q) dx = 1 − e^{−BD} (BD: :func:`bhattacharyya_normal`,
    kexue.fm/archives/8512), in [0, 1]. Squared, so that its gradient is finite at p = q; H = its square root."""
    return -torch.expm1(-bhattacharyya_normal(mu_p, sigma_p, mu_q, sigma_q, eps=eps))


def w2_normal(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor | None = None, sigma_q: Tensor | None = None, *,
              form: W2Form = "sym", eps: float = 0.0) -> Tensor:
    """The squared 2-Wasserstein distance W₂²(p, q) = ‖Δμ‖² + Tr Σ_p + Tr Σ_q − 2·T (kexue.fm/archives/8512), with
    T computed by ``form``:

    - ``"sym"``: T = Tr((Σ_p^½ Σ_q Σ_p^½)^½) = Σ_i σ_i(Σ_q^½ Σ_p^½), the singular values of the product of the two
      square roots (``eigh`` of each, eigenvalues clamped at 0): the squares of those singular values are the
      eigenvalues of the symmetric product, and the SVD keeps small ones accurate where √ of an ``eigh`` eigenvalue
      amplifies round-off;
    - ``"frechet"``: T = Tr((Σ_p Σ_q)^½) = Σ_i √λ_i(Σ_p Σ_q), FID's form, from the eigenvalues of the non-symmetric
      product (``torch.linalg.eigvals``, real parts clamped at 0); the post proves it equal to "sym";
    - ``"commuting"``: W₂² = ‖Δμ‖² + ‖Σ_p^½ − Σ_q^½‖_F², valid when Σ_pΣ_q = Σ_qΣ_p (checked; refused otherwise).

    q defaults to N(0, I) as in :func:`kl_normal`. Covariances need only be positive semi-definite (rank-deficient
    ones, from fewer samples than dims, give a real result). Shapes (..., n) and (..., n, n), batch dims broadcast;
    returns (...,), clamped at 0. Gradients are finite at repeated eigenvalues (Σ = I) and correct wherever W₂² is
    differentiable; the "frechet" form's gradient is computed as the (equal) "sym" form's. Precision: the closed
    form subtracts 2T from Tr Σ_p + Tr Σ_q, so float32 loses accuracy when W₂² is small against those traces (close,
    ill-conditioned Gaussians, n = 50, condition number 10⁶: 0.08 % relative with the SVD, 35 % with ``eigh`` of
    the symmetric product and with the "frechet" form); compute in float64 there.
    """
    check_choice("form", form, W2Form)
    mu_p, sigma_p, mu_q, sigma_q = _gaussians(mu_p, sigma_p, mu_q, sigma_q, eps)
    lam_p, u_p = eigh_psd("sigma_p", sigma_p)
    mean_term = (mu_p - mu_q).square().sum(-1)
    lam_q, u_q = eigh_psd("sigma_q", sigma_q)
    if form == "commuting":
        scale = sigma_p.detach().abs().amax() * sigma_q.detach().abs().amax()
        gap = (sigma_p @ sigma_q - sigma_q @ sigma_p).detach().abs().amax()
        if float(gap) > 10 * psd_tol(sigma_p) * float(scale):  # 100·n·eps: products of n-term sums
            raise ValueError(f"expected sigma_p and sigma_q to commute for form='commuting', got max |Σ_pΣ_q − "
                             f"Σ_qΣ_p| = {float(gap):.3g} (scale {float(scale):.3g}); use form='sym'")
        diff = sqrtm(sigma_p, lam_p, u_p) - sqrtm(sigma_q, lam_q, u_q)
        return (mean_term + diff.square().sum((-2, -1))).clamp_min(0)
    trace = sigma_p.diagonal(dim1=-2, dim2=-1).sum(-1) + sigma_q.diagonal(dim1=-2, dim2=-1).sum(-1)
    cross = trace_sqrt_product(sigma_p, sigma_q, lam_p, u_p, lam_q, u_q, "sym" if form == "sym" else "frechet")
    return (mean_term + trace - 2.0 * cross).clamp_min(0)


def sqrtm_psd(sigma: Tensor, *, eps: float = 0.0) -> Tensor:
    """The principal square root Σ^½ = U diag(√max(λ, 0)) Uᵀ of a symmetric positive semi-definite Σ (+ eps·I)
    through ``eigh``, batched over leading dims; tiny negative eigenvalues (round-off) are clamped at 0 (the
    post's pitfall list, kexue.fm/archives/8512), clearly negative ones refused. Backward: the Daleckii–Krein form
    with divided difference 1/(√λ_i + √λ_j), finite at repeated eigenvalues; 0 on the block of two null
    directions, where the square root has no derivative."""
    check_float("eps", eps, low=0.0)
    sigma = check_symmetric("sigma", check_tensor("sigma", sigma, 2))
    if eps:
        sigma = sigma + eps * _eye_like(sigma)
    lam, u = eigh_psd("sigma", sigma)
    return sqrtm(sigma, lam, u)


def _diag(mu_p: Tensor, var_p: Tensor, mu_q: Tensor | None, var_q: Tensor | None, eps: float,
          positive: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    check_float("eps", eps, low=0.0)
    mu_p, var_p = check_tensor("mu_p", mu_p, 1), check_tensor("var_p", var_p, 1)
    mu_q = torch.zeros_like(mu_p) if mu_q is None else check_tensor("mu_q", mu_q, 1)
    var_q = torch.ones_like(var_p) if var_q is None else check_tensor("var_q", var_q, 1)
    for name, x in (("var_p", var_p), ("mu_q", mu_q), ("var_q", var_q)):
        if x.dtype != mu_p.dtype:
            raise TypeError(f"expected {name} to have mu_p's dtype {mu_p.dtype}, got {x.dtype}")
    try:
        torch.broadcast_shapes(mu_p.shape, var_p.shape, mu_q.shape, var_q.shape)
    except RuntimeError:
        raise ValueError(f"expected mu_p, var_p, mu_q, var_q to broadcast, got shapes {tuple(mu_p.shape)}, "
                         f"{tuple(var_p.shape)}, {tuple(mu_q.shape)}, {tuple(var_q.shape)}") from None
    var_p, var_q = var_p + eps, var_q + eps
    for name, v in (("var_p", var_p), ("var_q", var_q)):
        low = float(v.detach().min())
        if low < 0 or (positive and low == 0):
            raise ValueError(f"expected {name} (+ eps) {'> 0' if positive else '>= 0'}, got a variance of {low:.3g}")
    return mu_p, var_p, mu_q, var_q


def kl_diag(mu_p: Tensor, var_p: Tensor, mu_q: Tensor | None = None, var_q: Tensor | None = None, *,
            eps: float = 0.0) -> Tensor:
    """KL(p‖q) for diagonal covariances (``var`` = their diagonals, shape (..., n)): ½ Σ_i [(μ_p − μ_q)²/v_q +
    v_p/v_q − 1 − log(v_p/v_q)] (:func:`kl_normal` with Σ = diag(v), kexue.fm/archives/8512); q defaults to
    N(0, I). Returns (...,); variances (+ eps) must be > 0."""
    mu_p, var_p, mu_q, var_q = _diag(mu_p, var_p, mu_q, var_q, eps, positive=True)
    ratio = var_p / var_q
    return 0.5 * ((mu_p - mu_q).square() / var_q + ratio - 1.0 - ratio.log()).sum(-1)


def w2_diag(mu_p: Tensor, var_p: Tensor, mu_q: Tensor | None = None, var_q: Tensor | None = None, *,
            eps: float = 0.0) -> Tensor:
    """W₂² for diagonal covariances (``var`` = their diagonals, shape (..., n)): ‖μ_p − μ_q‖² + ‖σ_p − σ_q‖², σ = √v
    (kexue.fm/archives/8512); q defaults to N(0, I). Returns (...,); variances (+ eps) must be >= 0 (the gradient
    in a zero variance is infinite: √ has no derivative at 0)."""
    mu_p, var_p, mu_q, var_q = _diag(mu_p, var_p, mu_q, var_q, eps, positive=False)
    return ((mu_p - mu_q).square() + (var_p.sqrt() - var_q.sqrt()).square()).sum(-1)


def frechet_distance(x: Tensor, y: Tensor, *, eps: float = 0.0) -> Tensor:
    """The Fréchet distance between two sets of vectors (FID's, on any feature space): W₂² (:func:`w2_normal`,
    "sym" form) between the Gaussians with the sets' means and unbiased covariances (1/(N−1), as ``np.cov``).
    ``x`` (..., N, d) and ``y`` (..., M, d), N, M >= 2, batch dims broadcast; returns (...,). Moments are
    accumulated in float64 and the result is in the inputs' dtype. N <= d gives a rank-deficient covariance, which
    is fine here (the result stays real); ``eps`` adds eps·I to both covariances."""
    x, y = check_tensor("x", x, 2), check_tensor("y", y, 2)
    if y.dtype != x.dtype:
        raise TypeError(f"expected y to have x's dtype {x.dtype}, got {y.dtype}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"expected x and y of one feature size, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    for name, z in (("x", x), ("y", y)):
        if z.shape[-2] < 2:
            raise ValueError(f"expected {name} to hold >= 2 vectors (shape (..., N, d)), got shape {tuple(z.shape)}")

    def moments(z: Tensor) -> tuple[Tensor, Tensor]:
        z64 = z.double()
        mean = z64.mean(-2)
        c = z64 - mean[..., None, :]
        return mean.to(z.dtype), sym(c.mT @ c / (z.shape[-2] - 1)).to(z.dtype)

    (mx, cx), (my, cy) = moments(x), moments(y)
    return w2_normal(mx, cx, my, cy, form="sym", eps=eps)


__all__ = ["W2_FORMS", "W2Form", "bhattacharyya_normal", "frechet_distance", "hellinger_normal", "kl_diag",
           "kl_normal", "sqrtm_psd", "w2_diag", "w2_normal"]
