"""InfoNCE and FlatNCE, and SimCLR's 2N-view logits to feed them.

Post: "FlatNCE：小批次对比学习效果差的原因竟是浮点误差？" (FlatNCE: is floating-point error why small-batch contrastive
learning does poorly?), 2021-07-26, https://kexue.fm/archives/8586 — :func:`info_nce`, :func:`flat_nce`,
:func:`simclr_logits`.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_float
from ._common import Reduction, check_labels, check_reduction, check_rows, compute_dtype, reduce_loss


def _check_nce(logits: Tensor, target: Tensor, reduction: Reduction) -> Tensor:
    compute_dtype(logits)
    if logits.dim() != 2:
        raise ValueError(f"expected logits of shape (batch, K), got {tuple(logits.shape)}")
    check_rows("logits", logits, logits.shape[0], reduction)
    return check_labels("target", target, logits.shape[1], (logits.shape[0],))


def info_nce(logits: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """InfoNCE: the cross-entropy −log(e^{s_t} / Σ_i e^{s_i}) = log(1 + ξ), ξ = Σ_{i≠t} e^{s_i − s_t}
    (kexue.fm/archives/8586), in at least float32."""
    check_reduction(reduction)
    t = _check_nce(logits, target, reduction)
    return F.cross_entropy(logits.to(compute_dtype(logits)), t, reduction=reduction)


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
    check_reduction(reduction)
    check_choice("form", form, FlatForm)
    t = _check_nce(logits, target, reduction)
    if logits.shape[1] < 2:
        raise ValueError(f"expected logits with K >= 2 columns (at least one negative per row), got K = "
                         f"{logits.shape[1]}")
    s = logits.to(compute_dtype(logits))
    pos = s.gather(1, t.view(-1, 1)).squeeze(1)
    negs = s.scatter(1, t.view(-1, 1), float("-inf"))  # exclude the positive from the logsumexp
    loss = torch.logsumexp(negs, dim=1) - pos
    if form == "paper":
        loss = torch.exp(loss - loss.detach())
    return reduce_loss(loss, reduction)


class SimCLRLogits(NamedTuple):
    """What :func:`simclr_logits` returns (unpacks as ``logits, target = ...``)."""

    logits: Tensor  #: (2B, 2B − 1) scaled cosines, the self-similarity removed
    target: Tensor  #: (2B,) the column of each row's positive


def simclr_logits(z1: Tensor, z2: Tensor, tau: float = 0.1) -> SimCLRLogits:
    """SimCLR's 2N-view logits: cos(z_a, z_b)/τ over the 2B views, each row without its self-similarity.

    Returns ``SimCLRLogits(logits [2B, 2B − 1], target [2B])``: row i < B is view 1 of sample i, whose positive is
    view 2 (column i + B − 1 once the diagonal is removed); row i ≥ B's positive is column i − B.
    """
    dtype = torch.promote_types(compute_dtype(z1, "z1"), compute_dtype(z2, "z2"))
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
        check_reduction(reduction)
        self.reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return info_nce(logits, target, self.reduction)


class FlatNCELoss(nn.Module):
    """Module twin of :func:`flat_nce`."""

    def __init__(self, reduction: Reduction = "mean", form: FlatForm = "su") -> None:
        super().__init__()
        check_reduction(reduction)
        check_choice("form", form, FlatForm)
        self.reduction, self.form = reduction, form

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return flat_nce(logits, target, self.reduction, self.form)


__all__ = ["FlatForm", "FlatNCELoss", "InfoNCELoss", "SimCLRLogits", "flat_nce", "info_nce", "simclr_logits"]
