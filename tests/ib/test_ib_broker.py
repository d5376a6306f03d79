"""IBBroker through the real IB client against the gateway simulator's order engine."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import backtrader as bt
import pytest
from helpers.ib import CLIENT, HANG, Live
from helpers.sim import HoldMessages
from helpers.sim import poll_until as wait_until

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.broker import IBBroker, tif_for
from bt_ibkr.ib.store import IBStore
from feeds.ibdata import IBData


def test_market_order_fills_with_ibs_price_and_commission(gateway_sim):
    script = {2: lambda s: s.buy(size=100), 6: lambda s: s.sell(size=100)}
    with Live(gateway_sim, script) as live:
        live.step(4)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)))
        live.step(4)
        live.until(lambda: "Completed" in live.statuses(live.ref(2)))
        # the account updates follow the fills: step until next() saw them
        live.until(lambda: live.rec["trades"] and live.rec["cash"] == pytest.approx(
            gateway_sim.broker.cash, abs=0.01) and live.rec["value"] == pytest.approx(
            gateway_sim.broker.accounts.numbers()["NetLiquidation"], abs=0.01),
            what="the account update after the fills")
    execs = gateway_sim.broker.executions()
    assert [e.order_ref for e in execs] == [live.ref(1), live.ref(2)]
    # one format, from the decision: strategy, symbol, the bar's close (UTC), number in the bar
    assert re.fullmatch(r"bt1:Scripted:AAPL:20240102T\d{4,6}:1", live.ref(1))
    done = [o for o in live.rec["orders"] if o["status"] == "Completed"]
    assert [(o["size"], o["price"]) for o in done] == [(e.shares if e.side == "BOT" else -e.shares,
                                                        e.price) for e in execs]
    assert [o["comm"] for o in done] == pytest.approx([e.commission for e in execs])
    assert live.statuses(live.ref(1)) == ["Submitted", "Accepted",
                                                                  "Completed"]
    # the round trip's P&L is IB's prices with IB's commission
    pnl, pnlcomm = live.rec["trades"][0]
    assert pnl == pytest.approx(100 * (execs[1].price - execs[0].price))
    assert pnlcomm == pytest.approx(pnl - execs[0].commission - execs[1].commission)
    # cash and value come from the account updates
    assert live.rec["cash"] == pytest.approx(gateway_sim.broker.cash, abs=0.01)
    assert live.rec["value"] == pytest.approx(gateway_sim.broker.accounts.numbers()["NetLiquidation"],
                                              abs=0.01)
    assert gateway_sim.broker.cash == pytest.approx(1_000_000 + pnlcomm, abs=0.01)


def test_resting_limit_does_not_stall_next_and_cancels(gateway_sim):
    def place(s):
        s.rec["handles"]["lmt"] = s.buy(size=10, exectype=bt.Order.Limit, price=1.0)

    script = {1: place, 8: lambda s: s.cancel(s.rec["handles"]["lmt"])}
    with Live(gateway_sim, script) as live:
        live.step(6)  # next() keeps running while the order rests at IB
        assert live.rec["n"] == 6
        assert live.statuses(live.ref(1)) == ["Submitted", "Accepted"]
        live.step(2)
        live.until(lambda: "Canceled" in live.statuses(live.ref(1)))


def test_submit_and_cancel_never_wait_for_the_gateway(gateway_sim):
    """The gateway takes the order and the cancel but never answers either: next() still
    runs on every bar (a submit or cancel that waited for IB's reply would hang here)."""
    def place(s):
        s.rec["handles"]["lmt"] = s.buy(size=10, exectype=bt.Order.Limit, price=1.0)

    gateway_sim.drop_replies(3)  # placeOrder: no openOrder / orderStatus
    gateway_sim.drop_replies(4)  # cancelOrder: no orderStatus / 202
    script = {1: place, 3: lambda s: s.cancel(s.rec["handles"]["lmt"])}
    with Live(gateway_sim, script) as live:
        live.step(6)
        assert live.rec["n"] == 6
        assert live.statuses(live.ref(1)) == ["Submitted"]  # IB never acknowledged it
    # the gateway did get both requests
    assert len(gateway_sim.requests_named("placeOrder")) == 1
    assert len(gateway_sim.requests_named("cancelOrder")) == 1
    assert gateway_sim.broker.completed_orders()[0].status == "Cancelled"


def test_order_types_tif_and_extra_fields_reach_ib(gateway_sim):
    valid_dt = datetime(2024, 1, 10, 20, 0)

    def place(s):
        px = s.data.close[0]
        s.buy(size=1, exectype=bt.Order.Limit, price=round(px * 0.5, 2), valid=None)
        s.buy(size=2, exectype=bt.Order.Stop, price=round(px * 1.5, 2), valid=timedelta(0))
        s.buy(size=3, exectype=bt.Order.StopLimit, price=round(px * 1.5, 2),
              plimit=round(px * 1.6, 2), valid=valid_dt)
        s.sell(size=4, exectype=bt.Order.StopTrail, trailpercent=0.5)
        s.sell(size=5, exectype=bt.Order.StopTrailLimit, price=round(px * 0.5, 2),
               plimit=round(px * 0.45, 2), trailamount=30.0)
        s.buy(size=6, exectype=bt.Order.Close, outsideRth=True, orderRef="my-own-ref")

    with Live(gateway_sim, {1: place}) as live:
        live.step(2)
        wait_until(lambda: len(gateway_sim.broker.open_orders()) == 6, what="six orders at IB")
        live.until(lambda: len({o["ref"] for o in live.rec["orders"]
                                if o["status"] == "Accepted"}) == 6, what="six acknowledged")
    specs = {o.spec.totalQuantity: o.spec for o in gateway_sim.broker.open_orders()}
    assert (specs[1].orderType, specs[1].tif) == ("LMT", "GTC")
    assert (specs[2].orderType, specs[2].tif) == ("STP", "DAY")
    assert (specs[3].orderType, specs[3].tif, specs[3].goodTillDate) == (
        "STP LMT", "GTD", "20240110-20:00:00")
    assert specs[3].lmtPrice > specs[3].auxPrice
    assert (specs[4].orderType, specs[4].trailingPercent, specs[4].action) == ("TRAIL", 50.0, "SELL")
    assert (specs[5].orderType, specs[5].auxPrice) == ("TRAIL LIMIT", 30.0)
    assert specs[5].trailStopPrice is not None and specs[5].lmtPriceOffset is not None
    assert (specs[6].orderType, specs[6].outsideRth, specs[6].orderRef) == ("MOC", True,
                                                                            "my-own-ref")
    refs = sorted(s.orderRef for s in specs.values())
    decision = refs[0].rsplit(":", 1)[0]  # five orders of one decision, numbered 1..5
    assert re.fullmatch(r"bt1:Scripted:AAPL:20240102T\d{4,6}", decision)
    assert refs[:5] == [f"{decision}:{i}" for i in range(1, 6)]
    assert all(o["status"] != "Rejected" for o in live.rec["orders"])


def test_valid_to_tif_mapping():
    assert tif_for(None) == ("GTC", "")
    assert tif_for(timedelta(0)) == ("DAY", "")
    assert tif_for(0) == ("DAY", "")
    assert tif_for(datetime(2024, 3, 1, 15, 30)) == ("GTD", "20240301-15:30:00")
    tif, gtd = tif_for(timedelta(hours=2))
    assert tif == "GTD" and len(gtd) == 17


def test_bracket_orders_link_to_parent_and_last_child_transmits(gateway_sim):
    def place(s):
        px = s.data.close[0]
        s.rec["handles"]["bracket"] = s.buy_bracket(
            size=10, price=round(px * 1.01, 2), exectype=bt.Order.Limit,
            stopprice=round(px * 0.9, 2), limitprice=round(px * 1.2, 2))

    with Live(gateway_sim, {1: place}) as live:
        live.step(2)
        wait_until(lambda: len(gateway_sim.requests_named("placeOrder")) == 3, what="3 orders")
        live.step(3)
        parent_ref = live.ref(1)
        live.until(lambda: "Completed" in live.statuses(parent_ref), what="parent fill")
    sim_orders = sorted(gateway_sim.broker.open_orders() + gateway_sim.broker.completed_orders(),
                        key=lambda o: o.order_id)
    parent, stop, limit = sim_orders
    assert parent.spec.transmit is True or parent.transmitted  # released by the last child
    assert (stop.spec.parentId, limit.spec.parentId) == (parent.order_id, parent.order_id)
    assert (stop.spec.orderType, limit.spec.orderType) == ("STP", "LMT")
    assert stop.spec.ocaGroup == limit.spec.ocaGroup != ""
    placed = [r[3] for r in gateway_sim.requests_named("placeOrder")]
    transmit_flags = [f[27] for f in placed]  # transmit is field 27 of placeOrder (v178)
    assert transmit_flags == ["0", "0", "1"]
    assert parent.status == "Filled"
    assert stop.status == "Submitted" and limit.status == "Submitted"


def test_oco_orders_share_an_oca_group_and_one_fill_cancels_the_other(gateway_sim):
    def place(s):
        px = s.data.close[0]
        first = s.buy(size=5, exectype=bt.Order.Limit, price=round(px * 0.5, 2),
                      ocaGroup="grp-1")  # rests
        s.buy(size=5, exectype=bt.Order.Limit, price=round(px * 1.05, 2), oco=first)  # fills

    with Live(gateway_sim, {1: place}) as live:
        live.step(3)
        live.until(lambda: "Canceled" in live.statuses(live.ref(1)),
                   what="the other OCA member cancelled")
    groups = {o.spec.ocaGroup for o in gateway_sim.broker.completed_orders()}
    assert groups == {"grp-1"}
    assert live.statuses(live.ref(2))[-1] == "Completed"


def test_oco_without_a_group_on_the_first_order_is_a_clear_error(gateway_sim):
    def place(s):
        first = s.buy(size=1, exectype=bt.Order.Limit, price=1.0)
        first.ib_order.ocaGroup = ""  # as if the first order had been sent without a group
        try:
            s.buy(size=1, exectype=bt.Order.Limit, price=1.0, oco=first)
        except ConfigError as exc:
            s.rec["error"] = str(exc)

    with Live(gateway_sim, {1: place}) as live:
        live.step(2)
    assert "OCA group" in live.rec["error"]


def test_partial_fills_are_reported_then_completed(gateway_sim):
    gateway_sim.broker.partial_fill_qty = 40
    with Live(gateway_sim, {1: lambda s: s.buy(size=100)}) as live:
        live.step(4)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)))
    rows = [o for o in live.rec["orders"] if o["ref"] == live.ref(1)]
    assert [r["status"] for r in rows] == ["Submitted", "Accepted", "Partial", "Partial",
                                          "Completed"]
    assert [r["size"] for r in rows[2:]] == [40, 80, 100]
    execs = gateway_sim.broker.executions()
    assert [b for b in rows[-1]["exbits"]] == [(e.shares, e.price) for e in execs]
    assert rows[-1]["comm"] == pytest.approx(sum(e.commission for e in execs))


