"""Linear attention: kernel feature maps, Performer random features, and the two deterministic
infinite-dimensional truncations of softmax attention.

Post: "Transformer升级之路：5、作为无限维的线性Attention" (Transformer upgrade road 5: attention as
infinite-dimensional linear attention), 2021-08-06, https://kexue.fm/archives/8601.

Softmax attention a_ij = e^{q_i·k_j} / Σ_j e^{q_i·k_j} is linear attention a_ij = φ(q_i)·φ(k_j) / Σ_j φ(q_i)·φ(k_j)
with an infinite-dimensional φ. Finite feature maps:

- ``elu``:       φ(x) = elu(x) + 1 (Katharopoulos et al.), a kernel of its own, not an approximation of exp;
- ``performer``: φ(x) = m^{−1/2}(e^{ω_i·x − ‖x‖²/2})_{i≤m}, ω_i ~ N(0, I): E[φ(q)·φ(k)] = e^{q·k};
- ``taylor``:    φ(x) = [1, x, ⊗²x/√2!, …, ⊗ⁿx/√n!]: φ(q)·φ(k) = Σ_{j≤n} (q·k)^j/j!;
- ``exp_limit``: φ(x) = ⊗ⁿ[1; x/√n]: φ(q)·φ(k) = (1 + q·k/n)ⁿ.

Linear-time evaluation: out_i = φ(q_i)ᵀ(Σ_j φ(k_j)v_jᵀ) / φ(q_i)ᵀ(Σ_j φ(k_j)), with j over unmasked keys (causal:
j ≤ i, by running sums). The 1/√d attention scale is folded into q and k before the map (each divided by d^{1/4}).

Pitfalls (the spec's): odd orders (Taylor) or odd n ((1 + x/n)ⁿ) give negative kernel values when q·k < 0, so the
normaliser can vanish: those are refused unless ``allow_odd=True``. Even orders are non-negative but not monotone for
large negative q·k; keep |q·k| ≲ n. The deterministic maps have Σ d^j or (d+1)ⁿ features: tiny d only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_int

FeatureMap = Callable[[Tensor], Tensor]


def _outer_power(x: Tensor, power: int) -> Tensor:
    """⊗^power x flattened in a fixed order (the same for q and k): (..., d) -> (..., d^power)."""
    out = torch.ones(*x.shape[:-1], 1, dtype=x.dtype, device=x.device)
    for _ in range(power):
        out = (out.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)
    return out


def _check_order(order: int, allow_odd: bool, name: str) -> None:
    """The order of :func:`taylor_features` / :func:`exp_limit_features` (``name`` as the caller calls it): an
    integer >= 1, even unless ``allow_odd``. Also :class:`kexue.nn.attention.Attention`'s check of its order."""
    check_int(name, order, 1)
    if order % 2 == 1 and not allow_odd:
        raise ValueError(f"expected an even {name} (an odd one makes the kernel negative when q·k < 0, so the "
                         f"normaliser can vanish; allow_odd=True allows it), got {name}={order}")


def taylor_features(x: Tensor, order: int, allow_odd: bool = False) -> Tensor:
    """φ(x) = [1, x, ⊗²x/√2!, …, ⊗^order x/√order!], so φ(q)·φ(k) = Σ_{j≤order} (q·k)^j/j!. Size Σ_j d^j."""
    _check_order(order, allow_odd, "order")
    parts = [_outer_power(x, j) / math.sqrt(math.factorial(j)) for j in range(order + 1)]
    return torch.cat(parts, dim=-1)


def exp_limit_features(x: Tensor, n: int, allow_odd: bool = False) -> Tensor:
    """φ(x) = ⊗ⁿ[1; x/√n], so φ(q)·φ(k) = (1 + q·k/n)ⁿ. Size (d+1)ⁿ."""
    _check_order(n, allow_odd, "n")
    y = torch.cat([torch.ones_like(x[..., :1]), x / math.sqrt(n)], dim=-1)
    return _outer_power(y, n)


