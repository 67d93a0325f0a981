"""Losses from Scientific Spaces: ZLPR (multi-label softmax + cross-entropy), AM-Softmax, InfoNCE and FlatNCE.

Each loss is a function taking **logits** (never probabilities) with an ``nn.Module`` twin. Every loss computes in
at least float32 (a bf16 or fp16 input is upcast first; float64 stays float64), so the result is finite for logits
up to ±1e4 in any input dtype.

Posts:

* "将"Softmax+交叉熵"推广到多标签分类问题" (Generalizing "softmax + cross-entropy" to multi-label classification),
  2020-04-25, https://kexue.fm/archives/7359 — :func:`zlpr`, :func:`sparse_zlpr`, :func:`zlpr_predict`;
* "从三角不等式到Margin Softmax" (From the triangle inequality to margin softmax), 2021-09-01,
  https://kexue.fm/archives/8656 — :func:`am_softmax`, :class:`AMSoftmaxLoss`, :func:`class_mean_diameter`;
* "FlatNCE：小批次对比学习效果差的原因竟是浮点误差？" (FlatNCE: is floating-point error why small-batch contrastive
  learning does poorly?), 2021-07-26, https://kexue.fm/archives/8586 — :func:`info_nce`, :func:`flat_nce`,
  :func:`simclr_logits`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import check_choice, check_float, check_int

Reduction = Literal["mean", "sum", "none"]


def _compute_dtype(x: Tensor, name: str = "logits") -> torch.dtype:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected {name} to be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"expected {name} to be floating-point, got dtype {x.dtype}")
    return torch.promote_types(x.dtype, torch.float32)


def _reduce(loss: Tensor, reduction: Reduction) -> Tensor:
    """Apply a reduction the public entry has checked."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: Reduction) -> None:
    check_choice("reduction", reduction, Reduction)


def _check_labels(name: str, target: object, num_classes: int, shape: tuple[int, ...]) -> Tensor:
    """``target`` as a long tensor of class indices of ``shape``, each in [0, num_classes)."""
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"expected {name} to be an integer tensor, got {getattr(target, 'dtype', type(target))}")
    if tuple(target.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, got {tuple(target.shape)}")
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"expected {name} values in [0, {num_classes}), got {int(target.min())}.."
                         f"{int(target.max())}")
    return target.long()


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


# ----------------------------------------------------------------------------------------------------------------
# ZLPR: multi-label "softmax + cross-entropy" (kexue.fm/archives/7359)
# ----------------------------------------------------------------------------------------------------------------


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
    _check_reduction(reduction)
    dtype = _compute_dtype(logits)
    if not isinstance(target, Tensor):
        raise TypeError(f"expected target to be a tensor, got {type(target).__name__}")
    if logits.dim() == 0:
        raise ValueError("expected logits with at least one dimension (the classes), got a 0-d tensor")
    if target.shape != logits.shape:
        raise ValueError(f"expected logits and target of one shape, got {tuple(logits.shape)} and "
                         f"{tuple(target.shape)}")
    s = logits.to(dtype)
    ignore = None
    if ignore_mask is not None:
        ignore = torch.as_tensor(ignore_mask, device=s.device).to(torch.bool).expand(s.shape)
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
    return _reduce(loss, reduction)


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
    _check_reduction(reduction)
    dtype = _compute_dtype(logits)
    if logits.dim() == 0:
        raise ValueError("expected logits with at least one dimension (the classes), got a 0-d tensor")
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
    return _reduce(loss, reduction)


def zlpr_predict(logits: Tensor, threshold: float = 0.0) -> Tensor:
    """The ZLPR decision rule {i : s_i > threshold}, as a bool tensor. The post's threshold is **0**, not 0.5."""
    return logits > threshold


def zlpr_proba(logits: Tensor) -> Tensor:
    """A probability read-out for ZLPR scores: σ(2s), the optimum of the soft-label form (kexue.fm/archives/9064).

    Not σ(s); the decision threshold stays s > 0, i.e. σ(2s) > 0.5.
    """
    return torch.sigmoid(2 * logits.to(_compute_dtype(logits)))


