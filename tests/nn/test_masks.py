from __future__ import annotations

import pytest
import torch

from kexue.nn.masks import causal_mask, padding_mask, to_bias, unilm_mask


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
