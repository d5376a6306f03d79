"""IBBroker counts every fill of an order it did not place exactly once, whatever the order.

An earlier process (same clientId) sends a market order and dies; the simulator fills it at
the next bar. The restarted process follows the order (``IBStore.follow_trades``, as the live
runner's start-up recovery does) and starts an IBBroker, which adopts IB's position and cash.
IB tells of the fill in separate messages (execDetails 11, commissionReport 59, position 61,
account values 6 / 73); :class:`helpers.sim.HoldMessages` holds some of them until after the
broker's start-up snapshot, so each case puts the snapshot at another point of that sequence.
Whatever the case, the broker's position and cash end equal to the simulator's own ledger, the
fill is counted once (one FollowedFill, a reconnect's replay changes nothing), and the Strategy
hears of it through ``notify_store``.
"""

from __future__ import annotations

import threading

import pytest
from helpers.sim import HoldMessages, poll_until

from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.broker import IBBroker, IBOrder
from bt_ibkr.ib.events import ExecutionReceived, FollowedFill
from bt_ibkr.ib.store import IBStore

CLIENT = 57
REF = "bt1:T:SPY:20170103T1430:1"
QTY = 10
HANG = 60
CASH = (6, 73)  # accountValue, accountUpdateMulti: both carry TotalCashBalance


@pytest.fixture
def sim(gateway_sim_factory):
    return gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})


def earlier_process_leaves_an_order(sim):
    """Place a market BUY of QTY SPY under REF (it fills at the next bar), then die."""
    store = IBStore(port=sim.port, clientId=CLIENT, connect_timeout=10)
    try:
        store.start()
        contract = store.qualify(ibc.Stock("SPY", "SMART", "USD")).contract
        order = ibc.Order(action="BUY", totalQuantity=QTY, orderType="MKT", orderRef=REF,
                          tif="DAY")
        store.place_order(REF, contract, order)
        poll_until(lambda: sim.broker.open_orders(), timeout=HANG, what="the order at IB")
    finally:
        store.close()
        IBStore.reset_default()
    return contract


def restarted_store(sim) -> IBStore:
    store = IBStore(port=sim.port, clientId=CLIENT, connect_timeout=10)
    store.start()
    assert store.follow_trades({REF}) == [REF]
    return store


def read_all(store: IBStore) -> None:
    """Return once the client has read every message the simulator sent before this call (a
    round trip: the gateway answers after them, on the same socket)."""
    store.server_time(strict=True)


class FeedStandIn:
    """What the broker reads of a feed here: its trade contract (no bars)."""

    def __init__(self, contract) -> None:
        self.tradecontract, self._name = contract, contract.symbol

    def __len__(self) -> int:
        return 0


def sim_position(sim) -> float:
    return sum(p.position for p in sim.broker.positions() if p.contract.symbol == "SPY")


# held until after the broker's snapshot -> (the fill is in the adopted position, in the cash)
CASES = {
    "all_before_the_snapshot": ((), True, True),
    "all_after_the_snapshot": ((11, 59, 61, *CASH), False, False),
    "position_after": ((61,), False, True),
    "cash_after": (CASH, True, False),
    "commission_after": ((59,), True, True),
    "position_and_cash_after": ((61, *CASH), False, False),
    "execution_after_position_and_cash": ((11, 59), True, True),
}


