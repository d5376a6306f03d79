"""The live tearsheet covers what the user picks, never mixes simulated and real sessions, says
how many sessions and days it rests on, and withholds annualized ratios below 20 days (#20)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.records.recorder import BarRecord
from bt_ibkr.records.tearsheet import (
    MIN_DAYS_FOR_RATIOS,
    SessionSelection,
    select_sessions,
    write_live_tearsheet,
)


def _session(root: Path, run_id: str, first: date, days: int, simulate: bool,
             start_value: float = 100_000.0) -> Path:
    """A session record as the recorder writes it: meta.json and one LIVE bar per day."""
    folder = root / run_id
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({
        "run_id": run_id, "simulate": simulate, "started": f"{first}T13:00:00+00:00",
        "symbols": ["SPY"], "start_value": start_value}))
    lines = []
    value = start_value
    for i in range(days):
        day = first + timedelta(days=i)
        value *= 1.0 + (0.004 if i % 3 else -0.003)
        rec = BarRecord(i=i, dt=f"{day}T21:00:00", bars={"SPY": [1, 1, 1, 400 + i, 1]},
                        decision={}, orders=[], fills=[], position={"SPY": 0.0}, cash=value,
                        value=value, feeds={"SPY": {"live": True}})
        lines.append(json.dumps(rec.to_dict()))
    (folder / "bars.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def sessions(tmp_path):
    root = tmp_path / "sessions"
    _session(root, "20260105T130000Z-aaaa0001", date(2026, 1, 5), 10, simulate=False)
    _session(root, "20260120T130000Z-aaaa0002", date(2026, 1, 20), 15, simulate=False)
    _session(root, "20260210T130000Z-bbbb0003", date(2026, 2, 10), 30, simulate=True)
    return root


def test_the_newest_kind_is_picked_and_the_other_kind_is_left_out(sessions):
    found = sorted(p for p in sessions.iterdir())
    picked, notes = select_sessions(found, SessionSelection())
    assert [p.name for p in picked] == ["20260210T130000Z-bbbb0003"]
    assert notes == ["2 real session(s) left out: simulated and real sessions are never mixed"]
    picked, notes = select_sessions(found, SessionSelection(simulated=False))
    assert [p.name[-4:] for p in picked] == ["0001", "0002"]


def test_one_run_last_run_or_a_date_range(sessions):
    found = sorted(sessions.iterdir())
    real = SessionSelection(simulated=False)
    pick = lambda **kw: [p.name[-4:] for p in select_sessions(  # noqa: E731
        found, SessionSelection(simulated=False, **kw))[0]]
    assert pick(run="20260105T130000Z-aaaa0001") == ["0001"]
    assert pick(run="last") == ["0002"]
    assert pick(start=date(2026, 1, 10)) == ["0002"]
    assert pick(end=date(2026, 1, 10)) == ["0001"]
    with pytest.raises(ConfigError, match="no real session record matches run nope"):
        select_sessions(found, SessionSelection(run="nope", simulated=False))
    assert real.describe() == "all runs of the journal"


@pytest.mark.slow
def test_few_days_withhold_ratios_and_enough_days_give_the_tearsheet(sessions, tmp_path):
    out, summary = write_live_tearsheet(sessions, tmp_path / "few.html",
                                        selection=SessionSelection(run="last", simulated=False))
    page = out.read_text()
    assert summary.startswith("1 real session(s), 15 days of account value (2026-01-20..")
    assert f"withheld below {MIN_DAYS_FOR_RATIOS} days" in page and "Sharpe" not in page.replace(
        "annualized ratios (Sharpe,", "")
    out, summary = write_live_tearsheet(sessions, tmp_path / "sim.html",
                                        selection=SessionSelection(simulated=True))
    page = out.read_text()
    assert summary.startswith("1 simulated session(s), 30 days of account value")
    assert "Sharpe" in page and "Cumulative Return" in page  # the quantstats tearsheet
    assert summary in page
