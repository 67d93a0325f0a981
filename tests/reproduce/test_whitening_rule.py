"""The `whitening` reproduction's rule on stand-in measurements (every branch), :func:`clear_gain`, the batched
tie-aware ranks and the paired bootstrap over pairs; and a quick run without STS-B (synthetic part only)."""

from __future__ import annotations

import numpy as np
import pytest

from kexue.embed.sts import rankdata, spearman
from kexue.reproduce import whitening as W
from kexue.reproduce.rules import Estimate, clear_gain

SYN = Estimate(0.85, 0.02, 2000)
TRUNC = Estimate(0.023, 0.002, 2000)
STS = Estimate(0.134, 0.025, 500)


@pytest.mark.parametrize("effect,minimum,want", [
    (Estimate(0.10, 0.02, 9), 0.02, "holds"),
    (Estimate(0.015, 0.002, 9), 0.02, "does not hold"),  # real but smaller than the claimed size
    (Estimate(-0.05, 0.01, 9), 0.0, "does not hold"),
    (Estimate(0.03, 0.02, 9), 0.02, "inconclusive"),  # interval reaches below 0
    (Estimate(0.015, 0.005, 9), 0.02, "inconclusive"),  # above 0 but the mean is short of the size
    (Estimate(float("nan"), 0.01, 9), 0.0, "inconclusive"),
])
def test_clear_gain(effect, minimum, want):
    assert clear_gain(effect, minimum) == want


def test_holds_when_control_and_sts_gain_clearly():
    verdict, reason = W.decide(True, SYN, TRUNC, STS)
    assert verdict == "holds"
    assert "emb_avg whitening-256 − raw on STS-B holds" in reason


def test_not_measured_when_the_mechanics_fail():
    verdict, reason = W.decide(False, SYN, TRUNC, STS)
    assert verdict == "not measured" and "mechanics" in reason


def test_does_not_hold_when_whitening_lowers_sts():
    assert W.decide(True, SYN, TRUNC, Estimate(-0.03, 0.01, 500))[0] == "does not hold"


def test_does_not_hold_when_truncation_hurts_the_control():
    assert W.decide(True, SYN, Estimate(-0.02, 0.002, 2000), STS)[0] == "does not hold"


def test_inconclusive_when_the_sts_gain_is_within_noise():
    verdict, reason = W.decide(True, SYN, TRUNC, Estimate(0.03, 0.02, 500))
    assert verdict == "inconclusive"
    assert "on STS-B inconclusive" in reason


def test_without_sts_the_control_decides_and_says_so():
    verdict, reason = W.decide(True, SYN, TRUNC, None)
    assert verdict == "holds"
    assert "STS-B part not run" in reason
    assert W.decide(True, Estimate(0.0, 0.005, 9), TRUNC, None)[0] == "does not hold"


def test_rank_rows_matches_rankdata_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (6, 40)).astype(float)
    ranks = W.rank_rows(a)
    for row, want in zip(ranks, a):
        np.testing.assert_allclose(row, rankdata(want))


def test_paired_spearman_observed_difference_and_bootstrap_error():
    rng = np.random.default_rng(1)
    gold = np.round(rng.uniform(0, 5, 300), 1)  # ties, as in STS scores
    ours, base = gold + rng.standard_normal(300), gold + 2 * rng.standard_normal(300)
    e = W.paired_spearman(ours, base, gold, n_boot=400)
    assert e.mean == pytest.approx(spearman(ours, gold) - spearman(base, gold), abs=1e-12)
    loop = np.random.default_rng(7)
    diffs = []
    for _ in range(400):
        idx = loop.integers(0, 300, 300)
        diffs.append(spearman(ours[idx], gold[idx]) - spearman(base[idx], gold[idx]))
    assert e.se == pytest.approx(np.std(diffs, ddof=1), rel=0.2)
    same = W.paired_spearman(ours, ours, gold, n_boot=50)
    assert same.mean == 0 and same.se == 0  # paired: identical vectors differ by exactly 0 on every resample


def test_quick_run_without_sts_data_uses_the_synthetic_part(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    r = W.run(quick=True)
    assert r.kind == "empirical" and r.verdict == "holds"
    assert r.skipped and "STS-B" in r.skipped[0]
    assert "STS-B part not run" in r.reason and "synthetic control only" in r.our_figure
