"""AM-Softmax (additive-margin softmax) with learnable class centres, and the adaptive margin's class diameter.

Post: "从三角不等式到Margin Softmax" (From the triangle inequality to margin softmax), 2021-09-01,
https://kexue.fm/archives/8656 — :func:`am_softmax`, :class:`AMSoftmaxLoss`, :func:`class_mean_diameter`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_float, check_int
from ._common import Reduction, check_labels, check_reduction, check_rows, compute_dtype

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
    dtype = torch.promote_types(compute_dtype(z, "z"), compute_dtype(centers, "centers"))
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
        t = check_labels("target", target, k, (z.shape[0],))
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
    check_reduction(reduction)
    if target is None:  # am_softmax_logits takes None (no margin, inference); the loss needs the classes
        raise TypeError("expected target to be an integer tensor, got None (for margin-free scores use "
                        "am_softmax_logits)")
    logits = am_softmax_logits(z, centers, target, scale=scale, margin=margin, distance=distance)
    check_rows("z", z, logits.shape[0], reduction)
    return F.cross_entropy(logits, target.long(), reduction=reduction)


def class_mean_diameter(z: Tensor, target: Tensor, centers: Tensor, distance: Distance = "cos") -> float:
    """2 × mean_i d(z_i, c_{t_i}): the classes' mean diameter, the margin of the adaptive-m recipe of
    kexue.fm/archives/8656 (train with m = 0, set m to this, retrain, repeat). ``z``: (N, dim) embeddings,
    ``target``: (N,) their classes, ``centers``: (classes, dim); ``distance`` as in :func:`am_softmax` (``"cos"``
    measures d = 1 − cos, the unit in which the cosine margin is expressed)."""
    check_choice("distance", distance, Distance)
    compute_dtype(z, "z")
    compute_dtype(centers, "centers")
    if z.dim() != 2 or centers.dim() != 2 or z.shape[1] != centers.shape[1]:
        raise ValueError(
            f"expected z (batch, dim) and centers (classes, dim) with the same dim, got {tuple(z.shape)} and "
            f"{tuple(centers.shape)}"
        )
    if z.shape[0] == 0:
        raise ValueError("expected z with at least one sample, got 0 rows")
    t = check_labels("target", target, centers.shape[0], (z.shape[0],))
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


__all__ = ["AMSoftmaxLoss", "Distance", "am_softmax", "am_softmax_logits", "class_mean_diameter"]
