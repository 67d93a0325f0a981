"""Bad-input rows: kexue.heads' span pointer and GlobalPointer (kexue.fm/archives/7321, 8373)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.heads import (
    GlobalPointer,
    SpanPointerHead,
    decode_global_pointer,
    decode_span,
    global_pointer_loss,
    span_loss,
)

Z = torch.zeros(2, 5)
CTX = torch.ones(2, 5, dtype=torch.bool)
S = torch.zeros(1, 2, 4, 4)


def spans(*rows):
    return torch.tensor(rows).reshape(1, 2, -1, 2)


ROWS = [
    Bad("kexue.heads.SpanPointerHead", "hidden = 0", lambda: SpanPointerHead(0), ValueError,
        r"expected hidden >= 1, got 0"),
    Bad("kexue.heads.SpanPointerHead", "hidden a float", lambda: SpanPointerHead(7.5), TypeError, r"hidden.*7\.5"),
    Bad("kexue.heads.SpanPointerHead.forward", "wrong width", lambda: SpanPointerHead(4)(torch.zeros(2, 3, 5)),
        ValueError, r"expected hidden_states of shape \(batch, seq, 4\), got \(2, 3, 5\)"),
    Bad("kexue.heads.SpanPointerHead.forward", "mask of another shape",
        lambda: SpanPointerHead(4)(torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool)), ValueError,
        r"expected mask of shape \(2, 3\), got \(2, 4\)"),
    Bad("kexue.heads.SpanPointerHead.forward", "mask of 2s", lambda: SpanPointerHead(4)(torch.zeros(1, 3, 4),
        torch.tensor([[1, 2, 0]])), ValueError, r"expected mask values 1 \(real token\) and 0 \(padding\), got 2"),
    Bad("kexue.heads.SpanPointerHead.forward", "float mask", lambda: SpanPointerHead(4)(torch.zeros(1, 3, 4),
        torch.ones(1, 3)), TypeError, r"expected mask to be a bool or 0/1 integer tensor, got torch\.float32"),
    Bad("kexue.heads.span_loss", "target out of range", lambda: span_loss(Z, Z, torch.tensor([[0, 5], [1, 1]])),
        ValueError, r"expected target values in \[0, 5\), got 5"),
    Bad("kexue.heads.span_loss", "target of one index per row", lambda: span_loss(Z, Z, torch.tensor([1, 2])),
        ValueError, r"expected target of shape \(2, 2\).*got \(2,\)"),
    Bad("kexue.heads.span_loss", "float target", lambda: span_loss(Z, Z, torch.zeros(2, 2)), TypeError,
        r"expected target to be an integer tensor, got torch\.float32"),
    Bad("kexue.heads.span_loss", "gold on padding", lambda: span_loss(*SpanPointerHead(3)(torch.zeros(1, 4, 3),
        torch.tensor([[1, 1, 0, 0]])), torch.tensor([[0, 3]])), ValueError,
        r"expected target on real \(unmasked\) tokens, got end 3 of row 0"),
    Bad("kexue.heads.span_loss", "start and end of different shapes", lambda: span_loss(Z, torch.zeros(2, 6),
        torch.zeros(2, 2, dtype=torch.long)), ValueError,
        r"expected start_logits and end_logits of one shape, got \(2, 5\) and \(2, 6\)"),
    Bad("kexue.heads.span_loss", "unknown reduction", lambda: span_loss(Z, Z, torch.zeros(2, 2, dtype=torch.long),
        reduction="avg"), ValueError, r"expected reduction to be one of \['mean', 'sum', 'none'\], got 'avg'"),
    Bad("kexue.heads.span_loss", "empty batch under mean", lambda: span_loss(torch.zeros(0, 5), torch.zeros(0, 5),
        torch.zeros(0, 2, dtype=torch.long)), ValueError, r"expected start_logits with at least one row"),
    Bad("kexue.heads.decode_span", "max_answer_len = 0", lambda: decode_span(Z, Z, CTX, 0), ValueError,
        r"expected max_answer_len >= 1, got 0"),
    Bad("kexue.heads.decode_span", "a row without context", lambda: decode_span(Z, Z, torch.tensor([[1] * 5,
        [0] * 5])), ValueError, r"expected context_mask with at least one context token per row, got none in row 1"),
    Bad("kexue.heads.decode_span", "NaN logits", lambda: decode_span(Z, torch.full((2, 5), float("nan")), CTX),
        ValueError, r"expected end_logits without NaN"),
    Bad("kexue.heads.decode_span", "3-d logits", lambda: decode_span(torch.zeros(2, 5, 1), Z, CTX), ValueError,
        r"expected start_logits of shape \(batch, seq\), got \(2, 5, 1\)"),
    Bad("kexue.heads.decode_span", "integer logits", lambda: decode_span(Z.long(), Z, CTX), TypeError,
        r"expected start_logits to be a floating-point tensor, got torch\.int64"),
    Bad("kexue.heads.GlobalPointer", "odd head_size with rope", lambda: GlobalPointer(8, 2, 5), ValueError,
        r"expected an even head_size with rope=True.*got 5"),
    Bad("kexue.heads.GlobalPointer", "heads = 0", lambda: GlobalPointer(8, 0, 4), ValueError,
        r"expected heads >= 1, got 0"),
    Bad("kexue.heads.GlobalPointer", "rope a string", lambda: GlobalPointer(8, 2, 4, rope="yes"), TypeError,
        r"expected rope to be a bool, got 'yes'"),
    Bad("kexue.heads.GlobalPointer", "base 1", lambda: GlobalPointer(8, 2, 4, base=1.0), ValueError,
        r"expected base > 1\.0, got 1\.0"),
    Bad("kexue.heads.GlobalPointer.forward", "wrong width", lambda: GlobalPointer(8, 2, 4)(torch.zeros(1, 3, 6)),
        ValueError, r"expected hidden_states of shape \(batch, seq, 8\), got \(1, 3, 6\)"),
    Bad("kexue.heads.GlobalPointer.forward", "mask of another shape", lambda: GlobalPointer(8, 2, 4)(
        torch.zeros(1, 3, 8), torch.ones(3, dtype=torch.bool)), ValueError,
        r"expected mask of shape \(1, 3\), got \(3,\)"),
    Bad("kexue.heads.global_pointer_loss", "start after end", lambda: global_pointer_loss(S, spans([2, 1], [-1, -1])),
        ValueError, r"expected target spans with 0 <= start <= end < 4 .*got \(2, 1\)"),
    Bad("kexue.heads.global_pointer_loss", "end out of range", lambda: global_pointer_loss(S, spans([0, 4], [-1, -1])),
        ValueError, r"expected target spans .*< 4.*got \(0, 4\)"),
    Bad("kexue.heads.global_pointer_loss", "a span on padding", lambda: global_pointer_loss(
        GlobalPointer(3, 2, 4)(torch.zeros(1, 4, 3), torch.tensor([[1, 1, 1, 0]])), spans([1, 3], [-1, -1])),
        ValueError, r"expected target spans on real tokens, got \(1, 3\) .*masked cell"),
    Bad("kexue.heads.global_pointer_loss", "a span twice", lambda: global_pointer_loss(
        S, spans([0, 1], [0, 1], [-1, -1], [-1, -1])),
        ValueError, r"expected unique pos_index values"),
    Bad("kexue.heads.global_pointer_loss", "target without the span axis", lambda: global_pointer_loss(S,
        torch.zeros(1, 2, 2, dtype=torch.long)), ValueError,
        r"expected target of shape \(1, 2, S, 2\).*got \(1, 2, 2\)"),
    Bad("kexue.heads.global_pointer_loss", "non-square scores", lambda: global_pointer_loss(torch.zeros(1, 2, 4, 3),
        spans([0, 1], [-1, -1])), ValueError,
        r"expected scores of shape \(batch, heads, seq, seq\), got \(1, 2, 4, 3\)"),
    Bad("kexue.heads.global_pointer_loss", "unknown reduction", lambda: global_pointer_loss(S, spans([0, 1], [-1, -1]),
        reduction="batchmean"), ValueError, r"expected reduction to be one of .*got 'batchmean'"),
    Bad("kexue.heads.decode_global_pointer", "threshold nan", lambda: decode_global_pointer(S, float("nan")),
        ValueError, r"expected threshold to be finite, got nan"),
    Bad("kexue.heads.decode_global_pointer", "3-d scores", lambda: decode_global_pointer(torch.zeros(2, 4, 4)),
        ValueError, r"expected scores of shape \(batch, heads, seq, seq\), got \(2, 4, 4\)"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
