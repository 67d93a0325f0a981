"""The report page and results.json, on stand-in outcomes (tests/reproduce/conftest.py): no entry runs here."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from importlib import resources

import pytest

from kexue.reproduce import Post, Result
from kexue.reproduce.report import one_line, sig3, write_report
from kexue.reproduce.runner import Outcome

FIELDS = {"name", "verdict", "status", "seconds", "post", "kind", "claim", "measured", "rule", "setup",
          "post_figure", "our_figure", "reason", "skipped", "notes", "tables", "figures", "numbers", "quick", "error"}


class _Page(HTMLParser):
    """Collects ids, internal links, image sources, front-table rows and the text of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.links: list[str] = []
        self.images: list[str] = []
        self.scripts = 0
        self.rows: list[list[str]] = []
        self._in_front = False
        self._cell: list[str] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and (a.get("href") or "").startswith("#"):
            self.links.append(a["href"][1:])
        if tag == "img":
            self.images.append(a["src"])
        if tag == "script":
            self.scripts += 1
        if tag == "table" and a.get("class") == "front":
            self._in_front = True
        if self._in_front and tag == "tr":
            self.rows.append([])
        if self._in_front and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_front = False
        if self._in_front and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture
def report(standin_report):
    index, outcomes = standin_report
    return index, json.loads((index.parent / "results.json").read_text(encoding="utf-8")), outcomes


@pytest.mark.parametrize("x, shown", [
    (0.0447149, "0.0447"), (1.7017449, "1.70"), (12345.678, "12300"), (-0.5, "-0.500"), (9.996, "10.0"),
    (999.6, "1000"), (0.001234, "0.00123"), (0.0001234, "1.23e-04"), (1.5e7, "1.50e+07"), (0.0, "0"),
    (float("nan"), "nan"), (float("-inf"), "-inf"), (3, "3"), (True, "True"), ("0.123456", "0.123456"), (None, "None"),
])
def test_sig3_three_significant_digits(x, shown):
    assert sig3(x) == shown


def test_sig3_numpy_and_torch_scalars():
    import numpy as np
    import torch

    assert sig3(np.float32(0.0447149)) == "0.0447" and sig3(np.int64(7)) == "7"
    assert sig3(torch.tensor(1.7017449)) == "1.70"


def test_one_line_first_sentence_then_word_cut():
    assert one_line("First sentence. Second one.") == "First sentence."
    assert (one_line("b/a ≈ 0.0447 (e.g. in  the\nfit); λ = 1.70. Then more")
            == "b/a ≈ 0.0447 (e.g. in the fit); λ = 1.70.")
    assert one_line("A vs. B is 0.5 better! Second.") == "A vs. B is 0.5 better!"
    assert one_line("不加。第二句") == "不加。" and one_line("no end") == "no end"
    long = "word " * 60
    cut = one_line(long, limit=40)
    assert cut.endswith("…") and len(cut) <= 41 and "  " not in cut


def test_results_json_carries_every_field(report):
    _, records, outcomes = report
    assert [r["name"] for r in records] == [o.name for o in outcomes]
    for rec, o in zip(records, outcomes):
        assert set(rec) == FIELDS
        assert rec["verdict"] == o.verdict and rec["seconds"] == pytest.approx(o.seconds, abs=1e-3)
        if o.result is not None:
            r = o.result
            assert rec["status"] == "result"
            for f in ("kind", "claim", "measured", "rule", "setup", "post_figure", "our_figure", "quick"):
                assert rec[f] == getattr(r, f)
            assert rec["reason"] == (r.reason or None) and rec["skipped"] == r.skipped and rec["notes"] == r.notes
            assert rec["post"]["url"] == r.post.url
            assert len(rec["figures"]) == len(r.figures)
    by = {r["name"]: r for r in records}
    assert by["math_ok"]["tables"][0]["rows"][0] == ["a", 0.0447149, 3]  # raw numbers in the JSON
    assert by["math_ok"]["tables"][0]["rows"][2][1] == "nan"
    assert by["needs_data"]["status"] == "not run" and "kexue data fetch sst2" in by["needs_data"]["reason"]
    assert by["needs_data"]["kind"] is None and by["needs_data"]["error"] is None
    assert by["broken"]["status"] == "error" and "RuntimeError" in by["broken"]["error"]
    assert not list(report[0].parent.glob(".*"))  # atomic writes leave no temporary files


