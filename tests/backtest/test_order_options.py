"""The named order options (bt_ibkr.order_options): MOO, LOO, MOC, LOC, outside_rth and IB's
Adaptive algo, as a Strategy passes them to ``buy``/``sell``.

* Backtest: the fill rules of bt_ibkr.backtest_broker on bars whose prices the test chose.
* IB: the same Strategy through IBBroker and the real ib_async client against the gateway
  simulator (the parity IB path: one compressed session per daily bar); the fields that
  reach the gateway and the fill prices.
* Parity: both paths, compared bar by bar, agree (0 order and 0 fill diffs).
* Bad values: one clear error naming the value, on both brokers.
"""

from __future__ import annotations

from datetime import timedelta

import backtrader as bt
import pandas as pd
import pytest
from helpers.sim import fills_of

from bt_ibkr.backtest_run import backtest_cerebro
from bt_ibkr.errors import ConfigError
from bt_ibkr.order_options import AUCTION_CLOSE, AUCTION_OPEN, OrderOptions
from bt_ibkr.parity.paths import ParityConfig, run_backtest_path, run_ib_path
from bt_ibkr.parity.run import run_parity
from feeds.frame_feed import make_feed

#: the bar of the decision (1-based, as ``len(self)``) in the scripted runs
DECIDE = 2


def daily_frame(n: int = 6) -> pd.DataFrame:
    """Bars with distinct, known prices: open 100+i, high open+2, low open-2, close open+1."""
    idx = pd.bdate_range("2024-03-04", periods=n)
    opens = [100.0 + 3 * i for i in range(n)]
    return pd.DataFrame({"open": opens, "high": [o + 2 for o in opens],
                         "low": [o - 2 for o in opens], "close": [o + 1 for o in opens],
                         "volume": [1_000_000.0] * n}, index=idx)


FRAME = daily_frame()
NEXT = FRAME.iloc[DECIDE]  # the bar after the decision (iloc is 0-based)


class OneOrder(bt.Strategy):
    """Places one order on bar DECIDE: ``side`` with ``kw`` (size 10); records every
    notification per broker class in ``OneOrder.seen``."""

    params = (("side", "buy"), ("kw", None))
    seen: dict[str, list[tuple]] = {}

    def notify_order(self, order):
        self.seen.setdefault(type(self.broker).__name__, []).append(
            (order.getstatusname(), order.executed.size, order.executed.price,
             dict(order.info)))

    def next(self):
        if len(self) == DECIDE:
            kw = dict(self.p.kw or {})
            if "exectype" in kw:
                kw["exectype"] = getattr(bt.Order, kw["exectype"])
            getattr(self, self.p.side)(size=10, **kw)


def final_status(broker_name: str) -> tuple:
    return OneOrder.seen[broker_name][-1]


def backtest(kw: dict, side: str = "buy", frame: pd.DataFrame = FRAME) -> tuple:
    """Run OneOrder with ``kw`` on BackBroker's backtest; return its last notification."""
    OneOrder.seen = {}
    cerebro = backtest_cerebro(100_000.0, 0.0, 0.0)
    cerebro.adddata(make_feed(frame, name="SPY"), name="SPY")
    cerebro.addstrategy(OneOrder, side=side, kw=kw)
    cerebro.run()
    return final_status("BacktestBroker")


# --------------------------------------------------------------------------- options and errors


@pytest.mark.parametrize("values,exectype,words", [
    ({"auction": "opening"}, None, "auction='opening'"),
    ({"auction": "open"}, bt.Order.Stop, "exectype 'Stop'"),
    ({"auction": "close"}, bt.Order.Close, "exectype 'Close'"),
    ({"outside_rth": "yes"}, None, "outside_rth='yes'"),
    ({"outside_rth": True, "auction": "close"}, None, "outside_rth=True with auction='close'"),
    ({"algo": "twap"}, None, "algo='twap'"),
    ({"algo": "adaptive", "priority": "Hasty"}, None, "priority='Hasty'"),
    ({"priority": "Urgent"}, None, "without algo='adaptive'"),
    ({"algo": "adaptive"}, bt.Order.StopLimit, "exectype 'StopLimit'"),
    ({"algo": "adaptive", "auction": "open"}, None, "auction='open'"),
])
def test_a_bad_option_is_one_error_naming_it(values, exectype, words):
    with pytest.raises(ConfigError) as err:
        OrderOptions.parse(values, exectype)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_an_auction_order_with_a_lifetime_is_refused():
    with pytest.raises(ConfigError, match="valid=datetime.timedelta"):
        OrderOptions.parse({"auction": "open"}, None, timedelta(days=3))
    assert OrderOptions.parse({"auction": "open"}, None, timedelta(0)).auction == "open"


