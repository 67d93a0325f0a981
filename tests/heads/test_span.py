"""The span pointer (kexue.fm/archives/7321): the vectorised decoder against a loop written from the spec's rules,
the loss against the hand formula, padding masked."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.heads import SpanPointerHead, decode_span, span_loss


def loop_decode(start_logits, end_logits, context_mask, max_answer_len):
    """The spec's rule, one row and one pair at a time: maximise p_start·p_end over context tokens, start <= end <
    start + max_answer_len (no bound for None); the first maximum in (start, end) order wins."""
    out = []
    for zs, ze, ctx in zip(start_logits.double(), end_logits.double(), context_mask):
        ps, pe = torch.softmax(zs, 0).tolist(), torch.softmax(ze, 0).tolist()
        n = len(ps)
        best = (-1.0, -1, -1)
        for i in range(n):
            for j in range(i, n):
                if not (ctx[i] and ctx[j]) or (max_answer_len is not None and j >= i + max_answer_len):
                    continue
                if ps[i] * pe[j] > best[0]:
                    best = (ps[i] * pe[j], i, j)
        out.append(best)
    return out


@pytest.mark.parametrize("max_answer_len", [1, 3, 16, None])
def test_vectorised_decoder_equals_the_loop(max_answer_len):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        b, n = 4, 23
        zs, ze = torch.randn(b, n, generator=g) * 3, torch.randn(b, n, generator=g) * 3
        ctx = torch.rand(b, n, generator=g) < 0.6
        ctx[:, 0] = False  # [CLS]
        ctx[torch.arange(b), torch.randint(1, n, (b,), generator=g)] = True
        got = decode_span(zs, ze, ctx, max_answer_len)
        ref = loop_decode(zs, ze, ctx, max_answer_len)
        assert got.start.tolist() == [r[1] for r in ref]
        assert got.end.tolist() == [r[2] for r in ref]
        torch.testing.assert_close(got.score.double(), torch.tensor([r[0] for r in ref], dtype=torch.float64),
                                   rtol=1e-5, atol=0)
        assert bool(((got.end - got.start) >= 0).all())
        if max_answer_len is not None:
            assert bool(((got.end - got.start) < max_answer_len).all())


def test_length_constraint_changes_the_answer():
    # the best start at 1, the best end at 6: too long for max_answer_len = 3
    zs = torch.full((1, 8), -5.0)
    ze = torch.full((1, 8), -5.0)
    zs[0, 1], ze[0, 6], ze[0, 2] = 5.0, 5.0, 3.0
    ctx = torch.ones(1, 8, dtype=torch.bool)
    assert decode_span(zs, ze, ctx, None)[:2] == (torch.tensor([1]), torch.tensor([6]))
    got = decode_span(zs, ze, ctx, 3)
    assert (got.start.item(), got.end.item()) == (1, 2)
    # context only: the question tokens 0-2 never hold the answer
    ctx[0, :3] = False
    got = decode_span(zs, ze, ctx, 3)
    assert got.start.item() >= 3 and got.end.item() >= got.start.item()


def test_head_masks_padding_and_loss_is_the_mean_of_two_cross_entropies():
    torch.manual_seed(0)
    head = SpanPointerHead(8)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    zs, ze = head(x, mask)
    assert torch.softmax(zs, -1)[0, 4] == 0 and torch.softmax(ze, -1)[1, 3:].sum() == 0
    raw = head.dense(x)
    torch.testing.assert_close(zs[0, :4], raw[0, :4, 0])
    target = torch.tensor([[1, 3], [0, 2]])
    loss = span_loss(zs, ze, target, reduction="none")
    for r in range(2):
        n = int(mask[r].sum())
        ls = torch.log_softmax(raw[r, :n, 0], 0)[target[r, 0]]
        le = torch.log_softmax(raw[r, :n, 1], 0)[target[r, 1]]
        assert math.isclose(loss[r].item(), -(ls + le).item() / 2, rel_tol=1e-5)
    torch.testing.assert_close(span_loss(zs, ze, target), loss.mean())
    torch.testing.assert_close(span_loss(zs, ze, target, reduction="sum"), loss.sum())
    span_loss(zs, ze, target).backward()
    assert head.dense.weight.grad is not None and torch.isfinite(head.dense.weight.grad).all()


def test_training_learns_a_planted_span():
    """A few steps on states that mark the answer's start and end tokens: the decoder then finds them."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    b, n, h = 16, 12, 6
    x = torch.randn(b, n, h, generator=g)
    starts = torch.randint(1, 8, (b,), generator=g)
    ends = starts + torch.randint(0, 3, (b,), generator=g)
    x[torch.arange(b), starts, 0] += 4.0
    x[torch.arange(b), ends, 1] += 4.0
    head = SpanPointerHead(h)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        span_loss(*head(x), torch.stack([starts, ends], 1)).backward()
        opt.step()
    got = decode_span(*head(x), torch.ones(b, n, dtype=torch.bool))
    assert (got.start == starts).float().mean() > 0.9 and (got.end == ends).float().mean() > 0.9
