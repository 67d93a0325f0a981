"""Bad-input rows: kexue.nn.ConditionalLayerNorm (kexue.fm/archives/7321)."""

from __future__ import annotations

import pytest
import torch
from _matrix import Bad, check

from kexue.nn import ConditionalLayerNorm

ENTRY = "kexue.nn.ConditionalLayerNorm"

ROWS = [
    Bad(ENTRY, "d = 0", lambda: ConditionalLayerNorm(0, 4), ValueError, r"expected d >= 1, got 0"),
    Bad(ENTRY, "cond_dim a float", lambda: ConditionalLayerNorm(8, 2.5), TypeError, r"cond_dim.*2\.5"),
    Bad(ENTRY, "eps = 0", lambda: ConditionalLayerNorm(8, 4, eps=0.0), ValueError, r"expected eps > 0\.0, got 0"),
    Bad(ENTRY, "eps nan", lambda: ConditionalLayerNorm(8, 4, eps=float("nan")), ValueError, r"eps.*finite.*nan"),
    Bad(f"{ENTRY}.forward", "x of the wrong width", lambda: ConditionalLayerNorm(8, 4)(torch.zeros(2, 3, 7),
        torch.zeros(2, 4)), ValueError, r"expected x of shape \(\.\.\., 8\), got \(2, 3, 7\)"),
    Bad(f"{ENTRY}.forward", "cond of the wrong width", lambda: ConditionalLayerNorm(8, 4)(torch.zeros(2, 3, 8),
        torch.zeros(2, 5)), ValueError, r"expected cond of shape \(\*lead, 4\).*got \(2, 5\)"),
    Bad(f"{ENTRY}.forward", "cond's batch not x's", lambda: ConditionalLayerNorm(8, 4)(torch.zeros(2, 3, 8),
        torch.zeros(3, 4)), ValueError, r"expected cond .*prefix of x's leading shape \(2, 3\), got \(3, 4\)"),
    Bad(f"{ENTRY}.forward", "x an integer tensor", lambda: ConditionalLayerNorm(8, 4)(torch.zeros(2, 8,
        dtype=torch.long), torch.zeros(2, 4)), TypeError, r"expected x to be .*got torch\.int64"),
    Bad(f"{ENTRY}.forward", "cond a list", lambda: ConditionalLayerNorm(2, 1)(torch.zeros(1, 2), [[1.0]]), TypeError,
        r"expected cond to be a floating-point tensor, got list"),
    Bad(f"{ENTRY}.from_layer_norm", "an RMSNorm", lambda: ConditionalLayerNorm.from_layer_norm(torch.nn.RMSNorm(8), 4),
        TypeError, r"expected layer_norm to be a torch\.nn\.LayerNorm, got RMSNorm"),
    Bad(f"{ENTRY}.from_layer_norm", "no affine weight", lambda: ConditionalLayerNorm.from_layer_norm(
        torch.nn.LayerNorm(8, elementwise_affine=False), 4), ValueError, r"expected layer_norm .*with a weight and a "
        r"bias, got normalized_shape \(8,\), elementwise_affine=False"),
    Bad(f"{ENTRY}.from_layer_norm", "cond_dim = 0", lambda: ConditionalLayerNorm.from_layer_norm(
        torch.nn.LayerNorm(8), 0), ValueError, r"expected cond_dim >= 1, got 0"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