def test_priority_is_normalised_and_defaults_to_normal():
    assert OrderOptions.parse({"algo": "Adaptive"}).priority == "Normal"
    assert OrderOptions.parse({"algo": "adaptive", "priority": "urgent"}).priority == "Urgent"


def test_a_bad_option_stops_the_backtest_with_the_error():
    with pytest.raises(ConfigError, match="auction='opening'"):
        backtest({"auction": "opening"})


def test_a_bad_option_stops_the_ib_run_before_anything_reaches_the_gateway(gateway_sim):
    params = {"kw": {"algo": "adaptive", "priority": "Hasty"}}
    # the Strategy's thread stops with the ConfigError; the parity driver reports it
    with pytest.raises(RuntimeError, match="ConfigError.*priority='Hasty'"):
        run_ib_path({"SPY": FRAME}, OneOrder, params, ParityConfig(client_id=93),
                    sim=gateway_sim)
    assert not gateway_sim.requests_named("placeOrder")


# --------------------------------------------------------------------------- backtest rules

LIMIT_BUY_MISS = NEXT.open - 1.0  # above the low: a plain Limit fills there, LOO does not
LIMIT_BUY_HIT = NEXT.open + 0.5
CLOSE_MISS = NEXT.close - 1.0  # above the low, below the close
CLOSE_HIT = NEXT.close + 0.5

#: option name -> (order keywords, final status, fill price) on FRAME, decision at bar 2
CASES = {
    "MOO": ({"auction": AUCTION_OPEN}, "Completed", NEXT.open),
    "LOO hit": ({"auction": AUCTION_OPEN, "exectype": "Limit", "price": LIMIT_BUY_HIT},
                "Completed", NEXT.open),
    "LOO miss": ({"auction": AUCTION_OPEN, "exectype": "Limit", "price": LIMIT_BUY_MISS},
                 "Canceled", 0.0),
    "MOC": ({"auction": AUCTION_CLOSE}, "Completed", NEXT.close),
    "LOC hit": ({"auction": AUCTION_CLOSE, "exectype": "Limit", "price": CLOSE_HIT},
                "Completed", NEXT.close),
    "LOC miss": ({"auction": AUCTION_CLOSE, "exectype": "Limit", "price": CLOSE_MISS},
                 "Canceled", 0.0),
    "outside_rth": ({"outside_rth": True}, "Completed", NEXT.open),
    "adaptive market": ({"algo": "adaptive", "priority": "Urgent"}, "Completed", NEXT.open),
    "adaptive limit": ({"algo": "adaptive", "exectype": "Limit", "price": LIMIT_BUY_MISS},
                       "Completed", LIMIT_BUY_MISS),
    # sell side (a short sale): the price conditions mirror
    "sell MOO": ({"auction": AUCTION_OPEN}, "Completed", NEXT.open),
    "sell LOO hit": ({"auction": AUCTION_OPEN, "exectype": "Limit", "price": NEXT.open - 0.5},
                     "Completed", NEXT.open),
    "sell LOO miss": ({"auction": AUCTION_OPEN, "exectype": "Limit", "price": NEXT.open + 1.0},
                      "Canceled", 0.0),
    "sell MOC": ({"auction": AUCTION_CLOSE}, "Completed", NEXT.close),
    "sell LOC hit": ({"auction": AUCTION_CLOSE, "exectype": "Limit", "price": NEXT.close - 0.5},
                     "Completed", NEXT.close),
    "sell LOC miss": ({"auction": AUCTION_CLOSE, "exectype": "Limit",
                       "price": NEXT.close + 0.5}, "Canceled", 0.0),
}


