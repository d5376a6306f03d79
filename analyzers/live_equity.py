"""LiveEquityRecorder: the equity curve of a live run, one row per traded bar across runs."""

from __future__ import annotations

import logging
from pathlib import Path

from analyzers.equity import EquityRecorder, read_equity_csv

log = logging.getLogger("analyzers.live_equity")


class LiveEquityRecorder(EquityRecorder):
    """EquityRecorder that appends only bars traded live, and each bar time only once.

    The backfilled history a live run replays is not equity the account had, so it is not
    recorded (``is_live()`` says when the run is live); a bar whose time is not after the
    CSV's last row (a rerun of the same day) is skipped, so the file grows by one row per
    traded bar across runs.
    """

    params = (("is_live", None),)

    def start(self) -> None:
        self._last_dt = None
        if self.p.path and Path(self.p.path).exists():
            try:
                series = read_equity_csv(self.p.path)
                if len(series):
                    self._last_dt = series.index[-1].to_pydatetime()
            except Exception:  # noqa: BLE001 - a damaged file is appended to, not trusted
                log.warning("equity file %s could not be read; appending", self.p.path)
        super().start()

    def next(self) -> None:
        is_live = self.p.is_live
        if is_live is not None and not is_live():
            return
        dt = self.strategy.datetime.datetime(0)
        if self._last_dt is not None and dt <= self._last_dt:
            return
        self._last_dt = dt
        super().next()
