"""A restart with another clientId (issue 18, point 4), through the real client and the
gateway simulator.

IB binds an order to the clientId that placed it: its status and fills are pushed to that
client only (and to TWS's Master API client ID); another client sees it working only when it
asks (reqAllOpenOrders, read-only), and sees what finished through reqExecutions and
reqCompletedOrders. So a run under another clientId settles what finished while no one was
connected, but refuses to start while an order of its journal still works under another
clientId (exit 2, one line naming the clientId to use), and a run never sits refusing every
bar because of an order it cannot follow (the broker's last guard stops it, exit 4).
"""

from __future__ import annotations

import pytest
from helpers.live import (
    QTY,
    HoldTen,
    Run,
    assert_one_line_end,
    leave_an_order_working,
    make_config,
    run_cli,
    sim_position,
    stream_config,
)
from helpers.sim import order_status, our_ref, run_live_until

from bt_ibkr.errors import AttentionError, ConfigError
from bt_ibkr.live import run_reconcile
from bt_ibkr.live.audit import read_audit
from bt_ibkr.live.client_ids import placed_by
from bt_ibkr.live.journal import Intent, Journal
from bt_ibkr.live.runner import LiveRunner, run_live

ib_async = pytest.importorskip("ib_async")

HANG = 60


def _orders(sim) -> list:
    return sim.broker.open_orders() + sim.broker.completed_orders()


def _audit(tmp_path) -> list[dict]:
    return [r for path in sorted((tmp_path / "logs").glob("audit-*.jsonl"))
            for r in read_audit(path)]


# ------------------------------------------------------------------ what IB shows another client
def test_another_client_sees_an_order_only_when_it_asks_and_cannot_touch_it(
        gateway_sim_factory):
    sim = gateway_sim_factory(data="sample")
    first = ib_async.IB()
    first.connect(sim.host, sim.port, clientId=1, timeout=10)
    (spy,) = first.qualifyContracts(ib_async.Stock("SPY", "SMART", "USD"))
    bid = sim.market.quote(sim.contracts.by_conid(spy.conId)).bid
    resting = first.placeOrder(spy, ib_async.LimitOrder("BUY", 5, round(bid * 0.5, 2),
                                                        orderRef="ref-resting"))
    filled = first.placeOrder(spy, ib_async.MarketOrder("BUY", 3, orderRef="ref-filled"))
    first.reqCurrentTime()
    assert filled.orderStatus.status == "Filled"
    (ex,) = filled.fills

    other = ib_async.IB()
    other.connect(sim.host, sim.port, clientId=2, timeout=10)
    try:
        assert other.openTrades() == []  # its connect's reqOpenOrders: its own orders only
        (seen,) = other.reqAllOpenOrders()  # every client's working orders, on request
        assert (seen.order.orderRef, seen.order.clientId) == ("ref-resting", 1)
        assert [f.execution.execId for f in other.reqExecutions()] == [ex.execution.execId]
        by_client = {c: [f.execution.execId for f in other.reqExecutions(
            ib_async.ExecutionFilter(clientId=c))] for c in (1, 2)}
        assert by_client == {1: [ex.execution.execId], 2: []}
        done = {t.order.orderRef: t.orderStatus.status for t in other.reqCompletedOrders(True)}
        assert done == {"ref-filled": "Filled"}

        other.cancelOrder(seen.order)  # order ids belong to their client: not found (10147)
        other.reqCurrentTime()
        assert [o.spec.orderRef for o in sim.broker.open_orders()] == ["ref-resting"]

        before = seen.orderStatus.status  # what client 2 knows (its own cancel attempt)
        first.cancelOrder(resting.order)  # the placing client cancels it
        first.reqCurrentTime()
        other.reqCurrentTime()
        assert resting.orderStatus.status == "Cancelled"
        assert seen.orderStatus.status == before != "Cancelled"  # nothing pushed to client 2
        done = {t.order.orderRef: t.orderStatus.status for t in other.reqCompletedOrders(True)}
        assert done == {"ref-filled": "Filled", "ref-resting": "Cancelled"}
    finally:
        other.disconnect()
        first.disconnect()


