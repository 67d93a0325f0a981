"""The subject–object pointer (kexue.fm/archives/7321): decoding against a loop written from the spec's rules (and
the script's own object loop), the loss against BCE on the powered sigmoids, the subject sampling's support."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kexue.heads import (
    PointerTargets,
    SpanTriple,
    SubjectObjectPointer,
    decode_pointers,
    pointer_targets,
    powered_sigmoid,
)


def loop_spans(q, mask, ts, te):
    """Spec rule: every start > ts opens a span ending at the nearest end >= it (same channel) with score > te."""
    q = q if q.dim() == 4 else q[:, :, None]
    out = []
    b, n, c, _ = q.shape
    for r in range(b):
        for i in range(n):
            for ch in range(c):
                if not (mask[r, i] and q[r, i, ch, 0] > ts):
                    continue
                for j in range(i, n):
                    if mask[r, j] and q[r, j, ch, 1] > te:
                        out.append((r, i, j, ch))
                        break
    return out


def script_objects(q, mask, t):
    """The script's object loop (np.where over (position, predicate), first end >= start of the same predicate)."""
    q = q.clone()
    q[~mask.bool()] = 0
    starts = (q[:, :, 0] > t).nonzero().tolist()
    ends = (q[:, :, 1] > t).nonzero().tolist()
    out = []
    for s, p1 in starts:
        for e, p2 in ends:
            if s <= e and p1 == p2:
                out.append((s, e, p1))
                break
    return out


@pytest.mark.parametrize("channels", [None, 1, 5])
def test_vectorised_decoder_equals_the_loop(channels):
    g = torch.Generator().manual_seed(channels or 0)
    for _ in range(5):
        shape = (3, 17, 2) if channels is None else (3, 17, channels, 2)
        q = torch.rand(shape, generator=g) ** 2
        mask = torch.rand(3, 17, generator=g) < 0.85
        for ts, te in [(0.4, 0.4), (0.6, 0.5), (0.0, 0.9)]:
            got = decode_pointers(q, mask, ts, te)
            ref = loop_spans(q, mask, ts, te)
            rows = zip(got.batch.tolist(), got.start.tolist(), got.end.tolist(), got.channel.tolist())
            assert sorted(rows) == sorted(ref)
            if channels is not None:
                for r in range(3):
                    rows = [(s, e, c) for b, s, e, c in ref if b == r]
                    assert sorted(rows) == sorted(script_objects(q[r], mask[r], ts)) or ts != te


def test_decoder_on_a_hand_case():
    q = torch.zeros(1, 6, 2)
    q[0, 1, 0] = q[0, 3, 0] = 0.5  # two starts
    q[0, 2, 1] = 0.39  # below the threshold
    q[0, 4, 1] = 0.41  # the nearest end for both
    got = decode_pointers(q)
    assert list(zip(got.start.tolist(), got.end.tolist())) == [(1, 4), (3, 4)]
    q[0, 5, 0] = 0.9  # a start with no end after it gives nothing
    assert decode_pointers(q).start.tolist() == [1, 3]


def test_loss_is_bce_on_the_powered_sigmoids():
    g = torch.Generator().manual_seed(1)
    head = SubjectObjectPointer(6, 3).double()
    b, n = 2, 7
    zs = torch.randn(b, n, 2, generator=g, dtype=torch.float64) * 4
    zo = torch.randn(b, n, 3, 2, generator=g, dtype=torch.float64) * 4
    ys = (torch.rand(b, n, 2, generator=g) < 0.3).double()
    yo = (torch.rand(b, n, 3, 2, generator=g) < 0.3).double()
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    got = head.loss((zs, zo), PointerTargets(ys, torch.zeros(b, 2, dtype=torch.long), yo), mask)
    bs = F.binary_cross_entropy(torch.sigmoid(zs) ** 2, ys, reduction="none").mean(-1)
    bo = F.binary_cross_entropy(torch.sigmoid(zo) ** 4, yo, reduction="none").mean(-1).sum(-1)
    m = mask.double()
    ref = ((bs * m).sum() + (bo * m).sum()) / m.sum()
    torch.testing.assert_close(got, ref)


