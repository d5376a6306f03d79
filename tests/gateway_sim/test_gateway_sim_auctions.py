"""Auction orders, outsideRth and the Adaptive algo: the real ib_async client against the
gateway simulator (bt_ibkr.gateway_sim.auctions), as a user's orders would meet IB.

The simulator starts at 09:30 New York on 2024-01-02 (the session just opened) with
``fill_mode="immediate"``; simulated time moves only with ``sim.advance``.
"""

from __future__ import annotations

from datetime import date

import pytest

ib_async = pytest.importorskip("ib_async")
from ib_async import LimitOrder, MarketOrder, StopOrder, TagValue  # noqa: E402


@pytest.fixture
def ib(gateway_sim):
    client = ib_async.IB()
    client.connect(gateway_sim.host, gateway_sim.port, clientId=7, timeout=10)
    yield client
    client.disconnect()


def aapl(ib):
    (contract,) = ib.qualifyContracts(ib_async.Stock("AAPL", "SMART", "USD"))
    return contract


def sim_contract(sim, contract):
    return sim.contracts.by_conid(contract.conId)


def after_close(sim):
    """Advance to 16:01 New York (the session of the start day has closed)."""
    sim.advance(hours=6.5, minutes=1)


def next_open(sim, contract):
    """Return the epoch second of the next session's open."""
    return sim.market.next_open(sim_contract(sim, contract), int(sim.now().timestamp()))


def bar_at(sim, contract, t):
    """Return the 5-second bar that starts at epoch ``t`` (the quote once it completed)."""
    return sim.market.quote_at(sim_contract(sim, contract), t + 5)


def rejection(trade):
    return [(e.errorCode, e.message) for e in trade.log if e.errorCode]


def spec_of(sim, trade):
    return sim.broker.get_order(7, trade.order.orderId).spec


# --------------------------------------------------------------------------- opening auction


def test_moo_sent_after_the_close_fills_at_the_next_sessions_open(gateway_sim, ib):
    c = aapl(ib)
    after_close(gateway_sim)
    moo = ib.placeOrder(c, MarketOrder("BUY", 10, tif="OPG"))
    ib.reqCurrentTime()
    assert moo.orderStatus.status in ("PreSubmitted", "Submitted") and not moo.fills
    assert (spec_of(gateway_sim, moo).orderType, spec_of(gateway_sim, moo).tif) == ("MKT", "OPG")
    t_open = next_open(gateway_sim, c)
    gateway_sim.advance(seconds=t_open - gateway_sim.now().timestamp() + 60)
    ib.reqCurrentTime()
    assert moo.orderStatus.status == "Filled"
    fill = moo.fills[0].execution
    assert fill.price == pytest.approx(bar_at(gateway_sim, c, t_open).open)
    assert fill.shares == 10 and len(moo.fills) == 1  # one cross, however big the order


def test_opg_sent_while_the_session_is_open_is_rejected(gateway_sim, ib):
    c = aapl(ib)
    gateway_sim.advance(minutes=30)  # 10:00 New York: the opening auction is over
    moo = ib.placeOrder(c, MarketOrder("BUY", 10, tif="OPG"))
    loo = ib.placeOrder(c, LimitOrder("SELL", 10, 1.0, tif="OPG"))
    ib.reqCurrentTime()
    for trade in (moo, loo):
        assert trade.orderStatus.status == "Cancelled"
        assert [code for code, _ in rejection(trade)] == [201]
        assert "OPG" in rejection(trade)[0][1]
    assert not gateway_sim.broker.executions()


