"""`kexue reproduce`: discovery, the runner's statuses (result / not run / error), the report files, Result checks.

The report page itself is tested on stand-in outcomes in test_report.py and, in a browser, test_report_browser.py.
"""

from __future__ import annotations

import html
import json

import pytest

from kexue import reproduce
from kexue.cli import main
from kexue.data.registry import MissingData
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
    assert rec["verdict"] == "verified" and rec["kind"] == "math" and rec["status"] == "result"
    assert rec["post_figure"] and rec["our_figure"] and rec["setup"]
    assert rec["numbers"]["derived"]["lambda"] == pytest.approx(1.7017449, abs=1e-6)
    for fig in rec["figures"]:
        assert (tmp_path / fig).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "index.html").read_text()
    assert "GELU的两个初等函数近似是怎么来的" in page and "verified" in page
    assert not list(tmp_path.glob(".*tmp*"))


def test_gelu_verdict_follows_its_rule(monkeypatch):
    monkeypatch.setitem(gelu_repro.CLAIMED, "lambda", (1.75, 1e-4))
    assert gelu_repro.run(quick=True).verdict == "not verified"


def test_unknown_name_is_refused(capsys, tmp_path):
    assert main(["reproduce", "no_such_post", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kexue reproduce: expected reproductions among ") and err.endswith(", got no_such_post\n")
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


def _result(**over) -> Result:
    fields = dict(name="x", post=Post("t", "g", "2020-01-01", "https://kexue.fm"), claim="c", measured="m",
                  verdict="inconclusive", rule="r", kind="empirical", post_figure="+0.3 points", our_figure="0.1",
                  setup="3 seeds")
    fields.update(over)
    return Result(**fields)


def test_result_validation():
    post = Post("t", "g", "2020-01-01", "https://kexue.fm")
    with pytest.raises(TypeError):
        Result("x", post, "c", "m", "holds", "r", "empirical", "f", "f", "s")  # type: ignore[misc]  # keyword-only
    for missing in ("kind", "post_figure", "our_figure", "setup"):
        fields = dict(name="x", post=post, claim="c", measured="m", verdict="holds", rule="r", kind="empirical",
                      post_figure="f", our_figure="f", setup="s")
        del fields[missing]
        with pytest.raises(TypeError, match=missing):
            Result(**fields)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="expected kind one of"):
        _result(kind="theorem")
    with pytest.raises(ValueError, match="verdict of a math entry"):
        _result(kind="math", verdict="holds")  # a math check passing is "verified", never "holds"
    with pytest.raises(ValueError, match="verdict of a empirical entry"):
        _result(kind="empirical", verdict="verified")
    with pytest.raises(ValueError, match="reason with the verdict 'not measured'"):
        _result(verdict="not measured")
    with pytest.raises(ValueError, match="non-empty post_figure"):
        _result(post_figure=" ")
    assert _result(kind="mechanics", verdict="not verified").verdict == "not verified"
    assert _result(verdict="not measured", reason="the model did not learn").reason
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        Table("t", ["a", "b"], [[1]])


def test_report_escapes_html(tmp_path):
    r = _result(post=Post("<b>t</b>", "g", "2020-01-01", "https://kexue.fm"), claim="claim <script>")
    write_report([Outcome("x", 0.1, result=r)], tmp_path)
    page = (tmp_path / "index.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;t&lt;/b&gt;" in page


def test_missing_data_is_not_run_with_the_fetch_command(monkeypatch, tmp_path, capsys):
    """An entry that lets MissingData propagate is `not run`; the report and results.json name the fetch command."""

    missing = MissingData("stsb", tmp_path / "empty", "no stsb/test.tsv")
    assert "kexue data fetch stsb" in missing.command

    def needs_data(quick: bool):
        raise missing

    monkeypatch.setattr(gelu_repro, "run", needs_data)
    out = tmp_path / "report"
    assert main(["reproduce", "gelu", "--quick", "--out", str(out)]) == 0  # not run is not a failure
    assert "not run" in capsys.readouterr().out
    rec = json.loads((out / "results.json").read_text())[0]
    assert rec["verdict"] == "not run" and rec["status"] == "not run" and rec["error"] is None
    assert f"`{missing.command}`" in rec["reason"] and "no stsb/test.tsv" in rec["reason"]
    assert rec["post"]["url"] == gelu_repro.POST.url  # the row still names the post
    page = (out / "index.html").read_text()
    assert f"<code>{html.escape(missing.command)}</code>" in page and 'class="v v-not-run"' in page


def test_other_errors_are_error_with_a_traceback(monkeypatch):
    """Only MissingData means `not run`: any other exception, FileNotFoundError included, is an `error`."""

    def broken(quick: bool):
        raise FileNotFoundError("weights.bin")

    monkeypatch.setattr(gelu_repro, "run", broken)
    (o,) = run_all(["gelu"], quick=True, log=lambda s: None)
    assert o.verdict == "error" and o.not_run is None and "FileNotFoundError: weights.bin" in o.error


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "reproduce" in capsys.readouterr().out
