"""key_size: the rank checks (math part, fast) and every branch of the rules on stand-in KLs and accuracies."""

from __future__ import annotations

import pytest
import torch

from kexue.reproduce import key_size as ks

BASE = [1.5, 1.55, 1.6]
GOOD_KL = {4: [0.70, 0.71, 0.72], 8: [0.36, 0.37, 0.38], 16: [0.11, 0.12, 0.125], 32: [0.012, 0.013, 0.014],
           64: [1e-5, 2e-5, 1.5e-5]}


def test_rank_checks_all_verified():
    checks = ks.rank_checks()
    assert len(checks) == 4 and all(checks.values())


def test_plain_head_cannot_represent_the_targets_but_mixed_heads_can():
    """The targets of part 3 are, by construction, what 8 talking heads of k = 8 express exactly."""
    g = ks.mixed_logits(0)
    assert g.shape == (ks.HEADS, ks.N, ks.N)
    assert all(int(torch.linalg.matrix_rank(gi)) > ks.HEAD_K + 2 for gi in g)


def test_kl_uniform_is_zero_for_the_uniform_pattern():
    assert ks.kl_uniform(torch.full((ks.N, ks.N), 1 / ks.N)) == pytest.approx(0.0, abs=1e-12)


def _kl(changes=None):
    kl = {k: list(v) for k, v in GOOD_KL.items()}
    kl.update(changes or {})
    return kl


@pytest.mark.parametrize(
    ("kl", "expected"),
    [
        (_kl(), "holds"),
        (_kl({32: [1e-5, 2e-5, 1e-5]}), "does not hold"),  # k = 32 near zero too: no bottleneck below n
        (_kl({16: [0.70, 0.71, 0.72]}), "does not hold"),  # k = 16 fits worse than k = 8
        (_kl({64: [1e-5, 0.5e-3, 1e-2]}), "inconclusive"),  # k = 64 near zero on some seeds only
        (_kl({4: [0.9, 1.0, 1.6]}), "not measured"),  # k = 4 not below the uniform pattern
    ],
)
def test_decide_bottleneck(kl, expected):
    assert ks.decide_bottleneck(BASE, kl)[0] == expected


@pytest.mark.parametrize(
    ("plain", "talking", "expected"),
    [
        ([0.24, 0.25, 0.23], [1e-8, 2e-8, 1e-8], "holds"),  # near zero (floored at 1e-3 × baseline): > 100×
        ([0.24, 0.25, 0.23], [0.20, 0.21, 0.19], "does not hold"),  # better, but far less than 10×
        ([0.24, 0.25, 0.23], [0.30, 0.31, 0.29], "does not hold"),  # worse
        ([0.24, 0.25, 0.23], [1e-8, 0.2, 0.02], "inconclusive"),
        ([0.24, 1.6, 0.23], [1e-8, 2e-8, 1e-8], "not measured"),  # plain heads not below the uniform pattern
    ],
)
def test_decide_talking(plain, talking, expected):
    assert ks.decide_talking(BASE, plain, talking)[0] == expected


@pytest.mark.parametrize(
    ("acc", "expected"),
    [
        ({"k8": [0.50, 0.52, 0.51], "k32": [0.70, 0.71, 0.72], "k8 talking": [0.60, 0.61, 0.62]}, "holds"),
        ({"k8": [0.50, 0.52, 0.51], "k32": [0.40, 0.41, 0.42], "k8 talking": [0.60, 0.61, 0.62]}, "does not hold"),
        ({"k8": [0.50, 0.52, 0.51], "k32": [0.45, 0.60, 0.52], "k8 talking": [0.60, 0.61, 0.62]}, "inconclusive"),
        ({"k8": [0.25, 0.26, 0.25], "k32": [0.70, 0.71, 0.72], "k8 talking": [0.60, 0.61, 0.62]}, "holds"),  # only
        # the larger key_size learns: the bottleneck lifted
        ({"k8": [0.30, 0.31, 0.30], "k32": [0.29, 0.30, 0.31], "k8 talking": [0.31, 0.30, 0.30]}, "not measured"),
    ],
)
def test_decide_recall(acc, expected):
    assert ks.decide_recall(acc)[0] == expected


def _m(**changes):
    m = ks.Measurements(math_ok=True, baseline=BASE, kl=_kl(), th_baseline=BASE, plain=[0.24, 0.25, 0.23],
                        talking=[1e-8, 2e-8, 1e-8])
    for k, v in changes.items():
        setattr(m, k, v)
    return m


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "holds"),
        ({"math_ok": False}, "does not hold"),
        ({"talking": [0.20, 0.21, 0.19]}, "does not hold"),
        ({"talking": [1e-8, 0.2, 0.02]}, "inconclusive"),
        ({"plain": [0.24, 1.6, 0.23]}, "not measured"),
        ({"kl": _kl({4: [0.9, 1.0, 1.6]})}, "not measured"),
        ({"recall": {"k8": [0.50, 0.52, 0.51], "k32": [0.45, 0.60, 0.52], "k8 talking": [0.6, 0.61, 0.62]}},
         "inconclusive"),
        ({"recall": {"k8": [0.30, 0.31, 0.30], "k32": [0.29, 0.3, 0.31], "k8 talking": [0.31, 0.3, 0.3]}},
         "holds"),  # recall did not learn: left out, said in the reason
    ],
)
def test_decide(changes, expected):
    v, why = ks.decide(_m(**changes))
    assert v == expected
    if "recall" in changes and expected == "holds":
        assert "recall not measured" in why
