"""Dropout whose mask is cheap to draw on CPU, and stored as one byte per element.

y = x ⊙ m / (1 − p),  m_i ~ Bernoulli(1 − p) independently   (Srivastava et al. 2014; ``torch.nn.Dropout``)

Why not ``torch.nn.functional.dropout``: on CPU it draws the mask with ``bernoulli_``, one 64-bit Mersenne-Twister
draw per element turned into a double (about 9 ns per element here, a quarter of a BERT forward pass on one thread),
and keeps a float32 mask (4 bytes per element) for backward. Recompute (kexue.fm/archives/7367) draws every mask
twice, so the mask's price is paid twice. Here a mask costs a quarter of a draw per element: each 64-bit word from
torch's own generator (``random_`` over the full int64 range) is cut into four 16-bit lanes u ∈ {0, …, 65535}, and
element i is kept iff u_i ≥ k with k = round(p·2^16). The masks are exactly Bernoulli(1 − k/2^16) and independent;
the realised rate p' = k/2^16 is within 2^-17 (7.6e-6) of p, and the output is scaled by 1/(1 − p'), so
E[y] = x exactly. A rate that 16 bits cannot hold within 1 % (p < 7.6e-4, or p > 1 − 7.6e-4) falls back to torch.
The mask is a bool tensor (what backward keeps: 1 byte per element instead of 4).

:func:`seeded_dropout` keeps no mask at all: it draws one 64-bit seed, makes the mask from a generator seeded with
it, and makes it again in backward. The kexue Transformer uses it for the FFN output, so that nothing after the FFN
down projection is kept for backward and recompute can stop before that product (the ``tail_once`` policy of
``kexue.models.recompute``).

The draws come from torch's default CPU generator (or the ``generator`` given), so ``torch.manual_seed``,
``torch.random.fork_rng`` and ``torch.utils.checkpoint``'s ``preserve_rng_state`` govern them as they govern
torch's dropout; the masks themselves differ from torch's for the same seed. On other devices (CUDA's fused dropout
is fast) this is ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_float

LANES = 1 << 16  # each mask element reads one 16-bit lane of a 64-bit random word


def quantised_rate(p: float) -> float | None:
    """The rate p' = round(p·2^16)/2^16 the CPU path realises, or None where it would be more than 1 % off p (or
    off 1 − p) and torch's dropout is used instead."""
    k = round(p * LANES)
    q = k / LANES
    if k <= 0 or k >= LANES or abs(q - p) > 0.01 * min(p, 1.0 - p):
        return None
    return q


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, generator: torch.Generator | None = None) -> Tensor:
    """A bool CPU tensor of ``shape``, each element True (kept) with probability 1 − p' independently, p' =
    :func:`quantised_rate` (p). Four elements per 64-bit draw of the generator."""
    q = quantised_rate(p)
    if q is None:
        raise ValueError(f"expected p representable in 16-bit lanes within 1 % (about 7.6e-4 <= p <= 1 - 7.6e-4), "
                         f"got {p!r}: use torch's dropout for it")
    n = math.prod(int(s) for s in shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None, generator=generator)
    lanes = words.view(torch.int16)[:n].view(tuple(shape))  # signed: u − 2^15
    return lanes >= round(q * LANES) - (1 << 15)


def _cpu_rate(x: Tensor, p: float) -> float | None:
    """Checks p and x; the rate the CPU path realises for ``x``, or None where torch's dropout serves (another
    device, a rate 16 bits cannot hold)."""
    check_float("p", p, 0.0, 1.0)
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"expected x to be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    return quantised_rate(p) if x.device.type == "cpu" else None


def _masked(x: Tensor, keep: Tensor, q: float, inplace: bool = False) -> Tensor:
    """x ⊙ keep / (1 − q). Multiplying by the bool mask makes autograd keep the mask (1 byte per element), not x;
    the scale is a plain scalar, and the in-place scaling writes into the fresh product."""
    return (x.mul_(keep) if inplace else torch.mul(x, keep)).mul_(1.0 / (1.0 - q))


def dropout(x: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False,
            generator: torch.Generator | None = None) -> Tensor:
    """y = x ⊙ m / (1 − p') in training (see the module docstring), x otherwise. Same arguments as
    ``torch.nn.functional.dropout`` (plus ``generator``)."""
    q = _cpu_rate(x, p)
    if not training or p == 0.0:
        return x
    if q is None:
        if generator is not None:
            raise ValueError(f"expected generator=None where torch's dropout runs (device {x.device}, p = {p!r}), "
                             f"got a generator: only the CPU path takes one")
        return F.dropout(x, p, True, inplace)
    return _masked(x, keep_mask(x.shape, p, generator), q, inplace)


class Dropout(nn.Dropout):
    """``torch.nn.Dropout`` with the cheap CPU mask of :func:`dropout` (a subclass: ``p``, ``inplace``,
    ``isinstance(m, nn.Dropout)`` and ``state_dict`` are unchanged)."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        check_float("p", p, 0.0, 1.0)  # torch's own check lets nan through
        super().__init__(p, inplace)

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training, self.inplace)


class _SeededDropout(torch.autograd.Function):
    """y = x ⊙ m / (1 − p') with m drawn again in backward from a seed instead of being kept (no tensor saved)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float, q: float, seed: int) -> Tensor:
        ctx.p, ctx.q, ctx.seed = p, q, seed
        return _masked(x, keep_mask(x.shape, p, torch.Generator().manual_seed(seed)), q)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        keep = keep_mask(grad.shape, ctx.p, torch.Generator().manual_seed(ctx.seed))
        # linear in grad, made of differentiable ops: double backward works
        return _masked(grad, keep, ctx.q), None, None, None


def seeded_dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """:func:`dropout` that keeps no mask for backward: it draws one 64-bit seed from torch's generator, makes the
    mask from a generator seeded with it, and makes it again in backward (2 ns per element here instead of a byte
    per element kept). For a tensor whose mask would otherwise be the only thing kept, e.g. after the last product a
    recompute region re-runs. Same law as :func:`dropout`; elsewhere (CUDA, rates 16 bits cannot hold) torch's."""
    q = _cpu_rate(x, p)
    if not training or p == 0.0:
        return x
    if q is None:
        return F.dropout(x, p, True)
    seed = int(torch.empty((), dtype=torch.int64).random_(0, None))
    return _SeededDropout.apply(x, p, q, seed)


__all__ = ["LANES", "Dropout", "dropout", "keep_mask", "quantised_rate", "seeded_dropout"]
