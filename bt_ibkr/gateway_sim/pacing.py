"""Server-side historical-data pacing, enforced the way IB's HMDS does.

IB's documented limits (``PacingRules``): at most 60 historical requests in any 10-minute
window, no identical request within 15 seconds, and at most 6 requests for the same
contract + exchange + tick type within 2 seconds. A violating request is answered with error
162 and the pacing-violation text and produces no bars. ``scale`` multiplies every window;
``clock`` (default ``time.monotonic``) is the time they are measured on: a test passes a clock
it controls (shared with the client's pacer) to check IB's real windows without waiting them.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

PACING_TEXT = (
    "Historical Market Data Service error message:Historical data request pacing violation"
)


@dataclass(frozen=True)
class PacingRules:
    """IB's historical pacing limits (windows in seconds before scaling)."""

    max_requests: int = 60
    window: float = 600.0
    identical_window: float = 15.0
    same_contract_max: int = 6
    same_contract_window: float = 2.0


class PacingGuard:
    """Decides whether a historical request may run; remembers accepted requests.

    ``check(identical_key, contract_key)`` returns None when the request is allowed (and records
    it) or the reason text (which rule) when it violates pacing.
    """

    def __init__(self, rules: PacingRules | None = None, scale: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if scale <= 0:
            raise ValueError(f"pacing_scale must be > 0, got {scale}")
        self.rules = rules or PacingRules()
        self.scale = scale
        self._clock = clock
        self._lock = threading.Lock()
        self._all: deque[float] = deque()
        self._identical: dict[Hashable, float] = {}
        self._by_contract: dict[Hashable, deque[float]] = {}

    def check(self, identical_key: Hashable, contract_key: Hashable) -> str | None:
        """Return None if allowed (and record it), else which limit the request breaks."""
        r, k = self.rules, self.scale
        now = self._clock()
        with self._lock:
            while self._all and now - self._all[0] >= r.window * k:
                self._all.popleft()
            if len(self._all) >= r.max_requests:
                return f"more than {r.max_requests} requests in {r.window * k:g} s"
            last = self._identical.get(identical_key)
            if last is not None and now - last < r.identical_window * k:
                return f"identical request within {r.identical_window * k:g} s"
            recent = self._by_contract.setdefault(contract_key, deque())
            while recent and now - recent[0] >= r.same_contract_window * k:
                recent.popleft()
            if len(recent) >= r.same_contract_max:
                return (f"more than {r.same_contract_max} requests for the same contract in "
                        f"{r.same_contract_window * k:g} s")
            self._all.append(now)
            self._identical[identical_key] = now
            recent.append(now)
            return None
