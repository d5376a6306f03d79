"""A backtest on IB's bars (``--source ibkr``) run while a session is open leaves that
session's partial bar out, for stocks and for a continuous future, and says so: the result
must not move from run to run as the day's bar forms. Through the real client against the
gateway simulator, its clock stopped mid-session (2024-01-02 10:30 New York)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from helpers.cli import run_backtest

MID_SESSION = datetime(2024, 1, 2, 10, 30, tzinfo=ZoneInfo("America/New_York"))


@pytest.mark.slow
@pytest.mark.parametrize("symbol, extra", [("SPY", []), ("ES", ["--futures", "ES",
                                                                 "--cash", "20000000"])])
def test_the_open_sessions_bar_is_left_out(gateway_sim_factory, tmp_path, monkeypatch, capsys,
                                          symbol, extra):
    sim = gateway_sim_factory(start=MID_SESSION)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    code, out, err = run_backtest(["--source", "ibkr", "--port", str(sim.port), "--symbols",
                                   symbol, *extra, "--no-report", "--json", "run.json"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["end"] == "2023-12-29", summary["end"]  # the last CLOSED session
    if symbol == "SPY":
        said = " ".join(out.split())
        assert "SPY: left out the bar of 2024-01-02: that session had not closed" in said, said
