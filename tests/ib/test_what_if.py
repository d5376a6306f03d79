"""IBStore.what_if_margin through the real client against the gateway simulator: IB's
what-if initial margin of an order (nothing placed), None when IB gives none."""

from __future__ import annotations

import pytest

from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.contracts import make_contract
from bt_ibkr.ib.store import IBStore
from bt_ibkr.ib.what_if import margin_of


@pytest.fixture
def store(gateway_sim):
    s = IBStore(port=gateway_sim.port, clientId=51, timeout=0.2, reconnect=-1,
                connect_timeout=5)
    s.start()
    yield s
    s.close()
    IBStore.reset_default()


def market(action: str, qty: float):
    order = ibc.Order()
    order.action, order.orderType, order.totalQuantity = action, "MKT", qty
    order.orderRef = "bt2:test:whatif"
    return order


def expected_margin(sim, conid: int, qty: float, mult: float) -> float:
    """The simulator's rule: 25% of the notional at the last price."""
    q = sim.market.quote(sim.contracts.by_conid(conid))
    last = q.last if q.last and q.last > 0 else q.close
    return 0.25 * qty * last * mult


@pytest.mark.parametrize("dataname, mult", [("ES-FUT-CME-USD-202403", 50.0),
                                            ("SPY-STK-SMART-USD", 1.0)])
def test_what_if_returns_ibs_initial_margin_and_places_nothing(gateway_sim, store, dataname,
                                                               mult):
    details = store.qualify(make_contract(dataname))
    contract = details.contract
    order = market("BUY", 2)
    answer = store.what_if_margin(contract, order, timeout=30)
    assert answer is not None
    assert answer.init_change == pytest.approx(
        expected_margin(gateway_sim, contract.conId, 2, mult), abs=0.01)
    assert answer.maint_change == pytest.approx(answer.init_change)
    assert answer.commission is not None and answer.commission > 0
    # nothing was placed, and the order asked about was not changed
    assert gateway_sim.broker.open_orders() == [] and gateway_sim.broker.completed_orders() == []
    assert (order.whatIf, order.orderRef, order.totalQuantity) == (False, "bt2:test:whatif", 2)
    [sent] = gateway_sim.requests_named("placeOrder")
    assert "bt2:test:whatif" not in sent[3]  # no journal can mistake the question for an order


@pytest.mark.slow
def test_what_if_without_margin_is_none(gateway_sim, store):
    """TWS answers with every margin field unset (UNSET_DOUBLE): ib_async never ends the
    request, so the time limit does, and the answer is None; the next one has a margin."""
    contract = store.qualify(make_contract("ES-FUT-CME-USD-202403")).contract
    gateway_sim.what_if_without_margin(1)
    assert store.what_if_margin(contract, market("BUY", 1), timeout=0.5) is None
    assert len(gateway_sim.requests_named("placeOrder")) == 1  # it was asked, and answered
    assert store.what_if_margin(contract, market("BUY", 1), timeout=30) is not None


def test_what_if_refused_by_ib_is_none(gateway_sim, store):
    contract = store.qualify(make_contract("SPY-STK-SMART-USD")).contract
    gateway_sim.reject_next_order(201, "Order rejected - reason:simulated rejection")
    assert store.what_if_margin(contract, market("BUY", 1), timeout=30) is None


def test_margin_of_reads_ibs_unset_marker_as_none():
    from ib_async import OrderState

    unset = "1.7976931348623157E308"
    assert margin_of(OrderState(initMarginChange=unset, maintMarginChange=unset)) is None
    assert margin_of(OrderState(initMarginChange="")) is None
    assert margin_of([]) is None  # ib_async's answer to a request IB refused
    m = margin_of(OrderState(initMarginChange="12500.5", maintMarginChange=unset,
                             commission=2.25))
    assert (m.init_change, m.maint_change, m.commission) == (12500.5, None, 2.25)
