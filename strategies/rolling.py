"""Incremental rolling statistics over a stream of floats, O(1) or O(log n) per update.

Each class is fed one value per bar with ``update(x)`` and returns the statistic of the window
ending at that value (or ``None`` until enough values have been seen). They replace backtrader
indicators inside :class:`strategies.RegimeAwareEnsemble` so that a run with preload/runonce
on and off computes exactly the same floats in exactly the same order (parity by construction),
and so the same code runs bar by bar in live trading.

Running sums are re-added from scratch with :func:`math.fsum` once per window length, so the
floating-point drift of add/subtract updates never accumulates beyond one window.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import deque

from bt_ibkr.errors import ConfigError

__all__ = [
    "RollingMax",
    "RollingMean",
    "RollingMin",
    "RollingRank",
    "RollingStd",
    "WilderRSI",
]


def _check_window(name: str, n, minimum: int = 1) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < minimum:
        raise ConfigError(f"{name}: window must be an int >= {minimum}, got {n!r}")
    return n


class RollingMean:
    """Simple moving average of the last ``n`` values; ``update`` returns it or None (< n)."""

    __slots__ = ("n", "_buf", "_sum", "_since", "value")

    def __init__(self, n: int):
        self.n = _check_window("RollingMean", n)
        self._buf: deque[float] = deque()
        self._sum = 0.0
        self._since = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        """Add ``x``; return the mean of the last n values, or None before n values."""
        buf = self._buf
        buf.append(x)
        if len(buf) > self.n:
            self._sum += x - buf.popleft()
        else:
            self._sum += x
        self._since += 1
        if self._since >= self.n:  # drift guard: exact re-sum once per window
            self._since = 0
            self._sum = math.fsum(buf)
        if len(buf) == self.n:
            self.value = self._sum / self.n
        return self.value


class RollingStd:
    """Sample standard deviation (ddof=1) of the last ``n`` values; None before n values.

    Uses the sliding-window form of Welford's update (mean and sum of squared deviations), which
    does not cancel catastrophically when the values sit far from zero, and recomputes both
    exactly (two passes) once per window length.
    """

    __slots__ = ("n", "_buf", "_mean", "_m2", "_since", "value")

    def __init__(self, n: int):
        self.n = _check_window("RollingStd", n, minimum=2)
        self._buf: deque[float] = deque()
        self._mean = 0.0
        self._m2 = 0.0
        self._since = 0
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        """Add ``x``; return the sample std of the last n values, or None before n values."""
        buf = self._buf
        buf.append(x)
        n = self.n
        mean = self._mean
        if len(buf) > n:
            old = buf.popleft()
            new_mean = mean + (x - old) / n
            self._m2 += (x - old) * (x - new_mean + old - mean)
        else:
            k = len(buf)
            new_mean = mean + (x - mean) / k
            self._m2 += (x - mean) * (x - new_mean)
        self._mean = new_mean
        self._since += 1
        if self._since >= n:  # drift guard: exact two-pass recompute once per window
            self._since = 0
            k = len(buf)
            mu = math.fsum(buf) / k
            self._mean = mu
            self._m2 = math.fsum([(v - mu) * (v - mu) for v in buf])
        if len(buf) == n:
            m2 = self._m2
            self.value = math.sqrt(m2 / (n - 1)) if m2 > 0.0 else 0.0
        return self.value


class RollingRank:
    """Percentile rank of the newest value within the last ``n`` values (itself included).

    rank = (number of window values <= x) / (window size), i.e. pandas'
    ``rolling(n, min_periods=min_count).rank(method="max", pct=True)``. Returns None until
    ``min_count`` values have been seen. O(log n) search plus an O(n) memmove in C.
    """

    __slots__ = ("n", "min_count", "_buf", "_sorted", "value")

    def __init__(self, n: int, min_count: int = 1):
        self.n = _check_window("RollingRank", n)
        if not 1 <= min_count <= n:
            raise ConfigError(f"RollingRank: min_count must be in [1, {n}], got {min_count!r}")
        self.min_count = min_count
        self._buf: deque[float] = deque()
        self._sorted: list[float] = []
        self.value: float | None = None

    def update(self, x: float) -> float | None:
        """Add ``x``; return its percentile rank in the window, or None before min_count."""
        buf = self._buf
        srt = self._sorted
        buf.append(x)
        if len(buf) > self.n:
            del srt[bisect_left(srt, buf.popleft())]
        i = bisect_right(srt, x)  # where insort would put x: after every value <= x
        srt.insert(i, x)
        m = len(srt)
        if m >= self.min_count:
            self.value = (i + 1) / m  # values <= x, x included
        return self.value


class RollingMax:
    """Maximum of the last ``n`` values (monotonic deque, amortised O(1))."""

    __slots__ = ("n", "_q", "_i")

    def __init__(self, n: int):
        self.n = _check_window("RollingMax", n)
        self._q: deque[tuple[int, float]] = deque()
        self._i = 0

    @property
    def full(self) -> bool:
        """True once n values have been seen."""
        return self._i >= self.n

    @property
    def value(self) -> float | None:
        """Max of the last n values (of fewer before n updates), None before any update."""
        return self._q[0][1] if self._q else None

    def update(self, x: float) -> float:
        """Add ``x``; return the max of the last n values (fewer at the start)."""
        q = self._q
        while q and q[-1][1] <= x:
            q.pop()
        q.append((self._i, x))
        self._i += 1
        if q[0][0] <= self._i - 1 - self.n:
            q.popleft()
        return q[0][1]


class RollingMin:
    """Minimum of the last ``n`` values (monotonic deque, amortised O(1))."""

    __slots__ = ("n", "_q", "_i")

    def __init__(self, n: int):
        self.n = _check_window("RollingMin", n)
        self._q: deque[tuple[int, float]] = deque()
        self._i = 0

    @property
    def full(self) -> bool:
        """True once n values have been seen."""
        return self._i >= self.n

    @property
    def value(self) -> float | None:
        """Min of the last n values (of fewer before n updates), None before any update."""
        return self._q[0][1] if self._q else None

    def update(self, x: float) -> float:
        """Add ``x``; return the min of the last n values (fewer at the start)."""
        q = self._q
        while q and q[-1][1] >= x:
            q.pop()
        q.append((self._i, x))
        self._i += 1
        if q[0][0] <= self._i - 1 - self.n:
            q.popleft()
        return q[0][1]


class WilderRSI:
    """Wilder's RSI over ``n`` bars (as backtrader's ``bt.ind.RSI`` with its default SMMA).

    The first average gain/loss is the simple mean of the first n changes, then
    avg = (avg * (n - 1) + new) / n. ``update(close)`` returns the RSI in [0, 100], or None
    until n changes exist. A window with no losses gives 100 (50 if also no gains).
    """

    __slots__ = ("n", "_prev", "_count", "_gain", "_loss", "value")

    def __init__(self, n: int):
        self.n = _check_window("WilderRSI", n)
        self._prev: float | None = None
        self._count = 0
        self._gain = 0.0
        self._loss = 0.0
        self.value: float | None = None

    def update(self, close: float) -> float | None:
        """Add a close; return the RSI after it, or None during the first n changes."""
        prev = self._prev
        self._prev = close
        if prev is None:
            return None
        ch = close - prev
        gain = ch if ch > 0.0 else 0.0
        loss = -ch if ch < 0.0 else 0.0
        n = self.n
        self._count += 1
        if self._count <= n:
            self._gain += gain / n
            self._loss += loss / n
            if self._count < n:
                return None
        else:
            self._gain = (self._gain * (n - 1) + gain) / n
            self._loss = (self._loss * (n - 1) + loss) / n
        g, lo = self._gain, self._loss
        if lo == 0.0:
            self.value = 100.0 if g > 0.0 else 50.0
        else:
            self.value = 100.0 - 100.0 / (1.0 + g / lo)
        return self.value
