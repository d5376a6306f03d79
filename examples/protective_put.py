"""Example: the regime-aware ensemble with a protective put on its equity position.

``ProtectedEnsemble`` runs :class:`strategies.RegimeAwareEnsemble` unchanged on the equity feed
(the first data) and, after each decision, holds puts covering the shares it owns: one put
contract per 100 shares (``floor(shares / 100)``), on the current leg of a monthly roll. The
legs (``monthly_put_legs``) are bought on each month's first trading day: strike ``otm`` below
the previous close (rounded down to $5), expiring on the third Friday of the next month; the
old leg is sold when the new one starts, so puts are normally sold before their last week and
expiry settlement (``OptionsBacktestBroker``) handles only what is still held then.

Option prices are Black-Scholes from the underlying at a fixed volatility
(``bt_ibkr.options.feed``): an illustration of the mechanics (contracts, multiplier, roll,
expiry), not a statement about what puts cost in the market.

Run: ``python -m examples.protective_put`` (the SPY sample, 2007-2009).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import backtrader as bt
import pandas as pd

from bt_ibkr.options.expiry import ExpiryRule, OptionCommInfo, OptionsBacktestBroker
from bt_ibkr.options.feed import option_frame
from strategies.ensemble import RegimeAwareEnsemble

__all__ = ["ProtectedEnsemble", "PutLeg", "add_protective_puts", "monthly_put_legs"]


def third_friday(year: int, month: int) -> date:
    """Return the third Friday of ``year``-``month`` (the monthly US option expiry)."""
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


@dataclass(frozen=True)
class PutLeg:
    """One put of the roll: its dataname, first day, expiry, strike and daily prices."""

    dataname: str
    start: date
    expiry: date
    strike: float
    prices: pd.DataFrame


def monthly_put_legs(symbol: str, underlying: pd.DataFrame, first: date, last: date,
                     otm: float = 0.05, vol: float = 0.20) -> list[PutLeg]:
    """Return one put per month from ``first`` to ``last`` (see the module docstring)."""
    days = pd.DatetimeIndex(underlying.index)
    close = underlying["close"] if "close" in underlying else underlying["Close"]
    legs = []
    for month in sorted({(d.year, d.month) for d in days.date if first <= d <= last}):
        idx = [i for i, d in enumerate(days.date) if (d.year, d.month) == month]
        if not idx or idx[0] == 0:
            continue
        start = days[idx[0]].date()
        prev = float(close.iloc[idx[0] - 1])  # known at the decision: yesterday's close
        strike = 5.0 * math.floor(prev * (1.0 - otm) / 5.0)
        y, m = (month[0] + (month[1] == 12), month[1] % 12 + 1)
        expiry = third_friday(y, m)
        name = f"{symbol}-OPT-SMART-USD-{expiry:%Y%m%d}-{strike:g}-P-100"
        legs.append(PutLeg(name, start, expiry, strike,
                           option_frame(underlying, expiry, strike, "P", vol, first=start)))
    return legs


def add_protective_puts(cerebro: bt.Cerebro, equity, legs: list[PutLeg]) -> None:
    """Add each leg's feed to ``cerebro`` with its commission info and expiry rule; the broker
    must be an ``OptionsBacktestBroker``. Add the equity feed first."""
    if not isinstance(cerebro.broker, OptionsBacktestBroker):
        raise TypeError("protective puts need cerebro.broker = OptionsBacktestBroker(...)")
    for leg in legs:
        data = bt.feeds.PandasData(dataname=leg.prices, name=leg.dataname)
        cerebro.adddata(data)
        cerebro.broker.addcommissioninfo(OptionCommInfo(mult=100.0), name=leg.dataname)
        cerebro.broker.add_expiry(ExpiryRule.from_dataname(leg.dataname, data, equity))


class ProtectedEnsemble(RegimeAwareEnsemble):
    """The ensemble on the equity feeds plus the put overlay on the ``-OPT-`` feeds.

    ``cash_buffer`` defaults to 5% here (the ensemble's own default leaves no cash for the
    premiums, so the broker would reject the puts).
    """

    params = (("cash_buffer", 0.05),)

    def __init__(self):
        everything = list(self.datas)
        # the ensemble decides on the equity feeds only; the puts are this overlay's
        self.datas = [d for d in everything if "-OPT-" not in (d._name or "")]
        try:
            super().__init__()
        finally:
            self.datas = everything
        self.puts = [d for d in everything if "-OPT-" in (d._name or "")]
        self._put_orders: dict[str, bt.Order] = {}

    def next(self):
        super().next()
        self.hedge()

    def _current_put(self):
        today = self.datas[0].datetime.date(0)
        live = [d for d in self.puts if len(d) and d.datetime.date(0) == today
                and ExpiryRule.from_dataname(d._name, d, self.datas[0]).expiry > today]
        return live[-1] if live else None  # the newest leg trading today

    def hedge(self) -> None:
        """Hold floor(shares / 100) puts on the current leg; sell puts on older legs."""
        shares = self.getposition(self.datas[0]).size
        current = self._current_put()
        for d in self.puts:
            pending = self._put_orders.get(d._name)
            if pending is not None and pending.alive():
                continue
            held = self.getposition(d).size
            want = (max(int(shares // 100), 0) if d is current else 0)
            if d is not current and (not len(d) or d.datetime.date(0)
                                     != self.datas[0].datetime.date(0)):
                continue  # not trading today (not listed yet, or expired: the broker settles)
            if want != held:
                order = self.buy if want > held else self.sell
                self._put_orders[d._name] = order(data=d, size=abs(want - held))


def _run(df, legs) -> float:
    """Run the ensemble on ``df`` (with the put ``legs``, or alone when empty); return the
    final portfolio value."""
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker = OptionsBacktestBroker(cash=1_000_000.0)
    equity = bt.feeds.PandasData(dataname=df, name="SPY")
    cerebro.adddata(equity)
    if legs:
        add_protective_puts(cerebro, equity, legs)
        cerebro.addstrategy(ProtectedEnsemble)
    else:
        from strategies import RegimeAwareEnsemble

        cerebro.addstrategy(RegimeAwareEnsemble)
    cerebro.run()
    return float(cerebro.broker.getvalue())


def main(argv: list[str] | None = None) -> int:
    """Backtest the protected ensemble on the SPY sample (2007-2009) against the ensemble
    alone and print both; return the exit code (``--help`` shows what it does)."""
    import argparse

    argparse.ArgumentParser(
        prog="python -m examples.protective_put",
        description="The regime-aware ensemble with a monthly protective put on the shares it "
                    "holds, on the bundled S&P 500 sample as SPY (2007-03..2009-12), against "
                    "the ensemble alone. Option prices are Black-Scholes at a fixed "
                    "volatility: an illustration of contracts, multiplier, roll and expiry, "
                    "not of what puts cost.").parse_args(argv)
    import arch.data.sp500

    df = arch.data.sp500.load()[["Open", "High", "Low", "Close", "Volume"]]
    df.columns = ["open", "high", "low", "close", "volume"]
    df = df.loc["2006-01-01":"2009-12-31"].copy()
    df[["open", "high", "low", "close"]] /= 10.0  # SPY as ^GSPC / 10, like the sample source
    first, last = date(2007, 3, 1), date(2009, 12, 1)
    legs = monthly_put_legs("SPY", df, first, last)
    protected, alone = _run(df, legs), _run(df, [])
    print(f"period {first}..{df.index[-1].date()} (warm-up from {df.index[0].date()}), "
          "1,000,000 to start")
    print(f"ensemble alone: final value {alone:,.2f}")
    print(f"with puts: {len(legs)} monthly legs; final value {protected:,.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
