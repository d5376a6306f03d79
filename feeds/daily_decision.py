"""DailyDecisionData: the daily feed of a once-a-day live run (``run_mode="daily"``).

It downloads the completed daily bars of the last ``backfill_days`` through the store's
historical path (paced, retried, and through the store's parquet cache, the one backtests with
``--source ibkr`` share: only the days the cache lacks are asked of IB, on the store's own
connection). A bar still forming on the gateway's clock is left out. The bars are replayed with
status DELAYED (the strategy warms up and does not trade), LIVE is reported right before the
last completed bar (the strategy decides and trades on it), and then the feed keeps cerebro's
loop turning (returns "no bar yet") while ``keep_alive()`` is true, so order events and fills
are processed.
"""

from __future__ import annotations

import queue
import time
from datetime import datetime, timedelta

from bt_ibkr.errors import DataError, SourceUnavailableError
from bt_ibkr.ib.events import Bar, BarReceived, RequestFailed
from bt_ibkr.utc import naive_utc
from feeds.ibdata import IBData


class DailyDecisionData(IBData):
    """A daily IB feed that warms up on history, then decides once (see the module docstring).

    Params beyond IBData's: ``backfill_days`` (calendar days of history), ``keep_alive`` (a
    callable; the feed idles while it returns True), ``history_timeout`` (seconds without an
    answer before ``SourceUnavailableError``). ``useRTH`` defaults to True: regular-hours daily
    bars, the key under which backtests cache them too.
    """

    params = (("backfill_days", 730), ("keep_alive", None), ("history_timeout", 120.0),
              ("useRTH", True))

    def islive(self) -> bool:
        return True

    def start(self) -> None:
        super().start()
        self._bars: list[Bar] | None = None
        self._i = 0
        self.decided = False
        self.last_bar_dt: datetime | None = None

    def _download(self) -> list[Bar]:
        """Return the completed daily bars (ascending); raises DataError when there are none,
        SourceUnavailableError when the gateway does not answer within ``history_timeout``."""
        now = naive_utc(self.store.server_time())
        start = now - timedelta(days=int(self.p.backfill_days))
        q = self.store.request_history(self.contract, start, None, "1 day", what=self._what(),
                                    use_rth=self.p.useRTH, tz=self._tz,
                                    sessionend=self.p.sessionend, name=self.p.dataname)
        bars, error = [], None
        deadline = time.monotonic() + float(self.p.history_timeout)
        while True:
            try:
                event = q.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise SourceUnavailableError(
                    f"daily history of {self.p.dataname!r}: no answer from the gateway within "
                    f"{self.p.history_timeout:g}s") from None
            if isinstance(event, BarReceived):
                if event.bar.dt <= now:  # a bar still forming is not a decision bar
                    bars.append(event.bar)
            elif isinstance(event, RequestFailed):
                error = event
            else:  # HistoryEnded
                break
        if not bars:
            detail = f" (IB error {error.code}: {error.text})" if error else ""
            raise DataError(f"no completed daily bars for {self.p.dataname!r} from the gateway"
                            f"{detail}; check the market-data permissions of the account")
        return bars

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
