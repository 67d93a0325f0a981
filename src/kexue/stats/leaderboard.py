"""Leaderboard means over one explicit task list: arithmetic, geometric and harmonic, ranks, and Kendall's τ between
the rankings they give.

Post: "开局一段扯，数据全靠编？真被一篇“神论文”气到了" (Hot air up front and made-up data throughout? Really
annoyed by an absurd paper), 2021-12-04, https://kexue.fm/archives/8783. The paper ("How not to Lie with a
Benchmark", arXiv 2112.01342) computed each mean over a different task subset (AM over 10 GLUE tasks, the models' GM
and HM over 11), which put Human first under GM and HM; over one task set the three means rank alike.

For K task scores s_i > 0: AM = (1/K)·Σs_i ≥ GM = exp((1/K)·Σ log s_i) ≥ HM = K/Σ(1/s_i).

What the API enforces (the post's pitfalls):

- One explicit ``tasks`` list for every row and every mean; a row that lacks one of them is refused (tasks the row
  has beyond the list are ignored: the list selects).
- GM and HM need positive scores (an MCC can be ≤ 0): a score ≤ 0 is refused unless ``shift`` c is given, and then
  GM = GM(s + c) − c and HM = HM(s + c) − c (AM is unchanged by such a shift), which keeps AM ≥ GM ≥ HM.
- A task reported as a pair (F1/accuracy, Pearson/Spearman) is averaged first, as GLUE does: give a 2-tuple or the
  string ``"88.9/84.2"``.
- Strings are parsed explicitly: ``"80.5"`` and the decimal comma ``"80,5"`` both read 80.5; a string with both
  separators or several of one (``"1,234.5"``) is refused rather than guessed.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

from .._validate import check_choice, check_float

MeanKind = Literal["am", "gm", "hm"]
#: One task's score: a number, a string (decimal point or comma), or a pair averaged first (a 2-tuple or 2-list, or
#: the string "a/b").
Score = float | str | tuple[float | str, float | str]

_NUMBER = re.compile(r"[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?")


class Means(NamedTuple):
    """What :func:`means` returns: the arithmetic, geometric and harmonic means of one row over ``tasks`` (kept
    beside the numbers, as the post asks)."""

    am: float
    gm: float
    hm: float
    tasks: tuple[str, ...]


class Ranked(NamedTuple):
    """One line of :func:`rank_table`: ``rank`` (1 = best; tied values share the lowest rank), ``name``, ``value``."""

    rank: int
    name: str
    value: float


class MeanTaus(NamedTuple):
    """What :func:`kendall_tau_between_means` returns: Kendall's τ-b between the rankings of the rows by each pair of
    means (1 = the same order)."""

    am_gm: float
    am_hm: float
    gm_hm: float


def _number(text: str, where: str) -> float:
    s = text.strip()
    if s.count(",") + s.count(".") > 1:
        raise ValueError(f"expected {where} to have at most one decimal separator ('.' or ','), got {text!r}")
    if not _NUMBER.fullmatch(s):
        raise ValueError(f"expected {where} to be a number with a decimal point or a decimal comma, got {text!r}")
    return float(s.replace(",", "."))


def _value(score: object, where: str) -> float:
    """One task's score as a float: numbers as they are, strings parsed, pairs averaged."""
    if isinstance(score, str) and "/" in score:
        parts = score.split("/")
        if len(parts) != 2:
            raise ValueError(f"expected {where} to be a number or a pair 'a/b', got {score!r}")
        score = (parts[0], parts[1])
    if isinstance(score, (tuple, list)):
        if len(score) != 2:
            raise ValueError(f"expected {where} to be a number or a pair of numbers, got {len(score)} values")
        return (_value(score[0], where) + _value(score[1], where)) / 2.0
    if isinstance(score, str):
        x = _number(score, where)
    elif isinstance(score, numbers.Real) and not isinstance(score, bool):
        x = float(score)
    else:
        raise TypeError(f"expected {where} to be a number, a string or a pair, got {score!r} "
                        f"({type(score).__name__})")
    if not math.isfinite(x):
        raise ValueError(f"expected {where} to be finite, got {score!r}")
    return x


def _check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise TypeError(f"expected tasks to be a sequence of task names, got {tasks!r}")
    out = tuple(tasks)
    if not out:
        raise ValueError("expected tasks to name at least one task, got none")
    if not all(isinstance(t, str) for t in out):
        raise TypeError(f"expected tasks to be task names (str), got {out!r}")
    if len(set(out)) != len(out):
        dup = sorted({t for t in out if out.count(t) > 1})
        raise ValueError(f"expected distinct tasks, got {dup} more than once")
    return out


