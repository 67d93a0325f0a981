"""The gelu reproduction's derivation of the constants (kexue.fm/archives/7309): Φ against scipy, the local fit
against its Taylor solution, the minimax fits against the post's constants."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from kexue.reproduce.gelu import minimax_fit, phi, tanh_local_ratio


def test_phi_against_scipy():
    special = pytest.importorskip("scipy.special")
    x = torch.linspace(-8, 8, 1601, dtype=torch.float64)
    torch.testing.assert_close(phi(x), torch.from_numpy(special.ndtr(x.numpy())), atol=1e-15, rtol=1e-12)


def test_local_ratio_is_the_taylor_solution():
    # zero the x^3 coefficient of erf(x/√2) − tanh(ax + bx^3) with a = √(2/π): a^3/3 − b − 1/(3√(2π)) = 0
    a = math.sqrt(2 / math.pi)
    b = a**3 / 3 - 1 / (3 * math.sqrt(2 * math.pi))
    assert b / a == pytest.approx(tanh_local_ratio(), abs=1e-15)
    assert tanh_local_ratio() == pytest.approx(0.0455399, abs=1e-7)


def test_minimax_fit_recovers_the_post_constants():
    b = minimax_fit("tanh")
    assert b == pytest.approx(0.035677337, abs=1e-6)
    assert b / math.sqrt(2 / math.pi) == pytest.approx(0.0447149, abs=1e-6)
    lam = minimax_fit("sigmoid", x_max=8.0)
    assert lam == pytest.approx(1.7017449, abs=1e-4)


def test_minimax_is_a_minimum():
    # moving b either way raises the max error (the fit is a minimax, not just any point)
    x = torch.arange(0, 4, 1e-3, dtype=torch.float64)
    target = torch.special.erf(x / math.sqrt(2))
    a = math.sqrt(2 / math.pi)

    def err(b: float) -> float:
        return (target - torch.tanh(a * x + b * x**3)).abs().max().item()

    b = minimax_fit("tanh")
    assert err(b) < err(b + 1e-4) and err(b) < err(b - 1e-4)


def test_bad_form():
    cubic: Any = "cubic"
    with pytest.raises(ValueError, match="unknown form 'cubic'"):
        minimax_fit(cubic)
