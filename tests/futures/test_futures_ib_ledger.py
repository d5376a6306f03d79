"""ES through IBBroker at the gateway simulator (the real client) against the same fills in a
backtest with ``futures_comminfo``: the Strategy reads the same cash and value on both paths,
sizes whole contracts from the notional, and the account's cash follows IB's futures rule
(realized P&L and commission only)."""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest
from helpers.ib import Live, Scripted
from ib_async import IB, Future, MarketOrder

from bt_ibkr.backtest_broker import BacktestBroker
from bt_ibkr.futures.backtest import FuturesCommInfo
from bt_ibkr.futures.registry import get_spec

DATANAME = "ES-FUT-CME-USD-202403"  # the simulator's clock starts 2024-01-02: the front month


class _IBCommission(FuturesCommInfo):
    """futures_comminfo's accounting charging IB's commission: ``per_unit`` is set to the next
    fill's commission per contract when its order is sent."""

    per_unit = 0.0

    def _getcommission(self, size, price, pseudoexec):
        return abs(size) * self.per_unit


class _Replay(bt.Strategy):
    """Sends, on bar k - 1, a market order of what the IB path filled on bar k (with IB's
    commission of that fill); records what it reads on every bar."""

    params = (("fills", None), ("rec", None))

    def next(self):
        n = len(self)
        fill = self.p.fills.get(n + 1)
        if fill:
            size, fee = fill
            self.broker.getcommissioninfo(self.data).per_unit = fee / abs(size)
            (self.buy if size > 0 else self.sell)(size=abs(size))
        self.p.rec[n] = (self.broker.getcash(), self.broker.getvalue(),
                         self.broker.getvalue(datas=[self.data]), self.getposition().size)


def _backtest(bars: dict[int, dict]) -> dict[int, tuple]:
    """Replay the IB path's fills in a BacktestBroker with futures_comminfo's accounting."""
    rows = []
    for n in sorted(bars):
        b = bars[n]
        price = b["fill_price"] if b["fill_price"] is not None else b["close"]
        rows.append(dict(open=price, high=max(price, b["close"]), low=min(price, b["close"]),
                         close=b["close"], volume=1.0))
    frame = pd.DataFrame(rows, index=pd.bdate_range("2024-01-02", periods=len(rows)))
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.setbroker(BacktestBroker())
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.addcommissioninfo(_IBCommission(mult=get_spec("ES").multiplier))
    cerebro.adddata(bt.feeds.PandasData(dataname=frame))
    rec: dict[int, tuple] = {}
    fills = {n: (b["filled"], b["fee"]) for n, b in bars.items() if b["filled"]}
    cerebro.addstrategy(_Replay, fills=fills, rec=rec)
    cerebro.run()
    return rec


@pytest.mark.slow
def test_es_on_the_ib_path_reads_what_the_backtest_reads(gateway_sim):
    """Buy 3, sell 1, sell 4 (through zero: short 2), buy 2 (flat): on every bar the IB path's
    getcash/getvalue/getvalue([ES]) equal the backtest's on the same fills and closes."""
    bars: dict[int, dict] = {}

    def look(s):
        n = s.rec["n"]
        filled = sum(o["size"] for o in s.rec["orders"] if o["status"] == "Completed")
        bars[n] = dict(close=s.data.close[0], cash=s.broker.getcash(),
                       value=s.broker.getvalue(), data_value=s.broker.getvalue(datas=[s.data]),
                       position=s.getposition().size, total_filled=filled,
                       account_cash=s.broker.account_cash())

    orders = {2: 3, 6: -1, 10: -4, 14: 2}
    def act(s):
        look(s)
        size = orders.get(s.rec["n"])
        if size:
            (s.buy if size > 0 else s.sell)(size=abs(size))

    script = {n: act for n in range(1, 21)}
    with Live(gateway_sim, script, dataname=DATANAME) as live:
        live.step(20)
        live.until(lambda: "Completed" in live.statuses(live.ref(4)), what="the last fill")
        live.step(2)
        drift = live.cerebro.broker.account_drift()
        account_cash = live.cerebro.broker.account_cash()
    execs = gateway_sim.broker.executions()
    assert [e.shares if e.side == "BOT" else -e.shares for e in execs] == [3, -1, -4, 2]
    # which bar each fill reached the Strategy on, at which price
    prev = 0.0
    fill_iter = iter(execs)
    for n in sorted(bars):
        b = bars[n]
        b["filled"] = b["position"] - prev
        ex = next(fill_iter) if b["filled"] else None
        b["fill_price"], b["fee"] = (ex.price, ex.commission) if ex else (None, 0.0)
        prev = b["position"]
    assert [b["filled"] for b in bars.values() if b["filled"]] == [3, -1, -4, 2]
    held = [b for b in bars.values() if b["position"]]
    assert held and {b["position"] for b in held} == {3, 2, -2}
    backtest = _backtest(bars)
    for n, b in sorted(bars.items()):
        cash, value, data_value, position = backtest[n]
        assert (n, b["position"]) == (n, position)
        assert (n, b["cash"]) == (n, pytest.approx(cash, abs=1e-6))
        assert (n, b["value"]) == (n, pytest.approx(value, abs=1e-6))
        assert (n, b["data_value"]) == (n, pytest.approx(data_value, abs=1e-6))
    # while short 2 the strategy's cash holds the proceeds of the notional, as the backtest's
    short = next(b for b in bars.values() if b["position"] == -2)
    assert short["data_value"] == pytest.approx(-2 * 50 * short["close"])
    # the account's cash moved by realized P&L and IB's commission only, as the gateway's did
    first_held = next(b for b in bars.values() if b["position"] == 3)
    assert first_held["account_cash"] == pytest.approx(1_000_000.0 - execs[0].commission)
    mult = 50.0
    realized = ((execs[1].price - execs[0].price) * 1 + (execs[2].price - execs[0].price) * 2
                + (execs[2].price - execs[3].price) * 2) * mult
    fees = sum(e.commission for e in execs)
    assert account_cash == pytest.approx(1_000_000.0 + realized - fees, abs=1e-6)
    assert gateway_sim.broker.cash == pytest.approx(account_cash, abs=1e-6)
    assert drift["cash"] == pytest.approx(0.0, abs=0.01)
    assert bars[max(bars)]["cash"] == pytest.approx(account_cash, abs=1e-6)  # flat again


