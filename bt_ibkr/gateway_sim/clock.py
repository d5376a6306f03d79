"""The simulator's clock: simulated UTC time that runs at ``speed`` x real time or only on demand.

Everything time-dependent in the simulator (bars, ticks, reqCurrentTime, fills) reads
``SimClock.now()``, so a run is reproducible: with ``speed=0`` time moves only when the test
calls ``advance()``; with ``speed=60`` one real second is one simulated minute.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from bt_ibkr.utc import to_utc


class SimClock:
    """Simulated wall clock (thread-safe).

    ``now()`` returns ``start + advanced + (real seconds since start) * speed`` as a tz-aware
    UTC datetime, truncated to whole microseconds.
    """

    def __init__(self, start: datetime, speed: float = 0.0) -> None:
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0 (0 = only explicit advance), got {speed}")
        self._lock = threading.Lock()
        self._base = to_utc(start)
        self._anchor = time.monotonic()
        self._speed = float(speed)

    @property
    def speed(self) -> float:
        """Return the simulated seconds per real second (0 = frozen)."""
        return self._speed

    def now(self) -> datetime:
        """Return the current simulated time (tz-aware UTC)."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> datetime:
        if self._speed == 0.0:
            return self._base
        elapsed = (time.monotonic() - self._anchor) * self._speed
        return self._base + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward by ``seconds`` (>= 0); return the new time."""
        if seconds < 0:
            raise ValueError(f"the simulated clock cannot go back ({seconds} s)")
        with self._lock:
            self._base = self._now_locked() + timedelta(seconds=seconds)
            self._anchor = time.monotonic()
            return self._base

    def set_speed(self, speed: float) -> None:
        """Change the speed factor from now on (0 freezes the clock)."""
        if speed < 0:
            raise ValueError(f"clock speed must be >= 0, got {speed}")
        with self._lock:
            self._base = self._now_locked()
            self._anchor = time.monotonic()
            self._speed = float(speed)

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (used only before any client connected; may go backwards)."""
        with self._lock:
            self._base = to_utc(when)
            self._anchor = time.monotonic()
