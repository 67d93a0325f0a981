"""GlobalPointer: every (start, end) pair of a sequence scored at once, per entity type, with rotary positions.

Post: "GlobalPointer：用统一的方式处理嵌套和非嵌套NER" (GlobalPointer: nested and flat NER handled the same way),
2021-05-01, https://kexue.fm/archives/8373; trained with the multi-label ZLPR of
"将"Softmax+交叉熵"推广到多标签分类问题" (Generalizing "softmax + cross-entropy" to multi-label classification),
2020-04-25, https://kexue.fm/archives/7359 (:func:`kexue.losses.sparse_zlpr`). The successor of the pointer heads of
kexue.fm/archives/7321.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float, check_int
from ..losses import Reduction, sparse_zlpr
from ._common import check_logits, check_mask, check_states, masked_fill_value
from .pointer import Spans


def _rotary(x: Tensor, base: float) -> Tensor:
    """Rotary position embedding (RoPE) of x (batch, seq, heads, d), d even, the pairs (2i, 2i+1) interleaved as
    bert4keras's ``SinusoidalPositionEmbedding``: at position p, with θ_i = base^(−2i/d),

        x'_{2i} = x_{2i} cos pθ_i − x_{2i+1} sin pθ_i,   x'_{2i+1} = x_{2i+1} cos pθ_i + x_{2i} sin pθ_i,

    so that ⟨R_m q, R_n k⟩ = ⟨q, R_{n−m} k⟩ depends on the positions only through n − m."""
    n, d = x.shape[1], x.shape[-1]
    dtype = torch.promote_types(x.dtype, torch.float32)
    theta = base ** (-torch.arange(0, d, 2, device=x.device, dtype=dtype) / d)  # −2i/d, i < d/2
    angle = torch.arange(n, device=x.device, dtype=dtype)[:, None] * theta  # (seq, d/2)
    cos = angle.cos().repeat_interleave(2, dim=-1)[None, :, None]
    sin = angle.sin().repeat_interleave(2, dim=-1)[None, :, None]
    swapped = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape(x.shape)  # (−x1, x0, −x3, x2, …)
    return (x.to(dtype) * cos + swapped.to(dtype) * sin).to(x.dtype)


class GlobalPointer(nn.Module):
    """Span scores s_α(i, j) for every start i ≤ end j and every head α (entity type) (kexue.fm/archives/8373):

        [q_{i,α}; k_{i,α}] = W_α h_i + b_α,   s_α(i, j) = ⟨R_i q_{i,α}, R_j k_{j,α}⟩ / √head_size

    with R the rotary position matrices (``rope=True``; the score then depends on i and j through j − i, which tells
    the pointer where a span ends relative to its start). The lower triangle (i > j) and every pair touching padding
    get the dtype's most negative number. Train with :func:`global_pointer_loss` (ZLPR, kexue.fm/archives/7359),
    decode with :func:`decode_global_pointer` (s > 0). The Dense layout is bert4keras's: per head, q then k.

    Args:
        hidden: the encoder width.
        heads: the number of entity types (or predicates).
        head_size: the width of q and k per head (even when ``rope``).
        rope: apply the rotary position part (bert4keras's ``RoPE=True``).
        base: the rotary frequency base (10000).

    ``forward(hidden_states, mask=None) -> Tensor`` (batch, heads, seq, seq).
    """

    def __init__(self, hidden: int, heads: int, head_size: int, rope: bool = True, base: float = 10000.0) -> None:
        super().__init__()
        self.hidden = check_int("hidden", hidden, 1)
        self.heads = check_int("heads", heads, 1)
        self.head_size = check_int("head_size", head_size, 1)
        self.rope = check_bool("rope", rope)
        self.base = check_float("base", base, 1.0, low_open=True)
        if self.rope and self.head_size % 2:
            raise ValueError(f"expected an even head_size with rope=True (rotary pairs), got {self.head_size}")
        self.dense = nn.Linear(self.hidden, self.heads * 2 * self.head_size)

    def forward(self, hidden_states: Tensor, mask: Tensor | None = None) -> Tensor:
        x = check_states("hidden_states", hidden_states, self.hidden)
        b, n = x.shape[:2]
        qk = self.dense(x).reshape(b, n, self.heads, 2 * self.head_size)
        q, k = qk[..., : self.head_size], qk[..., self.head_size:]
        if self.rope:
            q, k = _rotary(q, self.base), _rotary(k, self.base)
        scores = torch.einsum("bmhd,bnhd->bhmn", q, k) / math.sqrt(self.head_size)
        drop = torch.ones(n, n, dtype=torch.bool, device=x.device).tril(-1)[None, None]  # start > end
        if mask is not None:
            m = check_mask("mask", mask, (b, n)).to(x.device)
            drop = drop | ~m[:, None, :, None] | ~m[:, None, None, :]
        return scores.masked_fill(drop, masked_fill_value(scores.dtype))

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, heads={self.heads}, head_size={self.head_size}, rope={self.rope}"


def global_pointer_loss(scores: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """The sparse multi-label ZLPR (kexue.fm/archives/7359) over each (row, head)'s n² cells, as bert4keras's
    ``global_pointer_crossentropy`` (kexue.fm/archives/8373):

        L_α = log(1 + Σ_{(i,j) ∉ P_α} e^{s_α(i,j)}) + log(1 + Σ_{(i,j) ∈ P_α} e^{−s_α(i,j)})

    P_α the gold spans of head α; masked cells (lower triangle, padding) hold the most negative number, so they add
    nothing. Computed by :func:`kexue.losses.sparse_zlpr` on the flattened cells, with one reserved cell in front
    for padding entries (so a span (0, 0) stays expressible, unlike bert4keras's ``mask_zero``).

    Args:
        scores: (batch, heads, seq, seq), as :class:`GlobalPointer` gives them.
        target: (batch, heads, S, 2) integer (start, end) token indices of the gold spans, each on real tokens with
            start <= end, unique per (row, head); rows of (-1, -1) are padding (heads with fewer spans).
        reduction: ``"mean"``: the sum over heads averaged over the batch (bert4keras's); ``"sum"``; ``"none"``:
            (batch, heads).
    """
    check_logits("scores", scores, 4, "(batch, heads, seq, seq)")
    check_choice("reduction", reduction, Reduction)
    b, h, n, n2 = scores.shape
    if n != n2:
        raise ValueError(f"expected scores of shape (batch, heads, seq, seq), got {tuple(scores.shape)}")
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"expected target to be an integer tensor, got {getattr(target, 'dtype', type(target))}")
    if target.dim() != 4 or tuple(target.shape[:2]) != (b, h) or target.shape[-1] != 2:
        raise ValueError(f"expected target of shape ({b}, {h}, S, 2) (gold (start, end) per row and head), got "
                         f"{tuple(target.shape)}")
    t = target.to(device=scores.device, dtype=torch.long)
    start, end = t[..., 0], t[..., 1]
    pad = (start == -1) & (end == -1)
    bad = ~pad & ((start < 0) | (end >= n) | (start > end))
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()
        raise ValueError(f"expected target spans with 0 <= start <= end < {n} or (-1, -1) for padding, got "
                         f"{tuple(t[tuple(where)].tolist())} at (row, head, span) {tuple(where)}")
    flat = torch.where(pad, 0, start * n + end + 1)  # + 1: cell 0 is the reserved padding cell
    cells = torch.cat([scores.new_zeros(b, h, 1), scores.flatten(2)], dim=-1)
    on_mask = (cells.gather(-1, flat) <= masked_fill_value(scores.dtype)) & ~pad
    if bool(on_mask.any()):
        where = on_mask.nonzero()[0].tolist()
        raise ValueError(f"expected target spans on real tokens, got {tuple(t[tuple(where)].tolist())} at (row, head, "
                         f"span) {tuple(where)} on a masked cell")
    loss = sparse_zlpr(cells, pos_index=flat, mask_zero=True, reduction="none")
    if reduction == "mean":
        return loss.sum(dim=1).mean()
    return loss.sum() if reduction == "sum" else loss


def decode_global_pointer(scores: Tensor, threshold: float = 0.0) -> Spans:
    """Every span with s_α(i, j) > threshold (0: the ZLPR decision rule, kexue.fm/archives/7359), as :class:`Spans`
    with ``channel`` the head, ordered by (batch, head, start, end). Masked cells never pass."""
    check_logits("scores", scores, 4, "(batch, heads, seq, seq)")
    th = check_float("threshold", threshold)
    bi, hi, si, ei = (scores > th).nonzero().unbind(-1)
    return Spans(bi, si, ei, hi)


__all__ = ["GlobalPointer", "decode_global_pointer", "global_pointer_loss"]