def _row(scores: Mapping[str, Score], tasks: tuple[str, ...], name: str) -> list[float]:
    if not isinstance(scores, Mapping):
        raise TypeError(f"expected {name} to be a mapping from task to score, got {type(scores).__name__}")
    missing = [t for t in tasks if t not in scores]
    if missing:
        raise ValueError(f"expected {name} to have a score for every task in tasks, got none for {missing}")
    return [_value(scores[t], f"{name}[{t!r}]") for t in tasks]


def _means(values: list[float], tasks: tuple[str, ...], shift: float, name: str) -> Means:
    shifted = [v + shift for v in values]
    bad = [(t, v) for t, v, s in zip(tasks, values, shifted) if s <= 0]
    if bad:
        t, v = bad[0]
        raise ValueError(f"expected every score + shift > 0 in {name} (geometric and harmonic means), got "
                         f"{name}[{t!r}] = {v:g} with shift {shift:g}")
    k = len(values)
    am = math.fsum(values) / k
    gm = math.exp(math.fsum(math.log(s) for s in shifted) / k) - shift
    hm = k / math.fsum(1.0 / s for s in shifted) - shift
    return Means(am, gm, hm, tasks)


def means(scores: Mapping[str, Score], tasks: Sequence[str], shift: float = 0.0) -> Means:
    """AM, GM and HM of one row's ``scores`` (task → score) over exactly ``tasks``.

    A task missing from ``scores`` is refused, as is a score ≤ −``shift`` (GM and HM need s + shift > 0); paired
    scores are averaged first, strings parsed with either decimal separator (module docstring). With ``shift`` c:
    GM = exp(mean log(s + c)) − c, HM = K/Σ 1/(s + c) − c.
    """
    tasks_ = _check_tasks(tasks)
    shift = check_float("shift", shift, low=0.0)
    return _means(_row(scores, tasks_, "scores"), tasks_, shift, "scores")


def _table(rows: Mapping[str, Mapping[str, Score]], tasks: Sequence[str], shift: float) -> dict[str, Means]:
    if not isinstance(rows, Mapping):
        raise TypeError(f"expected rows to be a mapping from row name to scores, got {type(rows).__name__}")
    tasks_ = _check_tasks(tasks)
    shift = check_float("shift", shift, low=0.0)
    return {str(name): _means(_row(sc, tasks_, f"rows[{name!r}]"), tasks_, shift, f"rows[{name!r}]")
            for name, sc in rows.items()}


def rank_table(rows: Mapping[str, Mapping[str, Score]], tasks: Sequence[str], mean: MeanKind = "am",
               shift: float = 0.0) -> list[Ranked]:
    """The rows (name → task scores) ranked by one mean over ``tasks``, best first; every row must have every task.
    Equal values share the lowest rank (1, 2, 2, 4); among them the order of ``rows`` is kept."""
    check_choice("mean", mean, MeanKind)
    table = _table(rows, tasks, shift)
    values = [(name, float(getattr(m, mean))) for name, m in table.items()]
    ordered = sorted(values, key=lambda nv: -nv[1])
    out: list[Ranked] = []
    for i, (name, v) in enumerate(ordered):
        rank = out[-1].rank if out and out[-1].value == v else i + 1
        out.append(Ranked(rank, name, v))
    return out


def _kendall_tau_b(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b = (C − D)/√((n₀ − n₁)(n₀ − n₂)) over all pairs (n₀ = n(n−1)/2; n₁, n₂ tied pairs in a, b);
    NaN where either ranking is constant (as ``scipy.stats.kendalltau``)."""
    n = len(a)
    conc = disc = ties_a = ties_b = 0
    for i in range(n):
        for j in range(i + 1, n):
            da, db = a[i] - a[j], b[i] - b[j]
            if da == 0:
                ties_a += 1
            if db == 0:
                ties_b += 1
            if da * db > 0:
                conc += 1
            elif da * db < 0:
                disc += 1
    n0 = n * (n - 1) // 2
    denom = math.sqrt((n0 - ties_a) * (n0 - ties_b))
    return (conc - disc) / denom if denom > 0 else math.nan


def kendall_tau_between_means(rows: Mapping[str, Mapping[str, Score]], tasks: Sequence[str],
                              shift: float = 0.0) -> MeanTaus:
    """Kendall's τ-b between the orders the three means give the rows over one task list (at least two rows).
    τ = 1: AM, GM and HM rank the rows alike. NaN where a mean gives every row the same value."""
    table = _table(rows, tasks, shift)
    if len(table) < 2:
        raise ValueError(f"expected at least 2 rows to rank, got {len(table)}")
    am = [m.am for m in table.values()]
    gm = [m.gm for m in table.values()]
    hm = [m.hm for m in table.values()]
    return MeanTaus(_kendall_tau_b(am, gm), _kendall_tau_b(am, hm), _kendall_tau_b(gm, hm))


__all__ = ["MeanKind", "MeanTaus", "Means", "Ranked", "Score", "kendall_tau_between_means", "means", "rank_table"]
