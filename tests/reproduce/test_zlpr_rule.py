"""The `zlpr` reproduction's rule on stand-in measurements (every branch), and its measuring helpers: micro/macro-F1
against scikit-learn, the paired bootstrap, the seed/test-sample standard error, one tiny comparison run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kexue.reproduce import zlpr as Z
from kexue.reproduce.rules import Estimate


def setting(half=(0.02, 0.004), tuned=(0.0, 0.004), best=(0.5, 0.01), constant=0.2, name="s") -> Z.Setting:
    return Z.Setting(name, Estimate(*half, 3), Estimate(*tuned, 3), Estimate(*best, 3), constant)


GROWS = Estimate(0.03, 0.005, 3)


def test_holds_when_no_worse_everywhere_and_the_gain_grows():
    verdict, reason = Z.decide([setting(name="a"), setting(name="b")], GROWS)
    assert verdict == "holds"
    assert "a: vs BCE@0.5 holds" in reason and "grows with C: holds" in reason


def test_does_not_hold_when_clearly_below_tuned_bce():
    verdict, reason = Z.decide([setting(), setting(tuned=(-0.058, 0.0075))], GROWS)
    assert verdict == "does not hold"
    assert "vs tuned BCE does not hold" in reason


def test_does_not_hold_when_clearly_below_bce_at_half():
    assert Z.decide([setting(half=(-0.05, 0.005))], None)[0] == "does not hold"


def test_does_not_hold_when_the_gain_shrinks_with_c():
    assert Z.decide([setting()], Estimate(-0.04, 0.005, 3))[0] == "does not hold"


def test_inconclusive_when_an_interval_straddles_the_margin():
    verdict, reason = Z.decide([setting(half=(-0.0155, 0.0064))], GROWS)
    assert verdict == "inconclusive"
    assert "vs BCE@0.5 inconclusive" in reason


def test_inconclusive_when_the_trend_is_unclear():
    assert Z.decide([setting()], Estimate(0.01, 0.01, 3))[0] == "inconclusive"


def test_not_measured_when_no_setting_beats_the_constant_label_set():
    verdict, reason = Z.decide([setting(best=(0.31, 0.01), constant=0.309)], GROWS)
    assert verdict == "not measured"
    assert reason.startswith("the model did not learn")


def test_a_setting_that_did_not_learn_is_left_out_and_named():
    verdict, reason = Z.decide([setting(name="ok"), setting(name="flat", best=(0.3, 0.02), tuned=(-0.2, 0.01),
                                                            constant=0.31)], None)
    assert verdict == "holds"
    assert "left out, the model did not learn: flat" in reason


def test_f1_helpers_match_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = (rng.random((80, 12)) < 0.15).astype(int)
    pred = rng.random((80, 12)) < 0.2
    assert Z._micro_f1(y, pred) == pytest.approx(metrics.f1_score(y, pred, average="micro"))
    assert Z._macro_f1(y, pred) == pytest.approx(metrics.f1_score(y, pred, average="macro", zero_division=0))


def test_bootstrap_is_paired_and_centred_on_the_observed_f1():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 10)) < 0.2).astype(int)
    a = np.logical_xor(y == 1, rng.random(y.shape) < 0.1)
    boot = Z.boot_micro_f1(y, {"a": a, "same": a.copy()}, n_boot=300)
    assert np.array_equal(boot["a"], boot["same"])  # the same resamples for every method
    assert boot["a"].mean() == pytest.approx(Z._micro_f1(y, a), abs=0.01)
    assert 0.002 < boot["a"].std() < 0.05


def test_combine_takes_the_larger_of_the_seed_and_the_test_sample_error():
    one = Z.combine([0.1], [0.02])
    assert one.mean == 0.1 and one.se == pytest.approx(0.02)
    agree = Z.combine([0.1, 0.1, 0.1], [0.03, 0.03, 0.03])
    assert agree.se == pytest.approx(0.03 / math.sqrt(3))
    spread = Z.combine([0.0, 0.2, 0.4], [0.01, 0.01, 0.01])
    assert spread.se == pytest.approx(0.2 / math.sqrt(3))


def test_compare_keeps_each_methods_best_validation_epoch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 8))
    y = (x[:, :4] + 0.3 * rng.standard_normal((300, 4)) > 0.8).astype(np.int64)
    out = Z.compare(x[:200], y[:200], x[200:250], y[200:250], x[250:], y[250:], 0, 16, 3, 50)
    assert set(out["preds"]) == set(Z.METHODS)
    assert all(p.shape == (50, 4) and p.dtype == bool for p in out["preds"].values())
    assert all(1 <= e <= 3 for e in out["epochs"].values())
    assert 0.05 <= out["threshold"]["BCE @ tuned threshold"] <= 0.95
    setting, extra = Z.summarize("tiny", [out])
    assert setting.best.mean >= max(extra["f1"][m][0][0] for m in Z.METHODS) - 1e-12