# ------------------------------------------------------------------ an order still working
@pytest.mark.slow
@pytest.mark.parametrize("placed, restarted", [(1, 2), (0, 2)])
def test_an_order_working_under_another_client_id_refuses_the_start(gateway_sim_factory,
                                                                    tmp_path, placed, restarted):
    """clientId 0 is an API client like any other (before the fix a start under another
    clientId did not recognise clientId 0's order and waited for it in vain)."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = our_ref(tmp_path / "journal.sqlite")
    run_live_until(make_config(tmp_path, sim.port, **{"connection.client_id": placed}),
                   order_status(ref, "submitted"))
    with pytest.raises(ConfigError) as err:
        run_live(make_config(tmp_path, sim.port, **{"connection.client_id": restarted}),
                 max_runtime=30)
    text = str(err.value)
    assert f"order {ref}" in text and f"under clientId {placed}," in text
    assert f"run with --client-id {placed}" in text and f"clientId {restarted})" in text
    assert len(_orders(sim)) == 1  # nothing new sent
    with Journal(tmp_path / "journal.sqlite") as j:
        assert placed_by(j, ref) == placed  # recorded when it was sent
    # the same clientId follows it as before
    sim.advance(seconds=10)
    third = run_live(make_config(tmp_path, sim.port, **{"connection.client_id": placed}),
                     max_runtime=30)
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.get(ref).status == "filled"
    assert third.reconcile["ok"] and len(_orders(sim)) == 1


@pytest.mark.slow
def test_the_cli_refuses_with_one_line_and_exit_2(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = our_ref(tmp_path / "journal.sqlite")
    run_live_until(make_config(tmp_path, sim.port, **{"connection.client_id": 1}),
                   order_status(ref, "submitted"))
    code, err, _ = run_cli(tmp_path, sim, "--client-id", "2")
    assert code == 2, err
    last = assert_one_line_end(err, code, "error: ")
    assert f"order {ref} (BUY" in last and "under clientId 1," in last, last
    assert "run with --client-id 1" in last and "(clientId 2)" in last, last
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1
    assert len(_orders(sim)) == 1
    refused = [r for r in _audit(tmp_path) if r["kind"] == "run" and r.get("event") == "refused"]
    assert refused and "clientId 1" in refused[-1]["reason"]


def test_an_old_journal_learns_the_client_id_from_the_gateway(gateway_sim_factory, tmp_path):
    """A journal written before the clientId was recorded: the gateway's openOrder says which
    client placed the order; the refusal names it and the journal keeps it."""
    sim = gateway_sim_factory(data="sample")
    ref = "bt1:HoldTen:SPY:20170103T143000:1"
    client = ib_async.IB()
    client.connect(sim.host, sim.port, clientId=7, timeout=10)
    (spy,) = client.qualifyContracts(ib_async.Stock("SPY", "SMART", "USD"))
    bid = sim.market.quote(sim.contracts.by_conid(spy.conId)).bid
    trade = client.placeOrder(spy, ib_async.LimitOrder("BUY", QTY, round(bid * 0.5, 2),
                                                       orderRef=ref, tif="GTC"))
    client.reqCurrentTime()
    client.disconnect()
    cfg = stream_config(tmp_path, sim.port)
    with Journal(cfg.paths.journal) as j:  # as an older version journaled it: no clientId
        j.record_intent(Intent(order_ref=ref, strategy="HoldTen", symbol="SPY", side="BUY",
                               quantity=QTY, decision_time=sim.now().replace(tzinfo=None)))
        j.mark_sent(ref, trade.order.orderId)
        assert placed_by(j, ref) is None
    with pytest.raises(ConfigError) as err:
        LiveRunner(cfg, strategy=HoldTen, max_runtime=HANG).run()
    assert "under clientId 7," in str(err.value) and "--client-id 7" in str(err.value)
    with Journal(cfg.paths.journal) as j:
        assert placed_by(j, ref) == 7
        assert j.get(ref).status == "submitted"


def test_the_broker_stops_instead_of_refusing_every_bar(gateway_sim_factory, tmp_path,
                                                        monkeypatch):
    """The last guard: should an order the run cannot follow get past the start check, the
    first decision it refuses stops the run (exit 4, one line naming the order, its clientId
    and what to do). Before the fix every bar's decision was refused, silently, exit 0."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = leave_an_order_working(sim, stream_config(tmp_path, sim.port,
                                                    **{"connection.client_id": 1}))
    monkeypatch.setattr(run_reconcile, "check_client_ids", lambda *args: None)
    run = Run(sim, stream_config(tmp_path, sim.port, **{"connection.client_id": 2}))
    with pytest.raises(AttentionError) as err:
        run.step_until(lambda: False, "the stop", bars=5)
    run.thread.join(HANG)
    assert not run.thread.is_alive()
    text = str(err.value)
    assert f"order {ref} (BUY {QTY} SPY, 0 filled), placed by clientId 1," in text
    assert "(clientId 2) cannot follow it" in text and "--client-id 1" in text
    assert [o.spec.orderRef for o in _orders(sim)] == [ref]  # nothing duplicated, nothing sent
    stopped = [r for r in _audit(tmp_path) if r.get("status") == "stopped"]
    assert len(stopped) == 1 and stopped[0]["working"] == ref


