"""End-to-end: the real ib_async (and ib_insync) client trading against the gateway simulator.

The simulator runs in its own thread (the ``gateway_sim`` fixture); the client uses ib_async's
synchronous API as a user would. Simulated time only moves with ``sim.advance()``. Any ``ib_async.Decoder`` ERROR record fails the
test (a malformed message is silently dropped by the client otherwise).
"""

from __future__ import annotations

import pytest

ib_async = pytest.importorskip("ib_async")
from helpers.sim import ErrorCatcher  # noqa: E402
from ib_async import LimitOrder, MarketOrder, StopOrder  # noqa: E402

ACCOUNT = "DU1234567"


@pytest.fixture
def wrapper_errors():
    """ERROR lines of ib_async's wrapper that mean a message did not match its trade."""
    catcher = ErrorCatcher(("ib_async.wrapper",)).install()
    yield catcher.records
    catcher.remove()
    bad = [r.getMessage() for r in catcher.records if "No order found" in r.getMessage()]
    assert not bad, bad


@pytest.fixture
def sim(gateway_sim):
    """The running simulator (the ``gateway_sim`` fixture), clock frozen at its start."""
    return gateway_sim


@pytest.fixture
def connect(sim):
    """Return ``connect(client_id=7, client=ib_async) -> IB`` connected to ``sim``."""
    clients = []

    def make(client_id=7, module=ib_async):
        ib = module.IB()
        ib.connect(sim.host, sim.port, clientId=client_id, timeout=10)
        clients.append(ib)
        return ib

    yield make
    for ib in clients:
        ib.disconnect()


def sync(*clients):
    """Round-trip reqCurrentTime: every message the server sent before is now processed."""
    for ib in clients:
        ib.reqCurrentTime()


def aapl(ib):
    (contract,) = ib.qualifyContracts(ib_async.Stock("AAPL", "SMART", "USD"))
    return contract


def lookahead(sim, contract, seconds):
    """Return (min low, max high) of the simulated 5-s bars in the next ``seconds``."""
    t0 = int(sim.now().timestamp())
    lows, highs = [], []
    for t in range(t0 + 5, t0 + seconds + 1, 5):
        q = sim.market.quote_at(contract, t)
        lows.append(q.low)
        highs.append(q.high)
    return min(lows), max(highs)


def quote_of(sim, contract):
    return sim.market.quote(sim.contracts.by_conid(contract.conId))


# --------------------------------------------------------------------------- tests


