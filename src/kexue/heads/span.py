"""The span pointer of extractive reading comprehension: start and end distributions over the sequence.

Post: "bert4keras在手，baseline我有：百度LIC2020" (With bert4keras in hand, baselines are easy: Baidu LIC2020),
2020-04-02, https://kexue.fm/archives/7321 — its DuReader-robust baseline.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice, check_int
from ..losses import Reduction
from ._common import check_logits, check_mask, check_states, masked_fill_value


class SpanLogits(NamedTuple):
    """Start and end scores, each (batch, seq), padding filled with the dtype's most negative number."""

    start: Tensor
    end: Tensor


class SpanPrediction(NamedTuple):
    """The decoded span of each row: ``start`` and ``end`` (batch,) token indices (inclusive) and ``score`` (batch,),
    p_start·p_end of the chosen pair."""

    start: Tensor
    end: Tensor
    score: Tensor


class SpanPointerHead(nn.Module):
    """Dense(2) over the encoder's states: a start and an end score per token (kexue.fm/archives/7321).

        (z_start, z_end)_t = W h_t + b,   p_start = softmax_t(z_start),   p_end = softmax_t(z_end)

    the softmax running over the sequence positions with padding masked out. Train with :func:`span_loss` on the
    gold (start, end), decode with :func:`decode_span`.

    ``forward(hidden_states, mask=None) -> SpanLogits``: ``hidden_states`` (batch, seq, hidden); ``mask`` (batch,
    seq) bool or 0/1, True on real tokens (None: all real). Padded positions get the dtype's most negative number,
    so their probability is exactly 0.
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = check_int("hidden", hidden, 1)
        self.dense = nn.Linear(self.hidden, 2)

    def forward(self, hidden_states: Tensor, mask: Tensor | None = None) -> SpanLogits:
        x = check_states("hidden_states", hidden_states, self.hidden)
        z = self.dense(x)
        if mask is not None:
            keep = check_mask("mask", mask, tuple(x.shape[:2])).to(z.device)
            z = z.masked_fill(~keep[..., None], masked_fill_value(z.dtype))
        return SpanLogits(z[..., 0], z[..., 1])

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}"


def _check_pair(start_logits: Tensor, end_logits: Tensor) -> tuple[Tensor, Tensor]:
    check_logits("start_logits", start_logits, 2, "(batch, seq)")
    check_logits("end_logits", end_logits, 2, "(batch, seq)")
    if start_logits.shape != end_logits.shape:
        raise ValueError(f"expected start_logits and end_logits of one shape, got {tuple(start_logits.shape)} and "
                         f"{tuple(end_logits.shape)}")
    for name, x in (("start_logits", start_logits), ("end_logits", end_logits)):
        if bool(x.isnan().any()):
            raise ValueError(f"expected {name} without NaN, got NaN at {x.isnan().nonzero()[0].tolist()}")
    return start_logits, end_logits


def span_loss(start_logits: Tensor, end_logits: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """Cross-entropy of the gold start and end under the span pointer's softmaxes, averaged over the two
    (kexue.fm/archives/7321; the script's ``sparse_categorical_crossentropy`` over both outputs):

        L = −½ (log p_start[s] + log p_end[e])

    Args:
        start_logits, end_logits: (batch, seq), as :class:`SpanPointerHead` gives them (padding masked).
        target: (batch, 2) integer gold (start, end) token indices; each must fall on a real (unmasked) token.
        reduction: ``"mean"`` over rows, ``"sum"`` or ``"none"`` (batch,).

    Computed in at least float32.
    """
    _check_pair(start_logits, end_logits)
    check_choice("reduction", reduction, Reduction)
    b, n = start_logits.shape
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"expected target to be an integer tensor, got {getattr(target, 'dtype', type(target))}")
    if tuple(target.shape) != (b, 2):
        raise ValueError(f"expected target of shape ({b}, 2) (gold start and end per row), got {tuple(target.shape)}")
    if reduction == "mean" and b == 0:
        raise ValueError("expected start_logits with at least one row for reduction='mean', got shape (0, "
                         f"{n})")
    t = target.to(device=start_logits.device, dtype=torch.long)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= n):
        lo, hi = int(t.min()), int(t.max())
        raise ValueError(f"expected target values in [0, {n}), got {lo if lo < 0 else hi}")
    dtype = torch.promote_types(start_logits.dtype, torch.float32)
    z = torch.stack([start_logits, end_logits], dim=1).to(dtype)  # (batch, 2, seq)
    gold = z.gather(-1, t[..., None]).squeeze(-1)
    masked = gold <= masked_fill_value(start_logits.dtype)
    if bool(masked.any()):
        row, which = masked.nonzero()[0].tolist()
        raise ValueError(f"expected target on real (unmasked) tokens, got {'end' if which else 'start'} "
                         f"{int(t[row, which])} of row {row} on a masked position")
    loss = (torch.logsumexp(z, dim=-1) - gold).mean(dim=-1)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def decode_span(start_logits: Tensor, end_logits: Tensor, context_mask: Tensor,
                max_answer_len: int | None = 16) -> SpanPrediction:
    """The span (s, e) maximising p_start[s]·p_end[e] over context tokens with s ≤ e < s + max_answer_len
    (kexue.fm/archives/7321; the script's ``max_answer_len=16``), all rows at once.

    p_start and p_end are the softmaxes of the logits over the whole row (as the head's loss sees them); the search
    is restricted to pairs whose start and end both lie on ``context_mask`` tokens (the caller leaves out the
    question, [CLS], [SEP] and padding). ``max_answer_len=None`` drops the length constraint (only s ≤ e). Ties go
    to the smallest start, then the smallest end. The maximum is taken in log space, so a pair whose product
    underflows still compares correctly.

    Args:
        start_logits, end_logits: (batch, seq).
        context_mask: (batch, seq) bool or 0/1; every row needs at least one context token.
        max_answer_len: an integer >= 1, or None.

    Returns :class:`SpanPrediction` (start, end, score), each (batch,).
    """
    _check_pair(start_logits, end_logits)
    b, n = start_logits.shape
    ctx = check_mask("context_mask", context_mask, (b, n)).to(start_logits.device)
    if max_answer_len is not None:
        max_answer_len = check_int("max_answer_len", max_answer_len, 1)
    empty = ~ctx.any(dim=1)
    if bool(empty.any()):
        raise ValueError(f"expected context_mask with at least one context token per row, got none in row "
                         f"{int(empty.nonzero()[0])}")
    dtype = torch.promote_types(start_logits.dtype, torch.float32)
    log_s = F.log_softmax(start_logits.to(dtype), dim=-1)
    log_e = F.log_softmax(end_logits.to(dtype), dim=-1)
    pair = log_s[:, :, None] + log_e[:, None, :]  # (batch, start, end)
    pos = torch.arange(n, device=pair.device)
    offset = pos[None, :] - pos[:, None]  # end − start
    allowed = offset >= 0
    if max_answer_len is not None:
        allowed = allowed & (offset < max_answer_len)
    valid = allowed[None] & ctx[:, :, None] & ctx[:, None, :]
    best, idx = pair.masked_fill(~valid, float("-inf")).flatten(1).max(dim=1)
    return SpanPrediction(torch.div(idx, n, rounding_mode="floor"), idx % n, best.exp())


__all__ = ["SpanLogits", "SpanPointerHead", "SpanPrediction", "decode_span", "span_loss"]
