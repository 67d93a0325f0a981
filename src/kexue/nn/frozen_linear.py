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

oneDNN's operators are private to torch (``torch.ops.mkldnn.*``, no stability promise). They are used only behind
:func:`onednn_available`, a capability check that runs both operators once on a small input and compares the result
with the public ``F.linear`` (+ ``F.gelu``). Where the check fails (a build without oneDNN, a torch release that
renamed or changed them), ``kernel="onednn"`` falls back to the public path, ``F.linear`` followed by the activation,
with one :class:`OneDNNFallbackWarning` per process. The public path is the reference the tests hold the fast path to.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_choice
from .activations import Activation, get_activation

Kernel = Literal["torch", "onednn"]
KERNELS: tuple[Kernel, ...] = get_args(Kernel)

#: Hugging Face ``hidden_act`` names whose GELU oneDNN can apply inside its matmul, and its algorithm for each.
ONEDNN_GELU: dict[Activation, str] = {"gelu": "none", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh",
                               "gelu_accurate": "tanh"}


class OneDNNFallbackWarning(UserWarning):
    """``kernel="onednn"`` was asked for, but oneDNN's private operators failed the capability check: the public
    ``F.linear`` path runs instead (same results up to float rounding, somewhat slower on CPU)."""


def onednn_available() -> bool:
    """Whether oneDNN's fp32 linear kernel works in this torch build: both private operators
    (``torch.ops.mkldnn._reorder_linear_weight`` and ``torch.ops.mkldnn._linear_pointwise``) exist, run, and give
    ``F.linear``'s result (and ``F.gelu``'s after it) to float rounding on a small input. Checked once per process."""
    return _onednn_probe()


@functools.cache
def _onednn_probe() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3, 8, generator=g)
        w = torch.randn(5, 8, generator=g)
        b = torch.randn(5, generator=g)
        packed = torch.ops.mkldnn._reorder_linear_weight(w, None)
        y = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
        y_gelu = torch.ops.mkldnn._linear_pointwise(x, packed, b, "gelu", [], "none")
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False
    ref = F.linear(x, w, b)
    return bool(torch.allclose(y, ref, rtol=1e-4, atol=1e-5)
                and torch.allclose(y_gelu, F.gelu(ref), rtol=1e-4, atol=1e-5))


@functools.cache
def _warn_fallback() -> None:
    # functools.cache: once per process, whichever layer asks first
    warnings.warn("oneDNN's linear kernel failed its capability check in this torch build: kernel='onednn' runs "
                  "the public F.linear path instead", OneDNNFallbackWarning, stacklevel=4)


class FrozenLinear:
    """y = x [W_1; …; W_n]ᵀ + [b_1; …; b_n]: a weight snapshot of ``linears`` for inference (see the module doc)."""

    def __init__(self, linears: Sequence[nn.Linear], kernel: Kernel = "torch", gelu: Activation | None = None) -> None:
        """``gelu``: with ``kernel="onednn"``, a Hugging Face activation name from :data:`ONEDNN_GELU` to apply to
        the output inside the matmul (one pass over the output instead of two)."""
        check_choice("kernel", kernel, Kernel)
        if gelu is not None and (kernel != "onednn" or gelu not in ONEDNN_GELU):
            raise ValueError(f"expected gelu to be None, or with kernel='onednn' one of {list(ONEDNN_GELU)}; "
                             f"got gelu={gelu!r} with kernel={kernel!r}")
        if kernel == "onednn" and not onednn_available():
            _warn_fallback()
            kernel = "torch"
        if isinstance(linears, nn.Module) or isinstance(linears, (str, bytes)):
            raise TypeError(f"expected linears to be a sequence of nn.Linear (e.g. [layer]), got "
                            f"{type(linears).__name__}")
        if not linears:
            raise ValueError("expected at least one nn.Linear in linears, got none")
        for i, lin in enumerate(linears):
            if not isinstance(lin, nn.Linear):
                raise TypeError(f"expected linears to hold nn.Linear layers, got {type(lin).__name__} at index {i}")
        in_features = {lin.in_features for lin in linears}
        if len(in_features) != 1:
            raise ValueError(f"expected linears that share in_features, got in_features {sorted(in_features)}")
        with torch.no_grad():
            weights = [lin.weight.detach() for lin in linears]
            weight = torch.cat(weights) if len(weights) > 1 else weights[0]
            if all(lin.bias is None for lin in linears):
                bias = None
            else:
                bias = torch.cat([
                    lin.bias.detach() if lin.bias is not None else weight.new_zeros(lin.out_features) for lin in linears
                ])
            self.in_features: int = linears[0].in_features
            self.dtype: torch.dtype = weight.dtype
            if kernel == "onednn":
                if weight.device.type != "cpu" or weight.dtype != torch.float32:
                    raise ValueError(f"expected fp32 CPU weights for kernel='onednn', got {weight.dtype} on "
                                     f"{weight.device}")
                weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None)
        self.kernel: Kernel = kernel
        # the fused GELU's oneDNN algorithm; on the fallback path the same activation runs after F.linear
        self.gelu_algorithm = ONEDNN_GELU[gelu] if gelu is not None and kernel == "onednn" else None
        self.activation = get_activation(gelu) if gelu is not None and kernel == "torch" else None
        self.weight = weight
        self.bias = bias
        self.out_features = sum(lin.out_features for lin in linears)

    def __call__(self, x: Tensor) -> Tensor:
        # shape and dtype only (no sync); under autocast torch's kernel casts x itself
        if (not isinstance(x, Tensor) or x.shape[-1:] != (self.in_features,)
                or (x.dtype != self.dtype and not torch.is_autocast_enabled(x.device.type))):
            self._refuse(x)
        if self.kernel == "onednn":
            if self.gelu_algorithm is not None:
                return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "gelu", [], self.gelu_algorithm)
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        y = F.linear(x, self.weight, self.bias)
        return y if self.activation is None else self.activation(y)

    def _refuse(self, x: object) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected x to be a tensor, got {type(x).__name__}")
        if x.shape[-1:] != (self.in_features,):
            raise ValueError(f"expected x of shape (..., {self.in_features}) (the layers' in_features), got "
                             f"{tuple(x.shape)}")
        raise TypeError(f"expected x of dtype {self.dtype} (the snapshot's weights), got {x.dtype}")


__all__ = ["KERNELS", "ONEDNN_GELU", "FrozenLinear", "Kernel", "OneDNNFallbackWarning", "onednn_available"]
