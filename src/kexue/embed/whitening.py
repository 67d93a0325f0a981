"""BERT-whitening: one affine map that makes sentence vectors isotropic, optionally keeping the top-k directions.

Post: "你可能不需要BERT-flow：一个线性变换媲美BERT-flow" (You may not need BERT-flow: one linear transform matches it),
2021-01-11, https://kexue.fm/archives/8069.

Row vectors x_i, μ = mean(x_i), Σ = (1/N) Σ_i (x_i − μ)ᵀ(x_i − μ) (the post's 1/N; the reference code's np.cov uses
1/(N−1), which the cosine does not see). With the eigendecomposition Σ = UΛUᵀ, eigenvalues in **descending**
order,

    W = U Λ^{−1/2},     x̃ = (x − μ) W,     whitening-k: W_k = W[:, :k] (the k largest-variance directions),

and x̃ is L2-normalised **after** the transform before cosines are taken. A ridge Λ + ε keeps a singular Σ
(N < d, duplicated vectors) invertible. μ and Σ are accumulated in float64 in one streaming pass with Chan's
pairwise update, so any corpus size fits; the post's per-vector recursion
μ_{n+1} = n/(n+1)·μ_n + x_{n+1}/(n+1) is its one-row special case.

Whitening is not expected to help an encoder trained contrastively for cosine (all-MiniLM-L6-v2): the post's
gains are for raw MLM-pretrained BERT. Note also that fitting on the evaluated task's own sentences ("target") is
transductive; :attr:`Whitening.fitted_on` records what the statistics came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import check_float, check_int
from ..env import interactive


def _as_2d_float64(x: Any, what: str = "x") -> Tensor:
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"expected {what} to be a 2-D (samples, dim) array of numbers, got "
                        f"{type(x).__name__}") from None
    if t.dim() != 2:
        raise ValueError(f"expected {what} to be a 2-D (samples, dim) array, got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise TypeError(f"expected {what} to hold numbers, got dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"expected {what} to be finite, got {int((~torch.isfinite(t)).sum())} NaN or infinite "
                         f"values")
    return t


def whitening_matrix(
    cov: Tensor, n_components: int | None = None, eps: float = 1e-8
) -> tuple[Tensor, Tensor]:
    """(eigenvalues in descending order, W = U Λ^{−1/2}[:, :k]) for a covariance matrix, in float64.

    ``torch.linalg.eigh`` returns ascending eigenvalues; they are flipped here so that truncation keeps the
    *largest*. Each eigenvector's sign is fixed so that its largest-magnitude entry is positive (as scikit-learn's
    ``svd_flip`` does), which makes the map repeatable. Eigenvalues below 0 (rounding) are clipped to 0 before the
    ridge ``eps`` is added: W = U (Λ + ε)^{−1/2}.
    """
    cov = torch.as_tensor(cov).to(torch.float64)
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"expected cov to be a square matrix, got shape {tuple(cov.shape)}")
    if not bool(torch.isfinite(cov).all()):
        raise ValueError(f"expected cov to be finite, got {int((~torch.isfinite(cov)).sum())} NaN or infinite "
                         f"entries")
    d = cov.shape[0]
    k = d if n_components is None else check_int("n_components", n_components, 1, d)
    eps = check_float("eps", eps, low=0.0)
    evals, evecs = torch.linalg.eigh((cov + cov.T) / 2)
    evals, evecs = evals.flip(0), evecs.flip(1)  # descending
    rows = evecs.abs().argmax(dim=0)
    signs = torch.sign(evecs[rows, torch.arange(d)])
    evecs = evecs * torch.where(signs == 0, torch.ones_like(signs), signs)
    lam = evals.clamp_min(0.0) + eps
    if bool((lam[:k] <= 0).any()):
        raise ValueError(f"expected positive eigenvalues among the {k} kept directions, got "
                         f"{int((lam[:k] <= 0).sum())} zero eigenvalues with eps = 0: pass eps > 0 (a ridge) or a "
                         f"smaller n_components")
    w = evecs[:, :k] / lam[:k].sqrt()
    return evals, w


class Whitening(nn.Module):
    """BERT-whitening as a module applied after pooling: ``x ↦ normalize((x − μ) W_k)`` (see the module docstring).

    Args:
        n_components: k, the number of directions kept (None: all). The post uses 256 for base (d = 768) and 384
            for large (d = 1024).
        eps: the ridge added to the eigenvalues, W = U (Λ + ε)^{−1/2}.
        normalize: whether ``forward`` L2-normalises its output (``transform`` takes it per call).

    ``fit(data)`` streams over a tensor/array (in chunks of ``batch_size``) or an iterable of (n, d) batches with a
    progress bar; ``partial_fit(batch)`` adds one batch (the map is re-solved lazily, on the next use). The count,
    mean and centred second moment are float64 buffers, so ``state_dict`` round-trips the statistics and the map,
    and fitting can resume after loading. ``to_linear()`` gives an ``nn.Linear`` for appending to another model
    (e.g. a sentence-transformers pipeline, followed by its ``Normalize`` module).
    """

    count: Tensor
    mean: Tensor
    m2: Tensor
    eigenvalues: Tensor
    weight: Tensor

    def __init__(self, n_components: int | None = None, eps: float = 1e-8, normalize: bool = True) -> None:
        super().__init__()
        self.n_components = None if n_components is None else check_int("n_components", n_components, minimum=1)
        self.eps = check_float("eps", eps, low=0.0)
        self.normalize = bool(normalize)
        self.fitted_on: str | None = None
        f64 = torch.float64
        self.register_buffer("count", torch.zeros((), dtype=f64))
        self.register_buffer("mean", torch.zeros(0, dtype=f64))
        self.register_buffer("m2", torch.zeros(0, 0, dtype=f64))  # Σ_i (x_i − μ)ᵀ(x_i − μ)
        self.register_buffer("eigenvalues", torch.zeros(0, dtype=f64))  # of Σ = m2 / count, descending
        self.register_buffer("weight", torch.zeros(0, 0, dtype=f64))  # W_k = U Λ^{−1/2}[:, :k], (d, k)
        self._stale = False

    # ------------------------------------------------------------------ fitting

    @property
    def dim(self) -> int | None:
        return int(self.mean.shape[0]) if self.mean.numel() else None

    @property
    def fitted(self) -> bool:
        return bool(self.count > 0)

    @property
    def covariance(self) -> Tensor:
        """Σ = (1/N) Σ_i (x_i − μ)ᵀ(x_i − μ), float64."""
        self._require_fitted()
        return self.m2 / self.count

    def reset(self) -> Whitening:
        """Forget all statistics."""
        for name in ("mean", "eigenvalues"):
            setattr(self, name, torch.zeros(0, dtype=torch.float64, device=self.count.device))
        for name in ("m2", "weight"):
            setattr(self, name, torch.zeros(0, 0, dtype=torch.float64, device=self.count.device))
        self.count = torch.zeros((), dtype=torch.float64, device=self.count.device)
        self.fitted_on = None
        self._stale = False
        return self

    def partial_fit(self, x: Any) -> Whitening:
        """Add a batch of vectors (n, d) to the running float64 statistics (Chan et al.'s pairwise update):

            μ = μ_a + δ·n_b/n,   M₂ = M₂,a + M₂,b + δᵀδ·n_a·n_b/n,   δ = μ_b − μ_a,  n = n_a + n_b.

        The map is solved on its next use, which needs at least 2 vectors in all.
        """
        return self._add(x, "x")

    @torch.no_grad()
    def _add(self, x: Any, what: str) -> Whitening:
        """:meth:`partial_fit`, errors naming the argument ``what``."""
        xb = _as_2d_float64(x, what)
        if xb.shape[0] == 0:
            return self
        d = xb.shape[1]
        dev = self.count.device
        xb = xb.to(dev)
        if not self.fitted:
            self.mean = torch.zeros(d, dtype=torch.float64, device=dev)
            self.m2 = torch.zeros(d, d, dtype=torch.float64, device=dev)
        elif d != self.dim:
            raise ValueError(f"expected {what} of dimension {self.dim} (as fitted so far), got {d}")
        n_a, n_b = float(self.count), float(xb.shape[0])
        mean_b = xb.mean(dim=0)
        centred = xb - mean_b
        m2_b = centred.T @ centred
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + torch.outer(delta, delta) * (n_a * n_b / n)
        self.count = torch.tensor(n, dtype=torch.float64, device=dev)
        self._stale = True
        return self

    def fit(
        self,
        data: Any,
        batch_size: int = 4096,
        progress: bool | None = None,
        fitted_on: str | None = None,
    ) -> Whitening:
        """Fit μ and W from scratch over ``data``: a (N, d) tensor or array, or an iterable of (n, d) batches
        (e.g. a generator that encodes a corpus chunk by chunk). ``fitted_on`` names the data, for the record.

        ``progress`` shows a tqdm bar (default: for more than one chunk, in a terminal or notebook)."""
        check_int("batch_size", batch_size, minimum=1)
        if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
            raise TypeError(f"expected data to be a (N, d) tensor or array, or an iterable of (n, d) batches, got "
                            f"{type(data).__name__}")
        self.reset()
        if isinstance(data, (Tensor, np.ndarray)):
            arr = data
            if arr.ndim != 2:
                raise ValueError(f"expected data to be a 2-D (samples, dim) array, got shape {tuple(arr.shape)}")
            batches: Iterable[Any] = (arr[i : i + batch_size] for i in range(0, arr.shape[0], batch_size))
            total: int | None = -(-arr.shape[0] // batch_size)
        else:
            batches, total = data, None
        if progress is None:
            progress = (total is None or total > 1) and interactive()
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, total=total, desc="whitening fit", unit="batch", leave=False)
        for batch in batches:
            self._add(batch, "data")
        self.fitted_on = fitted_on
        self._solve()
        return self

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("expected a fitted Whitening, got one with no statistics: call fit(...) or "
                               "partial_fit(...) first")

    def _solve(self) -> None:
        if self.count < 2:  # one vector has no spread: Σ = 0 and W = ε^(−1/2)·U, a map of noise
            raise ValueError(f"expected at least 2 vectors to fit the whitening map (a covariance needs two), got "
                             f"{int(self.count)}")
        evals, w = whitening_matrix(self.m2 / self.count, self.n_components, self.eps)
        self.eigenvalues, self.weight = evals, w
        self._stale = False

    def _refresh(self) -> None:
        self._require_fitted()
        if self._stale or self.weight.numel() == 0:
            self._solve()

    # ------------------------------------------------------------------ applying

    def transform(self, x: Tensor, normalize: bool = True) -> Tensor:
        """(x − μ) W_k for x of shape (..., d), L2-normalised when ``normalize``. Computed in x's dtype (float32
        for float32 input; float64 stays float64)."""
        self._refresh()
        try:
            x = torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"expected x to be a (..., d) tensor of numbers, got {type(x).__name__}") from None
        if x.dim() == 0 or x.shape[-1] != self.dim:
            raise ValueError(f"expected x of dimension {self.dim} (as fitted), got shape {tuple(x.shape)}")
        dtype = x.dtype if x.is_floating_point() else torch.float32
        mu = self.mean.to(device=x.device, dtype=dtype)
        w = self.weight.to(device=x.device, dtype=dtype)
        out = (x.to(dtype) - mu) @ w
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out

    def forward(self, x: Tensor) -> Tensor:
        return self.transform(x, normalize=self.normalize)

    def to_linear(self) -> nn.Linear:
        """The map as ``nn.Linear(d, k)`` (float32): weight = W_kᵀ, bias = −μW_k, so linear(x) = (x − μ)W_k.
        Normalisation is not included."""
        self._refresh()
        d, k = self.weight.shape
        lin = nn.Linear(d, k)
        with torch.no_grad():
            lin.weight.copy_(self.weight.T.float())
            lin.bias.copy_((-(self.mean @ self.weight)).float())
        return lin

    # ------------------------------------------------------------------ state

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        if self.count >= 2:  # the map is solved lazily: solve it before it is saved (once it can be)
            self._refresh()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def get_extra_state(self) -> dict[str, Any]:
        return {"n_components": self.n_components, "eps": self.eps, "normalize": self.normalize,
                "fitted_on": self.fitted_on}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.n_components = state["n_components"]
        self.eps = float(state["eps"])
        self.normalize = bool(state["normalize"])
        self.fitted_on = state["fitted_on"]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # The buffers' shapes depend on the data; take them from the checkpoint before the usual copy.
        for name in ("mean", "m2", "eigenvalues", "weight"):
            key = prefix + name
            if key in state_dict and isinstance(state_dict[key], Tensor):
                self._buffers[name] = torch.empty_like(state_dict[key], dtype=torch.float64,
                                                       device=self.count.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self._stale = False

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_components={self.n_components}, eps={self.eps}, normalize={self.normalize}, "
                f"count={int(self.count)}, fitted_on={self.fitted_on!r}")


__all__ = ["Whitening", "whitening_matrix"]
