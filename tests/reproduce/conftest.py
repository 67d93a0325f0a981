"""Stand-in outcomes for the report tests: every kind and verdict, a `not run` and an `error`, a small figure."""

from __future__ import annotations

import pytest

from kexue.reproduce import Post, Result, Table
from kexue.reproduce.runner import Outcome

#: Strings that would run or break the page if the report did not escape them.
HOSTILE = '<script>alert("x")</script>'
HOSTILE_IMG = "<img src=nowhere.png onerror=alert(1)>"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2.0, 1.5))
    ax.plot([0, 1, 2], [0.0, 1.0, 0.5])
    ax.set_title("stand-in")
    return fig


def make_standin_outcomes() -> list[Outcome]:
    post = Post("GELU的两个初等函数近似是怎么来的", "where GELU's approximations come from", "2020-03-26",
                "https://kexue.fm/archives/7309")
    cases = [
        ("math_ok", "math", "verified", ""),
        ("math_bad", "math", "not verified", ""),
        ("mech_ok", "mechanics", "verified", ""),
        ("mech_bad", "mechanics", "not verified", ""),
        ("emp_holds", "empirical", "holds", ""),
        ("emp_fails", "empirical", "does not hold", "the gain is −0.012 ± 0.003 (s.e.), below 0"),
        ("emp_unsure", "empirical", "inconclusive", "the interval −0.01 … 0.02 contains 0"),
        ("emp_unlearned", "empirical", "not measured", "the model did not learn: accuracy 0.530 = the majority class"),
    ]
    outcomes = []
    for i, (name, kind, verdict, reason) in enumerate(cases):
        r = Result(
            name=name, post=post, kind=kind, verdict=verdict, reason=reason,
            claim=f"The claim of {name}. A second sentence that the front table leaves out.",
            measured=f"we measured {name}", rule=f"the rule of {name} in words", setup=f"3 seeds, 100 steps ({name})",
            post_figure="+0.3 points" if kind == "empirical" else "λ = 1.7017449",
            our_figure=f"{0.1234567 * (i + 1):.3g}",
            tables=[Table(f"numbers of {name}", ["setting", "value", "count"],
                          [["a", 0.0447149, 3], ["b", 12345.678, 10], ["c", float("nan"), 0]])],
            figures=[("curve", _figure())] if i % 2 == 0 else [],
            numbers={"value": 0.0447149},
            notes=[f"a note on {name}"],
            skipped=["the STS-B part: data set 'stsb' is not in /x: fetch it with `kexue data fetch stsb`"]
            if name == "emp_holds" else [],
            quick=True,
        )
        outcomes.append(Outcome(name, 1.5 + i, result=r))
    hostile = Result(
        name="hostile", post=Post(HOSTILE, HOSTILE, "2021-01-01", "https://kexue.fm/?a=1&b=2"), kind="empirical",
        verdict="inconclusive", reason=HOSTILE, claim=f"claim {HOSTILE}", measured=HOSTILE, rule=HOSTILE,
        setup=HOSTILE_IMG, post_figure=HOSTILE, our_figure=HOSTILE_IMG,
        tables=[Table(HOSTILE, [HOSTILE], [[HOSTILE_IMG]])], notes=[HOSTILE], skipped=[HOSTILE_IMG],
    )
    outcomes.append(Outcome("hostile", 0.2, result=hostile))
    outcomes.append(Outcome("needs_data", 0.01, not_run="data set 'sst2' is not in /empty: fetch it with "
                                                        "`kexue data fetch sst2` (or set KEXUE_DATA to a folder that "
                                                        "has it)"))
    outcomes.append(Outcome("broken", 0.3, error='Traceback (most recent call last):\n  File "<x>", line 1\n'
                                                 f"RuntimeError: measured nothing {HOSTILE}\n"))
    return outcomes


@pytest.fixture
def standin_outcomes() -> list[Outcome]:
    return make_standin_outcomes()


@pytest.fixture(scope="session")
def standin_report(tmp_path_factory):
    """The report written once from the stand-in outcomes: (index.html path, the outcomes). Read it, don't write."""
    from kexue.reproduce.report import write_report

    outcomes = make_standin_outcomes()
    index = write_report(outcomes, tmp_path_factory.mktemp("standin_report"))
    return index, outcomes
