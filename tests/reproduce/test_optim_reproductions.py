"""The optimizer reproductions (adafactor, accumulation, child_tuning): their parts against references, and the quick
runs end to end (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kexue.nn.padding import pad
from kexue.reproduce import accumulation, adafactor, child_tuning


def test_adafactor_conformance_and_memory_parts():
    conf = adafactor.conformance(steps=4)
    assert max(conf.values()) <= 1e-10
    rows, numbers = adafactor.memory()
    small = numbers["6-layer d=256 (vocab 30522)"]
    assert small["m_plus_n"] and small["factored_matrices"] > 20
    # Adam keeps two values per parameter; our count must see exactly that
    assert small["adam_state"] == 2 * small["params"]
    assert small["ratio"] < adafactor.MEMORY_BOUND


def test_markov_entropy_rate_matches_a_monte_carlo_estimate():
    P, pi, h = adafactor.markov_chain()
    np.testing.assert_allclose(pi @ P, pi, atol=1e-12)  # stationary
    x = adafactor.sample(P, pi, 400, np.random.default_rng(0))
    logp = np.log(P[x[:, :-1].numpy(), x[:, 1:].numpy()])
    est = -logp.mean()
    se = logp.std() / math.sqrt(logp.size) * 3  # transitions within a row are dependent: a generous band
    assert abs(est - h) < 5 * se


def test_accumulation_exactness_part():
    out = accumulation.exactness(cycles=10)
    assert out["sgdm_max_abs_diff"] <= 1e-12
    assert 0 < out["adam_relative_gap"] < 1  # approximate by design, but not wild


def test_stacked_mlp_is_independent_mlps():
    model = accumulation.StackedMLP([3, 4]).eval()
    x = torch.randn(2, 5, 64)
    out = model(x)
    for s, seed in enumerate([3, 4]):
        torch.manual_seed(seed)
        a, b = nn.Linear(64, 256), nn.Linear(256, 10)
        torch.testing.assert_close(out[s], b(torch.relu(a(x[s]))), rtol=1e-5, atol=1e-6)


def test_child_tuning_sgd_view_matches_closed_form():
    m, v, mu, cv = child_tuning.sgd_view(0.25, steps=200)
    assert abs(m - mu) < 5 * math.sqrt(cv / 200_000)
    assert v == pytest.approx(cv, rel=0.05)


def test_cached_top_classifier_equals_the_full_model(minilm, minilm_tokenizer):
    """The reproduction feeds cached lower-block outputs to a copy of the top block: same hidden states as the whole
    model's run_encoder."""
    texts = ["a gripping, funny film", "dull"]
    cache = child_tuning._cache(minilm, minilm_tokenizer, texts, 5, 32)
    clf = child_tuning.TopClassifier(minilm, 1, 2, seed=0).eval()
    h, mask = pad(cache)
    enc = minilm_tokenizer(texts, max_length=32)
    with torch.no_grad():
        full, _ = minilm.eval().run_encoder(enc["input_ids"], enc["attention_mask"])
        clf.top.embeddings.current = h
        ours, _ = clf.top.run_encoder(torch.zeros_like(mask), mask)
    for i in range(2):
        n = int(mask[i].sum())
        torch.testing.assert_close(ours[i, :n], full[i, :n], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adafactor", "accumulation", "child_tuning"])
def test_quick_runs(name, data_root):
    from kexue.reproduce import load

    result = load(name).run(quick=True)
    assert result.kind == "empirical"
    assert result.verdict in ("holds", "does not hold", "inconclusive", "not measured")
    assert result.tables and result.figures and result.post_figure and result.our_figure
