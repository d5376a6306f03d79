"""BacktestBroker: backtrader's BackBroker plus the named order options of
:mod:`bt_ibkr.order_options` (auctions, outside regular hours, Adaptive).

BackBroker keeps extra ``buy``/``sell`` keywords in ``order.info`` and ignores them; this
broker validates them when the order is submitted (a bad value raises ConfigError naming
it) and fills by these rules (buy side shown, sell mirrored). The Strategy decides on a bar
after it closed, so an order made on bar *t* meets its first auction on a later bar:

* ``auction="open"`` (MOO, LOO): fills at the open of the first bar of the next session
  (daily bars: the next bar's open, exactly when a plain Market order fills). MOO at that
  open (with the backtest's slippage, as a Market order); LOO only if the open is at the
  limit or better (open <= limit), at the open. Not filled there: cancelled, as IB cancels
  an OPG order its auction did not fill. On intraday bars, an OPG order made during the
  regular session (decided at the end of a bar that ends after the open and before the
  close) is rejected: IB takes OPG orders only outside it (``order.info.reason``).
* ``auction="close"`` (MOC, LOC): fills at the close of the next session's closing bar:
  daily bars, the next bar's close (backtrader's ``Order.Close`` rule: an order made at
  bar *t*'s close fills at bar *t+1*'s close). LOC only if that close is at the limit or
  better, else cancelled. Slippage: as backtrader applies it to a Market order's open (MOO,
  MOC) and to a Limit order (LOO, LOC; with the backtest's ``slip_out`` it can pass the limit,
  as a plain Limit order's can). On intraday bars the closing bar is the
  last regular-hours bar of the session the order was made in or the next one.
* ``outside_rth``: daily (or coarser) bars are whole sessions, so it changes nothing. On
  intraday bars, an order without it is not tried on bars outside regular hours (09:30 to
  16:00 New York by default, bar start times); with it, every bar the data has counts.
  Where the data has no extended-hours bars, the flag therefore changes nothing either.
* ``algo="adaptive"``: filled as the Market or Limit order it wraps (IB's price improvement
  is not simulated).

Orders without options fill exactly as BackBroker fills them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import backtrader as bt
from backtrader.order import Order

from bt_ibkr.order_options import AUCTION_CLOSE, AUCTION_OPEN, OrderOptions, options_of

__all__ = ["BacktestBroker"]

_UTC = ZoneInfo("UTC")


class BacktestBroker(bt.brokers.BackBroker):
    """BackBroker with the named order options (see the module docstring).

    Params ``rth_open``/``rth_close`` (local times) and ``rth_tz``: the regular session of
    intraday data (bar timestamps are naive UTC start times).
    """

    params = (("rth_open", time(9, 30)), ("rth_close", time(16, 0)),
              ("rth_tz", "America/New_York"))

    def __init__(self) -> None:
        super().__init__()
        self._options: dict[int, OrderOptions] = {}  # order.ref -> its parsed named options

    def submit(self, order, check=True):
        """Validate the order's named options (ConfigError naming a bad one), then submit
        as BackBroker does; returns the order."""
        self._options[order.ref] = options_of(order)
        return super().submit(order, check=check)

    # ------------------------------------------------------------------ sessions
    def _local(self, data, ago: int = 0) -> datetime:
        when = bt.num2date(data.datetime[ago]).replace(tzinfo=_UTC)
        return when.astimezone(ZoneInfo(self.p.rth_tz))

    @staticmethod
    def _intraday(data) -> bool:
        return data._timeframe < bt.TimeFrame.Days

    def _in_rth(self, data, ago: int = 0) -> bool:
        """Return True when bar ``ago`` of intraday ``data`` starts in regular hours."""
        t = self._local(data, ago).time()
        return self.p.rth_open <= t < self.p.rth_close

    def _session_date(self, data, ago: int = 0) -> date:
        return self._local(data, ago).date()

    def _first_of_session(self, data) -> bool:
        """Return True when the current bar opens a regular session (daily: every bar)."""
        if not self._intraday(data):
            return True
        if not self._in_rth(data):
            return False
        return (len(data) < 2 or not self._in_rth(data, -1)
                or self._session_date(data, -1) != self._session_date(data))

    @staticmethod
    def _bar_length(data) -> timedelta:
        """Return the length of one bar of intraday ``data`` (its timeframe x compression)."""
        unit = {bt.TimeFrame.Seconds: timedelta(seconds=1),
                bt.TimeFrame.Minutes: timedelta(minutes=1)}.get(data._timeframe, timedelta(0))
        return unit * data._compression

    def _made_in_session(self, order) -> bool:
        """Return True when an intraday ``order`` was made while the regular session was
        open: the Strategy decides when its bar has ended (bar start + bar length), so an
        order made on the session's last bar is made at the close, outside the session."""
        made = bt.num2date(order.created.dt) + self._bar_length(order.data)
        t = made.replace(tzinfo=_UTC).astimezone(ZoneInfo(self.p.rth_tz)).time()
        return self.p.rth_open < t < self.p.rth_close

    # ------------------------------------------------------------------ execution
    def _try_exec(self, order):
        opts = self._options.get(order.ref) or options_of(order)  # parsed once, at submit
        data = order.data
        if opts.auction == AUCTION_OPEN:
            return self._try_exec_open(order)
        if opts.auction == AUCTION_CLOSE:
            return self._try_exec_auction_close(order, opts)
        if self._intraday(data) and not opts.outside_rth and not self._in_rth(data):
            return None  # a regular-hours order waits for the session
        return super()._try_exec(order)

    def _try_exec_open(self, order) -> None:
        data = order.data
        if self._intraday(data) and self._made_in_session(order):
            order.addinfo(reason="OPG orders are taken only outside the regular session")
            order.reject(self)
            self.notify(order)
            self._ococheck(order)
            self._bracketize(order, cancel=True)
            return
        if data.datetime[0] <= order.created.dt or not self._first_of_session(data):
            return  # the auction is still ahead
        popen = data.open[0]
        if order.exectype == Order.Market:
            self._try_exec_market(order, popen, data.high[0], data.low[0])
        else:  # LOO: only the open counts (high = low = open)
            self._try_exec_limit(order, popen, popen, popen, order.created.price)
        if order.alive():
            self._auction_missed(order)

    def _try_exec_auction_close(self, order, opts: OrderOptions) -> None:
        data = order.data
        if not self._intraday(data):
            # backtrader's Order.Close rule on daily bars: the first bar after the order's
            if data.datetime[0] > order.created.dt:
                self._fill_at_close(order, 0)
            return
        # intraday: the closing auction happened when the previous bar was the session's
        # last regular-hours bar and came after the bar the order was decided on (an order
        # decided on the last bar itself is made at the close: the next session's auction)
        if len(data) < 2 or data.datetime[-1] <= order.created.dt or not self._in_rth(data, -1):
            return
        if self._in_rth(data) and self._session_date(data) == self._session_date(data, -1):
            return
        self._fill_at_close(order, -1)

    def _fill_at_close(self, order, ago: int) -> None:
        """Fill a MOC at bar ``ago``'s close, a LOC there only at its limit or better (else
        cancel it); slippage as backtrader's Market (MOC) or Limit (LOC) fills apply it."""
        data = order.data
        close = data.close[ago]
        limit = order.created.price if order.exectype == Order.Limit else None
        if limit is not None and not ((close <= limit) if order.isbuy() else (close >= limit)):
            self._auction_missed(order)
            return
        lim = limit is not None
        if order.isbuy():
            cap = min(data.high[ago], limit) if lim else data.high[ago]
            price = self._slip_up(cap, close, lim=lim)
        else:
            cap = max(data.low[ago], limit) if lim else data.low[ago]
            price = self._slip_down(cap, close, lim=lim)
        self._execute(order, ago=ago, price=close if price is None else price)

    def _auction_missed(self, order) -> None:
        """Cancel an auction order its auction did not fill (BackBroker.cancel's steps, for
        an order ``next`` already took off the pending queue)."""
        order.cancel()
        self.notify(order)
        self._ococheck(order)
        self._bracketize(order, cancel=True)
