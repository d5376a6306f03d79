"""A user's journal at the old default ``state/journal.sqlite`` when journals became per
account (``state/<ACCOUNT>/journal.sqlite``): a run keeps finding its own orders (the file is
moved to its account's path when its journal records that account), and is refused in one
line, exit 2, nothing sent, the file untouched, when it cannot be proven to be the account's.
Through the real client against the gateway simulator; the CLI runs in-process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.live import BuyOneOnDecision

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.account_paths import resolve
from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.run_lock import RunLock
from bt_ibkr.live.runner import run_live
from bt_ibkr.records.ownership import OURS, JournalRecords
from examples import live as cli

MINE, OTHER = "DU111", "DU222"
LEGACY = Path("state/journal.sqlite")
HANG = 120
ROOT = Path(__file__).resolve().parents[2]


def own(account: str) -> Path:
    return Path("state") / account / "journal.sqlite"


@pytest.fixture
def state(tmp_path, monkeypatch):
    """The run's working folder (relative default paths land under it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BT_IBKR_ACCOUNT", raising=False)
    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    return tmp_path


def config(sim, account: str | None = None, client_id: int = 11, **paths):
    values = {"connection.port": sim.port, "connection.account": account,
              "connection.client_id": client_id, "paths.logs": "logs"}
    values.update({f"paths.{k}": v for k, v in paths.items()})
    return load_config(None, env={}, overrides=values)


def run(sim, account=None, **paths):
    """A daily run buying one share on its decision bar; return (LiveResult, status lines)."""
    lines: list[str] = []
    res = run_live(config(sim, account, **paths), strategy=BuyOneOnDecision,
                   max_runtime=HANG, progress=lines.append)
    return res, lines