@pytest.mark.parametrize("marketable", [True, False])
def test_loo_fills_at_the_open_only_when_its_limit_is_marketable_there(gateway_sim, ib,
                                                                       marketable):
    c = aapl(ib)
    after_close(gateway_sim)
    t_open = next_open(gateway_sim, c)
    first = bar_at(gateway_sim, c, t_open)
    # a buy limit just above the open (marketable) or just below it; either way the price
    # trades through the limit later that day, where a plain LMT DAY would have filled
    limit = round(first.open + 0.01, 2) if marketable else round(first.open - 0.01, 2)
    lows = [bar_at(gateway_sim, c, t).low for t in range(t_open, t_open + 3600, 5)]
    assert min(lows) < limit  # a LMT DAY at this limit would have filled within the hour
    loo = ib.placeOrder(c, LimitOrder("BUY", 10, limit, tif="OPG"))
    ib.reqCurrentTime()
    gateway_sim.advance(seconds=t_open - gateway_sim.now().timestamp() + 3600)
    ib.reqCurrentTime()
    if marketable:
        assert loo.orderStatus.status == "Filled"
        assert loo.fills[0].execution.price == pytest.approx(first.open)
    else:
        assert loo.orderStatus.status == "Cancelled" and not loo.fills
        assert gateway_sim.broker.get_order(7, loo.order.orderId).completed_status.startswith(
            "Cancelled (not filled in the opening auction")


# --------------------------------------------------------------------------- closing auction


def test_moc_and_loc_fill_at_the_close_and_an_unreached_loc_is_cancelled(gateway_sim, ib):
    c = aapl(ib)
    moc = ib.placeOrder(c, ib_async.Order(action="BUY", totalQuantity=5, orderType="MOC",
                                          tif="DAY"))
    loc_hit = ib.placeOrder(c, ib_async.Order(action="BUY", totalQuantity=6, orderType="LOC",
                                              lmtPrice=100000.0, tif="DAY"))
    loc_miss = ib.placeOrder(c, ib_async.Order(action="BUY", totalQuantity=7, orderType="LOC",
                                               lmtPrice=1.0, tif="DAY"))
    ib.reqCurrentTime()
    gateway_sim.advance(hours=3)
    ib.reqCurrentTime()
    assert not (moc.fills or loc_hit.fills or loc_miss.fills)  # nothing fills before the close
    assert spec_of(gateway_sim, loc_hit).orderType == "LOC"
    gateway_sim.advance(hours=3.5)  # 16:00: the session closes
    ib.reqCurrentTime()
    close = gateway_sim.market.quote(sim_contract(gateway_sim, c)).close
    assert moc.orderStatus.status == loc_hit.orderStatus.status == "Filled"
    assert moc.fills[0].execution.price == pytest.approx(close)
    assert loc_hit.fills[0].execution.price == pytest.approx(close)
    assert loc_miss.orderStatus.status == "Cancelled" and not loc_miss.fills


def test_moc_sent_gtc_is_rejected(gateway_sim, ib):
    c = aapl(ib)
    moc = ib.placeOrder(c, ib_async.Order(action="BUY", totalQuantity=5, orderType="MOC",
                                          tif="GTC"))
    ib.reqCurrentTime()
    assert moc.orderStatus.status == "Cancelled"
    assert [code for code, _ in rejection(moc)] == [201]


def test_moc_sent_after_the_close_fills_at_the_next_close(gateway_sim, ib):
    c = aapl(ib)
    after_close(gateway_sim)
    moc = ib.placeOrder(c, ib_async.Order(action="SELL", totalQuantity=5, orderType="MOC",
                                          tif="DAY"))
    ib.reqCurrentTime()
    gateway_sim.advance_days(1)  # 16:01 the next trading day
    ib.reqCurrentTime()
    assert moc.orderStatus.status == "Filled"
    fill = moc.fills[0].execution
    close = gateway_sim.market.quote(sim_contract(gateway_sim, c)).close
    assert fill.price == pytest.approx(close)
    assert fill.time.date() == date(2024, 1, 3)  # the next session's close, not the first


# --------------------------------------------------------------------------- outside RTH


