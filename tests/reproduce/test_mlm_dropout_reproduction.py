"""The mlm_dropout reproduction: its synthetic tasks, the MAE Monte Carlo, the DropToken equivalence, the held-out MLM
guard, the step timing, and every branch of its verdict rule on stand-in measurements (no training)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from kexue.models import Transformer, TransformerConfig
from kexue.reproduce import _mlm_dropout_tasks as tasks
from kexue.reproduce import mlm_dropout as repro
from kexue.reproduce.rules import Estimate


def test_keyword_task_labels_follow_the_counts():
    x, y = tasks.keyword_task(400, seed=0, noise=0.0)
    assert x.shape == (400, 128) and bool((x[:, 0] == tasks.CLS).all()) and bool((x[:, -1] == tasks.SEP).all())
    counts = torch.stack([(x == k).sum(1) for k in range(4, 9)], 1)
    assert torch.equal(y, ((counts[:, :3].sum(1) - counts[:, 3:].sum(1)) > 2).long())
    assert 0.2 < float(y.float().mean()) < 0.8
    _, noisy = tasks.keyword_task(4000, seed=0)
    _, clean = tasks.keyword_task(4000, seed=0, noise=0.0)
    flipped = float((noisy != clean).float().mean())
    assert abs(flipped - 0.1) < 5 * (0.1 * 0.9 / 4000) ** 0.5


def test_markov_chains_are_stochastic_and_seeded():
    a, b, start = tasks._markov(40, seed=0, mix=0.3, clusters=4)
    a2, _, _ = tasks._markov(40, seed=0, mix=0.3, clusters=4)
    assert torch.equal(a, a2)
    r = (b - 0.7 * a) / 0.3  # B = 0.7·A + 0.3·R with R stochastic too
    for m in (a, b, r):
        torch.testing.assert_close(m.sum(1), torch.ones(36))
        assert bool((m >= -1e-7).all())
    # the block structure: from any token, the chance of staying in its group is at least `stay`
    group = torch.arange(36) * 4 // 36
    same = (group[:, None] == group[None, :]).float()
    assert bool(((a * same).sum(1) >= 0.8 - 1e-6).all())
    seqs = tasks._sequences(a, start, 5, 10, torch.Generator().manual_seed(0))
    assert seqs.shape == (5, 12) and bool((seqs[:, 1:-1] >= len(tasks.SPECIALS)).all())


def test_mae_weight_average_is_exact_and_model_average_is_not():
    mc = tasks.mae_monte_carlo(samples=40_000)
    assert mc["weight_average_gap"] < 1e-15
    assert mc["model_average_gap"] > 10 * mc["mc_std_error"]


def test_equivalence_gap_is_rounding():
    torch.manual_seed(0)
    enc = Transformer(TransformerConfig(vocab_size=1000, hidden_size=32, num_layers=2, num_heads=4,
                                        intermediate_size=64, max_position_embeddings=128, hidden_dropout=0.0,
                                        attention_dropout=0.0, type_vocab_size=0, with_pooler=False)).eval()
    x, _ = tasks.keyword_task(4, seed=3)
    assert tasks._equivalence_gap(enc, x) < 1e-5


def test_untrained_mlm_does_not_beat_the_unigram_loss():
    """The guard's baseline: an untrained MLM sits near log(vocab), above the unigram loss (below log(196))."""
    a, b, start = tasks._markov(200, seed=0, mix=1.0)
    task = {"a": a, "b": b, "start": start, "length": 16, "vocab": 200}
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=200, hidden_size=32, num_layers=1, num_heads=2,
                                          intermediate_size=64, max_position_embeddings=18, hidden_dropout=0.0,
                                          attention_dropout=0.0, type_vocab_size=0, with_pooler=False,
                                          with_mlm=True)).eval()
    out = tasks.mlm_heldout(model, task, n=64)
    assert out["unigram"] < torch.log(torch.tensor(196.0)).item() < out["loss"]
    assert 0 < out["se"] < 0.1


def test_step_timings_are_paired_per_ratio():
    secs = tasks.time_steps((0.0, 0.5), reps=2, batch=4)
    assert set(secs) == {0.0, 0.5} and all(len(v) == 2 and min(v) > 0 for v in secs.values())


# -- the rule, on stand-in measurements ---------------------------------------------------------------------------

BASE = [0.80, 0.82, 0.81]
PLAIN = [0.70, 0.72, 0.71, 0.69, 0.73]


