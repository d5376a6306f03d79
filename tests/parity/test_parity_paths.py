"""Parity: one Strategy over the same bars through BackBroker and through IBStore/IBBroker/
IBData against the gateway simulator, compared bar by bar (bt_ibkr.parity).

The simulator serves exactly the test's frames (bt_ibkr.gateway_sim.frames: one 5-second step
per session, orders filled at the next open before the bar is sent, commission 1 bp of value
as BackBroker's) and the driver advances it one session at a time in lockstep with the
Strategy. Real S&P 500 / NASDAQ bars from arch. Every expectation is "both paths agree", so
nothing here is a golden number; the counts only guard that the scenario trades.
"""

from __future__ import annotations

import copy

import pytest
from helpers.sim import fills_of, poll_until

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.store import IBStore
from bt_ibkr.parity.diff import compare
from bt_ibkr.parity.paths import ParityConfig, run_ib_feeds
from bt_ibkr.parity.run import run_parity
from strategies import RegimeAwareEnsemble

FIVE_YEARS = 1260
# a rebalance band tighter than the default's 15% of the target: the default trades the trend
# sleeve a few times a year, and these tests need many orders through the path under test
BUSY = {"band": 0.05}


def assert_identical(run, min_orders):
    r = run.report
    assert r.bars_backtest == r.bars_ib == r.bars
    assert r.decision_diffs == 0, r.first_divergence
    assert r.first_divergence is None
    assert r.order_diffs == r.fill_diffs == r.position_diffs == 0
    assert r.orders_backtest == r.orders_ib >= min_orders
    assert fills_of(run.backtest) == fills_of(run.ib)  # same price, size, commission, order
    assert r.max_value_diff < 1e-4
    # the strategy really decided something non-trivial on both paths
    assert any(b.decision.get("targets", {}) and max(b.decision["targets"].values()) > 0
               for b in run.ib.bars)


@pytest.mark.slow
def test_five_years_one_symbol_same_decisions_and_fills(gateway_sim, spx):
    frames = {"^GSPC": spx.iloc[-FIVE_YEARS:]}
    run = run_parity(frames, RegimeAwareEnsemble, BUSY, ParityConfig(client_id=81),
                     sim=gateway_sim)
    assert_identical(run, min_orders=50)
    execs = gateway_sim.broker.executions()
    assert [round(e.price, 6) for e in execs] == [round(f[4], 6) for f in fills_of(run.backtest)]


@pytest.mark.slow
def test_five_years_two_symbols_same_decisions_and_fills(gateway_sim, spx, ndx):
    frames = {"^GSPC": spx.iloc[-FIVE_YEARS:], "^IXIC": ndx.iloc[-FIVE_YEARS:]}
    run = run_parity(frames, RegimeAwareEnsemble, BUSY, ParityConfig(client_id=82),
                     sim=gateway_sim)
    assert_identical(run, min_orders=80)
    assert {f["data"] for f in run.ib.fills()} == {"^GSPC", "^IXIC"}


@pytest.mark.slow
def test_partial_fills_keep_the_strategy_state(gateway_sim, spx):
    frames = {"^GSPC": spx.iloc[-600:]}
    cfg = ParityConfig(client_id=83, partial_fill_qty=7)
    run = run_parity(frames, RegimeAwareEnsemble, BUSY, cfg, sim=gateway_sim)
    r = run.report
    # the gateway split the orders: more executions than BackBroker fills ...
    assert r.fills_ib > r.fills_backtest >= 20
    assert max(f["size"] for f in run.ib.fills()) <= 7
    # ... and the Strategy still saw each order complete once, with the same positions
    assert r.decision_diffs == r.order_diffs == r.position_diffs == r.fill_diffs == 0
    assert r.orders_ib == r.orders_backtest
    assert r.max_value_diff < 1e-4


