"""`python -m examples.backtest` end to end: offline default, flags, JSON, report, bad input."""

from __future__ import annotations

import json

import arch.data.sp500
import pandas as pd
import pytest

from examples.backtest import main

SUMMARY_KEYS = {
    "source", "symbols", "bars", "start", "end", "final_value", "total_return", "cagr", "sharpe",
    "sortino", "max_drawdown", "volatility", "trades", "exposure", "regime_counts", "benchmark",
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


def _run(args, capsys):
    code = main(["--no-progress", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_default_run_is_offline_and_writes_a_tearsheet(workdir, capsys):
    code, out, err = _run(["--json", "s.json"], capsys)
    assert code == 0, err
    # one clear line: which source served, and why the others did not
    first = out.splitlines()[0] + " " + out.splitlines()[1]
    assert "sample ^GSPC" in first and "cache" in first and "yahoo" in first
    summary = json.loads((workdir / "s.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["source"] == "sample" and summary["symbols"] == ["^GSPC"]
    assert summary["bars"] == len(arch.data.sp500.load()) == 5031
    assert sum(summary["regime_counts"].values()) == summary["bars"]
    report = workdir / summary["report"]
    assert report.exists() and report.stat().st_size > 100_000
    assert "id='regime-table'" in report.read_text(encoding="utf-8")
    assert (workdir / "logs" / "backtest.log").exists()


def test_flags_reach_the_run(workdir, capsys):
    args = ["--source", "sample", "--symbols", "^GSPC,^IXIC", "--start", "2005-01-01",
            "--end", "2012-12-31", "--cash", "250000", "--commission-bps", "5",
            "--json", "m.json", "--report", "r/m.html"]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    s = json.loads((workdir / "m.json").read_text())
    assert s["symbols"] == ["^GSPC", "^IXIC"]
    assert s["start"] == "2005-01-03" and s["end"] == "2012-12-31"
    assert s["cash"] == 250000 and s["commission_bps"] == 5
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
        (["--source", "sample", "--symbols", "AAPL"], ["AAPL", "^GSPC"]),
        (["--symbols", "NOPE_XYZ"], ["NOPE_XYZ", "yahoo", "sample"]),
        (["--source", "sample", "--start", "2010-01-01", "--end", "2009-01-01"], ["2009-01-01", "2010-01-01"]),
        (["--source", "sample", "--param", "bandd=0.1"], ["bandd", "band"]),
        (["--source", "csv"], ["--csv"]),
    ],
)
def test_bad_input_is_named(workdir, capsys, args, fragments):
    code, out, err = _run([*args, "--no-report"], capsys)
    assert code == 2
    for fragment in fragments:
        assert fragment in err, err


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


@pytest.mark.parametrize("defect", ["nan", "duplicate", "malformed"])
def test_bad_csv_rows_are_named(workdir, capsys, defect):
    df = _sample_frame()
    if defect == "nan":
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
    assert str(path.name) in err and expect in err.lower(), err


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
