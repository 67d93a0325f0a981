"""ZLPR: the multi-label generalization of softmax + cross-entropy, dense and sparse, with module twins.

Post: "将"Softmax+交叉熵"推广到多标签分类问题" (Generalizing "softmax + cross-entropy" to multi-label classification),
2020-04-25, https://kexue.fm/archives/7359 — :func:`zlpr`, :func:`sparse_zlpr`, :func:`zlpr_predict`; the soft-label
extension and :func:`zlpr_proba` follow kexue.fm/archives/9064.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validate import check_bool, check_float
from ._common import Reduction, check_reduction, check_rows, compute_dtype, reduce_loss


def _lse_with_zero(terms: Tensor) -> Tensor:
    """log(1 + Σ_i e^{terms_i}) over the last dim: logsumexp of the row with a 0 logit appended.

    The appended 0 keeps the result finite (≥ 0) even when every term is −∞ (an empty set), and keeps the gradient
    free of NaN there: the softmax weight of every −∞ term is exactly 0.
    """
    zero = terms.new_zeros(terms.shape[:-1] + (1,))
    return torch.logsumexp(torch.cat([terms, zero], dim=-1), dim=-1)


def _excluded_fill(dtype: torch.dtype) -> float:
    """The exponent excluded entries get: e^{fill} is still a normal number (float32: e^{-80} ≈ 1.8e-35 > 1.2e-38;
    float64: e^{-700} ≈ 1e-304), so exp takes no denormal or infinity slow path."""
    return -700.0 if dtype == torch.float64 else -80.0


def _log1p_sum_exp(
    v: Tensor, keep: Tensor | None, weight: Tensor | None = None, ignore: Tensor | None = None
) -> Tensor:
    """log(1 + Σ_{i ∈ keep} w_i e^{v_i}) over the last dim, computed like a logsumexp with a 0 logit appended.

    The value of ``_lse_with_zero(v + log w)`` with −∞ at excluded entries, but without materialising −∞: exp and
    log of ±∞ take slow paths on CPU (3–20× here), and ``log 0`` would be needed for every hard label. With
    m = max(0, max_{i ∈ keep}(v_i + log w_i)), treated as a constant (the value is invariant to it), the result is
    m + log(e^{−m} + Σ_{keep} e^{v_i + log w_i − m}). Excluded entries enter the sum as e^{fill} (see
    :func:`_excluded_fill`); as the sum is at least 1 (its largest term, or e^{−m} = 1 when m = 0), their total,
    at most C·e^{−80} < 1e-29 relative, is below the rounding of any float type, and they get no gradient.
    """
    if weight is not None:
        keep = weight > 0
        if ignore is not None:
            keep = keep & ~ignore
        v = v + torch.where(keep, weight, 1.0).log()
    assert keep is not None
    excluded = ~keep
    m = v.masked_fill(excluded, 0.0).amax(dim=-1).clamp_min(0.0).detach()  # fill 0: m ≥ 0 anyway
    z = (v - m.unsqueeze(-1)).masked_fill(excluded, _excluded_fill(v.dtype))
    return m + (z.exp().sum(dim=-1) + torch.exp(-m)).log()


def zlpr(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    ignore_mask: Tensor | None = None,
) -> Tensor:
    """ZLPR, the multi-label generalization of softmax + cross-entropy (Su, 2020-04-25, kexue.fm/archives/7359).

    With a threshold class of fixed score s₀ = 0, for each row of scores s and 0/1 labels y:

        L = log(1 + Σ_{i: y_i = 0} e^{s_i}) + log(1 + Σ_{j: y_j = 1} e^{−s_j}),

    and a label is predicted when s_i > 0 (:func:`zlpr_predict`). Soft targets y ∈ [0, 1] use the later extension
    (kexue.fm/archives/9064), which reduces to the above for 0/1 labels:

        L = log(1 + Σ_i (1 − y_i) e^{s_i}) + log(1 + Σ_i y_i e^{−s_i}),

    each part a logsumexp over the logit biases s_i + log(1 − y_i) and −s_i + log y_i with a 0 logit appended
    (the post's numerical recipe). Classes outside a set are masked out rather than given the post's ±1e12
    constant (which overflows in fp16) or −∞ (whose exp takes a slow path on CPU); see
    :func:`_log1p_sum_exp`. Its optimum is y_i = σ(2 s_i) (see :func:`zlpr_proba`).

    Args:
        logits: (..., C) unbounded scores; no sigmoid or softmax before the loss.
        target: same shape, values in [0, 1] (bool, integer or float).
        reduction: ``"mean"`` over rows (all leading dims), ``"sum"`` or ``"none"`` (shape ``logits.shape[:-1]``).
        ignore_mask: optional bool tensor broadcastable to ``logits``; True marks classes left out of both sets
            (e.g. a GlobalPointer's lower triangle). Applied to the final terms, after the log-label bias, so a
            masked soft label cannot produce ∞ − ∞.

    Returns the loss in float32 (float64 for float64 logits).
    """
    check_reduction(reduction)
    dtype = compute_dtype(logits)
    if not isinstance(target, Tensor):
        raise TypeError(f"expected target to be a tensor, got {type(target).__name__}")
    if logits.dim() == 0:
        raise ValueError("expected logits with at least one dimension (the classes), got a 0-d tensor")
    if target.shape != logits.shape:
        raise ValueError(f"expected logits and target of one shape, got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")
    check_rows("logits", logits, logits.shape[:-1].numel(), reduction)
    if ignore_mask is not None:
        if not isinstance(ignore_mask, Tensor) or ignore_mask.dtype != torch.bool:
            raise TypeError(f"expected ignore_mask to be a bool tensor, got "
                            f"{getattr(ignore_mask, 'dtype', type(ignore_mask).__name__)}")
        # plain Python: torch.broadcast_shapes takes about 70 µs here
        fits = ignore_mask.dim() <= logits.dim() and all(
            a == 1 or a == b for a, b in zip(reversed(ignore_mask.shape), reversed(logits.shape)))
        if not fits:
            raise ValueError(f"expected ignore_mask broadcastable to logits' shape {tuple(logits.shape)}, got "
                             f"{tuple(ignore_mask.shape)}")
    s = logits.to(dtype)
    ignore = None
    if ignore_mask is not None:
        ignore = ignore_mask.to(s.device).expand(s.shape)
    hard = not target.is_floating_point()
    if not hard:
        y = target.to(dtype)
        bad = (y < 0) | (y > 1) | torch.isnan(y)
        if bool(bad.any()):
            raise ValueError(f"expected target values in [0, 1], got {y[bad][0].item()!r}")
        hard = bool(((y == 0) | (y == 1)).all())
        yb = y == 1
    else:
        yb = target.to(s.device)
        bad = (yb != 0) & (yb != 1)
        if bool(bad.any()):
            raise ValueError(f"expected integer target values 0 or 1, got {yb[bad][0].item()!r}")
        yb = yb.to(torch.bool)
    if hard:
        # 0/1 labels: the negative set is {s_i : y_i = 0}, the positive set {−s_j : y_j = 1}.
        keep_neg, keep_pos = ~yb, yb
        if ignore is not None:
            keep_neg, keep_pos = keep_neg & ~ignore, keep_pos & ~ignore
        loss = _log1p_sum_exp(s, keep_neg) + _log1p_sum_exp(-s, keep_pos)
    else:
        # Soft labels: log-label biases s + log(1 − y) and −s + log y, over the classes with a non-zero weight.
        loss = _log1p_sum_exp(s, None, weight=1.0 - y, ignore=ignore) + _log1p_sum_exp(-s, None, weight=y,
                                                                                       ignore=ignore)
    return reduce_loss(loss, reduction)


#: The name bert4keras uses (``multilabel_categorical_crossentropy``); same function, (logits, target) order.
multilabel_categorical_crossentropy = zlpr


def _check_unique_positions(pos_index: Tensor, ignore_zero: bool) -> None:
    if pos_index.shape[-1] < 2:
        return
    srt, _ = pos_index.sort(dim=-1)
    dup = srt[..., 1:] == srt[..., :-1]
    if ignore_zero:
        dup &= srt[..., 1:] != 0
    if bool(dup.any()):
        where = dup.nonzero()[0].tolist()
        row, col = tuple(where[:-1]), where[-1]
        raise ValueError(
            "expected unique pos_index values within each row (a duplicate would count twice in the positive set), "
            f"got label {srt[row][col + 1].item()} twice in row {row}"
        )


def sparse_zlpr(
    logits: Tensor,
    *,
    pos_index: Tensor,
    mask_zero: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    """ZLPR from positive label indices, without building the dense label matrix (kexue.fm/archives/7359).

    Equals :func:`zlpr` with the 0/1 targets that ``pos_index`` encodes:

    * positive part: logsumexp over {0} ∪ {−s_j : j ∈ pos};
    * negative part: log(1 + Σ_{i ∉ pos} e^{s_i}).

    bert4keras (``sparse_multilabel_categorical_crossentropy``) computes the negative part as
    lse_all + log(1 − exp(lse_pos − lse_all)) with a 1e-7 clip. That subtraction cancels catastrophically once a
    positive logit dominates the row (for s_pos = 100 and negatives near −10 it returns about 84 instead of ≈ 0
    in float32), so here the positives are scattered to −∞ in a copy of the row (with the 0 logit appended) and a
    plain logsumexp is taken. The copy has the size of the logits, as bert4keras' own concatenation does; no
    (..., C) label tensor is ever built.

    Args:
        logits: (..., C) scores.
        pos_index: keyword-only, (..., P) integer indices in [0, C), unique within a row.
        mask_zero: index 0 marks padding. Class 0 is then reserved: its logit leaves both parts, so real labels
            must be numbered from 1 (in a flattened GlobalPointer this is the [CLS]–[CLS] cell).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    check_reduction(reduction)
    check_bool("mask_zero", mask_zero)
    dtype = compute_dtype(logits)
    if logits.dim() == 0:
        raise ValueError("expected logits with at least one dimension (the classes), got a 0-d tensor")
    check_rows("logits", logits, logits.shape[:-1].numel(), reduction)
    if not isinstance(pos_index, Tensor) or pos_index.is_floating_point() or pos_index.dtype == torch.bool:
        raise TypeError(f"expected pos_index to be an integer tensor, got "
                        f"{getattr(pos_index, 'dtype', type(pos_index))}")
    if pos_index.dim() != logits.dim() or pos_index.shape[:-1] != logits.shape[:-1]:
        raise ValueError(
            f"expected pos_index of shape ({''.join(f'{n}, ' for n in logits.shape[:-1])}P) (logits' leading shape "
            f"plus the number of positives P), got {tuple(pos_index.shape)}"
        )
    c = logits.shape[-1]
    idx = pos_index.to(device=logits.device, dtype=torch.long)
    if idx.numel():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= c:
            raise ValueError(f"expected pos_index values in [0, {c}), got {lo if lo < 0 else hi}")
    _check_unique_positions(idx, ignore_zero=mask_zero)
    s = logits.to(dtype)
    # Positive part: {0} ∪ {−s_j}; padding (index 0 under mask_zero) leaves the set.
    pos = -torch.gather(s, -1, idx)
    if mask_zero:
        pos = pos.masked_fill(idx == 0, float("-inf"))
    # Negative part: the row with its positives (and, under mask_zero, class 0) set to −∞, then 0 appended.
    neg = s.scatter(-1, idx, float("-inf"))
    if mask_zero:
        neg = neg.index_fill(-1, torch.zeros(1, dtype=torch.long, device=s.device), float("-inf"))
    loss = _lse_with_zero(neg) + _lse_with_zero(pos)
    return reduce_loss(loss, reduction)


def zlpr_predict(logits: Tensor, threshold: float = 0.0) -> Tensor:
    """The ZLPR decision rule {i : s_i > threshold}, as a bool tensor. The post's threshold is **0**, not 0.5."""
    compute_dtype(logits)
    check_float("threshold", threshold)
    return logits > threshold


def zlpr_proba(logits: Tensor) -> Tensor:
    """A probability read-out for ZLPR scores: σ(2s), the optimum of the soft-label form (kexue.fm/archives/9064).

    Not σ(s); the decision threshold stays s > 0, i.e. σ(2s) > 0.5.
    """
    dtype = compute_dtype(logits)  # first: it says what logits should be before .to() fails on a non-tensor
    return torch.sigmoid(2 * logits.to(dtype))


class ZLPRLoss(nn.Module):
    """Module twin of :func:`zlpr`: ``loss(logits, target, ignore_mask=None)``."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor, ignore_mask: Tensor | None = None) -> Tensor:
        return zlpr(logits, target, reduction=self.reduction, ignore_mask=ignore_mask)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class SparseZLPRLoss(nn.Module):
    """Module twin of :func:`sparse_zlpr`: ``loss(logits, pos_index)``."""

    def __init__(self, mask_zero: bool = False, reduction: Reduction = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.mask_zero = check_bool("mask_zero", mask_zero)
        self.reduction = reduction

    def forward(self, logits: Tensor, pos_index: Tensor) -> Tensor:
        return sparse_zlpr(logits, pos_index=pos_index, mask_zero=self.mask_zero, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"mask_zero={self.mask_zero}, reduction={self.reduction!r}"


__all__ = [
    "SparseZLPRLoss",
    "ZLPRLoss",
    "multilabel_categorical_crossentropy",
    "sparse_zlpr",
    "zlpr",
    "zlpr_predict",
    "zlpr_proba",
]
