"""The service (``examples.live --service``) keeps its decided sessions in the account's own
journal: never in a journal named before the account is known, and an old default journal of
the configured account is moved before the service reads it. A run with its own journal and
the default equity path writes the account's equity curve."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from helpers.live import BuyOneOnDecision

from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import run_live
from bt_ibkr.ops.service_record import ServiceRecord
from examples.live import ServiceSessions, service_journal

MINE = "DU111"
LEGACY = Path("state/journal.sqlite")


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_service_without_an_account_keeps_sessions_until_a_run_names_the_journal(state):
    config = load_config(None, env={})
    path = service_journal(config, simulate=False)
    assert "{account}" in str(path)
    sessions = ServiceSessions(path)
    day = date(2024, 3, 1)
    assert not sessions.decided(day)
    sessions.mark(day)  # e.g. a missed session reported before the first run
    assert sessions.decided(day)
    assert not any(state.rglob("*.sqlite"))  # no journal named "{account}", none created
    sessions.follow(Path("state") / MINE / "journal.sqlite")  # the first run's resolved path
    assert ServiceRecord(Path("state") / MINE / "journal.sqlite").decided(day)
    assert sessions.decided(day) and not sessions.pending


def test_a_service_for_an_account_moves_its_old_default_journal_first(state):
    with Journal(LEGACY) as j:
        j.bind_account(MINE)
        j.log_event(ServiceRecord.KIND, {"session": "2024-03-01"})
    lines: list[str] = []
    config = load_config(None, env={}, overrides={"connection.account": MINE})
    path = service_journal(config, simulate=False, say=lines.append)
    assert path == Path("state") / MINE / "journal.sqlite" and not LEGACY.exists()
    assert ServiceSessions(path).decided(date(2024, 3, 1))  # marked before the move
    assert len([line for line in lines if "moved" in line]) == 1


@pytest.mark.slow
def test_an_explicit_journal_with_the_default_equity_path_writes_the_accounts_curve(
        gateway_sim_factory, state):
    """... and a --json naming {account} on a run that names none: the gateway's account."""
    sim = gateway_sim_factory(data="sample", account=MINE)
    cfg = load_config(None, env={}, overrides={
        "connection.port": sim.port, "paths.journal": "mine.sqlite", "paths.logs": "logs"})
    res = run_live(cfg, strategy=BuyOneOnDecision, max_runtime=120,
                   json_path=Path("out/{account}.json"))
    assert Path(res.journal) == Path("mine.sqlite")
    assert Path(res.equity_file) == Path("state") / MINE / "equity.csv"
    assert Path(res.equity_file).exists()
    assert json.loads((Path("out") / f"{MINE}.json").read_text())["account"] == MINE
    assert not list(state.rglob("*{account}*"))  # no folder or file named by the field
