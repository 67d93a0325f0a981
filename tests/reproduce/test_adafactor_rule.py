"""adafactor: every branch of its rule on stand-in measurements (final losses per seed, paired)."""

from __future__ import annotations

import pytest

from kexue.reproduce.adafactor import LOSS_MARGIN, Measurements, decide

UNIGRAM = 4.82
ADAM_LARGE = [3.50, 3.52, 3.48]
ADAM_SMALL = [4.20, 4.25, 4.22]


def _m(ada_large, ada_small, adam_large=ADAM_LARGE, adam_small=ADAM_SMALL, conformance=1e-16, memory_ok=True):
    return Measurements(conformance, memory_ok, UNIGRAM, adam_large, ada_large, adam_small, ada_small)


COMPARABLE = [3.55, 3.56, 3.54]   # 1.5 % worse than Adam: inside the 10 % margin
FAR_WORSE = [4.10, 4.12, 4.07]    # 17 % worse: outside it
SMALL_WORSE = [4.40, 4.46, 4.41]  # AdaFactor worse at batch 8 (Su's warning)
SMALL_BETTER = [4.10, 4.16, 4.11]
SMALL_SAME = [4.25, 4.20, 4.24]   # +0.05, −0.05, +0.02


@pytest.mark.parametrize("ada_large,ada_small,verdict,part", [
    (COMPARABLE, SMALL_WORSE, "holds", "AdaFactor worse"),
    (FAR_WORSE, SMALL_WORSE, "does not hold", "−0.35"),
    (COMPARABLE, SMALL_BETTER, "does not hold", "does not hold"),
    (COMPARABLE, SMALL_SAME, "inconclusive", "inconclusive"),
    ([3.80, 3.88, 3.75], SMALL_WORSE, "inconclusive", "inconclusive"),  # straddles the margin
])
def test_the_criterion_branches(ada_large, ada_small, verdict, part):
    v, reason = decide(_m(ada_large, ada_small))
    assert v == verdict and part in reason


def test_the_margin_is_ten_percent_of_adams_loss():
    assert LOSS_MARGIN == 0.10
    assert "−0.35" in decide(_m(COMPARABLE, SMALL_WORSE))[1]


def test_preconditions():
    v, reason = decide(_m(COMPARABLE, SMALL_WORSE, conformance=1e-6))
    assert v == "inconclusive" and "post's equations" in reason
    v, reason = decide(_m(COMPARABLE, SMALL_WORSE, memory_ok=False))
    assert v == "does not hold" and "m + n" in reason


def test_a_model_at_the_unigram_loss_is_not_measured():
    v, reason = decide(_m(COMPARABLE, SMALL_WORSE, adam_small=[4.83, 4.81, 4.82]))
    assert v == "not measured" and reason.startswith("the model did not learn: Adam, small batch")
    assert decide(_m([4.9, 4.9, 4.9], SMALL_WORSE))[0] == "not measured"