def test_a_cancel_confirmed_while_fills_await_commissions_ends_after_them(gateway_sim):
    """IB confirms a cancel while fills of the order still wait for their commission reports:
    the order stays working until those fills count, then ends Canceled holding all of them."""
    gateway_sim.broker.partial_fill_qty = 40
    script = {1: lambda s: s.rec["handles"].update(mkt=s.buy(size=100)),
              2: lambda s: s.cancel(s.rec["handles"]["mkt"])}
    with HoldMessages(gateway_sim, CLIENT, 59) as hold, Live(gateway_sim, script) as live:
        live.step(2)
        wait_until(lambda: [o.status for o in gateway_sim.broker.completed_orders()]
                   == ["Cancelled"], timeout=HANG, what="the cancel at the gateway")
        live.step(2)  # the broker reads IB's Cancelled while the fills await commissions
        assert hold.ids() and set(hold.ids()) == {59}
        assert live.statuses(live.ref(1)) == ["Submitted", "Accepted"]
        hold.release()
        live.until(lambda: "Canceled" in live.statuses(live.ref(1)))
    rows = [o for o in live.rec["orders"] if o["ref"] == live.ref(1)]
    execs = gateway_sim.broker.executions()
    assert 0 < sum(e.shares for e in execs) < 100
    assert rows[-1]["status"] == "Canceled"
    assert rows[-1]["size"] == sum(e.shares for e in execs)
    assert [r["status"] for r in rows].count("Canceled") == 1


