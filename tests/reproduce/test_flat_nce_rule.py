"""flat_nce: every branch of its rule on stand-in measurements, and the float32 mechanism it rests on."""

from __future__ import annotations

import pytest
import torch

from kexue.reproduce import flat_nce
from kexue.reproduce.flat_nce import Measurements, decide

UNDERFLOW = [0.40, 0.45, 0.42]
INFO = [0.960, 0.965, 0.970]


def _m(flat, info=INFO, underflow=UNDERFLOW, mechanism_ok=True, majority=0.10):
    return Measurements(mechanism_ok, underflow, info, flat, majority)


@pytest.mark.parametrize("flat,verdict,where", [
    ([0.980, 0.984, 0.991], "holds", "above 0"),        # paired gains 0.020, 0.019, 0.021
    ([0.940, 0.946, 0.949], "does not hold", "below 0"),  # paired losses
    ([0.970, 0.960, 0.975], "inconclusive", "across 0"),  # +0.010, −0.005, +0.005
])
def test_the_comparison_branches(flat, verdict, where):
    v, reason = decide(_m(flat))
    assert v == verdict and where in reason and "42.3 %" in reason


def test_a_failed_mechanism_does_not_hold():
    v, reason = decide(_m([0.98, 0.98, 0.99], mechanism_ok=False))
    assert v == "does not hold" and "mechanism" in reason


def test_a_model_that_did_not_learn_is_not_measured():
    v, reason = decide(_m([0.10, 0.11, 0.09], info=INFO))
    assert v == "not measured" and reason.startswith("the model did not learn: FlatNCE")
    v, _ = decide(_m(INFO, info=[0.10, 0.10, 0.10]))
    assert v == "not measured"


def test_no_underflow_means_the_claim_is_not_tested():
    v, reason = decide(_m([0.98, 0.99, 0.99], underflow=[0.0, 0.001, 0.0]))
    assert v == "inconclusive" and "does not test the claim" in reason


def test_float32_mechanism_checks_pass_on_enough_draws():
    m = flat_nce.mechanism()
    assert all(m["checks"].values())
    assert m["tiny"].sum() > 100


def test_easy_augmentation_is_noise_only():
    out = flat_nce._easy(torch.zeros(4000, 64), torch.Generator().manual_seed(0))
    assert out.mean().abs() < 0.01 and out.std().item() == pytest.approx(flat_nce.NOISE_U, rel=0.02)
