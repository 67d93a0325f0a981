"""kexue.stats.leaderboard against scipy's gmean, hmean and kendalltau, and the post's rules (one task list,
positive scores or a shift, pairs averaged first, decimal commas parsed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import gmean, hmean, kendalltau

from kexue.stats.leaderboard import kendall_tau_between_means, means, rank_table

TASKS = ["CoLA", "SST-2", "MRPC", "QQP"]


def test_means_equal_scipy_over_exactly_the_task_list():
    rng = np.random.default_rng(0)
    for _ in range(20):
        s = rng.uniform(1, 100, 6)
        row = {f"t{i}": float(v) for i, v in enumerate(s)}
        tasks = ["t0", "t2", "t3", "t5"]
        m = means(row, tasks)
        sel = s[[0, 2, 3, 5]]
        assert m.am == pytest.approx(sel.mean(), rel=1e-13)
        assert m.gm == pytest.approx(gmean(sel), rel=1e-13)
        assert m.hm == pytest.approx(hmean(sel), rel=1e-13)
        assert m.am >= m.gm >= m.hm
        assert m.tasks == tuple(tasks)


def test_a_row_lacking_a_task_is_refused():
    with pytest.raises(ValueError, match=r"got none for \['QQP'\]"):
        means({"CoLA": 60.0, "SST-2": 95.0, "MRPC": 88.0}, TASKS)


def test_non_positive_scores_need_a_shift_and_the_shift_is_documented():
    row = {"CoLA": -5.0, "SST-2": 95.0, "MRPC": 88.0, "QQP": 70.0}
    with pytest.raises(ValueError, match=r"scores\['CoLA'\] = -5 with shift 0"):
        means(row, TASKS)
    m = means(row, TASKS, shift=100.0)
    shifted = np.array([95.0, 195.0, 188.0, 170.0])
    assert m.am == pytest.approx(np.mean([-5, 95, 88, 70]))
    assert m.gm == pytest.approx(gmean(shifted) - 100)
    assert m.hm == pytest.approx(hmean(shifted) - 100)
    assert m.am >= m.gm >= m.hm


def test_pairs_are_averaged_first_and_decimal_commas_parsed():
    row = {"CoLA": "60,5", "SST-2": "95.1", "MRPC": (88.0, 91.0), "QQP": "72,0/89,4"}
    m = means(row, TASKS)
    vals = np.array([60.5, 95.1, 89.5, 80.7])
    assert m.am == pytest.approx(vals.mean()) and m.gm == pytest.approx(gmean(vals))
    assert m.hm == pytest.approx(hmean(vals))


@pytest.mark.parametrize("bad", ["1,234.5", "1.234,5", "8O.5", "", "1/2/3"])
def test_ambiguous_or_malformed_strings_are_refused(bad):
    with pytest.raises(ValueError, match=r"scores\['CoLA'\]"):
        means({"CoLA": bad, "SST-2": 1.0, "MRPC": 1.0, "QQP": 1.0}, TASKS)


ROWS = {
    "Human": {"CoLA": 66.4, "SST-2": 97.8, "MRPC": 86.3, "QQP": 80.4},
    "A": {"CoLA": 69.0, "SST-2": 97.5, "MRPC": 92.0, "QQP": 76.0, "AX": 50.0},
    "B": {"CoLA": 68.0, "SST-2": 97.0, "MRPC": 91.0, "QQP": 75.5, "AX": 48.0},
    "C": {"CoLA": 40.0, "SST-2": 90.0, "MRPC": 80.0, "QQP": 70.0, "AX": 30.0},
}


def test_rank_table_orders_by_the_chosen_mean_and_shares_ranks():
    table = rank_table(ROWS, TASKS, "gm")
    values = {name: means(sc, TASKS).gm for name, sc in ROWS.items()}
    assert [r.name for r in table] == sorted(values, key=lambda n: -values[n])
    assert [r.rank for r in table] == [1, 2, 3, 4] and table[0].value == max(values.values())
    tied = rank_table({"x": {"a": 2.0}, "y": {"a": 3.0}, "z": {"a": 2.0}}, ["a"])
    assert [(r.rank, r.name) for r in tied] == [(1, "y"), (2, "x"), (2, "z")]


def test_kendall_tau_between_means_equals_scipy():
    rng = np.random.default_rng(1)
    tasks = [f"t{i}" for i in range(8)]
    for _ in range(10):
        rows = {f"m{j}": {t: float(v) for t, v in zip(tasks, rng.uniform(20, 100, 8))} for j in range(9)}
        taus = kendall_tau_between_means(rows, tasks)
        table = [means(r, tasks) for r in rows.values()]
        am, gm, hm = ([getattr(m, f) for m in table] for f in ("am", "gm", "hm"))
        assert taus.am_gm == pytest.approx(kendalltau(am, gm).statistic, abs=1e-12)
        assert taus.am_hm == pytest.approx(kendalltau(am, hm).statistic, abs=1e-12)
        assert taus.gm_hm == pytest.approx(kendalltau(gm, hm).statistic, abs=1e-12)


def test_kendall_tau_b_with_ties_equals_scipy_and_constant_is_nan():
    from kexue.stats.leaderboard import _kendall_tau_b

    a, b = [1.0, 2.0, 2.0, 3.0, 5.0], [2.0, 2.0, 1.0, 4.0, 4.0]
    assert _kendall_tau_b(a, b) == pytest.approx(kendalltau(a, b).statistic, abs=1e-12)
    assert math.isnan(_kendall_tau_b([1.0, 1.0], [1.0, 2.0]))


def test_the_posts_point_mixed_task_sets_flip_human():
    # consistent task set: the models beat Human under every mean; the paper's mixed rule (AM over the first tasks,
    # the models' GM/HM with a low extra column Human lacks) puts Human first under GM and HM
    tasks = TASKS
    for mean in ("am", "gm", "hm"):
        assert rank_table(ROWS, tasks, mean)[0].name == "A"
    human_gm = means(ROWS["Human"], tasks).gm
    model_gm = means(ROWS["A"], [*tasks, "AX"]).gm
    assert human_gm > model_gm
    assert kendall_tau_between_means(ROWS, tasks) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"rows\['Human'\].*got none for \['AX'\]"):
        rank_table(ROWS, [*tasks, "AX"], "gm")
