"""DailyDecisionData: the daily feed of a once-a-day live run (``run_mode="daily"``).

It downloads the completed daily bars of the last ``backfill_days`` through the store's
historical path (paced, retried, and through the store's parquet cache, the one backtests with
``--source ibkr`` share: only the days the cache lacks are asked of IB, on the store's own
connection). The bars are checked against the contract's exchange calendar
(:func:`bt_ibkr.freshness.check_decision_bar`) on the gateway's clock: the newest must be the
last completed session's (else ``StaleDataError``, the run needs attention), a bar stamped in
the future is an error too, and the bar of a session still open or bars on non-session days are
left out and reported through ``report`` (the runner logs, audits and prints them). The bars are replayed with
status DELAYED (the strategy warms up and does not trade), LIVE is reported right before the
last completed bar (the strategy decides and trades on it), and then the feed keeps cerebro's
loop turning (returns "no bar yet") while ``keep_alive()`` is true, so order events and fills
are processed.

With several symbols every feed's bar of a session reaches the strategy in the same ``next()``
without :mod:`feeds.live_sync`: each feed downloads all its bars in its first ``_load`` (in
backtrader's thread, before it delivers any) and then answers every load at once from memory,
never "no bar yet" before its last bar, so backtrader's loop lines them up by time as in a
backtest; and the decision bar must be the last completed session for every symbol
(:func:`~bt_ibkr.freshness.check_decision_bar`), so they all decide on the same day.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from datetime import UTC, date, datetime, timedelta

from bt_ibkr.calendars import calendar_for
from bt_ibkr.errors import BadBarsError, DataError, GatewayTimeoutError
from bt_ibkr.freshness import DecisionBarCheck, check_decision_bar
from bt_ibkr.ib.events import Bar, BarReceived, RequestFailed
from bt_ibkr.utc import naive_utc
from feeds.ibdata import IBData

log = logging.getLogger("bt_ibkr.live")


class DailyDecisionData(IBData):
    """A daily IB feed that warms up on history, then decides once (see the module docstring).

    Params beyond IBData's: ``backfill_days`` (calendar days of history), ``keep_alive`` (a
    callable; the feed idles while it returns True), ``history_timeout`` (seconds without an
    answer before ``GatewayTimeoutError``; the store's ``deadline`` caps it), ``report`` (a
    callable given each note of the freshness check). ``useRTH`` defaults to True: regular-hours daily
    bars, the key under which backtests cache them too. ``syncfeeds`` defaults to False: the
    feeds need no :mod:`feeds.live_sync` (see the module docstring).
    """

    params = (("backfill_days", 730), ("keep_alive", None), ("history_timeout", 120.0),
              ("useRTH", True), ("report", None), ("syncfeeds", False))

    def islive(self) -> bool:
        return True

    def start(self) -> None:
        super().start()
        self._bars: list[Bar] | None = None
        self._i = 0
        self.decided = False
        self.last_bar_dt: datetime | None = None
        self.check: DecisionBarCheck | None = None

    def _exchange_calendar(self) -> str:
        """Return the exchange calendar of the contract (its primary exchange, else its
        exchange; US venues and unknown names: NYSE)."""
        c = self.contract
        return calendar_for(getattr(c, "primaryExchange", "") or getattr(c, "exchange", ""))

    def _session_date(self, bar: Bar) -> date:
        """Return the session date a daily bar stands for (its close in the exchange's zone)."""
        tz = self._tz
        if tz is None:
            return bar.dt.date()
        local = bar.dt.replace(tzinfo=UTC).astimezone(tz)
        return local.date()

    def _drain_history(self, q: queue.Queue, label: str) -> tuple[list[Bar], RequestFailed | None]:
        """Collect one history request's answer from ``q`` (the store's events for it): return
        its bars and the failure it reported (or None).

        Raises GatewayTimeoutError, naming ``label``, when the answer does not end within
        ``history_timeout`` or before the store's deadline (the run's max-runtime)."""
        bars: list[Bar] = []
        error = None
        timeout = self.store.remaining(float(self.p.history_timeout))
        deadline = time.monotonic() + timeout
        while True:
            try:
                event = q.get(timeout=max(0.01, min(0.25, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() < deadline and not self.store.past_deadline():
                    continue
                raise GatewayTimeoutError(
                    f"{label}: no answer from the gateway within {timeout:g}s (the run's "
                    "max-runtime or history_timeout); check that it is running, logged in and "
                    "has market data, then run again") from None
            if isinstance(event, BarReceived):
                bars.append(event.bar)
            elif isinstance(event, RequestFailed):
                error = event
            else:  # HistoryEnded
                return bars, error

    def _download(self) -> list[Bar]:
        """Return the completed daily bars (ascending) up to the last completed session.

        Raises DataError when there are none or a bar is unusable (NaN, negative: the message
        names the symbol and the bar's time), GatewayTimeoutError when the gateway does not
        answer within ``history_timeout`` or before the store's deadline (the run's
        max-runtime), StaleDataError when the newest bar is not the last completed session's
        or a bar is stamped in the future (:func:`bt_ibkr.freshness.check_decision_bar`).
        """
        name = self.p.dataname
        now = naive_utc(self.store.server_time(strict=True))
        start = now - timedelta(days=int(self.p.backfill_days))
        q = self.store.request_history(self.contract, start, None, "1 day", what=self._what(),
                                       use_rth=self.p.useRTH, tz=self._tz,
                                       sessionend=self.p.sessionend, name=name)
        bars, error = self._drain_history(q, f"daily history of {name!r}")
        if error is not None and (not error.code or not bars):
            if error.bad_data:
                raise BadBarsError(f"{name}: unusable daily bars from the gateway, not "
                                   f"deciding: {error.text}")
            detail = f"IB error {error.code}: {error.text}" if error.code else error.text
            raise DataError(f"daily history of {name!r} from the gateway failed: {detail}")
        if not bars:
            raise DataError(f"no completed daily bars for {name!r} from the gateway; check the "
                            "market-data permissions of the account")
        for bar in bars:
            values = (bar.open, bar.high, bar.low, bar.close)
            if not all(math.isfinite(v) and v > 0 for v in values) or not bar.volume >= 0:
                raise BadBarsError(f"{name}: the gateway sent an unusable daily bar at "
                                f"{bar.dt:%Y-%m-%d %H:%M} UTC (open {bar.open}, high {bar.high}, "
                                f"low {bar.low}, close {bar.close}, volume {bar.volume}): "
                                "not deciding on it; check the gateway's market data")
        dates = [self._session_date(b) for b in bars]
        self.check = check = check_decision_bar(name, dates, now, self._exchange_calendar())
        report = self.p.report or (lambda line: log.warning("%s", line))
        for note in check.notes:
            report(note)
        kept = set(check.kept)
        return [b for b, d in zip(bars, dates, strict=True) if d in kept]

    def _load(self):
        if self.contract is None:
            return False
        if self._bars is None:
            self._bars = self._download()
            self.put_notification(self.DELAYED)
        if self._i < len(self._bars):
            bar = self._bars[self._i]
            self._i += 1
            if self._i == len(self._bars):
                self.put_notification(self.LIVE)  # the decision bar
                self.last_bar_dt = bar.dt
            self._deliver(bar, hist=True)
            return True
        self.decided = True
        keep = self.p.keep_alive
        if keep is not None and keep():
            time.sleep(0.05)
            return None
        return False
