"""``kexue.nn.padding.pad`` against torch's nested tensors padded by torch itself."""

from __future__ import annotations

import pytest
import torch

from kexue.nn.padding import pad


def _reference(rows: list[torch.Tensor], value: float) -> torch.Tensor:
    return torch.nested.nested_tensor(rows, layout=torch.jagged).to_padded_tensor(value)


def test_token_lists_pad_right_with_an_int64_mask():
    seqs = [[101, 7, 8, 102], [101, 102], [101, 5, 102]]
    ids, mask = pad(seqs, padding_value=1)
    assert ids.dtype == torch.int64 and mask.dtype == torch.int64
    ref = _reference([torch.tensor(s) for s in seqs], 1)
    assert torch.equal(ids, ref)
    assert mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]


def test_tensors_keep_their_dtype_and_trailing_dims():
    gen = torch.Generator().manual_seed(0)
    rows = [torch.randn(n, 3, 2, generator=gen) for n in (5, 1, 3)]
    h, mask = pad(rows, padding_value=-2.5)
    assert h.dtype == torch.float32 and h.shape == (3, 5, 3, 2)
    assert torch.equal(h, _reference(rows, -2.5))
    assert torch.equal(mask, torch.tensor([[1] * 5, [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]]))


def test_lists_and_tensors_give_the_same_batch():
    seqs = [[3, 4, 5], [6], [], [7, 8]]
    a = pad(seqs, 9)
    b = pad([torch.tensor(s, dtype=torch.long) for s in seqs], 9)
    c = pad([seqs[0], torch.tensor(seqs[1]), seqs[2], torch.tensor(seqs[3])], 9)
    for x in (b, c):
        assert torch.equal(a[0], x[0]) and torch.equal(a[1], x[1])
    assert a[1].sum(1).tolist() == [3, 1, 0, 2]


def test_no_sequences_and_a_scalar():
    ids, mask = pad([])
    assert ids.shape == mask.shape == (0, 0) and ids.dtype == mask.dtype == torch.int64
    with pytest.raises(ValueError, match=r"expected sequence 1 of shape \(length, \.\.\.\), got a 0-d tensor"):
        pad([torch.tensor([1, 2]), torch.tensor(3)])
