"""Order codec against the REAL clients: parse what ib_async sends, decode what we send.

No mocks of ib_async/ib_insync: the client's own ``placeOrder`` builds the message (only its
outgoing ``sendMsg`` is captured) and the client's own ``Decoder`` reads our messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from bt_ibkr.gateway_sim import order_codec as oc
from bt_ibkr.gateway_sim.model import SimContract
from bt_ibkr.gateway_sim.wire import FieldReader, frame, split_fields

ib_async = pytest.importorskip("ib_async")
from ib_async import (  # noqa: E402
    ComboLeg,
    Contract,
    LimitOrder,
    MarketOrder,
    Order,
    PriceCondition,
    StopLimitOrder,
    StopOrder,
    TagValue,
    TimeCondition,
)
from ib_async.client import Client  # noqa: E402
from ib_async.decoder import Decoder  # noqa: E402

VERSIONS = [157, 163, 164, 170, 176, 177, 178]
AAPL = SimContract(conId=265598, symbol="AAPL", secType="STK", exchange="SMART",
                   primaryExchange="NASDAQ", currency="USD", localSymbol="AAPL",
                   tradingClass="NMS")


def capture_place_order(version: int, contract, order, order_id: int = 42) -> list[str]:
    """Return the fields the real ib_async client writes for placeOrder at ``version``."""
    ib = ib_async.IB()
    client = ib.client
    client.connState = Client.CONNECTED
    client._serverVersion = version
    sent: list[str] = []
    client.sendMsg = sent.append  # intercept the socket write only
    try:
        client.placeOrder(order_id, contract, order)
    finally:
        client.connState = Client.DISCONNECTED
    assert len(sent) == 1
    fields = sent[0].split("\0")
    assert fields[-1] == ""
    return fields[:-1]


def parse(version, contract, order, order_id=42) -> oc.PlaceOrder:
    fields = capture_place_order(version, contract, order, order_id)
    assert fields[0] == "3"
    reader = FieldReader(fields[1:], "placeOrder")
    result = oc.parse_place_order(reader, version)
    assert reader.remaining() == 0, f"{reader.remaining()} unread fields at v{version}"
    return result


def stk() -> Contract:
    return Contract(conId=265598, symbol="AAPL", secType="STK", exchange="SMART",
                    currency="USD")


def _orders():
    trail_amt = Order(action="SELL", totalQuantity=10, orderType="TRAIL", auxPrice=1.5,
                      trailStopPrice=98.0, tif="GTC")
    trail_pct = Order(action="SELL", totalQuantity=10, orderType="TRAIL", trailingPercent=2.5)
    trail_lmt = Order(action="BUY", totalQuantity=3, orderType="TRAIL LIMIT", auxPrice=2.0,
                      lmtPriceOffset=0.25, trailStopPrice=101.0)
    moc = Order(action="BUY", totalQuantity=7, orderType="MOC")
    child = LimitOrder("SELL", 5, 110.0, parentId=41, transmit=False, ocaGroup="oca1",
                       ocaType=1, orderRef="tp-1", account="DU1234567", tif="GTD",
                       goodTillDate="20261231 16:00:00 US/Eastern", outsideRth=True)
    algo = LimitOrder("BUY", 100, 99.5, algoStrategy="Adaptive",
                      algoParams=[TagValue("adaptivePriority", "Normal")])
    cond = MarketOrder("BUY", 1, conditions=[
        PriceCondition(price=105.0, conId=265598, exch="SMART", isMore=True),
        TimeCondition(time="20261124 10:00:00 UTC", isMore=True).Or()],
        conditionsCancelOrder=True)
    scale = LimitOrder("BUY", 100, 50.0, scaleInitLevelSize=10, scaleSubsLevelSize=10,
                       scalePriceIncrement=0.1, hedgeType="D", hedgeParam="0.5")
    dn = LimitOrder("BUY", 1, 2.0, deltaNeutralOrderType="MKT", deltaNeutralConId=7)
    whatif = MarketOrder("BUY", 5, whatIf=True, cashQty=500.0)
    return {
        "MKT": MarketOrder("BUY", 5),
        "LMT": LimitOrder("BUY", 5, 150.25),
        "STP": StopOrder("SELL", 2, 95.5),
        "STP LMT": StopLimitOrder("BUY", 4, 101.0, 100.5),
        "TRAIL amount": trail_amt,
        "TRAIL percent": trail_pct,
        "TRAIL LIMIT": trail_lmt,
        "MOC": moc,
        "bracket child": child,
        "algo": algo,
        "conditions": cond,
        "scale+hedge": scale,
        "delta neutral": dn,
        "whatIf": whatif,
    }


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", list(_orders()))
def test_parse_place_order_every_type(version, name):
    order = _orders()[name]
    expect = _orders()[name]
    p = parse(version, stk(), order)
    o = p.order
    assert p.order_id == 42
    assert (p.contract.conId, p.contract.symbol, p.contract.secType) == (265598, "AAPL", "STK")
    assert p.contract.exchange == "SMART" and p.contract.currency == "USD"
    assert o.action == expect.action
    assert o.totalQuantity == expect.totalQuantity
    assert o.orderType == expect.orderType

    def unset(v):
        return None if v is None or v == ib_async.util.UNSET_DOUBLE else float(v)

    assert o.lmtPrice == unset(expect.lmtPrice)
    assert o.auxPrice == unset(expect.auxPrice)
    assert o.trailStopPrice == unset(expect.trailStopPrice)
    assert o.trailingPercent == unset(expect.trailingPercent)
    assert o.lmtPriceOffset == unset(expect.lmtPriceOffset)
    assert o.cashQty == unset(expect.cashQty)
    assert o.tif == expect.tif
    assert o.goodTillDate == expect.goodTillDate
    assert (o.ocaGroup, o.ocaType) == (expect.ocaGroup, expect.ocaType)
    assert (o.parentId, o.transmit) == (expect.parentId, expect.transmit)
    assert o.orderRef == expect.orderRef and o.account == expect.account
    assert o.outsideRth == expect.outsideRth
    assert o.whatIf == expect.whatIf
    assert o.algoStrategy == expect.algoStrategy
    assert o.algoParams == [(t.tag, t.value) for t in expect.algoParams]
    assert len(o.conditions) == len(expect.conditions)
    if expect.conditions:
        assert o.conditions[0]["condType"] == 1 and float(o.conditions[0]["price"]) == 105.0
        assert o.conditions[1]["conjunction"] == "o"
        assert o.conditionsCancelOrder is True
    if expect.hedgeType:
        assert o.extra["hedgeParam"] == "0.5" and o.extra["scaleInitLevelSize"] == "10"
    if expect.deltaNeutralOrderType:
        assert o.extra["deltaNeutralConId"] == "7"


@pytest.mark.parametrize("version", [157, 170, 178])
def test_parse_bag_and_peg_orders(version):
    bag = Contract(symbol="SPY", secType="BAG", exchange="SMART", currency="USD",
                   comboLegs=[ComboLeg(conId=1, ratio=1, action="BUY", exchange="SMART"),
                              ComboLeg(conId=2, ratio=2, action="SELL", exchange="SMART")])
    order = LimitOrder("BUY", 1, 0.5, smartComboRoutingParams=[TagValue("NonGuaranteed", "1")])
    order.orderComboLegs = [ib_async.OrderComboLeg(price=0.25)]
    p = parse(version, bag, order)
    assert [leg["conId"] for leg in p.contract.comboLegs] == ["1", "2"]
    assert p.contract.comboLegs[1]["action"] == "SELL"
    assert p.order.orderComboLegPrices == [0.25]
    assert p.order.smartComboRoutingParams == [("NonGuaranteed", "1")]

    ats = Contract(conId=265598, symbol="AAPL", secType="STK", exchange="IBKRATS",
                   currency="USD")
    peg = Order(action="BUY", totalQuantity=10, orderType="PEG MID", minTradeQty=5,
                midOffsetAtWhole=0.01, midOffsetAtHalf=0.005)
    p = parse(version, ats, peg)
    if version >= 170:
        assert p.order.extra["minTradeQty"] == "5"
        assert float(p.order.extra["midOffsetAtHalf"]) == 0.005
    peg_best = Order(action="BUY", totalQuantity=10, orderType="PEG BEST", minCompeteSize=3,
                     competeAgainstBestOffset=float("inf"), midOffsetAtWhole=0.02,
                     midOffsetAtHalf=0.01)
    p = parse(version, stk(), peg_best)
    if version >= 170:
        assert p.order.extra["competeAgainstBestOffset"] == "Infinite"
        assert float(p.order.extra["midOffsetAtWhole"]) == 0.02


def test_parse_matches_documented_v178_indices():
    fields = capture_place_order(178, stk(), MarketOrder("BUY", 5))
    assert len(fields) == 114  # tws-protocol.md §8.6
    assert fields[27] == "1" and fields[84] == "0"  # transmit, whatIf


# --------------------------------------------------------------------------- decoding


def _ib_async_decoder(version):
    ib_async.util.getLoop()  # the wrapper's request futures need a current loop
    ib = ib_async.IB()
    return ib, Decoder(ib.wrapper, version)


def roundtrip(fields):
    """Frame and split exactly as the socket would (catches bool/None formatting)."""
    return split_fields(frame(fields)[4:])


def _spec(**kw) -> oc.OrderSpec:
    base = dict(action="BUY", totalQuantity=5.0, orderType="LMT", lmtPrice=150.25,
                tif="GTC", account="DU1234567", orderRef="ref-1", ocaGroup="g1", ocaType=1)
    base.update(kw)
    return oc.OrderSpec(**base)


def _execution(**kw):
    base = dict(order_id=7, contract=AAPL, exchange="NASDAQ",
                exec_id="0000e0d5.6553b2b3.01.01",
                time=datetime(2026, 11, 23, 19, 47, 20, tzinfo=UTC),
                account="DU1234567", side="BOT", shares=5.0, price=150.0, perm_id=1000001,
                client_id=3, cum_qty=5.0, avg_price=150.0, order_ref="ref-1")
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("version", VERSIONS)
def test_ib_async_decodes_order_flow(version, decoder_errors):
    ib, dec = _ib_async_decoder(version)
    spec = _spec(conditions=[{"condType": 1, "conjunction": "a", "isMore": "1",
                              "price": "105.0", "conId": "265598", "exch": "SMART",
                              "triggerMethod": "0"}], algoStrategy="Adaptive",
                 algoParams=[("adaptivePriority", "Normal")])
    dec.interpret(roundtrip(oc.open_order_fields(7, 3, 1000001, AAPL, spec, version,
                                                 oc.OrderStateInfo(status="Submitted"))))
    trade = ib.wrapper.trades[(3, 7)]
    assert trade.order.permId == 1000001
    assert trade.order.lmtPrice == 150.25 and trade.order.totalQuantity == 5.0
    assert trade.order.tif == "GTC" and trade.order.ocaGroup == "g1"
    assert trade.order.algoParams[0].value == "Normal"
    assert trade.order.conditions[0].price == 105.0
    assert trade.contract.conId == 265598
    dec.interpret(roundtrip(oc.order_status_fields(7, "Submitted", 0, 5, 0, 1000001, 0, 0, 3)))
    assert trade.orderStatus.status == "Submitted"
    dec.interpret(roundtrip(oc.exec_details_fields(_execution(shares=2.0, cum_qty=2.0), -1,
                                                   version)))
    dec.interpret(roundtrip(oc.commission_report_fields("0000e0d5.6553b2b3.01.01", 1.0)))
    dec.interpret(roundtrip(oc.order_status_fields(7, "Filled", 5, 0, 150.0, 1000001, 0,
                                                   150.0, 3)))
    assert trade.orderStatus.status == "Filled" and trade.orderStatus.filled == 5.0
    assert len(trade.fills) == 1
    fill = trade.fills[0]
    assert fill.execution.execId == "0000e0d5.6553b2b3.01.01"
    assert fill.execution.side == "BOT" and fill.execution.shares == 2.0
    assert fill.execution.clientId == 3 and fill.execution.cumQty == 2.0
    assert fill.execution.time == datetime(2026, 11, 23, 19, 47, 20, tzinfo=UTC)
    assert fill.commissionReport.commission == 1.0
    assert fill.commissionReport.currency == "USD"


@pytest.mark.parametrize("version", VERSIONS)
def test_ib_async_decodes_whatif_completed_and_account(version, decoder_errors):
    ib, dec = _ib_async_decoder(version)
    future = ib.wrapper.startReq(9, None)
    state = oc.OrderStateInfo(status="PreSubmitted", initMarginBefore="0.0",
                              initMarginChange="187.5", maintMarginChange="170.0",
                              equityWithLoanChange="-1.0", initMarginAfter="187.5",
                              commission=1.0, minCommission=1.0, maxCommission=1.0,
                              commissionCurrency="USD")
    dec.interpret(roundtrip(oc.open_order_fields(9, 3, 0, AAPL, _spec(whatIf=True), version,
                                                 state)))
    assert future.done()
    assert future.result().initMarginChange == "187.5"
    assert future.result().commission == 1.0

    ib.wrapper.startReq("completedOrders")
    dec.interpret(roundtrip(oc.completed_order_fields(
        1000002, AAPL, _spec(orderType="MKT", lmtPrice=None), version, "Filled",
        "20261123 19:47:20 UTC", "Filled Size: 5", 5.0)))
    results = ib.wrapper._results["completedOrders"]
    assert len(results) == 1 and results[0].order.permId == 1000002
    assert results[0].orderStatus.status == "Filled"
    assert results[0].order.filledQuantity == 5.0

    dec.interpret(roundtrip(oc.position_fields("DU1234567", AAPL, 15.0, 183.5)))
    pos = ib.positions("DU1234567")
    assert len(pos) == 1 and pos[0].position == 15.0 and pos[0].avgCost == 183.5
    dec.interpret(roundtrip(oc.portfolio_value_fields("DU1234567", AAPL, 15.0, 190.0, 2850.0,
                                                      183.5, 97.5, 10.0)))
    item = ib.portfolio("DU1234567")[0]
    assert (item.position, item.marketValue, item.unrealizedPNL) == (15.0, 2850.0, 97.5)
    assert item.contract.primaryExchange == "NASDAQ"
    dec.interpret(roundtrip(oc.account_value_fields("NetLiquidation", "1001900.00", "USD",
                                                    "DU1234567")))
    values = {v.tag: v.value for v in ib.accountValues("DU1234567")}
    assert values["NetLiquidation"] == "1001900.00"
    dec.interpret(roundtrip(oc.account_summary_fields(5, "DU1234567", "BuyingPower",
                                                      "4000000.00", "USD")))
    summary = {v.tag: v.value for v in ib.wrapper.acctSummary.values()}
    assert summary["BuyingPower"] == "4000000.00"
    dec.interpret(roundtrip(oc.error_fields(7, 202, "Order Canceled - reason:", version)))
    dec.interpret(roundtrip(oc.account_update_multi_fields(3, "DU1234567", "", "TotalCashValue",
                                                           "998000.00", "USD")))
    values = {(v.tag, v.currency): v.value for v in ib.accountValues("DU1234567")}
    assert values[("TotalCashValue", "USD")] == "998000.00"


@pytest.mark.parametrize("version", [170, 178])
def test_ib_async_decodes_pnl(version, decoder_errors):
    ib, dec = _ib_async_decoder(version)
    pnl = ib_async.PnL(account="DU1234567")
    ib.wrapper.reqId2PnL[11] = pnl
    dec.interpret(roundtrip(oc.pnl_fields(11, 12.5, 97.5, 10.0)))
    assert (pnl.dailyPnL, pnl.unrealizedPnL, pnl.realizedPnL) == (12.5, 97.5, 10.0)
    single = ib_async.PnLSingle(account="DU1234567", conId=265598)
    ib.wrapper.reqId2PnlSingle[12] = single
    dec.interpret(roundtrip(oc.pnl_single_fields(12, 15.0, 12.5, 97.5, 10.0, 2850.0)))
    assert (single.position, single.value, single.unrealizedPnL) == (15.0, 2850.0, 97.5)


def test_exec_details_field_counts():
    assert len(oc.exec_details_fields(_execution(), -1, 176)) == 31
    assert len(oc.exec_details_fields(_execution(), -1, 178)) == 32
    assert len(oc.commission_report_fields("x", 1.0)) == 8
    assert len(oc.position_fields("DU1", AAPL, 1, 1)) == 16
    assert len(oc.portfolio_value_fields("DU1", AAPL, 1, 1, 1, 1, 1, 1)) == 20


def test_ib_insync_decodes_order_flow_at_176(decoder_errors):
    ib_insync = pytest.importorskip("ib_insync")
    from ib_insync.decoder import Decoder as InsyncDecoder

    ib_async.util.getLoop()  # the wrapper's request futures need a current loop
    ib = ib_insync.IB()
    dec = InsyncDecoder(ib.wrapper, 176)
    dec.interpret(roundtrip(oc.open_order_fields(7, 3, 1000001, AAPL, _spec(), 176)))
    trade = ib.wrapper.trades[(3, 7)]
    assert trade.order.permId == 1000001 and trade.order.lmtPrice == 150.25
    dec.interpret(roundtrip(oc.exec_details_fields(_execution(), -1, 176)))
    dec.interpret(roundtrip(oc.commission_report_fields("0000e0d5.6553b2b3.01.01", 1.25)))
    dec.interpret(roundtrip(oc.order_status_fields(7, "Filled", 5, 0, 150.0, 1000001, 0,
                                                   150.0, 3)))
    assert trade.orderStatus.status == "Filled"
    assert len(trade.fills) == 1 and trade.fills[0].execution.shares == 5.0
    assert trade.fills[0].commissionReport.commission == 1.25
    ib.wrapper.startReq("completedOrders")
    dec.interpret(roundtrip(oc.completed_order_fields(
        1000002, AAPL, _spec(), 176, "Cancelled", "20261123 19:47:20 UTC",
        "Cancelled by Trader", 0.0)))
    assert ib.wrapper._results["completedOrders"][0].orderStatus.status == "Cancelled"
    dec.interpret(roundtrip(oc.position_fields("DU1234567", AAPL, 15.0, 183.5)))
    assert ib.positions()[0].position == 15.0
    dec.interpret(roundtrip(oc.portfolio_value_fields("DU1234567", AAPL, 15.0, 190.0, 2850.0,
                                                      183.5, 97.5, 10.0)))
    assert ib.portfolio()[0].marketValue == 2850.0
