"""The `leaderboard_means` reproduction's rule on stand-in measurements (every branch), and its building blocks: the
generator's structure, the mixed rules' task lists and Human's rank."""

from __future__ import annotations

import numpy as np

from kexue.reproduce import leaderboard_means as L

LAST = {"am": 6, "gm": 6, "hm": 6}
FIRST = {"am": 6, "gm": 1, "hm": 1}


def test_verified_when_one_list_keeps_human_last_and_mixed_rules_put_it_first():
    verdict, reason = L.decide(LAST, FIRST, (0.92, 0.9), True, True, 6)
    assert verdict == "verified" and "Human last (6th)" in reason


def test_not_verified_when_one_list_puts_human_above_a_model():
    verdict, reason = L.decide({"am": 6, "gm": 5, "hm": 6}, FIRST, (0.92, 0.9), True, True, 6)
    assert verdict == "not verified" and "Human is not last" in reason


def test_not_verified_when_the_means_rank_differently():
    verdict, reason = L.decide(LAST, FIRST, (0.92, 0.6), True, True, 6)
    assert verdict == "not verified" and "do not rank alike" in reason
    assert L.decide(LAST, FIRST, (float("nan"), 0.9), True, True, 6)[0] == "not verified"


def test_not_verified_when_mixed_rules_leave_human_behind():
    verdict, reason = L.decide(LAST, {"am": 6, "gm": 1, "hm": 2}, (0.92, 0.9), True, True, 6)
    assert verdict == "not verified" and "do not put Human first" in reason


def test_not_verified_when_the_arithmetic_checks_fail():
    assert "AM ≥ GM ≥ HM" in L.decide(LAST, FIRST, (0.92, 0.9), False, True, 6)[1]
    assert "scipy" in L.decide(LAST, FIRST, (0.92, 0.9), True, False, 6)[1]


def test_board_and_the_mixed_rules():
    rows = L.board(np.random.default_rng(3), comma_human=True)
    assert set(rows) == {"Human", *L.MODELS} and "AX" not in rows["Human"]
    assert all(isinstance(v, str) and "," in v for v in rows["Human"].values())
    human = {t: float(str(v).replace(",", ".")) for t, v in rows["Human"].items()}
    for name in L.MODELS:
        gains = np.array([rows[name][t] - human[t] for t in L.TASKS])
        assert (gains < 0).sum() == 2 and gains.min() >= -1 and gains.max() <= 5
    mixed = L.mixed(rows)
    assert mixed["Human"].tasks == tuple(L.TASKS) and mixed["model A"].tasks == tuple(L.ALL_TASKS)
    assert mixed["model A"].am == L.consistent(rows)["model A"].am  # AM over the 10 tasks for every row
    table = L.consistent(rows)
    assert L.human_rank(table, "am") == 1 + sum(table[n].am > table["Human"].am for n in L.MODELS)


def test_tau_b_equals_scipy_with_and_without_ties():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(5)
    for _ in range(20):
        a, b = rng.integers(0, 4, 6).astype(float), rng.normal(size=6)
        b[:2] = b[2]
        ref = kendalltau(a, b).statistic
        assert (np.isnan(ref) and np.isnan(L.tau_b(a, b))) or abs(L.tau_b(a, b) - ref) < 1e-12