def test_rejection_reaches_notify_order_and_notify_store(gateway_sim):
    gateway_sim.reject_next_order(201, "Order rejected - reason:simulated margin check")
    with Live(gateway_sim, {1: lambda s: s.buy(size=10)}) as live:
        live.step(2)
        live.until(lambda: "Rejected" in live.statuses(live.ref(1)))
        live.until(lambda: any(getattr(m, "code", None) == 201 for m in live.rec["store"]),
                   what="error 201 at notify_store")
    row = [o for o in live.rec["orders"] if o["status"] == "Rejected"][0]
    assert "simulated margin check" in row["reason"] and row["code"] == 201
    assert any(getattr(m, "code", None) == 201 for m in live.rec["store"])


def test_existing_positions_are_adopted_from_the_first_bar(gateway_sim):
    with Live(gateway_sim, {1: lambda s: s.buy(size=70)}) as live:
        live.step(3)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)))
    fill = gateway_sim.broker.executions()[0]
    with Live(gateway_sim, {}, client_id=CLIENT + 1) as live2:
        live2.step(1)
        strat = live2.cerebro.runningstrats[0]
        pos = strat.getposition()
    assert live2.rec["first_position"] == 70
    assert pos.size == 70
    assert pos.price == pytest.approx(fill.price + fill.commission / 70, abs=1e-6)


