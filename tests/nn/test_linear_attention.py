"""Linear attention: the O(n) form equals the O(n²) kernel form; truncations converge to softmax attention."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from kexue.nn import linear_attention as L

torch.set_default_dtype(torch.float32)


def _qkv(b=2, h=3, n=17, d=4, dv=5, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    return r(b, h, n, d) * scale, r(b, h, n, d) * scale, r(b, h, n, dv)


def _mask(b=2, n=17):
    m = torch.ones(b, n, dtype=torch.bool)
    m[0, 11:] = False
    return m


MAPS = {
    "elu": L.elu_features,
    "taylor2": partial(L.taylor_features, order=2),
    "taylor4": partial(L.taylor_features, order=4),
    "exp_limit2": partial(L.exp_limit_features, n=2),
    "exp_limit4": partial(L.exp_limit_features, n=4),
}


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", sorted(MAPS))
def test_linear_equals_quadratic_kernel_form(name, causal):
    q, k, v = _qkv(scale=0.5)
    m = _mask()
    fast = L.linear_attention(q, k, v, MAPS[name], mask=m, causal=causal, chunk_size=5)
    slow = L.kernel_attention(q, k, v, MAPS[name], mask=m, causal=causal)
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=0)


def test_padded_keys_change_nothing():
    q, k, v = _qkv(b=1, n=9)
    m = torch.ones(1, 9, dtype=torch.bool)
    m[0, 6:] = False
    full = L.linear_attention(q, k, v, mask=m)
    cut = L.linear_attention(q[..., :6, :], k[..., :6, :], v[..., :6, :])
    torch.testing.assert_close(full[..., :6, :], cut, atol=1e-12, rtol=0)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_feature_maps_give_the_closed_form_kernels(order):
    q, k, _ = _qkv(b=1, h=1, n=6, d=4, scale=0.6)
    dot = q @ k.transpose(-1, -2)
    taylor = L.taylor_features(q, order, allow_odd=True) @ L.taylor_features(k, order, allow_odd=True).transpose(-1, -2)
    torch.testing.assert_close(taylor, sum(dot**j / math.factorial(j) for j in range(order + 1)), atol=1e-10, rtol=0)
    lim = (L.exp_limit_features(q, order, allow_odd=True)
           @ L.exp_limit_features(k, order, allow_odd=True).transpose(-1, -2))
    torch.testing.assert_close(lim, (1 + dot / order) ** order, atol=1e-10, rtol=0)
    assert L.taylor_features(q, order, allow_odd=True).shape[-1] == sum(4**j for j in range(order + 1))
    assert L.exp_limit_features(q, order, allow_odd=True).shape[-1] == 5**order


def test_error_against_softmax_falls_with_order():
    q, k, v = _qkv(b=1, h=2, n=32, d=4, scale=0.9)
    exact = L.softmax_attention(q, k, v)
    errs_t = [(L.linear_attention(q, k, v, partial(L.taylor_features, order=o)) - exact).abs().max().item()
              for o in (2, 4, 6)]
    errs_l = [(L.linear_attention(q, k, v, partial(L.exp_limit_features, n=o)) - exact).abs().max().item()
              for o in (2, 4, 6)]
    assert errs_t[0] > errs_t[1] > errs_t[2]
    assert errs_l[0] > errs_l[1] > errs_l[2]
    assert errs_t[2] < errs_l[2]  # Taylor converges factorially, the limit only like O(x²/n)


def test_performer_error_falls_with_features():
    q, k, v = _qkv(b=1, h=2, n=32, d=8, scale=0.7)
    exact = L.softmax_attention(q, k, v)
    errs = []
    for m in (16, 256, 4096):
        draws = [(L.performer_attention(q, k, v, L.performer_omega(m, 8, torch.Generator().manual_seed(s),
                                                                   dtype=torch.float64)) - exact).abs().mean().item()
                 for s in range(5)]
        errs.append(sum(draws) / len(draws))
    assert errs[0] > errs[1] > errs[2]


@pytest.mark.parametrize("causal", [False, True])
def test_performer_stabiliser_cancels(causal):
    q, k, v = _qkv(b=2, h=2, n=12, d=4)
    omega = L.performer_omega(64, 4, torch.Generator().manual_seed(0), dtype=torch.float64)
    m = _mask(2, 12) if not causal else None
    stable = L.performer_attention(q, k, v, omega, mask=m, causal=causal, eps=0.0)
    s = 4 ** -0.25

    def phi(x):
        return L.performer_features(x, omega)

    plain = L.kernel_attention(q * s, k * s, v, phi, mask=m, causal=causal, scale=False, eps=0)
    torch.testing.assert_close(stable, plain, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("orthogonal", [False, True])
def test_performer_kernel_is_unbiased(orthogonal):
    q, k, _ = _qkv(b=1, h=1, n=3, d=3, scale=0.4)
    omega = L.performer_omega(200000, 3, torch.Generator().manual_seed(1), orthogonal=orthogonal,
                              dtype=torch.float64)
    est = L.performer_features(q, omega) @ L.performer_features(k, omega).transpose(-1, -2)
    torch.testing.assert_close(est, torch.exp(q @ k.transpose(-1, -2)), rtol=1e-2, atol=0)


def test_odd_orders_refused():
    with pytest.raises(ValueError, match=r"expected an even order \(an odd one makes the kernel negative .*\), "
                                         r"got order=3"):
        L.taylor_features(torch.ones(2, 2), 3)
    with pytest.raises(ValueError, match="expected an even n .*got n=1"):
        L.exp_limit_features(torch.ones(2, 2), 1)
    with pytest.raises(ValueError, match="expected order >= 1, got 0"):
        L.taylor_features(torch.ones(2, 2), 0)
    with pytest.raises(ValueError, match="expected num_features >= 1, got 0"):
        L.performer_omega(0, 4)
    with pytest.raises(ValueError, match=r"key mask of shape \(batch, keys\) = \(2, 17\), got \(2, 5\)"):
        q, k, v = _qkv()
        L.linear_attention(q, k, v, mask=torch.ones(2, 5))


def test_orthogonal_omega_rows_are_isotropic():
    # Haar-distributed directions: the mean of ω ωᵀ is the identity (a QR without the sign fix is biased)
    om = L.performer_omega(40000, 4, torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(om.T @ om / len(om), torch.eye(4, dtype=torch.float64), atol=0.03, rtol=0)
    u = om / om.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(u.mean(0), torch.zeros(4, dtype=torch.float64), atol=0.02, rtol=0)