def test_every_image_is_written_and_every_internal_link_resolves(report):
    index, records, _ = report
    page = _parse(index)
    assert len(page.ids) == len(set(page.ids)), "duplicate ids"
    assert page.links and set(page.links) <= set(page.ids)
    assert sorted(page.images) == sorted(f for r in records for f in r["figures"])
    for src in page.images:
        assert (index.parent / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.scripts == 0


def test_front_table_row_per_entry(report):
    index, _, outcomes = report
    page = _parse(index)
    header, *rows = page.rows
    assert header == ["entry", "post", "claim", "kind", "the post", "ours", "verdict", "time"]
    assert [r[0] for r in rows] == [o.name for o in outcomes]
    by = {r[0]: r for r in rows}
    for o in outcomes:
        row, r = by[o.name], o.result
        assert row[6].startswith(o.verdict)
        if r is not None:
            assert row[3] == r.kind and row[4] == r.post_figure and row[5] == r.our_figure
            assert row[2] == one_line(r.claim) and "second sentence" not in row[2]
            assert r.post.date in row[1]
            if r.reason:
                assert r.reason in row[6]
    assert "kexue data fetch sst2" in by["needs_data"][6]
    assert by["broken"][6].startswith("error") and by["broken"][6].endswith("traceback")
    html = index.read_text(encoding="utf-8")
    assert '<a href="#broken-traceback">traceback</a>' in html and 'id="broken-traceback"' in html
    assert '<a href="https://kexue.fm/archives/7309" lang="zh">GELU的两个初等函数近似是怎么来的</a>' in html
    assert "<code>kexue data fetch sst2</code>" in html
    assert 'class="v v-does-not-hold"' in html and 'class="v v-not-run"' in html


def test_sections_have_setup_rule_tables_figures_notes_and_skipped(report):
    index, _, outcomes = report
    html = index.read_text(encoding="utf-8")
    for o in outcomes:
        assert f'<section class="entry" id="{o.name}">' in html
    section = html[html.index('id="emp_holds"'):html.index('id="emp_fails"')]
    for text in ("3 seeds, 100 steps (emp_holds)", "the rule of emp_holds in words", "we measured emp_holds",
                 "numbers of emp_holds", "a note on emp_holds", "emp_holds-curve.png", "Skipped",
                 "<code>kexue data fetch stsb</code>", "+0.3 points"):
        assert text in section, text
    # floats to 3 significant digits; integers as they are
    assert '<td class="num">0.0447</td>' in section and '<td class="num">12300</td>' in section
    assert '<td class="num">10</td>' in section and "0.0447149" not in section


def test_legend_explains_kinds_and_verified_never_holds(report):
    index, _, _ = report
    text = " ".join("".join(_parse(index).text).split())
    for kind in ("math", "mechanics", "empirical"):
        assert kind in text
    assert "check that passes reads verified, never holds" in text
    for verdict in ("verified", "not verified", "holds", "does not hold", "inconclusive", "not measured",
                    "not run", "error"):
        assert verdict in text


def test_every_string_is_escaped(report):
    index, records, _ = report
    html = index.read_text(encoding="utf-8")
    assert "<script" not in html and "<img src=nowhere" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&lt;img src=nowhere.png onerror=alert(1)&gt;" in html
    assert 'href="https://kexue.fm/?a=1&amp;b=2"' in html
    hostile = next(r for r in records if r["name"] == "hostile")
    assert hostile["claim"] == 'claim <script>alert("x")</script>'  # the JSON keeps the text as it was


def test_not_run_row_takes_the_post_from_the_entry_module(tmp_path, monkeypatch):
    from kexue.data.registry import MissingData
    from kexue.reproduce import gelu
    from kexue.reproduce.runner import run_one

    def missing(quick: bool):
        raise MissingData("stsb_en", "/nowhere")

    monkeypatch.setattr(gelu, "run", missing)
    outcome = run_one("gelu", quick=True)
    assert outcome.verdict == "not run" and outcome.post is gelu.POST
    index = write_report([outcome], tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())[0]
    assert record["post"]["url"] == gelu.POST.url
    assert gelu.POST.title in index.read_text(encoding="utf-8")


def test_repeated_names_get_distinct_anchors_and_files(tmp_path, standin_outcomes):
    twice = [standin_outcomes[0], standin_outcomes[0]]
    # the figure is closed after the first write: give the second its own
    import matplotlib.pyplot as plt

    r = standin_outcomes[0].result
    second = Outcome(r.name, 1.0, result=Result(**{**vars(r), "figures": [("curve", plt.figure(figsize=(1, 1)))]}))
    index = write_report([twice[0], second], tmp_path)
    page = _parse(index)
    assert {"math_ok", "math_ok-2"} <= set(page.ids) and set(page.links) <= set(page.ids)
    assert sorted(page.images) == ["math_ok-2-curve.png", "math_ok-curve.png"]


def test_figure_stems_are_made_file_safe(tmp_path, standin_outcomes):
    import matplotlib.pyplot as plt

    r = standin_outcomes[0].result
    odd = Result(**{**vars(r), "figures": [("../a b/<c>", plt.figure(figsize=(1, 1))),
                                          ("../a b/<c>", plt.figure(figsize=(1, 1)))]})
    write_report([Outcome(r.name, 1.0, result=odd)], tmp_path)
    files = json.loads((tmp_path / "results.json").read_text())[0]["figures"]
    assert files == ["math_ok-a_b_c.png", "math_ok-a_b_c-2.png"]
    assert all((tmp_path / f).is_file() for f in files)


def test_the_template_ships_as_package_data():
    assert resources.files("kexue.reproduce").joinpath("templates", "report.html").is_file()


def test_a_report_with_no_entries(tmp_path):
    index = write_report([], tmp_path)
    assert json.loads((tmp_path / "results.json").read_text()) == []
    assert "0 entries" in index.read_text(encoding="utf-8")


def test_result_without_post_module_is_post_unknown(tmp_path):
    index = write_report([Outcome("no_such_entry", 0.1, error="Traceback: boom")], tmp_path)
    assert "post unknown" in index.read_text(encoding="utf-8")


def test_standin_covers_every_kind_and_verdict(standin_outcomes):
    from kexue.reproduce.result import VERDICTS_BY_KIND

    seen = {(o.result.kind, o.result.verdict) for o in standin_outcomes if o.result is not None}
    assert seen == {(k, v) for k, vs in VERDICTS_BY_KIND.items() for v in vs}
    assert {o.verdict for o in standin_outcomes} >= {"not run", "error"}
    assert isinstance(standin_outcomes[0].result.post, Post)