@pytest.mark.parametrize("outside_rth", [True, False])
def test_outside_rth_fills_in_the_extended_hours_only_when_flagged(gateway_sim, ib, outside_rth):
    c = aapl(ib)
    after_close(gateway_sim)  # 16:01: after-hours trading until 20:00
    last_close = gateway_sim.market.quote(sim_contract(gateway_sim, c)).close
    order = MarketOrder("BUY", 3)
    order.outsideRth = outside_rth
    trade = ib.placeOrder(c, order)
    ib.reqCurrentTime()
    assert spec_of(gateway_sim, trade).outsideRth is outside_rth
    if outside_rth:
        assert trade.orderStatus.status == "Filled"
        assert trade.fills[0].execution.price == pytest.approx(last_close, rel=1e-3)
    else:  # waits for the next session and fills at its open
        assert trade.orderStatus.status == "Submitted" and not trade.fills
        t_open = next_open(gateway_sim, c)
        gateway_sim.advance(seconds=t_open - gateway_sim.now().timestamp() + 5)
        ib.reqCurrentTime()
        assert trade.fills[0].execution.price == pytest.approx(bar_at(gateway_sim, c,
                                                                      t_open).open)


def test_outside_rth_does_not_fill_overnight(gateway_sim, ib):
    c = aapl(ib)
    gateway_sim.advance(hours=11)  # 20:30 New York: after-hours trading is over
    order = MarketOrder("BUY", 3)
    order.outsideRth = True
    trade = ib.placeOrder(c, order)
    ib.reqCurrentTime()
    assert trade.orderStatus.status == "Submitted" and not trade.fills


# --------------------------------------------------------------------------- Adaptive


def adaptive(order, priority):
    order.algoStrategy = "Adaptive"
    order.algoParams = [TagValue("adaptivePriority", priority)]
    return order


def test_adaptive_reaches_the_gateway_and_fills_as_the_order_it_wraps(gateway_sim, ib):
    c = aapl(ib)
    trade = ib.placeOrder(c, adaptive(MarketOrder("BUY", 4), "Patient"))
    ib.reqCurrentTime()
    spec = spec_of(gateway_sim, trade)
    assert (spec.algoStrategy, spec.algoParams) == ("Adaptive", [("adaptivePriority",
                                                                  "Patient")])
    assert trade.orderStatus.status == "Filled"
    assert trade.fills[0].execution.price == pytest.approx(
        gateway_sim.market.quote(sim_contract(gateway_sim, c)).ask)


@pytest.mark.parametrize("order,priority,words", [
    (lambda: StopOrder("BUY", 4, 1000.0), "Normal", "MKT and LMT"),
    (lambda: MarketOrder("BUY", 4), "Hasty", "adaptivePriority 'Hasty'"),
])
def test_adaptive_on_a_stop_or_with_an_unknown_priority_is_rejected(gateway_sim, ib, order,
                                                                    priority, words):
    trade = ib.placeOrder(aapl(ib), adaptive(order(), priority))
    ib.reqCurrentTime()
    assert trade.orderStatus.status == "Cancelled"
    ((code, text),) = rejection(trade)
    assert code == 201 and words in text


def test_open_orders_report_the_auction_and_algo_fields_back(gateway_sim, ib):
    """Another client (as a restarted process would) reads the working orders back from the
    gateway with their TIF, order type, outsideRth and algo fields intact."""
    c = aapl(ib)
    after_close(gateway_sim)
    ib.placeOrder(c, LimitOrder("BUY", 1, 1.0, tif="OPG"))
    ib.placeOrder(c, ib_async.Order(action="SELL", totalQuantity=2, orderType="LOC",
                                    lmtPrice=100000.0, tif="DAY"))
    far = LimitOrder("BUY", 3, 1.0, tif="GTC")
    far.outsideRth = True
    ib.placeOrder(c, adaptive(far, "Urgent"))
    ib.reqCurrentTime()
    other = ib_async.IB()
    other.connect(gateway_sim.host, gateway_sim.port, clientId=8, timeout=10)
    try:
        seen = {int(t.order.totalQuantity): t.order for t in other.reqAllOpenOrders()}
    finally:
        other.disconnect()
    assert (seen[1].orderType, seen[1].tif) == ("LMT", "OPG")
    assert (seen[2].orderType, seen[2].lmtPrice, seen[2].tif) == ("LOC", 100000.0, "DAY")
    assert (seen[3].algoStrategy, seen[3].outsideRth) == ("Adaptive", True)
    assert [(t.tag, t.value) for t in seen[3].algoParams] == [("adaptivePriority", "Urgent")]
