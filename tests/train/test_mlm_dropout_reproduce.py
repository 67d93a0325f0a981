"""The mlm_dropout reproduction: its synthetic tasks, the MAE Monte Carlo, the DropToken equivalence, its verdict rule."""

from __future__ import annotations

import pytest
import torch

from kexue.models import Transformer, TransformerConfig
from kexue.reproduce import mlm_dropout as repro


def test_keyword_task_labels_follow_the_counts():
    x, y = repro.keyword_task(400, seed=0, noise=0.0)
    assert x.shape == (400, 128) and bool((x[:, 0] == repro.CLS).all()) and bool((x[:, -1] == repro.SEP).all())
    counts = torch.stack([(x == k).sum(1) for k in range(4, 9)], 1)
    assert torch.equal(y, ((counts[:, :3].sum(1) - counts[:, 3:].sum(1)) > 2).long())
    assert 0.2 < float(y.float().mean()) < 0.8
    _, noisy = repro.keyword_task(4000, seed=0)
    _, clean = repro.keyword_task(4000, seed=0, noise=0.0)
    flipped = float((noisy != clean).float().mean())
    assert abs(flipped - 0.1) < 5 * (0.1 * 0.9 / 4000) ** 0.5


def test_markov_chains_are_stochastic_and_seeded():
    a, b, start = repro._markov(40, seed=0, mix=0.3, clusters=4)
    a2, _, _ = repro._markov(40, seed=0, mix=0.3, clusters=4)
    assert torch.equal(a, a2)
    r = (b - 0.7 * a) / 0.3  # B = 0.7·A + 0.3·R with R stochastic too
    for m in (a, b, r):
        torch.testing.assert_close(m.sum(1), torch.ones(36))
        assert bool((m >= -1e-7).all())
    # the block structure: from any token, the chance of staying in its group is at least `stay`
    group = torch.arange(36) * 4 // 36
    same = (group[:, None] == group[None, :]).float()
    assert bool(((a * same).sum(1) >= 0.8 - 1e-6).all())
    seqs = repro._sequences(a, start, 5, 10, torch.Generator().manual_seed(0))
    assert seqs.shape == (5, 12) and bool((seqs[:, 1:-1] >= len(repro.SPECIALS)).all())


def test_mae_weight_average_is_exact_and_model_average_is_not():
    mc = repro.mae_monte_carlo(samples=40_000)
    assert mc["weight_average_gap"] < 1e-15
    assert mc["model_average_gap"] > 10 * mc["mc_std_error"]


def test_equivalence_gap_is_rounding():
    torch.manual_seed(0)
    enc = Transformer(TransformerConfig(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=4,
                                        intermediate_size=64, max_position_embeddings=128, hidden_dropout=0.0,
                                        attention_dropout=0.0, type_vocab_size=0, with_pooler=False)).eval()
    x, _ = repro.keyword_task(4, seed=3)
    assert repro._equivalence_gap(enc, x) < 1e-5


@pytest.mark.parametrize("case, expected", [("as_post", "holds"), ("correction_helps", "does not hold"),
                                            ("droptoken_slow", "does not hold"), ("one_seed", "inconclusive")])
def test_verdict_follows_its_rule(monkeypatch, case, expected):
    seeds = 1 if case == "one_seed" else 3
    plain = [0.80, 0.82, 0.78][:seeds]
    shift = 0.1 if case == "correction_helps" else 0.005
    corr = {"acc": {"plain": plain, "corrected": [a + shift for a in plain]}, "probe": {"plain": 0.8, "corrected": 0.8},
            "rel_change": 0.1, "curve": [1.0, 0.5], "steps": 2, "seeds": seeds, "epochs": 1}
    acc = {0.0: 0.80, 0.1: 0.81, 0.15: 0.80, 0.25: 0.79, 0.5: 0.70}
    secs = {0.0: 1.0, 0.1: 0.9, 0.15: 0.85, 0.25: 0.75, 0.5: 0.5}
    if case == "droptoken_slow":
        secs[0.5] = 1.2
    results = {r: {"acc": [acc[r] + d for d in (0.0, 0.02, -0.02)[:seeds]], "epoch_s": [secs[r]] * seeds}
               for r in repro.RATIOS}
    drop = {"results": results, "equivalence_max_abs": 1e-7, "epochs": 1, "seeds": seeds, "n_train": 10}
    monkeypatch.setattr(repro, "correction_experiment", lambda quick: corr)
    monkeypatch.setattr(repro, "droptoken_experiment", lambda quick: drop)
    monkeypatch.setattr(repro, "mae_monte_carlo",
                        lambda samples: {"model_average_gap": 0.01, "weight_average_gap": 0.0, "mc_std_error": 1e-4})
    assert repro.run(quick=seeds == 1).verdict == expected


@pytest.mark.slow
def test_quick_run_end_to_end():
    result = repro.run(quick=True)
    assert result.verdict == "inconclusive"
    assert result.numbers["droptoken"]["equivalence_max_abs"] < 1e-5
    assert set(result.numbers["droptoken"]["results"]) == {str(r) for r in repro.RATIOS}