def gateway_orders(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


def refusal(capsys, code: int) -> str:
    """The one ``error:`` line of a CLI run that exited 2."""
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


def cli_run(sim, *extra: str) -> int:
    return cli.main(["--paper", "--port", str(sim.port), "--max-runtime", "60", *extra])


@pytest.mark.slow
@pytest.mark.parametrize("named", [MINE, MINE.lower(), None],
                         ids=["--account", "--account-lowercase", "account-from-gateway"])
def test_an_old_default_journal_moves_to_its_account_and_keeps_its_orders(
        gateway_sim_factory, state, named):
    sim = gateway_sim_factory(data="sample", account=MINE)
    # yesterday's bt_ibkr: the old defaults, one order filled and journaled
    first, _ = run(sim, MINE, journal=str(LEGACY), equity="state/equity.csv")
    (ref,) = [o["orderRef"] for o in first.orders]
    sent = len(gateway_orders(sim))
    # today's, with the defaults: the journal moves to the account's path and the same
    # decision finds its order there (nothing sent twice)
    again, lines = run(sim, named)
    assert Path(again.journal) == own(MINE) and own(MINE).exists()
    assert not LEGACY.exists() and not Path(f"{LEGACY}-wal").exists()
    assert again.reconcile["ok"], "\n".join(lines)
    assert [(o["orderRef"], o.get("duplicate_skipped")) for o in again.orders] == [(ref, True)]
    assert len(gateway_orders(sim)) == sent
    moved = [line for line in lines if "moved" in line]
    assert len(moved) == 1 and str(LEGACY) in moved[0] and str(own(MINE)) in moved[0]
    # its equity curve and session records came along
    assert Path(again.equity_file) == Path("state") / MINE / "equity.csv"
    assert not Path("state/equity.csv").exists() and Path(again.equity_file).exists()
    assert (own(MINE).parent / "sessions").is_dir()
    assert not any(Path("state/sessions").glob("*"))
    with Journal(own(MINE)) as j:
        assert j.account == MINE and len(j.runs()) == 2
        run_ids = [r.run_id for r in j.runs()]
    # both runs' records are the moved journal's own (its tearsheet and retention see them)
    records = JournalRecords.of(own(MINE).resolve(), run_ids)
    folders = sorted((own(MINE).parent / "sessions").iterdir())
    assert len(folders) == 2 and {records.claim(f) for f in folders} == {OURS}


def legacy_journal(account: str | None) -> None:
    with Journal(LEGACY) as j:
        if account:
            j.bind_account(account)


@pytest.mark.parametrize("named", [True, False], ids=["--account", "account-from-gateway"])
def test_an_old_default_journal_that_records_no_account_is_refused(
        gateway_sim_factory, state, capsys, named):
    sim = gateway_sim_factory(data="sample", account=MINE)
    legacy_journal(None)
    before = LEGACY.read_bytes()
    code = cli_run(sim, *(["--account", MINE] if named else []))
    line = refusal(capsys, code)
    assert str(LEGACY) in line and "records no account" in line and "--journal" in line
    assert sim.requests_named("placeOrder") == []
    assert LEGACY.read_bytes() == before and not own(MINE).exists()
    assert not list(Path().rglob("*{account}*"))


def test_an_account_with_journals_at_both_paths_is_refused(gateway_sim_factory, state, capsys):
    sim = gateway_sim_factory(data="sample", account=MINE)
    legacy_journal(MINE)
    with Journal(own(MINE)) as j:
        j.bind_account(MINE)
    line = refusal(capsys, cli_run(sim, "--account", MINE))
    assert str(LEGACY) in line and str(own(MINE)) in line
    assert sim.requests_named("placeOrder") == []
    assert LEGACY.exists()


def test_an_old_default_journal_held_by_a_runner_is_not_moved(gateway_sim_factory, state,
                                                               capsys):
    sim = gateway_sim_factory(data="sample", account=MINE)
    legacy_journal(MINE)
    with RunLock(LEGACY):  # an older bt_ibkr still running on it
        line = refusal(capsys, cli_run(sim, "--account", MINE))
    assert str(LEGACY.resolve()) in line and "in use" in line
    assert LEGACY.exists() and not own(MINE).exists()
    assert sim.requests_named("placeOrder") == []


@pytest.mark.slow
def test_an_old_default_journal_of_another_account_is_left_for_it(gateway_sim_factory,
                                                                  state):
    sim = gateway_sim_factory(data="sample", account=MINE)
    sim.add_account(OTHER)
    legacy_journal(OTHER)
    mine, lines = run(sim, MINE)
    assert Path(mine.journal) == own(MINE)
    assert [o["status"] for o in mine.orders] == ["filled"]
    assert any(f"belongs to account {OTHER}" in line for line in lines)
    with Journal(LEGACY) as j:
        assert j.account == OTHER and j.intents() == []  # MINE's order is not in it
    # OTHER's next run takes it
    other, _ = run(sim, OTHER)
    assert Path(other.journal) == own(OTHER) and not LEGACY.exists()
    with Journal(own(OTHER)) as j:
        assert {i.account for i in j.intents()} == {OTHER}


def test_a_journal_bound_to_another_account_is_refused(gateway_sim_factory, state, capsys):
    sim = gateway_sim_factory(data="sample", account=MINE)
    sim.add_account(OTHER)
    with Journal("mine.sqlite") as j:
        j.bind_account(MINE)
    line = refusal(capsys, cli_run(sim, "--account", OTHER, "--journal", "mine.sqlite"))
    assert f"belongs to account {MINE}, not {OTHER}" in line
    assert sim.requests_named("placeOrder") == []


def test_a_path_may_name_the_account_and_nothing_else(state):
    cfg = load_config(None, env={}, overrides={"paths.equity": "out/{account}.csv"})
    from bt_ibkr.live.account_paths import for_account

    assert for_account(cfg, MINE).paths.equity == Path(f"out/{MINE}.csv")
    with pytest.raises(ConfigError, match=r"paths.journal.*only field.*\{account\}"):
        load_config(None, env={}, overrides={"paths.journal": "state/{acount}/j.sqlite"})
    with pytest.raises(ConfigError, match="paths.logs"):
        load_config(None, env={}, overrides={"paths.logs": "logs/{account}"})
    with pytest.raises(ConfigError, match="cannot name a folder"):
        for_account(cfg, "../x")
    # the line names every path still holding {account}, so following it clears the error
    both = load_config(None, env={}, overrides={"paths.journal": "j.sqlite",
                                                "paths.equity": "e.csv"})
    with pytest.raises(ConfigError) as err:
        for_account(both, "DU1,DU2")
    assert "give paths.reports without {account}" in str(err.value)
    done = load_config(None, env={}, overrides={"paths.journal": "j.sqlite",
                                                "paths.equity": "e.csv", "paths.reports": "r"})
    assert for_account(done, "DU1,DU2") is done  # nothing left to name a folder with


def test_an_unreadable_old_default_journal_is_refused(gateway_sim_factory, state, capsys):
    sim = gateway_sim_factory(data="sample", account=MINE)
    LEGACY.parent.mkdir(parents=True)
    LEGACY.write_text("not a database")
    line = refusal(capsys, cli_run(sim, "--account", MINE))
    assert str(LEGACY) in line and "cannot be read" in line
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(LEGACY).execute("SELECT 1 FROM meta")


@pytest.mark.slow
def test_an_old_journal_left_by_a_killed_run_moves_with_its_unmerged_log(state):
    """A run killed with committed rows still in SQLite's write-ahead log (``-wal``): the
    move checkpoints them into the file first, so none is lost."""
    script = ("import os; from bt_ibkr.live.journal import Journal; "
              f"j = Journal({str(LEGACY)!r}); j.bind_account({MINE!r}); "
              "j.log_event('note', {'kept': 'yes'}); os._exit(0)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get(
        "PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    wal = Path(f"{LEGACY}-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the rows are in the log, not the file
    lines: list[str] = []
    cfg = load_config(None, env={}, overrides={"connection.account": MINE})
    resolve(cfg, MINE, lines.append)
    assert not LEGACY.exists() and not wal.exists()
    with Journal(own(MINE)) as j:
        assert j.account == MINE
        assert [e["detail"] for e in j.events("note")] == [{"kept": "yes"}]
