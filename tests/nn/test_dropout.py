"""kexue.nn.dropout: Bernoulli keep masks from 16-bit lanes of torch's generator, a bool mask kept for backward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from kexue.nn.attention import Attention
from kexue.nn.dropout import LANES, Dropout, dropout, keep_mask, quantised_rate


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9, 0.01])
def test_keep_rate_is_bernoulli_at_the_quantised_rate(p):
    q = quantised_rate(p)
    assert q is not None and abs(q - p) <= 0.5 / LANES
    n = 1 << 22
    keep = keep_mask((n,), p, torch.Generator().manual_seed(1))
    assert keep.dtype == torch.bool and keep.shape == (n,)
    kept = int(keep.sum())
    sd = math.sqrt(n * q * (1 - q))
    assert abs(kept - n * (1 - q)) < 5 * sd, (kept, n * (1 - q), sd)


def test_lanes_of_a_word_and_neighbouring_words_are_independent():
    """The four lanes cut from one 64-bit word, and lanes of consecutive words: the 16 patterns of 4 consecutive
    mask bits (aligned to a word and straddling two) follow the product of Bernoulli probabilities."""
    p = 0.3
    q = quantised_rate(p)
    n = 1 << 22
    keep = keep_mask((n,), p, torch.Generator().manual_seed(2)).long()
    weights = torch.tensor([8, 4, 2, 1])
    for offset in (0, 2):  # 0: the lanes of one word; 2: two lanes of one word, two of the next
        groups = keep[offset:offset + (n - 4)].view(-1, 4)
        codes = (groups * weights).sum(1)
        observed = torch.bincount(codes, minlength=16).double().numpy()
        bits = [[(c >> (3 - j)) & 1 for j in range(4)] for c in range(16)]
        expected = [len(codes) * math.prod((1 - q) if b else q for b in bs) for bs in bits]
        pvalue = stats.chisquare(observed, expected).pvalue
        assert pvalue > 1e-4, (offset, pvalue)


def test_output_is_x_times_mask_over_keep_rate_and_unbiased():
    torch.manual_seed(3)
    x = torch.randn(64, 1000)
    p = 0.1
    q = quantised_rate(p)
    torch.manual_seed(4)
    y = dropout(x, p)
    torch.manual_seed(4)
    keep = keep_mask(x.shape, p)
    assert torch.equal(y, torch.where(keep, x * (1.0 / (1.0 - q)), torch.zeros(())))
    # E[y] = x: mean of y over many draws for x = 1
    ones = torch.ones(1 << 21)
    ys = dropout(ones, p)
    sd = math.sqrt(q / (1 - q) / ones.numel())
    assert abs(float(ys.mean()) - 1.0) < 5 * sd
    # same first two moments as torch's dropout (the same law up to p's quantisation)
    yt = F.dropout(ones, p, True)
    assert abs(float(ys.var()) - float(yt.var())) < 5 * math.sqrt(2.0 / ones.numel()) * (p / (1 - p)) * 3


def test_gradient_is_the_mask_and_double_backward_works():
    x = torch.randn(6, 50, dtype=torch.float64, requires_grad=True)
    g = torch.randn(6, 50, dtype=torch.float64)
    torch.manual_seed(5)
    y = dropout(x, 0.25)
    y.backward(g)
    q = quantised_rate(0.25)
    keep = y.detach() != 0
    assert torch.allclose(x.grad, g * keep / (1 - q), rtol=0, atol=1e-15)

    def f(t):
        torch.manual_seed(6)  # the same mask on every call gradcheck makes
        return dropout(t, 0.25) ** 2

    assert torch.autograd.gradcheck(f, (x.detach().requires_grad_(),))
    assert torch.autograd.gradgradcheck(f, (x.detach().requires_grad_(),))


def _saved(fn, x):
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(x)
    return saved


def test_backward_keeps_a_bool_mask_torch_keeps_a_float_one():
    x = torch.randn(32, 128, requires_grad=True)
    ours = _saved(lambda t: dropout(t, 0.1), x)
    assert [(t.dtype, tuple(t.shape)) for t in ours] == [(torch.bool, (32, 128))]
    theirs = _saved(lambda t: F.dropout(t, 0.1, True), x)
    assert sum(t.numel() * t.element_size() for t in theirs) == 4 * sum(t.numel() * t.element_size() for t in ours)


def test_seeds_and_generators_repeat_and_differ():
    x = torch.ones(4096)
    torch.manual_seed(7)
    a = dropout(x, 0.5)
    torch.manual_seed(7)
    b = dropout(x, 0.5)
    c = dropout(x, 0.5)
    assert torch.equal(a, b) and not torch.equal(b, c)
    g1, g2 = torch.Generator().manual_seed(8), torch.Generator().manual_seed(8)
    assert torch.equal(dropout(x, 0.5, generator=g1), dropout(x, 0.5, generator=g2))


def test_identity_cases_bad_rates_and_fallbacks():
    x = torch.randn(10, 10)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    for bad, pattern in ((-0.1, "expected p >= 0.0, got -0.1"), (1.5, "expected p <= 1.0, got 1.5"),
                         (float("nan"), "expected p to be finite, got nan")):
        with pytest.raises(ValueError, match=pattern):
            dropout(x, bad)
    with pytest.raises(ValueError, match="expected generator=None where torch's dropout runs"):
        dropout(torch.empty(3, device="meta"), 0.5, generator=torch.Generator())
    # a rate 16 bits cannot hold within 1 % goes to torch's dropout: the same masks as torch for the same seed
    assert quantised_rate(1e-4) is None and quantised_rate(1 - 1e-4) is None
    big = torch.randn(100_000)
    torch.manual_seed(9)
    ours = dropout(big, 1e-4)
    torch.manual_seed(9)
    assert torch.equal(ours, F.dropout(big, 1e-4, True))
    with pytest.raises(ValueError, match=r"expected p representable in 16-bit lanes within 1 % .*, got 0.0001"):
        keep_mask((4,), 1e-4)
    # other devices: torch's dropout
    meta = torch.empty(3, 4, device="meta")
    assert dropout(meta, 0.5).device.type == "meta"


def test_inplace_bf16_and_the_module():
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    torch.manual_seed(10)
    y = dropout(x, 0.2)
    assert y.dtype == torch.bfloat16
    torch.manual_seed(10)
    z = x.clone()
    assert dropout(z, 0.2, inplace=True) is z and torch.equal(z, y)
    m = Dropout(0.2)
    assert isinstance(m, torch.nn.Dropout) and m.p == 0.2 and m.state_dict() == {} and "p=0.2" in repr(m)
    torch.manual_seed(10)
    assert torch.equal(m(x), y)
    m.eval()
    assert m(x) is x


def test_attention_cpu_dropout_path_is_the_hand_formula():
    """Training-mode softmax attention on CPU with attention dropout: softmax(QKᵀ/√d + M) ⊙ m/(1 − p') · V with
    the mask :func:`keep_mask` draws from the same RNG state; padded keys masked."""
    torch.manual_seed(0)
    attn = Attention(32, 4, dropout=0.2).train()
    x = torch.randn(2, 7, 32)
    keep_keys = torch.ones(2, 7, dtype=torch.bool)
    keep_keys[1, 5:] = False
    mask = keep_keys[:, None, None, :]
    torch.manual_seed(11)
    out = attn(x, mask).output
    torch.manual_seed(11)
    keep = keep_mask((2, 4, 7, 7), 0.2)
    q, k, v = (attn._heads(lin(x), 8) for lin in (attn.q, attn.k, attn.v))
    logits = (q @ k.transpose(-1, -2)) / math.sqrt(8)
    prob = torch.softmax(logits.masked_fill(~mask, float("-inf")), -1)
    ctx = (prob * keep / (1 - quantised_rate(0.2))) @ v
    ref = attn.o(ctx.transpose(1, 2).reshape(2, 7, 32))
    assert torch.allclose(out, ref, atol=1e-6)
    # averaged over draws, the output is the dropout-free one
    with torch.no_grad():
        mean = torch.stack([attn(x, mask).output for _ in range(3000)]).mean(0)
        attn.eval()
        clean = attn(x, mask).output
    assert torch.allclose(mean, clean, atol=0.03), float((mean - clean).abs().max())


def test_attention_impl_sdpa_keeps_sdpa(monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*a, **kw):
        calls.append(kw.get("dropout_p"))
        return real(*a, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    x = torch.randn(2, 5, 32)
    Attention(32, 4, dropout=0.1, impl="sdpa").train()(x)
    Attention(32, 4, dropout=0.1).train()(x)  # auto: the CPU dropout path, no SDPA call
    Attention(32, 4, dropout=0.1).eval()(x)  # no dropout: SDPA
    assert calls == [0.1, 0.0]


def test_seeded_dropout_keeps_nothing_and_draws_the_same_mask_in_backward():
    from kexue.nn.dropout import seeded_dropout

    x = torch.randn(64, 300, dtype=torch.float64, requires_grad=True)
    assert _saved(lambda t: seeded_dropout(t, 0.2), x) == []
    torch.manual_seed(12)
    y = seeded_dropout(x, 0.2)
    g = torch.randn_like(y)
    y.backward(g)
    keep = y.detach() != 0
    q = quantised_rate(0.2)
    torch.testing.assert_close(x.grad, g * keep / (1 - q), rtol=1e-15, atol=0)
    assert abs(float(keep.double().mean()) - (1 - q)) < 5 * math.sqrt(q * (1 - q) / keep.numel())
    # one 64-bit draw from torch's generator per call, whatever the size
    torch.manual_seed(13)
    seeded_dropout(torch.ones(10_000), 0.5)
    after = torch.rand(3)
    torch.manual_seed(13)
    torch.empty((), dtype=torch.int64).random_(0, None)
    assert torch.equal(torch.rand(3), after)

    def f(t):
        torch.manual_seed(14)
        return seeded_dropout(t, 0.3) ** 2

    x2 = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x2,)) and torch.autograd.gradgradcheck(f, (x2,))
    z = torch.randn(4, 4)
    assert seeded_dropout(z, 0.3, training=False) is z and seeded_dropout(z, 0.0) is z
    with pytest.raises(ValueError, match="1.5"):
        seeded_dropout(z, 1.5)
