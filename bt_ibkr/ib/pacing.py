"""Historical-data pacing and range chunking for IB (DESIGN §6).

IB's historical-data farm disconnects or answers error 162 ("pacing violation") when a client
makes

* more than 60 requests in any 10 minutes,
* an identical request within 15 seconds,
* more than 6 requests for the same contract (exchange, tick type) within 2 seconds.

:class:`HistoricalPacer` keeps a client-side record of the requests sent and says how long the
next one must wait (``delay``), or waits for it (``acquire`` in the event loop). It never
sleeps in backtrader's thread: the store awaits it on its own loop.

IB also limits the duration of one request by bar size. :data:`MAX_DURATION` holds that table
(the one of backtrader's ``IBStore._durations``) and :func:`chunk_range` splits a
``[start, end]`` range into requests ``(end_datetime, duration_str)`` that each fit, newest
first (IB serves history backwards from ``endDateTime``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bt_ibkr.errors import ConfigError

DAY = 86400

#: IB's maximum request duration per bar size, in seconds (from IB's historical data
#: limitations table; months are counted as 30 days and years as 365 days).
MAX_DURATION: dict[str, int] = {
    "1 secs": 1800,
    "5 secs": 7200,
    "10 secs": 10800,
    "15 secs": 14400,
    "30 secs": 28800,
    "1 min": DAY,
    "2 mins": 2 * DAY,
    "3 mins": 7 * DAY,
    "5 mins": 7 * DAY,
    "10 mins": 7 * DAY,
    "15 mins": 14 * DAY,
    "20 mins": 14 * DAY,
    "30 mins": 30 * DAY,
    "1 hour": 30 * DAY,
    "2 hours": 30 * DAY,
    "3 hours": 30 * DAY,
    "4 hours": 30 * DAY,
    "8 hours": 30 * DAY,
    "1 day": 365 * DAY,
    "1 week": 365 * DAY,
    "1 month": 365 * DAY,
}

#: bar size string -> bar length in seconds (months as 30 days)
BAR_SECONDS: dict[str, int] = {
    "1 secs": 1,
    "5 secs": 5,
    "10 secs": 10,
    "15 secs": 15,
    "30 secs": 30,
    "1 min": 60,
    "2 mins": 120,
    "3 mins": 180,
    "5 mins": 300,
    "10 mins": 600,
    "15 mins": 900,
    "20 mins": 1200,
    "30 mins": 1800,
    "1 hour": 3600,
    "2 hours": 7200,
    "3 hours": 10800,
    "4 hours": 14400,
    "8 hours": 28800,
    "1 day": DAY,
    "1 week": 7 * DAY,
    "1 month": 30 * DAY,
}


def bar_size(timeframe: int, compression: int) -> str:
    """Return IB's ``barSizeSetting`` for a backtrader ``(timeframe, compression)``.

    Raises :class:`ConfigError` when IB has no such bar size (e.g. 7 minutes, ticks).
    """
    import backtrader as bt

    tf = bt.TimeFrame
    name = None
    if timeframe == tf.Seconds:
        name = f"{compression} secs"
    elif timeframe == tf.Minutes:
        if compression % 60 == 0:
            hours = compression // 60
            name = f"{hours} hour" + ("s" if hours > 1 else "")
        else:
            name = f"{compression} min" + ("s" if compression > 1 else "")
    elif timeframe == tf.Days:
        name = "1 week" if compression == 7 else f"{compression} day"
    elif timeframe == tf.Weeks:
        name = f"{compression} week"
    elif timeframe == tf.Months:
        name = f"{compression} month"
    if name not in MAX_DURATION:
        raise ConfigError(
            f"IB has no historical bar size for timeframe {tf.getname(timeframe, compression)} "
            f"x{compression}; use one of: {', '.join(MAX_DURATION)}"
        )
    return name


def duration_str(seconds: float) -> str:
    """Return the shortest IB ``durationStr`` covering ``seconds``: 'N S' up to a day, else 'N D'."""
    if seconds <= DAY:
        return f"{max(60, math.ceil(seconds))} S"
    return f"{math.ceil(seconds / DAY)} D"


@dataclass(frozen=True)
class Chunk:
    """One historical request: bars in ``(start, end]`` via ``endDateTime=end``, ``duration``."""

    start: datetime
    end: datetime
    duration: str


def chunk_range(start: datetime, end: datetime, barsize: str) -> list[Chunk]:
    """Split ``[start, end]`` into requests that each respect IB's max duration for ``barsize``.

    Returns chunks newest first; consecutive chunks touch (``chunks[i].start ==
    chunks[i+1].end``) and together cover the range exactly. Raises :class:`ConfigError` for an
    unknown bar size or ``start >= end``.
    """
    if barsize not in MAX_DURATION:
        raise ConfigError(f"unknown IB bar size {barsize!r}; use one of {', '.join(MAX_DURATION)}")
    if start >= end:
        raise ConfigError(f"historical range is empty: start {start} is not before end {end}")
    maxlen = timedelta(seconds=MAX_DURATION[barsize])
    daily = BAR_SECONDS[barsize] >= DAY
    chunks = []
    cur = end
    while cur > start:
        lo = max(start, cur - maxlen)
        if daily and lo > start:
            # cut between days (00:00 UTC), not inside a session: no partial daily bars
            lo = max(start, lo.replace(hour=0, minute=0, second=0, microsecond=0))
        span = (cur - lo).total_seconds()
        if daily:  # daily bars: whole days, at least one bar
            span = max(span, DAY)
        chunks.append(Chunk(start=lo, end=cur, duration=duration_str(span)))
        cur = lo
    return chunks


@dataclass(frozen=True)
class HistRequest:
    """The identity of a historical request for pacing: equal requests are 'identical'."""

    contract: str
    end: str
    duration: str
    barsize: str
    what: str
    use_rth: bool


class HistoricalPacer:
    """Client-side pacing of IB historical requests (60/10 min, 15 s identical, 6/contract/2 s).

    ``delay(req)`` returns the seconds to wait before ``req`` may be sent (0.0: now);
    ``record(req)`` books a sent request; ``await acquire(req)`` waits then books.
    ``clock`` is injectable for tests (defaults to ``time.monotonic``). Not thread-safe: use it
    from the store's event-loop thread only.
    """

    def __init__(
        self,
        max_requests: int = 60,
        window: float = 600.0,
        identical_gap: float = 15.0,
        per_contract: int = 6,
        per_contract_window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_requests = max_requests
        self.window = window
        self.identical_gap = identical_gap
        self.per_contract = per_contract
        self.per_contract_window = per_contract_window
        self.clock = clock
        self._sent: deque[tuple[float, HistRequest]] = deque()
        self.total_wait = 0.0

    def _prune(self, now: float) -> None:
        horizon = max(self.window, self.identical_gap, self.per_contract_window)
        while self._sent and now - self._sent[0][0] >= horizon:
            self._sent.popleft()

    def delay(self, req: HistRequest) -> float:
        """Return the seconds ``req`` must wait to respect all three limits (0.0 if none)."""
        now = self.clock()
        self._prune(now)
        wait = 0.0
        in_window = [t for t, _ in self._sent if now - t < self.window]
        if len(in_window) >= self.max_requests:
            wait = max(wait, in_window[-self.max_requests] + self.window - now)
        for t, r in self._sent:
            if r == req and now - t < self.identical_gap:
                wait = max(wait, t + self.identical_gap - now)
        same = [
            t
            for t, r in self._sent
            if r.contract == req.contract
            and r.what == req.what
            and now - t < self.per_contract_window
        ]
        if len(same) >= self.per_contract:
            wait = max(wait, same[-self.per_contract] + self.per_contract_window - now)
        return max(0.0, wait)

    def record(self, req: HistRequest) -> None:
        """Book ``req`` as sent now."""
        self._sent.append((self.clock(), req))

    async def acquire(self, req: HistRequest) -> float:
        """Wait (asyncio) until ``req`` may be sent, book it and return the seconds waited."""
        waited = 0.0
        while True:
            d = self.delay(req)
            if d <= 0:
                break
            waited += d
            await asyncio.sleep(d)
        self.record(req)
        self.total_wait += waited
        return waited
