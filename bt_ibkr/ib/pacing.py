"""Historical-data pacing: IB's request limits, kept on the client side.

IB's historical-data farm disconnects or answers error 162 ("pacing violation") when a client
makes

* more than 60 requests in any 10 minutes,
* an identical request within 15 seconds,
* more than 6 requests for the same contract (exchange, tick type) within 2 seconds.

:class:`HistoricalPacer` keeps a client-side record of the requests sent and says how long the
next one must wait (``delay``), or waits for it (``acquire`` in the event loop). It never
sleeps in backtrader's thread: :mod:`bt_ibkr.ib.historical` awaits it on the connection's loop.
IB also limits the duration of one request by bar size: that table is
:data:`bt_ibkr.ib.bars.MAX_DURATION`, the chunking :func:`bt_ibkr.ib.historical.chunk_range`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


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
    ``clock`` (seconds, default ``time.monotonic``) and ``sleep`` (an awaitable sleep, default
    ``asyncio.sleep``) are injectable: a test drives pacing on a clock it controls, e.g. one
    that advances when the pacer sleeps, and asserts exact waits. Not thread-safe: use it from
    the store's event-loop thread only.
    """

    def __init__(
        self,
        max_requests: int = 60,
        window: float = 600.0,
        identical_gap: float = 15.0,
        per_contract: int = 6,
        per_contract_window: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.max_requests = max_requests
        self.window = window
        self.identical_gap = identical_gap
        self.per_contract = per_contract
        self.per_contract_window = per_contract_window
        self.clock = clock
        self.sleep = sleep
        self._sent: deque[tuple[float, HistRequest]] = deque()
        self.total_wait = 0.0

    @classmethod
    def for_gateway(cls, scale: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep
                    ) -> HistoricalPacer:
        """Return a pacer for IB's windows multiplied by ``scale`` (1.0 for a real gateway; a
        simulator enforcing ``pacing_scale=0.01`` needs the same value here).

        Margins: the client library throttles its own sends (45 messages/s), so a burst reaches
        the gateway up to ~1 s after the pacer booked it; the 10-minute window gets that second
        on top, the shorter ones 2% and 50 ms. ``clock`` and ``sleep`` as in the class.
        """
        margin = 1.02
        return cls(window=600.0 * scale * margin + 1.0,
                   identical_gap=15.0 * scale * margin + 0.05,
                   per_contract_window=2.0 * scale * margin + 0.05, clock=clock, sleep=sleep)

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
        """Wait (``self.sleep``) until ``req`` may be sent, book it; return the seconds waited."""
        waited = 0.0
        while True:
            d = self.delay(req)
            if d <= 0:
                break
            waited += d
            await self.sleep(d)
        self.record(req)
        self.total_wait += waited
        return waited
