"""The live rails under the cases a fault campaign found: limits that count working orders, a
daily-loss halt that survives restarts, a journal bound to one account and one runner.

All through the real client against the gateway simulator; the simulator's own ledger is the
truth the tests compare with.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import backtrader as bt
import pytest
from helpers.sim import order_status, our_ref, run_live_until

from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal, JournalError
from bt_ibkr.live.run_lock import JournalLockedError, RunLock
from bt_ibkr.live.runner import run_live

ROOT = Path(__file__).resolve().parents[2]


def make_config(tmp_path: Path, port: int, **overrides):
    values = {"connection.port": port, "paths.journal": str(tmp_path / "journal.sqlite"),
              "paths.logs": str(tmp_path / "logs"), "paths.equity": str(tmp_path / "equity.csv")}
    values.update(overrides)
    return load_config(None, env={}, overrides=values)


def placed(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


def sim_position(sim, symbol: str = "SPY") -> float:
    return sum(p.position for p in sim.broker.positions() if p.contract.symbol == symbol)


class ThreeBuys(bt.Strategy):
    """On the decision bar: three market buys of ``size`` in the same bar."""

    params = (("size", 100),)

    def __init__(self):
        self.live = False

    def notify_data(self, data, status, *args, **kwargs):
        self.live = status == data.LIVE

    def next(self):
        if self.live:
            for _ in range(3):
                self.buy(size=self.p.size)
            self.live = False


def three_decided(runner) -> bool:
    """The three buys were decided: one went out (acknowledged or filled), two were refused."""
    broker = getattr(runner, "broker", None)
    statuses = [r.get("status") for r in broker.records.values()] if broker else []
    sent = [s for s in statuses if s != "refused"]
    return len(statuses) == 3 and len(sent) == 1 and sent[0] in ("filled", "submitted")


@pytest.mark.parametrize("fill_mode", ["immediate", "next_bar"])
def test_position_limit_counts_working_orders_and_unacknowledged_intents(
        gateway_sim_factory, tmp_path, fill_mode):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": fill_mode})
    cfg = make_config(tmp_path, sim.port, **{"risk.max_position_per_symbol": 150})
    res = run_live_until(cfg, three_decided, strategy=ThreeBuys)
    statuses = [o["status"] for o in sorted(res.orders, key=lambda o: o["orderRef"])]
    assert statuses[0] in ("filled", "submitted") and statuses[1:] == ["refused", "refused"]
    assert len(placed(sim)) == 1 and sum(o.spec.totalQuantity for o in placed(sim)) == 100
    if fill_mode == "next_bar":
        sim.advance(seconds=10)
    assert sim_position(sim) <= 150


def test_position_notional_limit_counts_working_orders(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    # SPY ~225: one order of 100 is ~22,500; two would pass 40,000
    cfg = make_config(tmp_path, sim.port, **{"risk.max_position_notional": 40_000})
    res = run_live_until(cfg, three_decided, strategy=ThreeBuys)
    assert sorted(o["status"] for o in res.orders) == ["refused", "refused", "submitted"]
    assert len(placed(sim)) == 1


def test_daily_loss_halt_holds_across_restarts_until_lifted(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    cfg = make_config(tmp_path, sim.port, **{"risk.max_daily_loss": 0.03})
    with Journal(cfg.paths.journal) as j:  # an earlier run of this trading day saw 2,000,000
        j.log_event("day_start", {"date": "2017-01-03", "account": "DU1234567",
                                  "equity": 2_000_000.0})
    first = run_live(cfg, max_runtime=60)  # refused: nothing rests, the run ends by itself
    assert first.halted and [o["status"] for o in first.orders] == ["refused"]
    with Journal(cfg.paths.journal) as j:
        assert "daily loss limit hit" in j.halt_in_force("2017-01-03", "DU1234567")
        # the restart would pass the equity check: move the day's start back under the equity
        j.log_event("day_start", {"date": "2017-01-03", "account": "DU1234567",
                                  "equity": 1_000_000.01})
    cfg_loose = make_config(tmp_path, sim.port, **{"risk.max_daily_loss": 0.5})
    second = run_live(cfg_loose, max_runtime=60)
    assert second.halted and [o["status"] for o in second.orders] == ["refused"]
    assert any("daily loss limit hit" in line for line in second.needs_attention)
    assert placed(sim) == []

    third = run_live_until(cfg_loose, order_status(our_ref(tmp_path / "journal.sqlite"), "submitted"), lift_halt=True)
    assert not third.halted and [o["status"] for o in third.orders] == ["submitted"]
    assert len(placed(sim)) == 1
    with Journal(cfg.paths.journal) as j:
        assert j.halt_in_force("2017-01-03", "DU1234567") is None
        assert [e["detail"]["day"] for e in j.events("halt_lifted")] == ["2017-01-03"]
    # the halt belonged to 2017-01-03 only
    with Journal(cfg.paths.journal) as j:
        assert j.halt_in_force("2017-01-04", "DU1234567") is None


def test_a_journal_of_another_account_is_refused_before_anything_is_sent(gateway_sim_factory,
                                                                         tmp_path):
    sim = gateway_sim_factory(data="sample")  # account DU1234567
    cfg = make_config(tmp_path, sim.port)
    with Journal(cfg.paths.journal) as j:
        j.bind_account("DU7777777")
    with pytest.raises(JournalError, match="belongs to account DU7777777, not DU1234567"):
        run_live(cfg, max_runtime=10)
    assert sim.requests_named("placeOrder") == []
    with Journal(cfg.paths.journal) as j:  # refused before reconcile touched anything
        assert j.account == "DU7777777" and j.intents() == [] and j.fills() == []
        assert j.events("reconcile") == [] and j.runs() == []


def test_the_first_run_binds_the_journal_to_its_account(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port)
    run_live(cfg, max_runtime=30)
    with Journal(cfg.paths.journal) as j:
        assert j.account == "DU1234567"


@pytest.mark.slow
def test_a_second_runner_on_the_same_journal_is_refused_naming_the_holder(gateway_sim_factory,
                                                                         tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port)
    with RunLock(cfg.paths.journal):  # "another runner" holds the journal
        with pytest.raises(JournalLockedError) as err:
            run_live(cfg, max_runtime=10)
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(err.value)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BT_IBKR_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        cli = subprocess.run(
            [sys.executable, "-m", "examples.live", "--paper", "--port", str(sim.port),
             "--journal", str(cfg.paths.journal), "--max-runtime", "10"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 2, cli.stderr[-2000:]
        assert f"pid {os.getpid()}" in cli.stderr and "one runner per journal" in cli.stderr
    assert sim.requests_named("placeOrder") == []
    # released: the next run goes ahead
    assert run_live(cfg, max_runtime=30).orders[0]["status"] == "filled"
