"""The HTML pages a user opens, in a real headless browser (Debian's chromium via Playwright):
the backtest tearsheet, the sweep report and the parity report load with no page error, no
console error and no request to the network (issue #21).

Every request a page makes is routed through the test: ``file:`` and ``data:`` are served, any
other scheme is blocked and fails the test. With ``BT_IBKR_SCREENSHOTS=DIR`` the check also
saves the top of the tearsheet as ``DIR/tearsheet-top.png`` (the picture in the README:
``BT_IBKR_SCREENSHOTS=docs/images python -m pytest -q tests/ops/test_pages_browser.py``).

Chromium comes from Debian (``apt-get install chromium``, done by ``.ci/run``); without it the
tests skip locally and fail on CI (``CI=true``).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
from helpers.browser import CHROMIUM, QUIET, need_browser


@pytest.fixture(scope="module")
def browser():
    sync_playwright = need_browser()
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Make the three pages with the CLIs a user types; return {name: path}."""
    tmp = tmp_path_factory.mktemp("pages")
    from examples.backtest import main as backtest
    from examples.parity import main as parity
    from examples.sweep import main as sweep

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("BT_IBKR_CACHE_DIR", str(tmp / "cache"))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert backtest(["--no-progress", "--source", "sample", "--report", "bt.html"]) == 0
            assert sweep(["--no-progress", "--source", "sample", "--serial", "--start",
                          "2014-01-01", "--grid", "band=0.05,0.1", "--grid",
                          "target_vol=0.1,0.12", "--report", "sweep.html", "--out", "sw"]) == 0
            assert parity(["--start", "2016-01-01", "--end", "2018-12-31",
                           "--report", "parity.html"]) == 0
    return {"tearsheet": tmp / "bt.html", "sweep": tmp / "sweep.html",
            "parity": tmp / "parity.html"}


def _open(browser, path: Path):
    """Load ``path``; return (page, page errors, console errors, blocked requests)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    console: list[str] = []
    blocked: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, errors, console, blocked


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tearsheet", "sweep", "parity"])
def test_page_loads_with_no_error_and_no_network(browser, pages, name):
    page, errors, console, blocked = _open(browser, pages[name])
    try:
        assert errors == [], errors
        assert console == [], console
        assert blocked == [], blocked
        assert page.title()  # a real title, not the tool's
        assert page.locator("table").count() >= 1
    finally:
        page.close()


@pytest.mark.slow
def test_tearsheet_top_shows_the_summary_beside_the_chart(browser, pages):
    """What the README's screenshot shows: the run summary in the right column, next to the
    first chart, with the strategy column first and the period on one line."""
    page, errors, _, _ = _open(browser, pages["tearsheet"])
    try:
        assert page.title() == "RegimeAwareEnsemble on ^GSPC"
        summary = page.locator("#summary-table")
        box = summary.bounding_box()
        chart = page.locator("#left svg").first.bounding_box()
        assert box["x"] > chart["x"] + chart["width"] - 5  # beside the chart, not below it
        right = page.locator("#right").bounding_box()
        assert box["x"] + box["width"] <= right["x"] + right["width"] + 1  # no overflow
        heads = summary.locator("th").all_inner_texts()
        assert [h.replace("\n", " ") for h in heads] == ["Metric", "Strategy", "Buy & hold"]
        period = summary.locator("tr", has_text="period").locator("td").nth(1)
        fills = summary.locator("tr", has_text="fills").locator("td").nth(1)
        assert period.bounding_box()["height"] <= fills.bounding_box()["height"] + 1  # one line
        out = os.environ.get("BT_IBKR_SCREENSHOTS")
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(out) / "tearsheet-top.png"),
                            clip={"x": 0, "y": 0, "width": 1100, "height": 760})
    finally:
        page.close()
