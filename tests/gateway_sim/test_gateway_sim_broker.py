"""SimBroker rules with scripted quotes: prices, quantities, statuses, positions, cash, fees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from bt_ibkr.gateway_sim.broker import SimBroker
from bt_ibkr.gateway_sim.model import Quote, SimContract
from bt_ibkr.gateway_sim.order_codec import OrderSpec
from bt_ibkr.gateway_sim.records import (
    AccountChanged,
    Executed,
    OrderError,
    OrderUpdated,
    PositionChanged,
)

AAPL = SimContract(conId=265598, symbol="AAPL", secType="STK", primaryExchange="NASDAQ",
                   localSymbol="AAPL", tradingClass="NMS")
ES = SimContract(conId=495512563, symbol="ES", secType="FUT", exchange="CME",
                 multiplier="50", lastTradeDateOrContractMonth="20261218",
                 timeZoneId="America/Chicago")
T0 = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 New York


class Market:
    """A scripted market: a clock and the current quote per conId."""

    def __init__(self) -> None:
        self.now = T0
        self.quotes: dict[int, Quote] = {}

    def set(self, contract, bid, ask, last=None, o=None, h=None, low=None, c=None):
        last = last if last is not None else (bid + ask) / 2
        self.quotes[contract.conId] = Quote(
            self.now, o if o is not None else last, h if h is not None else max(ask, last),
            low if low is not None else min(bid, last), c if c is not None else last,
            last, bid, ask)

    def bar(self, broker, contract, o, h, low, c, minutes=1, session_end=None):
        self.now += timedelta(minutes=minutes)
        q = Quote(self.now, o, h, low, c, c, c - 0.01, c + 0.01)
        self.quotes[contract.conId] = q
        broker.on_bar(contract, q, session_end=session_end)
        return q


@pytest.fixture
def market():
    return Market()


def make_broker(market, **kw):
    broker = SimBroker("DU1234567", clock=lambda: market.now,
                       quote=lambda c: market.quotes.get(c.conId), **kw)
    events: list = []
    broker.subscribe(events.append)
    return broker, events


def spec(**kw) -> OrderSpec:
    base = dict(action="BUY", totalQuantity=10.0, orderType="MKT")
    base.update(kw)
    return OrderSpec(**base)


def statuses(events, order_id):
    return [e.order.status for e in events
            if isinstance(e, OrderUpdated) and e.order.order_id == order_id]


def fills(events, order_id=None):
    return [e.execution for e in events
            if isinstance(e, Executed) and (order_id is None or e.order.order_id == order_id)]


def errors(events):
    return [(e.order_id, e.code, e.text) for e in events if isinstance(e, OrderError)]


# --------------------------------------------------------------------------- basics


def test_market_buy_fills_at_ask_with_commission_position_and_cash(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(3, 1, AAPL, spec(totalQuantity=100))
    ex = fills(events)
    assert len(ex) == 1
    assert (ex[0].side, ex[0].shares, ex[0].price) == ("BOT", 100.0, 100.1)
    assert ex[0].commission == 1.0  # 100 * 0.005 = 0.50 -> min 1.00
    assert ex[0].client_id == 3 and ex[0].cum_qty == 100 and ex[0].avg_price == 100.1
    assert statuses(events, 1) == ["Submitted", "Filled"]
    pos = broker.positions()[0]
    assert pos.position == 100 and pos.avg_cost == pytest.approx(100.11)  # incl. commission
    assert broker.cash == pytest.approx(1_000_000 - 10_010 - 1.0)
    assert any(isinstance(e, PositionChanged) and e.position == 100 for e in events)
    assert isinstance(events[-1], AccountChanged)
    values = {(k, c): v for k, v, c in broker.accounts.values(None)}
    assert values[("TotalCashValue", "USD")] == "989989.00"
    assert values[("TotalCashValue", "BASE")] == "989989.00"
    # marked at last 100.0: 10000 market value
    assert values[("NetLiquidation", "USD")] == "999989.00"
    assert values[("GrossPositionValue", "USD")] == "10000.00"
    assert values[("UnrealizedPnL", "USD")] == "-11.00"


def test_market_sell_fills_at_bid_and_round_trip_realizes_pnl(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(totalQuantity=1000))  # fee 5.00
    market.set(AAPL, 104.9, 105.1)
    broker.place(1, 2, AAPL, spec(action="SELL", totalQuantity=1000))
    sell = fills(events, 2)[0]
    assert (sell.side, sell.price) == ("SLD", 104.9)
    # (104.9 - 100.1) * 1000 - 5 (buy fee) - 5 (sell fee)
    assert sell.realized_pnl == pytest.approx(4790.0)
    assert fills(events, 1)[0].realized_pnl is None
    assert broker.positions()[0].position == 0
    assert broker.cash == pytest.approx(1_000_000 + 4790.0)
    assert broker.accounts.numbers()["RealizedPnL"] == pytest.approx(4790.0)


def test_commission_is_capped_at_one_percent_and_per_order(market):
    market.set(AAPL, 0.49, 0.50)
    broker, events = make_broker(market, partial_fill_qty=1000)
    broker.place(1, 1, AAPL, spec(totalQuantity=3000))  # 3 x 1000 @ 0.50 over three events
    market.bar(broker, AAPL, 0.50, 0.5, 0.5, 0.5)
    market.bar(broker, AAPL, 0.50, 0.5, 0.5, 0.5)
    ex = fills(events, 1)
    assert [e.shares for e in ex] == [1000, 1000, 1000]
    # per share 15.00 capped at 1% of 1500 = 15.00; per fill 1% of 500 = 5.00 each
    assert [round(e.commission, 6) for e in ex] == [5.0, 5.0, 5.0]


def test_short_sale_and_cover(market):
    market.set(AAPL, 99.0, 101.0, last=100.0)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(action="SELL", totalQuantity=400))  # fee 2.00
    pos = broker.positions()[0]
    assert pos.position == -400 and pos.avg_cost == pytest.approx(98.995)  # (39600-2)/400
    market.set(AAPL, 94.0, 95.0)
    broker.place(1, 2, AAPL, spec(totalQuantity=400))
    assert fills(events, 2)[0].realized_pnl == pytest.approx((98.995 - 95.0) * 400 - 2.0)


def test_future_is_settled_in_pnl_with_the_multiplier(market):
    """IB books a future in P&L: buying moves the cash by the commission only, the open P&L
    (x 50) counts in NetLiquidation, closing moves the cash by the realized P&L."""
    market.set(ES, 5999.75, 6000.0)
    broker, events = make_broker(market)
    broker.place(1, 1, ES, spec(totalQuantity=2))
    pos = broker.positions()[0]
    assert pos.avg_cost == pytest.approx(6000.0 * 50 + 0.5)  # (2*300000 + 1.00)/2
    assert broker.cash == pytest.approx(1_000_000 - 1.0)  # no notional leaves the cash
    market.bar(broker, ES, 6010.0, 6010.0, 6010.0, 6010.0)  # bid 6009.99
    nums = broker.accounts.numbers()
    assert nums["FuturesPNL"] == pytest.approx(2 * 10.0 * 50)
    assert nums["NetLiquidation"] == pytest.approx(1_000_000 - 1.0 + 1000.0)
    assert nums["StockMarketValue"] == 0.0
    broker.place(1, 2, ES, spec(action="SELL", totalQuantity=1))  # at the bid
    exit_price = fills(events, 2)[0].price
    assert broker.cash == pytest.approx(1_000_000 - 2.0 + (exit_price - 6000.0) * 50)
    broker.place(1, 3, ES, spec(action="SELL", totalQuantity=3))  # through zero: short 2
    assert broker.cash == pytest.approx(1_000_000 - 3.0 + 2 * (exit_price - 6000.0) * 50)
    assert broker.accounts.numbers()["FuturesPNL"] == pytest.approx(-2 * (6010.0 - exit_price)
                                                                    * 50)


# --------------------------------------------------------------------------- resting orders


def test_limit_rests_then_fills_on_bar_at_limit_or_better_open(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=98.0))
    broker.place(1, 2, AAPL, spec(orderType="LMT", lmtPrice=97.0))
    assert statuses(events, 1) == ["Submitted"] and not fills(events)
    market.bar(broker, AAPL, 99.0, 99.5, 97.5, 98.2)  # trades through 98 -> fills at 98
    assert [e.price for e in fills(events, 1)] == [98.0]
    assert not fills(events, 2)
    market.bar(broker, AAPL, 96.0, 97.0, 95.0, 96.5)  # gaps below 97 -> fills at open 96
    assert [e.price for e in fills(events, 2)] == [96.0]


def test_marketable_limit_fills_at_quote_not_limit(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=101.0))
    broker.place(1, 2, AAPL, spec(action="SELL", orderType="LMT", lmtPrice=99.0))
    assert [e.price for e in fills(events)] == [100.1, 99.9]


def test_stop_orders_trigger_and_gap(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(action="SELL", orderType="STP", auxPrice=95.0))
    broker.place(1, 2, AAPL, spec(orderType="STP", auxPrice=102.0))
    market.bar(broker, AAPL, 100.0, 102.5, 99.5, 102.2)  # buy stop touched -> at stop
    assert [e.price for e in fills(events, 2)] == [102.0]
    market.bar(broker, AAPL, 93.0, 94.0, 92.0, 93.5)  # gap through sell stop -> at open
    assert [e.price for e in fills(events, 1)] == [93.0]


def test_stop_limit_triggers_then_limits(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    # sell stop 95 limit 94.5: gap to 93 triggers at 93 < limit -> rests as limit 94.5
    broker.place(1, 1, AAPL, spec(action="SELL", orderType="STP LMT", auxPrice=95.0,
                                  lmtPrice=94.5, tif="GTC"))
    market.bar(broker, AAPL, 93.0, 94.0, 92.0, 93.5)
    assert not fills(events, 1)
    market.bar(broker, AAPL, 93.5, 94.8, 93.0, 94.0)  # high reaches 94.5 -> fills at limit
    assert [e.price for e in fills(events, 1)] == [94.5]
    # buy stop 101 limit 101.5 touched intrabar -> fills at the stop
    broker.place(1, 2, AAPL, spec(orderType="STP LMT", auxPrice=101.0, lmtPrice=101.5))
    market.bar(broker, AAPL, 100.0, 101.2, 99.8, 101.1)
    assert [e.price for e in fills(events, 2)] == [101.0]


def test_trailing_stop_amount_ratchets_and_triggers(market):
    market.set(AAPL, 99.9, 100.1, last=100.0)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(action="SELL", orderType="TRAIL", auxPrice=2.0))
    order = broker.get_order(1, 1)
    assert order.trail_stop == 98.0
    market.bar(broker, AAPL, 100.0, 105.0, 99.0, 104.0)  # ratchets to 103
    assert order.trail_stop == 103.0 and not fills(events)
    market.bar(broker, AAPL, 104.0, 104.5, 102.0, 102.5)  # low 102 <= 103 -> fill at 103
    assert [e.price for e in fills(events, 1)] == [103.0]


def test_trailing_percent_and_trail_limit(market):
    market.set(AAPL, 99.9, 100.1, last=100.0)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(action="SELL", orderType="TRAIL", trailingPercent=5.0))
    assert broker.get_order(1, 1).trail_stop == 95.0
    broker.place(1, 2, AAPL, spec(orderType="TRAIL LIMIT", auxPrice=1.0, lmtPriceOffset=0.5))
    assert broker.get_order(1, 2).trail_stop == 101.0
    market.bar(broker, AAPL, 100.0, 100.2, 98.0, 98.5)  # buy trail ratchets down to 99
    assert broker.get_order(1, 2).trail_stop == 99.0
    market.bar(broker, AAPL, 99.8, 100.0, 99.5, 99.9)  # high 100 >= 99 -> trigger at open 99.8
    # limit = 99 + 0.5 = 99.5 < trigger 99.8, low 99.5 reaches the limit -> fills at 99.5
    assert [e.price for e in fills(events, 2)] == [99.5]
    assert broker.get_order(1, 2).spec.lmtPrice == 99.5
    assert not fills(events, 1)


def test_moc_fills_at_session_close_bar(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="MOC"))
    assert not fills(events)
    market.bar(broker, AAPL, 100, 101, 99, 100.5)
    assert not fills(events)
    market.now = datetime(2026, 11, 23, 20, 59, tzinfo=UTC)
    market.bar(broker, AAPL, 100.5, 101, 100, 100.75)  # 16:00 New York -> the close
    assert [e.price for e in fills(events, 1)] == [100.75]


def test_day_order_expires_at_close_gtc_survives(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=90.0))  # tif "" = DAY
    broker.place(1, 2, AAPL, spec(orderType="LMT", lmtPrice=90.0, tif="GTC"))
    market.bar(broker, AAPL, 100, 101, 99, 100.5)
    market.now = datetime(2026, 11, 23, 20, 59, tzinfo=UTC)
    market.bar(broker, AAPL, 100.5, 101, 100, 100.75)
    assert statuses(events, 1)[-1] == "Cancelled"
    assert broker.get_order(1, 2).status == "Submitted"
    assert [o.order_id for o in broker.open_orders()] == [2]
    assert broker.completed_orders()[0].completed_status.startswith("Expired")


def test_day_order_placed_after_last_daily_bar_survives_to_next_session(market):
    """next_bar mode with daily bars: decide at the close, fill at the next open."""
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market, fill_mode="next_bar")
    market.now = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)
    market.bar(broker, AAPL, 100, 102, 99, 101, minutes=0, session_end=True)
    broker.place(1, 1, AAPL, spec())
    assert not fills(events)
    market.bar(broker, AAPL, 101.5, 103, 101, 102, minutes=24 * 60, session_end=True)
    assert [e.price for e in fills(events, 1)] == [101.5]


def test_gtd_and_ioc(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market, partial_fill_qty=4)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=90.0, tif="GTD",
                                  goodTillDate="20261123 10:30:00 America/New_York"))
    market.bar(broker, AAPL, 100, 101, 99, 100.5, minutes=10)
    assert broker.get_order(1, 1).status == "Submitted"
    market.bar(broker, AAPL, 100, 101, 99, 100.5, minutes=30)  # 10:40 > 10:30
    assert broker.get_order(1, 1).status == "Cancelled"
    broker.place(1, 2, AAPL, spec(tif="IOC"))  # 10 wanted, 4 available per event
    assert [e.shares for e in fills(events, 2)] == [4.0]
    order = broker.get_order(1, 2)
    assert (order.status, order.filled) == ("Cancelled", 4.0)


def test_partial_fills_accumulate_cum_qty_and_avg_price(market):
    market.set(AAPL, 99.9, 100.0)
    broker, events = make_broker(market, partial_fill_qty=3)
    broker.place(1, 1, AAPL, spec(totalQuantity=7))
    market.bar(broker, AAPL, 101.0, 101, 101, 101)
    market.bar(broker, AAPL, 102.0, 102, 102, 102)
    ex = fills(events, 1)
    assert [(e.shares, e.price, e.cum_qty) for e in ex] == [
        (3.0, 100.0, 3.0), (3.0, 101.0, 6.0), (1.0, 102.0, 7.0)]
    assert ex[-1].avg_price == pytest.approx((300 + 303 + 102) / 7)
    ups = [e.order for e in events if isinstance(e, OrderUpdated) and e.order.order_id == 1]
    assert [u.filled for u in ups] == [0.0, 3.0, 6.0, 7.0]
    assert ups[-1].status == "Filled"
    assert len({e.exec_id for e in ex}) == 3
    assert all(len(e.exec_id.split(".")) == 4 for e in ex)


# --------------------------------------------------------------------------- groups


def test_bracket_waits_for_transmit_tp_fills_sl_cancelled(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 10, AAPL, spec(orderType="LMT", lmtPrice=99.0, transmit=False))
    broker.place(1, 11, AAPL, spec(action="SELL", orderType="LMT", lmtPrice=105.0,
                                   parentId=10, transmit=False))
    assert [o.status for o in broker.open_orders()] == ["PreSubmitted", "PreSubmitted"]
    market.bar(broker, AAPL, 98.0, 99, 97, 98.5)  # not transmitted yet: no fill
    assert not fills(events)
    market.set(AAPL, 99.9, 100.1)
    broker.place(1, 12, AAPL, spec(action="SELL", orderType="STP", auxPrice=95.0,
                                   parentId=10, transmit=True))
    assert broker.get_order(1, 10).status == "Submitted"
    assert broker.get_order(1, 11).status == "PreSubmitted"  # waits for the parent fill
    market.bar(broker, AAPL, 99.5, 100, 98.5, 99.2)  # parent fills at 99
    assert [e.price for e in fills(events, 10)] == [99.0]
    assert broker.get_order(1, 11).status == "Submitted"
    assert broker.get_order(1, 12).status == "Submitted"
    market.bar(broker, AAPL, 103.0, 106.0, 102.0, 105.5)  # TP trades through 105
    assert [e.price for e in fills(events, 11)] == [105.0]
    assert broker.get_order(1, 12).status == "Cancelled"
    assert broker.positions()[0].position == 0


def test_cancel_parent_cancels_children(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 10, AAPL, spec(orderType="LMT", lmtPrice=90.0, transmit=False))
    broker.place(1, 11, AAPL, spec(action="SELL", orderType="LMT", lmtPrice=105.0,
                                   parentId=10))
    assert broker.cancel(1, 10)
    assert broker.get_order(1, 11).status == "Cancelled"
    assert (10, 202, "Order Canceled - reason:") in errors(events)


def test_oca_type1_cancels_and_type2_reduces(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=98.0, ocaGroup="A", ocaType=1))
    broker.place(1, 2, AAPL, spec(orderType="LMT", lmtPrice=97.0, ocaGroup="A", ocaType=1))
    broker.place(1, 3, AAPL, spec(orderType="LMT", lmtPrice=98.0, ocaGroup="B", ocaType=2,
                                  totalQuantity=4))
    broker.place(1, 4, AAPL, spec(orderType="LMT", lmtPrice=90.0, ocaGroup="B", ocaType=2,
                                  totalQuantity=10))
    market.bar(broker, AAPL, 99.0, 99.5, 97.9, 98.0)
    assert broker.get_order(1, 1).status == "Filled"
    assert broker.get_order(1, 2).status == "Cancelled"
    assert broker.get_order(1, 3).status == "Filled"
    assert broker.get_order(1, 4).spec.totalQuantity == 6
    assert broker.get_order(1, 4).status == "Submitted"


def test_modify_updates_working_order(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=90.0))
    perm = broker.get_order(1, 1).perm_id
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=92.0, totalQuantity=20))
    order = broker.get_order(1, 1)
    assert (order.perm_id, order.spec.lmtPrice, order.spec.totalQuantity) == (perm, 92.0, 20)
    assert statuses(events, 1) == ["Submitted", "Submitted"]
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=101.0, totalQuantity=20))
    assert [e.price for e in fills(events, 1)] == [100.1]  # now marketable


def test_cancel_unknown_and_filled(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec())
    assert not broker.cancel(1, 99)
    assert not broker.cancel(1, 1)
    codes = [(oid, code) for oid, code, _ in errors(events)]
    assert codes == [(99, 10147), (1, 10148)]
    assert errors(events)[0][2] == "OrderId 99 that needs to be cancelled is not found."


def test_global_cancel(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(orderType="LMT", lmtPrice=90.0))
    broker.place(2, 1, AAPL, spec(orderType="LMT", lmtPrice=91.0))
    assert broker.global_cancel() == 2
    assert broker.open_orders() == []
    assert sorted(e[0] for e in errors(events) if e[1] == 202) == [1, 1]


# --------------------------------------------------------------------------- rejects, whatIf


@pytest.mark.parametrize("bad, reason", [
    (dict(totalQuantity=0), "quantity must be positive"),
    (dict(orderType="LMT"), "limit price"),
    (dict(orderType="STP"), "stop price"),
    (dict(orderType="PEG MID"), "Unsupported order type"),
    (dict(account="U999"), "not managed"),
    (dict(orderType="TRAIL"), "trailing amount"),
    (dict(tif="GTD"), "goodTillDate"),
])
def test_invalid_orders_rejected_201(market, bad, reason):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    assert broker.place(1, 5, AAPL, spec(**bad)) is None
    (err,) = errors(events)
    assert err[:2] == (5, 201) and err[2].startswith("Order rejected - reason:")
    assert reason in err[2]
    assert not fills(events) and broker.open_orders() == []


def test_fault_reject_next_order_once(market):
    market.set(AAPL, 99.9, 100.1)
    faults = SimpleNamespace(reject_next_order=(201, "Insufficient margin"))
    broker, events = make_broker(market, faults=faults)
    assert broker.place(1, 1, AAPL, spec()) is None
    assert errors(events) == [(1, 201, "Order rejected - reason:Insufficient margin")]
    assert faults.reject_next_order is None
    assert broker.place(1, 2, AAPL, spec()) is not None
    assert len(fills(events)) == 1


def test_what_if_reports_margin_without_filling(market):
    market.set(AAPL, 99.9, 100.1, last=100.0)
    broker, events = make_broker(market)
    assert broker.place(1, 7, AAPL, spec(totalQuantity=100, whatIf=True)) is None
    (ev,) = events
    state = ev.order.order_state()
    assert ev.order.spec.whatIf is True
    assert state.initMarginChange == "2500.00"  # 100 * 100 * 0.25
    assert state.equityWithLoanBefore == "1000000.00"
    assert state.commission == 1.0
    assert broker.open_orders() == [] and broker.positions() == []


def test_perm_ids_increase_and_executions_filter(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec())
    broker.place(2, 1, AAPL, spec(action="SELL", totalQuantity=5))
    broker.place(1, 2, ES, spec())
    perms = [o.perm_id for o in broker.completed_orders()]
    assert perms == sorted(perms) and len(set(perms)) == 2
    assert [e.client_id for e in broker.executions(client_id=2)] == [2]
    assert [e.side for e in broker.executions(side="SELL")] == ["SLD"]
    assert len(broker.executions(symbol="aapl")) == 2
    assert broker.executions(time_from="20261124 00:00:00 UTC") == []
    assert len(broker.executions(time_from="20261123 09:00:00 UTC")) == 2


def test_reused_id_of_finished_order_is_duplicate_103(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec())
    assert broker.place(1, 1, AAPL, spec(totalQuantity=5)) is None
    assert [(oid, code) for oid, code, _ in errors(events)] == [(1, 103)]
    assert len(fills(events)) == 1 and broker.positions()[0].position == 10


def test_orders_wait_while_market_closed(market):
    market.set(AAPL, 99.9, 100.1)
    broker, events = make_broker(market, is_open=lambda c: False)
    broker.place(1, 1, AAPL, spec())
    assert not fills(events) and broker.get_order(1, 1).status == "Submitted"
    market.bar(broker, AAPL, 101.0, 101.5, 100.5, 101.2)
    assert [e.price for e in fills(events, 1)] == [101.0]


def test_pnl_daily_unrealized_realized(market):
    market.set(AAPL, 99.9, 100.1, last=100.0)
    broker, events = make_broker(market)
    broker.place(1, 1, AAPL, spec(totalQuantity=100))  # 100 @ 100.1, fee 1.00
    market.bar(broker, AAPL, 101.0, 102.0, 100.5, 101.5)  # marked at last 101.5
    daily, unreal, realized = broker.pnl()
    assert unreal == pytest.approx(100 * 101.5 - (100 * 100.1 + 1.0))
    assert daily == pytest.approx(100 * (101.5 - 100.1) - 1.0)  # since the day's first event
    assert realized == 0.0
    pos, _, u1, r1, value = broker.accounts.pnl_single(AAPL.conId)
    assert (pos, value) == (100.0, pytest.approx(10150.0)) and u1 == pytest.approx(unreal)
    market.set(AAPL, 101.9, 102.1, last=102.0)
    broker.place(1, 2, AAPL, spec(action="SELL", totalQuantity=40))  # 40 @ 101.9, fee 1.00
    _, _, realized = broker.pnl()
    assert realized == pytest.approx(40 * (101.9 - 100.11) - 1.0)
    summary = dict((t, v) for t, v, _ in broker.accounts.summary("NetLiquidation,BuyingPower,"
                                                                  "AccountType"))
    assert summary["AccountType"] == "INDIVIDUAL"
    nums = broker.accounts.numbers()
    assert float(summary["BuyingPower"]) == pytest.approx(nums["AvailableFunds"] * 4, abs=0.01)
