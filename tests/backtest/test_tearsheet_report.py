"""The tearsheet, the JSON and the terminal describe one period with the same figures (issue #13).

One run of ``python -m examples.backtest --source sample --start 2003-01-01 --end 2016-12-31``
(via main()) is parsed with the stdlib HTMLParser: the page's date range, quantstats' metric
table, our run summary, the EOY chart's year labels, the EOY table, the regime section's place
in the layout and its chart.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from html.parser import HTMLParser

import arch.data.sp500
import numpy as np
import pandas as pd
import pytest

from analyzers.sections import eoy_chart
from bt_ibkr.backtest import summary_rows
from bt_ibkr.metrics import yearly_returns
from examples.backtest import main

VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr", "source"}


class Page(HTMLParser):
    """Tables (with their ancestors), SVG texts by enclosing element, and every element's path."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict]] = []
        self.tables: list[dict] = []
        self.texts: list[tuple[str, list[tuple[str, dict]]]] = []  # (svg text, ancestors)
        self.elements: list[tuple[str, dict, list[tuple[str, dict]]]] = []
        self._cell: list[str] | None = None
        self._text: list[str] | None = None
        self.h1 = ""
        self._in_h1 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs, list(self.stack)))
        if tag == "table":
            self.tables.append({"rows": [], "ancestors": list(self.stack), "id": attrs.get("id")})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "text":
            self._text = []
        elif tag == "h1":
            self._in_h1 = True
        if tag not in VOID:
            self.stack.append((tag, attrs))

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), list(self.stack)))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "text" and self._text is not None:
            self.texts.append(("".join(self._text).strip(), list(self.stack)))
            self._text = None
        elif tag == "h1":
            self._in_h1 = False
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._text is not None:
            self._text.append(data)
        if self._in_h1:
            self.h1 += data

    def table(self, header0: str, header: list[str] | None = None,
              ours: bool | None = None) -> dict[str, list[str]]:
        """Return {first cell: other cells} of the first table whose header matches (``ours``
        True/False: only inside / outside bt_ibkr's run summary box)."""
        for t in self.tables:
            if ours is not None and _within(t["ancestors"], id="bt-summary") != ours:
                continue
            if t["rows"] and t["rows"][0][0] == header0 and (header is None or t["rows"][0] == header):
                return {r[0]: r[1:] for r in t["rows"][1:] if r}
        raise AssertionError(f"no table with header {header0!r}")


def _within(ancestors, **attr) -> bool:
    key, value = next(iter(attr.items()))
    key = "class" if key == "cls" else key
    return any(value in (a.get(key) or "").split() for _, a in ancestors)