def side_of(name: str) -> str:
    return "sell" if name.startswith("sell ") else "buy"


@pytest.mark.parametrize("name", list(CASES))
def test_backtest_fills_each_option_by_its_rule(name):
    kw, status, price = CASES[name]
    got = backtest(kw, side=side_of(name))
    assert got[0] == status, got
    assert got[2] == pytest.approx(price)
    info = got[3]
    assert {k: info[k] for k in ("auction", "outside_rth", "algo") if k in info} == {
        k: v for k, v in kw.items() if k in ("auction", "outside_rth", "algo")}


def test_a_plain_limit_fills_where_the_loo_is_cancelled():
    """Guards the LOO-miss case: the same limit without the auction fills (at the limit)."""
    got = backtest({"exectype": "Limit", "price": LIMIT_BUY_MISS})
    assert (got[0], got[2]) == ("Completed", pytest.approx(LIMIT_BUY_MISS))


def intraday_frame() -> pd.DataFrame:
    """30-minute bars (naive UTC start times) of two New York days with pre- and after-market
    bars: 08:00-20:00 New York (EDT, UTC-4) on 2024-06-03 and 2024-06-04."""
    times = []
    for day in ("2024-06-03", "2024-06-04"):
        times += list(pd.date_range(f"{day} 12:00", f"{day} 23:30", freq="30min"))
    n = len(times)
    opens = [200.0 + i for i in range(n)]
    return pd.DataFrame({"open": opens, "high": [o + 0.5 for o in opens],
                         "low": [o - 0.5 for o in opens], "close": [o + 0.25 for o in opens],
                         "volume": [1000.0] * n}, index=pd.DatetimeIndex(times))


class AtTime(bt.Strategy):
    """Places one buy of 10 (``kw``) on the bar starting at ``at`` (naive UTC)."""

    params = (("at", None), ("kw", None))
    seen: list[tuple] = []

    def notify_order(self, order):
        AtTime.seen.append((order.getstatusname(), order.executed.price,
                            bt.num2date(order.executed.dt) if order.executed.size else None,
                            order.info.get("reason")))

    def next(self):
        if self.data.datetime.datetime(0) == self.p.at:
            self.buy(size=10, **(self.p.kw or {}))


def intraday(at: str, kw: dict) -> tuple:
    AtTime.seen = []
    frame = intraday_frame()
    cerebro = backtest_cerebro(100_000.0, 0.0, 0.0)
    cerebro.adddata(make_feed(frame, name="SPY"), name="SPY")
    cerebro.addstrategy(AtTime, at=pd.Timestamp(at).to_pydatetime(), kw=kw)
    cerebro.run()
    return AtTime.seen[-1], frame


@pytest.mark.parametrize("outside_rth,fill_at", [(False, "2024-06-04 13:30"),
                                                 (True, "2024-06-03 20:30")])
def test_intraday_outside_rth_fills_on_extended_hours_bars_only_when_flagged(outside_rth,
                                                                             fill_at):
    # decided on the 16:00 New York bar (20:00 UTC): the next bar is after-hours
    (status, price, when, _), frame = intraday("2024-06-03 20:00",
                                               {"outside_rth": outside_rth})
    assert status == "Completed"
    assert price == frame.loc[fill_at, "open"]


def test_intraday_moo_fills_at_the_first_regular_bar_of_the_next_session():
    (status, price, _, _), frame = intraday("2024-06-03 21:00", {"auction": AUCTION_OPEN})
    assert (status, price) == ("Completed", frame.loc["2024-06-04 13:30", "open"])


def test_intraday_moo_decided_on_the_sessions_last_bar_is_made_at_the_close():
    # the 15:30 New York bar ends at 16:00: the decision is after the close, not in session
    (status, price, _, _), frame = intraday("2024-06-03 19:30", {"auction": AUCTION_OPEN})
    assert (status, price) == ("Completed", frame.loc["2024-06-04 13:30", "open"])


def test_intraday_moo_decided_before_the_open_fills_at_that_days_open():
    (status, price, _, _), frame = intraday("2024-06-04 12:30", {"auction": AUCTION_OPEN})
    assert (status, price) == ("Completed", frame.loc["2024-06-04 13:30", "open"])


