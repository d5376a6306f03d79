"""What a backtest's figures leave out is said, undefined figures are not printed, and a range
the data cannot cover is reported (issue #21): the terminal, the JSON and the cash-rate broker."""

from __future__ import annotations

import json
import math

import backtrader as bt
import pandas as pd
import pytest

from bt_ibkr.cash_rate import CashRateBroker
from examples.backtest import main
from feeds.frame_feed import make_feed


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _run(args, capsys):
    code = main(["--no-progress", "--source", "sample", "--no-report", *args])
    out = capsys.readouterr()
    return code, " ".join(out.out.split()), out.err


def test_a_run_that_never_trades_prints_no_undefined_figures(workdir, capsys):
    """--cash 1 buys nothing: no Sharpe of a flat curve, no buy & hold scaled to zero vol."""
    code, out, err = _run(["--cash", "1", "--start", "2010-01-01", "--json", "s.json"], capsys)
    assert code == 0, err
    summary = json.loads((workdir / "s.json").read_text())
    assert summary["trades"] == 0 and summary["volatility"] == 0
    eq = summary["benchmark"]["equal_volatility"]
    assert eq == {"cagr": None, "sharpe": None, "max_drawdown": None}
    assert summary["sharpe"] is None and summary["sortino"] is None
    assert "CAGR, B&H at strategy vol │ │ n/a" in out
    assert "Sharpe │ n/a │" in out


def test_a_range_the_data_does_not_cover_is_reported(workdir, capsys):
    code, out, err = _run(["--start", "2010-01-01", "--end", "2022-12-31", "--json", "s.json"],
                          capsys)
    assert code == 0, err
    summary = json.loads((workdir / "s.json").read_text())
    assert summary["end"] == "2018-12-31"
    assert summary["range_notes"] == [
        "--end 2022-12-31: the data ends 2018-12-31, so the run ends there"]
    assert "range: --end 2022-12-31: the data ends 2018-12-31" in out


def test_an_end_on_a_weekend_is_not_a_cut(workdir, capsys):
    """2016-12-31 is a Saturday: the data's last session, Dec 30, is the end asked for."""
    code, out, err = _run(["--start", "2010-01-01", "--end", "2016-12-31", "--json", "s.json"],
                          capsys)
    assert code == 0, err
    assert json.loads((workdir / "s.json").read_text())["range_notes"] == []
    assert "range:" not in out


def test_notes_state_dividends_and_idle_cash(workdir, capsys):
    code, out, err = _run(["--start", "2010-01-01", "--cash-rate", "2", "--json", "s.json"],
                          capsys)
    assert code == 0, err
    notes = json.loads((workdir / "s.json").read_text())["notes"]
    assert any("without dividends" in n for n in notes)
    assert any(n.startswith("idle cash earns 2% a year") for n in notes)
    assert "note: idle cash earns 2% a year" in out


@pytest.mark.parametrize("value", ["-1", "nan", "25", "abc"])
def test_bad_cash_rate_is_named(workdir, capsys, value):
    code, _, err = _run(["--cash-rate", value], capsys)
    assert code == 2
    assert "--cash-rate" in err and len(err.strip().splitlines()) == 1, err


class _Idle(bt.Strategy):
    pass


def _idle_value(rate: float, days: pd.DatetimeIndex, cash: float = 10_000.0) -> float:
    frame = pd.DataFrame({"open": 100.0, "high": 100.0, "low": 100.0, "close": 100.0,
                          "volume": 1.0}, index=days)
    cerebro = bt.Cerebro(stdstats=False)
    broker = CashRateBroker(cash_rate=rate)
    cerebro.broker = broker
    broker.setcash(cash)
    feed = make_feed(frame, name="X")
    cerebro.adddata(feed, name="X")
    broker.set_clock(feed)
    cerebro.addstrategy(_Idle)
    cerebro.run()
    return broker.getvalue()


def test_cash_rate_broker_compounds_per_calendar_day():
    days = pd.bdate_range("2020-01-01", "2020-12-31")
    elapsed = (days[-1] - days[0]).days
    value = _idle_value(0.05, days)
    assert value == pytest.approx(10_000.0 * 1.05 ** (elapsed / 365.0), rel=1e-9)
    assert _idle_value(0.0, days) == 10_000.0
    assert not math.isclose(value, 10_000.0)


def test_the_backtest_earns_the_cash_rate_on_idle_cash(workdir, capsys):
    """Same run at 0% and 3%: the 3% run ends higher, by at most 3% a year on all of it."""
    finals = {}
    for rate in ("0", "3"):
        code, _, err = _run(["--start", "2012-01-01", "--cash-rate", rate, "--json",
                             f"s{rate}.json"], capsys)
        assert code == 0, err
        finals[rate] = json.loads((workdir / f"s{rate}.json").read_text())
    gain = finals["3"]["final_value"] / finals["0"]["final_value"]
    years = (pd.Timestamp(finals["0"]["end"]) - pd.Timestamp(finals["0"]["data_start"])).days / 365
    assert 1.0 < gain < 1.03 ** years
