"""``python -m bt_ibkr.doctor`` against the gateway simulator, a closed port, a silent server.

yfinance is patched at ``yfinance.download`` only; nothing leaves loopback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance

from bt_ibkr.doctor import main, run_doctor

ROOT = Path(__file__).resolve().parents[2]


def yf_ok(symbol, **kw):
    idx = pd.DatetimeIndex(pd.to_datetime(["2026-11-20", "2026-11-23"])).tz_localize(
        "America/New_York", )
    hist = pd.DataFrame({"Open": [1.0, 2.0], "High": [2.0, 3.0], "Low": [0.5, 1.5],
                         "Close": [1.5, 2.5], "Volume": np.array([10, 20], dtype=np.int64)},
                        index=idx)
    data = pd.concat([hist], axis=1, keys=[symbol], names=["Ticker", "Price"])
    data.columns = data.columns.swaplevel(0, 1)
    return data.sort_index(level=0, axis=1)


def yf_offline(symbol, **kw):
    raise ConnectionError("curl: (6) Could not resolve host: query2.finance.yahoo.com")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server():
    """A loopback server that accepts TCP connections and never says a word."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    srv.close()


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def test_doctor_passes_against_the_simulator(gateway_sim, monkeypatch):
    monkeypatch.setattr(yfinance, "download", yf_ok)
    report = run_doctor(port=gateway_sim.port, client_id=5, symbols=["SPY", "AAPL"], timeout=5)
    assert statuses(report) == {
        "gateway reachable": "PASS", "API handshake": "PASS", "account": "PASS",
        "market data SPY": "PASS", "market data AAPL": "PASS", "historical data": "PASS",
        "yfinance": "PASS"}
    assert report.exit_code == 0
    assert "paper account DU1234567" in report.by_name("account").detail
    # IB's "5 D" = the last 5 sessions before 2024-01-02 09:30 New York
    assert report.by_name("historical data").detail == (
        "5 daily bars of SPY, last 2023-12-29 close 464.48")  # synthetic SPY on XNYS sessions
    assert report.by_name("market data SPY").detail.startswith("live data: ")
    assert "last close 2.5" in report.by_name("yfinance").detail


def test_doctor_reports_delayed_only_market_data_and_a_live_account(gateway_sim_factory,
                                                                    monkeypatch):
    monkeypatch.setattr(yfinance, "download", yf_offline)
    sim = gateway_sim_factory(live_data=False, account="U7654321")
    report = run_doctor(port=sim.port, client_id=6, symbols=["SPY"], timeout=5, yf_timeout=1)
    got = statuses(report)
    assert got["market data SPY"] == "WARN"
    assert report.by_name("market data SPY").detail.startswith("delayed only")
    assert "Market Data Subscriptions" in report.by_name("market data SPY").fix
    assert got["account"] == "WARN" and "LIVE account U7654321" in report.by_name(
        "account").detail
    assert got["yfinance"] == "WARN"
    assert "Could not resolve host" in report.by_name("yfinance").detail
    assert report.exit_code == 0  # warnings only


def test_doctor_fails_on_a_closed_port_and_names_it(monkeypatch, capsys):
    monkeypatch.setattr(yfinance, "download", yf_offline)
    port = closed_port()
    code = main(["--port", str(port), "--timeout", "1"])
    out = capsys.readouterr().out
    assert code == 1
    assert f"FAIL  gateway reachable  nothing listens on 127.0.0.1:{port}" in out
    assert "start IB Gateway/TWS, or check the port: TWS 7497" in out
    assert "SKIP  API handshake" in out
    assert "WARN  yfinance" in out


@pytest.mark.slow
def test_doctor_fails_when_the_port_never_answers_the_handshake(silent_server, monkeypatch,
                                                                 capsys):
    monkeypatch.setattr(yfinance, "download", yf_ok)
    t0 = time.monotonic()
    code = main(["--port", str(silent_server), "--timeout", "1", "--json"])
    elapsed = time.monotonic() - t0
    data = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in data["checks"]}
    assert code == 1 and data["exit_code"] == 1 and data["ok"] is False
    assert checks["gateway reachable"]["status"] == "PASS"
    assert checks["API handshake"]["status"] == "FAIL"
    assert "did not answer the API handshake within 1 s" in checks["API handshake"]["detail"]
    assert "Enable ActiveX and Socket Clients" in checks["API handshake"]["fix"]
    assert checks["historical data"]["status"] == "SKIP"
    assert checks["yfinance"]["status"] == "PASS"
    assert elapsed < 30  # hang guard only


def test_python_dash_m_doctor_runs_and_exits_non_zero_on_failure():
    port = closed_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "bt_ibkr.doctor", "--port", str(port), "--no-yfinance",
         "--json", "--timeout", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert data["port"] == port
    assert data["checks"][0]["status"] == "FAIL"
    assert f"127.0.0.1:{port}" in data["checks"][0]["detail"]
    assert data["checks"][-1] == {"name": "yfinance", "status": "SKIP",
                                  "detail": "skipped (--no-yfinance)", "fix": ""}