@pytest.mark.slow
def test_gateway_restart_with_id_rollback_mid_run(gateway_sim, spx):
    frames = {"^GSPC": spx.iloc[-500:]}
    restarted = []

    def on_step(k, sim, store):
        if k == 320:
            subs = len(sim.requests_named("reqRealTimeBars"))
            sim.restart(rollback_ids=True, rollback_to=1, downtime=0.2)
            poll_until(lambda: store.ready and len(sim.requests_named("reqRealTimeBars")) > subs,
                       what="reconnect and resubscription")
            restarted.append(k)

    run = run_parity(frames, RegimeAwareEnsemble, {}, ParityConfig(client_id=84),
                     sim=gateway_sim, on_step=on_step)
    assert restarted == [320]
    assert_identical(run, min_orders=15)
    execs = gateway_sim.broker.executions()
    refs = [e.order_ref for e in execs]
    assert len(set(refs)) == len(refs) == run.report.orders_ib
    # orders were placed and filled on both sides of the restart, ids never reused
    day = run.ib.bars[320].dt[:10]
    assert any(b.orders for b in run.ib.bars[:320]) and any(b.orders for b in run.ib.bars[321:])
    assert any(f["dt"][:10] > day for f in run.ib.fills())
    ids = [e.order_id for e in execs]
    assert len(set(ids)) == len(ids)


@pytest.mark.slow
def test_compare_reports_the_first_divergence(gateway_sim, spx):
    frames = {"^GSPC": spx.iloc[-400:]}
    run = run_parity(frames, RegimeAwareEnsemble, {}, ParityConfig(client_id=85),
                     sim=gateway_sim)
    ib = copy.deepcopy(run.ib)
    traded = [b for b in ib.bars if b.orders]
    bar = traded[1]
    bar.decision["targets"]["^GSPC"] += 0.01
    bar.fills.append({"data": "^GSPC", "ref": 0, "side": "BUY", "size": 1.0,
                      "price": 1.0, "commission": 0.0})
    r = compare(run.backtest, ib)
    assert r.decision_diffs == 1
    assert r.fill_diffs == 1
    assert r.first_divergence["bar"] == bar.i
    assert r.first_divergence["field"] == "decision"
    # a fill-price difference inside the tolerance is no diff, outside it is
    ib2 = copy.deepcopy(run.ib)
    fill = next(f for b in ib2.bars for f in b.fills)
    fill["price"] *= 1.0005
    assert compare(run.backtest, ib2, tolerance=0.001).fill_diffs == 0
    assert compare(run.backtest, ib2, tolerance=0.0001).fill_diffs == 1


@pytest.mark.slow
@pytest.mark.parametrize("slippage", [5.0])
def test_backtest_slippage_shows_as_fill_diffs_not_decision_diffs(gateway_sim, spx, slippage):
    frames = {"^GSPC": spx.iloc[-400:]}
    cfg = ParityConfig(client_id=86, slippage_bps=slippage)
    r = run_parity(frames, RegimeAwareEnsemble, {}, cfg, sim=gateway_sim).report
    assert r.fill_diffs > 0
    assert r.decision_diffs == 0


def test_a_run_that_fails_while_being_built_leaves_nothing_connected(gateway_sim):
    """The IB path's store is closed on every path: a broker factory that fails after the
    store connected leaves no client at the gateway, and a feed refused at construction
    leaves no half-built store behind as the default that a later IBData would share."""

    def failing_broker(store):
        store.start()
        raise RuntimeError("broker refused")

    aapl = {"AAPL": "AAPL-STK-SMART-USD"}
    with pytest.raises(RuntimeError, match="broker refused"):
        run_ib_feeds(gateway_sim, aapl, [], RegimeAwareEnsemble, {},
                     ParityConfig(client_id=61), make_broker=failing_broker)
    poll_until(lambda: gateway_sim.connected_clients() == [], timeout=30,
               what="the failed run's client to disconnect")

    with pytest.raises(ConfigError, match="syncwait"):
        run_ib_feeds(gateway_sim, aapl, [], RegimeAwareEnsemble, {},
                     ParityConfig(client_id=62), data_kwargs={"syncwait": 0})
    fresh = IBStore.default(port=gateway_sim.port, clientId=63)
    try:
        assert fresh.clientId == 63  # not the failed run's store (clientId 62)
    finally:
        fresh.close()
