"""The verdict rules of realformer and talking_heads (kexue.reproduce._mlm): every branch on stand-in losses."""

from __future__ import annotations

import math

import pytest

from kexue.reproduce import _mlm, realformer, talking_heads

LRS = (1e-3, 3e-3)
UNI = 5.45  # unigram loss
LOGV = math.log(1000)


def losses(post_lo, post_hi, real_lo, real_hi):
    return {("Post-LN", 1e-3): post_lo, ("Post-LN", 3e-3): post_hi,
            ("RealFormer", 1e-3): real_lo, ("RealFormer", 3e-3): real_hi}


def test_filled_scores_a_diverged_run_as_log_v_and_best_lr():
    assert _mlm.filled([5.0, math.nan, math.inf], LOGV) == [5.0, LOGV, LOGV]
    ls = losses([5.0, 5.0], [math.nan, 4.0], [5.0, 5.0], [4.0, 4.0])
    assert _mlm.best_lr(ls, "Post-LN", LRS, LOGV) == 1e-3  # (LOGV + 4) / 2 > 5
    assert _mlm.best_lr(ls, "RealFormer", LRS, LOGV) == 3e-3


def test_learned_guard_needs_a_clear_margin_below_the_unigram_loss():
    ok = losses([5.0, 5.01, 4.99], [5.4] * 3, [4.9, 4.91, 4.89], [5.0] * 3)
    assert _mlm.learned_guard(ok, ("Post-LN", "RealFormer"), LRS, UNI, LOGV) is None
    stuck = losses([5.55, 5.54, 5.56], [5.6] * 3, [4.9, 4.91, 4.89], [5.0] * 3)
    why = _mlm.learned_guard(stuck, ("Post-LN", "RealFormer"), LRS, UNI, LOGV)
    assert why is not None and why.startswith("the model did not learn: Post-LN")
    barely = losses([5.44, 5.43, 5.42], [5.6] * 3, [4.9, 4.91, 4.89], [5.0] * 3)  # below, but by < LEARN_MARGIN
    assert _mlm.learned_guard(barely, ("Post-LN",), LRS, UNI, LOGV) is not None


@pytest.mark.parametrize(
    ("real_lo", "expected"),
    [
        ([4.90, 4.91, 4.89], "holds"),  # RealFormer 0.1 lower on every seed
        ([5.10, 5.11, 5.09], "does not hold"),  # 0.1 higher
        ([4.95, 5.05, 5.00], "inconclusive"),  # within the seed spread
    ],
)
def test_decide_gain(real_lo, expected):
    ls = losses([5.0, 5.01, 4.99], [5.5] * 3, real_lo, [5.5] * 3)
    v, why = _mlm.decide_gain(ls, "RealFormer", "Post-LN", LRS, UNI, LOGV)
    assert v == expected and "best lr" in why


def test_decide_gain_not_measured_and_one_seed_is_inconclusive():
    ls = losses([5.5, 5.5, 5.5], [5.5] * 3, [4.9] * 3, [5.0] * 3)
    assert _mlm.decide_gain(ls, "RealFormer", "Post-LN", LRS, UNI, LOGV)[0] == "not measured"
    one = losses([5.0], [5.5], [4.8], [4.9])
    assert _mlm.decide_gain(one, "RealFormer", "Post-LN", LRS, UNI, LOGV)[0] == "inconclusive"  # no s.e.


@pytest.mark.parametrize(
    ("post_hi", "real_hi", "expected", "why"),
    [
        ([5.50, 5.52, 5.51], [4.80, 4.81, 4.79], "holds", "below the learning threshold"),  # Post-LN stalls
        ([math.nan] * 3, [4.9, 4.9, 4.91], "holds", "below the learning threshold"),  # Post-LN diverges
        ([5.10, 5.11, 5.12], [5.50, 5.52, 5.51], "does not hold", "below the learning threshold"),  # Real stalls
        ([5.20, 5.21, 5.19], [5.10, 5.35, 5.20], "inconclusive", "below the learning threshold"),  # within noise
        ([4.80, 4.81, 4.79], [4.80, 4.81, 4.79], "inconclusive", "does not test robustness"),  # Post-LN not hurt
        ([5.50, 5.52, 5.51], [5.49, 5.50, 5.48], "does not hold", "neither learned"),  # Real fails where Post fails
    ],
)
def test_decide_robustness(post_hi, real_hi, expected, why):
    ls = losses([5.0, 5.01, 4.99], post_hi, [4.95, 4.96, 4.94], real_hi)
    v, reason = _mlm.decide_robustness(ls, "RealFormer", "Post-LN", 1e-3, 3e-3, UNI, LOGV)
    assert v == expected and why in reason