@pytest.mark.parametrize("held,in_position,in_cash", CASES.values(), ids=CASES.keys())
def test_a_followed_fill_is_counted_once_whatever_reaches_the_client_first(
        sim, held, in_position, in_cash):
    contract = earlier_process_leaves_an_order(sim)
    store = restarted_store(sim)
    broker = IBBroker(store=store)
    followed: list[FollowedFill] = []
    executions: list[str] = []
    broker.subscribe(lambda ev: followed.append(ev) if isinstance(ev, FollowedFill) else None)
    broker.subscribe(lambda ev: executions.append(ev.exec_id)
                     if isinstance(ev, ExecutionReceived) else None)
    try:
        with HoldMessages(sim, CLIENT, *held) as hold:
            sim.advance(seconds=5)  # the next bar: the order fills
            read_all(store)
            assert set(hold.ids()) == set(held), "the case holds what it says"
            if 11 in held and 61 not in held:
                # IB reported position and cash before the execution: start waits for it
                starting = threading.Thread(target=broker.start, daemon=True)
                starting.start()
                poll_until(lambda: store.book.waiting, timeout=HANG,
                           what="start() waiting for the execution")
                hold.release()
                starting.join(HANG)
                assert not starting.is_alive()
            else:
                broker.start()
        read_all(store)
        broker.process_events()
        (ex,) = sim.broker.executions()
        assert [(f.ref, f.exec_id, f.shares, f.price, f.in_position, f.in_cash)
                for f in followed] == [(REF, ex.exec_id, QTY, ex.price, in_position, in_cash)]
        assert broker.getposition(FeedStandIn(contract)).size == sim_position(sim) == QTY
        assert broker.getcash() == pytest.approx(sim.broker.cash, abs=0.01)
        (msg, _, details), = [n for n in store.get_notifications() if n[0].kind == "fill"]
        assert details == {"orderRef": REF, "symbol": "SPY", "side": "BUY", "size": QTY,
                           "price": ex.price, "commission": pytest.approx(ex.commission),
                           "execId": ex.exec_id}
        assert REF in msg.text and "BUY 10 SPY" in msg.text

        # a reconnect hands every execution over again: nothing is counted twice
        connects = store.connection.connects
        sim.drop_connections()
        poll_until(lambda: store.connection.connects > connects and store.ready, timeout=HANG,
                   what="the reconnect")
        read_all(store)
        broker.process_events()
        assert executions == [ex.exec_id] * 2  # handed over again after the reconnect
        assert len(followed) == 1
        assert broker.getposition(FeedStandIn(contract)).size == QTY
        assert broker.getcash() == pytest.approx(sim.broker.cash, abs=0.01)
    finally:
        broker.stop()
        store.close()
        IBStore.reset_default()


def test_a_trade_made_elsewhere_is_adopted_as_ib_reports_it(sim):
    """Another client's fill: IB reports the position, this client never gets the execution.
    start() waits ``settle`` for it, then adopts IB's position as it is (and logs why)."""
    store = IBStore(port=sim.port, clientId=CLIENT, connect_timeout=10)
    other = IBStore(port=sim.port, clientId=CLIENT + 1, connect_timeout=10)
    broker = IBBroker(store=store, settle=0.3)
    try:
        store.start()
        other.start()
        contract = other.qualify(ibc.Stock("SPY", "SMART", "USD")).contract
        other.place_order("manual-1", contract, ibc.Order(action="BUY", totalQuantity=5,
                                                          orderType="MKT", tif="DAY"))
        poll_until(lambda: sim.broker.open_orders(), timeout=HANG, what="the order at IB")
        sim.advance(seconds=5)
        read_all(store)
        assert store.account_snapshot(settle=0).unexplained == {contract.conId: 5}
        broker.start()
        read_all(store)
        broker.process_events()
        assert broker.getposition(FeedStandIn(contract)).size == sim_position(sim) == 5
        assert broker.getcash() == pytest.approx(sim.broker.cash, abs=0.01)
    finally:
        broker.stop()
        for s in (store, other):
            s.close()
        IBStore.reset_default()


def test_a_strategy_order_bound_later_gets_the_counted_fills_without_recounting(sim):
    """A restarted run that re-makes the decision (same orderRef) after the fill was counted:
    ``bind_order`` hands the fill to the Strategy's order (Completed, IB's price and
    commission) and leaves position and cash as they are."""
    contract = earlier_process_leaves_an_order(sim)
    store = restarted_store(sim)
    broker = IBBroker(store=store)
    try:
        broker.start()
        sim.advance(seconds=5)
        read_all(store)
        broker.process_events()
        feed = FeedStandIn(contract)
        position, cash = broker.getposition(feed).size, broker.getcash()
        assert position == QTY
        order = IBOrder("BUY", owner=None, data=feed, size=QTY, simulated=True, orderRef=REF)
        order.addcomminfo(broker.getcommissioninfo(feed))
        order.submit(broker)
        broker.bind_order(order)
        (ex,) = sim.broker.executions()
        assert order.status == order.Completed and order.info.adopted
        assert (order.executed.size, order.executed.price) == (QTY, ex.price)
        assert order.executed.comm == pytest.approx(ex.commission)
        assert (broker.getposition(feed).size, broker.getcash()) == (position, cash)
        statuses = []
        while (n := broker.get_notification()) is not None:
            statuses.append(n.getstatusname())
        assert statuses == ["Accepted", "Completed"]
    finally:
        broker.stop()
        store.close()
        IBStore.reset_default()
