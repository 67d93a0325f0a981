"""Hubness: how often each point appears in the others' k-nearest-neighbour lists, and how skewed that count is.

Post: "“维度灾难”之Hubness现象浅析" (The hubness phenomenon of the "curse of dimensionality"), 2022-06-28,
https://kexue.fm/archives/9147. The motivating paper is Liang et al., ICML 2022 (arXiv 2206.06014).

- Hub value (k-occurrence): N_k(x_i) = #{j ≠ i : x_i is among the k nearest neighbours of x_j, x_j itself
  excluded}. Every point has k neighbours, so the N_k sum to N·k and their mean is exactly k.
- Hubness: the skewness of the N_k distribution, m₃/m₂^{3/2} with central moments mᵢ (the biased Fisher–Pearson
  coefficient, ``scipy.stats.skew``'s default). It is the standard measure of the hubness literature, not the
  post's. In high dimensions a few points (hubs, near the centre of the data) collect many occurrences.
- Hub occupancy: the share of all N·k neighbour slots taken by hubs, points with N_k > hub_size·k (hub_size = 2 in
  scikit-hubness); antihubs are points with N_k = 0.

The N×N distance matrix is never built: queries go ``chunk`` rows at a time, so the largest temporary is one
(chunk × N) block of distances. Measured: N = 100,000 points in 8 dimensions with chunk = 1,000 (a 381 MiB float32
block; the full matrix would take 37 GiB) ran in 99 s on one CPU thread with a peak resident size of 1.0 GiB.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

from .._validate import check_choice, check_float, check_int

Metric = Literal["sqeuclidean", "cosine"]


def _check_points(x: Tensor, k: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"expected x to be a tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"expected x of shape (N, d), got {tuple(x.shape)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"expected x to be a floating tensor, got {x.dtype}")
    if x.shape[0] < k + 1:
        raise ValueError(f"expected at least k + 1 = {k + 1} points in x (each needs k neighbours other than itself), "
                         f"got {x.shape[0]}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("expected finite x, got NaN or infinite entries")
    return x.detach().to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def knn_indices(x: Tensor, k: int = 5, metric: Metric = "sqeuclidean", chunk: int = 1000) -> Tensor:
    """The indices (N × k, int64) of each point's k nearest neighbours among the other points, nearest first.

    ``metric``: ``"sqeuclidean"`` ranks by ‖x_i − x_j‖² (computed per query as ‖x_j‖² − 2⟨x_i, x_j⟩, the query's own
    norm dropped), ``"cosine"`` by 1 − cos(x_i, x_j) (rows normalized first; a zero row is refused). Arithmetic in
    float64 for float64 input, else float32.

    Self-matches are excluded by index (a point's own distance is set to +inf), so an exact duplicate of x_i is a
    neighbour of x_i at distance 0 like any other point. Ties: among points at equal computed distance the lower
    index comes first, so the result is deterministic; with exactly representable data (small integers) ties in the
    distances are ties in the computation.
    """
    k = check_int("k", k, minimum=1)
    check_choice("metric", metric, Metric)
    chunk = check_int("chunk", chunk, minimum=1)
    x = _check_points(x, k)
    if metric == "cosine":
        norms = x.norm(dim=1)
        if bool((norms == 0).any()):
            first = int((norms == 0).nonzero()[0, 0])
            raise ValueError(f"expected no zero rows in x for metric 'cosine', got row {first}")
        x = x / norms[:, None]
    n = x.shape[0]
    sq = (x * x).sum(1)
    out = torch.empty(n, k, dtype=torch.long, device=x.device)
    for start in range(0, n, chunk):
        q = x[start : start + chunk]
        rows = torch.arange(q.shape[0], device=x.device)
        d = torch.addmm(sq[None, :], q, x.T, alpha=-2.0)  # (chunk, N): the block that bounds the memory
        d[rows, rows + start] = float("inf")
        out[start : start + q.shape[0]] = _smallest_k(d, k)
    return out


def _smallest_k(d: Tensor, k: int) -> Tensor:
    """Columns of the k smallest entries of each row, ordered by (value, column): ties go to the lower column."""
    vals, idx = torch.topk(d, k + 1, dim=1, largest=False, sorted=True)
    # topk's choice and order among equal values is arbitrary; equal neighbours among the k + 1 smallest (a tie at
    # the k-th place shows as the (k+1)-th value equal to the k-th) send the row to a stable sort, rare unless the
    # data have duplicates or lattice structure
    tied = (vals[:, 1:] == vals[:, :-1]).any(1)
    idx = idx[:, :k].clone()
    for r in tied.nonzero().flatten().tolist():
        idx[r] = torch.sort(d[r], stable=True).indices[:k]
    return idx


def hub_values(x: Tensor, k: int = 5, metric: Metric = "sqeuclidean", chunk: int = 1000) -> Tensor:
    """N_k for every row of ``x`` (N × d): how many other points have it among their k nearest neighbours
    (:func:`knn_indices`: self excluded, ties to the lower index). A LongTensor of length N summing to N·k, counted
    with ``bincount`` (fancy-index ``+= 1`` drops repeated indices). Memory: one (chunk × N) block at a time."""
    nn = knn_indices(x, k, metric, chunk)
    return torch.bincount(nn.flatten(), minlength=x.shape[0])


class HubSummary(NamedTuple):
    """What :func:`hub_summary` returns: ``skew`` (m₃/m₂^{3/2} of the N_k; 0 when they are all equal), ``max``,
    ``hub_occupancy`` (share of the N·k slots held by hubs, N_k > hub_size·k), ``hub_fraction`` (share of points that
    are hubs) and ``antihub_fraction`` (share with N_k = 0)."""

    skew: float
    max: int
    hub_occupancy: float
    hub_fraction: float
    antihub_fraction: float


def hub_summary(values: Tensor, k: int, hub_size: float = 2.0) -> HubSummary:
    """Skewness, maximum, hub occupancy and hub/antihub shares of hub values ``values`` (from :func:`hub_values`
    with the same ``k``: they must sum to len(values)·k)."""
    k = check_int("k", k, minimum=1)
    hub_size = check_float("hub_size", hub_size, low=0.0, low_open=True)
    if not isinstance(values, Tensor):
        raise TypeError(f"expected values to be a 1-D integer tensor (hub values), got {type(values).__name__}")
    if values.dim() != 1 or values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"expected values to be a 1-D integer tensor (hub values), got {values.dtype} of shape "
                        f"{tuple(values.shape)}")
    n = values.numel()
    if n < 2 or bool((values < 0).any()):
        raise ValueError(f"expected at least 2 non-negative hub values, got {values.tolist()[:10]}")
    total = int(values.sum())
    if total != n * k:
        raise ValueError(f"expected values to sum to len(values)·k = {n * k} (hub values of a {k}-NN graph), "
                         f"got {total}")
    v = values.to(torch.float64)
    c = v - v.mean()
    m2, m3 = float((c**2).mean()), float((c**3).mean())
    skew = m3 / m2**1.5 if m2 > 0 else 0.0
    hubs = v > hub_size * k
    return HubSummary(skew, int(values.max()), float(v[hubs].sum()) / (n * k), float(hubs.double().mean()),
                      float((values == 0).double().mean()))


def hubness_skew(x: Tensor, k: int = 5, metric: Metric = "sqeuclidean", chunk: int = 1000) -> float:
    """Hubness of ``x``: the skewness m₃/m₂^{3/2} of its hub values N_k (:func:`hub_values`, :func:`hub_summary`)."""
    return hub_summary(hub_values(x, k, metric, chunk), k).skew


__all__ = ["HubSummary", "Metric", "hub_summary", "hub_values", "hubness_skew", "knn_indices"]