def test_intraday_opg_made_during_the_session_is_rejected():
    (status, _, _, reason), _ = intraday("2024-06-03 15:00", {"auction": AUCTION_OPEN})
    assert status == "Rejected" and "OPG" in reason


def test_intraday_moc_fills_at_the_close_of_the_sessions_last_regular_bar():
    (status, price, _, _), frame = intraday("2024-06-03 15:00", {"auction": AUCTION_CLOSE})
    assert (status, price) == ("Completed", frame.loc["2024-06-03 19:30", "close"])


# --------------------------------------------------------------------------- IB path + parity

#: option name -> the fields the IB order must carry at the gateway
IB_FIELDS = {
    "MOO": {"orderType": "MKT", "tif": "OPG"},
    "LOO hit": {"orderType": "LMT", "tif": "OPG", "lmtPrice": LIMIT_BUY_HIT},
    "LOO miss": {"orderType": "LMT", "tif": "OPG", "lmtPrice": LIMIT_BUY_MISS},
    "MOC": {"orderType": "MOC", "tif": "DAY"},
    "LOC hit": {"orderType": "LOC", "tif": "DAY", "lmtPrice": CLOSE_HIT},
    "LOC miss": {"orderType": "LOC", "tif": "DAY", "lmtPrice": CLOSE_MISS},
    "outside_rth": {"orderType": "MKT", "outsideRth": True},
    "adaptive market": {"orderType": "MKT", "algoStrategy": "Adaptive",
                        "algoParams": [("adaptivePriority", "Urgent")]},
    "adaptive limit": {"orderType": "LMT", "algoStrategy": "Adaptive",
                       "algoParams": [("adaptivePriority", "Normal")]},
    "sell MOO": {"orderType": "MKT", "tif": "OPG", "action": "SELL"},
    "sell LOO hit": {"orderType": "LMT", "tif": "OPG", "action": "SELL"},
    "sell LOO miss": {"orderType": "LMT", "tif": "OPG", "action": "SELL"},
    "sell MOC": {"orderType": "MOC", "tif": "DAY", "action": "SELL"},
    "sell LOC hit": {"orderType": "LOC", "tif": "DAY", "action": "SELL"},
    "sell LOC miss": {"orderType": "LOC", "tif": "DAY", "action": "SELL"},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_each_option_reaches_the_gateway_fills_there_and_matches_the_backtest(gateway_sim,
                                                                              name):
    kw, status, price = CASES[name]
    OneOrder.seen = {}
    run = run_parity({"SPY": FRAME}, OneOrder, {"kw": kw, "side": side_of(name)},
                     ParityConfig(client_id=94), sim=gateway_sim)
    (order,) = gateway_sim.broker.completed_orders()
    spec = order.spec
    assert {k: getattr(spec, k) for k in IB_FIELDS[name]} == IB_FIELDS[name]
    execs = gateway_sim.broker.executions()
    if status == "Completed":
        assert [(e.shares, e.price) for e in execs] == [(10, pytest.approx(price))]
    else:
        assert order.status == "Cancelled" and not execs
    # the Strategy heard the same end on both brokers, and the paths agree
    assert final_status("IBBroker")[:3] == final_status("BacktestBroker")[:3]
    assert final_status("IBBroker")[0] == status
    r = run.report
    assert r.order_diffs == r.fill_diffs == r.position_diffs == r.decision_diffs == 0
    assert fills_of(run.backtest) == fills_of(run.ib)


class AuctionRoundTrips(bt.Strategy):
    """Buys 10 at the next open (MOO) and sells them at the next close (MOC), every
    ``every`` bars: a day trade through both auctions."""

    params = (("every", 3),)

    def next(self):
        if len(self) % self.p.every:
            return
        held = self.getposition().size
        if held:
            self.sell(size=held, auction=AUCTION_CLOSE)
        else:
            self.buy(size=10, auction=AUCTION_OPEN)


@pytest.mark.slow
def test_parity_of_a_moo_moc_strategy_on_real_bars(gateway_sim, spx):
    frames = {"^GSPC": spx.iloc[-120:]}
    run = run_parity(frames, AuctionRoundTrips, {"every": 2}, ParityConfig(client_id=95),
                     sim=gateway_sim)
    r = run.report
    assert r.bars_backtest == r.bars_ib == r.bars == 120
    assert r.order_diffs == 0 and r.fill_diffs == 0
    assert r.decision_diffs == r.position_diffs == 0 and r.max_value_diff < 1e-4
    assert r.orders_backtest == r.orders_ib >= 50
    assert fills_of(run.backtest) == fills_of(run.ib)
    # at the gateway: MOO then MOC, each filled at the open / close of the day after
    specs = [(o.spec.orderType, o.spec.tif) for o in gateway_sim.broker.completed_orders()]
    assert set(specs) == {("MKT", "OPG"), ("MOC", "DAY")}
    bars = frames["^GSPC"]
    for ex in gateway_sim.broker.executions():
        day = bars.loc[ex.time.strftime("%Y-%m-%d")]
        assert ex.price == pytest.approx(day["open"] if ex.side == "BOT" else day["close"])


@pytest.mark.slow
def test_auction_orders_cross_whole_when_the_gateway_splits_other_fills(gateway_sim, spx):
    """With the simulator filling plain orders 3 shares at a time, an auction still crosses
    each order at one price, as BackBroker fills it: still 0 fill diffs."""
    frames = {"^GSPC": spx.iloc[-40:]}
    run = run_parity(frames, AuctionRoundTrips, {"every": 2},
                     ParityConfig(client_id=98, partial_fill_qty=3), sim=gateway_sim)
    r = run.report
    assert r.order_diffs == r.fill_diffs == r.position_diffs == 0 and r.orders_ib >= 15
    assert all(ex.shares == 10 for ex in gateway_sim.broker.executions())


def test_an_auction_order_with_a_lifetime_stops_the_backtest():
    with pytest.raises(ConfigError, match="valid=datetime.timedelta"):
        backtest({"auction": AUCTION_CLOSE, "valid": timedelta(days=2)})


def test_backtest_slippage_applies_to_moo_and_moc_as_to_a_market_order():
    slipped = {}
    for name in ("MOO", "MOC"):
        OneOrder.seen = {}
        cerebro = backtest_cerebro(100_000.0, 0.0, 10.0)  # 10 bp
        cerebro.adddata(make_feed(FRAME, name="SPY"), name="SPY")
        cerebro.addstrategy(OneOrder, kw=CASES[name][0])
        cerebro.run()
        slipped[name] = final_status("BacktestBroker")[2]
    assert slipped["MOO"] == pytest.approx(NEXT.open * 1.001)
    assert slipped["MOC"] == pytest.approx(NEXT.close * 1.001)


def test_backtest_path_alone_is_the_backtests_broker():
    """The parity backtest path is the backtest's own broker (options included)."""
    OneOrder.seen = {}
    run_backtest_path({"SPY": FRAME}, OneOrder, {"kw": CASES["MOC"][0]},
                      ParityConfig(client_id=96))
    assert final_status("BacktestBroker")[2] == pytest.approx(NEXT.close)


def test_a_moo_sent_during_the_session_is_rejected_with_ibs_reason(gateway_sim):
    """The live Strategy sends a MOO at 09:30-ish New York (the opening auction is over):
    the gateway refuses it and the Strategy hears Rejected with the reason; nothing fills."""
    from helpers.ib import Live

    with Live(gateway_sim, {1: lambda s: s.buy(size=3, auction=AUCTION_OPEN)},
              client_id=97) as live:
        live.until(lambda: any(o["status"] == "Rejected" for o in live.rec["orders"]),
                   what="the MOO rejected")
    (rejected,) = [o for o in live.rec["orders"] if o["status"] == "Rejected"]
    assert rejected["code"] == 201 and "OPG" in rejected["reason"]
    assert len(gateway_sim.requests_named("placeOrder")) == 1  # it was sent, once
    assert not gateway_sim.broker.open_orders() and not gateway_sim.broker.executions()


def test_intraday_moc_decided_on_the_sessions_last_bar_goes_to_the_next_close():
    (status, price, _, _), frame = intraday("2024-06-03 19:30", {"auction": AUCTION_CLOSE})
    assert (status, price) == ("Completed", frame.loc["2024-06-04 19:30", "close"])

