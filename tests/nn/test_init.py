"""Initialisers against scipy, torch's own initialisers and the fan formulas derived a second way."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.nn import init as I

stats = pytest.importorskip("scipy.stats")


def test_variance_ratio_matches_scipy():
    for cut in (1.0, 2.0, 3.0):
        assert I.truncnorm_variance_ratio(cut) == pytest.approx(stats.truncnorm(-cut, cut).var(), rel=1e-12)
    assert I.truncnorm_std_factor(2.0) == pytest.approx(1.1368472, abs=1e-7)


def test_torch_trunc_normal_does_not_truncate_at_small_std():
    # the pitfall: torch's bounds are absolute (±2), i.e. ±100σ at std 0.02, so the samples are a plain normal
    g = torch.Generator().manual_seed(0)
    w = torch.nn.init.trunc_normal_(torch.empty(10**6), std=0.02, generator=g)
    assert w.std().item() == pytest.approx(0.02, rel=3e-3)
    assert w.abs().max().item() > 2 * 0.02


def test_corrected_trunc_normal_has_the_asked_std_and_is_cut():
    g = torch.Generator().manual_seed(0)
    w = I.trunc_normal_(torch.empty(10**6), std=0.02, generator=g)
    assert w.std().item() == pytest.approx(0.02, rel=2e-3)
    assert w.abs().max().item() <= 2 * 0.02 * I.truncnorm_std_factor(2.0) + 1e-9
    ks = stats.kstest(w.double().numpy() / (0.02 * I.truncnorm_std_factor()), stats.truncnorm(-2, 2).cdf)
    assert ks.pvalue > 1e-3


def test_bert_tf_std_is_0176():
    g = torch.Generator().manual_seed(1)
    w = I.bert_tf_(torch.empty(10**6), generator=g)
    assert w.std().item() == pytest.approx(0.02 * math.sqrt(stats.truncnorm(-2, 2).var()), rel=2e-3)


def test_bert_hf_matches_transformers_init():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(hidden_size=256, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=1024, vocab_size=100)
    torch.manual_seed(0)
    theirs = transformers.BertModel(cfg).encoder.layer[0].intermediate.dense.weight.detach().flatten().numpy()
    ours = I.bert_hf_(torch.empty(10**5), generator=torch.Generator().manual_seed(1)).numpy()
    assert stats.ks_2samp(ours, theirs).pvalue > 1e-3


def test_fans_pytorch_layout():
    assert I.fans(torch.empty(256, 64)) == (64, 256)
    assert I.fans(torch.empty(8, 3, 5, 5)) == (75, 200)
    with pytest.raises(ValueError, match=r"at least 2 dimensions, got shape \(5,\)"):
        I.fans(torch.empty(5))


def test_fan_formulas_and_order():
    m, n = 64, 256
    assert I.fan_average(m, n, "fan_avg") == (m + n) / 2
    assert I.fan_average(m, n, "fan_geo") == pytest.approx(math.sqrt(m * n))
    ch = I.fan_average(m, n, "fan_ch")
    assert ch >= I.fan_average(m, n, "fan_avg") >= I.fan_average(m, n, "fan_geo")
    # fan_ch minimises (mt−1)² + (nt−1)² over t: check against a dense grid
    t = torch.linspace(1e-4, 0.05, 200001, dtype=torch.float64)
    best = t[((m * t - 1) ** 2 + (n * t - 1) ** 2).argmin()].item()
    assert 1 / ch == pytest.approx(best, rel=1e-3)
    # fan_geo keeps an m→n→m pair's second moment: mn·t² = 1
    assert m * n / I.fan_average(m, n, "fan_geo") ** 2 == pytest.approx(1.0)


def test_fan_avg_is_xavier_and_fan_in_is_kaiming_linear():
    w = torch.empty(512, 128)
    g = torch.Generator().manual_seed(0)
    ours = I.variance_scaling_(w.clone(), "fan_avg", generator=g).std().item()
    xavier = torch.nn.init.xavier_normal_(w.clone()).std().item()
    assert ours == pytest.approx(xavier, rel=1e-2)
    assert ours == pytest.approx(math.sqrt(2 / (512 + 128)), rel=1e-2)
    fan_in = I.variance_scaling_(w.clone(), "fan_in").std().item()
    kaiming = torch.nn.init.kaiming_normal_(w.clone(), nonlinearity="linear").std().item()
    assert fan_in == pytest.approx(kaiming, rel=1e-2)


@pytest.mark.parametrize("dist", ["normal", "uniform", "truncated_normal"])
def test_distributions_share_the_variance(dist):
    w = I.variance_scaling_(torch.empty(1000, 400), "fan_geo", distribution=dist,
                            generator=torch.Generator().manual_seed(2))
    assert w.var().item() == pytest.approx(1 / math.sqrt(1000 * 400), rel=1e-2)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match=r"expected mode to be one of \['fan_in', .*\], got 'fan_max'"):
        I.fan_average(1, 2, "fan_max")
    with pytest.raises(ValueError, match=r"expected fan_out > 0.0, got 0"):
        I.fan_average(1, 0, "fan_in")
    with pytest.raises(ValueError, match=r"expected scheme to be one of \['bert_hf', .*'fan_ch'\], got 'glorot'"):
        I.init_weight_(torch.empty(2, 2), "glorot", 0.02)
    with pytest.raises(ValueError, match="expected cut > 0.0, got 0"):
        I.truncnorm_variance_ratio(0)
    with pytest.raises(ValueError, match="expected std > 0.0, got -1"):
        I.trunc_normal_(torch.empty(2, 2), std=-1)
    with pytest.raises(ValueError, match="expected scale > 0.0, got 0"):
        I.variance_scaling_(torch.empty(2, 2), scale=0)
    with pytest.raises(ValueError, match=r"expected distribution to be one of \['normal', 'uniform', "
                                         r"'truncated_normal'\], got 'laplace'"):
        I.variance_scaling_(torch.empty(2, 2), distribution="laplace")


def test_choice_tuples_are_the_literals():
    from typing import get_args

    assert I.INIT_SCHEMES == ("bert_hf", "bert_tf", "trunc_normal", *I.FAN_MODES)
    assert I.FAN_MODES == get_args(I.FanMode) and I.DISTRIBUTIONS == get_args(I.Distribution)
