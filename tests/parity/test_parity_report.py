"""The parity report says what was compared (#21): the period and symbols in the terminal, the
JSON and the HTML, both paths' value curves with their difference, the final values, and the
orders side by side around the first divergence."""

from __future__ import annotations

import json
import re

import pytest

from bt_ibkr.parity.diff import compare
from bt_ibkr.parity.report import render_html
from bt_ibkr.records.recorder import BarRecord, Recording
from examples import parity as parity_cli


@pytest.mark.slow
def test_cli_report_names_period_symbols_finals_curves_and_orders(in_tmp, capsys, monkeypatch):
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(in_tmp / "cache"))
    rc = parity_cli.main(["--symbols", "^GSPC", "--start", "2016-06-01", "--end", "2018-06-30",
                          "--json", "p.json", "--report", "p.html"])
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads((in_tmp / "p.json").read_text())
    t = data["timeline"]
    first, last = t["period"][0][:10], t["period"][1][:10]
    assert (first, last) == ("2016-06-01", "2018-06-29")
    assert f"period {first}..{last} on ^GSPC; final value backtest " in out
    page = (in_tmp / "p.html").read_text()
    assert first in page and last in page and "^GSPC" in page
    fb, fi = t["final"]["backtest"], t["final"]["ib"]
    assert f"backtest {fb:,.2f} | IB {fi:,.2f}" in page
    # both curves and their difference, one point per bar
    lines = dict(re.findall(r"<polyline class='(\w+)'[^>]*points='([^']*)'", page))
    assert set(lines) == {"backtest", "ib", "difference"}
    assert all(len(v.split()) == data["bars"] for v in lines.values())
    # the orders of both paths side by side, the same ones here
    rows = re.findall(r"<tr><td>(\d+)</td><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
                      page)
    assert rows and all(a == b and a != "-" for _, a, b in rows)
    assert len(rows) == min(20, data["orders_backtest"])


def _bar(i: int, value: float, orders: list) -> BarRecord:
    return BarRecord(i=i, dt=f"2020-01-{i + 1:02d}T00:00:00", bars={"X": [1, 1, 1, 1, 1]},
                     decision={"target": len(orders)}, orders=orders, fills=[],
                     position={"X": 0.0}, cash=value, value=value)


def test_orders_are_shown_around_the_first_divergence():
    buy = {"data": "X", "side": "BUY", "size": 10, "type": "Market", "price": None}
    sell = {"data": "X", "side": "SELL", "size": 10, "type": "Market", "price": None}
    a = [_bar(i, 100.0 + i, [buy] if i % 2 == 0 else []) for i in range(30)]
    b = [_bar(i, 100.0 + i, [buy] if i % 2 == 0 else []) for i in range(30)]
    b[20] = _bar(20, 120.0, [sell])  # the IB path sold where the backtest bought
    report = compare(Recording(bars=a), Recording(bars=b))
    assert report.first_divergence["bar"] == 20
    page = render_html(report)
    rows = re.findall(r"<tr( class='diverged')?><td>(\d+)</td><td>[^<]*</td><td>([^<]*)</td>"
                      r"<td>([^<]*)</td></tr>", page)
    bars = [int(r[1]) for r in rows]
    assert bars == [10, 12, 14, 16, 18, 20, 22, 24, 26, 28]  # 5 before, the bar, 5 after
    marked = [r for r in rows if r[0]]
    assert [(int(r[1]), r[2], r[3]) for r in marked] == [
        (20, "BUY 10 X Market", "SELL 10 X Market")]
    assert "first divergence (bar 20)" in page
