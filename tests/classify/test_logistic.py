"""The analytic logistic regression (kexue.fm/archives/8578) against scikit-learn's LDA (the same closed form,
computed another way), the MLE logistic regression on shared-covariance Gaussians, and LinearRegression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.classify.logistic import AnalyticLogisticRegression, GaussianLinearClassifier, analytic_linear_regression

datasets = pytest.importorskip("sklearn.datasets")
da = pytest.importorskip("sklearn.discriminant_analysis")


def _std(x):
    return (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)


@pytest.mark.parametrize("loader", ["load_wine", "load_iris"])
@pytest.mark.parametrize("whiten", [True, False])
def test_multiclass_equals_sklearn_lda(loader, whiten):
    x, y = getattr(datasets, loader)(return_X_y=True)
    x = _std(x)
    freq = np.bincount(y) / len(y)
    lda = da.LinearDiscriminantAnalysis(solver="lsqr", priors=freq).fit(x, y)
    ours = AnalyticLogisticRegression(whiten=whiten).fit(x, y)
    np.testing.assert_allclose(ours.coef_, lda.coef_, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ours.intercept_, lda.intercept_, rtol=1e-8, atol=1e-8)
    np.testing.assert_array_equal(ours.predict(x), lda.predict(x))
    np.testing.assert_allclose(ours.predict_proba(x), lda.predict_proba(x), rtol=1e-6, atol=1e-10)


def test_binary_equals_sklearn_lda_difference_row():
    x, y = datasets.load_breast_cancer(return_X_y=True)
    x = _std(x)
    lda = da.LinearDiscriminantAnalysis(solver="lsqr", priors=np.bincount(y) / len(y)).fit(x, y)
    ours = AnalyticLogisticRegression().fit(x, y)
    assert ours.coef_.shape == (2, 30)
    # for K = 2 sklearn reports w = w_1 − w_0 and b = b_1 − b_0
    np.testing.assert_allclose(ours.coef_[1] - ours.coef_[0], lda.coef_[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.intercept_[1] - ours.intercept_[0], lda.intercept_[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ours.predict(x), lda.predict(x))


def test_digits_with_constant_pixels_predicts_as_lda():
    x, y = datasets.load_digits(return_X_y=True)  # several pixels are constant: a singular covariance
    lda = da.LinearDiscriminantAnalysis(solver="lsqr", priors=np.bincount(y) / len(y)).fit(x, y)
    ours = AnalyticLogisticRegression().fit(x, y)
    assert np.isfinite(ours.coef_).all()
    # the null directions of Σ leave a per-row shift common to all classes: the softmax does not see it
    diff = ours.decision_function(x) - lda.decision_function(x)
    np.testing.assert_allclose(diff - diff.mean(axis=1, keepdims=True), 0.0, atol=1e-6)
    np.testing.assert_allclose(ours.predict_proba(x), lda.predict_proba(x), atol=1e-8)
    unwhitened = AnalyticLogisticRegression(whiten=False).fit(x, y)
    np.testing.assert_allclose(unwhitened.decision_function(x), lda.decision_function(x), rtol=1e-6, atol=1e-6)
    assert (ours.predict(x) == lda.predict(x)).mean() == 1.0


def test_matches_maximum_likelihood_logistic_regression_on_gaussians():
    lm = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    d, n = 8, 50_000
    a = rng.standard_normal((d, d))
    cov = a @ a.T / d + 0.5 * np.eye(d)
    chol = np.linalg.cholesky(cov)
    mu0, mu1 = rng.standard_normal(d) * 0.5, rng.standard_normal(d) * 0.5
    y = (rng.random(n) < 0.35).astype(int)
    x = np.where(y[:, None] == 1, mu1, mu0) + rng.standard_normal((n, d)) @ chol.T
    mle = lm.LogisticRegression(C=1e6, max_iter=2000).fit(x, y)
    ours = AnalyticLogisticRegression().fit(x, y)
    w = ours.coef_[1] - ours.coef_[0]
    cos = w @ mle.coef_[0] / np.linalg.norm(w) / np.linalg.norm(mle.coef_[0])
    assert cos > 0.99
    # the closed form itself: w = (μ₁ − μ₀)Σ⁻¹ with the true parameters, up to sampling error
    w_true = np.linalg.solve(cov, mu1 - mu0)
    assert w @ w_true / np.linalg.norm(w) / np.linalg.norm(w_true) > 0.999


def test_identity_sigma_is_the_binary_script():
    # after whitening with the total covariance, the released binary script uses w = μ₁ − μ₀
    x, y = datasets.load_breast_cancer(return_X_y=True)
    x = _std(x)
    ours = AnalyticLogisticRegression(sigma="identity").fit(x, y)
    mu = x.mean(0)
    cov = np.cov(x, rowvar=False, bias=True)
    lam, u = np.linalg.eigh(cov)
    keep = lam > 1e-10 * lam.max()
    p = u[:, keep] / np.sqrt(lam[keep])
    m0, m1 = (x[y == 0] - mu).mean(0) @ p, (x[y == 1] - mu).mean(0) @ p
    np.testing.assert_allclose(ours.coef_[1] - ours.coef_[0], p @ (m1 - m0), rtol=1e-8, atol=1e-10)


def test_priors_move_only_the_intercept():
    x, y = datasets.load_wine(return_X_y=True)
    x = _std(x)
    emp = AnalyticLogisticRegression().fit(x, y)
    uni = AnalyticLogisticRegression(priors="uniform").fit(x, y)
    freq = np.bincount(y) / len(y)
    np.testing.assert_allclose(uni.coef_, emp.coef_)
    np.testing.assert_allclose(uni.intercept_ - emp.intercept_, np.log(1 / 3) - np.log(freq), rtol=1e-10)
    given = AnalyticLogisticRegression(priors=[2, 1, 1]).fit(x, y)
    np.testing.assert_allclose(given.class_prior_, [0.5, 0.25, 0.25])


def test_shrinkage_pulls_towards_identity_sigma():
    x, y = datasets.load_wine(return_X_y=True)
    x = _std(x)
    big = AnalyticLogisticRegression(shrinkage=1e8).fit(x, y)
    ident = AnalyticLogisticRegression(sigma="identity").fit(x, y)
    # (Σ + λI)⁻¹ → I/λ: the direction of each w_i tends to the identity-Σ solution
    for a, b in zip(big.coef_, ident.coef_):
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.9999


def test_linear_regression_equals_sklearn():
    lm = pytest.importorskip("sklearn.linear_model")
    x, yv = datasets.load_diabetes(return_X_y=True)
    ref = lm.LinearRegression().fit(x, yv)
    w, b = analytic_linear_regression(x, yv)
    np.testing.assert_allclose(w, ref.coef_, rtol=1e-8)
    assert float(b) == pytest.approx(ref.intercept_, rel=1e-10)
    y2 = np.stack([yv, 2 * yv + 1], axis=1)
    sol = analytic_linear_regression(x, y2)
    w2, b2 = sol
    assert sol.weight is w2 and sol.bias is b2
    np.testing.assert_allclose(w2[:, 1], 2 * ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(b2, [ref.intercept_, 2 * ref.intercept_ + 1], rtol=1e-10)


def test_estimator_protocol_and_export():
    base = pytest.importorskip("sklearn.base")
    x, y = datasets.load_iris(return_X_y=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    est = GaussianLinearClassifier(shrinkage=0.01)
    assert base.clone(est).get_params() == est.get_params()
    est.fit(x, labels)
    assert set(est.predict(x)) <= set(labels)
    assert est.score(x, labels) > 0.95
    np.testing.assert_allclose(est.predict_proba(x).sum(1), 1.0)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(x)), est.predict_proba(x), rtol=1e-10)
    lin = est.to_linear()
    torch.testing.assert_close(lin(torch.tensor(x, dtype=torch.float32)).double(),
                               torch.from_numpy(est.decision_function(x)), rtol=1e-4, atol=1e-4)
    est.set_params(sigma="identity")
    assert "sigma='identity'" in repr(est)


def test_bad_input_is_named():
    x, y = datasets.load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="expected y with at least 2 classes, got 1"):
        AnalyticLogisticRegression().fit(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="expected y to be 1-D with one label per row of X \\(150\\), got shape "
                                         "\\(10,\\)"):
        AnalyticLogisticRegression().fit(x, y[:10])
    with pytest.raises(ValueError, match="expected sigma to be one of \\['within', 'identity'\\], got 'total'"):
        AnalyticLogisticRegression(sigma="total").fit(x, y)
    with pytest.raises(ValueError, match="expected shrinkage >= 0.0, got -1"):
        AnalyticLogisticRegression(shrinkage=-1).fit(x, y)
    with pytest.raises(ValueError, match="expected rcond < 1.0, got 1"):
        AnalyticLogisticRegression(rcond=1).fit(x, y)
    with pytest.raises(ValueError, match="expected priors to be one of \\['empirical', 'uniform'\\], got 'flat'"):
        AnalyticLogisticRegression(priors="flat").fit(x, y)
    with pytest.raises(ValueError, match="expected priors to be one of \\['empirical', 'uniform'\\] or 3 positive "
                                         "values \\(one per class\\), got \\[1, 1\\]"):
        AnalyticLogisticRegression(priors=[1, 1]).fit(x, y)
    with pytest.raises(ValueError, match="expected X to be finite, got nan"):
        AnalyticLogisticRegression().fit(np.full_like(x, np.nan), y)
    with pytest.raises(ValueError, match="expected X with some variance, got every feature constant"):
        AnalyticLogisticRegression().fit(np.ones_like(x), y)
    with pytest.raises(ValueError, match=r"expected X to be a 2-D \(samples, features\) array, got shape \(150,\)"):
        AnalyticLogisticRegression().fit(x[:, 0], y)
    with pytest.raises(ValueError, match="expected X and Y with one row per sample, got 150 and 10 rows"):
        analytic_linear_regression(x, y[:10])
    with pytest.raises(RuntimeError, match="expected a fitted AnalyticLogisticRegression, got one not fitted"):
        AnalyticLogisticRegression().predict(x)
    with pytest.raises(RuntimeError, match="expected a fitted AnalyticLogisticRegression, got one not fitted"):
        AnalyticLogisticRegression().to_linear()
    est = AnalyticLogisticRegression().fit(x, y)
    with pytest.raises(ValueError, match=r"expected X with 4 features \(as in fit\), got 3"):
        est.predict(x[:, :3])
    with pytest.raises(ValueError, match="expected parameter to be one of \\['priors', 'rcond', 'shrinkage', 'sigma', "
                                         "'whiten'\\], got 'C'"):
        est.set_params(C=1.0)