def test_learned_amount_is_zero_for_stalled_and_diverged_runs():
    ls = {("a", 1e-3): [5.5, math.nan, UNI - _mlm.LEARN_MARGIN - 0.2]}
    assert _mlm.learned_amount(ls, "a", 1e-3, UNI, LOGV) == pytest.approx([0.0, 0.0, 0.2])


def test_decide_robustness_not_measured_when_the_low_lr_did_not_learn():
    ls = losses([5.5, 5.5, 5.5], [5.5] * 3, [4.95] * 3, [4.9] * 3)
    v, why = _mlm.decide_robustness(ls, "RealFormer", "Post-LN", 1e-3, 3e-3, UNI, LOGV)
    assert v == "not measured" and "did not learn" in why


@pytest.mark.parametrize(
    ("real_lo", "post_hi", "real_hi", "expected"),
    [
        ([4.90, 4.91, 4.89], [5.50, 5.52, 5.51], [4.95, 4.96, 4.94], "holds"),  # lower loss and robust
        ([5.10, 5.11, 5.09], [5.50, 5.52, 5.51], [5.20, 5.21, 5.19], "does not hold"),  # worse at best lr
        ([4.95, 5.05, 5.00], [5.50, 5.52, 5.51], [5.20, 5.21, 5.19], "inconclusive"),  # gain within noise
        ([4.90, 4.91, 4.89], [5.30, 5.31, 5.29], [5.50, 5.51, 5.49], "does not hold"),  # RealFormer stalls at 3e-3
        ([4.90, 4.91, 4.89], [4.80, 4.81, 4.79], [4.75, 4.76, 4.74], "inconclusive"),  # range untested
    ],
)
def test_realformer_decide(real_lo, post_hi, real_hi, expected):
    v, why = realformer.decide(losses([5.0, 5.01, 4.99], post_hi, real_lo, real_hi), LRS, UNI, LOGV)
    assert v == expected and "robustness" in why


def test_realformer_decide_not_measured():
    v, why = realformer.decide(losses([5.5] * 3, [5.5] * 3, [5.5] * 3, [5.5] * 3), LRS, UNI, LOGV)
    assert v == "not measured" and why.startswith("the model did not learn")
    # both learn at their best lr (3e-3), but the robustness part needs the low lr to have learned too
    v, why = realformer.decide(losses([5.5] * 3, [4.9, 4.91, 4.89], [5.5] * 3, [4.8, 4.81, 4.79]), LRS, UNI, LOGV)
    assert v == "not measured" and "at lr 0.001" in why


@pytest.mark.parametrize(
    ("th", "expected"),
    [
        ([4.90, 4.91, 4.89], "holds"),
        ([5.10, 5.11, 5.09], "does not hold"),
        ([4.95, 5.05, 5.00], "inconclusive"),
        ([5.50, 5.50, 5.50], "not measured"),
    ],
)
def test_talking_heads_decide(th, expected):
    ls = {("standard", 1e-3): [5.0, 5.01, 4.99], ("standard", 3e-3): [5.5] * 3,
          ("talking heads", 1e-3): th, ("talking heads", 3e-3): [5.5] * 3}
    assert talking_heads.decide(ls, LRS, UNI, LOGV)[0] == expected


def test_summary_rows_count_diverged_runs():
    rows = _mlm.summary_rows({("a", 1e-3): {"eval": [5.0, math.nan, 4.0]}})
    assert rows[0][:3] == ["a", 1e-3, 4.5] and rows[0][-1] == 1


def test_realformer_decide_with_one_lr_leaves_robustness_out():
    ls = {("Post-LN", 1e-3): [5.0, 5.01, 4.99], ("RealFormer", 1e-3): [4.90, 4.91, 4.89]}
    v, why = realformer.decide(ls, (1e-3,), UNI, LOGV)
    assert v == "holds" and "robustness not measured in quick mode" in why
