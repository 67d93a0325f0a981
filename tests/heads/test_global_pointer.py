"""GlobalPointer (kexue.fm/archives/8373): the rotary scores against a plain loop with explicit rotation matrices per
position, the masks, the sparse loss against the dense ZLPR (kexue.fm/archives/7359), decoding against a loop."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.heads import GlobalPointer, decode_global_pointer, global_pointer_loss
from kexue.losses import zlpr


def rotation(p: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """The d×d rotary matrix at position p: 2×2 blocks [[cos, −sin], [sin, cos]] of angle p·base^(−2i/d)."""
    r = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        a = p * base ** (-2 * i / d)
        r[2 * i, 2 * i], r[2 * i, 2 * i + 1] = math.cos(a), -math.sin(a)
        r[2 * i + 1, 2 * i], r[2 * i + 1, 2 * i + 1] = math.sin(a), math.cos(a)
    return r


def loop_scores(gp: GlobalPointer, x: torch.Tensor) -> torch.Tensor:
    """s_α(m, n) = ⟨R_m q_m, R_n k_n⟩ / √d one pair at a time, q and k read off the Dense output per head."""
    b, n, _ = x.shape
    d = gp.head_size
    out = torch.empty(b, gp.heads, n, n, dtype=torch.float64)
    w, bias = gp.dense.weight.double(), gp.dense.bias.double()
    for r in range(b):
        for a in range(gp.heads):
            qk = [w @ x[r, m].double() + bias for m in range(n)]
            q = [v[a * 2 * d: a * 2 * d + d] for v in qk]
            k = [v[a * 2 * d + d: (a + 1) * 2 * d] for v in qk]
            if gp.rope:
                q = [rotation(m, d) @ v for m, v in enumerate(q)]
                k = [rotation(m, d) @ v for m, v in enumerate(k)]
            for m in range(n):
                for j in range(n):
                    out[r, a, m, j] = q[m] @ k[j] / math.sqrt(d)
    return out


@pytest.mark.parametrize("rope", [True, False])
def test_scores_equal_the_loop(rope):
    torch.manual_seed(0)
    gp = GlobalPointer(6, 3, 4, rope=rope).double()
    x = torch.randn(2, 7, 6, dtype=torch.float64)
    got = gp(x)
    ref = loop_scores(gp, x)
    upper = torch.ones(7, 7, dtype=torch.bool).triu()
    torch.testing.assert_close(got[..., upper], ref[..., upper], rtol=1e-10, atol=1e-12)
    assert bool((got[..., ~upper] == torch.finfo(torch.float64).min).all())


def test_rotary_scores_depend_on_relative_position_only():
    # the same token pair at every shift gives one score: the rotary part's point
    torch.manual_seed(1)
    gp = GlobalPointer(4, 1, 8).double()
    a, b = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    x = torch.randn(1, 12, 4, dtype=torch.float64)
    vals = []
    for shift in range(0, 9):
        x2 = x.clone()
        x2[0, shift], x2[0, shift + 3] = a, b
        vals.append(gp(x2)[0, 0, shift, shift + 3])
    torch.testing.assert_close(torch.stack(vals), vals[0].expand(9), rtol=1e-12, atol=1e-12)
    for p, q in [(0, 5), (3, 7)]:  # and the loop's matrices are rotations: R_pᵀ R_q = R_{q−p}
        torch.testing.assert_close(rotation(p, 8).T @ rotation(q, 8), rotation(q - p, 8))


def test_padding_is_masked():
    gp = GlobalPointer(4, 2, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    s = gp(torch.randn(2, 4, 4), mask)
    low = torch.finfo(s.dtype).min
    assert bool((s[0, :, 3, :] == low).all() and (s[0, :, :, 3] == low).all() and (s[1, :, 2:, :] == low).all())
    assert int((s[1, :, :2, :2] > low).sum()) == 2 * 3  # (0,0), (0,1), (1,1) per head


def test_sparse_loss_equals_the_dense_zlpr():
    g = torch.Generator().manual_seed(2)
    b, h, n = 2, 3, 6
    gp = GlobalPointer(5, h, 4).double()
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    s = gp(torch.randn(b, n, 5, generator=g, dtype=torch.float64), mask)
    target = torch.full((b, h, 3, 2), -1)
    target[0, 0, 0] = torch.tensor([0, 0])  # a span at (0, 0) is expressible
    target[0, 0, 1] = torch.tensor([1, 4])
    target[0, 2, 0] = torch.tensor([2, 2])
    target[1, 1, 0] = torch.tensor([0, 3])
    target[1, 1, 2] = torch.tensor([1, 1])
    dense = torch.zeros(b, h, n, n)
    for r, a, k in (target[..., 0] >= 0).nonzero().tolist():
        dense[r, a, target[r, a, k, 0], target[r, a, k, 1]] = 1
    masked = s == torch.finfo(s.dtype).min
    ref = zlpr(s.flatten(2), dense.flatten(2), ignore_mask=masked.flatten(2), reduction="none")
    got = global_pointer_loss(s, target, reduction="none")
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(global_pointer_loss(s, target), ref.sum(1).mean())
    torch.testing.assert_close(global_pointer_loss(s, target, reduction="sum"), ref.sum())


def loop_decode(scores, threshold):
    b, h, n, _ = scores.shape
    return [(r, i, j, a) for r in range(b) for a in range(h) for i in range(n) for j in range(i, n)
            if scores[r, a, i, j] > threshold]


def test_decode_equals_the_loop_and_learning_finds_planted_spans():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    b, n, hid = 8, 8, 8
    x = torch.randn(b, n, hid, generator=g)
    target = torch.full((b, 2, 1, 2), -1)
    for r in range(b):
        s = int(torch.randint(0, 6, (1,), generator=g))
        e = s + int(torch.randint(0, 2, (1,), generator=g))
        kind = r % 2
        x[r, s, kind] += 3.0
        x[r, e, 2 + kind] += 3.0
        target[r, kind, 0] = torch.tensor([s, e])
    gp = GlobalPointer(hid, 2, 8)
    s0 = gp(x).detach()
    got = decode_global_pointer(s0)
    assert sorted(zip(*(v.tolist() for v in got))) == sorted(loop_decode(s0, 0.0))
    opt = torch.optim.Adam(gp.parameters(), lr=0.03)
    for _ in range(150):
        opt.zero_grad()
        global_pointer_loss(gp(x), target).backward()
        opt.step()
    spans = decode_global_pointer(gp(x).detach())
    found = set(zip(spans.batch.tolist(), spans.channel.tolist(), spans.start.tolist(), spans.end.tolist()))
    gold = {(r, a, int(target[r, a, 0, 0]), int(target[r, a, 0, 1])) for r, a in (target[..., 0, 0] >= 0).nonzero()
            .tolist()}
    assert found == gold
