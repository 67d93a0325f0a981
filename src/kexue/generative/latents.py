"""Latent sampling for generators: the hubness prior (keep the latents that are hubs of their pool) and the
truncation trick.

Post: "“维度灾难”之Hubness现象浅析" (The hubness phenomenon of the "curse of dimensionality"), 2022-06-28,
https://kexue.fm/archives/9147, after Liang, Wu, Lai and Qin, "Exploring and Exploiting Hubness Priors for
High-Quality GAN Latent Sampling", ICML 2022 (arXiv 2206.06014): latents with a large hub value give better GAN images,
a "hubness prior" that needs no discriminator or classifier.

- Hub value (:func:`kexue.stats.hubness.hub_values`): N_k(z_i) = #{j ≠ i : z_i is among the k nearest neighbours of
  z_j in the pool, z_j itself excluded}, squared Euclidean distance; over a pool of N the N_k sum to N·k, so their
  mean is exactly k.
- Su's recipe (his code; the defaults): repeat until ``size`` latents are collected: draw a pool of 10,000
  z ~ N(0, I); count hub values with k = 5, the distances taken 1,000 queries at a time (the N × N matrix is never
  built); keep the z with **N_k > t**, t = 50. The code's inequality is strict; the post's prose says "at least t"
  (N_k ≥ t is N_k > t − 1 for these integer counts). t = 50 is ten times the mean k, and the threshold only means
  something relative to k and the pool size: change one, rescale t.
- Why it works (the post): hubs sit near the centre of the density, so they are typical latents rather than
  under-trained outliers; the truncation trick (z ← ψ·z, ψ < 1, or towards the mean latent) pulls towards the same
  centre. Both narrow the latent distribution, so both can cost diversity.
- Acceptance depends strongly on the dimension. Measured here (one pool of 10,000 z ~ N(0, I), k = 5): d = 16 accepts
  none at t = 50 (the largest N₅ was 30–34; t = 20 accepts about 1 %, t = 15 about 4 %); d = 64 about 1 % and
  d = 128 about 1.3 % at t = 50. Budget the rounds, or lower t where d is small.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple, cast

import torch
from torch import Tensor

from .._validate import check_float, check_generator, check_int
from ..stats.hubness import hub_values

#: What :func:`hub_filtered_latents` draws from: ``sample_fn(n, generator)`` returns n latents as a floating tensor
#: of shape (n, d), drawn with ``generator`` (a ``torch.Generator`` or None) so that a seeded generator repeats them.
SampleFn = Callable[[int, "torch.Generator | None"], Tensor]


class HubFiltered(NamedTuple):
    """What :func:`hub_filtered_latents` returns: ``latents`` (size, d), in the order drawn; ``hub_values`` (size,),
    each latent's N_k within its own pool; ``acceptance_rate`` = ``accepted``/``drawn`` over all rounds; ``rounds``
    (pools drawn), ``drawn`` (= rounds·pool) and ``accepted`` (latents that cleared the threshold, ≥ size: the surplus
    of the last pool is dropped)."""

    latents: Tensor
    hub_values: Tensor
    acceptance_rate: float
    rounds: int
    drawn: int
    accepted: int


def standard_normal(dim: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
                    ) -> SampleFn:
    """A ``sample_fn`` for :func:`hub_filtered_latents`: ``(n, generator) -> torch.randn(n, dim)`` in ``dtype`` (the
    default dtype when None) on ``device``; the generator must live on that device."""
    dim = check_int("dim", dim, minimum=1)
    if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
        raise TypeError(f"expected dtype to be a floating torch.dtype or None, got {dtype!r}")
    dev = torch.device(device) if device is not None else None

    def sample(n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, dim, generator=generator, dtype=dtype, device=dev)

    return sample


def _as_sample_fn(sample_fn: object) -> SampleFn:
    if isinstance(sample_fn, numbers.Integral) and not isinstance(sample_fn, bool):
        if int(sample_fn) < 1:
            raise ValueError(f"expected sample_fn (as a latent dimension) >= 1, got {int(sample_fn)}")
        return standard_normal(int(sample_fn))
    if not callable(sample_fn):
        raise TypeError(f"expected sample_fn to be a callable (n, generator) -> Tensor of shape (n, d), or an int "
                        f"latent dimension for N(0, I), got {type(sample_fn).__name__}")
    return cast(SampleFn, sample_fn)  # its output is checked round by round (_draw)


def _draw(sample_fn: SampleFn, pool: int, generator: torch.Generator | None, dim: int | None) -> Tensor:
    z = sample_fn(pool, generator)
    if not isinstance(z, Tensor) or not z.is_floating_point():
        got = z.dtype if isinstance(z, Tensor) else type(z).__name__
        raise TypeError(f"expected sample_fn to return a floating torch.Tensor, got {got}")
    want = f"({pool}, {'d' if dim is None else dim})"
    if z.dim() != 2 or z.shape[0] != pool or z.shape[1] < 1 or (dim is not None and z.shape[1] != dim):
        raise ValueError(f"expected sample_fn(pool, generator) to return shape {want}, got {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"expected sample_fn to return finite latents, got {int((~torch.isfinite(z)).sum())} NaN "
                         "or infinite entries")
    return z.detach()


def hub_filtered_latents(sample_fn: SampleFn | int, size: int, k: int = 5, pool: int = 10_000,
                         threshold: float = 50, chunk: int = 1000, max_rounds: int = 100,
                         generator: torch.Generator | None = None) -> HubFiltered:
    """``size`` latents from the hubness prior (kexue.fm/archives/9147, Su's recipe): draw ``pool`` latents with
    ``sample_fn``, compute their hub values N_k (:func:`kexue.stats.hubness.hub_values`: k nearest neighbours by
    squared Euclidean distance, self excluded, ``chunk`` queries at a time), keep those with N_k > ``threshold``
    (strict, as in Su's code; the prose's "at least t" is ``threshold = t − 1``), and repeat with fresh pools until
    ``size`` are collected. The mean N_k of a pool is exactly k, so the default t = 50 is 10·k.

    ``sample_fn``: a callable ``(n, generator) -> Tensor`` of shape (n, d) (:data:`SampleFn`; e.g.
    :func:`standard_normal`, or a mapping network applied to noise), or an int d for z ~ N(0, I) in d dimensions in
    the default dtype. ``generator`` is passed to it, so a seeded generator repeats the result exactly.

    If ``max_rounds`` pools do not yield ``size`` latents the function raises a ``RuntimeError`` naming the
    acceptance rate, the largest hub value seen and the rounds the rate would need, rather than returning fewer than
    asked (a short batch would change every downstream sample count silently). In low dimensions few latents are hubs
    (d = 16: none of 10,000 clears t = 50): lower ``threshold`` or raise ``max_rounds``.

    Memory: one (chunk × pool) block of distances at a time (40 MB at the defaults in float32). Time: about 1 s per
    round of 10,000 on one CPU thread for d ≤ 128.
    """
    fn = _as_sample_fn(sample_fn)
    size = check_int("size", size, minimum=1)
    k = check_int("k", k, minimum=1)
    pool = check_int("pool", pool, minimum=k + 1)
    threshold = check_float("threshold", threshold, low=0.0)
    if threshold >= pool - 1:
        raise ValueError(f"expected threshold < pool − 1 = {pool - 1} (the largest hub value a pool of {pool} can "
                         f"give), got {threshold:g}")
    chunk = check_int("chunk", chunk, minimum=1)
    max_rounds = check_int("max_rounds", max_rounds, minimum=1)
    generator = check_generator("generator", generator)

    kept: list[Tensor] = []
    kept_h: list[Tensor] = []
    accepted, dim, largest = 0, None, 0
    for rounds in range(1, max_rounds + 1):
        z = _draw(fn, pool, generator, dim)
        dim = z.shape[1]
        h = hub_values(z, k, chunk=chunk)
        largest = max(largest, int(h.max()))
        keep = h > threshold
        kept.append(z[keep])
        kept_h.append(h[keep])
        accepted += int(keep.sum())
        if accepted >= size:
            return HubFiltered(torch.cat(kept)[:size], torch.cat(kept_h)[:size], accepted / (rounds * pool), rounds,
                               rounds * pool, accepted)
    drawn = max_rounds * pool
    rate = accepted / drawn
    need = f"about {math.ceil(size / (rate * pool))} rounds at this rate" if rate > 0 else "no latent cleared it"
    raise RuntimeError(f"expected {size} latents with hub value > {threshold:g} within max_rounds = {max_rounds} "
                       f"pools of {pool}, got {accepted} (acceptance rate {rate:.3g}; the mean hub value is k = {k}, "
                       f"the largest seen {largest}; {need}): lower threshold or raise max_rounds")


def truncation(z: Tensor, psi: float, mean: Tensor | None = None) -> Tensor:
    """The truncation trick: z ← ψ·z, or z ← mean + ψ·(z − mean) towards a mean latent ``mean`` (shape (d,), e.g. the
    average of a mapping network's outputs), with ψ in (0, 1]; ψ = 1 leaves z unchanged. It pulls latents towards the
    centre of the prior, as the hubness prior does by selection (kexue.fm/archives/9147)."""
    if not isinstance(z, Tensor) or not z.is_floating_point():
        got = z.dtype if isinstance(z, Tensor) else type(z).__name__
        raise TypeError(f"expected z to be a floating torch.Tensor, got {got}")
    if z.dim() < 1:
        raise ValueError(f"expected z of shape (..., d), got shape {tuple(z.shape)}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"expected z to be finite, got {int((~torch.isfinite(z)).sum())} NaN or infinite entries")
    psi = check_float("psi", psi, low=0.0, high=1.0, low_open=True)
    if mean is None:
        return psi * z
    if not isinstance(mean, Tensor) or not mean.is_floating_point():
        got = mean.dtype if isinstance(mean, Tensor) else type(mean).__name__
        raise TypeError(f"expected mean to be a floating torch.Tensor or None, got {got}")
    if tuple(mean.shape) != (z.shape[-1],):
        raise ValueError(f"expected mean of shape ({z.shape[-1]},) (one latent), got {tuple(mean.shape)}")
    if not bool(torch.isfinite(mean).all()):
        raise ValueError("expected mean to be finite, got NaN or infinite entries")
    return mean + psi * (z - mean)


__all__ = ["HubFiltered", "SampleFn", "hub_filtered_latents", "standard_normal", "truncation"]
