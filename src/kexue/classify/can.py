"""CAN (Classification with Alternating Normalization): correct uncertain predictions with the label prior.

Post: "CAN：借助先验分布提升分类性能的简单后处理技巧" (CAN: a simple post-processing trick that uses the prior to
improve classification), 2021-10-22, https://kexue.fm/archives/8728; the method is Jia et al., arXiv 2109.13449.

Su's variant, the default here:

1. **Uncertainty** from the top-k probabilities renormalised to p̃: U = −Σ_{i≤k} p̃_i log p̃_i / log k ∈ [0, 1]
   (``kind="su"``). The paper's U = −Σ_{i≤k} p_i log p_i / log C, without renormalisation, is ``kind="paper"``.
2. A prediction is **confident** if U < τ (defaults k = 3, τ = 0.9), uncertain otherwise.
3. The prior p̃ is the label frequencies of the training set (:func:`prior_from_labels`).
4. For **each** uncertain prediction separately, stack the *original* confident predictions and it into a matrix
   P and repeat ``iters`` times: P ← P^α; scale each column so that its mean is proportional to the prior; divide
   each row by its sum. Keep only the last row. Defaults α = 1, iters = 1.

``mode="batch"`` is the joint variant (all uncertain rows normalised together with the confident block); Su found
it sometimes equal, sometimes worse. The prior must describe the *test* distribution: under label shift CAN can
hurt, and a class-balanced few-shot training set gives a poor prior. The post's gains are tenths of a point.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._validate import check_choice, check_float, check_int

#: Probabilities are clipped to at least this before powers and logs (they must be strictly positive).
_PROB_FLOOR = 1e-12
#: Elements per chunk of the (uncertain rows × (confident + 1) × classes) tensor in the general per-sample path.
_CHUNK_ELEMENTS = 1 << 22

UncertaintyKind = Literal["su", "paper"]
CANMode = Literal["per_sample", "batch"]


class _Probs(NamedTuple):
    tensor: Tensor  # float64, on the CPU
    is_numpy: bool  # the input was not a tensor
    dtype: torch.dtype  # the input's dtype


def _to_tensor(probs: Any, what: str = "probs") -> _Probs:
    is_numpy = not isinstance(probs, Tensor)
    t = torch.as_tensor(np.asarray(probs) if is_numpy else probs)
    orig = t.dtype
    if t.dim() != 2:
        raise ValueError(f"expected {what} to be a 2-D (samples, classes) array, got shape {tuple(t.shape)}")
    if t.shape[1] < 2:
        raise ValueError(f"expected {what} with at least 2 classes, got {t.shape[1]}")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    bad = ~torch.isfinite(t) | (t < 0)
    if bool(bad.any()):
        raise ValueError(f"expected {what} to be finite and non-negative, got {float(t[bad][0])!r}")
    return _Probs(t, is_numpy, orig)


def _check_rows(p: Tensor, dtype: torch.dtype) -> None:
    """Rows summing to 1 within 1e-3 (1e-2 for float16/bfloat16 inputs, whose probabilities are rounded to about 3
    digits)."""
    tol = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-3
    err = (p.sum(dim=1) - 1).abs()
    if p.shape[0] and float(err.max()) > tol:
        row = int(err.argmax())
        raise ValueError(f"expected probs rows summing to 1 (within {tol}), got row {row} summing to "
                         f"{float(p[row].sum()):.6g}")


def topk_uncertainty(probs: Any, k: int = 3, kind: UncertaintyKind = "su") -> Any:
    """The top-k uncertainty of each row (kexue.fm/archives/8728).

    ``kind="su"``: U = −Σ_{i≤k} p̃_i log p̃_i / log k with p̃ the k largest probabilities renormalised to sum 1, in
    [0, 1]. Plain entropy misranks [.5, .25, .25] above [.5, .5, 0]; this does not.
    ``kind="paper"``: U = −Σ_{i≤k} p_i log p_i / log C (C classes), no renormalisation.

    Returns the same kind of array as ``probs`` (numpy → numpy float64, torch → float64 tensor). ``probs`` rows must
    sum to 1 (pass probabilities, not logits).
    """
    p, is_numpy, dtype = _to_tensor(probs)
    _check_rows(p, dtype)
    u = _uncertainty(p, k, kind)
    return u.numpy() if is_numpy else u


def _uncertainty(p: Tensor, k: int, kind: UncertaintyKind) -> Tensor:
    """:func:`topk_uncertainty` of checked float64 probabilities ``p``."""
    c = p.shape[1]
    check_int("k", k, minimum=2)
    if k > c:
        raise ValueError(f"expected k <= {c} (the number of classes), got {k}")
    check_choice("kind", kind, UncertaintyKind)
    top = p.topk(k, dim=1).values.clamp_min(_PROB_FLOOR)
    if kind == "su":
        top = top / top.sum(dim=1, keepdim=True)
        u = -(top * top.log()).sum(dim=1) / math.log(k)
    else:
        u = -(top * top.log()).sum(dim=1) / math.log(c)
    return u


def confident_mask(probs: Any, k: int = 3, tau: float = 0.9, kind: UncertaintyKind = "su") -> Any:
    """True where U < τ (a confident prediction), as a bool array of the input's kind; τ in [0, 1], Su's normalised
    scale."""
    check_float("tau", tau, low=0.0, high=1.0)
    p, is_numpy, dtype = _to_tensor(probs)
    _check_rows(p, dtype)
    mask = _uncertainty(p, k, kind) < tau
    return mask.numpy() if is_numpy else mask


def prior_from_labels(y: Any, num_classes: int) -> np.ndarray:
    """Label frequencies p̃_c = #{y = c} / N (float64), the prior CAN normalises the columns towards."""
    check_int("num_classes", num_classes, minimum=1)
    arr = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"expected y to be a non-empty 1-D array of class indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected y to hold integer class indices, got dtype {arr.dtype}")
    if arr.min() < 0 or arr.max() >= num_classes:
        raise ValueError(f"expected y values in [0, {num_classes}), got {arr.min()}..{arr.max()}")
    counts = np.bincount(arr, minlength=num_classes).astype(np.float64)
    return counts / counts.sum()


