"""Bad-input rows: kexue.stats.gaussian (KL, Bhattacharyya, Hellinger, W₂ and Fréchet distances of normals)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.stats import (
    bhattacharyya_normal,
    frechet_distance,
    hellinger_normal,
    kl_diag,
    kl_normal,
    sqrtm_psd,
    w2_diag,
    w2_normal,
)

F64 = torch.float64
M = torch.zeros(3, dtype=F64)
EYE = torch.eye(3, dtype=F64)
SINGULAR = torch.diag(torch.tensor([1.0, 1.0, 0.0], dtype=F64))
INDEFINITE = torch.diag(torch.tensor([1.0, -0.5, 2.0], dtype=F64))
SKEW = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
NOT_COMMUTING = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
NAN3 = torch.tensor([0.0, float("nan"), 0.0], dtype=F64)
V = torch.ones(3, dtype=F64)

ROWS = [
    Bad("kexue.stats.kl_normal", "singular sigma_q", lambda: kl_normal(M, EYE, M, SINGULAR), ValueError,
        r"expected sigma_q to be positive definite, got a singular or indefinite"),
    Bad("kexue.stats.kl_normal", "sigma_p not symmetric", lambda: kl_normal(M, SKEW), ValueError,
        r"expected sigma_p to be symmetric, got max \|sigma_p - sigma_pᵀ\| = 0\.5"),
    Bad("kexue.stats.kl_normal", "sigma_p of another dim than mu_p", lambda: kl_normal(M, torch.eye(4, dtype=F64)),
        ValueError, r"expected sigma_p of shape \(\.\.\., 3, 3\) to match mu_p's last dim 3, got shape \(4, 4\)"),
    Bad("kexue.stats.kl_normal", "integer mu_p", lambda: kl_normal(torch.zeros(3, dtype=torch.long), EYE), TypeError,
        r"expected mu_p to be a float32 or float64 tensor, got torch\.int64"),
    Bad("kexue.stats.kl_normal", "mu_q with nan", lambda: kl_normal(M, EYE, NAN3, EYE), ValueError,
        r"expected mu_q to be finite"),
    Bad("kexue.stats.kl_normal", "eps negative", lambda: kl_normal(M, EYE, eps=-1.0), ValueError,
        r"expected eps >= 0\.0, got -1\.0"),
    Bad("kexue.stats.kl_normal", "batch shapes that do not broadcast",
        lambda: kl_normal(torch.zeros(2, 3, dtype=F64), EYE, torch.zeros(5, 3, dtype=F64), EYE), ValueError,
        r"expected the batch shapes of mu_p, sigma_p, mu_q, sigma_q to broadcast, got \(2,\), \(\), \(5,\), \(\)"),
    Bad("kexue.stats.kl_normal", "float32 sigma_q with float64 mu_p", lambda: kl_normal(M, EYE, M, EYE.float()),
        TypeError, r"expected sigma_q to have mu_p's dtype torch\.float64, got torch\.float32"),
    Bad("kexue.stats.bhattacharyya_normal", "indefinite sigma_p",
        lambda: bhattacharyya_normal(M, INDEFINITE, M, EYE), ValueError, r"expected sigma_p to be positive definite"),
    Bad("kexue.stats.bhattacharyya_normal", "mu_p a list", lambda: bhattacharyya_normal([0.0, 0.0, 0.0], EYE, M, EYE),
        TypeError, r"expected mu_p to be a torch\.Tensor, got list"),
    Bad("kexue.stats.bhattacharyya_normal", "q of another dimension",
        lambda: bhattacharyya_normal(M, EYE, torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64)), ValueError,
        r"expected p and q of one dimension, got mu_p \(3,\), sigma_p \(3, 3\), mu_q \(2,\), sigma_q \(2, 2\)"),
    Bad("kexue.stats.hellinger_normal", "singular sigma_p", lambda: hellinger_normal(M, SINGULAR, M, EYE), ValueError,
        r"expected sigma_p to be positive definite.*needs eps > 0"),
    Bad("kexue.stats.hellinger_normal", "eps nan", lambda: hellinger_normal(M, EYE, M, EYE, eps=float("nan")),
        ValueError, r"expected eps to be finite, got nan"),
    Bad("kexue.stats.hellinger_normal", "sigma_q 1-D", lambda: hellinger_normal(M, EYE, M, V), ValueError,
        r"expected sigma_q to have at least 2 dims, got shape \(3,\)"),
    Bad("kexue.stats.w2_normal", "indefinite sigma_q", lambda: w2_normal(M, EYE, M, INDEFINITE), ValueError,
        r"expected sigma_q to be positive semi-definite, got an eigenvalue of -0\.5"),
    Bad("kexue.stats.w2_normal", "indefinite sigma_p", lambda: w2_normal(M, INDEFINITE, form="frechet"), ValueError,
        r"expected sigma_p to be positive semi-definite, got an eigenvalue of -0\.5"),
    Bad("kexue.stats.w2_normal", "unknown form", lambda: w2_normal(M, EYE, form="fid"), ValueError,
        r"expected form to be one of \['sym', 'frechet', 'commuting'\], got 'fid'"),
    Bad("kexue.stats.w2_normal", "form='commuting' with non-commuting covariances",
        lambda: w2_normal(M, NOT_COMMUTING, M, torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=F64)),
                          form="commuting"), ValueError, r"expected sigma_p and sigma_q to commute .*got max"),
    Bad("kexue.stats.w2_normal", "sigma_q not symmetric", lambda: w2_normal(M, EYE, M, SKEW), ValueError,
        r"expected sigma_q to be symmetric"),
    Bad("kexue.stats.w2_normal", "empty mu_p", lambda: w2_normal(torch.zeros(0, dtype=F64), EYE), ValueError,
        r"expected mu_p to be non-empty, got shape \(0,\)"),
    Bad("kexue.stats.sqrtm_psd", "indefinite sigma", lambda: sqrtm_psd(INDEFINITE), ValueError,
        r"expected sigma to be positive semi-definite, got an eigenvalue of -0\.5"),
    Bad("kexue.stats.sqrtm_psd", "non-square sigma", lambda: sqrtm_psd(torch.zeros(3, 2, dtype=F64)), ValueError,
        r"expected sigma to be square in its last two dims, got shape \(3, 2\)"),
    Bad("kexue.stats.sqrtm_psd", "sigma not symmetric", lambda: sqrtm_psd(SKEW), ValueError,
        r"expected sigma to be symmetric"),
    Bad("kexue.stats.sqrtm_psd", "float16 sigma", lambda: sqrtm_psd(EYE.half()), TypeError,
        r"expected sigma to be a float32 or float64 tensor, got torch\.float16"),
    Bad("kexue.stats.kl_diag", "zero var_q", lambda: kl_diag(M, V, M, torch.tensor([1.0, 0.0, 1.0], dtype=F64)),
        ValueError, r"expected var_q \(\+ eps\) > 0, got a variance of 0"),
    Bad("kexue.stats.kl_diag", "negative var_p", lambda: kl_diag(M, -V), ValueError,
        r"expected var_p \(\+ eps\) > 0, got a variance of -1"),
    Bad("kexue.stats.kl_diag", "shapes that do not broadcast", lambda: kl_diag(M, torch.ones(4, dtype=F64)),
        ValueError, r"expected mu_p, var_p, mu_q, var_q to broadcast, got shapes \(3,\), \(4,\), \(3,\), \(4,\)"),
    Bad("kexue.stats.kl_diag", "float32 var_p with float64 mu_p", lambda: kl_diag(M, V.float()), TypeError,
        r"expected var_p to have mu_p's dtype torch\.float64, got torch\.float32"),
    Bad("kexue.stats.w2_diag", "negative var_q", lambda: w2_diag(M, V, M, -V), ValueError,
        r"expected var_q \(\+ eps\) >= 0, got a variance of -1"),
    Bad("kexue.stats.w2_diag", "var_p infinite", lambda: w2_diag(M, torch.full((3,), float("inf"), dtype=F64)),
        ValueError, r"expected var_p to be finite"),
    Bad("kexue.stats.w2_diag", "eps a string", lambda: w2_diag(M, V, eps="0.1"), TypeError,
        r"expected eps to be a real number, got '0\.1'"),
    Bad("kexue.stats.frechet_distance", "one vector in x",
        lambda: frechet_distance(torch.zeros(1, 4, dtype=F64), torch.zeros(5, 4, dtype=F64)), ValueError,
        r"expected x to hold >= 2 vectors \(shape \(\.\.\., N, d\)\), got shape \(1, 4\)"),
    Bad("kexue.stats.frechet_distance", "feature sizes differ",
        lambda: frechet_distance(torch.zeros(5, 4, dtype=F64), torch.zeros(5, 3, dtype=F64)), ValueError,
        r"expected x and y of one feature size, got shapes \(5, 4\) and \(5, 3\)"),
    Bad("kexue.stats.frechet_distance", "y float32, x float64",
        lambda: frechet_distance(torch.zeros(5, 4, dtype=F64), torch.zeros(5, 4)), TypeError,
        r"expected y to have x's dtype torch\.float64, got torch\.float32"),
    Bad("kexue.stats.frechet_distance", "y with nan",
        lambda: frechet_distance(torch.zeros(5, 3, dtype=F64), torch.stack([NAN3] * 5)), ValueError,
        r"expected y to be finite"),
    Bad("kexue.stats.frechet_distance", "x 1-D", lambda: frechet_distance(M, torch.zeros(5, 3, dtype=F64)),
        ValueError, r"expected x to have at least 2 dims, got shape \(3,\)"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
