"""Bad-input rows: kexue.classify (CAN, the analytic logistic regression, NSP zero-shot).

The NSP model is a tiny kexue Transformer with an NSP head (hidden 8, one layer); the rows that reach tokenisation
use a stand-in Hugging Face-style tokenizer (a callable returning the batch), so no checkpoint is needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _matrix import Bad, check

from kexue.classify import (
    AnalyticLogisticRegression,
    GaussianLinearClassifier,
    NSPZeroShot,
    analytic_linear_regression,
    assign_by_thresholds,
    can,
    confident_mask,
    nsp_zero_shot,
    pair_scores,
    prior_from_labels,
    quantile_thresholds,
    topk_uncertainty,
)
from kexue.models import Transformer, TransformerConfig

NAN = float("nan")
PROBS = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
X = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 2.5], [3.0, 2.0], [0.5, 0.0], [2.5, 3.0]])
Y = np.array([0, 0, 1, 1, 0, 1])


def _nsp_model(**kw) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig(**{**dict(vocab_size=30, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8,
                                      max_position_embeddings=32, hidden_dropout=0.0, attention_dropout=0.0,
                                      with_pooler=True, with_nsp=True), **kw})
    return Transformer(cfg).eval()


class PairTokenizer:
    """A Hugging Face-style tokenizer for pairs: each word one id (its length, mod 25, + 3)."""

    def __call__(self, a, b, padding=True, truncation=True, max_length=128, return_tensors="pt"):
        rows, segs = [], []
        for x, y in zip(a, b, strict=True):
            ia = [len(w) % 25 + 3 for w in x.split()]
            ib = [len(w) % 25 + 3 for w in y.split()]
            ids = ([1, *ia, 2, *ib, 2])[:max_length]
            rows.append(ids)
            segs.append(([0] * (len(ia) + 2) + [1] * (len(ib) + 1))[:max_length])
        width = max(len(r) for r in rows)

        def pad(r: list[int]) -> list[int]:
            return r + [0] * (width - len(r))

        return {"input_ids": torch.tensor([pad(r) for r in rows]),
                "attention_mask": torch.tensor([pad([1] * len(r)) for r in rows]),
                "token_type_ids": torch.tensor([pad(s) for s in segs])}


def _zs(**kw) -> NSPZeroShot:
    return NSPZeroShot(kw.pop("model", None) or _nsp_model(), kw.pop("tokenizer", PairTokenizer()),
                       **{**dict(templates="It was [label]", label_words=["bad", "good"]), **kw})


def _fitted(cls=AnalyticLogisticRegression, **kw):
    return cls(**kw).fit(X, Y)


def _estimator_rows(name: str, cls) -> list[Bad]:
    """The same rows for AnalyticLogisticRegression and its alias GaussianLinearClassifier."""
    e = f"kexue.classify.{name}"
    return [
        Bad(e, "unknown sigma", lambda: cls(sigma="full"), ValueError,
            r"expected sigma to be one of \['within', 'identity'\], got 'full'"),
        Bad(e, "shrinkage negative", lambda: cls(shrinkage=-0.1), ValueError, r"expected shrinkage >= 0\.0, got -0\.1"),
        Bad(e, "shrinkage NaN", lambda: cls(shrinkage=NAN), ValueError, r"expected shrinkage to be finite, got nan"),
        Bad(e, "rcond 1", lambda: cls(rcond=1.0), ValueError, r"expected rcond < 1\.0, got 1\.0"),
        Bad(e, "unknown priors", lambda: cls(priors="balanced"), ValueError,
            r"expected priors to be one of \['empirical', 'uniform'\], got 'balanced'"),
        Bad(e, "priors not positive", lambda: cls(priors=[0.5, -0.5]), ValueError,
            r"expected priors to be one of \['empirical', 'uniform'\] or positive finite values, got \[0\.5, -0\.5\]"),
        Bad(e, "whiten a string", lambda: cls(whiten="no"), TypeError, r"expected whiten to be a bool, got 'no'"),
        Bad(f"{e}.fit", "X and y of different lengths", lambda: cls().fit(X, Y[:4]), ValueError,
            r"expected y to be 1-D with one label per row of X \(6\), got shape \(4,\)"),
        Bad(f"{e}.fit", "a single class", lambda: cls().fit(X, np.zeros(6, dtype=int)), ValueError,
            r"expected y with at least 2 classes, got 1 \(\[0\]\)"),
        Bad(f"{e}.fit", "X with NaN", lambda: cls().fit(np.where(X > 2.9, NAN, X), Y), ValueError,
            r"expected X to be finite, got nan"),
        Bad(f"{e}.fit", "1-D X", lambda: cls().fit(X[:, 0], Y), ValueError,
            r"expected X to be a 2-D \(samples, features\) array, got shape \(6,\)"),
        Bad(f"{e}.fit", "priors of the wrong length", lambda: cls(priors=[0.2, 0.3, 0.5]).fit(X, Y), ValueError,
            r"expected priors to be one of \['empirical', 'uniform'\] or 2 positive values \(one per class\), "
            r"got \[0\.2, 0\.3, 0\.5\]"),
        Bad(f"{e}.fit", "a bad sigma set as an attribute", lambda: _with_attr(cls(), "sigma", "diag").fit(X, Y),
            ValueError, r"expected sigma to be one of \['within', 'identity'\], got 'diag'"),
        Bad(f"{e}.fit", "X with no rows", lambda: cls().fit(np.zeros((0, 2)), np.zeros(0)), ValueError,
            r"expected X with at least one row, got shape \(0, 2\)"),
        Bad(f"{e}.predict", "before fit", lambda: cls().predict(X), RuntimeError,
            r"expected a fitted AnalyticLogisticRegression, got one not fitted: call fit\(X, y\) first"),
        Bad(f"{e}.predict", "X with another number of features", lambda: _fitted(cls).predict(X[:, :1]), ValueError,
            r"expected X with 2 features \(as in fit\), got 1"),
        Bad(f"{e}.predict_proba", "before fit", lambda: cls().predict_proba(X), RuntimeError,
            r"expected a fitted AnalyticLogisticRegression, got one not fitted"),
        Bad(f"{e}.predict_proba", "X with NaN", lambda: _fitted(cls).predict_proba([[NAN, 1.0]]), ValueError,
            r"expected X to be finite, got nan"),
        Bad(f"{e}.predict_log_proba", "before fit", lambda: cls().predict_log_proba(X), RuntimeError,
            r"expected a fitted AnalyticLogisticRegression, got one not fitted"),
        Bad(f"{e}.predict_log_proba", "3 features", lambda: _fitted(cls).predict_log_proba(np.ones((2, 3))),
            ValueError, r"expected X with 2 features \(as in fit\), got 3"),
        Bad(f"{e}.decision_function", "before fit", lambda: cls().decision_function(X), RuntimeError,
            r"expected a fitted AnalyticLogisticRegression, got one not fitted"),
        Bad(f"{e}.decision_function", "1-D X", lambda: _fitted(cls).decision_function(X[0]), ValueError,
            r"expected X to be a 2-D \(samples, features\) array, got shape \(2,\)"),
        Bad(f"{e}.score", "before fit", lambda: cls().score(X, Y), RuntimeError,
            r"expected a fitted AnalyticLogisticRegression, got one not fitted"),
        Bad(f"{e}.score", "X and y of different lengths", lambda: _fitted(cls).score(X, Y[:1]), ValueError,
            r"expected y to be 1-D with one label per row of X \(6\), got shape \(1,\)"),
        Bad(f"{e}.get_params", "deep a string", lambda: cls().get_params(deep="yes"), TypeError,
            r"expected deep to be a bool, got 'yes'"),
        Bad(f"{e}.set_params", "unknown parameter", lambda: cls().set_params(alpha=1.0), ValueError,
            r"expected parameter to be one of \['priors', 'rcond', 'shrinkage', 'sigma', 'whiten'\], got 'alpha'"),
        Bad(f"{e}.set_params", "a bad value", lambda: cls().set_params(sigma="full"), ValueError,
            r"expected sigma to be one of \['within', 'identity'\], got 'full'"),
        Bad(f"{e}.set_params", "rcond NaN", lambda: cls().set_params(rcond=NAN), ValueError,
            r"expected rcond to be finite, got nan"),
    ]


def _with_attr(obj, name, value):
    setattr(obj, name, value)
    return obj


def _set_params_is_all_or_nothing():
    est = AnalyticLogisticRegression()
    with pytest.raises(ValueError):
        est.set_params(shrinkage=0.5, sigma="full")
    return est.get_params()


ROWS = [
    *_estimator_rows("AnalyticLogisticRegression", AnalyticLogisticRegression),
    *_estimator_rows("GaussianLinearClassifier", GaussianLinearClassifier),
    Bad("kexue.classify.analytic_linear_regression", "X and Y of different lengths",
        lambda: analytic_linear_regression(X, Y[:5]), ValueError,
        r"expected X and Y with one row per sample, got 6 and 5 rows"),
    Bad("kexue.classify.analytic_linear_regression", "Y with NaN",
        lambda: analytic_linear_regression(X, np.where(Y > 0, NAN, 0.0)), ValueError,
        r"expected Y to be finite, got nan"),
    Bad("kexue.classify.analytic_linear_regression", "X with infinity",
        lambda: analytic_linear_regression(np.where(X > 2.9, np.inf, X), Y), ValueError,
        r"expected X to be finite, got inf"),
    Bad("kexue.classify.analytic_linear_regression", "1-D X", lambda: analytic_linear_regression(X[:, 0], Y),
        ValueError, r"expected X to be a 2-D \(samples, features\) array, got shape \(6,\)"),
    Bad("kexue.classify.analytic_linear_regression", "no rows",
        lambda: analytic_linear_regression(np.zeros((0, 2)), np.zeros(0)), ValueError,
        r"expected X with at least one row, got shape \(0, 2\)"),
    Bad("kexue.classify.analytic_linear_regression", "3-D Y",
        lambda: analytic_linear_regression(X, np.zeros((6, 2, 2))), ValueError,
        r"expected Y to be 1-D \(N,\) or 2-D \(N, m\), got shape \(6, 2, 2\)"),
    # ------------------------------------------------------------------------------------------------ CAN
    Bad("kexue.classify.can", "rows not summing to 1", lambda: can(PROBS * 2, [0.3, 0.3, 0.4]), ValueError,
        r"expected probs rows summing to 1 \(within 0\.001\), got row \d summing to 2"),
    Bad("kexue.classify.can", "probabilities above 1", lambda: can([[1.5, -0.5]], [0.5, 0.5]), ValueError,
        r"expected probs to be finite and non-negative, got -0\.5"),
    Bad("kexue.classify.can", "NaN probabilities", lambda: can([[NAN, 1.0]], [0.5, 0.5]), ValueError,
        r"expected probs to be finite and non-negative, got nan"),
    Bad("kexue.classify.can", "prior of the wrong length", lambda: can(PROBS, [0.5, 0.5]), ValueError,
        r"expected prior of shape \(3,\) \(one value per class\), got \(2,\)"),
    Bad("kexue.classify.can", "prior negative", lambda: can(PROBS, [0.5, 0.6, -0.1]), ValueError,
        r"expected prior to be finite, non-negative and not all zero, got \[0\.5, 0\.6, -0\.1\]"),
    Bad("kexue.classify.can", "alpha 0", lambda: can(PROBS, [0.3, 0.3, 0.4], alpha=0.0), ValueError,
        r"expected alpha > 0\.0, got 0\.0"),
    Bad("kexue.classify.can", "iters 0", lambda: can(PROBS, [0.3, 0.3, 0.4], iters=0), ValueError,
        r"expected iters >= 1, got 0"),
    Bad("kexue.classify.can", "unknown mode", lambda: can(PROBS, [0.3, 0.3, 0.4], mode="joint"), ValueError,
        r"expected mode to be one of \['per_sample', 'batch'\], got 'joint'"),
    Bad("kexue.classify.can", "tau above 1", lambda: can(PROBS, [0.3, 0.3, 0.4], tau=1.5), ValueError,
        r"expected tau <= 1\.0, got 1\.5"),
    Bad("kexue.classify.can", "k above the classes", lambda: can(PROBS, [0.3, 0.3, 0.4], k=4), ValueError,
        r"expected k <= 3 \(the number of classes\), got 4"),
    Bad("kexue.classify.can", "unknown kind", lambda: can(PROBS, [0.3, 0.3, 0.4], kind="entropy"), ValueError,
        r"expected kind to be one of \['su', 'paper'\], got 'entropy'"),
    Bad("kexue.classify.can", "1-D probs", lambda: can(PROBS[0], [0.3, 0.3, 0.4]), ValueError,
        r"expected probs to be a 2-D \(samples, classes\) array, got shape \(3,\)"),
    Bad("kexue.classify.confident_mask", "tau NaN", lambda: confident_mask(PROBS, tau=NAN), ValueError,
        r"expected tau to be finite, got nan"),
    Bad("kexue.classify.confident_mask", "rows not summing to 1 (logits)",
        lambda: confident_mask(np.array([[2.0, -1.0, 0.5]]) ** 2), ValueError,
        r"expected probs rows summing to 1 \(within 0\.001\), got row 0 summing to 5\.25"),
    Bad("kexue.classify.confident_mask", "k 1", lambda: confident_mask(PROBS, k=1), ValueError,
        r"expected k >= 2, got 1"),
    Bad("kexue.classify.confident_mask", "one class", lambda: confident_mask(np.ones((2, 1))), ValueError,
        r"expected probs with at least 2 classes, got 1"),
    Bad("kexue.classify.topk_uncertainty", "rows not summing to 1", lambda: topk_uncertainty(PROBS / 2, kind="paper"),
        ValueError, r"expected probs rows summing to 1 \(within 0\.001\), got row 0 summing to 0\.5"),
    Bad("kexue.classify.topk_uncertainty", "k a float", lambda: topk_uncertainty(PROBS, k=2.5), TypeError,
        r"expected k to be an integer, got 2\.5"),
    Bad("kexue.classify.topk_uncertainty", "unknown kind", lambda: topk_uncertainty(PROBS, kind="shannon"),
        ValueError, r"expected kind to be one of \['su', 'paper'\], got 'shannon'"),
    Bad("kexue.classify.topk_uncertainty", "negative probability",
        lambda: topk_uncertainty(torch.tensor([[1.2, -0.2]])), ValueError,
        r"expected probs to be finite and non-negative, got -0\.2"),
    Bad("kexue.classify.prior_from_labels", "num_classes 0", lambda: prior_from_labels([0, 1], 0), ValueError,
        r"expected num_classes >= 1, got 0"),
    Bad("kexue.classify.prior_from_labels", "a label beyond num_classes", lambda: prior_from_labels([0, 3], 3),
        ValueError, r"expected y values in \[0, 3\), got 0\.\.3"),
    Bad("kexue.classify.prior_from_labels", "float labels", lambda: prior_from_labels([0.0, 1.0], 2), TypeError,
        r"expected y to hold integer class indices, got dtype float64"),
    Bad("kexue.classify.prior_from_labels", "no labels", lambda: prior_from_labels([], 2), ValueError,
        r"expected y to be a non-empty 1-D array of class indices, got shape \(0,\)"),
    Bad("kexue.classify.prior_from_labels", "2-D labels", lambda: prior_from_labels([[0, 1]], 2), ValueError,
        r"expected y to be a non-empty 1-D array of class indices, got shape \(1, 2\)"),
    # --------------------------------------------------------------------------------------- NSP zero-shot
    Bad("kexue.classify.quantile_thresholds", "n_labels 1", lambda: quantile_thresholds([0.1, 0.5], 1), ValueError,
        r"expected n_labels >= 2, got 1"),
    Bad("kexue.classify.quantile_thresholds", "NaN scores", lambda: quantile_thresholds([0.1, NAN, 0.4], 2),
        ValueError, r"expected dev_scores to be a non-empty array of finite scores, got 3 scores with NaN"),
    Bad("kexue.classify.quantile_thresholds", "no scores", lambda: quantile_thresholds([], 2), ValueError,
        r"expected dev_scores to be a non-empty array of finite scores, got 0 scores"),
    Bad("kexue.classify.quantile_thresholds", "fewer scores than labels", lambda: quantile_thresholds([0.2], 2),
        ValueError, r"expected at least n_labels = 2 dev scores \(one per bin\), got 1"),
    Bad("kexue.classify.quantile_thresholds", "prior of the wrong length",
        lambda: quantile_thresholds([0.1, 0.2, 0.3], 2, prior=[1.0, 1.0, 1.0]), ValueError,
        r"expected prior to hold 2 positive values, got \[1\.0, 1\.0, 1\.0\]"),
    Bad("kexue.classify.quantile_thresholds", "prior with a zero",
        lambda: quantile_thresholds([0.1, 0.2, 0.3], 2, prior=[1.0, 0.0]), ValueError,
        r"expected prior to hold 2 positive values, got \[1\.0, 0\.0\]"),
    Bad("kexue.classify.assign_by_thresholds", "descending thresholds",
        lambda: assign_by_thresholds([0.3], [0.5, 0.2]), ValueError,
        r"expected thresholds to be a 1-D ascending array, got \[0\.5, 0\.2\]"),
    Bad("kexue.classify.assign_by_thresholds", "2-D thresholds",
        lambda: assign_by_thresholds([0.3], [[0.2, 0.5]]), ValueError,
        r"expected thresholds to be a 1-D ascending array, got \[\[0\.2, 0\.5\]\]"),
    Bad("kexue.classify.assign_by_thresholds", "NaN threshold", lambda: assign_by_thresholds([0.3], [0.2, NAN]),
        ValueError, r"expected thresholds to be finite, got \[0\.2, nan\]"),
    Bad("kexue.classify.assign_by_thresholds", "NaN score", lambda: assign_by_thresholds([0.3, NAN], [0.2, 0.6]),
        ValueError, r"expected scores to be finite, got nan at index 1"),
    Bad("kexue.classify.NSPZeroShot", "a model without an NSP head", lambda: _zs(model=_nsp_model(with_nsp=False)),
        ValueError, r"expected a model with an NSP head, got a kexue Transformer without one"),
    Bad("kexue.classify.NSPZeroShot", "a RoBERTa-style model",
        lambda: _zs(model=_nsp_model(family="roberta", with_nsp=False, pad_token_id=1)), ValueError,
        r"expected a model with an NSP head, got Transformer, a RoBERTa-style model"),
    Bad("kexue.classify.NSPZeroShot", "not a model", lambda: _zs(model="bert-base-uncased"), ValueError,
        r"expected a model with an NSP head .*got str, which has none"),
    Bad("kexue.classify.NSPZeroShot", "a template without the slot", lambda: _zs(templates="It was good"),
        ValueError, r"expected every template to hold the \[label\] slot, got 'It was good'"),
    Bad("kexue.classify.NSPZeroShot", "no templates", lambda: _zs(templates=[]), ValueError,
        r"expected templates to name at least one template, got none"),
    Bad("kexue.classify.NSPZeroShot", "one label word", lambda: _zs(label_words=["good"]), ValueError,
        r"expected label_words to list at least 2 labels, got \['good'\]"),
    Bad("kexue.classify.NSPZeroShot", "label_words a string", lambda: _zs(label_words="good,bad"), ValueError,
        r"expected label_words to list at least 2 labels, got 'good,bad'"),
    Bad("kexue.classify.NSPZeroShot", "max_len 2", lambda: _zs(max_len=2), ValueError, r"expected max_len >= 3, got 2"),
    Bad("kexue.classify.NSPZeroShot", "batch_size 0", lambda: _zs(batch_size=0), ValueError,
        r"expected batch_size >= 1, got 0"),
    Bad("kexue.classify.NSPZeroShot", "no tokenizer", lambda: _zs(tokenizer=None), TypeError,
        r"expected tokenizer to be a kexue Tokenizer or a Hugging Face tokenizer, got NoneType"),
    Bad("kexue.classify.NSPZeroShot.prompts", "a template without the slot", lambda: _zs().prompts("It was"),
        ValueError, r"expected every template to hold the \[label\] slot, got 'It was'"),
    Bad("kexue.classify.NSPZeroShot.prompts", "template not a string", lambda: _zs().prompts(None), TypeError,
        r"expected template to be a str, got NoneType"),
    Bad("kexue.classify.NSPZeroShot.pairs", "texts a single string",
        lambda: _zs().pairs("great film", "It was [label]"), TypeError,
        r"expected texts to be a sequence of texts \(wrap a single text in a list\), got a string"),
    Bad("kexue.classify.NSPZeroShot.pairs", "a template without the slot",
        lambda: _zs().pairs(["great film"], "It was"), ValueError,
        r"expected every template to hold the \[label\] slot, got 'It was'"),
    Bad("kexue.classify.NSPZeroShot.pairs", "a text that is not a string",
        lambda: _zs().pairs(["great film", None], "It was [label]"), TypeError,
        r"expected texts to be a sequence of str, got None at index 1"),
    Bad("kexue.classify.NSPZeroShot.scores", "texts a single string", lambda: _zs().scores("great film"), TypeError,
        r"expected texts to be a sequence of texts \(wrap a single text in a list\), got a string"),
    Bad("kexue.classify.NSPZeroShot.scores", "a template without the slot",
        lambda: _zs().scores(["great film"], template="It was"), ValueError,
        r"expected every template to hold the \[label\] slot, got 'It was'"),
    Bad("kexue.classify.NSPZeroShot.scores", "texts None", lambda: _zs().scores(None), TypeError,
        r"expected texts to be a sequence of str, got NoneType"),
    Bad("kexue.classify.NSPZeroShot.ensemble", "texts a single string", lambda: _zs().ensemble("great film"),
        TypeError, r"expected texts to be a sequence of texts \(wrap a single text in a list\), got a string"),
    Bad("kexue.classify.NSPZeroShot.ensemble", "no templates", lambda: _zs().ensemble(["great film"], []),
        ValueError, r"expected templates to name at least one template, got none"),
    Bad("kexue.classify.NSPZeroShot.predict", "texts a single string", lambda: _zs().predict("great film"),
        TypeError, r"expected texts to be a sequence of texts \(wrap a single text in a list\), got a string"),
    Bad("kexue.classify.NSPZeroShot.predict", "a template without the slot",
        lambda: _zs().predict(["great film"], template="[labels]"), ValueError,
        r"expected every template to hold the \[label\] slot, got '\[labels\]'"),
    Bad("kexue.classify.nsp_zero_shot", "a model without an NSP head",
        lambda: nsp_zero_shot(_nsp_model(with_nsp=False), PairTokenizer(), ["a film"], templates="[label]",
                              label_words=["bad", "good"]), ValueError,
        r"expected a model with an NSP head, got a kexue Transformer without one"),
    Bad("kexue.classify.nsp_zero_shot", "texts a single string",
        lambda: nsp_zero_shot(_nsp_model(), PairTokenizer(), "a film", templates="[label]",
                              label_words=["bad", "good"]), TypeError,
        r"expected texts to be a sequence of texts \(wrap a single text in a list\), got a string"),
    Bad("kexue.classify.nsp_zero_shot", "max_len 0",
        lambda: nsp_zero_shot(_nsp_model(), PairTokenizer(), ["a film"], templates="[label]",
                              label_words=["bad", "good"], max_len=0), ValueError, r"expected max_len >= 3, got 0"),
    Bad("kexue.classify.pair_scores", "a and b of different lengths",
        lambda: pair_scores(_nsp_model(), PairTokenizer(), ["a"], ["b", "c"]), ValueError,
        r"expected a and b of one length, got 1 and 2"),
    Bad("kexue.classify.pair_scores", "a a single string",
        lambda: pair_scores(_nsp_model(), PairTokenizer(), "a", ["b"]), TypeError,
        r"expected a and b to be sequences of texts, got a single string"),
    Bad("kexue.classify.pair_scores", "batch_size 0",
        lambda: pair_scores(_nsp_model(), PairTokenizer(), ["a"], ["b"], batch_size=0), ValueError,
        r"expected batch_size >= 1, got 0"),
    Bad("kexue.classify.pair_scores", "no tokenizer", lambda: pair_scores(_nsp_model(), None, ["a"], ["b"]),
        TypeError, r"expected tokenizer to be a kexue Tokenizer or a Hugging Face tokenizer, got NoneType"),
    Bad("kexue.classify.pair_scores", "a model without an NSP head",
        lambda: pair_scores(_nsp_model(with_nsp=False), PairTokenizer(), ["a"], ["b"]), ValueError,
        r"expected a model with an NSP head"),
    Bad("kexue.classify.pair_scores", "a text that is not a string",
        lambda: pair_scores(_nsp_model(), PairTokenizer(), ["a", 3], ["b", "c"]), TypeError,
        r"expected a to be a sequence of str, got 3 at index 1"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)


def test_set_params_sets_nothing_when_a_value_is_refused():
    assert _set_params_is_all_or_nothing() == AnalyticLogisticRegression().get_params()


def test_the_stand_in_tokenizer_scores_pairs():
    """The rows' stand-in tokenizer and NSP model run end to end: one probability per pair, in (0, 1)."""
    s = pair_scores(_nsp_model(), PairTokenizer(), ["a good film", "dull"], ["It was great", "It was bad"])
    assert s.shape == (2,) and np.all((s > 0) & (s < 1))
    zs = _zs()  # texts may be any sequence of str, a numpy array of str included (its items are str)
    np.testing.assert_array_equal(zs.scores(np.array(["a good film", "dull"])), zs.scores(["a good film", "dull"]))
