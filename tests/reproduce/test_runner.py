"""kexue.reproduce.runner: classification of outcomes, worker processes, exclusive entries run alone, order kept."""

from __future__ import annotations

import pytest

from kexue.cli import main
from kexue.data.registry import MissingData
from kexue.reproduce import runner


def test_run_one_classifies_missing_data_and_errors(monkeypatch):
    from kexue.reproduce import gelu

    def missing(quick: bool):
        raise MissingData("sst2", "/nowhere")

    monkeypatch.setattr(gelu, "run", missing)
    o = runner.run_one("gelu", quick=True)
    assert o.verdict == "not run" and "kexue data fetch sst2" in (o.not_run or "")

    def boom(quick: bool):
        raise RuntimeError("measured nothing")

    monkeypatch.setattr(gelu, "run", boom)
    o = runner.run_one("gelu", quick=True)
    assert o.verdict == "error" and "measured nothing" in (o.error or "")


def test_exclusive_entries_are_the_timing_ones():
    assert runner.exclusive("recompute") and runner.exclusive("linear_flops") and runner.exclusive("wgan_gn")
    assert not runner.exclusive("gelu")


def test_jobs_run_in_workers_and_keep_the_order(monkeypatch):
    """Two cheap entries in 2 spawned workers, one exclusive entry after them in this process (stubbed, so the test
    does not time anything); the outcomes come back in the order asked."""
    from kexue.reproduce import linear_flops

    ran_here = []

    def stub(quick: bool):
        ran_here.append(quick)
        raise MissingData("stsb_en", "/nowhere")

    monkeypatch.setattr(linear_flops, "run", stub)
    lines: list[str] = []
    outcomes = runner.run_all(["linear_flops", "gelu", "infinite_linear_attention"], quick=True, log=lines.append,
                              jobs=2)
    assert [o.name for o in outcomes] == ["linear_flops", "gelu", "infinite_linear_attention"]
    assert [o.verdict for o in outcomes] == ["not run", "verified", "verified"]
    assert ran_here == [True]  # the exclusive entry ran in this process, after the workers
    assert lines[0].startswith("running 2 entries (quick) in 2 processes")
    assert lines.index("[linear_flops] running (quick) ...") > max(
        i for i, s in enumerate(lines) if s.startswith(("[gelu]", "[infinite_linear_attention]")))
    assert outcomes[1].result is not None and outcomes[1].result.figures  # figures survive the trip back


def test_jobs_must_be_positive(capsys):
    with pytest.raises(ValueError, match="expected jobs >= 1, got 0"):
        runner.run_all(["gelu"], quick=True, jobs=0)
    with pytest.raises(SystemExit):
        main(["reproduce", "--jobs", "0", "--out", "x"])
    assert "expected a positive integer, got 0" in capsys.readouterr().err


def test_a_group_runs_in_one_worker_in_order(monkeypatch):
    """Entries that set the same GROUP go to one worker as one task; the outcomes still come back in the order
    asked."""
    from kexue.reproduce import gelu, infinite_linear_attention

    monkeypatch.setattr(gelu, "GROUP", "g", raising=False)
    monkeypatch.setattr(infinite_linear_attention, "GROUP", "g", raising=False)
    submitted: list[list[str]] = []
    real = runner._run_group

    class Pool:  # records the tasks, runs them here
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, group, quick):
            from concurrent.futures import Future

            submitted.append(list(group))
            f: Future = Future()
            f.set_result(real(group, quick))
            return f

    monkeypatch.setattr(runner, "ProcessPoolExecutor", Pool)
    outcomes = runner.run_all(["infinite_linear_attention", "gelu"], quick=True, log=lambda s: None, jobs=2)
    assert submitted == [["infinite_linear_attention", "gelu"]]
    assert [o.name for o in outcomes] == ["infinite_linear_attention", "gelu"]
