"""`kexue reproduce`: discovery, the report files, verdict rules, errors."""

from __future__ import annotations

import json

import pytest

from kexue import reproduce
from kexue.cli import main
from kexue.reproduce import Post, Result, Table
from kexue.reproduce import gelu as gelu_repro
from kexue.reproduce.report import write_report
from kexue.reproduce.runner import Outcome, run_all


def test_list_includes_first_entries(capsys):
    assert main(["reproduce", "--list"]) == 0
    names = capsys.readouterr().out.split()
    assert {"gelu"} <= set(names)
    assert names == sorted(names)


def test_gelu_quick_writes_report(tmp_path, capsys):
    assert main(["reproduce", "gelu", "--quick", "--out", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in records] == ["gelu"]
    rec = records[0]
    assert rec["verdict"] == "holds"
    assert rec["numbers"]["derived"]["lambda"] == pytest.approx(1.7017449, abs=1e-6)
    for fig in rec["figures"]:
        assert (tmp_path / fig).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "index.html").read_text()
    assert "GELU的两个初等函数近似是怎么来的" in page and "holds" in page
    assert not list(tmp_path.glob(".*tmp*"))


def test_gelu_verdict_follows_its_rule(monkeypatch):
    monkeypatch.setitem(gelu_repro.CLAIMED, "lambda", (1.75, 1e-4))
    assert gelu_repro.run(quick=True).verdict == "does not hold"


def test_unknown_name_is_refused(capsys, tmp_path):
    assert main(["reproduce", "no_such_post", "--out", str(tmp_path)]) == 2
    assert "unknown reproduction(s) no_such_post" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown reproduction 'nope'"):
        reproduce.load("nope")


def test_a_failing_reproduction_is_reported_not_fatal(monkeypatch, tmp_path):
    def boom(quick: bool):
        raise RuntimeError("measured nothing")

    monkeypatch.setattr(gelu_repro, "run", boom)
    outcomes = run_all(["gelu"], quick=True, log=lambda s: None)
    assert outcomes[0].verdict == "error" and "measured nothing" in outcomes[0].error
    write_report(outcomes, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())[0]["verdict"] == "error"


def test_result_validation():
    post = Post("t", "g", "2020-01-01", "https://kexue.fm")
    with pytest.raises(ValueError, match="verdict must be one of"):
        Result("x", post, "c", "m", "maybe", "r")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        Table("t", ["a", "b"], [[1]])


def test_report_escapes_html(tmp_path):
    post = Post("<b>t</b>", "g", "2020-01-01", "https://kexue.fm")
    r = Result("x", post, "claim <script>", "m", "inconclusive", "rule")
    write_report([Outcome("x", 0.1, result=r)], tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "reproduce" in capsys.readouterr().out
