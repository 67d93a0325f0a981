from __future__ import annotations

import pytest
import torch

from kexue.nn.masks import causal_mask, independent_mask, padding_mask, to_bias, uniae_mask, unilm_mask


def test_padding_mask_shape_and_values():
    m = padding_mask(torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert m.shape == (2, 1, 1, 3)
    assert m[0, 0, 0].tolist() == [True, True, False]


def test_causal_mask_is_lower_triangular():
    m = causal_mask(4)[0, 0]
    assert torch.equal(m, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool))


def test_unilm_mask_matches_bert4keras_definition():
    seg = torch.tensor([[0, 0, 0, 1, 1, 1]])
    m = unilm_mask(seg)[0, 0]
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[:, :3] = True  # every token sees the source
    for i in range(3, 6):
        expected[i, 3:i + 1] = True  # target tokens see earlier targets and themselves
    assert torch.equal(m, expected)


def test_unilm_mask_without_target_is_bidirectional():
    assert unilm_mask(torch.zeros(1, 5, dtype=torch.long)).all()


def test_bias_uses_finite_minimum_for_fp16():
    b = to_bias(torch.tensor([True, False]), torch.float16)
    assert b[0] == 0 and torch.isfinite(b[1]) and b[1] == torch.finfo(torch.float16).min


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(batch, seq\), got \(3,\)"):
        padding_mask(torch.ones(3))


def _brute_independent(seg: torch.Tensor, open_cls: bool) -> torch.Tensor:
    """The post's masks by a double loop over (i, j): i sees j iff s_i = s_j and c_j <= c_i (c = cumsum(s)),
    plus j = 0 for the UniAE mask."""
    b, n = seg.shape
    out = torch.zeros(b, 1, n, n, dtype=torch.bool)
    for r in range(b):
        s = seg[r].tolist()
        c = [sum(s[:k + 1]) for k in range(n)]
        for i in range(n):
            for j in range(n):
                out[r, 0, i, j] = (s[i] == s[j] and c[j] <= c[i]) or (open_cls and j == 0)
    return out


def _random_layouts(seed: int, batch: int, n: int) -> torch.Tensor:
    """Rows 0…0 1…1 with a random split (either half may be empty)."""
    g = torch.Generator().manual_seed(seed)
    split = torch.randint(0, n + 1, (batch,), generator=g)
    return (torch.arange(n)[None] >= split[:, None]).long()


@pytest.mark.parametrize("seed", range(5))
def test_univae_masks_match_the_double_loop(seed):
    seg = _random_layouts(seed, 4, 9)
    assert torch.equal(independent_mask(seg), _brute_independent(seg, False))
    assert torch.equal(uniae_mask(seg), _brute_independent(seg, True))


def test_univae_masks_on_arbitrary_segment_ids_match_the_double_loop():
    # the formula is defined for any integer layout (e.g. 0 1 0 1): the masks follow it there too
    g = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 2, (6, 8), generator=g)
    assert torch.equal(independent_mask(seg), _brute_independent(seg, False))
    assert torch.equal(uniae_mask(seg), _brute_independent(seg, True))


def test_univae_masks_with_padding_match_the_double_loop():
    # UniVAE's layout: [CLS] text pad… | [CLS] text pad…, each half padded to maxlen; the padding keys are dropped by
    # the padding mask, which the masks combine with by &
    maxlen = 5
    seg = torch.tensor([[0] * maxlen + [1] * maxlen] * 2)
    keep = torch.tensor([[1, 1, 1, 0, 0] * 2, [1, 1, 1, 1, 1] * 2])
    pad = padding_mask(keep)
    for fn, open_cls in ((independent_mask, False), (uniae_mask, True)):
        got = fn(seg) & pad
        want = _brute_independent(seg, open_cls)
        for r in range(2):
            for i in range(2 * maxlen):
                for j in range(2 * maxlen):
                    assert bool(got[r, 0, i, j]) == bool(want[r, 0, i, j] and keep[r, j] == 1)


def test_univae_masks_on_the_two_segment_layout():
    seg = torch.tensor([[0, 0, 0, 1, 1]])
    ind = independent_mask(seg)[0, 0]
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[:3, :3] = True  # encoder bidirectional
    for i in range(3, 5):
        expected[i, 3:i + 1] = True  # decoder causal, nothing across
    assert torch.equal(ind, expected)
    expected[:, 0] = True  # UniAE: only column 0 opens
    assert torch.equal(uniae_mask(seg)[0, 0], expected)
    # the UniAE mask is the UniLM mask with every encoder column but 0 closed to the decoder
    assert torch.equal(uniae_mask(seg) | (unilm_mask(seg) & (seg[:, None, None, :] == 0)), unilm_mask(seg))


def test_univae_masks_refuse_float_segment_ids():
    for fn in (independent_mask, uniae_mask):
        with pytest.raises(TypeError, match=r"expected segment_ids to be an integer tensor, got torch.float32"):
            fn(torch.tensor([[0.0, 0.5, 1.0]]))
