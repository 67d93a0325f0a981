"""The helpers of the issue-6 reproductions (am_softmax, flat_nce, zlpr, nsp_zero_shot, whitening, can,
analytic_logreg) against scikit-learn and kexue.embed, plus quick runs of the fast ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.reproduce import am_softmax, flat_nce, load, nsp_zero_shot
from kexue.reproduce import zlpr as zlpr_repro

ISSUE6 = ["am_softmax", "analytic_logreg", "can", "flat_nce", "nsp_zero_shot", "whitening", "zlpr"]


def test_all_are_discovered():
    from kexue.reproduce import available

    assert set(ISSUE6) <= set(available())
    assert "_minilm" not in available()


def test_retrieval_map_matches_sklearn_average_precision():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    emb = rng.standard_normal((60, 8)) + labels[:, None] * 0.7
    m, r1 = am_softmax._retrieval(emb, labels)
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = z @ z.T
    aps, hits = [], []
    for i in range(60):
        others = np.arange(60) != i
        aps.append(metrics.average_precision_score(labels[others] == labels[i], sim[i, others]))
        hits.append(labels[others][np.argmax(sim[i, others])] == labels[i])
    assert m == pytest.approx(np.mean(aps), rel=1e-12)
    assert r1 == pytest.approx(np.mean(hits))


def test_micro_f1_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = (rng.random((80, 12)) < 0.15).astype(int)
    for t in (0.1, 0.5, 0.9):
        pred = rng.random((80, 12)) < t
        assert zlpr_repro._micro_f1(y, pred) == pytest.approx(metrics.f1_score(y, pred, average="micro"))


def test_knn_accuracy_matches_sklearn():
    neighbors = pytest.importorskip("sklearn.neighbors")
    rng = np.random.default_rng(2)
    ytr, yte = rng.integers(0, 10, 200), rng.integers(0, 10, 50)
    ftr = rng.standard_normal((200, 6)) + ytr[:, None] * 0.3
    fte = rng.standard_normal((50, 6)) + yte[:, None] * 0.3
    ref = neighbors.KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(ftr, ytr).score(fte, yte)
    assert flat_nce._knn_accuracy(ftr, ytr, fte, yte) == pytest.approx(ref)


def test_augment_shifts_by_at_most_one_pixel():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(2000, 64)
    x[:, 3 * 8 + 4] = 100.0  # one bright pixel at row 3, column 4
    out = flat_nce._augment(x, g).view(-1, 8, 8)
    keep = out.amax(dim=(1, 2)) > 50  # the bright pixel survived the 20 % dropout
    assert 0.7 < keep.float().mean() < 0.9
    pos = out[keep].flatten(1).argmax(1)
    rows, cols = pos // 8, pos % 8
    assert set(zip((rows - 3).tolist(), (cols - 4).tolist())) == {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)}
    noise = out[keep].flatten(1)
    noise = noise[noise.abs() < 50]
    assert noise.std().item() == pytest.approx(0.1 * np.sqrt(0.8), rel=0.05)


def test_planted_nsp_model_scores_only_the_planted_token(minilm_tokenizer):
    planted = minilm_tokenizer.token_to_id("great")
    model = nsp_zero_shot._planted(minilm_tokenizer.vocab_size, planted)
    batch = minilm_tokenizer(["a fine film", "a fine film"], ["it was great", "it was terrible"])
    with torch.no_grad():
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).nsp_logits
    assert logits[0, 0] > 9.9 and logits[1, 0] == 0 and (logits[:, 1] == 0).all()


def test_minilm_helper_equals_encode_and_caches(monkeypatch):
    from kexue.embed import encode
    from kexue.reproduce import _minilm

    texts = ["A man is playing a guitar.", "Two dogs run on the beach.", "short", "a longer sentence " * 5]
    got = _minilm.embed("unit-test", texts, ("mean", "first_last_avg", "emb_avg", "cls", "pooler"), batch_size=3)
    model, tok = _minilm.model_and_tokenizer()
    for pooling in ("mean", "first_last_avg", "emb_avg", "cls", "pooler"):
        want = encode(texts, model, tok, pooling=pooling, kernel="auto").numpy()
        np.testing.assert_allclose(got[pooling], want, atol=2e-6, rtol=0)
    calls = []
    monkeypatch.setattr(_minilm, "_encode_all", lambda *a, **k: calls.append(a) or {})
    again = _minilm.embed("unit-test", texts, ("mean", "cls"))
    assert not calls and again["mean"] is got["mean"]


@pytest.mark.parametrize("name,verdict", [("nsp_zero_shot", "verified")])  # flat_nce: test_flat_nce_rule.py
def test_fast_quick_runs(name, verdict, monkeypatch):
    monkeypatch.delenv("KEXUE_NSP_MODEL", raising=False)
    result = load(name).run(quick=True)
    assert result.verdict == verdict and result.kind == "mechanics"  # no NSP checkpoint: the mechanics only
    assert result.name == name and result.quick
    assert result.numbers["mechanics_pass"] is True
    assert "NSP head" in result.notes[0] and "KEXUE_NSP_MODEL" in result.skipped[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["am_softmax", "analytic_logreg", "can", "whitening", "zlpr"])
def test_slower_quick_runs(name):
    result = load(name).run(quick=True)
    assert result.kind == "empirical" and result.name == name
    assert result.tables and result.measured and result.our_figure and result.setup