@pytest.mark.slow
def test_order_target_percent_buys_whole_contracts_of_the_notional(gateway_sim):
    """order_target_percent(0.5) sends floor(0.5 x value / (close x 50)) contracts, and asking
    again while holding them sends nothing (the position counts at its notional)."""
    seen = {}

    def target(s):
        seen.setdefault("first", (s.broker.getvalue(), s.data.close[0]))
        s.order_target_percent(target=0.5)

    with Live(gateway_sim, {2: target, 8: target, 12: target}, dataname=DATANAME) as live:
        live.step(3)
        live.until(lambda: "Completed" in live.statuses(live.ref(1)), what="the first fill")
        live.step(12)
    value, close = seen["first"]
    wanted = int(0.5 * value // (close * 50))
    assert wanted >= 1
    sent = [o.spec.totalQuantity for o in gateway_sim.broker.completed_orders()]
    assert sent == [wanted]


@pytest.mark.slow
def test_a_held_es_position_adopted_at_start_is_valued_at_its_open_pnl(gateway_sim):
    """A run that starts holding 3 ES (bought earlier) reads IB's cash less the notional at
    entry as getcash() and cash plus open P&L as getvalue(): never the notional on top of a
    cash IB did not reduce by it."""
    ib = IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=31, timeout=20)
    try:
        (es,) = ib.qualifyContracts(Future("ES", "202403", "CME"))
        trade = ib.placeOrder(es, MarketOrder("BUY", 3))
        ib.reqCurrentTime()
        assert trade.orderStatus.status == "Filled"
    finally:
        ib.disconnect()
    [buy] = gateway_sim.broker.executions()
    cash0 = gateway_sim.broker.cash
    assert cash0 == pytest.approx(1_000_000.0 - buy.commission)  # IB: no notional moved
    seen = {}

    def look(s):
        seen.update(cash=s.broker.getcash(), value=s.broker.getvalue(), close=s.data.close[0],
                    size=s.getposition().size, data_value=s.broker.getvalue(datas=[s.data]))

    with Live(gateway_sim, {2: look, 3: look}, dataname=DATANAME) as live:
        live.step(3)
        account_cash = live.cerebro.broker.account_cash()
    assert seen["size"] == 3
    assert account_cash == pytest.approx(cash0)
    open_pnl = 3 * (seen["close"] - buy.price) * 50
    # IB's avgCost holds the commission: the adopted entry is dearer by it (a few dollars)
    assert seen["value"] == pytest.approx(cash0 + open_pnl, abs=buy.commission + 0.01)
    assert seen["cash"] == pytest.approx(cash0 - 3 * buy.price * 50, abs=buy.commission + 0.01)
    assert seen["data_value"] == pytest.approx(3 * seen["close"] * 50)


class _ReadsMoneyFirst(Scripted):
    """Reads the cash and the value on its first bar before anything asks for a position."""

    def next(self):
        if "first" not in self.rec:
            self.rec["first"] = (self.broker.getcash(), self.broker.getvalue(),
                                 self.data.close[0])
        super().next()


@pytest.mark.slow
def test_a_restart_holding_es_counts_it_before_the_strategy_asks_for_the_position(
        gateway_sim):
    ib = IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=31, timeout=20)
    try:
        (es,) = ib.qualifyContracts(Future("ES", "202403", "CME"))
        ib.placeOrder(es, MarketOrder("SELL", 2))
        ib.reqCurrentTime()
    finally:
        ib.disconnect()
    [sell] = gateway_sim.broker.executions()
    cash0 = gateway_sim.broker.cash
    with Live(gateway_sim, {}, dataname=DATANAME, strategy=_ReadsMoneyFirst) as live:
        live.step(2)
    cash, value, close = live.rec["first"]
    # short 2: the strategy's cash holds the notional sold, the value is cash + open P&L
    assert cash == pytest.approx(cash0 + 2 * sell.price * 50, abs=sell.commission + 0.01)
    assert value == pytest.approx(cash0 + 2 * (sell.price - close) * 50,
                                  abs=sell.commission + 0.01)