class ZLPRLoss(nn.Module):
    """Module twin of :func:`zlpr`: ``loss(logits, target, ignore_mask=None)``."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor, ignore_mask: Tensor | None = None) -> Tensor:
        return zlpr(logits, target, reduction=self.reduction, ignore_mask=ignore_mask)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class SparseZLPRLoss(nn.Module):
    """Module twin of :func:`sparse_zlpr`: ``loss(logits, pos_index)``."""

    def __init__(self, mask_zero: bool = False, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.mask_zero = mask_zero
        self.reduction = reduction

    def forward(self, logits: Tensor, pos_index: Tensor) -> Tensor:
        return sparse_zlpr(logits, pos_index=pos_index, mask_zero=self.mask_zero, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"mask_zero={self.mask_zero}, reduction={self.reduction!r}"


# ----------------------------------------------------------------------------------------------------------------
# AM-Softmax (kexue.fm/archives/8656)
# ----------------------------------------------------------------------------------------------------------------

Distance = Literal["cos", "euclid_unit", "sqrt_cos"]
# √ has an infinite slope at 0; a sample sitting exactly on its centre would get a NaN gradient without this floor.
_SQRT_FLOOR = 1e-12


def _cosines(z: Tensor, centers: Tensor) -> Tensor:
    return F.normalize(z, dim=-1) @ F.normalize(centers, dim=-1).T


def _distance_from_cos(cos: Tensor, distance: Distance) -> Tensor:
    """d(z, c) as a function of cos(z, c): 1 − cos, ‖z/‖z‖ − c/‖c‖‖ = √(2 − 2cos), or √(1 − cos) (``distance``
    checked by the public entry)."""
    if distance == "cos":
        return 1.0 - cos
    if distance == "euclid_unit":
        return torch.sqrt((2.0 - 2.0 * cos).clamp_min(_SQRT_FLOOR))
    return torch.sqrt((1.0 - cos).clamp_min(_SQRT_FLOOR))


def am_softmax_logits(
    z: Tensor, centers: Tensor, target: Tensor | None = None, *, scale: float = 30.0, margin: float = 0.35,
    distance: Distance = "cos",
) -> Tensor:
    """The margin-adjusted logits of :func:`am_softmax`: s·(cos_j − m·[j = t]) for ``distance="cos"``, and
    −s·(d_j + m·[j = t]) otherwise. With ``target=None`` (inference) no margin is applied."""
    check_choice("distance", distance, Distance)
    check_float("scale", scale, low=0.0, low_open=True)
    check_float("margin", margin)
    dtype = torch.promote_types(_compute_dtype(z, "z"), _compute_dtype(centers, "centers"))
    if z.dim() != 2 or centers.dim() != 2 or z.shape[1] != centers.shape[1]:
        raise ValueError(
            f"expected z (batch, dim) and centers (classes, dim) with the same dim, got {tuple(z.shape)} and "
            f"{tuple(centers.shape)}"
        )
    cos = _cosines(z.to(dtype), centers.to(dtype))
    if distance == "cos":
        score = cos  # the post's exact AM-Softmax: cos_t − cos_j > m
    else:
        score = -_distance_from_cos(cos, distance)
    if target is not None:
        k = centers.shape[0]
        t = _check_labels("target", target, k, (z.shape[0],))
        # The margin goes on the target logit, *inside* the scale: s·(cos_t − m), not s·cos_t − m.
        score = score - margin * F.one_hot(t, k).to(dtype)
    return scale * score


def am_softmax(
    z: Tensor,
    centers: Tensor,
    target: Tensor,
    scale: float = 30.0,
    margin: float = 0.35,
    distance: Distance = "cos",
    reduction: Reduction = "mean",
) -> Tensor:
    """Additive-margin softmax (Su, "从三角不等式到Margin Softmax", 2021-09-01, kexue.fm/archives/8656).

    Retrieval wants every same-class pair closer than every cross-class pair. By the triangle inequality,
    d(z, c_t) + m < d(z, c_j) for all j ≠ t (m ≈ the classes' mean diameter) is a sufficient condition; smoothing
    it with logsumexp gives

        L = log(1 + Σ_{j≠t} exp(s·[d(z, c_t) + m − d(z, c_j)])),

    which for cosine scores is exactly AM-Softmax:

        L_AM = −log[e^{s(cos_t − m)} / (e^{s(cos_t − m)} + Σ_{j≠t} e^{s·cos_j})].

    ``distance``: ``"cos"`` (d = 1 − cos; the AM-Softmax above), ``"euclid_unit"`` (‖z/‖z‖ − c/‖c‖‖) or
    ``"sqrt_cos"`` (√(1 − cos)); both of the last two are metrics, squared Euclidean distance is not and is not
    offered. z and the centres are L2-normalised here. The post gives no s or m; the defaults s = 30, m = 0.35
    are the AM-Softmax paper's. Computed as ``F.cross_entropy`` on the margin-adjusted logits. Use no margin at
    inference (:meth:`AMSoftmaxLoss.scores`).
    """
    _check_reduction(reduction)
    logits = am_softmax_logits(z, centers, target, scale=scale, margin=margin, distance=distance)
    return F.cross_entropy(logits, target.long(), reduction=reduction)


def class_mean_diameter(z: Tensor, target: Tensor, centers: Tensor, distance: Distance = "cos") -> float:
    """2 × mean_i d(z_i, c_{t_i}): the classes' mean diameter, the margin of the adaptive-m recipe of
    kexue.fm/archives/8656 (train with m = 0, set m to this, retrain, repeat). ``z``: (N, dim) embeddings,
    ``target``: (N,) their classes, ``centers``: (classes, dim); ``distance`` as in :func:`am_softmax` (``"cos"``
    measures d = 1 − cos, the unit in which the cosine margin is expressed)."""
    check_choice("distance", distance, Distance)
    _compute_dtype(z, "z")
    _compute_dtype(centers, "centers")
    if z.dim() != 2 or centers.dim() != 2 or z.shape[1] != centers.shape[1]:
        raise ValueError(
            f"expected z (batch, dim) and centers (classes, dim) with the same dim, got {tuple(z.shape)} and "
            f"{tuple(centers.shape)}"
        )
    if z.shape[0] == 0:
        raise ValueError("expected z with at least one sample, got 0 rows")
    t = _check_labels("target", target, centers.shape[0], (z.shape[0],))
    with torch.no_grad():
        cos = _cosines(z.double(), centers.double())
        d = _distance_from_cos(cos.gather(1, t.view(-1, 1)).squeeze(1), distance)
        return float(2.0 * d.mean())


class AMSoftmaxLoss(nn.Module):
    """AM-Softmax with learnable class centres (``centers``: (num_classes, dim)); see :func:`am_softmax`.

    ``loss(z, target)`` trains; ``scores(z)`` gives the margin-free logits s·cos (or −s·d) for inference.
    """

    def __init__(
        self, num_classes: int, dim: int, scale: float = 30.0, margin: float = 0.35, distance: Distance = "cos"
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=2)
        check_int("dim", dim, minimum=1)
        check_float("scale", scale, low=0.0, low_open=True)
        check_float("margin", margin)
        check_choice("distance", distance, Distance)
        self.num_classes, self.dim = num_classes, dim
        self.scale, self.margin, self.distance = float(scale), float(margin), distance
        self.centers = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.centers)

    def forward(self, z: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
        return am_softmax(z, self.centers, target, self.scale, self.margin, self.distance, reduction)

    def scores(self, z: Tensor) -> Tensor:
        return am_softmax_logits(z, self.centers, None, scale=self.scale, distance=self.distance)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, dim={self.dim}, scale={self.scale}, margin={self.margin}, "
                f"distance={self.distance!r}")


# ----------------------------------------------------------------------------------------------------------------
# InfoNCE and FlatNCE (kexue.fm/archives/8586)
# ----------------------------------------------------------------------------------------------------------------


def _check_nce(logits: Tensor, target: Tensor) -> Tensor:
    _compute_dtype(logits)
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (batch, K), got {tuple(logits.shape)}")
    return _check_labels("target", target, logits.shape[1], (logits.shape[0],))


def info_nce(logits: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """InfoNCE: the cross-entropy −log(e^{s_t} / Σ_i e^{s_i}) = log(1 + ξ), ξ = Σ_{i≠t} e^{s_i − s_t}
    (kexue.fm/archives/8586), in at least float32."""
    _check_reduction(reduction)
    t = _check_nce(logits, target)
    return F.cross_entropy(logits.to(_compute_dtype(logits)), t, reduction=reduction)


FlatForm = Literal["su", "paper"]


def flat_nce(
    logits: Tensor, target: Tensor, reduction: Reduction = "mean", form: FlatForm = "su"
) -> Tensor:
    """FlatNCE (Su, "FlatNCE：小批次对比学习效果差的原因竟是浮点误差？", 2021-07-26, kexue.fm/archives/8586).

    With ξ = Σ_{i≠t} e^{s_i − s_t}, InfoNCE is log(1 + ξ); once ξ falls below float32's resolution its value and
    its gradient on the positive round to 0. FlatNCE keeps the gradient of log ξ:

    * ``form="su"`` (default): L = logsumexp_{i≠t}(s_i) − s_t = log ξ — the cross-entropy with the positive taken
      out of the logsumexp. It can be negative; that is normal.
    * ``form="paper"`` (FlatCLR, arXiv 2107.01152): L = ξ / sg(ξ), computed as exp(l − sg(l)) with l = log ξ. Its
      value is exactly 1 (the value is detached; only the gradient carries), and its gradient equals ``"su"``'s.

    Per sample, ∇L = ((1 + ξ)/ξ)·∇L_CE: the cross-entropy's direction with a per-sample weight, not a global
    rescaling. Needs at least one negative (K ≥ 2).
    """
    _check_reduction(reduction)
    check_choice("form", form, FlatForm)
    t = _check_nce(logits, target)
    if logits.shape[1] < 2:
        raise ValueError(f"expected logits with K >= 2 columns (at least one negative per row), got K = "
                         f"{logits.shape[1]}")
    s = logits.to(_compute_dtype(logits))
    pos = s.gather(1, t.view(-1, 1)).squeeze(1)
    negs = s.scatter(1, t.view(-1, 1), float("-inf"))  # exclude the positive from the logsumexp
    loss = torch.logsumexp(negs, dim=1) - pos
    if form == "paper":
        loss = torch.exp(loss - loss.detach())
    return _reduce(loss, reduction)


class SimCLRLogits(NamedTuple):
    """What :func:`simclr_logits` returns (unpacks as ``logits, target = ...``)."""

    logits: Tensor  #: (2B, 2B − 1) scaled cosines, the self-similarity removed
    target: Tensor  #: (2B,) the column of each row's positive


def simclr_logits(z1: Tensor, z2: Tensor, tau: float = 0.1) -> SimCLRLogits:
    """SimCLR's 2N-view logits: cos(z_a, z_b)/τ over the 2B views, each row without its self-similarity.

    Returns ``SimCLRLogits(logits [2B, 2B − 1], target [2B])``: row i < B is view 1 of sample i, whose positive is
    view 2 (column i + B − 1 once the diagonal is removed); row i ≥ B's positive is column i − B.
    """
    dtype = torch.promote_types(_compute_dtype(z1, "z1"), _compute_dtype(z2, "z2"))
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"expected z1 and z2 of the same shape (batch, dim), got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    check_float("tau", tau, low=0.0, low_open=True)
    b = z1.shape[0]
    if b < 2:
        raise ValueError(f"expected z1 and z2 with a batch of at least 2 (so that there are negatives), got {b}")
    z = F.normalize(torch.cat([z1, z2]).to(dtype), dim=-1)
    sim = z @ z.T / tau
    n = 2 * b
    off_diag = ~torch.eye(n, dtype=torch.bool, device=z.device)
    logits = sim[off_diag].view(n, n - 1)
    i = torch.arange(n, device=z.device)
    target = torch.where(i < b, i + b - 1, i - b)
    return SimCLRLogits(logits, target)


class InfoNCELoss(nn.Module):
    """Module twin of :func:`info_nce`."""

    def __init__(self, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return info_nce(logits, target, self.reduction)


class FlatNCELoss(nn.Module):
    """Module twin of :func:`flat_nce`."""

    def __init__(self, reduction: Reduction = "mean", form: FlatForm = "su") -> None:
        super().__init__()
        _check_reduction(reduction)
        check_choice("form", form, FlatForm)
        self.reduction, self.form = reduction, form

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return flat_nce(logits, target, self.reduction, self.form)


__all__ = [
    "AMSoftmaxLoss",
    "Distance",
    "FlatForm",
    "FlatNCELoss",
    "InfoNCELoss",
    "Reduction",
    "SimCLRLogits",
    "SparseZLPRLoss",
    "ZLPRLoss",
    "am_softmax",
    "am_softmax_logits",
    "class_mean_diameter",
    "flat_nce",
    "info_nce",
    "multilabel_categorical_crossentropy",
    "simclr_logits",
    "sparse_zlpr",
    "zlpr",
    "zlpr_predict",
    "zlpr_proba",
]