def elu_features(x: Tensor) -> Tensor:
    """φ(x) = elu(x) + 1 (positive, so the normaliser never vanishes)."""
    return F.elu(x) + 1.0


def performer_omega(num_features: int, dim: int, generator: torch.Generator | None = None,
                    orthogonal: bool = True, dtype: torch.dtype = torch.float32) -> Tensor:
    """Random projections ω (num_features, dim) with rows ~ N(0, I); ``orthogonal=True`` orthogonalises blocks of
    ``dim`` rows and rescales them to chi-distributed norms (Performer's variance reduction; still unbiased)."""
    check_int("num_features", num_features, 1)
    check_int("dim", dim, 1)
    if not orthogonal:
        return torch.randn(num_features, dim, generator=generator, dtype=torch.float64).to(dtype)
    nblocks = -(-num_features // dim)
    q, r = torch.linalg.qr(torch.randn(nblocks, dim, dim, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # sign fix: Haar-distributed Q
    rows = q.transpose(-1, -2).reshape(nblocks * dim, dim)[:num_features]
    norms = torch.randn(num_features, dim, generator=generator, dtype=torch.float64).norm(dim=-1, keepdim=True)
    return (rows * norms).to(dtype)


def performer_features(x: Tensor, omega: Tensor, stabilizer: Tensor | None = None) -> Tensor:
    """φ(x) = m^{−1/2} exp(ω·x − ‖x‖²/2 − c), m = len(ω). ``c`` (``stabilizer``, broadcastable) is a log-shift that
    cancels in the attention ratio when it is constant across the keys (or per query): see
    :func:`performer_attention`."""
    proj = x @ omega.to(x.dtype).T - 0.5 * (x * x).sum(-1, keepdim=True)
    if stabilizer is not None:
        proj = proj - stabilizer
    return torch.exp(proj) / math.sqrt(omega.shape[0])


def _key_mask(mask: Tensor | None, k: Tensor) -> Tensor | None:
    """(batch, keys) bool/0-1 -> (batch, 1, keys, 1) float multiplier; None if no mask."""
    if mask is None:
        return None
    if mask.dim() != 2 or mask.shape[0] != k.shape[0] or mask.shape[1] != k.shape[-2]:
        raise ValueError(f"expected a key mask of shape (batch, keys) = {(k.shape[0], k.shape[-2])}, "
                         f"got {tuple(mask.shape)}")
    return mask.to(k.dtype)[:, None, :, None]


def linear_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap | None = None, *,
                     mask: Tensor | None = None, causal: bool = False, eps: float = 1e-6, scale: bool = True,
                     chunk_size: int = 128) -> Tensor:
    """Linear attention in O(n): φ(Q)(φ(K)ᵀV) normalised by φ(Q)(φ(K)ᵀ1).

    q, k: (batch, heads, n, d); v: (batch, heads, n, d_v). ``mask``: (batch, n) key mask (1/True = real token;
    padded keys contribute nothing). ``causal``: query i sees keys j ≤ i (running sums, computed chunk by chunk
    so memory stays O(n·F·d_v / n_chunks)). ``scale``: fold 1/√d into q and k (d^{−1/4} each) before the map.
    ``feature_map`` defaults to elu + 1.
    """
    phi = feature_map or elu_features
    if scale:
        s = q.shape[-1] ** -0.25
        q, k = q * s, k * s
    fq, fk = phi(q), phi(k)
    km = _key_mask(mask, k)
    if km is not None:
        fk = fk * km
    if not causal:
        kv = torch.einsum("bhnf,bhnd->bhfd", fk, v)
        z = fk.sum(dim=-2)
        num = torch.einsum("bhnf,bhfd->bhnd", fq, kv)
        den = torch.einsum("bhnf,bhf->bhn", fq, z)
        return num / (den.unsqueeze(-1) + eps)
    n = q.shape[-2]
    state = torch.zeros(*fk.shape[:2], fk.shape[-1], v.shape[-1], dtype=v.dtype, device=v.device)
    zstate = torch.zeros(*fk.shape[:2], fk.shape[-1], dtype=v.dtype, device=v.device)
    outs = []
    for start in range(0, n, chunk_size):
        sl = slice(start, min(start + chunk_size, n))
        cq, ck, cv = fq[..., sl, :], fk[..., sl, :], v[..., sl, :]
        tri = torch.ones(cq.shape[-2], ck.shape[-2], dtype=torch.bool, device=v.device).tril()
        a = (cq @ ck.transpose(-1, -2)) * tri  # within the chunk: j ≤ i
        num = a @ cv + torch.einsum("bhnf,bhfd->bhnd", cq, state)
        den = a.sum(-1) + torch.einsum("bhnf,bhf->bhn", cq, zstate)
        outs.append(num / (den.unsqueeze(-1) + eps))
        state = state + torch.einsum("bhnf,bhnd->bhfd", ck, cv)
        zstate = zstate + ck.sum(dim=-2)
    return torch.cat(outs, dim=-2)


def performer_attention(q: Tensor, k: Tensor, v: Tensor, omega: Tensor, *, mask: Tensor | None = None,
                        causal: bool = False, eps: float = 1e-6, scale: bool = True) -> Tensor:
    """Performer (FAVOR+ positive features) attention with log-shift stabilisation: queries are shifted by their own
    row maximum (cancels per query), keys by the maximum over the sequence (cancels across keys; for causal
    attention this constant is shared by all prefixes, so it still cancels)."""
    if scale:
        s = q.shape[-1] ** -0.25
        q, k = q * s, k * s

    def proj(x: Tensor) -> Tensor:
        return x @ omega.to(x.dtype).T - 0.5 * (x * x).sum(-1, keepdim=True)

    pq, pk = proj(q), proj(k)
    if mask is not None:
        pk = pk.masked_fill(~mask.bool()[:, None, :, None], float("-inf"))
    cq = pq.amax(dim=-1, keepdim=True)
    ck = pk.amax(dim=(-1, -2), keepdim=True)
    fq = torch.exp(pq - cq)
    fk = torch.exp(pk - ck)  # masked keys: exp(-inf) = 0
    return linear_attention(fq, fk, v, feature_map=lambda t: t, causal=causal, eps=eps, scale=False)


# -- O(n²) references --------------------------------------------------------------------------------------------


def kernel_attention(q: Tensor, k: Tensor, v: Tensor, feature_map: FeatureMap | None = None, *,
                     mask: Tensor | None = None, causal: bool = False, eps: float = 1e-6, scale: bool = True) -> Tensor:
    """The same attention built as an explicit n×n matrix A_ij = φ(q_i)·φ(k_j), normalised by rows."""
    phi = feature_map or elu_features
    if scale:
        s = q.shape[-1] ** -0.25
        q, k = q * s, k * s
    a = phi(q) @ phi(k).transpose(-1, -2)
    if mask is not None:
        a = a * mask.to(a.dtype)[:, None, None, :]
    if causal:
        a = a * torch.ones(a.shape[-2:], dtype=torch.bool, device=a.device).tril()
    return (a @ v) / (a.sum(-1, keepdim=True) + eps)


def softmax_attention(q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, causal: bool = False,
                      scale: bool = True) -> Tensor:
    """Exact softmax attention softmax(QKᵀ/√d)V (explicit), the target the truncations approximate."""
    logits = q @ k.transpose(-1, -2)
    if scale:
        logits = logits / math.sqrt(q.shape[-1])
    if mask is not None:
        logits = logits.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
    if causal:
        logits = logits.masked_fill(~torch.ones(logits.shape[-2:], dtype=torch.bool, device=q.device).tril(),
                                    float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


__all__ = [
    "FeatureMap",
    "elu_features",
    "exp_limit_features",
    "kernel_attention",
    "linear_attention",
    "performer_attention",
    "performer_features",
    "performer_omega",
    "softmax_attention",
    "taylor_features",
]