def good(**changes) -> repro.Measurements:
    """Measurements for which every part holds; ``changes`` replace fields."""
    m = repro.Measurements(
        mlm_loss=3.0, mlm_loss_se=0.02, unigram_loss=4.9, plain=PLAIN,
        corrected=[a + d for a, d in zip(PLAIN, (0.002, -0.001, 0.001, 0.0, 0.002))], chain_dev=1000,
        chain_majority=0.5,
        accuracy={0.0: BASE, 0.1: [a + d for a, d in zip(BASE, (0.0, 0.005, -0.003))],
                  0.15: [a + d for a, d in zip(BASE, (0.002, -0.002, 0.0))],
                  0.5: [a - d for a, d in zip(BASE, (0.05, 0.06, 0.055))]},
        drop_dev=2000, drop_majority=0.56,
        step_seconds={0.0: [0.10, 0.11, 0.10, 0.12], 0.5: [0.06, 0.065, 0.06, 0.07]})
    return dataclasses.replace(m, **changes)


def _with(ratio: float, values: list[float]) -> dict:
    return {**good().accuracy, ratio: values}


CASES = {
    # part, measurements, expected part verdict, a word of its reason
    "all hold": ("DropToken speed", good(), "holds", "speed-up"),
    "mlm not learned": ("embedding correction", good(mlm_loss=4.89), "not measured", "did not learn"),
    "fine-tuning not learned": ("embedding correction", good(plain=[0.5, 0.51, 0.5, 0.49, 0.5]), "not measured",
                                "majority"),
    "two fine-tuning seeds": ("embedding correction", good(plain=PLAIN[:2], corrected=PLAIN[:2]), "not measured",
                              "seed"),
    "correction helps": ("embedding correction", good(corrected=[a + 0.05 for a in PLAIN]), "does not hold", "Δacc"),
    "correction hurts": ("embedding correction", good(corrected=[a - 0.05 for a in PLAIN]), "does not hold", "Δacc"),
    "correction unclear": ("embedding correction",
                           good(corrected=[a + d for a, d in zip(PLAIN, (0.03, -0.02, 0.025, -0.01, 0.02))]),
                           "inconclusive", "Δacc"),
    "correction no change": ("embedding correction", good(), "holds", "margin"),
    "droptoken not learned": ("DropToken accuracy", good(accuracy=_with(0.0, [0.56, 0.565, 0.56])), "not measured",
                              "did not learn"),
    "droptoken one seed": ("DropToken accuracy", good(accuracy={r: v[:1] for r, v in good().accuracy.items()}),
                           "not measured", "quick mode"),
    "droptoken only r = 0": ("DropToken accuracy", good(accuracy={0.0: BASE}), "not measured", "no DropToken ratio"),
    "r = 0.1 worse": ("DropToken accuracy", good(accuracy=_with(0.1, [a - 0.05 for a in BASE])), "does not hold",
                      "r = 0.1"),
    "r = 0.5 better": ("DropToken accuracy", good(accuracy=_with(0.5, [a + 0.05 for a in BASE])), "does not hold",
                       "r = 0.5"),
    "r = 0.1 unclear": ("DropToken accuracy",
                        good(accuracy=_with(0.1, [a + d for a, d in zip(BASE, (-0.02, 0.01, -0.015))])),
                        "inconclusive", "margin"),
    "droptoken as post": ("DropToken accuracy", good(), "holds", "r = 0.15"),
    "slower": ("DropToken speed", good(step_seconds={0.0: [0.10, 0.11, 0.10], 0.5: [0.15, 0.16, 0.15]}),
               "does not hold", "speed-up"),
    "timing noise": ("DropToken speed", good(step_seconds={0.0: [0.10] * 4, 0.5: [0.05, 0.15, 0.06, 0.16]}),
                     "inconclusive", "speed-up"),
    "too few timings": ("DropToken speed", good(step_seconds={0.0: [0.1, 0.1], 0.5: [0.05, 0.05]}), "not measured",
                        "fewer than"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_part_reaches_its_branch(case):
    part, m, expected, word = CASES[case]
    verdict, reason = repro.decide(m).parts[part]
    assert verdict == expected
    assert word in reason


@pytest.mark.parametrize("m, expected", [
    (good(), "holds"),
    (good(corrected=[a + 0.05 for a in PLAIN]), "does not hold"),
    (good(accuracy=_with(0.1, [a - 0.05 for a in BASE])), "does not hold"),
    (good(step_seconds={0.0: [0.10, 0.11, 0.10], 0.5: [0.15, 0.16, 0.15]}), "does not hold"),
    (good(accuracy={r: v[:1] for r, v in good().accuracy.items()}), "inconclusive"),  # quick mode: one part missing
    (good(mlm_loss=4.89, accuracy={0.0: BASE[:1]}, step_seconds={0.0: [0.1], 0.5: [0.05]}), "not measured"),
])
def test_entry_verdict_combines_the_parts(m, expected):
    judged = repro.decide(m)
    assert judged.verdict == expected
    assert all(k in judged.reason for k in judged.parts)


def test_equivalence_branches():
    assert repro.equivalence(Estimate(0.001, 0.001, 5), 0.01) == "holds"
    assert repro.equivalence(Estimate(0.05, 0.001, 5), 0.01) == "does not hold"
    assert repro.equivalence(Estimate(-0.05, 0.001, 5), 0.01) == "does not hold"
    assert repro.equivalence(Estimate(0.01, 0.005, 5), 0.01) == "inconclusive"
    assert repro.equivalence(Estimate(0.0, float("nan"), 1), 0.01) == "inconclusive"


def test_run_noise_is_the_larger_of_seed_spread_and_binomial_error():
    assert repro.run_noise([0.5, 0.5, 0.5], 100) == pytest.approx(0.05)  # no spread: binomial √(.25/100)
    assert repro.run_noise([0.4, 0.6], 10_000) == pytest.approx(0.1414, abs=1e-4)  # spread dominates
    assert repro.run_noise([0.7], 1000) == pytest.approx((0.21 / 1000) ** 0.5)


@pytest.mark.parametrize("quick", [True, False])
def test_run_builds_its_result_from_the_rule(monkeypatch, quick):
    cfg = repro.QUICK if quick else repro.FULL
    m = good()
    seeds = cfg["seeds"]
    acc = {r: [0.8 - 0.1 * r + 0.01 * s for s in range(seeds)] for r in cfg["ratios"]}
    corr = {"acc": {"plain": list(PLAIN[:cfg["ft_seeds"]]), "corrected": list(m.corrected[:cfg["ft_seeds"]])},
            "probe": {"plain": 0.7, "corrected": 0.7} if cfg["probe"] else {}, "rel_change": 0.1,
            "curve": [5.0, 4.0], "mlm": {"loss": 3.0, "se": 0.02, "unigram": 4.9}, "majority": 0.5, "n_dev": 1000,
            "steps": cfg["pretrain"], "seeds": cfg["ft_seeds"], "epochs": cfg["ft_epochs"]}
    drop = {"acc": acc, "majority": 0.56, "n_dev": 2000, "equivalence_max_abs": 1e-7, **cfg}
    secs = {r: [0.1 * (1 - r) + 0.001 * i for i in range(cfg["reps"])] for r in cfg["ratios"]}
    monkeypatch.setattr(repro, "correction_experiment", lambda c: corr)
    monkeypatch.setattr(repro, "droptoken_experiment", lambda c: drop)
    monkeypatch.setattr(repro, "time_steps", lambda ratios, reps: secs)
    monkeypatch.setattr(repro, "mae_monte_carlo",
                        lambda samples: {"model_average_gap": 0.2, "weight_average_gap": 0.0, "mc_std_error": 1e-3})
    result = repro.run(quick=quick)
    expected = repro.decide(repro.Measurements(3.0, 0.02, 4.9, corr["acc"]["plain"], corr["acc"]["corrected"], 1000,
                                               0.5, acc, 2000, 0.56, secs))
    assert result.kind == "empirical" and result.verdict == expected.verdict and result.reason == expected.reason
    assert result.quick is quick and "no significant change" in result.post_figure
    assert "speed-up" in result.our_figure and f"{cfg['steps']} steps" in result.setup
    assert [row[-1] for row in result.tables[0].rows][-2:] == ["verified", "verified"]
    if quick:
        assert result.verdict == "inconclusive" and "quick mode" in result.reason


@pytest.mark.slow
def test_quick_run_end_to_end():
    result = repro.run(quick=True)
    assert result.kind == "empirical" and result.verdict in ("holds", "does not hold", "inconclusive", "not measured")
    assert result.numbers["droptoken"]["equivalence_max_abs"] < 1e-5
    assert set(result.numbers["droptoken"]["acc"]) == {str(r) for r in repro.QUICK["ratios"]}
