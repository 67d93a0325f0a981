"""CAN (kexue.fm/archives/8728) against a loop transcription of Su's per-sample algorithm in float64, the
paper's matrix form for batch mode, scipy's entropy for the uncertainty, and Sinkhorn's fixed point."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from kexue.classify.can import can, confident_mask, prior_from_labels, topk_uncertainty

can_mod = importlib.import_module("kexue.classify.can")  # the package re-exports the function under the same name


def _probs(n=80, c=6, seed=0, conc=0.6):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, conc), size=n)


def su_reference(y_pred, prior, k=3, threshold=0.9, alpha=1.0, iters=1):
    """Su's script, transcribed: top-k uncertainty, split, then each uncertain row alone with the confident rows."""
    y_pred = np.asarray(y_pred, dtype=np.float64)
    topk = np.sort(y_pred, axis=1)[:, -k:]
    topk = topk / topk.sum(axis=1, keepdims=True)
    u = -(topk * np.log(topk)).sum(1) / np.log(k)
    confident = y_pred[u < threshold]
    out = y_pred.copy()
    for i in np.where(u >= threshold)[0]:
        Y = np.concatenate([confident, y_pred[i][None]], axis=0)
        for _ in range(iters):
            Y = Y**alpha
            Y = Y / Y.mean(axis=0, keepdims=True)
            Y = Y * prior[None]
            Y = Y / Y.sum(axis=1, keepdims=True)
        out[i] = Y[-1]
    return out


def paper_matrix_form(y_pred, prior, mask_conf, alpha=1.0, iters=1):
    """Batch mode with explicit diagonal matrices: S = L^α Λ_S⁻¹ diag(prior), L = Λ_L⁻¹ S."""
    L = np.concatenate([y_pred[mask_conf], y_pred[~mask_conf]])
    for _ in range(iters):
        La = L**alpha
        S = La @ np.linalg.inv(np.diag(La.sum(axis=0))) @ np.diag(prior)
        L = np.linalg.inv(np.diag(S.sum(axis=1))) @ S
    out = y_pred.copy()
    out[~mask_conf] = L[mask_conf.sum():]
    return out


@pytest.mark.parametrize("alpha,iters", [(1.0, 1), (1.0, 3), (0.7, 1), (1.3, 2)])
def test_per_sample_matches_su_script(alpha, iters):
    p = _probs()
    prior = np.random.default_rng(1).dirichlet(np.full(6, 3.0))
    want = su_reference(p, prior, alpha=alpha, iters=iters)
    got = can(p, prior, alpha=alpha, iters=iters)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    changed = ~np.isclose(want, p).all(axis=1)
    assert changed.sum() > 5  # the test exercises corrections


def test_chunked_general_path(monkeypatch):
    monkeypatch.setattr(can_mod, "_CHUNK_ELEMENTS", 50)  # a few rows per chunk
    p = _probs(n=60, c=5, seed=2)
    prior = np.full(5, 0.2)
    np.testing.assert_allclose(can(p, prior, iters=2), su_reference(p, prior, iters=2), rtol=1e-10)


def test_batch_mode_matches_the_matrix_form():
    p = _probs(seed=3)
    prior = np.random.default_rng(4).dirichlet(np.full(6, 2.0))
    mask = confident_mask(p)
    for alpha, iters in [(1.0, 1), (0.8, 3)]:
        np.testing.assert_allclose(can(p, prior, mode="batch", alpha=alpha, iters=iters),
                                   paper_matrix_form(p, prior, mask, alpha, iters), rtol=1e-10)


def test_alternating_normalisation_reaches_the_prior():
    # every row uncertain (τ = 0), batch mode, many rounds: Sinkhorn's fixed point has rows summing to 1 and
    # column means equal to the prior
    p = _probs(n=50, c=4, seed=5, conc=2.0)
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    out = can(p, prior, tau=0.0, mode="batch", iters=500)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out.mean(axis=0), prior, atol=1e-8)


def test_uncertainty_against_scipy_entropy():
    stats = pytest.importorskip("scipy.stats")
    p = _probs(n=30, c=7, seed=6)
    top = -np.sort(-p, axis=1)[:, :3]
    np.testing.assert_allclose(topk_uncertainty(p), stats.entropy(top, axis=1) / np.log(3), rtol=1e-12)
    paper = -(top * np.log(top)).sum(1) / np.log(7)
    np.testing.assert_allclose(topk_uncertainty(p, kind="paper"), paper, rtol=1e-12)
    # Su's measure ranks [.5, .5, 0] above [.5, .25, .25]; plain entropy does the opposite
    pair = np.array([[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]])
    u = topk_uncertainty(pair, k=2)
    assert u[1] > u[0]
    assert stats.entropy(pair[0]) > stats.entropy(pair[1] + 1e-300)