def test_a_daily_redecision_never_waits_for_an_order_it_cannot_follow(gateway_sim_factory,
                                                                      tmp_path, monkeypatch):
    """The same guard in daily mode: the restarted run decides the same bar again, finds its
    orderRef in the journal, working under clientId 1. Before the fix it bound itself to that
    order and waited for a fill that never came, until max-runtime."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = our_ref(tmp_path / "journal.sqlite")
    run_live_until(make_config(tmp_path, sim.port, **{"connection.client_id": 1}),
                   order_status(ref, "submitted"))
    monkeypatch.setattr(run_reconcile, "check_client_ids", lambda *args: None)
    with pytest.raises(AttentionError) as err:
        run_live(make_config(tmp_path, sim.port, **{"connection.client_id": 2}),
                 max_runtime=HANG)
    text = str(err.value)
    assert f"order {ref} (BUY" in text and "placed by clientId 1," in text
    assert "would wait for its fill in vain" in text and "--client-id 1" in text
    assert [o.spec.orderRef for o in _orders(sim)] == [ref]


# ------------------------------------------------------------------ an order that filled meanwhile
@pytest.mark.slow
def test_a_fill_made_while_away_is_recorded_once_and_the_run_trades(gateway_sim_factory,
                                                                   tmp_path):
    """The first run (clientId 1) leaves a buy of 10 working; it fills with no one connected.
    The second run (clientId 2) records that fill once (from reqExecutions), the journal says
    filled, and its Strategy, holding 10 from its first bar on, buys 10 more: sent, filled,
    nothing refused."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    ref = leave_an_order_working(sim, stream_config(tmp_path, sim.port,
                                                    **{"connection.client_id": 1}))
    sim.advance(seconds=5)  # it fills while no process is connected
    assert sim_position(sim) == QTY
    (first,) = sim.broker.executions()

    run = Run(sim, stream_config(tmp_path, sim.port, **{"connection.client_id": 2}),
              target=2 * QTY)
    run.step_until(lambda: sim_position(sim) == 2 * QTY, "the second run's own order filled")
    run.step(2)
    res = run.stop()

    assert [s[1] for s in HoldTen.seen if s[0] == "bar"][0] == QTY
    assert not [o for o in HoldTen.seen if o[0] == "order" and o[2] == "Rejected"]
    assert not [line for line in res.needs_attention if "refused" in line]
    orders = _orders(sim)
    assert [(o.client_id, o.spec.totalQuantity) for o in orders] == [(1, QTY), (2, QTY)]
    new = orders[1].spec.orderRef
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.get(ref).status == "filled"
        assert [f.exec_id for f in j.fills(order_ref=ref)] == [first.exec_id]
        assert j.get(new).status == "filled" and len(j.fills()) == 2
        assert (placed_by(j, ref), placed_by(j, new)) == (1, 2)
        assert j.pending_shares("SPY") == 0
