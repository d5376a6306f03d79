"""Live runs on several symbols, daily and stream, end to end through the real client.

backtrader overloads ``==`` on data feeds, so any ``feed in list`` with two feeds registered
builds a lines operation instead of comparing; these runs would crash on it.
"""

from __future__ import annotations

import threading
from pathlib import Path

import backtrader as bt
import pytest
from helpers.live import multi_config as config
from helpers.sim import poll_until

from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner, run_live

FIVE = ["SPY", "QQQ", "AAPL", "MSFT", "IWM"]


def sim_positions(sim) -> dict[str, float]:
    return {p.contract.symbol: p.position for p in sim.broker.positions() if p.position}


def assert_ledger_agrees(sim, journal_path: Path, positions: dict[str, float]) -> None:
    refs = [o.spec.orderRef for o in sim.broker.open_orders() + sim.broker.completed_orders()]
    assert len(refs) == len(set(refs)), "an orderRef was sent twice"
    with Journal(journal_path) as j:
        assert {f.exec_id for f in j.fills()} == {e.exec_id for e in sim.broker.executions()}
    assert positions == sim_positions(sim)


class OnePerFeedPerBar(bt.Strategy):
    """On every live bar, buys one share of each feed (the stream run's per-feed order path)."""

    def __init__(self):
        self.live: set[int] = set()

    def notify_data(self, data, status, *args, **kwargs):
        idx = next(i for i, d in enumerate(self.datas) if d is data)
        (self.live.add if status == data.LIVE else self.live.discard)(idx)

    def next(self):
        for i, d in enumerate(self.datas):
            if i in self.live:
                self.buy(data=d, size=1)


def test_default_strategy_on_two_symbols_trades_both(gateway_sim_factory, tmp_path):
    """The reproduction of the crash: ``examples.live --paper --simulate --symbols SPY,QQQ``."""
    sim = gateway_sim_factory(data="sample")
    res = run_live(config(tmp_path, sim.port, ["SPY", "QQQ"]), max_runtime=120)
    assert res.stopped_by == "finished"
    assert {o["symbol"] for o in res.orders} == {"SPY", "QQQ"}
    assert_ledger_agrees(sim, tmp_path / "journal.sqlite", res.positions)


@pytest.mark.slow
@pytest.mark.parametrize("symbols", [["SPY", "QQQ"], FIVE], ids=["2", "5"])
def test_daily_run_on_several_symbols_decides_and_trades_each(gateway_sim_factory, tmp_path,
                                                              symbols):
    sim = gateway_sim_factory(data="sample")
    cfg = config(tmp_path, sim.port, symbols)
    res = run_live(cfg, strategy=OnePerFeedPerBar, max_runtime=120)
    assert res.stopped_by == "finished"
    traded = {o["symbol"] for o in res.orders}
    assert traded == set(symbols), f"no decision reached the gateway for {set(symbols) - traded}"
    assert all(o["status"] == "filled" for o in res.orders)
    assert_ledger_agrees(sim, tmp_path / "journal.sqlite", res.positions)
    # a second run of the same day re-decides every symbol and sends nothing
    sent = len(sim.broker.open_orders() + sim.broker.completed_orders())
    again = run_live(cfg, strategy=OnePerFeedPerBar, max_runtime=120)
    assert again.reconcile["ok"]
    assert all(o.get("duplicate_skipped") for o in again.orders)
    assert len(sim.broker.open_orders() + sim.broker.completed_orders()) == sent
    assert_ledger_agrees(sim, tmp_path / "journal.sqlite", again.positions)


@pytest.mark.slow
@pytest.mark.parametrize("symbols", [["SPY", "QQQ"], FIVE], ids=["2", "5"])
def test_stream_run_on_several_symbols_orders_on_every_feed(gateway_sim_factory, tmp_path,
                                                            symbols):
    sim = gateway_sim_factory(data="sample")
    cfg = config(tmp_path, sim.port, symbols, run_mode="stream", bar_size="5 secs")
    runner = LiveRunner(cfg, strategy=OnePerFeedPerBar, max_runtime=120)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("res", runner.run()), daemon=True)
    thread.start()
    try:
        sim.wait_for_request("reqRealTimeBars", count=len(symbols), timeout=60)

        def bought() -> set[str]:
            broker = runner.broker
            return {r.get("symbol") for r in list(broker.records.values())} if broker else set()

        for _ in range(40):  # each step emits one 5-second bar per feed
            if bought() == set(symbols):
                break
            sim.advance(seconds=5)
            n = len(sim.broker.executions())
            poll_until(lambda n=n: len(sim.broker.executions()) >= n, timeout=30,
                       what="the simulator's executions")
        poll_until(lambda: bought() == set(symbols), timeout=60,
                   what=f"an order on every one of {symbols}")
    finally:
        runner.stop("test")
        thread.join(60)
    assert not thread.is_alive()
    res = out["res"]
    assert res.stopped_by == "test"
    assert {o["symbol"] for o in res.orders} == set(symbols)
    poll_until(lambda: len(sim.broker.executions()) >= len(res.orders), timeout=30,
               what="fills")
    assert_ledger_agrees(sim, tmp_path / "journal.sqlite", res.positions)