def test_tradename_routes_orders_to_the_trading_contract(gateway_sim):
    with Live(gateway_sim, {1: lambda s: s.buy(size=3)}, tradename="MSFT-STK-SMART-USD") as live:
        live.step(3)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)))
    assert gateway_sim.broker.executions()[0].contract.symbol == "MSFT"


@pytest.mark.slow
def test_gateway_restart_never_reuses_an_order_id_and_holds_orders(gateway_sim):
    script = {1: lambda s: s.buy(size=1), 4: lambda s: s.buy(size=2)}
    with Live(gateway_sim, script) as live:
        live.step(3)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)))
        first_id = gateway_sim.broker.executions()[0].order_id
        gateway_sim.restart(rollback_ids=True, rollback_to=1, downtime=0.3)
        wait_until(lambda: live.store.ready, what="reconnect")
        live.step(3)
        live.until(lambda: "Completed" in live.statuses(live.ref(2)))
    ids = [e.order_id for e in gateway_sim.broker.executions()]
    assert ids[0] == first_id and ids[1] > first_id
    assert len({e.order_ref for e in gateway_sim.broker.executions()}) == 2


def test_ibbroker_alone_uses_the_default_store(gateway_sim):
    store = IBStore(port=gateway_sim.port, clientId=CLIENT + 5)
    try:
        broker = IBBroker()
        assert broker.ib is store
        broker.start()
        assert broker.getcash() == pytest.approx(1_000_000.0)
        assert broker.getvalue() == pytest.approx(1_000_000.0)
        broker.stop()
        assert not store.connected()
    finally:
        store.close()
        IBStore.reset_default()
    with pytest.raises(ConfigError, match="unknown IBBroker parameter"):
        IBBroker(prot=1)


def test_ibdata_alone_uses_the_default_store(gateway_sim):
    IBStore.reset_default()
    data = IBData(dataname="AAPL", port=gateway_sim.port, clientId=CLIENT + 6)
    try:
        assert data.ib.p.port == gateway_sim.port and data.ib.clientId == CLIENT + 6
        assert IBStore.default() is data.ib
    finally:
        data.ib.close()
        IBStore.reset_default()


@pytest.mark.slow
def test_executions_missed_while_away_are_recovered_once(gateway_sim):
    """A MOC order fills at the close while the client is disconnected; after the reconnect
    the broker reports it Completed exactly once, with IB's price and commission."""
    with Live(gateway_sim, {1: lambda s: s.buy(size=7, exectype=bt.Order.Close)}) as live:
        live.step(2)
        wait_until(lambda: gateway_sim.broker.open_orders(), what="MOC resting at IB")
        gateway_sim.restart(rollback_ids=False, downtime=1.5)
        wait_until(lambda: not live.store.ready, what="disconnect")
        gateway_sim.advance(hours=6.5)  # the session closes: MOC fills while we are away
        assert gateway_sim.broker.executions(), "the MOC should have filled at the close"
        wait_until(lambda: live.store.ready, what="reconnect")
        gateway_sim.advance(hours=17.5)  # next morning
        live.until(lambda: "Completed" in live.statuses(live.ref(1)),
                   what="recovered fill")
        live.step(3)
        pos = live.cerebro.runningstrats[0].getposition().size
    ex = gateway_sim.broker.executions()[0]
    done = [o for o in live.rec["orders"] if o["status"] == "Completed"]
    assert len(done) == 1
    assert (done[0]["size"], done[0]["price"]) == (7, ex.price)
    assert done[0]["comm"] == pytest.approx(ex.commission)
    assert pos == 7
