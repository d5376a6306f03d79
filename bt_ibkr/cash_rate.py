"""Interest on idle cash in a backtest: ``CashRateBroker`` credits a yearly rate on positive cash.

backtrader's BackBroker pays nothing on cash, so a strategy that is out of the market half the
time is compared with buy-and-hold as if its idle cash earned 0%. ``--cash-rate PCT`` (or
``BacktestConfig.cash_rate_pct``) credits ``PCT`` percent a year, compounded per calendar day
between bars, on the cash balance when it is positive (no interest is charged on a negative
balance; the backtest does not lend). The Strategy sees the interest in ``getcash()`` and
``getvalue()`` from the next bar, as it would see it at a broker.
"""

from __future__ import annotations

from bt_ibkr.backtest_broker import BacktestBroker

__all__ = ["CashRateBroker"]


class CashRateBroker(BacktestBroker):
    """BacktestBroker (BackBroker with the named order options) that credits ``cash_rate`` (a yearly fraction, e.g. 0.02) on positive cash.

    ``clock`` is the data feed whose bar dates count the days (the first feed of the run; set
    it with :meth:`set_clock` before ``cerebro.run()``). ``interest`` is the total credited.
    """

    params = (("cash_rate", 0.0),)

    def __init__(self) -> None:
        super().__init__()
        self._clock = None
        self._last_day = None
        self.interest = 0.0

    def set_clock(self, data) -> None:
        """Count interest days on the dates of ``data``'s bars; returns None."""
        self._clock = data

    def next(self) -> None:
        clock = self._clock
        if self.p.cash_rate and clock is not None and len(clock):
            day = clock.datetime.date(0)
            last = self._last_day
            if last is not None and day > last and self.cash > 0:
                earned = self.cash * ((1.0 + self.p.cash_rate) ** ((day - last).days / 365.0)
                                      - 1.0)
                self.cash += earned
                self.interest += earned
            self._last_day = day
        super().next()
