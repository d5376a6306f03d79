"""Parity across a process kill and restart mid-run, through the live path's journal recovery.

The IB path runs as two processes on one journal (bt_ibkr.parity.restart: run lock, SQLite
journal, start-up reconcile, JournaledIBBroker): the first is killed right after it sent an
order that fills at the next session's open; the second, on the same client id, warms up on the
first one's recorded bars and decides its last bar again. Every expectation is "the same as the
backtest" (decisions, orders, fills, positions) plus what the gateway and the journal hold, so
nothing here is a golden number. The kill point is taken from the backtest's recording (a bar
with an order), never a fixed index. Real S&P 500 bars from arch.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from helpers.sim import fills_of

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.order_refs import make_order_ref
from bt_ibkr.live.journal import Journal
from bt_ibkr.parity.diff import compare
from bt_ibkr.parity.paths import ParityConfig, run_backtest_path
from bt_ibkr.parity.restart import JOURNAL, run_ib_path_killed
from strategies import RegimeAwareEnsemble

BARS = 400  # the strategy's 271-bar warm-up, then some five months of trading


def sim_orders(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


def in_flight_ref(ib, kill_at: int, journal=None) -> str:
    """The orderRef of the first process's last decision (the same inputs make the same ref;
    the journal's identity when the processes ran on ``journal``)."""
    owner = None
    if journal is not None:
        from bt_ibkr.live.journal import Journal

        with Journal(journal) as j:
            owner = j.journal_id
    return make_order_ref("RegimeAwareEnsemble", "GSPC",
                          datetime.fromisoformat(ib.bars[kill_at - 1].dt), 1, owner=owner)


def assert_same_as_backtest(back, ib) -> None:
    r = compare(back, ib)
    assert r.bars_backtest == r.bars_ib == r.bars == BARS
    assert r.decision_diffs == 0, r.first_divergence
    assert r.order_diffs == r.fill_diffs == r.position_diffs == 0, r.diffs[:3]
    assert fills_of(back) == fills_of(ib)  # same price, size, commission, day
    # the restarted ledger starts from IB's reported cash, which the account message rounds
    assert r.max_value_diff < 0.01


def assert_one_order_per_decision(sim, back) -> None:
    refs = [o.spec.orderRef for o in sim_orders(sim)]
    assert len(refs) == len(set(refs)) == len(back.orders())
    assert len(sim.requests_named("placeOrder")) == len(back.orders())  # nothing sent twice
    execs = sim.broker.executions()
    assert len({e.order_ref for e in execs}) == len(execs) == len(back.fills())


@pytest.fixture
def spx_bars(spx):
    return {"^GSPC": spx.iloc[-BARS:]}