def test_loss_is_finite_and_exact_for_confident_scores():
    head = SubjectObjectPointer(4, 1)
    zs = torch.tensor([[[30.0, -30.0], [60.0, 100.0]]], requires_grad=True)
    zo = torch.zeros(1, 2, 1, 2, requires_grad=True)
    ys = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    loss = head.loss((zs, zo), PointerTargets(ys, torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, 1, 2)),
                     torch.ones(1, 2, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(zs.grad).all()
    # float64 reference: −log q = −k log σ(z), −log(1 − q) = −log(−expm1(k log σ(z))), accurate for these z
    z64 = zs.detach().double()
    log_q = 2 * F.logsigmoid(z64)
    per_flag = torch.where(ys.bool(), -log_q, -torch.log(-torch.expm1(log_q)))
    obj = -torch.log(torch.tensor(1 - 0.5 ** 4, dtype=torch.float64))
    ref = (per_flag.mean(-1).sum() + 2 * obj) / 2
    assert abs(loss.item() - ref.item()) < 1e-4 * ref.item()
    # −log(1 − σ(60)²) = 60 − log 2 + O(e^−60) enters exactly, where Keras' clip of q would give −log 1e-7 ≈ 16.1
    assert abs(per_flag[0, 1, 0].item() - (60 - 0.6931471805599453)) < 1e-9


def test_object_head_is_the_conditional_layer_norm_of_the_pre_norm_states():
    torch.manual_seed(0)
    head = SubjectObjectPointer(8, 2)
    x, u = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    a = head(x, torch.tensor([[0, 1], [2, 4]]), pre_norm=u)
    b = head(x, torch.tensor([[3, 3], [0, 0]]), pre_norm=u)
    torch.testing.assert_close(a.object, b.object)  # zero-initialised condition: the subject has no effect yet
    torch.testing.assert_close(a.subject, head.subject(x))
    with torch.no_grad():
        head.norm.gamma_proj.weight.normal_()
        head.norm.beta_proj.weight.normal_()
    a = head(x, torch.tensor([[0, 1], [2, 4]]), pre_norm=u)
    cond = torch.cat([u[0, 0], u[0, 1]])
    ref = head.object(head.norm(u[:1], cond[None])).reshape(1, 5, 2, 2)
    torch.testing.assert_close(a.object[:1], ref)
    assert not torch.allclose(a.object, head(x, torch.tensor([[3, 3], [0, 0]]), pre_norm=u).object)
    # a bottleneck for the condition (bert4keras's hidden_units)
    narrow = SubjectObjectPointer(8, 2, cond_dim=3)
    assert narrow.norm.cond_dim == 3 and narrow(x, torch.tensor([[0, 1], [2, 4]])).object.shape == (2, 5, 2, 2)


def test_extract_equals_the_loop_over_subjects_and_objects():
    torch.manual_seed(3)
    head = SubjectObjectPointer(8, 3)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    x, u = torch.randn(3, 9, 8), torch.randn(3, 9, 8)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[:, 0] = mask[:, -1] = False
    mask[2, 6:] = False
    got = head.extract(x, mask, pre_norm=u, start_threshold=0.3, end_threshold=0.3)
    qs = powered_sigmoid(head.subject_logits(x), 2).detach()
    n_triples = 0
    for r in range(3):
        ref = []
        for _, s, e, _ in loop_spans(qs[r:r + 1], mask[r:r + 1], 0.3, 0.3):
            qo = powered_sigmoid(head.object_logits(u[r:r + 1], torch.tensor([[s, e]])), 4).detach()
            ref += [SpanTriple(s, e, c, os_, oe) for _, os_, oe, c in loop_spans(qo, mask[r:r + 1], 0.3, 0.3)]
        assert sorted(got[r]) == sorted(ref)
        n_triples += len(ref)
    assert n_triples > 0  # the case exercises the object decoding


def test_pointer_targets_sample_as_the_script():
    # subjects (1, 2), (1, 4), (5, 6): starts {1, 1, 5}; ends >= 1: {2, 4, 6}, ends >= 5: {6}
    spo = [(1, 2, 0, 7, 8), (1, 4, 1, 9, 9), (5, 6, 2, 7, 7), (1, 2, 2, 3, 3)]
    g = torch.Generator().manual_seed(0)
    seen = {}
    for _ in range(600):
        t = pointer_targets([spo], 10, 3, generator=g)
        pair = tuple(t.subject_ids[0].tolist())
        seen[pair] = seen.get(pair, 0) + 1
        if pair == (1, 2):
            assert t.object[0].nonzero().tolist() == [[3, 2, 0], [3, 2, 1], [7, 0, 0], [8, 0, 1]]
        elif pair == (1, 6):  # not a subject: an implicit negative
            assert t.object.sum() == 0
    assert set(seen) == {(1, 2), (1, 4), (1, 6), (5, 6)}
    # P(start 1) = 2/3, then each of 3 ends 1/3: 2/9 each; P(5, 6) = 1/3
    assert abs(seen[(5, 6)] / 600 - 1 / 3) < 0.07 and abs(seen[(1, 6)] / 600 - 2 / 9) < 0.07
    assert t.subject[0].nonzero().tolist() == [[1, 0], [2, 1], [4, 1], [5, 0], [6, 1]]
    a = pointer_targets([spo, spo], 10, 3, generator=torch.Generator().manual_seed(5))
    b = pointer_targets([spo, spo], 10, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.subject_ids, b.subject_ids)


def test_training_step_runs_and_learns_the_subject_flags():
    torch.manual_seed(0)
    head = SubjectObjectPointer(8, 2)
    x = torch.randn(4, 6, 8)
    x[:, 2, 0] += 3  # subject start marker
    x[:, 3, 1] += 3  # subject end marker
    spo = [[(2, 3, 1, 4, 5)]] * 4
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(100):
        t = pointer_targets(spo, 6, 2, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        head.loss(head(x, t.subject_ids), t, torch.ones(4, 6, dtype=torch.bool)).backward()
        opt.step()
    got = head.extract(x, torch.ones(4, 6, dtype=torch.bool))
    assert all(SpanTriple(2, 3, 1, 4, 5) in row for row in got)


def test_pre_norm_states_from_a_kexue_transformer_by_the_documented_hook():
    from kexue.models import Transformer, TransformerConfig

    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                            max_position_embeddings=12)
    model = Transformer(cfg).eval()
    store = []
    model.blocks[-1].ffn_norm.register_forward_pre_hook(lambda m, args: store.append(args[0]))
    out = model(torch.randint(1, 30, (2, 7)))
    u = store[-1]
    torch.testing.assert_close(model.blocks[-1].ffn_norm(u), out.last_hidden_state)  # u is the sum before the norm
    head = SubjectObjectPointer(16, 3)
    logits = head(out.last_hidden_state, torch.tensor([[1, 2], [0, 0]]), pre_norm=u)
    assert logits.object.shape == (2, 7, 3, 2)
