"""An option position held through its expiry, as IBBroker follows it at the gateway simulator.

IB settles it overnight without an order (no execution): the option's position goes to 0 and,
exercised or assigned, the underlying's moves by 100 shares per contract at the strike. The
broker's ledger follows (positions and cash, no commission, no order notification) and tells
the Strategy through ``notify_store`` (kind "expiry")."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from helpers.ib import Live
from helpers.sim import HoldMessages, poll_until, wait_until
from ib_async import IB, MarketOrder

from bt_ibkr.gateway_sim.options import expiry_close_epoch
from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.broker import IBBroker
from bt_ibkr.ib.contracts import make_contract
from bt_ibkr.ib.store import IBStore

EXPIRY = "20240105"
#: 15:55 New York on the Thursday before the expiry
THURSDAY = datetime(2024, 1, 4, 20, 55, tzinfo=UTC)


def to_monday(sim, seconds: int = 0) -> None:
    """Advance through Friday's session to ``seconds`` after Monday's 09:30 open in New York
    (the expiry is settled at the first step of Monday's session)."""
    monday = datetime(2024, 1, 8, 14, 30, seconds, tzinfo=UTC)
    sim.advance(seconds=(monday - sim.now()).total_seconds())


def strikes(sim) -> tuple[float, float]:
    """Return (a strike below SPY's close on the expiry day, one above it)."""
    spy = sim.contracts.by_symbol("SPY", "STK")
    opt = sim.contracts.matches(symbol="SPY", secType="OPT",
                                lastTradeDateOrContractMonth=EXPIRY)[0]
    spot = sim.market.quote_at(spy, expiry_close_epoch(opt)).last
    return 5.0 * math.floor(spot / 5.0) - 5.0, 5.0 * math.ceil(spot / 5.0) + 5.0


def trade_elsewhere(sim, orders) -> dict[str, object]:
    """Place ``[(dataname, action, qty)]`` market orders from another client (as a user would
    in TWS before the run), fill them; return the qualified contracts by dataname."""
    ib = IB()
    ib.connect(sim.host, sim.port, clientId=9, timeout=10)
    try:
        contracts = {name: make_contract(name) for name, _, _ in orders}
        ib.qualifyContracts(*contracts.values())
        trades = [ib.placeOrder(contracts[name], MarketOrder(action, qty))
                  for name, action, qty in orders]
        wait_until(lambda: all(t.orderStatus.status in ("Submitted", "Filled")
                               for t in trades), ib.sleep)
        sim.advance(seconds=5)
        wait_until(lambda: all(t.orderStatus.status == "Filled" for t in trades), ib.sleep)
    finally:
        ib.disconnect()
    return contracts


def feed(contract) -> SimpleNamespace:
    """What IBBroker reads of a data feed: its trade contract."""
    return SimpleNamespace(tradecontract=contract, _name=contract.localSymbol)


#: how the simulator orders IB's position messages of one night's settlements (undocumented)
REPORTS = {"option_first": {}, "stock_first": {"stock_first": True},
           "stock_once": {"combine": True}, "stock_later": {"delivery_delay_steps": 3},
           "stock_once_later": {"combine": True, "delivery_delay_steps": 3}}


@pytest.mark.slow
@pytest.mark.parametrize("report", sorted(REPORTS))
def test_broker_follows_an_exercise_a_lapse_and_an_assignment_without_a_fill(
        gateway_sim_factory, report):
    gateway_sim = gateway_sim_factory(start=THURSDAY)
    for name, value in REPORTS[report].items():
        setattr(gateway_sim.server.options.expiry, name, value)
    low, high = strikes(gateway_sim)
    call = f"SPY-OPT-SMART-USD-{EXPIRY}-{low:g}-C"  # long 2, in the money: exercised
    otm_put = f"SPY-OPT-SMART-USD-{EXPIRY}-{low:g}-P"  # long 2, out of the money: lapses
    itm_put = f"SPY-OPT-SMART-USD-{EXPIRY}-{high:g}-P"  # short 1, in the money: assigned
    # 10 SPY held too: the simulator's clock steps while a position is open (stock_later)
    contracts = trade_elsewhere(gateway_sim, [(call, "BUY", 2), (otm_put, "BUY", 2),
                                              (itm_put, "SELL", 1),
                                              ("SPY-STK-SMART-USD", "BUY", 10)])
    spy = make_contract("SPY-STK-SMART-USD")
    spy.conId = gateway_sim.contracts.by_symbol("SPY", "STK").conId
    store = IBStore(port=gateway_sim.port, clientId=41, timeout=0.2, reconnect=-1,
                    connect_timeout=2)
    broker = IBBroker(store=store)
    broker.start()
    try:
        feeds = {name: feed(c) for name, c in contracts.items()}
        assert [broker.getposition(feeds[n]).size for n in (call, otm_put, itm_put)] == [2, 2, -1]
        held = broker.getposition(feed(spy))
        assert held.size == 10
        cash0 = broker.getcash()
        executions = len(gateway_sim.broker.executions())

        to_monday(gateway_sim, 30)  # Friday's expiry is settled before Monday's session

        def settled():
            broker.process_events()
            return sum(abs(s.delivered) for s in broker.settlements.settlements) >= 300 \
                and len({s.option_symbol for s in broker.settlements.settlements}) == 3
        poll_until(settled, timeout=60, what="the three settlements")

        # the options are gone, 200 more shares bought at the call's strike, 100 at the put's
        assert [broker.getposition(feeds[n]).size for n in (call, otm_put, itm_put)] == [0, 0, 0]
        position = broker.getposition(feed(spy))
        assert position.size == 310
        assert position.price == pytest.approx((10 * held.price + 200 * low + 100 * high) / 310)
        assert broker.getcash() == pytest.approx(cash0 - 200 * low - 100 * high)
        # the ledger agrees with IB's cash; no order, no execution, no commission
        poll_until(lambda: store.get_acc_cash() == pytest.approx(broker.getcash(), abs=0.01),
                   timeout=30, what="IB's cash to agree with the ledger")
        assert broker.get_notification() is None
        assert len(gateway_sim.broker.executions()) == executions
        # each option's last word says what became of it (a delivery reported after the
        # option was first seen leaving is told on its own: contracts 0)
        told: dict[str, tuple] = {}
        for msg, _, kw in store.get_notifications():
            if msg.kind == "expiry":
                was = told.get(kw["symbol"], (None, 0, 0))
                told[kw["symbol"]] = (kw["how"], was[1] + kw["contracts"],
                                      was[2] + kw["delivered"])
        local = {n: c.localSymbol for n, c in contracts.items()}
        assert told == {local[call]: ("exercised", 2, 200), local[otm_put]: ("expired", 2, 0),
                        local[itm_put]: ("assigned", -1, 100)}
    finally:
        broker.stop()
        IBStore.reset_default()


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"start": THURSDAY}], indirect=True)
def test_journaled_broker_journals_a_settlement_during_the_run_and_a_restart_agrees(
        gateway_sim, tmp_path):
    """In a journaled run the settlement moves the journal's positions (an ``expiry`` event,
    not a fill); the next start's reconciliation then finds journal and gateway agreeing."""
    from bt_ibkr.live.audit import AuditLog
    from bt_ibkr.live.journal import Journal
    from bt_ibkr.live.journaled_broker import JournaledIBBroker
    from bt_ibkr.live.recovery import recover

    low, high = strikes(gateway_sim)
    call = f"SPY-OPT-SMART-USD-{EXPIRY}-{low:g}-C"
    put = f"SPY-OPT-SMART-USD-{EXPIRY}-{high:g}-P"
    contracts = trade_elsewhere(gateway_sim, [(call, "BUY", 2), (put, "SELL", 1)])
    call_sym, put_sym = contracts[call].localSymbol, contracts[put].localSymbol
    journal = Journal(tmp_path / "journal.sqlite")
    journal.accept_positions({call_sym: 2, put_sym: -1, "SPY": 0})
    store = IBStore(port=gateway_sim.port, clientId=41, timeout=0.2, reconnect=-1,
                    connect_timeout=2)
    audit = AuditLog(tmp_path / "audit.jsonl")
    broker = JournaledIBBroker(store=store)
    broker.configure(journal=journal, audit=audit, gate=None, strategy_name="Test",
                     run_id=None, account=None)
    broker.start()
    try:
        to_monday(gateway_sim, 10)

        def settled():
            broker.process_events()
            return len(journal.events("expiry")) >= 2
        poll_until(settled, timeout=60, what="the journaled settlements")
        details = {e["detail"]["option"]: e["detail"] for e in journal.events("expiry")}
        assert {k: (d["how"], d["contracts"], d["delivered"]) for k, d in details.items()} == {
            call_sym: ("exercised", 2, 200), put_sym: ("assigned", -1, 100)}
        assert journal.positions() == {"SPY": 300}
        assert journal.fills() == []  # no execution: nothing journaled as a fill
        audited = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text()
                   .splitlines()]
        assert sorted((r["symbol"], r["how"]) for r in audited
                      if r.get("status") == "settlement") == sorted(
            [(call_sym, "exercised"), (put_sym, "assigned")])
        assert not [r for r in audited if r["kind"] == "fill"]
        rec = recover(store, journal, gateway_sim.account, gateway_sim.now())
        assert rec.report.ok and rec.report.settlements == []
        assert rec.report.position_mismatches == []
    finally:
        broker.stop()
        journal.close()
        audit.close()
        IBStore.reset_default()


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"start": THURSDAY}], indirect=True)
def test_strategy_is_told_and_holds_the_delivered_shares(gateway_sim):
    """A Strategy trading SPY while a call it holds is exercised overnight: ``notify_store``
    says so, its SPY position is the delivered shares, and no order or trade appears."""
    low, _ = strikes(gateway_sim)
    call = f"SPY-OPT-SMART-USD-{EXPIRY}-{low:g}-C"
    trade_elsewhere(gateway_sim, [(call, "BUY", 1)])
    with Live(gateway_sim, {}, dataname="SPY-STK-SMART-USD") as live:
        live.step(1)
        assert live.rec["first_position"] == 0
        cash0 = live.rec["cash"]
        to_monday(gateway_sim, 10)
        live.until(lambda: any(m.kind == "expiry" for m in live.rec["store"]),
                   what="the expiry notice", max_bars=20)
        live.step(1)
        [notice] = [m for m in live.rec["store"] if m.kind == "expiry"]
        assert "exercised; SPY +100 shares at the strike" in notice.text
        assert live.rec["position"] == 100
        assert live.rec["cash"] == pytest.approx(cash0 - 100 * low)
        assert live.rec["orders"] == [] and live.rec["trades"] == []


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"start": THURSDAY}], indirect=True)
def test_settlement_made_while_disconnected_is_followed_after_the_reconnect(gateway_sim):
    """The gateway restarts just before IB settles (its nightly restart): the client is away
    when the positions change. After the reconnect the option is no longer reported: the
    broker still books the exercise."""
    low, _ = strikes(gateway_sim)
    call = f"SPY-OPT-SMART-USD-{EXPIRY}-{low:g}-C"
    contracts = trade_elsewhere(gateway_sim, [(call, "BUY", 3)])
    spy = make_contract("SPY-STK-SMART-USD")
    spy.conId = gateway_sim.contracts.by_symbol("SPY", "STK").conId
    store = IBStore(port=gateway_sim.port, clientId=41, timeout=0.2, reconnect=-1,
                    connect_timeout=2)
    broker = IBBroker(store=store)
    broker.start()
    try:
        cash0 = broker.getcash()
        assert broker.getposition(feed(contracts[call])).size == 3
        # to Monday 09:30 New York: the expiry is not settled yet (IB's overnight run is next)
        to_monday(gateway_sim)
        assert gateway_sim.server.options.expiry.settlements == []

        async def restart_then_settle():  # on the simulator's loop: no client gets in between
            gateway_sim.server.restart(rollback_ids=False)
            await gateway_sim.server.advance(5)

        gateway_sim.call(restart_then_settle)
        assert [s.how for s in gateway_sim.server.options.expiry.settlements] == ["exercised"]

        def settled():
            broker.process_events()
            return broker.settlements.settlements
        poll_until(settled, timeout=60, what="the settlement after the reconnect")
        assert store.connection.connects == 2  # it was seen through the reconnect
        assert broker.getposition(feed(contracts[call])).size == 0
        assert broker.getposition(feed(spy)).size == 300
        assert broker.getcash() == pytest.approx(cash0 - 300 * low)
    finally:
        broker.stop()
        IBStore.reset_default()


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"start": THURSDAY}], indirect=True)
def test_an_early_assignment_then_the_expiry_are_followed(gateway_sim):
    """One of two short puts is assigned the night before the expiry (American style), the
    other at the expiry: both deliveries reach the ledger, the first marked early."""
    _, high = strikes(gateway_sim)
    put = f"SPY-OPT-SMART-USD-{EXPIRY}-{high:g}-P"
    contracts = trade_elsewhere(gateway_sim, [(put, "SELL", 2)])
    spy = make_contract("SPY-STK-SMART-USD")
    spy.conId = gateway_sim.contracts.by_symbol("SPY", "STK").conId
    store = IBStore(port=gateway_sim.port, clientId=41, timeout=0.2, reconnect=-1,
                    connect_timeout=2)
    broker = IBBroker(store=store)
    broker.start()
    try:
        assert broker.getposition(feed(contracts[put])).size == -2
        cash0 = broker.getcash()

        def settled(n):
            broker.process_events()
            return len(broker.settlements.settlements) >= n

        gateway_sim.assign_early(contracts[put].conId, 1)
        poll_until(lambda: settled(1), timeout=60, what="the early assignment")
        [early] = broker.settlements.settlements
        assert (early.how, early.contracts, early.delivered, early.early) == (
            "assigned", -1, 100, True)
        assert broker.getposition(feed(contracts[put])).size == -1
        assert broker.getposition(feed(spy)).size == 100

        to_monday(gateway_sim, 10)
        poll_until(lambda: settled(2), timeout=60, what="the assignment at the expiry")
        last = broker.settlements.settlements[1]
        assert (last.how, last.contracts, last.delivered, last.early) == (
            "assigned", -1, 100, False)
        assert broker.getposition(feed(contracts[put])).size == 0
        assert broker.getposition(feed(spy)).size == 200
        assert broker.getcash() == pytest.approx(cash0 - 200 * high)
        texts = [m.text for m, _, _ in store.get_notifications() if m.kind == "expiry"]
        assert "assigned before its expiry" in texts[0] and "before" not in texts[1]
    finally:
        broker.stop()
        IBStore.reset_default()


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"start": THURSDAY}], indirect=True)
def test_an_option_fill_reported_before_its_execution_is_never_taken_for_a_settlement(
        gateway_sim):
    """IB may report a fill's position before its execution: that option change is
    unexplained for a moment. It must not wait to be paired with a later stock change of
    the size an exercise would deliver (here another program's sale of 100 SPY)."""
    low, _ = strikes(gateway_sim)
    store = IBStore(port=gateway_sim.port, clientId=41, timeout=0.2, reconnect=-1,
                    connect_timeout=2)
    broker = IBBroker(store=store)
    broker.start()
    try:
        call = store.qualify(make_contract(f"SPY-OPT-SMART-USD-{EXPIRY}-{low:g}-C")).contract
        with HoldMessages(gateway_sim, 41, 11, 59) as hold:  # execDetails, commissionReport
            store.place_order("own-call-1", call, ibc.Order(action="BUY", totalQuantity=1,
                                                            orderType="MKT", tif="DAY"))
            poll_until(lambda: gateway_sim.broker.executions(), timeout=60, what="the fill")
            store.server_time(strict=True)  # the client has read the position report
            hold.release()
        trade_elsewhere(gateway_sim, [("SPY-STK-SMART-USD", "SELL", 100)])
        store.server_time(strict=True)  # ... and the SPY position report
        broker.process_events()
        assert broker.settlements.settlements == []
        assert [m for m, _, _ in store.get_notifications() if m.kind == "expiry"] == []
    finally:
        broker.stop()
        IBStore.reset_default()