def _pct(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the CLI once; return (summary dict, stdout, html text, parsed Page)."""
    tmp = tmp_path_factory.mktemp("tearsheet")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        mp.setenv("BT_IBKR_CACHE_DIR", str(tmp / "cache"))
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["--no-progress", "--source", "sample", "--start", "2003-01-01",
                         "--end", "2016-12-31", "--json", "s.json", "--report", "r.html"])
        assert code == 0
        summary = json.loads((tmp / "s.json").read_text())
        text = (tmp / "r.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    return summary, out.getvalue(), text, page


@pytest.mark.slow
def test_page_reports_the_json_period(run):
    summary, _, _, page = run
    dates = page.h1.split("(Compounded)")[1].strip()
    first, last = (datetime.strptime(d.strip(), "%d %b, %Y").date().isoformat() for d in dates.split(" - "))
    assert (first, last) == (summary["start"], summary["end"])
    sp500 = arch.data.sp500.load().loc["2003-01-01":"2016-12-31"]
    assert summary["start"] == pd.Timestamp(sp500.index[summary["warmup_bars"]]).date().isoformat()


def test_quantstats_metrics_equal_the_json(run):
    summary, _, _, page = run
    m = page.table("Metric", ["Metric", "Strategy", "Buy & hold"], ours=False)
    strat, bench = 0, 1
    b = summary["benchmark"]
    # quantstats rounds to 2 decimals (ratios) or 2 decimals of percent
    assert float(m["Sharpe"][strat]) == pytest.approx(summary["sharpe"], abs=0.005 + 1e-9)
    assert float(m["Sharpe"][bench]) == pytest.approx(b["sharpe"], abs=0.005 + 1e-9)
    assert _pct(m["Max Drawdown"][strat]) == pytest.approx(summary["max_drawdown"] * 100, abs=0.005 + 1e-9)
    assert _pct(m["Max Drawdown"][bench]) == pytest.approx(b["max_drawdown"] * 100, abs=0.005 + 1e-9)
    assert _pct(m["CAGR%"][strat]) == pytest.approx(summary["cagr"] * 100, abs=0.005 + 1e-9)
    assert _pct(m["Volatility (ann.)"][strat]) == pytest.approx(summary["volatility"] * 100, abs=0.005 + 1e-9)
    assert _pct(m["Cumulative Return"][bench]) == pytest.approx(b["total_return"] * 100, abs=0.005 + 1e-9)


def test_run_summary_box_is_the_terminal_table(run):
    summary, out, _, page = run
    box = page.table("Metric", ["Metric", "Strategy", "Buy & hold"], ours=True)
    rows = summary_rows(summary)
    assert {k: v for k, v in box.items()} == {m: [a, b] for m, a, b in rows}
    for metric in ("Sharpe", "max drawdown", "CAGR"):
        strat = dict((m, a) for m, a, _ in rows)[metric]
        assert strat in out  # the terminal printed the same figure


def test_no_missing_glyph(run):
    _, _, text, page = run
    assert "\ufe6a" not in text
    assert "CAGR%" in page.table("Metric", ["Metric", "Strategy", "Buy & hold"], ours=False)


def test_eoy_chart_and_table_show_the_data_years(run):
    summary, _, _, page = run
    days = arch.data.sp500.load().loc[summary["start"]:summary["end"]].index
    years = sorted({d.year for d in pd.DatetimeIndex(days)})
    labels = [t for t, anc in page.texts if _within(anc, cls="bt-eoy") and t.isdigit()]
    assert [int(t) for t in labels] == years
    eoy_div = [a for tag, a, _ in page.elements if tag == "div" and a.get("class") == "bt-eoy"]
    assert eoy_div[0]["data-years"] == ",".join(map(str, years))
    # quantstats' own EOY table (right column) covers the same years
    table = next(t for t in page.tables if _within(t["ancestors"], id="eoy"))
    assert [int(r[0]) for r in table["rows"][1:]] == years


def test_regime_section_is_in_the_layout_with_a_sharp_chart(run):
    summary, _, _, page = run
    regimes = [(a, anc) for tag, a, anc in page.elements if a.get("id") == "regimes"]
    assert len(regimes) == 1
    assert _within(regimes[0][1], cls="container")  # inside the page's centred column
    in_section = [(tag, a) for tag, a, anc in page.elements if _within(anc, id="regimes")]
    assert not [t for t, _ in in_section if t == "img"]  # no raster image to blur
    svg = next(a for t, a in in_section if t == "svg")
    assert "viewBox" in svg or "viewbox" in svg
    assert "width" not in svg and "height" not in svg  # scaled by its viewBox, never stretched
    table = next(t for t in page.tables if t["id"] == "regime-table")
    assert sum(int(r[1]) for r in table["rows"][1:]) == summary["period_bars"]


def test_eoy_chart_labels_name_their_bars():
    """Each tick's year labels the bars drawn at that tick, and their heights are that year's."""
    idx = pd.bdate_range("2005-01-03", "2017-12-29")
    r = pd.Series(0.0, index=idx)
    for i, year in enumerate(range(2005, 2018)):
        r[r.index[r.index.year == year][0]] = 0.01 * (i + 1) * (-1) ** i
    bench = -0.5 * r
    fig = eoy_chart(r, bench)
    import matplotlib.pyplot as plt

    try:
        ax = fig.axes[0]
        ticks = {round(t.get_position()[0]): int(t.get_text()) for t in ax.get_xticklabels()}
        assert sorted(ticks.values()) == list(range(2005, 2018))
        strat, bmark = yearly_returns(r), yearly_returns(bench)
        bars = [p for p in ax.patches if p.get_width() < 1]
        assert len(bars) == 2 * 13
        for p in bars:
            center = p.get_x() + p.get_width() / 2
            year = ticks[int(np.rint(center))]
            expected = strat[year] if center > np.rint(center) else bmark[year]
            assert p.get_height() == pytest.approx(expected * 100)
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- issue 21: artefacts


def test_strategy_column_comes_first_in_every_table(run):
    """One column order on the page: Strategy, then Buy & hold (the run summary's order)."""
    _, _, _, page = run
    both = [t for t in page.tables
            if t["rows"] and {"Strategy", "Buy & hold"} <= set(t["rows"][0])]
    assert len(both) >= 3  # run summary, quantstats' metrics, the EOY table
    for t in both:
        head = t["rows"][0]
        assert head.index("Strategy") < head.index("Buy & hold"), head
    eoy = next(t for t in page.tables if _within(t["ancestors"], id="eoy"))
    assert eoy["rows"][0] == ["Year", "Strategy", "Buy & hold", "Won"]  # no "Multiplier"
    metrics = page.table("Metric", ["Metric", "Strategy", "Buy & hold"], ours=False)
    assert "Treynor Ratio" not in metrics
    # the swap moved the values with their header: the strategy's max drawdown is its own
    summary = run[0]
    assert _pct(metrics["Max Drawdown"][0]) == pytest.approx(summary["max_drawdown"] * 100,
                                                              abs=0.005 + 1e-9)
    # each EOY row: "Won" is + exactly when the strategy's year beat buy & hold's
    for year, strat, bench, won in eoy["rows"][1:]:
        assert won == ("+" if float(strat) > float(bench) else "-"), year


def test_page_chrome_is_ours_and_offline(run):
    _, _, text, page = run
    title = re.search(r"<title>(.*?)</title>", text, re.S).group(1)
    assert title == "RegimeAwareEnsemble on ^GSPC"
    assert "onload" not in text  # quantstats' save() threw in a browser
    external = [a for tag, a, _ in page.elements
                for key in ("href", "src") if (a.get(key) or "").startswith(("http:", "https:"))
                and tag != "a"]
    assert external == []  # nothing is fetched (the favicon was)


def _ticks(page, div_id: str) -> list[float]:
    return [_pct(t) for t, anc in page.texts if _within(anc, id=div_id)
            and re.fullmatch(r"-?[\d,.]+%", t)]


def test_percent_ticks_are_exact_and_evenly_spaced(run):
    """quantstats truncated ticks (-0.0499 -> "-4%"): each chart's percent ticks must now be
    evenly spaced numbers, as the axis placed them."""
    _, _, _, page = run
    charts = {a["id"] for tag, a, anc in page.elements if tag == "div" and a.get("id")}
    checked = 0
    for div_id in sorted(charts):
        ticks = _ticks(page, div_id)
        if len(ticks) < 3 or div_id in ("right", "left", "eoy", "ddinfo", "bt-sections"):
            continue
        steps = np.diff(ticks)
        assert np.allclose(steps, steps[0], rtol=1e-6), (div_id, ticks)
        checked += 1
    assert checked >= 4


def test_log_scaled_and_vol_matched_charts_are_left_out(run):
    _, _, _, page = run
    ids = {a.get("id") for _, a, _ in page.elements}
    assert "log_returns" not in ids and "vol_returns" not in ids
    assert "returns" not in {t for t, _ in page.texts if "Log Scaled" in t}


def test_notes_say_what_the_figures_leave_out(run):
    summary, out, text, _ = run
    notes = " ".join(" ".join(d.split()) for d in summary["notes"])
    assert "without dividends" in notes and "idle cash earns 0% a year" in notes
    assert "0% risk-free rate" in notes
    for note in summary["notes"]:
        assert note.split(";")[0] in " ".join(out.split())  # the terminal says it too
    shown = re.findall(r"<p class='bt-note'>(.*?)</p>", text, re.S)
    assert [html.unescape(n) for n in shown] == summary["notes"]


def test_regime_drawdown_is_within_one_spell(run):
    """A regime's max drawdown is measured inside its spells: never deeper than the run's."""
    summary, _, text, page = run
    table = next(t for t in page.tables if t["id"] == "regime-table")
    assert "inside one spell" in text
    for row in table["rows"][1:]:
        assert _pct(row[-1]) >= summary["max_drawdown"] * 100 - 0.005, row
