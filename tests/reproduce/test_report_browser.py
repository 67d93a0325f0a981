"""The report opened in a real browser: Debian's ``chromium``, headless, driven by Playwright's Python API.

Checks that every image loaded (``naturalWidth > 0``), every internal link (``#id``) names an element, and the console
has no errors. The report is built from stand-in outcomes (tests/reproduce/conftest.py), so no entry runs.

Skips, saying why, when the ``playwright`` package or a system Chromium is missing; with ``KEXUE_REQUIRE_BROWSER=1``
(set by ``.ci/run``) it fails instead, so CI cannot pass without having looked at the page. Install here with
``apt-get install chromium`` and ``pip install playwright``; never ``playwright install``: the test drives the
system browser through ``executable_path``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Where Debian and Ubuntu put the browser; KEXUE_CHROMIUM overrides.
_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _unavailable(reason: str):
    if os.environ.get("KEXUE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (KEXUE_REQUIRE_BROWSER=1: the browser test must run here)")
    pytest.skip(reason)


def _chromium() -> str | None:
    explicit = os.environ.get("KEXUE_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser_page():
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _unavailable("playwright is not installed (pip install playwright; the system chromium is used, "
                     "never `playwright install`)")
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium found (apt-get install chromium, or set KEXUE_CHROMIUM to its path)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_report_in_a_browser(browser_page, standin_report):
    index, outcomes = standin_report
    page = browser_page
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

    page.goto(index.resolve().as_uri(), wait_until="load")

    images = page.eval_on_selector_all(
        "img", "els => els.map(e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0}))")
    figures = sum(len(o.result.figures) for o in outcomes if o.result is not None)
    assert len(images) == figures > 0
    assert [i["src"] for i in images if not i["ok"]] == [], "images that did not load"

    links = page.eval_on_selector_all(
        'a[href^="#"]', "els => els.map(e => ({href: e.getAttribute('href'), "
                        "ok: document.getElementById(decodeURIComponent(e.getAttribute('href').slice(1))) !== null}))")
    assert len(links) >= len(outcomes)
    assert [i["href"] for i in links if not i["ok"]] == [], "internal links with no target"

    # the front table's link to an error's traceback lands on it
    page.click('a[href="#broken-traceback"]')
    assert page.evaluate("location.hash") == "#broken-traceback"
    assert page.is_visible("#broken-traceback")

    assert page.locator("table.front tbody tr").count() == len(outcomes)
    assert page.evaluate("document.querySelectorAll('script').length") == 0  # the hostile strings stayed text
    assert problems == []
