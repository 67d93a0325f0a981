"""The closed-form ("analytic") logistic / softmax regression of a Gaussian linear model.

Post: "概率视角下的线性模型：逻辑回归有解析解吗？" (Linear models from a probabilistic viewpoint: does logistic
regression have an analytic solution?), 2021-07-22, https://kexue.fm/archives/8578.

Row vectors. Assume class-conditional Gaussians with a shared covariance, p(x|y=i) = N(μ_i, Σ), and priors p_i.
The log-odds are then exactly linear, so (up to a common shift) the softmax classifier is

    w_i = μ_i Σ⁻¹,     b_i = ln p_i − ½ μ_i Σ⁻¹ μ_iᵀ,

which for two classes is the logistic regression w = (μ₁ − μ₀)Σ⁻¹, b = ½(μ₀Σ⁻¹μ₀ᵀ − μ₁Σ⁻¹μ₁ᵀ) + ln(p₁/p₀).
p_i are the class frequencies and μ_i the class means; the shared Σ follows from the total-moment identity
Σ = Σ̃ + μ̃ᵀμ̃ − Σ_i p_i μ_iᵀμ_i (the within-class covariance, 1/N). The post **whitens first**: with the total
covariance UΛUᵀ and x̃ = (x − μ̃)UΛ^{−1/2}, Σ = I − Σ_i p_i μ̃_iᵀμ̃_i in whitened coordinates, which is the same
solution and numerically far more stable; the whitening is composed into the exported weights.

Post and code disagree on the binary case: the released binary script uses Σ = I after whitening (w = μ₁ − μ₀),
the softmax script the within-class Σ. Following the derivation (specs/README), ``sigma="within"`` is the default
for every K; ``sigma="identity"`` reproduces the binary script.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, get_args

import numpy as np
import torch
from torch import Tensor, nn

from .._validate import check_bool, check_choice, check_float

Sigma = Literal["within", "identity"]
Priors = Literal["empirical", "uniform"]


def _as_float64(x: Any, what: str, nonempty: bool = False) -> Tensor:
    t = torch.as_tensor(np.asarray(x.detach().cpu() if isinstance(x, Tensor) else x))
    if t.dim() != 2:
        raise ValueError(f"expected {what} to be a 2-D (samples, features) array, got shape {tuple(t.shape)}")
    if nonempty and t.shape[0] == 0:
        raise ValueError(f"expected {what} with at least one row, got shape {tuple(t.shape)}")
    t = t.to(torch.float64)
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        raise ValueError(f"expected {what} to be finite, got {float(t[bad][0])!r}")
    return t


def _labels(y: Any, n: int) -> np.ndarray:
    """``y`` as a 1-D array of ``n`` labels (one per row of X)."""
    labels = np.asarray(y.detach().cpu() if isinstance(y, Tensor) else y)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"expected y to be 1-D with one label per row of X ({n}), got shape {labels.shape}")
    return labels


def _check_params(params: dict[str, Any]) -> None:
    """The settings of :class:`AnalyticLogisticRegression` (its constructor's arguments), checked in one place: by
    the constructor, :meth:`~AnalyticLogisticRegression.set_params` and ``fit``."""
    check_bool("whiten", params["whiten"])
    check_choice("sigma", params["sigma"], Sigma)
    check_float("shrinkage", params["shrinkage"], low=0.0)
    check_float("rcond", params["rcond"], low=0.0, high=1.0, high_open=True)
    priors = params["priors"]
    if isinstance(priors, str):
        check_choice("priors", priors, Priors)
        return
    try:
        p = np.asarray(priors, dtype=np.float64)
    except (TypeError, ValueError):
        p = None
    if p is None or p.ndim != 1 or not np.isfinite(p).all() or (p <= 0).any():
        shown = p.tolist() if p is not None else priors
        raise ValueError(f"expected priors to be one of {list(get_args(Priors))} or positive finite values, got "
                         f"{shown!r}")


class LinearSolution(NamedTuple):
    """What :func:`analytic_linear_regression` returns (unpacks as ``W, b = ...``)."""

    weight: np.ndarray  #: W, (d, m), or (d,) for a 1-D Y
    bias: np.ndarray  #: b, (m,), or () for a 1-D Y


def analytic_linear_regression(X: Any, Y: Any) -> LinearSolution:
    """Least squares from the jointly-Gaussian view (kexue.fm/archives/8578): W = Σ_xx⁻¹Σ_xy, b = μ_y − μ_x W.

    ``X``: (N, d); ``Y``: (N,) or (N, m). Returns ``LinearSolution(weight=W of shape (d, m) or (d,), bias=b of shape
    (m,) or ())``, float64. Σ_xx is solved by least squares, so a singular Σ_xx gives the minimum-norm W.
    """
    x = _as_float64(X, "X", nonempty=True)
    y_arr = np.asarray(Y.detach().cpu() if isinstance(Y, Tensor) else Y, dtype=np.float64)
    if y_arr.ndim not in (1, 2):
        raise ValueError(f"expected Y to be 1-D (N,) or 2-D (N, m), got shape {y_arr.shape}")
    if y_arr.shape[0] != x.shape[0]:
        raise ValueError(f"expected X and Y with one row per sample, got {x.shape[0]} and {y_arr.shape[0]} rows")
    if not np.isfinite(y_arr).all():
        raise ValueError(f"expected Y to be finite, got {float(y_arr[~np.isfinite(y_arr)][0])!r}")
    vec = y_arr.ndim == 1
    y = torch.as_tensor(y_arr.reshape(len(y_arr), -1))
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    sxx, sxy = xc.T @ xc / x.shape[0], xc.T @ yc / x.shape[0]
    w = torch.linalg.lstsq(sxx, sxy, driver="gelsd").solution
    b = my - mx @ w
    if vec:
        return LinearSolution(w[:, 0].numpy(), b[0].numpy())
    return LinearSolution(w.numpy(), b.numpy())


class AnalyticLogisticRegression:
    """Closed-form logistic / softmax regression (kexue.fm/archives/8578), scikit-learn estimator style.

    Args:
        whiten: whiten with the total covariance first (the post's stable route). Directions whose variance is
            at most ``rcond`` × the largest (constant pixels, N < d) are dropped before whitening.
        sigma: ``"within"`` (Σ = the within-class covariance; default) or ``"identity"`` (Σ = I in the whitened
            space, the released binary script).
        shrinkage: λ added to Σ's diagonal (Σ + λI), for small N and high d where Σ is near-singular. In whitened
            coordinates that is λ relative to unit total variance.
        priors: ``"empirical"`` (training frequencies, baked into b), ``"uniform"``, or an array of K positive
            priors (normalised).
            The covariance estimate always weights classes by their training frequencies.
        rcond: the relative eigenvalue cut-off of the whitening (only with ``whiten=True``).

    After ``fit``: ``classes_``, ``coef_`` (K, d), ``intercept_`` (K,), ``class_prior_`` (the priors in b),
    ``means_`` (K, d). ``coef_`` has K rows also for K = 2 (scikit-learn's LDA reports one row, the difference).
    Scores are x·coef_ᵀ + intercept_ (``nn.Linear``'s layout; the post's W is coef_ᵀ).
    """

    def __init__(
        self,
        whiten: bool = True,
        sigma: Sigma = "within",
        shrinkage: float = 0.0,
        priors: Priors | Any = "empirical",
        rcond: float = 1e-10,
    ) -> None:
        _check_params(dict(whiten=whiten, sigma=sigma, shrinkage=shrinkage, priors=priors, rcond=rcond))
        self.whiten = whiten
        self.sigma = sigma
        self.shrinkage = shrinkage
        self.priors = priors
        self.rcond = rcond

    # scikit-learn's estimator protocol (clone, GridSearchCV) without depending on scikit-learn
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments as set now (``deep`` is accepted for scikit-learn; nothing here nests)."""
        check_bool("deep", deep)
        return {"whiten": self.whiten, "sigma": self.sigma, "shrinkage": self.shrinkage, "priors": self.priors,
                "rcond": self.rcond}

    def set_params(self, **params: Any) -> AnalyticLogisticRegression:
        """Set constructor arguments; all are checked (names and values) before any is set."""
        current = self.get_params()
        for k in params:
            check_choice("parameter", k, sorted(current))
        merged = {**current, **params}
        _check_params(merged)
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"AnalyticLogisticRegression({args})"

    def fit(self, X: Any, y: Any) -> AnalyticLogisticRegression:
        """Priors, class means and the shared covariance from (X, y); then w_i = μ_iΣ⁻¹, b_i = ln p_i − ½μ_iΣ⁻¹μ_iᵀ."""
        _check_params(self.get_params())  # set as attributes, they may have changed since the constructor
        x = _as_float64(X, "X", nonempty=True)
        labels = _labels(y, x.shape[0])
        classes, idx = np.unique(labels, return_inverse=True)
        k = len(classes)
        if k < 2:
            raise ValueError(f"expected y with at least 2 classes, got {k} ({classes.tolist()})")
        n, d = x.shape
        yi = torch.as_tensor(idx)
        counts = torch.bincount(yi, minlength=k).to(torch.float64)
        freq = counts / n
        onehot = torch.nn.functional.one_hot(yi, k).to(torch.float64)
        means = (onehot.T @ x) / counts[:, None]  # (K, d)
        if isinstance(self.priors, str):  # one of Priors (_check_params)
            prior = freq if self.priors == "empirical" else torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:  # positive and finite (_check_params)
            prior = torch.as_tensor(np.asarray(self.priors, dtype=np.float64))
            if prior.shape != (k,):
                raise ValueError(f"expected priors to be one of {list(get_args(Priors))} or {k} positive values (one "
                                 f"per class), got {np.asarray(self.priors).tolist()}")
            prior = prior / prior.sum()

        mu = x.mean(0)
        if self.whiten:
            xc = x - mu
            total = xc.T @ xc / n
            evals, evecs = torch.linalg.eigh((total + total.T) / 2)
            evals, evecs = evals.flip(0), evecs.flip(1)  # descending (eigh is ascending)
            keep = evals > self.rcond * max(float(evals[0]), 0.0)
            if not bool(keep.any()):
                raise ValueError("expected X with some variance, got every feature constant")
            proj = evecs[:, keep] / evals[keep].sqrt()  # (d, r): x̃ = (x − μ̃) proj
            m = (means - mu) @ proj  # whitened class means (K, r)
            r = proj.shape[1]
            if self.sigma == "within":
                cov = torch.eye(r, dtype=torch.float64) - (m.T * freq) @ m  # I − Σ p_i μ_iᵀμ_i
            else:
                cov = torch.eye(r, dtype=torch.float64)
        else:
            proj = None
            m = means
            r = d
            if self.sigma == "within":
                resid = x - means[yi]
                cov = resid.T @ resid / n  # (1/N) within-class covariance
            else:
                cov = torch.eye(d, dtype=torch.float64)
        if self.shrinkage:
            cov = cov + self.shrinkage * torch.eye(r, dtype=torch.float64)
        # Σ⁻¹ μ_iᵀ by least squares (never an explicit inverse; a singular Σ gives the minimum-norm solution)
        w = torch.linalg.lstsq((cov + cov.T) / 2, m.T, driver="gelsd").solution  # (r, K)
        b = prior.log() - 0.5 * (m * w.T).sum(1)
        if proj is not None:
            w_full = proj @ w  # (d, K): compose the whitening into the weights
            b = b - mu @ w_full
        else:
            w_full = w
        self.classes_ = classes
        self.coef_ = w_full.T.numpy().copy()
        self.intercept_ = b.numpy().copy()
        self.class_prior_ = prior.numpy().copy()
        self.means_ = means.numpy().copy()
        self.n_features_in_ = d
        return self

    def _check_fitted(self, X: Any) -> Tensor:
        if not hasattr(self, "coef_"):
            raise RuntimeError("expected a fitted AnalyticLogisticRegression, got one not fitted: call fit(X, y) first")
        x = _as_float64(X, "X")
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected X with {self.n_features_in_} features (as in fit), got {x.shape[1]}")
        return x

    def decision_function(self, X: Any) -> np.ndarray:
        """The (N, K) logits x·coef_ᵀ + intercept_."""
        x = self._check_fitted(X)
        return (x @ torch.as_tensor(self.coef_).T + torch.as_tensor(self.intercept_)).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        return torch.softmax(torch.as_tensor(self.decision_function(X)), dim=1).numpy()

    def predict_log_proba(self, X: Any) -> np.ndarray:
        return torch.log_softmax(torch.as_tensor(self.decision_function(X)), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        scores = self.decision_function(X)
        return self.classes_[scores.argmax(axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy."""
        pred = self.predict(X)
        return float(np.mean(pred == _labels(y, len(pred))))

    def to_linear(self) -> nn.Linear:
        """The classifier as ``nn.Linear(d, K)`` (float32), whitening included: logits = linear(x)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("expected a fitted AnalyticLogisticRegression, got one not fitted: call fit(X, y) first")
        k, d = self.coef_.shape
        lin = nn.Linear(d, k)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(self.coef_))
            lin.bias.copy_(torch.as_tensor(self.intercept_))
        return lin


#: The spec's name for the same estimator.
GaussianLinearClassifier = AnalyticLogisticRegression

__all__ = ["AnalyticLogisticRegression", "GaussianLinearClassifier", "LinearSolution", "Priors", "Sigma",
           "analytic_linear_regression"]