def test_market_order_fills_with_commission_position_and_account(
        sim, connect, decoder_errors, wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    positions = []
    ib.positionEvent += positions.append
    cash_before = float(next(v.value for v in ib.accountValues()
                             if v.tag == "TotalCashValue" and v.currency == "USD"))
    trade = ib.placeOrder(c, MarketOrder("BUY", 100))
    sync(ib)
    assert trade.orderStatus.status == "Filled"
    assert trade.orderStatus.filled == 100 and trade.orderStatus.remaining == 0
    assert trade.orderStatus.avgFillPrice == pytest.approx(quote.ask)
    assert trade.isDone()
    (fill,) = trade.fills
    assert fill.execution.side == "BOT" and fill.execution.shares == 100
    assert fill.execution.clientId == 7 and fill.execution.permId == trade.order.permId
    assert fill.commissionReport.commission == 1.0
    assert fill.commissionReport.currency == "USD"
    assert positions and positions[-1].position == 100
    (pos,) = ib.positions()
    assert pos.avgCost == pytest.approx(quote.ask + 0.01)  # incl. the $1 commission
    (item,) = ib.portfolio()
    assert item.position == 100
    cash_after = float(next(v.value for v in ib.accountValues()
                            if v.tag == "TotalCashValue" and v.currency == "USD"))
    assert cash_after == pytest.approx(cash_before - 100 * quote.ask - 1.0, abs=0.01)
    statuses = [e.status for e in trade.log]
    assert statuses[0] == "PendingSubmit" and statuses[-1] == "Filled"


def test_limit_rests_then_fills_after_advance(sim, connect, decoder_errors, wrapper_errors):
    ib = connect()
    c = aapl(ib)
    low, _ = lookahead(sim, sim.contracts.by_conid(c.conId), 600)
    limit = round(low + 0.001, 3)
    assert limit < quote_of(sim, c).ask
    trade = ib.placeOrder(c, LimitOrder("BUY", 10, limit))
    sync(ib)
    assert trade.orderStatus.status == "Submitted" and not trade.fills
    sim.advance(seconds=600)
    sync(ib)
    assert trade.orderStatus.status == "Filled"
    assert trade.fills[0].execution.price <= limit


def test_bracket_take_profit_fills_and_stop_is_cancelled(sim, connect, decoder_errors,
                                                          wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    _, high = lookahead(sim, sim.contracts.by_conid(c.conId), 1800)
    tp = round(high - 0.001, 3)
    assert tp > quote.ask
    bracket = ib.bracketOrder("BUY", 10, limitPrice=round(quote.ask + 0.5, 2),
                              takeProfitPrice=tp, stopLossPrice=round(quote.bid * 0.5, 2))
    parent, take_profit, stop_loss = [ib.placeOrder(c, o) for o in bracket]
    sync(ib)
    assert parent.orderStatus.status == "Filled"
    assert take_profit.orderStatus.status == "Submitted"
    assert stop_loss.orderStatus.status == "Submitted"
    sim.advance(seconds=1800)
    sync(ib)
    assert take_profit.orderStatus.status == "Filled"
    assert take_profit.fills[0].execution.price >= tp
    assert stop_loss.orderStatus.status == "Cancelled"
    assert [p.position for p in ib.positions()] in ([], [0.0])


def test_bracket_children_wait_for_transmit(sim, connect, decoder_errors, wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    bracket = ib.bracketOrder("BUY", 10, limitPrice=round(quote.ask + 0.5, 2),
                              takeProfitPrice=round(quote.ask * 2, 2),
                              stopLossPrice=round(quote.bid * 0.5, 2))
    parent = ib.placeOrder(c, bracket.parent)
    tp = ib.placeOrder(c, bracket.takeProfit)
    sync(ib)
    assert parent.orderStatus.status == "PreSubmitted" and not parent.fills
    assert tp.orderStatus.status == "PreSubmitted"
    sl = ib.placeOrder(c, bracket.stopLoss)  # transmit=True releases the whole group
    sync(ib)
    assert parent.orderStatus.status == "Filled"
    assert tp.orderStatus.status == "Submitted" and sl.orderStatus.status == "Submitted"


def test_oca_group_cancels_the_other_order(sim, connect, decoder_errors, wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    far = LimitOrder("BUY", 5, round(quote.bid * 0.5, 2))
    near = LimitOrder("BUY", 5, round(quote.bid - 0.01, 2))
    ib.oneCancelsAll([far, near], "oca-test", 1)
    t_far = ib.placeOrder(c, far)
    t_near = ib.placeOrder(c, near)
    sync(ib)
    assert t_far.orderStatus.status == t_near.orderStatus.status == "Submitted"
    near.lmtPrice = round(quote.ask + 1.0, 2)  # modify: now marketable
    ib.placeOrder(c, near)
    sync(ib)
    assert t_near.orderStatus.status == "Filled"
    assert t_far.orderStatus.status == "Cancelled"


def test_cancel_modify_global_cancel_and_unknown_cancel(sim, connect, decoder_errors,
                                                         wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    errors = []
    ib.errorEvent += lambda req_id, code, msg, *a: errors.append((req_id, code, msg))
    low_price = round(quote.bid * 0.5, 2)
    t1 = ib.placeOrder(c, LimitOrder("BUY", 10, low_price))
    sync(ib)
    perm = t1.order.permId
    assert perm > 0
    t1.order.lmtPrice = round(low_price + 1, 2)  # modify price and quantity
    t1.order.totalQuantity = 20
    ib.placeOrder(c, t1.order)
    sync(ib)
    working = sim.broker.get_order(7, t1.order.orderId)
    assert (working.spec.lmtPrice, working.spec.totalQuantity) == (round(low_price + 1, 2), 20)
    assert working.perm_id == perm and t1.order.permId == perm
    assert "Modify" in [e.message for e in t1.log]
    assert t1.orderStatus.status == "Submitted" and t1.orderStatus.remaining == 20
    ib.cancelOrder(t1.order)
    sync(ib)
    assert t1.orderStatus.status == "Cancelled"
    assert (t1.order.orderId, 202, "Order Canceled - reason:") in errors
    ib.client.cancelOrder(987654)
    sync(ib)
    assert any(code == 10147 and req_id == 987654 for req_id, code, _ in errors)
    t2 = ib.placeOrder(c, LimitOrder("BUY", 1, low_price))
    t3 = ib.placeOrder(c, LimitOrder("SELL", 1, round(quote.ask * 2, 2)))
    sync(ib)
    assert t2.orderStatus.status == t3.orderStatus.status == "Submitted"
    ib.reqGlobalCancel()
    sync(ib)
    assert t2.orderStatus.status == t3.orderStatus.status == "Cancelled"
    assert sim.broker.open_orders() == []


def test_what_if_returns_margin_without_an_order(sim, connect, decoder_errors, wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    state = ib.whatIfOrder(c, MarketOrder("BUY", 100))
    assert float(state.initMarginChange) == pytest.approx(100 * quote.last * 0.25, abs=0.01)
    assert float(state.equityWithLoanBefore) == pytest.approx(1_000_000.0)
    assert state.commission == 1.0
    assert ib.openTrades() == [] and sim.broker.open_orders() == []
    assert ib.positions() == []


def test_partial_fills_show_several_fills(sim, connect, decoder_errors, wrapper_errors):
    sim.broker.partial_fill_qty = 3
    ib = connect()
    c = aapl(ib)
    filled = []
    trade = ib.placeOrder(c, MarketOrder("BUY", 10))
    trade.statusEvent += lambda t: filled.append(t.orderStatus.filled)
    sync(ib)
    assert trade.orderStatus.status == "Submitted" and trade.orderStatus.filled == 3
    sim.advance(seconds=15)
    sync(ib)
    assert trade.orderStatus.status == "Filled"
    assert [f.execution.shares for f in trade.fills] == [3, 3, 3, 1]
    assert [f.execution.cumQty for f in trade.fills] == [3, 6, 9, 10]
    assert filled == sorted(filled) and filled[-1] == 10 and len(filled) >= 4
    assert len({f.execution.execId for f in trade.fills}) == 4
    total = sum(f.execution.shares * f.execution.price for f in trade.fills)
    assert trade.orderStatus.avgFillPrice == pytest.approx(total / 10)


def test_rejects_show_cancelled_with_reason(sim, connect, decoder_errors, wrapper_errors):
    ib = connect()
    c = aapl(ib)
    sim.reject_next_order(201, "Insufficient buying power")
    rejected = ib.placeOrder(c, MarketOrder("BUY", 10))
    sync(ib)
    assert rejected.orderStatus.status == "Cancelled"
    assert not rejected.fills
    assert any("Insufficient buying power" in e.message and e.errorCode == 201
               for e in rejected.log)
    wrong_account = ib.placeOrder(c, MarketOrder("BUY", 1, account="U0000001"))
    sync(ib)
    assert wrong_account.orderStatus.status == "Cancelled"
    assert any(e.errorCode == 201 and "U0000001" in e.message for e in wrong_account.log)
    unknown = ib.placeOrder(ib_async.Stock("NOPE", "SMART", "USD"), MarketOrder("BUY", 1))
    sync(ib)
    assert unknown.orderStatus.status == "Cancelled"
    assert any(e.errorCode == 200 for e in unknown.log)
    ok = ib.placeOrder(c, MarketOrder("BUY", 1))
    sync(ib)
    assert ok.orderStatus.status == "Filled"


def test_executions_and_orders_survive_reconnect_and_restart(sim, connect, decoder_errors,
                                                             wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    filled = ib.placeOrder(c, MarketOrder("BUY", 10))
    resting = ib.placeOrder(c, StopOrder("SELL", 10, round(quote.bid * 0.5, 2)))
    sync(ib)
    exec_ids = [f.execution.execId for f in filled.fills]
    assert len(exec_ids) == 1
    ib.disconnect()
    sim.restart(rollback_ids=True)
    ib2 = connect()
    # the startup sync (reqExecutions) brings back the fills with their commissions
    assert [f.execution.execId for f in ib2.fills()] == exec_ids
    assert ib2.fills()[0].commissionReport.commission == 1.0
    fills = ib2.reqExecutions()
    assert [f.execution.execId for f in fills] == exec_ids
    open_trades = ib2.openTrades()
    assert [t.order.permId for t in open_trades] == [resting.order.permId]
    assert open_trades[0].orderStatus.status == "Submitted"
    assert [p.position for p in ib2.positions()] == [10]
    completed = ib2.reqCompletedOrders(False)
    assert [t.order.permId for t in completed] == [filled.order.permId]
    assert completed[0].orderStatus.status == "Filled"


def test_portfolio_account_summary_and_pnl_follow_prices(sim, connect, decoder_errors,
                                                          wrapper_errors):
    # push portfolio/account values at every 5-s step instead of every 60 simulated seconds
    sim.broker.revalue_interval = 5.0
    ib = connect()
    c = aapl(ib)
    ib.placeOrder(c, MarketOrder("BUY", 100))
    sync(ib)
    prices = []
    ib.updatePortfolioEvent += lambda item: prices.append(item.marketPrice)
    pnl = ib.reqPnL(ACCOUNT)
    sync(ib)
    sim.advance(seconds=300)
    sync(ib)
    assert len(prices) >= 2 and len(set(prices)) >= 2
    item = ib.portfolio()[0]
    assert item.marketPrice == pytest.approx(quote_of(sim, c).last)
    assert item.marketValue == pytest.approx(100 * item.marketPrice)
    assert item.unrealizedPNL == pytest.approx(item.marketValue - 100 * item.averageCost)
    assert pnl.unrealizedPnL == pytest.approx(item.unrealizedPNL, abs=0.01)
    values = {(v.tag, v.currency): v.value for v in ib.accountValues()}
    net = float(values[("NetLiquidation", "USD")])
    cash = float(values[("TotalCashValue", "USD")])
    assert net == pytest.approx(cash + item.marketValue, abs=0.02)
    assert values[("NetLiquidation", "BASE")] == values[("NetLiquidation", "USD")]
    summary = {v.tag: v.value for v in ib.accountSummary(ACCOUNT)}
    assert float(summary["NetLiquidation"]) == pytest.approx(net, abs=0.02)
    assert float(summary["BuyingPower"]) == pytest.approx(
        float(summary["AvailableFunds"]) * 4, abs=0.05)


def test_only_the_master_client_hears_of_other_clients_orders(sim, connect, decoder_errors,
                                                             wrapper_errors):
    """IB pushes an order's messages to the client that placed it and to the Master API
    client ID (a TWS setting); clientId 0 binds manual TWS orders only (reqAutoOpenOrders)."""
    sim.server.master_client_id = 5
    zero = connect(client_id=0)  # asks reqAutoOpenOrders(True) on connect
    master = connect(client_id=5)
    ib = connect(client_id=7)
    trade = ib.placeOrder(aapl(ib), MarketOrder("BUY", 5))
    sync(ib, master, zero)
    seen = [t for t in master.trades() if t.order.permId == trade.order.permId]
    assert len(seen) == 1 and seen[0].order.clientId == 7
    assert seen[0].orderStatus.status == "Filled"
    assert [f.execution.execId for f in seen[0].fills] == [
        f.execution.execId for f in trade.fills]
    assert [t for t in zero.trades() if t.order.permId == trade.order.permId] == []


def test_ib_insync_client_trades_at_176(sim, connect, decoder_errors):
    ib_insync = pytest.importorskip("ib_insync")
    ib = connect(client_id=9, module=ib_insync)
    assert ib.client.serverVersion() == 176
    (c,) = ib.qualifyContracts(ib_insync.Stock("AAPL", "SMART", "USD"))
    trade = ib.placeOrder(c, ib_insync.MarketOrder("BUY", 10))
    ib.reqCurrentTime()
    assert trade.orderStatus.status == "Filled"
    assert len(trade.fills) == 1 and trade.fills[0].commissionReport.commission == 1.0
    assert [p.position for p in ib.positions()] == [10]
    fills = ib.reqExecutions()
    assert [f.execution.execId for f in fills] == [trade.fills[0].execution.execId]


def test_next_bar_mode_fills_market_order_at_next_bar_open(sim, connect, decoder_errors,
                                                            wrapper_errors):
    sim.broker.fill_mode = "next_bar"
    ib = connect()
    c = aapl(ib)
    trade = ib.placeOrder(c, MarketOrder("BUY", 10))
    sync(ib)
    assert trade.orderStatus.status == "Submitted" and not trade.fills
    sim.advance(seconds=5)
    sync(ib)
    bar = quote_of(sim, c)  # the 5-s bar that just completed
    assert trade.orderStatus.status == "Filled"
    assert trade.fills[0].execution.price == pytest.approx(bar.open)
    assert trade.fills[0].execution.time == sim.now()


def test_session_close_fills_moc_and_expires_day_orders(sim, connect, decoder_errors,
                                                        wrapper_errors):
    ib = connect()
    c = aapl(ib)
    quote = quote_of(sim, c)
    day = ib.placeOrder(c, LimitOrder("BUY", 10, round(quote.bid * 0.5, 2)))
    gtc = ib.placeOrder(c, LimitOrder("BUY", 10, round(quote.bid * 0.5, 2), tif="GTC"))
    moc = ib.placeOrder(c, ib_async.Order(action="BUY", totalQuantity=10, orderType="MOC"))
    sync(ib)
    assert moc.orderStatus.status == "Submitted" and not moc.fills
    sim.advance(hours=6.5)  # 09:30 -> 16:00 New York
    sync(ib)
    close_quote = quote_of(sim, c)
    assert moc.orderStatus.status == "Filled"
    assert moc.fills[0].execution.price == pytest.approx(close_quote.close)
    assert day.orderStatus.status == "Cancelled"
    assert gtc.orderStatus.status == "Submitted"
