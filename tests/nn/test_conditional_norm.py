"""ConditionalLayerNorm (kexue.fm/archives/7321): at init it is torch's LayerNorm whatever the condition; it loads a
LayerNorm's weight and bias; the condition shifts γ and β by its projections, broadcast over positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kexue.nn import ConditionalLayerNorm


def test_at_init_equals_layer_norm_whatever_the_condition():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 8, generator=g, dtype=torch.float64) * 3 + 1
    cond = torch.randn(3, 6, generator=g, dtype=torch.float64)
    cln = ConditionalLayerNorm(8, 6, eps=1e-5).double()
    ref = F.layer_norm(x, (8,), torch.ones(8, dtype=torch.float64), torch.zeros(8, dtype=torch.float64), 1e-5)
    torch.testing.assert_close(cln(x, cond), ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(cln(x, cond * 100), ref, rtol=0, atol=1e-14)
    assert torch.count_nonzero(cln.gamma_proj.weight) == 0 and torch.count_nonzero(cln.beta_proj.weight) == 0


def test_loads_a_layer_norm():
    ln = torch.nn.LayerNorm(8, eps=1e-12)
    with torch.no_grad():
        ln.weight.normal_()
        ln.bias.normal_()
    x = torch.randn(2, 4, 8)
    cond = torch.randn(2, 4, 3)
    a = ConditionalLayerNorm.from_layer_norm(ln, 3)
    assert a.eps == 1e-12
    torch.testing.assert_close(a(x, cond), ln(x))
    b = ConditionalLayerNorm(8, 3, eps=1e-12)
    missing, unexpected = b.load_state_dict(ln.state_dict(), strict=False)
    assert sorted(missing) == ["beta_proj.weight", "gamma_proj.weight"] and not unexpected
    torch.testing.assert_close(b(x, cond), ln(x))


def test_condition_shifts_gamma_and_beta_per_sequence():
    g = torch.Generator().manual_seed(1)
    cln = ConditionalLayerNorm(4, 2).double()
    with torch.no_grad():
        cln.gamma_proj.weight.normal_(generator=g)
        cln.beta_proj.weight.normal_(generator=g)
        cln.weight.normal_(generator=g)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    cond = torch.randn(2, 2, generator=g, dtype=torch.float64)
    out = cln(x, cond)
    for b in range(2):
        gamma = cln.weight + cln.gamma_proj.weight @ cond[b]
        beta = cln.bias + cln.beta_proj.weight @ cond[b]
        for t in range(3):
            v = x[b, t]
            ref = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + cln.eps) * gamma + beta
            torch.testing.assert_close(out[b, t], ref)
    # a condition per position (same leading shape as x) gives the same result as the broadcast one
    torch.testing.assert_close(cln(x, cond[:, None].expand(2, 3, 2)), out)


def test_gradient_reaches_the_projections():
    cln = ConditionalLayerNorm(4, 2)
    cln(torch.randn(2, 3, 4), torch.randn(2, 2)).pow(2).sum().backward()
    assert cln.gamma_proj.weight.grad is not None and cln.gamma_proj.weight.grad.abs().sum() > 0
    assert cln.beta_proj.weight.grad is not None and cln.beta_proj.weight.grad.abs().sum() > 0
