"""``python -m examples.backtest --fx``: a forex pair from a CSV, sized in its base currency,
the report in the pair's quote currency, which the terminal, JSON and tearsheet name."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.fx.backtest import base_currency, fx_pairs, odd_lot_note
from examples.backtest import main


def write_pair_csv(path, start=1.10, seed=3, days=1200):
    """A synthetic daily EUR.USD-like series (date,open,high,low,close,volume)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-01-01", periods=days)
    close = start * np.exp(np.cumsum(rng.standard_normal(days) * 0.005))
    opn = np.concatenate([[start], close[:-1]])
    frame = pd.DataFrame({
        "open": opn, "high": np.maximum(opn, close) * 1.002,
        "low": np.minimum(opn, close) * 0.998, "close": close, "volume": 0.0,
    }, index=pd.Index(dates.strftime("%Y-%m-%d"), name="date"))
    frame.to_csv(path)
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    write_pair_csv(tmp_path / "eurusd.csv")
    return tmp_path


def _run(args, capsys):
    code = main(["--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_a_pair_from_csv_reports_in_its_quote_currency(workdir, capsys):
    code, out, err = _run(["--symbols", "EURUSD", "--csv", "eurusd.csv", "--fx", "EURUSD",
                           "--json", "fx.json", "--report", "fx.html"], capsys)
    assert code == 0, err
    assert "base currency: USD" in out
    assert "EURUSD (EUR.USD): sized in EUR, priced in USD" in out
    summary = json.loads((workdir / "fx.json").read_text())
    assert summary["base_currency"] == "USD" and summary["fx"] == {"EURUSD": "EUR.USD"}
    assert summary["trades"] > 0
    html = (workdir / "fx.html").read_text()
    assert "Base currency" in html and "USD (cash, values and returns; forex pairs" in html


@pytest.mark.slow
def test_a_plain_backtest_states_usd_as_its_base(workdir, capsys):
    code, out, err = _run(["--symbols", "EURUSD", "--csv", "eurusd.csv", "--json", "p.json",
                           "--no-report"], capsys)
    assert code == 0, err
    assert json.loads((workdir / "p.json").read_text())["base_currency"] == "USD"


@pytest.mark.parametrize("flags, says", [
    (["--fx", "GBPUSD"], "--fx GBPUSD: not one of --symbols EURUSD"),
    (["--fx", "EURUSD:EURO"], "--fx EURUSD:EURO: 'EURO' is not a currency pair"),
])
def test_bad_fx_flags_are_one_line_and_exit_2(workdir, capsys, flags, says):
    code, _, err = _run(["--symbols", "EURUSD", "--csv", "eurusd.csv", *flags], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and says in err


def test_pairs_of_different_quote_currencies_or_beside_stocks_are_refused():
    with pytest.raises(ConfigError, match="different currencies"):
        base_currency(fx_pairs("EURUSD,EURJPY"), ["EURUSD", "EURJPY"])
    with pytest.raises(ConfigError, match="SPY"):
        base_currency(fx_pairs("USDJPY"), ["USDJPY", "SPY"])
    assert base_currency(fx_pairs("EURUSD"), ["EURUSD", "SPY"]) == "USD"
    assert fx_pairs("EURUSD=X") == {"EURUSD=X": "EUR.USD"}
    assert base_currency(fx_pairs("EURUSD:EUR.JPY"), ["EURUSD"]) == "JPY"  # a pair alone


def test_odd_lots_below_idealpro_minimum_are_counted():
    class F:
        def __init__(self, symbol, size):
            self.symbol, self.size = symbol, size

    fills = [F("EURUSD", 30_000), F("EURUSD", -24_999), F("SPY", 10)]
    note = odd_lot_note(fills, {"EURUSD": "EUR.USD"})
    assert note.startswith("1 of 2 forex fills are below IDEALPRO's 25,000-unit minimum")
    assert odd_lot_note(fills[:1], {"EURUSD": "EUR.USD"}) is None


def test_fx_from_ibs_history_is_refused_before_connecting_with_the_csv_way(workdir, capsys):
    # nothing listens on the port: the refusal comes before any request (IB has no TRADES
    # for forex, which the backtest's IB history path would ask)
    code, _, err = _run(["--symbols", "EURUSD", "--source", "ibkr", "--port", "1",
                         "--fx", "EURUSD", "--no-report"], capsys)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "--fx EURUSD with --source ibkr" in line and "--source csv --csv FILE --fx" in line