def test_confident_rows_unchanged_and_types_preserved():
    p = _probs(seed=7)
    prior = np.full(6, 1 / 6)
    out = can(p, prior)
    conf = confident_mask(p)
    assert conf.any() and (~conf).any()
    np.testing.assert_array_equal(out[conf], p[conf])
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    t = torch.from_numpy(p).float()
    out_t = can(t, torch.from_numpy(prior))
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out, rtol=1e-5, atol=1e-7)
    out32 = can(p.astype(np.float32), prior)
    assert out32.dtype == np.float32
    assert isinstance(topk_uncertainty(t), torch.Tensor)


def test_zero_prior_class_is_zeroed_and_stays_finite_over_iterations():
    p = _probs(seed=8)
    prior = np.array([0.0, 0.2, 0.2, 0.2, 0.2, 0.2])
    unc = ~confident_mask(p)
    for mode in ("per_sample", "batch"):
        for iters in (1, 3):
            out = can(p, prior, iters=iters, mode=mode)
            assert np.isfinite(out).all(), (mode, iters)
            assert (out[unc, 0] == 0).all()
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-12)
    # the script's arithmetic agrees where it is defined (one round)
    np.testing.assert_allclose(can(p, prior), su_reference(p, prior), rtol=1e-10)


def test_prior_from_labels():
    y = np.array([0, 2, 2, 1, 2, 0])
    np.testing.assert_allclose(prior_from_labels(y, 4), np.bincount(y, minlength=4) / 6)
    np.testing.assert_allclose(prior_from_labels(torch.tensor(y), 3), [2 / 6, 1 / 6, 3 / 6])
    with pytest.raises(ValueError, match=r"expected y values in \[0, 2\), got 0..2"):
        prior_from_labels(y, 2)
    with pytest.raises(TypeError, match="expected y to hold integer class indices, got dtype float64"):
        prior_from_labels(y.astype(float), 3)
    with pytest.raises(ValueError, match=r"expected y to be a non-empty 1-D array of class indices, got shape \(0,\)"):
        prior_from_labels(y[:0], 3)
    with pytest.raises(ValueError, match="expected num_classes >= 1, got 0"):
        prior_from_labels(y, 0)


def test_bad_input_is_named():
    p = _probs(n=10, c=4)
    prior = np.full(4, 0.25)
    bad = p.copy()
    bad[3] *= 2
    with pytest.raises(ValueError, match="expected probs rows summing to 1 \\(within 0.001\\), got row 3 summing to 2"):
        can(bad, prior)
    with pytest.raises(ValueError, match=r"expected k <= 2 \(the number of classes\), got 3"):
        can(np.array([[0.3, 0.7]]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="expected k >= 2, got 1"):
        topk_uncertainty(p, k=1)
    with pytest.raises(ValueError, match="expected kind to be one of \\['su', 'paper'\\], got 'entropy'"):
        topk_uncertainty(p, kind="entropy")
    with pytest.raises(ValueError, match=r"expected prior of shape \(4,\) \(one value per class\), got \(3,\)"):
        can(p, np.full(3, 1 / 3))
    with pytest.raises(ValueError, match="expected prior to be finite, non-negative and not all zero, got "
                                         "\\[0.0, 0.0, 0.0, 0.0\\]"):
        can(p, np.zeros(4))
    with pytest.raises(ValueError, match="expected tau <= 1.0, got 1.5"):
        can(p, prior, tau=1.5)
    with pytest.raises(ValueError, match="expected tau >= 0.0, got -0.1"):
        confident_mask(p, tau=-0.1)
    with pytest.raises(ValueError, match="expected iters >= 1, got 0"):
        can(p, prior, iters=0)
    with pytest.raises(TypeError, match="expected iters to be an integer, got 2.0"):
        can(p, prior, iters=2.0)
    with pytest.raises(ValueError, match="expected alpha > 0.0, got 0"):
        can(p, prior, alpha=0)
    with pytest.raises(ValueError, match="expected mode to be one of \\['per_sample', 'batch'\\], got 'joint'"):
        can(p, prior, mode="joint")
    with pytest.raises(ValueError, match="expected probs to be finite and non-negative, got -"):
        can(-p, prior)
    with pytest.raises(ValueError, match=r"expected probs to be a 2-D \(samples, classes\) array, got shape \(4,\)"):
        can(p[0], prior)
    with pytest.raises(ValueError, match="expected probs with at least 2 classes, got 1"):
        can(np.ones((3, 1)), np.ones(1))