@pytest.mark.slow
@pytest.mark.parametrize("gateway_sim", [{"start": THURSDAY}], indirect=True)
def test_a_cash_settled_index_option_leaves_and_its_credit_is_adopted_by_reconcile(
        gateway_sim):
    """An SPX call in the money is settled in cash: the broker sees it leave without a
    delivery ("expired": lapsed or cash-settled, it cannot tell which), books no shares and no
    fill; IB's cash credit is the ledger's drift until ``reconcile()`` adopts it."""
    spx = gateway_sim.contracts.by_symbol("SPX", "IND")
    opt = gateway_sim.contracts.matches(symbol="SPX", secType="OPT",
                                        lastTradeDateOrContractMonth=EXPIRY)[0]
    close = gateway_sim.market.quote_at(spx, expiry_close_epoch(opt)).last
    strike = 50.0 * math.floor(close / 50.0) - 50.0
    call = f"SPX-OPT-SMART-USD-{EXPIRY}-{strike:g}-C"
    contracts = trade_elsewhere(gateway_sim, [(call, "BUY", 1)])
    store = IBStore(port=gateway_sim.port, clientId=41, timeout=0.2, reconnect=-1,
                    connect_timeout=2)
    broker = IBBroker(store=store)
    broker.start()
    try:
        cash0 = broker.getcash()
        to_monday(gateway_sim, 10)

        def settled():
            broker.process_events()
            return broker.settlements.settlements
        poll_until(settled, timeout=60, what="the settlement")
        [s] = broker.settlements.settlements
        assert (s.how, s.contracts, s.delivered, s.underlying) == ("expired", 1, 0, None)
        assert broker.getposition(feed(contracts[call])).size == 0
        assert broker.getcash() == pytest.approx(cash0)
        credit = 100 * (close - strike)
        poll_until(lambda: store.get_acc_cash() == pytest.approx(cash0 + credit, abs=0.01),
                   timeout=30, what="IB's cash credit")
        assert broker.reconcile() == pytest.approx(credit, abs=0.01)
        assert broker.getcash() == pytest.approx(cash0 + credit, abs=0.01)
    finally:
        broker.stop()
        IBStore.reset_default()
