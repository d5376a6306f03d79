"""Two runners at the same time under one login, each trading its own account with the
default paths: each account's journal, equity curve and session records hold that account's
orders and values only, no order crosses accounts, and a restart of one reconciles only its
own account. Through the real client against the gateway simulator (one login DU111 managing
DU222 too)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from helpers.live import BuyOneOnDecision, RestingLimit
from helpers.sim import run_live_until

from analyzers.equity import read_equity_csv
from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import run_live

MINE, OTHER = "DU111", "DU222"
CASH = {MINE: 100_000.0, OTHER: 50_000.0}
HANG = 120


def login(gateway_sim_factory):
    """The sample-data gateway logged into MINE, managing OTHER too."""
    sim = gateway_sim_factory(data="sample", account=MINE, broker_options={"cash": CASH[MINE]})
    sim.add_account(OTHER, cash=CASH[OTHER])
    return sim


def config(sim, account: str, client_id: int, tmp_path: Path):
    """A daily run for ``account`` with the default journal, equity and records paths."""
    return load_config(None, env={}, overrides={
        "connection.port": sim.port, "connection.account": account,
        "connection.client_id": client_id, "paths.logs": str(tmp_path / "logs")})


def run_both(sim, tmp_path):
    """Run MINE's and OTHER's daily runs at the same time; return {account: LiveResult}."""
    out: dict = {}

    def target(account, client_id):
        try:
            out[account] = run_live(config(sim, account, client_id, tmp_path),
                                    strategy=BuyOneOnDecision, max_runtime=HANG,
                                    json_path=Path("runs/{account}/run.json"))
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            out[account] = exc

    threads = [threading.Thread(target=target, args=(acc, cid), daemon=True)
               for acc, cid in ((MINE, 11), (OTHER, 12))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG + 30)
    assert not any(t.is_alive() for t in threads), "a run did not end"
    for value in out.values():
        if isinstance(value, BaseException):
            raise value
    return out


def gateway_orders(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


@pytest.mark.slow
def test_two_accounts_run_at_once_each_with_its_own_journal_and_records(
        gateway_sim_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sim = login(gateway_sim_factory)
    results = run_both(sim, tmp_path)
    assert not Path("state/journal.sqlite").exists()  # no shared journal
    refs: dict[str, set[str]] = {}
    for account in (MINE, OTHER):
        res = results[account]
        journal_file = Path("state") / account / "journal.sqlite"
        assert res.stopped_by == "finished" and res.account == account
        assert Path(res.journal) == journal_file and Path(res.equity_file) == (
            Path("state") / account / "equity.csv")
        assert [o["status"] for o in res.orders] == ["filled"]
        with Journal(journal_file) as j:
            assert j.account == account
            intents = j.intents()
            refs[account] = {i.order_ref for i in intents}
            assert {i.account for i in intents} == {account}
            fills = {f.exec_id for f in j.fills()}
            run_ids = [r.run_id for r in j.runs()]
        # its fills are its account's executions, every one of them
        assert fills == {e.exec_id for e in sim.broker.executions() if e.account == account}
        # its session records sit beside its journal, one per run of its own
        sessions = sorted(p.name for p in (journal_file.parent / "sessions").iterdir())
        assert len(sessions) == len(run_ids) == 1
        # its equity curve is its account's value (100,000 vs 50,000 cash), not the other's
        equity = read_equity_csv(res.equity_file)
        assert len(equity) >= 1
        assert float(equity.iloc[-1]) == pytest.approx(CASH[account], rel=0.01)
        # a summary file named by {account} is the account's own
        summary = json.loads((Path("runs") / account / "run.json").read_text())
        assert summary["account"] == account and summary["journal"] == str(journal_file)
    assert not refs[MINE] & refs[OTHER]
    # no order crossed accounts: every order at the gateway carries the account whose
    # journal holds its orderRef
    for order in gateway_orders(sim):
        owner = [acc for acc in (MINE, OTHER) if order.spec.orderRef in refs[acc]]
        assert owner == [order.spec.account], order.spec.orderRef
    ledgers = sim.broker.accounts
    spy = next(o.contract.conId for o in gateway_orders(sim))
    assert ledgers.ledger_for(MINE).held(spy) == ledgers.ledger_for(OTHER).held(spy) == 1

    # a restart of OTHER reconciles OTHER only: its own order found (sent again: never),
    # MINE's orders and fills neither adopted nor reported, MINE's journal untouched
    with Journal(Path("state") / MINE / "journal.sqlite") as j:
        mine_before = ([i.order_ref for i in j.intents()], len(j.events()))
    sent = len(gateway_orders(sim))
    again = run_live(config(sim, OTHER, 12, tmp_path), strategy=BuyOneOnDecision,
                     max_runtime=HANG)
    assert again.reconcile["ok"], again.reconcile
    assert again.reconcile["other_journals"] == {}
    assert again.reconcile["foreign_fills"] == [] and again.reconcile["unknown_orders"] == []
    assert all(o.get("duplicate_skipped") for o in again.orders)
    assert len(gateway_orders(sim)) == sent
    assert again.positions == results[OTHER].positions
    with Journal(Path("state") / MINE / "journal.sqlite") as j:
        assert ([i.order_ref for i in j.intents()], len(j.events())) == mine_before


def working(runner) -> bool:
    """``until`` for run_live_until: the run's limit order is working at the gateway."""
    broker = getattr(runner, "broker", None)
    return broker is not None and any(rec.get("status") == "submitted"
                                      for rec in list(broker.records.values()))


@pytest.mark.slow
def test_a_working_order_of_one_account_is_none_of_the_other_runs_business(
        gateway_sim_factory, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sim = login(gateway_sim_factory)
    mine = run_live_until(config(sim, MINE, 11, tmp_path), working, strategy=RestingLimit,
                          hang_guard=HANG)
    (ref,) = [o["orderRef"] for o in mine.orders]
    (resting,) = sim.broker.open_orders()
    assert (resting.spec.orderRef, resting.spec.account) == (ref, MINE)
    # OTHER's run and its restart: MINE's working order is neither reported nor touched
    for _ in range(2):
        other = run_live(config(sim, OTHER, 12, tmp_path), strategy=BuyOneOnDecision,
                         max_runtime=HANG)
        assert other.reconcile["ok"] and other.reconcile["other_journals"] == {}
        assert other.reconcile["unknown_orders"] == [] and other.reconcile["adopted"] == []
        assert [o.spec.orderRef for o in sim.broker.open_orders()] == [ref]
    # MINE's restart follows its own working order and sends nothing new
    sent = len(gateway_orders(sim))
    again = run_live_until(config(sim, MINE, 11, tmp_path), working, strategy=RestingLimit,
                           hang_guard=HANG)
    assert again.reconcile["ok"] and again.reconcile["other_journals"] == {}
    assert len(gateway_orders(sim)) == sent
    with Journal(Path("state") / MINE / "journal.sqlite") as j:
        assert [i.order_ref for i in j.intents()] == [ref]