def _alternate(y: Tensor, prior: Tensor, alpha: float, iters: int, dim: int) -> Tensor:
    """``iters`` rounds of P ← P^α, column step (columns ∝ prior), row step (rows sum to 1) on a (…, n, C) stack;
    ``dim`` is the row axis (the one the column means run over)."""
    tiny = torch.finfo(y.dtype).tiny
    for _ in range(iters):
        if alpha != 1.0:
            y = y.pow(alpha)
        # A class with prior 0 has an all-zero column after the first round; 0/0 would turn it (and, through the
        # row sums, every row) into NaN on the next. Such a column stays 0 instead.
        y = y / y.mean(dim=dim, keepdim=True).clamp_min(tiny) * prior
        y = y / y.sum(dim=-1, keepdim=True)
    return y


def can(
    probs: Any,
    prior: Any,
    *,
    k: int = 3,
    tau: float = 0.9,
    alpha: float = 1.0,
    iters: int = 1,
    mode: CANMode = "per_sample",
    kind: UncertaintyKind = "su",
) -> Any:
    """Classification with Alternating Normalization (Su's variant, kexue.fm/archives/8728; see the module doc).

    Args:
        probs: (N, C) predicted probabilities (rows summing to 1), numpy or torch.
        prior: (C,) label prior, e.g. :func:`prior_from_labels` of the training labels (normalised here).
        k, tau, kind: the uncertainty (:func:`topk_uncertainty`) and its threshold; U ≥ τ is corrected.
        alpha: the power applied at every iteration (Su finds 1 about optimal).
        iters: rounds of alternating normalisation (1 is usually best).
        mode: ``"per_sample"`` (each uncertain row with the original confident block; the default) or ``"batch"``
            (all uncertain rows jointly).

    Returns the probabilities with the uncertain rows replaced (confident rows unchanged), in the input's kind
    and dtype.
    """
    p, is_numpy, orig_dtype = _to_tensor(probs)
    _check_rows(p, orig_dtype)
    c = p.shape[1]
    pr = torch.as_tensor(np.asarray(prior.detach().cpu() if isinstance(prior, Tensor) else prior),
                         dtype=torch.float64)
    if pr.shape != (c,):
        raise ValueError(f"expected prior of shape ({c},) (one value per class), got {tuple(pr.shape)}")
    if not bool(torch.isfinite(pr).all()) or bool((pr < 0).any()) or float(pr.sum()) <= 0:
        raise ValueError(f"expected prior to be finite, non-negative and not all zero, got {pr.tolist()}")
    pr = pr / pr.sum()
    check_float("alpha", alpha, low=0.0, low_open=True)
    check_int("iters", iters, minimum=1)
    check_choice("mode", mode, CANMode)
    check_float("tau", tau, low=0.0, high=1.0)

    conf = _uncertainty(p, k, kind) < tau
    out = p.clone()
    unc_idx = torch.nonzero(~conf).flatten()
    if unc_idx.numel():
        q = p.clamp_min(_PROB_FLOOR)
        a, b = q[conf], q[unc_idx]
        if mode == "batch":
            y = _alternate(torch.cat([a, b]), pr, alpha, iters, dim=0)
            new = y[a.shape[0]:]
        elif iters == 1:
            # One round, closed form: only the uncertain row is needed, and the confident block enters through
            # its column sums S = Σ_conf a^α: row ∝ b^α / (S + b^α) · prior.
            aa, bb = a.pow(alpha), b.pow(alpha)
            new = bb / (aa.sum(dim=0) + bb) * pr
            new = new / new.sum(dim=1, keepdim=True)
        else:
            new = _per_sample_general(a, b, pr, alpha, iters)
        out[unc_idx] = new
    if not orig_dtype.is_floating_point:
        orig_dtype = torch.float64
    if is_numpy:
        return out.to(orig_dtype).numpy()
    return out.to(device=probs.device, dtype=orig_dtype)


def _per_sample_general(a: Tensor, b: Tensor, prior: Tensor, alpha: float, iters: int) -> Tensor:
    """Each uncertain row with its own copy of the original confident block, vectorised in chunks."""
    n_conf, c = a.shape
    chunk = max(1, _CHUNK_ELEMENTS // ((n_conf + 1) * c))
    rows = []
    for s in range(0, b.shape[0], chunk):
        bb = b[s : s + chunk]
        y = torch.cat([a.unsqueeze(0).expand(bb.shape[0], n_conf, c), bb.unsqueeze(1)], dim=1)
        rows.append(_alternate(y, prior, alpha, iters, dim=1)[:, -1])
    return torch.cat(rows)


__all__ = ["CANMode", "UncertaintyKind", "can", "confident_mask", "prior_from_labels", "topk_uncertainty"]
