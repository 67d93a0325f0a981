"""Inference snapshots of Linear layers: several projections fused into one matmul, optionally on oneDNN.

``FrozenLinear([q, k, v])`` computes y = x Wᵀ + b with W = [W_q; W_k; W_v] and b = [b_q; b_k; b_v] stacked along
the output dimension: one matrix product instead of three, whose output columns are the three projections side by
side. The weights are copied when the snapshot is taken, so it must be rebuilt after the layers change; modules
hold one only inside :meth:`kexue.models.Transformer.fast_inference`, which takes and drops them.

Kernels:

* ``"torch"``: ``torch.nn.functional.linear`` (MKL's sgemm on CPU). Each output column is the same dot product
  as before, so fusing changes at most float rounding (a BLAS may pick another kernel for another output width);
  on BERT-shaped Q/K/V (equal widths, all with bias) MKL gives the same bits, which the tests check.
* ``"onednn"``: oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``, the kernel ``torch.compile`` uses for
  CPU linear layers) on a weight reordered once into oneDNN's blocked layout. On CPU, fp32, it runs the
  MiniLM-sized products 10–30 % faster than MKL here; its results differ from MKL's by float rounding
  (about 1e-6 relative). It can also apply GELU to its output in the same pass (the erf form gives the same bits
  as ``torch.nn.functional.gelu``; the tanh form differs by float rounding). No autograd: inference only.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Kernel = Literal["torch", "onednn"]
KERNELS: tuple[str, ...] = ("torch", "onednn")

#: Hugging Face ``hidden_act`` names whose GELU oneDNN can apply inside its matmul, and its algorithm for each.
ONEDNN_GELU: dict[str, str] = {"gelu": "none", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh",
                               "gelu_accurate": "tanh"}


def onednn_available() -> bool:
    """Whether this torch build has oneDNN's fp32 linear kernel (``torch.ops.mkldnn._linear_pointwise``)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise.default  # noqa: B018 - looking the op up is the test
        torch.ops.mkldnn._reorder_linear_weight.default  # noqa: B018
    except (AttributeError, RuntimeError):
        return False
    return True


class FrozenLinear:
    """y = x [W_1; …; W_n]ᵀ + [b_1; …; b_n]: a weight snapshot of ``linears`` for inference (see the module doc)."""

    def __init__(self, linears: Sequence[nn.Linear], kernel: Kernel = "torch", gelu: str | None = None) -> None:
        """``gelu``: with ``kernel="onednn"``, a Hugging Face activation name from :data:`ONEDNN_GELU` to apply to
        the output inside the matmul (one pass over the output instead of two)."""
        if kernel not in KERNELS:
            raise ValueError(f"unknown kernel {kernel!r}; expected one of {list(KERNELS)}")
        if not linears:
            raise ValueError("FrozenLinear needs at least one nn.Linear")
        in_features = {lin.in_features for lin in linears}
        if len(in_features) != 1:
            raise ValueError(f"fused layers must share in_features, got {sorted(in_features)}")
        with torch.no_grad():
            weight = torch.cat([lin.weight.detach() for lin in linears]) if len(linears) > 1 else linears[0].weight.detach()
            if all(lin.bias is None for lin in linears):
                bias = None
            else:
                bias = torch.cat([
                    lin.bias.detach() if lin.bias is not None else weight.new_zeros(lin.out_features) for lin in linears
                ])
            if kernel == "onednn":
                if weight.device.type != "cpu" or weight.dtype != torch.float32:
                    raise ValueError(f"the onednn kernel takes fp32 CPU weights, got {weight.dtype} on {weight.device}")
                if not onednn_available():
                    raise RuntimeError("this torch build lacks oneDNN's linear kernel; use kernel='torch'")
                weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None)
        if gelu is not None and (kernel != "onednn" or gelu not in ONEDNN_GELU):
            raise ValueError(f"gelu={gelu!r} is fused only with kernel='onednn' and one of {list(ONEDNN_GELU)}")
        self.kernel: Kernel = kernel
        self.gelu_algorithm = ONEDNN_GELU[gelu] if gelu is not None else None
        self.weight = weight
        self.bias = bias
        self.out_features = sum(lin.out_features for lin in linears)

    def __call__(self, x: Tensor) -> Tensor:
        if self.kernel == "onednn":
            if self.gelu_algorithm is not None:
                return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu", [], self.gelu_algorithm)
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)


__all__ = ["FrozenLinear", "KERNELS", "Kernel", "ONEDNN_GELU", "onednn_available"]
