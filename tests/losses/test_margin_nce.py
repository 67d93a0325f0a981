"""AM-Softmax (kexue.fm/archives/8656) against pytorch-metric-learning's CosFaceLoss and an independent
cross-entropy; InfoNCE / FlatNCE (kexue.fm/archives/8586) against F.cross_entropy, an independent logsumexp, the
per-sample gradient identity, NT-Xent, and the float32 case the FlatNCE post is about."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.losses import (
    AMSoftmaxLoss,
    FlatNCELoss,
    InfoNCELoss,
    am_softmax,
    class_mean_diameter,
    flat_nce,
    info_nce,
    simclr_logits,
)


def _am_data(seed=0, b=12, k=5, d=8):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, d, generator=g, dtype=torch.float64), torch.randn(k, d, generator=g, dtype=torch.float64),
            torch.randint(0, k, (b,), generator=g))


# ---------------------------------------------------------------- AM-Softmax


@pytest.mark.parametrize("scale,margin", [(30.0, 0.35), (16.0, 0.0), (64.0, 0.2)])
def test_am_softmax_matches_pytorch_metric_learning_cosface(scale, margin):
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    z, c, t = _am_data()
    ref = pml.CosFaceLoss(num_classes=c.shape[0], embedding_size=c.shape[1], margin=margin, scale=scale)
    ref.W.data = c.T.clone()  # PML keeps the centres as columns
    want = ref(z, t)
    got = am_softmax(z, c, t, scale=scale, margin=margin)
    torch.testing.assert_close(got, want.to(got.dtype), rtol=1e-10, atol=1e-10)


def test_am_softmax_is_cross_entropy_on_margin_adjusted_cosines():
    z, c, t = _am_data(seed=1)
    s, m = 30.0, 0.35
    cos = torch.empty(z.shape[0], c.shape[0], dtype=torch.float64)
    for i in range(z.shape[0]):
        for j in range(c.shape[0]):
            cos[i, j] = (z[i] @ c[j]) / (z[i].norm() * c[j].norm())
    logits = s * (cos - m * F.one_hot(t, c.shape[0]))  # margin inside the scale
    torch.testing.assert_close(am_softmax(z, c, t, s, m, reduction="none"),
                               F.cross_entropy(logits, t, reduction="none"))
    # not s·cos_t − m
    wrong = F.cross_entropy(s * cos - m * F.one_hot(t, c.shape[0]), t)
    assert not torch.allclose(am_softmax(z, c, t, s, m), wrong)


@pytest.mark.parametrize("distance", ["euclid_unit", "sqrt_cos", "cos"])
def test_distance_forms_match_the_triangle_inequality_loss(distance):
    # L = log(1 + Σ_{j≠t} exp(s·[d(z, c_t) + m − d(z, c_j)])), with d computed from the vectors, not from cos
    z, c, t = _am_data(seed=2, b=7, k=4)
    s, m = 10.0, 0.3
    zn, cn = z / z.norm(dim=1, keepdim=True), c / c.norm(dim=1, keepdim=True)
    want = []
    for i in range(z.shape[0]):
        if distance == "euclid_unit":
            d = [(zn[i] - cn[j]).norm().item() for j in range(c.shape[0])]
        elif distance == "sqrt_cos":
            d = [math.sqrt(1 - (zn[i] @ cn[j]).item()) for j in range(c.shape[0])]
        else:
            d = [1 - (zn[i] @ cn[j]).item() for j in range(c.shape[0])]
        ti = int(t[i])
        want.append(math.log1p(math.fsum(math.exp(s * (d[ti] + m - d[j])) for j in range(len(d)) if j != ti)))
    got = am_softmax(z, c, t, s, m, distance=distance, reduction="none")
    torch.testing.assert_close(got, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-10)


def test_am_softmax_grad_and_module():
    z, c, t = _am_data(seed=3, b=5, k=3, d=4)
    zz = z.clone().requires_grad_(True)
    cc = c.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: am_softmax(a, b, t, 5.0, 0.2), (zz, cc))
    torch.manual_seed(0)
    mod = AMSoftmaxLoss(num_classes=3, dim=4, scale=5.0, margin=0.2)
    torch.testing.assert_close(mod(z.float(), t), am_softmax(z.float(), mod.centers, t, 5.0, 0.2))
    # no margin at inference
    torch.testing.assert_close(mod.scores(z.float()),
                               5.0 * F.normalize(z.float(), dim=1) @ F.normalize(mod.centers, dim=1).T)
    fresh = AMSoftmaxLoss(num_classes=3, dim=4, scale=5.0, margin=0.2)
    fresh.load_state_dict(mod.state_dict())
    torch.testing.assert_close(fresh(z.float(), t), mod(z.float(), t))
    assert "margin=0.2" in repr(mod)


def test_class_mean_diameter():
    z, c, t = _am_data(seed=4)
    for distance in ("cos", "euclid_unit", "sqrt_cos"):
        vals = []
        for i in range(z.shape[0]):
            cs = float(F.cosine_similarity(z[i], c[t[i]], dim=0))
            vals.append({"cos": 1 - cs, "euclid_unit": math.sqrt(2 - 2 * cs), "sqrt_cos": math.sqrt(1 - cs)}[distance])
        assert class_mean_diameter(z, t, c, distance) == pytest.approx(2 * sum(vals) / len(vals), rel=1e-12)


def test_am_softmax_bad_input():
    z, c, t = _am_data()
    with pytest.raises(ValueError, match="expected distance to be one of \\['cos', 'euclid_unit', 'sqrt_cos'\\], "
                                         "got 'sq_euclid'"):
        am_softmax(z, c, t, distance="sq_euclid")  # squared Euclidean breaks the triangle inequality
    with pytest.raises(ValueError, match=r"expected target values in \[0, 5\), got \d+..\d+"):
        am_softmax(z, c, t + 5)
    with pytest.raises(ValueError, match=r"expected target of shape \(12,\), got \(11,\)"):
        am_softmax(z, c, t[:-1])
    with pytest.raises(TypeError, match="expected target to be an integer tensor, got torch.float64"):
        am_softmax(z, c, t.double())
    with pytest.raises(ValueError, match="same dim"):
        am_softmax(z, c[:, :3], t)
    with pytest.raises(ValueError, match="expected scale > 0.0, got 0.0"):
        am_softmax(z, c, t, scale=0.0)
    with pytest.raises(ValueError, match="expected margin to be finite, got inf"):
        am_softmax(z, c, t, margin=math.inf)
    with pytest.raises(TypeError, match="expected z to be floating-point, got dtype torch.int64"):
        am_softmax(z.long(), c, t)
    with pytest.raises(ValueError, match="expected reduction to be one of \\['mean', 'sum', 'none'\\], got 'avg'"):
        am_softmax(z, c, t, reduction="avg")
    with pytest.raises(ValueError, match="expected num_classes >= 2, got 1"):
        AMSoftmaxLoss(1, 4)
    with pytest.raises(ValueError, match="expected dim >= 1, got 0"):
        AMSoftmaxLoss(3, 0)
    with pytest.raises(ValueError, match="expected scale > 0.0, got -1"):
        AMSoftmaxLoss(3, 4, scale=-1)
    with pytest.raises(ValueError, match="expected distance to be one of"):
        AMSoftmaxLoss(3, 4, distance="l2")
    with pytest.raises(ValueError, match="expected distance to be one of"):
        class_mean_diameter(z, t, c, "l2")
    with pytest.raises(ValueError, match=r"expected target of shape \(12,\), got \(11,\)"):
        class_mean_diameter(z, t[:-1], c)
    with pytest.raises(ValueError, match="expected z with at least one sample, got 0 rows"):
        class_mean_diameter(z[:0], t[:0], c)


# ---------------------------------------------------------------- InfoNCE / FlatNCE


def _nce_data(seed=0, b=6, k=9, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, generator=g, dtype=torch.float64) * scale, torch.randint(0, k, (b,), generator=g)


def test_flat_nce_is_lse_of_negatives_minus_positive():
    s, t = _nce_data()
    want = []
    for i in range(s.shape[0]):
        negatives = torch.stack([s[i, j] for j in range(s.shape[1]) if j != t[i]])
        want.append(torch.logsumexp(negatives, 0) - s[i, t[i]])
    torch.testing.assert_close(flat_nce(s, t, reduction="none"), torch.stack(want))
    torch.testing.assert_close(flat_nce(s, t), torch.stack(want).mean())
    torch.testing.assert_close(info_nce(s, t), F.cross_entropy(s, t))


def test_flat_nce_gradient_is_a_per_sample_rescaling_of_cross_entropy():
    # ∇L_Flat = ((1 + ξ)/ξ) ∇L_CE per sample, ξ = Σ_{i≠t} e^{s_i − s_t}
    s, t = _nce_data(seed=1)
    for i in range(s.shape[0]):
        a = s[i : i + 1].clone().requires_grad_(True)
        flat_nce(a, t[i : i + 1]).backward()
        b = s[i : i + 1].clone().requires_grad_(True)
        F.cross_entropy(b, t[i : i + 1]).backward()
        row = s[i]
        xi = (row - row[t[i]]).exp().sum() - 1.0
        torch.testing.assert_close(a.grad, (1 + xi) / xi * b.grad, rtol=1e-10, atol=1e-12)


def test_paper_form_has_value_one_and_the_same_gradient():
    s, t = _nce_data(seed=2)
    a = s.clone().requires_grad_(True)
    val = flat_nce(a, t, form="paper", reduction="none")
    torch.testing.assert_close(val, torch.ones_like(val))
    val.mean().backward()
    b = s.clone().requires_grad_(True)
    flat_nce(b, t).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_flat_nce_can_be_negative():
    s = torch.tensor([[10.0, 0.0, 0.0]])
    assert flat_nce(s, torch.tensor([0])).item() < 0  # log ξ < 0 once the positive dominates; that is normal


def _fp32_case(seed: int, n: int = 400):
    """τ = 0.05, positive cosine 0.99, 15 negatives with cosine ~ U(−0.2, 0.1): ξ spans both sides of 2^-24."""
    g = torch.Generator().manual_seed(seed)
    neg = torch.rand(n, 15, generator=g, dtype=torch.float64) * 0.3 - 0.2
    cos = torch.cat([torch.full((n, 1), 0.99, dtype=torch.float64), neg], dim=1)
    return cos / 0.05, torch.zeros(n, dtype=torch.long)


def test_float32_infonce_gradient_on_the_positive_vanishes_but_flatnce_does_not():
    s64, t = _fp32_case(0)
    xi = (s64[:, 1:] - s64[:, :1]).exp().sum(1)
    tiny = xi < 2.0**-24 / 2  # below half of float32's epsilon at 1: 1 + ξ rounds to 1
    assert 10 < int(tiny.sum()) < len(xi)
    s32 = s64.float().clone().requires_grad_(True)
    info_nce(s32, t, reduction="sum").backward()
    g_ce = s32.grad
    s32b = s64.float().clone().requires_grad_(True)
    flat_nce(s32b, t, reduction="sum").backward()
    g_flat = s32b.grad
    # InfoNCE in float32: loss and positive gradient p_t − 1 round to exactly 0 on those rows ...
    ce_rows = info_nce(s64.float(), t, reduction="none")
    assert (ce_rows[tiny] == 0).all()
    assert (g_ce[tiny, 0] == 0).all()
    # ... while the negatives' gradients do not, so the row's gradient no longer sums to zero
    assert (g_ce[tiny, 1:] > 0).all()
    assert (g_ce[tiny].sum(1) > 0).all()
    # FlatNCE: −1 on the positive, the softmax over the negatives elsewhere, exact against float64
    assert (g_flat[:, 0] == -1).all()
    soft64 = torch.softmax(s64[:, 1:], dim=1)
    torch.testing.assert_close(g_flat[:, 1:].double(), soft64, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(g_flat.sum(1), torch.zeros(len(t)), atol=1e-6, rtol=0)


def test_info_nce_on_simclr_logits_matches_nt_xent():
    pml = pytest.importorskip("pytorch_metric_learning.losses")
    g = torch.Generator().manual_seed(5)
    b, tau = 6, 0.2
    z1, z2 = torch.randn(b, 5, generator=g, dtype=torch.float64), torch.randn(b, 5, generator=g, dtype=torch.float64)
    logits, target = simclr_logits(z1, z2, tau)
    assert logits.shape == (2 * b, 2 * b - 1)
    want = pml.NTXentLoss(temperature=tau)(torch.cat([z1, z2]), torch.arange(b).repeat(2))
    torch.testing.assert_close(info_nce(logits, target), want, rtol=1e-8, atol=1e-8)


def test_simclr_logits_layout():
    g = torch.Generator().manual_seed(6)
    z1, z2 = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    out = simclr_logits(z1, z2, 0.5)
    logits, target = out
    assert out.logits is logits and out.target is target
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    for i in range(6):
        others = [j for j in range(6) if j != i]
        torch.testing.assert_close(logits[i], torch.stack([z[i] @ z[j] for j in others]) / 0.5)
        assert others[int(target[i])] == (i + 3) % 6  # the other view of the same sample


@settings(deadline=None, max_examples=40)
@given(b=st.integers(1, 5), k=st.integers(2, 20), magnitude=st.sampled_from([1.0, 50.0, 1e4]),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]), seed=st.integers(0, 2**31 - 1))
def test_nce_property_finite(b, k, magnitude, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    s = ((torch.rand(b, k, generator=g) * 2 - 1) * magnitude).to(dtype)
    t = torch.randint(0, k, (b,), generator=g)
    x = s.clone().requires_grad_(True)
    loss = flat_nce(x, t, reduction="none")
    loss.sum().backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss).all() and torch.isfinite(x.grad).all()
    s64 = s.double()
    want = torch.logsumexp(s64.scatter(1, t[:, None], float("-inf")), 1) - s64.gather(1, t[:, None]).squeeze(1)
    torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-5 * magnitude)
    assert torch.isfinite(info_nce(s, t)).all()


def test_nce_modules_and_bad_input():
    s, t = _nce_data()
    torch.testing.assert_close(InfoNCELoss()(s, t), info_nce(s, t))
    torch.testing.assert_close(FlatNCELoss(form="paper")(s, t), flat_nce(s, t, form="paper"))
    with pytest.raises(ValueError, match="expected logits with K >= 2 columns .*, got K = 1"):
        flat_nce(torch.zeros(3, 1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected target values in \[0, 9\), got 0..9"):
        flat_nce(s, torch.tensor([0, 1, 2, 3, 4, 9]))
    with pytest.raises(ValueError, match=r"expected target of shape \(6,\), got \(5,\)"):
        info_nce(s, t[:-1])
    with pytest.raises(ValueError, match=r"expected logits of shape \(batch, K\), got \(9,\)"):
        info_nce(s[0], t[:1])
    with pytest.raises(TypeError, match="expected target to be an integer tensor, got torch.float32"):
        info_nce(s, t.float())
    with pytest.raises(ValueError, match="expected reduction to be one of \\['mean', 'sum', 'none'\\], got 'avg'"):
        InfoNCELoss(reduction="avg")
    with pytest.raises(ValueError, match="expected form to be one of \\['su', 'paper'\\], got 'flat'"):
        flat_nce(s, t, form="flat")
    with pytest.raises(ValueError, match="expected form to be one of \\['su', 'paper'\\], got 'flat'"):
        FlatNCELoss(form="flat")
    with pytest.raises(ValueError, match="expected tau > 0.0, got 0.0"):
        simclr_logits(torch.zeros(2, 3), torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="expected z1 and z2 with a batch of at least 2 .*, got 1"):
        simclr_logits(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"expected z1 and z2 of the same shape \(batch, dim\), got \(2, 3\) and "
                                         r"\(2, 4\)"):
        simclr_logits(torch.zeros(2, 3), torch.zeros(2, 4))
