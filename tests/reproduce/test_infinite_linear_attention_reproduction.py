"""The infinite_linear_attention reproduction's attention matrices: softmax attention is full rank, elu+1 linear
attention has rank at most the feature dimension; rows sum to 1."""

from __future__ import annotations

import torch

from kexue.nn import linear_attention as L
from kexue.reproduce.infinite_linear_attention import attention_matrix


def test_rank_of_linear_attention_is_bounded():
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(64, 8, generator=g, dtype=torch.float64) for _ in range(2))
    soft = attention_matrix(q, k)
    lin = attention_matrix(q, k, L.elu_features)
    assert torch.linalg.matrix_rank(soft).item() == 64
    assert torch.linalg.matrix_rank(lin).item() <= 8
    torch.testing.assert_close(soft.sum(-1), torch.ones(64, dtype=torch.float64))
    torch.testing.assert_close(lin.sum(-1), torch.ones(64, dtype=torch.float64))
