"""`python -m examples.backtest` end to end: offline default, flags, JSON, report, bad input."""

from __future__ import annotations

import json

import arch.data.sp500
import pandas as pd
import pytest
from helpers.cli import run_backtest

SUMMARY_KEYS = {
    "source", "symbols", "bars", "start", "end", "final_value", "total_return", "cagr", "sharpe",
    "sortino", "max_drawdown", "volatility", "trades", "exposure", "regime_counts", "benchmark",
    "warmup_bars", "period_bars", "data_start", "data_end", "slippage_bps", "decision_delay",
    "turnover", "rejected_orders",
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a scratch folder with its own cache, and yfinance failing like an offline machine."""
    import yfinance

    def offline(*args, **kwargs):
        raise ConnectionError("curl: (6) Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yfinance, "download", offline)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


_run = run_backtest


@pytest.mark.slow
def test_default_run_is_offline_and_writes_a_tearsheet(workdir, capsys):
    code, out, err = _run(["--json", "s.json"], capsys)
    assert code == 0, err
    # one clear line: which source served, and why the others did not
    first = out.splitlines()[0] + " " + out.splitlines()[1]
    assert "sample ^GSPC" in first and "cache" in first and "yahoo" in first
    summary = json.loads((workdir / "s.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["source"] == "sample" and summary["symbols"] == ["^GSPC"]
    sp500 = arch.data.sp500.load()
    assert summary["bars"] == len(sp500) == 5031
    # the reporting period starts at the close of the first bar after the 271-bar warm-up
    assert summary["warmup_bars"] == 271 and summary["period_bars"] == 5031 - 271
    assert summary["start"] == pd.Timestamp(sp500.index[271]).date().isoformat()
    assert summary["data_start"] == "1999-01-04" and summary["end"] == "2018-12-31"
    assert sum(summary["regime_counts"].values()) == summary["period_bars"]
    assert "warmup" not in summary["regime_counts"]
    assert summary["commission_bps"] == 1.0 and summary["slippage_bps"] == 2.0
    report = workdir / summary["report"]
    assert report.exists() and report.stat().st_size > 100_000
    assert "id='regime-table'" in report.read_text(encoding="utf-8")
    assert (workdir / "logs" / "backtest.log").exists()


@pytest.mark.slow
def test_flags_reach_the_run(workdir, capsys):
    args = ["--source", "sample", "--symbols", "^GSPC,^IXIC", "--start", "2005-01-01",
            "--end", "2012-12-31", "--cash", "250000", "--commission-bps", "5",
            "--slippage-bps", "3", "--json", "m.json", "--report", "r/m.html"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    s = json.loads((workdir / "m.json").read_text())
    assert s["symbols"] == ["^GSPC", "^IXIC"]
    assert s["data_start"] == "2005-01-03" and s["end"] == "2012-12-31"
    assert s["start"] > s["data_start"]  # after the warm-up
    assert s["cash"] == 250000 and s["commission_bps"] == 5 and s["slippage_bps"] == 3
    assert s["final_value"] == pytest.approx(250000 * (1 + s["total_return"]), rel=1e-9)
    assert (workdir / "r" / "m.html").exists()
    assert -1 < s["max_drawdown"] < 0 and s["benchmark"]["max_drawdown"] < s["max_drawdown"]


def test_param_changes_the_strategy(workdir, capsys):
    base = ["--source", "sample", "--start", "2003-01-01", "--end", "2010-12-31", "--no-report"]
    assert _run([*base, "--json", "a.json"], capsys)[0] == 0
    assert _run([*base, "--json", "b.json", "--param", "band=0.3"], capsys)[0] == 0
    a = json.loads((workdir / "a.json").read_text())
    b = json.loads((workdir / "b.json").read_text())
    assert b["params"] == {"band": 0.3}
    assert b["trades"] < a["trades"]  # a wider rebalance band trades less


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--source", "sample", "--symbols", "AAPL"], ["AAPL", "^GSPC", "sample"]),
        (["--symbols", "NOPE_XYZ"], ["NOPE_XYZ", "yahoo", "sample"]),
        (["--source", "sample", "--start", "2010-01-01", "--end", "2009-01-01"], ["2009-01-01", "2010-01-01"]),
        (["--source", "sample", "--param", "bandd=0.1"], ["bandd", "band"]),
        (["--source", "csv"], ["--csv"]),
        # issue #9 item 11: every numeric flag rejects non-finite values, named
        (["--cash", "inf"], ["--cash", "inf"]),
        (["--cash", "nan"], ["--cash", "nan"]),
        (["--cash", "0"], ["--cash", "0"]),
        (["--commission-bps", "nan"], ["--commission-bps", "nan"]),
        (["--commission-bps", "-1"], ["--commission-bps", "-1"]),
        (["--slippage-bps", "inf"], ["--slippage-bps", "inf"]),
        (["--slippage-bps", "-0.5"], ["--slippage-bps", "-0.5"]),
        (["--decision-delay", "-1"], ["--decision-delay", "-1"]),
        (["--port", "nan"], ["--port", "nan"]),
        (["--source", "sample", "--param", "max_leverage=inf"], ["max_leverage", "inf"]),
        (["--source", "sample", "--param", "target_vol=nan"], ["target_vol", "nan"]),
        # data shorter than the warm-up: symbol, bars available, bars needed
        (["--source", "sample", "--start", "2018-06-01"], ["^GSPC", "147 bars", "273", "271 warm-up"]),
    ],
)
def test_bad_input_is_named(workdir, capsys, args, fragments):
    code, out, err = _run([*args, "--no-report"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err, err


def test_unwritable_outputs_fail_before_any_work(workdir, capsys):
    """--json/--report are probed first: the closed gateway port is never even tried."""
    import socket

    (workdir / "afile").write_text("x")
    (workdir / "adir").mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])  # a gateway that would refuse the connection
        base = ["--source", "ibkr", "--port", port, "--symbols", "SPY"]
        cases = [
            (["--json", "afile/s.json", "--no-report"], ["--json", "afile/s.json"]),
            (["--report", "adir"], ["--report", "adir", "folder"]),
            (["--report", "afile/r.html"], ["--report", "afile/r.html"]),
        ]
        for extra, fragments in cases:
            code, out, err = _run([*base, *extra], capsys)
            assert code == 2, err
            assert len(err.strip().splitlines()) == 1, err
            assert port not in err, err  # failed on the path, not on the gateway
            for fragment in fragments:
                assert fragment in err, err
    assert not (workdir / "reports").exists()


def test_repeated_margin_warnings_are_counted(workdir, capsys):
    """Leverage 100 with caps lifted gets hundreds of margin rejections: one console line,
    counted."""
    caps = json.dumps(dict.fromkeys(("bull_quiet", "bull_volatile", "range", "bear_quiet",
                                     "crisis"), 5.0))
    args = ["--source", "sample", "--start", "2002-01-01", "--end", "2007-12-31", "--no-report",
            "--param", "max_leverage=100", "--param", f"caps={caps}", "--param", "cash_buffer=0",
            "--param", "target_vol=2", "--json", "m.json"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    s = json.loads((workdir / "m.json").read_text())
    assert s["rejected_orders"] > 100
    margin = [line for line in err.splitlines() if "cash/margin" in line]
    assert len(margin) == 1, err
    assert f"{s['rejected_orders']} times" in margin[0]
    log_text = (workdir / "logs" / "backtest.log").read_text(encoding="utf-8")
    assert log_text.count("cash/margin") == s["rejected_orders"]  # the file keeps each one


def _write_csv(path, frame):
    frame.to_csv(path, index_label="Date")
    return path


def _sample_frame(start="2015-01-01", end="2015-03-31"):
    df = arch.data.sp500.load()[["Open", "High", "Low", "Close", "Volume"]].loc[start:end]
    df.index = pd.DatetimeIndex(df.index).strftime("%Y-%m-%d")
    return df


def test_csv_source_runs(workdir, capsys):
    path = _write_csv(workdir / "gspc.csv", _sample_frame("2012-01-01", "2014-12-31"))
    code, out, err = _run(["--source", "csv", "--csv", str(path), "--json", "c.json", "--no-report"], capsys)
    assert code == 0, err
    s = json.loads((workdir / "c.json").read_text())
    assert s["source"] == "csv" and s["symbols"] == ["gspc"] and s["bars"] == 754


@pytest.mark.parametrize("defect", ["nan", "duplicate", "malformed", "zero", "negative"])
def test_bad_csv_rows_are_named(workdir, capsys, defect):
    df = _sample_frame()
    if defect in ("zero", "negative"):  # issue #9: a non-positive price used to pass validation
        price = 0.0 if defect == "zero" else -3.5
        df.iloc[12, df.columns.get_loc("Low")] = price
        df.iloc[12, df.columns.get_loc("Close")] = price
        expect = df.index[12]
    elif defect == "nan":
        df.iloc[10, 3] = float("nan")
        expect = df.index[10]
    elif defect == "duplicate":
        df = pd.concat([df.iloc[:6], df.iloc[5:]])
        expect = df.index[5]
    else:
        df = df.drop(columns=["Close"])
        expect = "close"
    path = _write_csv(workdir / f"{defect}.csv", df)
    code, out, err = _run(["--source", "csv", "--csv", str(path), "--no-report"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert str(path.name) in err and expect in err.lower(), err
    if defect in ("zero", "negative"):
        assert "low" in err and "close" in err and "positive" in err, err


def test_ibkr_source_through_the_gateway_simulator(workdir, capsys, gateway_sim_factory):
    """--source ibkr loads IB history (the simulator serves SPY as the real ^GSPC / 10)."""
    sim = gateway_sim_factory(data="sample")
    args = ["--source", "ibkr", "--port", str(sim.port), "--symbols", "SPY", "--start", "2014-01-01",
            "--end", "2016-12-30", "--json", "ib.json", "--no-report"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    s = json.loads((workdir / "ib.json").read_text())
    assert s["source"] == "ibkr" and s["symbols"] == ["SPY"]
    gspc = arch.data.sp500.load().loc["2014-01-01":"2016-12-30"]
    assert s["bars"] == len(gspc)
    n_requests = len(sim.requests_named("reqHistoricalData"))
    assert n_requests >= 1
    # the second run is served by the shared parquet cache: no new history request
    code, out, err = _run([*args[:-3], "--json", "ib2.json", "--no-report"], capsys)
    assert code == 0, err
    assert len(sim.requests_named("reqHistoricalData")) == n_requests
    s2 = json.loads((workdir / "ib2.json").read_text())
    assert s2["final_value"] == s["final_value"]
    assert "cache" in out


def test_ibkr_source_with_no_gateway_names_host_and_port(workdir, capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        code, out, err = _run(["--source", "ibkr", "--port", str(port), "--symbols", "SPY",
                               "--start", "2015-01-01", "--end", "2015-12-31", "--no-report"], capsys)
    assert code == 2
    assert f"127.0.0.1:{port}" in err
