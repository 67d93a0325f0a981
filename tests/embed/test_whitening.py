"""BERT-whitening (kexue.fm/archives/8069): against sklearn's PCA(whiten=True), whitened covariance = I,
streaming = batch fitting, descending eigen order, state_dict, to_linear, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kexue.embed.whitening import Whitening, whitening_matrix


def _data(n=3000, d=24, seed=0, offset=5.0):
    """Anisotropic Gaussian vectors with a large mean and a random rotation (eigenvalues 0.05 … 50)."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(7.0, 0.22, d)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * scales) @ q.T + offset * rng.standard_normal(d)
    return x


def _cos_matrix(a: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return a @ a.T


@pytest.mark.parametrize("k", [None, 12, 3])
def test_cosines_match_sklearn_pca_whiten(k):
    decomposition = pytest.importorskip("sklearn.decomposition")
    x = _data()
    ours = Whitening(n_components=k).fit(x, progress=False).transform(torch.from_numpy(x), normalize=False)
    pca = decomposition.PCA(n_components=k, whiten=True, svd_solver="full").fit(x)
    theirs = pca.transform(x)
    # the same map up to per-component sign and the global N/(N−1) factor: cosines agree
    sub = slice(0, 400)
    np.testing.assert_allclose(_cos_matrix(ours.numpy()[sub]), _cos_matrix(theirs[sub]), atol=1e-6, rtol=0)
    # and so do the per-component variances, up to that factor
    n = x.shape[0]
    np.testing.assert_allclose(ours.numpy().var(axis=0) * (n - 1) / n, theirs.var(axis=0), rtol=1e-6)


def test_whitened_covariance_is_identity():
    x = _data(n=5000, d=32, seed=1)
    w = Whitening().fit(x, progress=False)
    z = w.transform(torch.from_numpy(x), normalize=False).numpy()
    cov = np.cov(z, rowvar=False, bias=True)  # the post's 1/N
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(cov, np.eye(32), atol=1e-6)
    exact = Whitening(eps=0.0).fit(x, progress=False).transform(torch.from_numpy(x), normalize=False).numpy()
    np.testing.assert_allclose(np.cov(exact, rowvar=False, bias=True), np.eye(32), atol=1e-10)


def test_streaming_equals_batch_fit():
    x = _data(n=4000, d=16, seed=2, offset=1e3)  # a large mean: the update must not cancel
    whole = Whitening(eps=0.0).fit(x, batch_size=len(x), progress=False)
    parts = Whitening(eps=0.0)
    for chunk in np.array_split(x, 10):
        parts.partial_fit(chunk)
    np.testing.assert_allclose(parts.mean.numpy(), x.mean(axis=0), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(parts.covariance.numpy(), np.cov(x, rowvar=False, bias=True), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(parts.covariance.numpy(), whole.covariance.numpy(), rtol=1e-10, atol=1e-10)
    xt = torch.from_numpy(x[:50])
    torch.testing.assert_close(parts.transform(xt), whole.transform(xt), rtol=1e-8, atol=1e-10)
    # an iterable of batches (e.g. an encoder generator), with a progress bar
    gen = Whitening(eps=0.0).fit((torch.from_numpy(c) for c in np.array_split(x, 7)), progress=True)
    torch.testing.assert_close(gen.transform(xt), whole.transform(xt), rtol=1e-8, atol=1e-10)


def test_eigen_order_is_descending_and_truncation_keeps_the_largest():
    x = _data(n=3000, d=20, seed=3)
    w = Whitening(n_components=5).fit(x, progress=False)
    ref = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    np.testing.assert_allclose(w.eigenvalues.numpy(), ref, rtol=1e-9)
    assert w.weight.shape == (20, 5)
    # the kept directions carry the 5 largest variances: before scaling, (x − μ)U_k has variances λ_1..λ_5
    u = w.weight.numpy() * np.sqrt(w.eigenvalues.numpy()[:5] + w.eps)
    var = ((x - x.mean(0)) @ u).var(axis=0)
    np.testing.assert_allclose(var, ref[:5], rtol=1e-8)


def test_whitening_matrix_sign_and_ridge():
    cov = torch.diag(torch.tensor([1.0, 4.0, 0.0], dtype=torch.float64))
    evals, w = whitening_matrix(cov, eps=1e-2)
    torch.testing.assert_close(evals, torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    want = torch.tensor([1 / 4.01**0.5, 1 / 1.01**0.5, 10.0], dtype=torch.float64)  # (λ + ε)^{-1/2}
    torch.testing.assert_close(w.abs().max(dim=0).values, want)
    assert (w.max(dim=0).values > 0).all()  # largest-magnitude entry positive
    with pytest.raises(ValueError, match=r"^expected positive eigenvalues among the 3 kept directions, got 1 zero"):
        whitening_matrix(cov, eps=0.0)
    with pytest.raises(ValueError, match=r"^expected n_components <= 3, got 4$"):
        whitening_matrix(cov, n_components=4)
    with pytest.raises(ValueError, match=r"^expected eps >= 0.0, got -1.0$"):
        whitening_matrix(cov, eps=-1.0)
    with pytest.raises(ValueError, match=r"^expected cov to be a square matrix, got shape \(3, 2\)$"):
        whitening_matrix(cov[:, :2])


def test_state_dict_round_trip_and_resume():
    x = _data(n=2000, d=12, seed=4)
    w = Whitening(n_components=6, normalize=False).fit(x[:1000], progress=False, fitted_on="toy")
    sd = w.state_dict()
    fresh = Whitening()
    fresh.load_state_dict(sd)
    assert fresh.n_components == 6 and fresh.normalize is False and fresh.fitted_on == "toy"
    xt = torch.from_numpy(x[1000:1100])
    torch.testing.assert_close(fresh(xt), w(xt))
    # resuming the stream after loading equals fitting everything at once
    fresh.partial_fit(x[1000:])
    full = Whitening(n_components=6).fit(x, progress=False)
    torch.testing.assert_close(fresh.transform(xt), full.transform(xt), rtol=1e-9, atol=1e-10)
    # inside a parent module
    parent = torch.nn.Sequential(torch.nn.Identity(), w)
    other = torch.nn.Sequential(torch.nn.Identity(), Whitening())
    other.load_state_dict(parent.state_dict())
    torch.testing.assert_close(other(xt), parent(xt))


def test_to_linear_and_float32_path():
    x = _data(n=2000, d=16, seed=5)
    w = Whitening(n_components=8).fit(x, progress=False)
    lin = w.to_linear()
    x32 = torch.from_numpy(x[:100]).float()
    out = w(x32)
    assert out.dtype == torch.float32 and out.shape == (100, 8)
    torch.testing.assert_close(F.normalize(lin(x32), dim=-1), out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(100))


def test_bad_input_is_named():
    w = Whitening()
    with pytest.raises(RuntimeError, match="^expected a fitted Whitening, got one with no statistics"):
        w.transform(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"^expected x to be a 2-D \(samples, dim\) array, got shape \(3,\)$"):
        w.partial_fit(torch.zeros(3))
    with pytest.raises(ValueError, match=r"^expected data to be a 2-D \(samples, dim\) array, got shape \(3,\)$"):
        w.fit(np.zeros(3), progress=False)
    with pytest.raises(TypeError, match="^expected x to hold numbers, got dtype torch.bool$"):
        w.partial_fit(torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="^expected x to be finite, got 1 NaN or infinite values$"):
        w.partial_fit(torch.tensor([[1.0, float("nan")]]))
    w.partial_fit(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"^expected x of dimension 3 \(as fitted so far\), got 4$"):
        w.partial_fit(torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"^expected x of dimension 3 \(as fitted\), got shape \(2, 4\)$"):
        w.transform(torch.randn(2, 4))
    with pytest.raises(ValueError, match=r"^expected n_components >= 1, got 0$"):
        Whitening(n_components=0)
    with pytest.raises(ValueError, match=r"^expected eps >= 0.0, got -1$"):
        Whitening(eps=-1)
    with pytest.raises(ValueError, match=r"^expected n_components <= 3, got 5$"):
        Whitening(n_components=5).fit(torch.randn(10, 3), progress=False)
    with pytest.raises(ValueError, match=r"^expected batch_size >= 1, got 0$"):
        Whitening().fit(torch.randn(10, 3), batch_size=0, progress=False)
    with pytest.raises(ValueError, match=r"^expected at least 2 vectors to fit the whitening map \(a covariance needs "
                                         r"two\), got 0$"):
        Whitening().fit(iter([]), progress=False)
