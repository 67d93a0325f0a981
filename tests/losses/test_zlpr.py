"""ZLPR (kexue.fm/archives/7359) against a float64 loop transcription of the post's formula; sparse = dense;
gradcheck; hypothesis properties over shapes, label counts and extreme logits."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.losses import (
    SparseZLPRLoss,
    ZLPRLoss,
    multilabel_categorical_crossentropy,
    sparse_zlpr,
    zlpr,
    zlpr_predict,
    zlpr_proba,
)


def _log1p_sum_exp(xs: list[float]) -> float:
    """log(1 + Σ e^{x}) in float64 with plain loops (shifted by the max for range)."""
    m = max([0.0, *xs])
    return m + math.log(math.exp(-m) + math.fsum(math.exp(x - m) for x in xs))


def reference(s: torch.Tensor, y: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """The post's L = log(1 + Σ_neg e^{s}) + log(1 + Σ_pos e^{−s}), soft form log(1 + Σ(1−y)e^{s}) +
    log(1 + Σ y e^{−s}), row by row in float64."""
    s2 = s.double().reshape(-1, s.shape[-1]).tolist()
    y2 = y.double().reshape(-1, s.shape[-1]).tolist()
    ig = ignore.expand(s.shape).reshape(-1, s.shape[-1]).tolist() if ignore is not None else None
    out = []
    for r, (srow, yrow) in enumerate(zip(s2, y2)):
        neg, pos = [], []
        for c, (si, yi) in enumerate(zip(srow, yrow)):
            if ig is not None and ig[r][c]:
                continue
            if yi < 1:
                neg.append(si + math.log(1 - yi))
            if yi > 0:
                pos.append(-si + math.log(yi))
        out.append(_log1p_sum_exp(neg) + _log1p_sum_exp(pos))
    return torch.tensor(out, dtype=torch.float64).reshape(s.shape[:-1])


def _random(b=6, c=13, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    y = (torch.rand(b, c, generator=g) < 0.3).long()
    y[0] = 0  # a row without positives
    y[1] = 1  # a row without negatives
    return s, y


def _dense_from_index(idx: torch.Tensor, c: int, mask_zero: bool) -> torch.Tensor:
    y = torch.zeros(idx.shape[:-1] + (c,), dtype=torch.long)
    y.scatter_(-1, idx, 1)
    if mask_zero:
        y[..., 0] = 0
    return y


def test_dense_hard_labels_match_the_formula():
    s, y = _random()
    ref = reference(s, y)
    for target in (y, y.bool(), y.double()):
        torch.testing.assert_close(zlpr(s, target=target, reduction="none"), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(zlpr(s, target=y), ref.mean(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(zlpr(s, target=y, reduction="sum"), ref.sum(), rtol=1e-12, atol=1e-12)


def test_empty_sets_contribute_zero():
    s = torch.randn(3, 5, dtype=torch.float64)
    none = zlpr(s, target=torch.zeros(3, 5), reduction="none")
    torch.testing.assert_close(none, torch.log1p(s.exp().sum(-1)))  # positive part is log(1 + 0) = 0
    every = zlpr(s, target=torch.ones(3, 5), reduction="none")
    torch.testing.assert_close(every, torch.log1p((-s).exp().sum(-1)))


def test_single_label_case_is_softmax_cross_entropy_with_a_zero_class():
    # one positive t: L = log(1 + Σ_{i≠t} e^{s_i}) + log(1 + e^{−s_t}); with the threshold class appended as a
    # 0 logit this is cross-entropy's smooth max of the pairwise differences, as the post derives.
    s, _ = _random(b=4, c=7)
    t = torch.tensor([0, 3, 6, 2])
    y = torch.nn.functional.one_hot(t, 7)
    expected = torch.log1p(s.exp().sum(-1) - s.gather(1, t[:, None]).squeeze(1).exp()) + torch.nn.functional.softplus(
        -s.gather(1, t[:, None]).squeeze(1))
    torch.testing.assert_close(zlpr(s, target=y, reduction="none"), expected)


def test_soft_labels_match_the_formula_and_reduce_to_hard():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 9, generator=g, dtype=torch.float64) * 2
    y = torch.rand(5, 9, generator=g, dtype=torch.float64)
    y[0, :3] = 0.0
    y[1, :3] = 1.0
    torch.testing.assert_close(zlpr(s, target=y, reduction="none"), reference(s, y), rtol=1e-12, atol=1e-12)


def test_soft_optimum_is_sigmoid_of_two_s():
    # one class: dL/ds = 0 at s* = ½ log(y / (1 − y)), i.e. σ(2s*) = y, so the read-out is σ(2s) (not σ(s))
    for yv in (0.1, 0.37, 0.5, 0.9):
        s = torch.tensor([[0.5 * math.log(yv / (1 - yv))]], dtype=torch.float64, requires_grad=True)
        zlpr(s, target=torch.tensor([[yv]], dtype=torch.float64)).backward()
        assert abs(s.grad.item()) < 1e-12
        assert zlpr_proba(s.detach()).item() == pytest.approx(yv, abs=1e-12)


def test_ignore_mask_removes_classes_from_both_sets():
    s, y = _random(b=5, c=10, seed=3)
    ignore = torch.zeros(5, 10, dtype=torch.bool)
    ignore[:, 7:] = True
    ignore[2, 0] = True
    torch.testing.assert_close(zlpr(s, target=y, ignore_mask=ignore, reduction="none"), reference(s, y, ignore))
    # soft labels at a masked class give no ∞ − ∞
    ys = y.double() * 0.8
    out = zlpr(s, target=ys, ignore_mask=ignore, reduction="none")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, reference(s, ys, ignore))
    # a broadcast mask (one per class)
    col = torch.zeros(10, dtype=torch.bool)
    col[3] = True
    torch.testing.assert_close(zlpr(s, target=y, ignore_mask=col, reduction="none"), reference(s, y, col))


def test_extra_leading_dims():
    s = torch.randn(2, 3, 4, 8, dtype=torch.float64)
    y = (torch.rand(2, 3, 4, 8) < 0.4).long()
    torch.testing.assert_close(zlpr(s, target=y, reduction="none"), reference(s, y))


@pytest.mark.parametrize("mask_zero", [False, True])
def test_sparse_equals_dense(mask_zero):
    g = torch.Generator().manual_seed(4)
    b, c, p = 8, 20, 5
    s = torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    idx = torch.stack([torch.randperm(c - 1, generator=g)[:p] + 1 for _ in range(b)])
    if mask_zero:
        idx[0] = 0  # a fully padded row: no positives
        idx[1, 3:] = 0  # two positives, three pads
    else:
        idx[0, 0] = 0  # class 0 is an ordinary class
    dense_y = _dense_from_index(idx, c, mask_zero)
    ignore = None
    if mask_zero:
        ignore = torch.zeros(c, dtype=torch.bool)
        ignore[0] = True  # class 0 is reserved: it leaves both parts
    want = zlpr(s, target=dense_y, ignore_mask=ignore, reduction="none")
    got = sparse_zlpr(s, pos_index=idx, mask_zero=mask_zero, reduction="none")
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got, reference(s, dense_y, ignore), rtol=1e-12, atol=1e-12)


def test_sparse_is_exact_where_the_clipped_subtraction_is_not():
    # bert4keras computes the negative part as lse_all + log(clip(1 − exp(lse_pos − lse_all), 1e-7, 1)); with a
    # dominant positive that cancels (float32: about 84 instead of ≈ 0). Ours stays on the formula.
    s = torch.full((1, 50), -10.0)
    s[0, 7] = 100.0
    idx = torch.tensor([[7]])
    ref = reference(s, _dense_from_index(idx, 50, False)).float()
    got = sparse_zlpr(s, pos_index=idx, reduction="none")
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    y_pred = torch.cat([s, torch.zeros(1, 1)], -1)
    lse_all = torch.logsumexp(y_pred, -1)
    lse_pos = torch.logsumexp(y_pred.gather(1, idx), -1)
    clipped = lse_all + torch.log((1 - torch.exp(lse_pos - lse_all)).clamp(1e-7, 1))
    assert clipped.item() > 50  # the cancellation this implementation avoids


def test_gradcheck():
    s, y = _random(b=3, c=6, seed=5, scale=2.0)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: zlpr(x, target=y, reduction="none"), (s,))
    ys = torch.rand(3, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: zlpr(x, target=ys, reduction="sum"), (s,))
    idx = torch.tensor([[1, 2], [0, 5], [3, 0]])
    assert torch.autograd.gradcheck(lambda x: sparse_zlpr(x, pos_index=idx, mask_zero=True, reduction="none"), (s,))
    assert torch.autograd.gradcheck(lambda x: sparse_zlpr(x, pos_index=idx, reduction="sum"), (s,))


def test_gradients_of_sparse_and_dense_agree():
    s, _ = _random(b=4, c=12, seed=6)
    idx = torch.tensor([[1, 4, 0], [2, 3, 11], [5, 0, 0], [0, 0, 0]])
    a = s.clone().requires_grad_(True)
    sparse_zlpr(a, pos_index=idx, mask_zero=True).backward()
    b = s.clone().requires_grad_(True)
    ign = torch.zeros(12, dtype=torch.bool)
    ign[0] = True
    zlpr(b, target=_dense_from_index(idx, 12, True), ignore_mask=ign).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-14)
    assert a.grad[:, 0].abs().max() == 0  # the reserved class gets no gradient


@settings(deadline=None, max_examples=60)
@given(
    b=st.integers(1, 4),
    c=st.integers(1, 30),
    labels=st.sampled_from(["none", "all", "random", "soft"]),
    magnitude=st.sampled_from([1.0, 30.0, 1e4]),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_finite_and_faithful(b, c, labels, magnitude, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    s = ((torch.rand(b, c, generator=g) * 2 - 1) * magnitude).to(dtype)
    s[0, 0] = magnitude  # the extremes themselves
    if c > 1:
        s[0, 1] = -magnitude
    if labels == "none":
        y = torch.zeros(b, c)
    elif labels == "all":
        y = torch.ones(b, c)
    elif labels == "random":
        y = (torch.rand(b, c, generator=g) < 0.5).float()
    else:
        y = torch.rand(b, c, generator=g)
    x = s.clone().requires_grad_(True)
    loss = zlpr(x, target=y, reduction="none")
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss).all()
    assert (loss >= 0).all()
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()
    # against the float64 formula on the same (rounded) logits
    torch.testing.assert_close(loss.double(), reference(s.double(), y.double()), rtol=2e-6, atol=5e-6)
    if labels in ("none", "all", "random"):
        rows = [torch.nonzero(y[i]).flatten() for i in range(b)]
        width = max(1, max(len(r) for r in rows))
        idx = torch.zeros(b, width, dtype=torch.long)
        # pad with a class that is itself positive? no: sparse needs unique indices, so pad by repeating nothing;
        # shift labels by one and reserve class 0 (mask_zero) instead.
        s1 = torch.cat([torch.zeros(b, 1, dtype=s.dtype), s], dim=1)
        for i, r in enumerate(rows):
            idx[i, : len(r)] = r + 1
        sp = sparse_zlpr(s1, pos_index=idx, mask_zero=True, reduction="none")
        torch.testing.assert_close(sp, loss, rtol=2e-6, atol=5e-6)


def test_autocast_bf16_computes_in_fp32():
    s = torch.randn(4, 10) * 1e4
    y = (torch.rand(4, 10) < 0.3).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = zlpr(s.bfloat16(), target=y)
    assert out.dtype == torch.float32 and torch.isfinite(out)


def test_predict_and_alias_and_modules():
    s, y = _random()
    assert torch.equal(zlpr_predict(s), s > 0)
    assert torch.equal(zlpr_predict(s, threshold=1.5), s > 1.5)
    assert multilabel_categorical_crossentropy is zlpr
    torch.testing.assert_close(ZLPRLoss(reduction="none")(s, y), zlpr(s, target=y, reduction="none"))
    torch.testing.assert_close(ZLPRLoss()(s, target=y), zlpr(s, y))  # (logits, target), as info_nce and F.cross_entropy
    idx = torch.tensor([[1, 2]] * s.shape[0])
    torch.testing.assert_close(SparseZLPRLoss(mask_zero=True)(s, idx), sparse_zlpr(s, pos_index=idx, mask_zero=True))
    assert "mask_zero=True" in repr(SparseZLPRLoss(mask_zero=True))


def test_bad_input_is_named():
    s = torch.randn(2, 4)
    with pytest.raises(ValueError, match=r"expected logits and target of one shape, got \(2, 4\) and \(2, 3\)"):
        zlpr(s, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="expected target to be a tensor, got list"):
        zlpr(s, [[0, 1, 0, 0]] * 2)
    with pytest.raises(ValueError, match="expected logits with at least one dimension \\(the classes\\), got a 0-d"):
        zlpr(torch.tensor(0.5), torch.tensor(1.0))
    with pytest.raises(ValueError, match="expected target values in \\[0, 1\\], got 1.5"):
        zlpr(s, torch.full((2, 4), 1.5))
    with pytest.raises(ValueError, match="expected integer target values 0 or 1, got 2"):
        zlpr(s, torch.full((2, 4), 2))
    with pytest.raises(ValueError, match="expected reduction to be one of \\['mean', 'sum', 'none'\\], got 'avg'"):
        zlpr(s, torch.zeros(2, 4), reduction="avg")
    with pytest.raises(ValueError, match="expected reduction to be one of \\['mean', 'sum', 'none'\\], got 'avg'"):
        ZLPRLoss(reduction="avg")
    with pytest.raises(ValueError, match="expected reduction to be one of \\['mean', 'sum', 'none'\\], got 'avg'"):
        sparse_zlpr(s, pos_index=torch.tensor([[1], [2]]), reduction="avg")
    with pytest.raises(TypeError, match="expected logits to be floating-point, got dtype torch.int64"):
        zlpr(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="expected unique pos_index values within each row .*, got label 3 twice in "
                                         "row \\(1,\\)"):
        sparse_zlpr(s, pos_index=torch.tensor([[1, 2], [3, 3]]))
    with pytest.raises(ValueError, match=r"expected pos_index values in \[0, 4\), got 4"):
        sparse_zlpr(s, pos_index=torch.tensor([[1, 4], [0, 1]]))
    with pytest.raises(ValueError, match=r"expected pos_index values in \[0, 4\), got -1"):
        sparse_zlpr(s, pos_index=torch.tensor([[1, -1], [0, 1]]))
    with pytest.raises(TypeError, match="expected pos_index to be an integer tensor, got torch.float32"):
        sparse_zlpr(s, pos_index=torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"expected pos_index of shape \(2, P\) .*, got \(2,\)"):
        sparse_zlpr(s, pos_index=torch.tensor([1, 2]))
    # padding zeros may repeat under mask_zero
    sparse_zlpr(s, pos_index=torch.tensor([[1, 0, 0], [0, 0, 0]]), mask_zero=True)