@pytest.mark.slow
def test_killed_with_an_order_in_flight_restarts_without_sending_it_again(gateway_sim, spx_bars,
                                                                          tmp_path):
    cfg = ParityConfig(client_id=91)
    back = run_backtest_path(spx_bars, RegimeAwareEnsemble, {}, cfg)
    traded = [i for i, b in enumerate(back.bars) if b.orders]
    kill_at = traded[len(traded) // 2] + 1  # killed after a decision that sent an order
    ib = run_ib_path_killed(spx_bars, RegimeAwareEnsemble, {}, cfg, gateway_sim, kill_at,
                            state_dir=tmp_path)
    assert_same_as_backtest(back, ib)
    assert_one_order_per_decision(gateway_sim, back)

    # the restart decided the first process's last bar again, as LIVE, and adopted its order
    redecided = ib.meta["redecided"]
    assert redecided["i"] == kill_at - 1 and redecided["feeds"]["^GSPC"]["live"]
    assert redecided["decision"] == back.bars[kill_at - 1].decision
    assert redecided["orders"] == []
    assert [(o["side"], o["size"]) for o in redecided["adopted"]] == [
        (o["side"], o["size"]) for o in back.bars[kill_at - 1].orders]
    # its fill at the next open reached the restarted Strategy (not the journal's fallback)
    (fill,) = ib.bars[kill_at].fills
    assert "source" not in fill and fill["ref"] == redecided["adopted"][0]["ref"]
    assert ib.meta["fills_while_down"] == 0
    assert ib.meta["reconcile"]["ok"] and ib.meta["reconcile"]["resend"] == []
    # and the restarted process traded on by itself
    assert any(b.orders for b in ib.bars[kill_at:])

    ref = in_flight_ref(ib, kill_at, tmp_path / "journal.sqlite")
    (order,) = [o for o in sim_orders(gateway_sim) if o.spec.orderRef == ref]
    with Journal(tmp_path / JOURNAL) as j:
        rec = j.get(ref)
        assert (rec.status, rec.filled, rec.order_id) == ("filled", order.filled, order.order_id)
        assert [f.exec_id for f in j.fills(order_ref=ref)] == [
            e.exec_id for e in gateway_sim.broker.executions() if e.order_ref == ref]
        first, second = j.runs()
        assert first.ended is None and second.ended is not None  # the first one was killed
        assert rec.run_id == first.run_id


@pytest.mark.slow
def test_fill_made_while_down_comes_from_reqexecutions(gateway_sim, spx_bars, tmp_path):
    cfg = ParityConfig(client_id=92)
    back = run_backtest_path(spx_bars, RegimeAwareEnsemble, {}, cfg)
    traded = [i for i, b in enumerate(back.bars) if b.orders]
    # killed after a decision that sent an order and followed by another one that trades, so
    # the restart's first decision (on the session it missed) sends an order too
    kill_at = next(i for i in traded if i + 1 in traded) + 1
    ib = run_ib_path_killed(spx_bars, RegimeAwareEnsemble, {}, cfg, gateway_sim, kill_at,
                            state_dir=tmp_path, down=1)
    assert_same_as_backtest(back, ib)
    assert_one_order_per_decision(gateway_sim, back)

    # the order in flight filled at session kill_at's open with no process connected ...
    ref = in_flight_ref(ib, kill_at, tmp_path / JOURNAL)
    (ex,) = [e for e in gateway_sim.broker.executions() if e.order_ref == ref]
    # ... and the restart recorded that execution from reqExecutions, commission included
    (missed,) = ib.meta["reconcile"]["missed_fills"]
    assert (missed["exec_id"], missed["order_ref"]) == (ex.exec_id, ref)
    assert missed["commission"] == pytest.approx(ex.commission)
    assert ib.meta["fills_while_down"] == 1
    (fill,) = ib.bars[kill_at].fills
    assert fill["source"] == "journal" and fill["orderRef"] == ref
    with Journal(tmp_path / JOURNAL) as j:
        assert j.get(ref).status == "filled"
        assert [f.exec_id for f in j.fills(order_ref=ref)] == [ex.exec_id]
    # position and cash the restarted Strategy decided with are the backtest's after that fill
    redecided = ib.meta["redecided"]
    assert redecided["i"] == kill_at and redecided["feeds"]["^GSPC"]["live"]
    assert redecided["position"] == back.bars[kill_at].position
    assert abs(redecided["cash"] - back.bars[kill_at].cash) < 0.01
    assert redecided["adopted"] == []
    # its decision on the missed session sent a new order, as the backtest's did
    assert [(o["side"], o["size"]) for o in redecided["orders"]] == [
        (o["side"], o["size"]) for o in back.bars[kill_at].orders] != []


@pytest.mark.slow
def test_kill_with_nothing_in_flight(gateway_sim, spx_bars):
    cfg = ParityConfig(client_id=93)
    back = run_backtest_path(spx_bars, RegimeAwareEnsemble, {}, cfg)
    # before a session whose previous bar sent no order, with trading after it
    kill_at = next(i for i in range(BARS // 2, BARS) if not back.bars[i - 1].orders
                   and any(b.orders for b in back.bars[i:]))
    ib = run_ib_path_killed(spx_bars, RegimeAwareEnsemble, {}, cfg, gateway_sim, kill_at)
    assert_same_as_backtest(back, ib)
    assert_one_order_per_decision(gateway_sim, back)
    assert ib.meta["redecided"]["orders"] == ib.meta["redecided"]["adopted"] == []
    assert any(b.orders for b in ib.bars[kill_at:])
    assert ib.meta["killed_at"] == kill_at and ib.meta["replayed_in_restart"] == kill_at
    assert ib.meta["journal"] is None  # a temporary folder, removed


@pytest.mark.parametrize(("kill_at", "down"), [(0, 0), (BARS, 0), (BARS - 1, 1), (5, -1)])
def test_kill_points_that_leave_a_process_nothing_are_refused(gateway_sim, spx_bars, kill_at,
                                                               down):
    with pytest.raises(ConfigError, match=r"kill_at|down"):
        run_ib_path_killed(spx_bars, RegimeAwareEnsemble, {}, ParityConfig(client_id=94),
                           gateway_sim, kill_at, down=down)
