"""The size of an optimizer's state, for the adafactor reproduction and benchmarks/optimizers.py (AdaFactor keeps
factored second moments: kexue.fm/archives/7302)."""

from __future__ import annotations

from torch import Tensor
from torch.optim import Optimizer


def state_nbytes(optimizer: Optimizer) -> int:
    """Bytes held in tensors of ``optimizer.state`` (the per-parameter state; scalars such as step counts count too)."""
    total = 0
    for st in optimizer.state.values():
        for v in st.values():
            if isinstance(v, Tensor):
                total += v.numel() * v.element_size()
    return total


def state_numel(optimizer: Optimizer) -> int:
    """Number of tensor elements in ``optimizer.state`` that have at least one dimension (0-d step counters
    excluded)."""
    return sum(v.numel() for st in optimizer.state.values() for v in st.values()
               if isinstance(v, Tensor) and v.dim() > 0)
