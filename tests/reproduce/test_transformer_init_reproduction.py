"""The transformer_init reproduction's sigmoid gain: E[σ(z)²] by Gauss–Hermite quadrature against scipy's adaptive
quadrature and the post's value."""

from __future__ import annotations

import math

import pytest

from kexue.reproduce.transformer_init import sigmoid_second_moment


def test_sigmoid_second_moment_matches_quad():
    integrate = pytest.importorskip("scipy.integrate")
    stats = pytest.importorskip("scipy.stats")
    ref, _ = integrate.quad(lambda z: stats.norm.pdf(z) / (1 + math.exp(-z)) ** 2, -40, 40)
    assert sigmoid_second_moment() == pytest.approx(ref, abs=1e-10)
    assert sigmoid_second_moment() == pytest.approx(0.2933790, abs=1e-7)
