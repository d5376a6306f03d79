"""IBKRDataProvider: historical bars and snapshot prices, IB first, yfinance as the fallback.

For research notebooks, CLIs, checks and the live warm-up: code that is not running inside
backtrader and wants bars now::

    from bt_ibkr.data.provider import IBKRDataProvider

    with IBKRDataProvider(port=4002) as p:
        spy = p.get_historical_data("SPY", "1 Y", "1 day")        # canonical bar frame
        px = p.get_real_time_price("SPY")                           # float
        many = p.get_multiple_symbols_data(["SPY", "AAPL", "NVDA"], "1 M", "1 day")
        p.last_sources        # {"SPY": "ibkr", ...}; p.last_attempts says why others did not

Source chain per symbol: the parquet cache (only the missing date ranges are fetched), then IB
when a gateway answers on ``host:port``, then yfinance when ``fallback_to_yfinance``; when all
fail, a :class:`~bt_ibkr.errors.DataError` names every source tried and why it did not serve.

IB history is fetched "the way IB wants it": ranges are split by IB's maximum duration per bar
size (chunks aligned to UTC midnights, so chunk edges never cut a bar), every request is paced
by :class:`~bt_ibkr.ib.pacing.HistoricalPacer` (60 requests / 10 min, no identical request within
15 s, 6 per contract per 2 s), transient failures (error 162 pacing violation, 1100 connectivity
lost, a dropped socket, a timeout) are retried with exponential backoff, and several symbols are
fetched concurrently on one connection with one shared pacer.

Ranges: ``duration`` is a calendar span ending at ``end`` ("1 Y" ending 2023-12-29 = the
sessions dated 2022-12-30..2023-12-29; "30 D" = 30 calendar days), because the cache is keyed
by dates. ``end`` None means now on the gateway's clock; a date means "through that date".
:meth:`IBKRDataProvider.get_ib_bars` sends ONE request counted IB's way ("5 D" of daily bars =
the last 5 sessions). The cache records a date as covered only once it is complete (before
the gateway's current UTC date), so today's still-forming bar is fetched again next time.

Threading: the provider owns one short-lived IB connection on its own asyncio loop in a daemon
thread (``bt_ibkr-provider``), so it works the same from a plain script, a CLI and a Jupyter
notebook whose own loop is already running. Every public method blocks the caller until done.
``close()`` (or leaving the ``with`` block) disconnects and ends the thread.

Returned frames follow the canonical bar convention of :mod:`bt_ibkr.validation` with
``attrs["source"]`` = "ibkr" (IB served at least part of it), "cache" (all from the cache) or
"yahoo".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd

from bt_ibkr.cache import BarCache, CacheKey
from bt_ibkr.errors import (
    ConfigError,
    DataError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from bt_ibkr.ib.pacing import (
    BAR_SECONDS,
    DAY,
    MAX_DURATION,
    Chunk,
    HistoricalPacer,
    HistRequest,
    duration_str,
)
from bt_ibkr.validation import validate_bars

__all__ = [
    "Attempt",
    "DELAYED_CODES",
    "IBKRDataProvider",
    "LoopThread",
    "NO_SUBSCRIPTION_CODES",
    "ProviderStats",
    "YahooPlan",
    "aligned_chunks",
    "classify_connect_error",
    "duration_delta",
    "load_ibkr_history",
    "normalize_bar_size",
    "parse_duration",
    "yahoo_plan",
    "yahoo_period",
]

log = logging.getLogger("bt_ibkr.data.provider")

T = TypeVar("T")

#: IB codes meaning "no live market-data subscription" (ask for delayed data, type 3, instead)
NO_SUBSCRIPTION_CODES = frozenset({354, 10089, 10168, 10197})
#: IB code meaning "delayed market data is being shown" (a warning; the data still comes)
DELAYED_CODES = frozenset({10167})
#: connectivity between the gateway and IB: lost / restored (data lost) / restored
CONN_LOST, CONN_RESTORED_LOST, CONN_RESTORED = 1100, 1101, 1102

PAPER_PORTS = {7497: "TWS paper", 4002: "IB Gateway paper"}
LIVE_PORTS = {7496: "TWS live", 4001: "IB Gateway live"}
PORT_HINT = "TWS 7497 (paper) / 7496 (live), IB Gateway 4002 (paper) / 4001 (live)"

# ---------------------------------------------------------------------------------------------
# durations and bar sizes

_DURATION = re.compile(r"^\s*(\d+)\s*([SDWMY])\s*$", re.IGNORECASE)


def parse_duration(duration: str) -> tuple[int, str]:
    """Return ``(count, unit)`` of an IB duration string such as "1 Y", "6 M", "30 D", "3600 S".

    Units: S seconds, D days, W weeks, M months, Y years. Raises ConfigError otherwise.
    """
    match = _DURATION.match(str(duration))
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(
            f"duration {duration!r} is not an IB duration; write '<n> <unit>' with unit "
            f"S, D, W, M or Y, e.g. '3600 S', '30 D', '2 W', '6 M', '1 Y'"
        )
    return int(match.group(1)), match.group(2).upper()


def duration_delta(duration: str) -> pd.DateOffset | timedelta:
    """Return the calendar span of an IB duration ("6 M" -> 6 calendar months, "1 Y" -> 1 year)."""
    n, unit = parse_duration(duration)
    if unit == "S":
        return timedelta(seconds=n)
    if unit == "D":
        return timedelta(days=n)
    if unit == "W":
        return timedelta(weeks=n)
    if unit == "M":
        return pd.DateOffset(months=n)
    return pd.DateOffset(years=n)


_BAR_ALIASES = {
    "1 sec": "1 secs", "1 mins": "1 min", "1 hours": "1 hour", "1 days": "1 day",
    "1 d": "1 day", "1 weeks": "1 week", "1 months": "1 month", "60 mins": "1 hour",
}  # fmt: skip


def normalize_bar_size(bar_size: str) -> str:
    """Return IB's spelling of ``bar_size`` ("1  Day" -> "1 day"); ConfigError if IB has none."""
    text = " ".join(str(bar_size).lower().split())
    text = _BAR_ALIASES.get(text, text)
    if text not in MAX_DURATION:
        raise ConfigError(
            f"bar size {bar_size!r} is not an IB bar size; use one of {', '.join(MAX_DURATION)}"
        )
    return text


def _is_intraday(bar_size: str) -> bool:
    return BAR_SECONDS[bar_size] < DAY


# ---------------------------------------------------------------------------------------------
# yfinance mapping (for the fallback)

#: IB bar size -> yfinance interval (IB sizes missing here have no yfinance equivalent)
YF_INTERVALS: dict[str, str] = {
    "1 min": "1m", "2 mins": "2m", "5 mins": "5m", "15 mins": "15m", "30 mins": "30m",
    "1 hour": "1h", "1 day": "1d", "1 week": "1wk", "1 month": "1mo",
}  # fmt: skip
#: yfinance's intraday limits: interval -> how many days back it serves at all
YF_LOOKBACK_DAYS: dict[str, int] = {"1m": 30, "2m": 60, "5m": 60, "15m": 60, "30m": 60, "1h": 730}
#: yfinance serves at most this many days of 1-minute bars per request
YF_1M_PER_REQUEST_DAYS = 7
#: yfinance ``period`` values and the days each covers
YF_PERIODS: tuple[tuple[str, float], ...] = (
    ("1d", 1), ("5d", 5), ("1mo", 31), ("3mo", 92), ("6mo", 183), ("1y", 366), ("2y", 731),
    ("5y", 1827), ("10y", 3653), ("max", math.inf),
)  # fmt: skip


def yahoo_period(duration: str) -> str:
    """Return the shortest yfinance ``period`` that covers the IB ``duration`` ("1 Y" -> "1y")."""
    n, unit = parse_duration(duration)
    days = {"S": n / DAY, "D": n, "W": 7 * n, "M": 30.4 * n, "Y": 365.25 * n}[unit]
    return next(name for name, span in YF_PERIODS if days <= span)


@dataclass(frozen=True)
class YahooPlan:
    """How the fallback asks yfinance for an IB-style request.

    ``interval`` the yfinance interval, ``start``/``end`` inclusive dates, ``period`` the
    equivalent yfinance period (informational), ``pieces`` the (start, end) date ranges of the
    downloads (1-minute bars come at most 7 days per request).
    """

    interval: str
    start: date
    end: date
    period: str
    pieces: tuple[tuple[date, date], ...]


def yahoo_plan(duration: str | None, bar_size: str, start: date, end: date,
               today: date | None = None) -> YahooPlan:
    """Map an IB request (bar size, date range) onto yfinance, checking yfinance's limits.

    Raises ConfigError when yfinance has no such interval (e.g. "10 mins", "4 hours", seconds)
    or does not serve that much intraday history (1m: 30 days, 2m..30m: 60 days, 1h: 730 days).
    """
    size = normalize_bar_size(bar_size)
    interval = YF_INTERVALS.get(size)
    if interval is None:
        raise ConfigError(
            f"yfinance has no {size!r} bars (it offers {', '.join(YF_INTERVALS)}); pick one of "
            f"those bar sizes or get the data from IB"
        )
    today = today or datetime.now(UTC).date()
    limit = YF_LOOKBACK_DAYS.get(interval)
    if limit is not None and start < today - timedelta(days=limit - 1):
        raise ConfigError(
            f"yfinance serves {interval} bars for the last {limit} days only, but the request "
            f"starts {start}; ask for at most '{limit} D' of {size!r} bars, use a coarser bar "
            f"size, or get the data from IB"
        )
    pieces: list[tuple[date, date]] = [(start, end)]
    if interval == "1m":
        pieces, cur = [], start
        while cur <= end:
            hi = min(end, cur + timedelta(days=YF_1M_PER_REQUEST_DAYS - 1))
            pieces.append((cur, hi))
            cur = hi + timedelta(days=1)
    period = yahoo_period(duration) if duration else yahoo_period(f"{(end - start).days + 1} D")
    return YahooPlan(interval, start, end, period, tuple(pieces))


# ---------------------------------------------------------------------------------------------
# chunking aligned to UTC midnights


def aligned_chunks(start: datetime, end: datetime, bar_size: str) -> list[Chunk]:
    """Split ``[start, end)`` into IB requests of at most IB's max duration for ``bar_size``.

    Unlike :func:`bt_ibkr.ib.pacing.chunk_range` (which counts back from ``end``), the boundaries
    are ``start + k * max_duration``; with ``start`` at a UTC midnight every boundary is a
    midnight (or a multiple of the bar length), so no bar is split between two requests even
    when ``end`` is "now" in the middle of a session. Returns chunks newest first.
    Raises ConfigError for an unknown bar size or an empty range.
    """
    size = normalize_bar_size(bar_size)
    if start >= end:
        raise ConfigError(f"historical range is empty: start {start} is not before end {end}")
    step = timedelta(seconds=MAX_DURATION[size])
    chunks: list[Chunk] = []
    lo = start
    while lo < end:
        hi = min(end, lo + step)
        span = (hi - lo).total_seconds()
        text = duration_str(span) if _is_intraday(size) else f"{max(1, math.ceil(span / DAY))} D"
        chunks.append(Chunk(start=lo, end=hi, duration=text))
        lo = hi
    return chunks[::-1]


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Attempt:
    """One source tried for one symbol: ``source`` ("cache", "ibkr", "yahoo"), whether it
    ``served``, and ``detail`` (what it served, or why it did not)."""

    source: str
    served: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"


@dataclass
class ProviderStats:
    """Counters over the provider's life: IB historical ``requests`` sent, ``retries``,
    ``pacing_violations`` (error 162 pacing answers), ``timeouts``, ``reconnects``,
    ``pacing_wait`` (seconds the client-side pacer held requests back)."""

    requests: int = 0
    retries: int = 0
    pacing_violations: int = 0
    timeouts: int = 0
    reconnects: int = 0
    pacing_wait: float = 0.0


@dataclass(frozen=True)
class _Range:
    """A request in UTC: bars in ``[start, end)``; ``start_d``..``end_d`` are inclusive dates."""

    start: datetime
    end: datetime
    start_d: date
    end_d: date


class _Transient(Exception):
    """A failure worth retrying (pacing violation, connectivity, timeout)."""


# ---------------------------------------------------------------------------------------------
# connection errors, shared with the doctor


def classify_connect_error(exc: BaseException, host: str, port: int, timeout: float,
                           client_id: int | None = None, codes: Iterable[int] = ()) -> str:
    """Return one line saying why connecting to ``host:port`` failed and what to do about it."""
    codes = set(codes)
    if 326 in codes:
        return (f"client id {client_id} is already in use on {host}:{port}; pass another "
                f"client_id (each connection to a gateway needs its own)")
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing listens on {host}:{port} — start IB Gateway/TWS, or check the port: "
                f"{PORT_HINT}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return (f"{host}:{port} accepts connections but did not answer the API handshake within "
                f"{timeout:g} s — the API is disabled (TWS/Gateway: Configure > API > Settings > "
                f"'Enable ActiveX and Socket Clients'), 127.0.0.1 is not a trusted IP, or another "
                f"service owns that port")
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        return f"cannot reach {host}:{port}: {exc}"
    text = str(exc) or type(exc).__name__
    return (f"the gateway on {host}:{port} closed the API session ({text}); check that the API "
            f"is enabled and that the client id is free")


# ---------------------------------------------------------------------------------------------
# the loop thread


class LoopThread:
    """An asyncio event loop running in a daemon thread; ``run(coro)`` blocks for its result."""

    def __init__(self, name: str = "bt_ibkr-provider") -> None:
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            try:
                self.loop.run_forever()
            finally:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.close()

        self.thread = threading.Thread(target=main, name=name, daemon=True)
        self.thread.start()
        ready.wait()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result; raises what it raises."""
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own thread would deadlock")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    def stop(self) -> None:
        """Stop the loop (cancelling what still runs) and join the thread (idempotent)."""
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


# ---------------------------------------------------------------------------------------------
# the provider


def _safe_disconnect(ib: Any) -> None:
    """Disconnect ``ib`` even half-connected (ib_async's disconnect() raises when the socket is
    open but the API session never became ready)."""
    try:
        ib.disconnect()
    except ConnectionError:
        ib.client.disconnect()


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_end(end) -> datetime | None:
    """None stays None ("now"); a date (or a date-only string / midnight) means the end of that
    day (bars of that date included); naive datetimes are UTC."""
    if end is None:
        return None
    if isinstance(end, date) and not isinstance(end, datetime):
        return datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    try:
        ts = pd.Timestamp(end)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"end {end!r} is not a date/time (e.g. '2024-01-31'): {exc}") from None
    if ts.tzinfo is None and ts == ts.normalize():
        return datetime(ts.year, ts.month, ts.day, tzinfo=UTC) + timedelta(days=1)
    return _utc(ts.to_pydatetime())


def _parse_start(start) -> datetime:
    """A date (or date-only string) means 00:00 UTC of that day; naive datetimes are UTC."""
    if start is None:
        raise ConfigError("start is required, e.g. '2015-01-01'")
    if isinstance(start, date) and not isinstance(start, datetime):
        return datetime(start.year, start.month, start.day, tzinfo=UTC)
    try:
        ts = pd.Timestamp(start)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"start {start!r} is not a date/time (e.g. '2015-01-01'): {exc}") \
            from None
    return _utc(ts.to_pydatetime())


def _range_from(start: datetime, end: datetime) -> _Range:
    start, end = _utc(start), _utc(end)
    if start >= end:
        raise ConfigError(f"historical range is empty: start {start} is not before end {end}")
    return _Range(start, end, start.date(), (end - timedelta(microseconds=1)).date())


class IBKRDataProvider:
    """Historical bars and snapshot prices from IB, with a parquet cache and yfinance fallback.

    Args:
        host, port: where IB Gateway/TWS listens (paper: Gateway 4002, TWS 7497).
        client_id: the API client id; None picks a random one in 100..999 (each connection to
            a gateway needs its own; a clash (error 326) is retried with another id).
        use_cache: read and fill the parquet cache (``cache`` or ``BarCache()``).
        fallback_to_yfinance: use yfinance when IB cannot serve a symbol.
        cache: a :class:`~bt_ibkr.cache.BarCache` (default: ``BarCache()``, i.e.
            ``$BT_IBKR_CACHE_DIR`` or ``./.cache/bt_ibkr/bars``).
        progress: show a rich progress bar on stderr during IB downloads.
        timeout: seconds one IB request may take before it is retried.
        connect_timeout: seconds the API handshake may take.
        max_retries: retries per IB request on transient errors (162 pacing, 1100, timeouts).
        backoff: first retry delay in seconds (doubles per retry, capped at 60 s).
        max_concurrent: IB historical requests in flight at once (over all symbols).
        pacing_scale: multiplies IB's pacing windows (1.0 for a real gateway; a simulator run
            with ``pacing_scale=0.01`` needs the same value here).
        pacing: False sends requests without client-side pacing (only for a simulator that
            does not enforce it, e.g. in benchmarks; a real gateway answers error 162).
        market_data_type: 1 live (falls back to 3 delayed on 354/10089/10168), 3 delayed.
        yf_timeout: seconds each yfinance HTTP request may take.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 4002,
        client_id: int | None = None,
        use_cache: bool = True,
        fallback_to_yfinance: bool = True,
        cache: BarCache | None = None,
        progress: bool = True,
        timeout: float = 60.0,
        *,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_concurrent: int = 6,
        pacing_scale: float = 1.0,
        pacing: bool = True,
        market_data_type: int = 1,
        yf_timeout: float = 5.0,
    ) -> None:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"port {port!r} is not a TCP port; {PORT_HINT}")
        if pacing_scale <= 0:
            raise ConfigError(f"pacing_scale must be > 0, got {pacing_scale}")
        if market_data_type not in (1, 2, 3, 4):
            raise ConfigError(f"market_data_type must be 1, 2, 3 or 4, got {market_data_type}")
        self.host = host
        self.port = port
        self.client_id = int(client_id) if client_id is not None else random.randint(100, 999)
        self.use_cache = use_cache
        self.fallback_to_yfinance = fallback_to_yfinance
        self.cache = cache if cache is not None else (BarCache() if use_cache else None)
        self.progress = progress
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_concurrent = max(1, int(max_concurrent))
        self.pacing_scale = float(pacing_scale)
        self.pacing = bool(pacing)
        self.market_data_type = market_data_type
        self.yf_timeout = float(yf_timeout)

        #: symbol -> the source that served it in the last call ("ibkr", "cache", "yahoo")
        self.last_sources: dict[str, str] = {}
        #: symbol -> every source tried in the last call, in order, with the reason
        self.last_attempts: dict[str, list[Attempt]] = {}
        #: symbol -> True when the last snapshot price was delayed data
        self.last_price_delayed: dict[str, bool] = {}
        self.stats = ProviderStats()

        # Margins: the client library throttles its own sends (45 messages/s), so a burst
        # reaches the gateway up to ~1 s after the pacer booked it; the 10-minute window gets
        # that second on top. Identical and per-contract requests are sequential per symbol.
        margin = 1.02
        self.pacer = HistoricalPacer(
            window=600.0 * pacing_scale * margin + 1.0,
            identical_gap=15.0 * pacing_scale * margin + 0.05,
            per_contract_window=2.0 * pacing_scale * margin + 0.05,
        )
        self._thread: LoopThread | None = None
        self._ib: Any = None
        self._in_use: asyncio.Future | None = None
        self._contracts: dict[tuple[str, str], tuple[Any, str]] = {}
        self._connectivity: asyncio.Event | None = None
        self._lost_waiters: list[asyncio.Future] = []
        self._error_codes: list[tuple[int, int, str]] = []
        self._sem: asyncio.Semaphore | None = None
        self._connect_lock: asyncio.Lock | None = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> IBKRDataProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"IBKRDataProvider(host={self.host!r}, port={self.port}, "
                f"client_id={self.client_id}, cache={self.cache!r})")

    def close(self) -> None:
        """Disconnect from the gateway and stop the provider's thread (idempotent)."""
        if self._thread is None:
            return
        try:
            self._thread.run(self._disconnect(), timeout=10)
        except Exception:  # noqa: BLE001 - closing must not raise
            log.debug("provider: disconnect failed", exc_info=True)
        self._thread.stop()
        self._thread = None

    def connect(self) -> list[str]:
        """Open the API session now (normally opened on first use); return the managed accounts.

        Raises SourceUnavailableError saying why it failed (nothing listens on the port, the
        API handshake never completes, the client id is in use).
        """
        ib = self._run(self._connect())
        return list(ib.managedAccounts())

    @property
    def server_version(self) -> int | None:
        """The TWS API server version of the open session (None when not connected)."""
        return self._ib.client.serverVersion() if self.connected else None

    @property
    def connected(self) -> bool:
        """True while the provider holds an open API session."""
        return bool(self._ib is not None and self._ib.isConnected())

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._thread is None:
            self._thread = LoopThread()
        return self._thread.run(coro)

    async def _disconnect(self) -> None:
        if self._ib is not None:
            _safe_disconnect(self._ib)
        self._ib = None

    # ------------------------------------------------------------------ connection (loop)
    def _on_error(self, req_id: int, code: int, text: str, contract: Any = None) -> None:
        self._error_codes.append((req_id, code, text))
        if len(self._error_codes) > 200:  # only the recent ones matter (connect diagnostics)
            del self._error_codes[:100]
        if code == 326 and self._in_use is not None and not self._in_use.done():
            self._in_use.set_result(code)
        if self._connectivity is None:
            return
        if code == CONN_LOST:
            log.warning("provider: gateway lost its connection to IB (1100); holding requests")
            self._connectivity.clear()
            for fut in self._lost_waiters:
                if not fut.done():
                    fut.set_result(code)
            self._lost_waiters.clear()
        elif code in (CONN_RESTORED, CONN_RESTORED_LOST):
            log.info("provider: gateway connectivity restored (%d)", code)
            self._connectivity.set()

    async def _connect(self) -> Any:
        """Return a connected IB (connecting once); raises SourceUnavailableError."""
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
            self._connectivity = asyncio.Event()
            self._connectivity.set()
            self._sem = asyncio.Semaphore(self.max_concurrent)
        async with self._connect_lock:
            if self._ib is not None and self._ib.isConnected():
                return self._ib
            if self._ib is not None:  # the session dropped: this is a reconnect
                self.stats.reconnects += 1
                _safe_disconnect(self._ib)
                self._ib = None
            from bt_ibkr.ib import client as ibc

            last_reason = ""
            for attempt in range(3):
                ib = ibc.IB()
                ib.RaiseRequestErrors = True
                ib.errorEvent += self._on_error
                self._error_codes.clear()
                in_use = asyncio.get_running_loop().create_future()
                self._in_use = in_use
                connecting = asyncio.ensure_future(ib.connectAsync(
                    self.host, self.port, self.client_id, timeout=self.connect_timeout,
                    readonly=True))
                try:
                    # error 326 (client id in use) ends the attempt at once, not at the timeout
                    await asyncio.wait({connecting, in_use}, return_when=asyncio.FIRST_COMPLETED)
                    if not connecting.done():
                        connecting.cancel()
                        raise ConnectionError(f"client id {self.client_id} is already in use")
                    connecting.result()
                except Exception as exc:  # noqa: BLE001 - classified below
                    _safe_disconnect(ib)
                    codes = [c for _, c, _ in self._error_codes]
                    last_reason = classify_connect_error(
                        exc, self.host, self.port, self.connect_timeout, self.client_id, codes)
                    if 326 in codes and attempt < 2:
                        self.client_id = random.randint(100, 999)
                        continue
                    raise SourceUnavailableError(last_reason) from exc
                self._ib = ib
                self._connectivity.set()
                log.info("provider: connected to %s:%d as client %d", self.host, self.port,
                         self.client_id)
                return ib
            raise SourceUnavailableError(last_reason)

    async def _gateway_now(self) -> datetime:
        ib = await self._connect()
        try:
            now = await asyncio.wait_for(ib.reqCurrentTimeAsync(), self.timeout)
            return _utc(now)
        except Exception:  # noqa: BLE001 - the local clock is the next best thing
            return datetime.now(UTC)

    async def _qualify(self, symbol: str) -> tuple[Any, str]:
        """Return ``(contract, time zone)`` for a dataname; raises UnknownSymbolError."""
        from bt_ibkr.ib import client as ibc
        from bt_ibkr.ib.contracts import parse_dataname, select_single

        hit = self._contracts.get((self.host, symbol))
        if hit is not None:
            return hit
        ib = await self._connect()
        spec = parse_dataname(symbol)
        try:
            details = await asyncio.wait_for(
                ib.reqContractDetailsAsync(spec.to_contract()), self.timeout)
        except ibc.ib_module.RequestError as exc:
            if exc.code == 200:
                details = []
            else:
                raise DataError(f"IB contract lookup for {symbol!r} failed: error {exc.code} "
                                f"{exc.message}") from exc
        except TimeoutError as exc:
            raise SourceUnavailableError(
                f"IB did not answer the contract lookup for {symbol!r} within "
                f"{self.timeout:g} s") from exc
        chosen = select_single(symbol, list(details or []))
        out = (chosen.contract, chosen.timeZoneId or "America/New_York")
        self._contracts[(self.host, symbol)] = out
        return out

    # ------------------------------------------------------------------ one IB request (loop)
    def _lost_future(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._lost_waiters.append(fut)
        return fut

    async def _request_chunk(self, symbol: str, contract: Any, chunk: Chunk, bar_size: str,
                             what: str, use_rth: bool, end_now: bool = False) -> list:
        """Send one paced historical request, retrying transient failures; return IB's bars.

        The request ends at ``chunk.end`` (explicit UTC), or "now" (``endDateTime=""``) when
        ``end_now``.
        """
        from bt_ibkr.ib import client as ibc

        end_at = "" if end_now else chunk.end
        req = HistRequest(str(contract.conId or symbol), "" if end_now else chunk.end.isoformat(),
                          chunk.duration, bar_size, what, bool(use_rth))
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                delay = min(self.backoff * 2 ** (attempt - 1), 60.0)
                log.info("provider: retry %d for %s %s in %.2f s (%s)", attempt, symbol,
                         chunk.duration, delay, last)
                await asyncio.sleep(delay)
            try:
                ib = await self._connect()
                if not self._connectivity.is_set():
                    await asyncio.wait_for(self._connectivity.wait(), self.timeout)
                async with self._sem:
                    if self.pacing:
                        self.stats.pacing_wait += await self.pacer.acquire(req)
                    self.stats.requests += 1
                    began = time.monotonic()
                    task = asyncio.ensure_future(ib.reqHistoricalDataAsync(
                        contract, endDateTime=end_at, durationStr=chunk.duration,
                        barSizeSetting=bar_size, whatToShow=what, useRTH=bool(use_rth),
                        formatDate=2, timeout=self.timeout))
                    lost = self._lost_future()
                    try:
                        done, _ = await asyncio.wait({task, lost},
                                                     return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        if lost in self._lost_waiters:
                            self._lost_waiters.remove(lost)
                    if task not in done:
                        task.cancel()
                        raise _Transient("the gateway lost its connection to IB (1100)")
                    lost.cancel()
                    bars = task.result()
                if not bars and time.monotonic() - began >= self.timeout * 0.98:
                    self.stats.timeouts += 1
                    raise _Transient(f"no answer within {self.timeout:g} s")
                return list(bars)
            except ibc.ib_module.RequestError as exc:
                text = exc.message.lower()
                if exc.code == 162 and "pacing" in text:
                    self.stats.pacing_violations += 1
                    last = f"error 162 pacing violation: {exc.message}"
                    continue
                if exc.code == 162 and ("no data" in text or "returned no" in text):
                    return []  # a stretch without sessions (weekend, holiday)
                if exc.code == 200:
                    raise UnknownSymbolError(
                        f"IB has no contract for {symbol!r} (error 200: {exc.message})") from exc
                if exc.code in NO_SUBSCRIPTION_CODES:
                    raise SourceUnavailableError(
                        f"IB historical data for {symbol!r} needs a market-data subscription "
                        f"(error {exc.code}: {exc.message})") from exc
                ending = f"{chunk.end:%Y-%m-%d %H:%M}"
                raise DataError(f"IB refused the historical request for {symbol!r} "
                                f"({chunk.duration} {bar_size} {what} ending {ending} UTC): "
                                f"error {exc.code} {exc.message}") from exc
            except _Transient as exc:
                last = str(exc)
            except TimeoutError:
                self.stats.timeouts += 1
                last = f"gateway connectivity not restored within {self.timeout:g} s"
            except (ConnectionError, OSError) as exc:
                last = f"connection lost ({exc})"
                try:
                    await self._connect()  # one reconnect, shared by every waiting request
                except SourceUnavailableError as rexc:
                    last = f"connection lost and reconnecting failed: {rexc}"
        raise SourceUnavailableError(
            f"IB historical request for {symbol!r} ({chunk.duration} {bar_size} ending "
            f"{chunk.end:%Y-%m-%d %H:%M} UTC) failed after {self.max_retries + 1} attempts: "
            f"{last}")

    # ------------------------------------------------------------------ one symbol (loop)
    @staticmethod
    def _bars_frame(bars: list, intraday: bool) -> pd.DataFrame:
        if not bars:
            return pd.DataFrame(columns=["open", "high", "low", "close", "volume"], dtype=float)
        stamps = [b.date for b in bars]
        if intraday:  # formatDate=2: tz-aware UTC datetimes
            index = pd.DatetimeIndex([_utc(s) for s in stamps]).tz_convert("UTC")
        else:  # session dates
            index = pd.DatetimeIndex([pd.Timestamp(s.date() if isinstance(s, datetime) else s)
                                      for s in stamps])
        frame = pd.DataFrame(
            {"open": [float(b.open) for b in bars], "high": [float(b.high) for b in bars],
             "low": [float(b.low) for b in bars], "close": [float(b.close) for b in bars],
             "volume": [max(0.0, float(b.volume)) if b.volume == b.volume else 0.0
                        for b in bars]},
            index=index)
        frame.index.name = "datetime"
        return frame

    @staticmethod
    def _trim(frame: pd.DataFrame, lo: datetime, hi: datetime, intraday: bool) -> pd.DataFrame:
        """Keep bars in [lo, hi): intraday by start time, daily by session date."""
        if frame.empty:
            return frame
        if intraday:
            return frame.loc[(frame.index >= lo) & (frame.index < hi)]
        lo_d = pd.Timestamp(lo.date())
        hi_d = pd.Timestamp((hi - timedelta(microseconds=1)).date())
        return frame.loc[(frame.index >= lo_d) & (frame.index <= hi_d)]

    async def _fetch_symbol(self, symbol: str, gaps: list[tuple[date, date]], bar_size: str,
                            what: str, use_rth: bool, now: datetime,
                            tick: Callable[[str], None]) -> tuple[pd.DataFrame, str, list]:
        """Fetch every gap (inclusive date ranges) of ``symbol`` from IB.

        Returns ``(bars in the gaps, exchange tz, [(gap_start, gap_end, n_bars)])``.
        """
        contract, tz = await self._qualify(symbol)
        intraday = _is_intraday(bar_size)
        parts: list[pd.DataFrame] = []
        done: list[tuple[date, date, int]] = []
        for gap_start, gap_end in gaps:
            lo = datetime(gap_start.year, gap_start.month, gap_start.day, tzinfo=UTC)
            hi = datetime(gap_end.year, gap_end.month, gap_end.day, tzinfo=UTC) + timedelta(days=1)
            hi = min(hi, now)
            if lo >= hi:
                done.append((gap_start, gap_end, 0))
                continue
            got: list[pd.DataFrame] = []
            for chunk in self._chunks_for(lo, hi, bar_size, what, now):
                bars = await self._request_chunk(symbol, contract, chunk, bar_size, what, use_rth,
                                                 end_now=what == "ADJUSTED_LAST")
                got.append(self._trim(self._bars_frame(bars, intraday), chunk.start, chunk.end,
                                      intraday))
                tick(symbol)
            frame = pd.concat([g for g in got if not g.empty]) if any(
                not g.empty for g in got) else self._bars_frame([], intraday)
            frame = frame[~frame.index.duplicated(keep="first")].sort_index()  # newest chunk wins
            parts.append(frame)
            done.append((gap_start, gap_end, len(frame)))
        nonempty = [p for p in parts if not p.empty]
        out = pd.concat(nonempty).sort_index() if nonempty else self._bars_frame([], intraday)
        out = out[~out.index.duplicated(keep="last")]
        return out, tz, done

    @staticmethod
    def _chunks_for(lo: datetime, hi: datetime, bar_size: str, what: str,
                    now: datetime) -> list[Chunk]:
        """The requests for bars in ``[lo, hi)``. ADJUSTED_LAST is ONE request ending now
        (IB refuses an explicit endDateTime for it) spanning whole years back to ``lo``."""
        if what == "ADJUSTED_LAST":
            years = max(1, math.ceil((now - lo).total_seconds() / (365 * DAY)))
            return [Chunk(start=lo, end=hi, duration=f"{years} Y")]
        return aligned_chunks(lo, hi, bar_size)

    def _count_chunks(self, gaps: list[tuple[date, date]], bar_size: str, what: str,
                      now: datetime) -> int:
        n = 0
        for a, b in gaps:
            lo = datetime(a.year, a.month, a.day, tzinfo=UTC)
            hi = min(datetime(b.year, b.month, b.day, tzinfo=UTC) + timedelta(days=1), now)
            if lo < hi:
                n += len(self._chunks_for(lo, hi, bar_size, what, now))
        return n

    async def _fetch_many(self, plan: dict[str, list[tuple[date, date]]], bar_size: str,
                          what: str, use_rth: bool, now: datetime,
                          tick: Callable[[str], None]) -> dict[str, Any]:
        """Fetch every symbol's gaps concurrently (one connection, one pacer); per symbol the
        result tuple of ``_fetch_symbol`` or the exception it raised."""

        async def one(sym: str) -> Any:
            try:
                return await self._fetch_symbol(sym, plan[sym], bar_size, what, use_rth, now,
                                                tick)
            except Exception as exc:  # noqa: BLE001 - reported per symbol
                return exc

        results = await asyncio.gather(*(one(s) for s in plan))
        return dict(zip(plan, results, strict=True))

    # ------------------------------------------------------------------ progress
    @contextlib.contextmanager
    def _progress(self, total: int, what: str) -> Iterator[Callable[[str], None]]:
        if not self.progress or total <= 1:
            yield lambda _sym: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(what, total=total)

            def tick(sym: str) -> None:
                bar.update(task, advance=1, description=f"{what} {sym}")

            yield tick

    # ------------------------------------------------------------------ the chain
    def _key(self, symbol: str, bar_size: str, what: str, use_rth: bool) -> CacheKey:
        return CacheKey(source="ibkr", symbol=symbol, bar_size=bar_size, what_to_show=what,
                        use_rth=bool(use_rth), adjusted=what == "ADJUSTED_LAST")

    def _from_cache(self, key: CacheKey, rng: _Range, intraday: bool) -> pd.DataFrame | None:
        assert self.cache is not None
        frame = self.cache.load(key, rng.start_d, rng.end_d)
        if frame is None:
            return None
        frame = self._trim(frame, rng.start, rng.end, intraday) if intraday else frame
        return frame if not frame.empty else None

    def _serve(self, symbols: list[str], duration: str | None, bar_size: str,
               start: datetime | None, end, what: str, use_rth: bool,
               allow_yahoo: bool) -> dict[str, pd.DataFrame]:
        """The chain for several symbols; raises DataError naming each failed symbol/source."""
        if not symbols:
            raise ConfigError("no symbols given; pass e.g. ['SPY', 'AAPL']")
        bad = [s for s in symbols if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ConfigError(f"symbols must be non-empty strings, got {bad!r}")
        bar_size = normalize_bar_size(bar_size)
        what = str(what).upper()
        intraday = _is_intraday(bar_size)
        if what == "ADJUSTED_LAST" and intraday:
            raise ConfigError(f"IB serves ADJUSTED_LAST for daily and longer bars only, not "
                              f"{bar_size!r}; use TRADES for intraday bars")
        end_dt = _parse_end(end)
        span = duration_delta(duration) if duration is not None else None

        def make_range(end_at: datetime) -> _Range:
            begin = _utc(start) if start is not None else _utc(
                (pd.Timestamp(end_at) - span).to_pydatetime())
            return _range_from(begin, end_at)

        attempts: dict[str, list[Attempt]] = {s: [] for s in symbols}
        frames: dict[str, pd.DataFrame] = {}
        errors: dict[str, list[Exception]] = {s: [] for s in symbols}

        # 1) cache, when the range is known without asking the gateway
        if self.use_cache and self.cache is not None and end_dt is not None:
            rng = make_range(end_dt)
            for sym in symbols:
                key = self._key(sym, bar_size, what, use_rth)
                gaps = self.cache.missing(key, rng.start_d, rng.end_d)
                if not gaps:
                    frame = self._from_cache(key, rng, intraday)
                    if frame is not None:
                        frames[sym] = frame
                        attempts[sym].append(Attempt("cache", True, f"{len(frame)} bars"))
                        continue
                shown = ", ".join(f"{a}..{b}" for a, b in gaps[:3]) or "no bars"
                attempts[sym].append(Attempt("cache", False, f"lacks {shown}"))
        todo = [s for s in symbols if s not in frames]

        # 2) IB
        if todo:
            self._serve_ib(todo, make_range, end_dt, bar_size, what, use_rth, intraday,
                           frames, attempts, errors)

        # 3) yahoo
        todo = [s for s in symbols if s not in frames]
        if todo and allow_yahoo and self.fallback_to_yfinance:
            rng = make_range(end_dt or datetime.now(UTC))
            for sym in todo:
                try:
                    frame = self._serve_yahoo(sym, duration, bar_size, what, rng, intraday)
                except (DataError, ConfigError) as exc:  # ConfigError: beyond yfinance's limits
                    errors[sym].append(exc)
                    attempts[sym].append(Attempt("yahoo", False, str(exc)))
                    continue
                frames[sym] = frame
                attempts[sym].append(Attempt("yahoo", True, f"{len(frame)} bars"))
        elif todo and allow_yahoo:
            for sym in todo:
                attempts[sym].append(Attempt("yahoo", False, "fallback_to_yfinance is off"))

        for sym in symbols:
            self.last_attempts[sym] = attempts[sym]
            if sym in frames:
                self.last_sources[sym] = frames[sym].attrs.get("source", "?")
            else:
                self.last_sources.pop(sym, None)
        failed = [s for s in symbols if s not in frames]
        if failed:
            lines = [f"{s}: " + "; ".join(str(a) for a in attempts[s]) for s in failed]
            ok = [s for s in symbols if s in frames]
            tail = f" ({', '.join(ok)} were served)" if ok else ""
            what_req = f"{duration} of {bar_size}" if duration else f"{bar_size} bars"
            msg = (f"no source could serve {what_req} {what} for {', '.join(failed)}{tail}: "
                   + " | ".join(lines))
            all_unknown = all(errors[s] and all(isinstance(e, UnknownSymbolError)
                                                for e in errors[s]) for s in failed)
            raise (UnknownSymbolError if all_unknown else SourceUnavailableError)(msg)
        return {s: frames[s] for s in symbols}

    def _serve_ib(self, todo: list[str], make_range: Callable[[datetime], _Range],
                  end_dt: datetime | None, bar_size: str, what: str, use_rth: bool,
                  intraday: bool, frames: dict, attempts: dict, errors: dict) -> None:
        try:
            now = self._run(self._gateway_now())
        except SourceUnavailableError as exc:
            for sym in todo:
                errors[sym].append(exc)
                attempts[sym].append(Attempt("ibkr", False, str(exc)))
            return
        rng = make_range(end_dt or now)
        last_complete = (now - timedelta(days=1)).date()
        plan: dict[str, list[tuple[date, date]]] = {}
        for sym in todo:
            if self.use_cache and self.cache is not None:
                key = self._key(sym, bar_size, what, use_rth)
                gaps = self.cache.missing(key, rng.start_d, rng.end_d)
                if not gaps:  # end=None: the cache already covers the range
                    frame = self._from_cache(key, rng, intraday)
                    if frame is not None:
                        frames[sym] = frame
                        attempts[sym].append(Attempt("cache", True, f"{len(frame)} bars"))
                        continue
                # adjusted prices move with every dividend: refetch the whole range, never mix
                whole = what == "ADJUSTED_LAST" or not gaps
                plan[sym] = [(rng.start_d, rng.end_d)] if whole else gaps
            else:
                plan[sym] = [(rng.start_d, rng.end_d)]
        if not plan:
            return
        total = sum(self._count_chunks(g, bar_size, what, now) for g in plan.values())
        with self._progress(total, f"IB {bar_size}") as tick:
            results = self._run(self._fetch_many(plan, bar_size, what, use_rth, now, tick))
        for sym, res in results.items():
            if isinstance(res, Exception):
                errors[sym].append(res)
                attempts[sym].append(Attempt("ibkr", False, str(res)))
                continue
            fetched, tz, done = res
            attrs = {"symbol": sym, "source": "ibkr", "tz": tz,
                     "adjusted": what == "ADJUSTED_LAST"}
            try:
                frame = self._store_ib(sym, fetched, done, bar_size, what, use_rth, tz, rng,
                                       last_complete, intraday)
            except DataError as exc:
                errors[sym].append(exc)
                attempts[sym].append(Attempt("ibkr", False, str(exc)))
                continue
            if frame is None or frame.empty:
                exc = UnknownSymbolError(
                    f"IB returned no {bar_size} bars for {sym!r} between {rng.start_d} and "
                    f"{rng.end_d}; check the dates (weekend/holiday?) and the contract")
                errors[sym].append(exc)
                attempts[sym].append(Attempt("ibkr", False, str(exc)))
                continue
            frame.attrs = attrs
            frames[sym] = frame
            n = sum(d[2] for d in done)
            attempts[sym].append(Attempt("ibkr", True, f"fetched {n} bars in "
                                         f"{len(done)} range(s)"))

    def _store_ib(self, sym: str, fetched: pd.DataFrame, done: list, bar_size: str, what: str,
                  use_rth: bool, tz: str, rng: _Range, last_complete: date,
                  intraday: bool) -> pd.DataFrame | None:
        name = f"ibkr {sym}"
        if not fetched.empty:
            fetched = validate_bars(fetched, name, intraday=intraday,
                                    attrs={"symbol": sym, "source": "ibkr", "tz": tz,
                                           "adjusted": what == "ADJUSTED_LAST"})
        if not (self.use_cache and self.cache is not None):
            return self._trim(fetched, rng.start, rng.end, intraday) if not fetched.empty \
                else None
        key = self._key(sym, bar_size, what, use_rth)
        for gap_start, gap_end, _n in done:
            cover_end = min(gap_end, last_complete)
            lo = pd.Timestamp(gap_start)
            hi = pd.Timestamp(gap_end + timedelta(days=1))
            if intraday:
                lo, hi = lo.tz_localize("UTC"), hi.tz_localize("UTC")
            piece = fetched.loc[(fetched.index >= lo) & (fetched.index < hi)] \
                if not fetched.empty else fetched
            if len(piece):
                self.cache.store(key, piece, gap_start, max(gap_start, cover_end),
                                 cover=gap_start <= cover_end, replace=what == "ADJUSTED_LAST")
            elif gap_start <= cover_end:
                self.cache.mark_covered(key, gap_start, cover_end)
        return self._from_cache(key, rng, intraday)

    def _serve_yahoo(self, sym: str, duration: str | None, bar_size: str, what: str,
                     rng: _Range, intraday: bool) -> pd.DataFrame:
        from feeds.yahoo import download_yahoo

        plan = yahoo_plan(duration, bar_size, rng.start_d, rng.end_d)
        adjusted = what == "ADJUSTED_LAST"
        parts = []
        for lo, hi in plan.pieces:
            parts.append(download_yahoo(sym, lo, hi, plan.interval, adjusted,
                                        timeout=self.yf_timeout))
        frame = pd.concat(parts) if len(parts) > 1 else parts[0]
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        attrs = dict(parts[0].attrs)
        if intraday:
            frame = self._trim(frame, rng.start, rng.end, intraday)
        if frame.empty:
            raise UnknownSymbolError(f"yfinance returned no {bar_size} bars for {sym!r} between "
                                     f"{rng.start_d} and {rng.end_d}")
        return validate_bars(frame, f"yahoo {sym}", intraday=intraday,
                             attrs={**attrs, "symbol": sym, "source": "yahoo"})

    # ------------------------------------------------------------------ public API
    def get_historical_data(self, symbol: str, duration: str = "1 Y", bar_size: str = "1 day",
                            end=None, what_to_show: str = "TRADES",
                            use_rth: bool = True) -> pd.DataFrame:
        """Return ``symbol``'s bars for ``duration`` ending at ``end`` as a canonical bar frame.

        ``symbol`` is a backtrader IB dataname ("SPY", "AAPL-STK-SMART-USD", ...); ``duration``
        an IB duration ("1 Y", "6 M", "30 D", "2 W", "3600 S"); ``bar_size`` IB's ("1 day",
        "1 hour", "5 mins"); ``end`` None (now, on the gateway's clock), a date (its bars
        included) or a datetime (naive = UTC). ``what_to_show`` "TRADES", "MIDPOINT",
        "ADJUSTED_LAST", ...; ``use_rth`` regular trading hours only.

        The frame's ``attrs["source"]`` says who served it; ``self.last_sources[symbol]`` too,
        and ``self.last_attempts[symbol]`` why the sources before it did not.
        Raises ConfigError for a bad duration/bar size/date, UnknownSymbolError when every
        source says the symbol does not exist, SourceUnavailableError when none could serve.
        """
        return self._serve([symbol], duration, bar_size, None, end, what_to_show, use_rth,
                           True)[symbol]

    def get_multiple_symbols_data(self, symbols: list[str], duration: str = "1 Y",
                                  bar_size: str = "1 day", end=None,
                                  what_to_show: str = "TRADES",
                                  use_rth: bool = True) -> dict[str, pd.DataFrame]:
        """Return ``{symbol: frame}`` for every symbol, fetched concurrently from IB (one
        connection, pacing shared) with per-symbol cache and yfinance fallback.

        Same arguments and errors as :meth:`get_historical_data`; when any symbol cannot be
        served the error names each such symbol with every source's reason.
        """
        return self._serve(list(symbols), duration, bar_size, None, end, what_to_show, use_rth,
                           True)

    def get_range_data(self, symbols: list[str], start, end, bar_size: str = "1 day",
                       what_to_show: str = "TRADES", use_rth: bool = True,
                       fallback: bool | None = None) -> dict[str, pd.DataFrame]:
        """Return ``{symbol: frame}`` for the dates ``start``..``end`` (both inclusive when
        dates; ``end`` None = now). ``fallback`` None follows ``fallback_to_yfinance``; False
        serves from the cache and IB only. Raises like :meth:`get_historical_data`."""
        start_dt = _parse_start(start)
        allow = self.fallback_to_yfinance if fallback is None else bool(fallback)
        return self._serve(list(symbols), None, bar_size, start_dt, end, what_to_show, use_rth,
                           allow)

    def get_ib_bars(self, symbol: str, duration: str = "5 D", bar_size: str = "1 day",
                    what_to_show: str = "TRADES", use_rth: bool = True) -> pd.DataFrame:
        """Return the answer to ONE IB historical request ending now, exactly as IB counts
        ``duration`` (for daily bars IB's "5 D" means the last 5 sessions), as a canonical
        frame. No cache, no yfinance; paced and retried like every request. ``duration`` must
        fit IB's maximum for ``bar_size``. Raises ConfigError, UnknownSymbolError,
        SourceUnavailableError, DataError.
        """
        size = normalize_bar_size(bar_size)
        parse_duration(duration)
        what = str(what_to_show).upper()

        async def fetch() -> tuple[list, str, datetime]:
            now = await self._gateway_now()
            contract, tz = await self._qualify(symbol)
            chunk = Chunk(start=now, end=now, duration=" ".join(duration.upper().split()))
            return await self._request_chunk(symbol, contract, chunk, size, what,
                                             use_rth), tz, now

        bars, tz, _now = self._run(fetch())
        if not bars:
            raise UnknownSymbolError(f"IB returned no {size} bars for {symbol!r} over "
                                     f"{duration!r}")
        frame = self._bars_frame(bars, _is_intraday(size))
        frame = validate_bars(frame, f"ibkr {symbol}", intraday=_is_intraday(size),
                              attrs={"symbol": symbol, "source": "ibkr", "tz": tz,
                                     "adjusted": what == "ADJUSTED_LAST"})
        self.last_sources[symbol] = "ibkr"
        self.last_attempts[symbol] = [Attempt("ibkr", True, f"{len(frame)} bars")]
        return frame

    def get_real_time_price(self, symbol: str) -> float:
        """Return the current price of ``symbol`` from an IB snapshot (reqMktData snapshot).

        Asks for live data first and, on 354/10089/10168 (no subscription), for delayed data
        (reqMarketDataType 3); ``self.last_price_delayed[symbol]`` says which one answered.
        Without IB, and with ``fallback_to_yfinance``, the last daily close from yfinance.
        Raises SourceUnavailableError naming every source tried when none answers.
        """
        attempts: list[Attempt] = []
        try:
            price, delayed = self._run(self._snapshot(symbol))
            self.last_price_delayed[symbol] = delayed
            self.last_sources[symbol] = "ibkr"
            attempts.append(Attempt("ibkr", True, f"{price:g}" + (" (delayed)" if delayed
                                                                  else "")))
            self.last_attempts[symbol] = attempts
            return price
        except DataError as exc:
            attempts.append(Attempt("ibkr", False, str(exc)))
            first = exc
        if self.fallback_to_yfinance:
            from feeds.yahoo import download_yahoo

            today = datetime.now(UTC).date()
            try:
                frame = download_yahoo(symbol, today - timedelta(days=7), today, "1d", False,
                                       timeout=self.yf_timeout)
                price = float(frame["close"].iloc[-1])
                self.last_sources[symbol] = "yahoo"
                self.last_price_delayed[symbol] = True
                attempts.append(Attempt("yahoo", True, f"last close {price:g} on "
                                        f"{frame.index[-1]:%Y-%m-%d}"))
                self.last_attempts[symbol] = attempts
                return price
            except DataError as exc:
                attempts.append(Attempt("yahoo", False, str(exc)))
        else:
            attempts.append(Attempt("yahoo", False, "fallback_to_yfinance is off"))
        self.last_attempts[symbol] = attempts
        self.last_sources.pop(symbol, None)
        cls = UnknownSymbolError if isinstance(first, UnknownSymbolError) else \
            SourceUnavailableError
        raise cls(f"no price for {symbol!r}: " + "; ".join(str(a) for a in attempts))

    async def _snapshot(self, symbol: str) -> tuple[float, bool]:
        """Return ``(price, delayed)`` from one snapshot; falls back to delayed data."""
        from bt_ibkr.ib import client as ibc

        ib = await self._connect()
        contract, _tz = await self._qualify(symbol)
        mdt = self.market_data_type
        for _ in range(2):
            ib.reqMarketDataType(mdt)
            try:
                tickers = await asyncio.wait_for(ib.reqTickersAsync(contract), self.timeout)
            except ibc.ib_module.RequestError as exc:
                if exc.code in NO_SUBSCRIPTION_CODES and mdt in (1, 2):
                    log.info("provider: no live data for %s (%d); asking for delayed data",
                             symbol, exc.code)
                    mdt = 3 if mdt == 1 else 4
                    self.market_data_type = mdt
                    continue
                raise DataError(f"IB snapshot for {symbol!r} failed: error {exc.code} "
                                f"{exc.message}") from exc
            except TimeoutError as exc:
                raise SourceUnavailableError(
                    f"IB sent no snapshot for {symbol!r} within {self.timeout:g} s") from exc
            ticker = tickers[0]
            # the gateway says which kind it sent (marketDataType message, 3/4 = delayed)
            delayed = getattr(ticker, "marketDataType", mdt) in (3, 4)
            for value in (ticker.marketPrice(), ticker.last, ticker.close):
                if value is not None and value == value and value > 0:
                    return float(value), delayed
            raise DataError(f"IB snapshot for {symbol!r} held no price (market closed and no "
                            f"close price?)")
        raise SourceUnavailableError(f"IB has neither live nor delayed data for {symbol!r}")


# ---------------------------------------------------------------------------------------------
# the backtest / warm-up entry point


def load_ibkr_history(
    symbols: list[str],
    start,
    end=None,
    bar_size: str = "1 day",
    host: str = "127.0.0.1",
    port: int = 4002,
    client_id: int | None = None,
    what_to_show: str = "TRADES",
    use_rth: bool = True,
    cache: BarCache | None = None,
    use_cache: bool = True,
    progress: bool = True,
    timeout: float = 60.0,
    **provider_options: Any,
) -> dict[str, pd.DataFrame]:
    """Return ``{symbol: canonical frame}`` for ``start``..``end`` (inclusive dates) from IB,
    through the parquet cache (only missing ranges are fetched), for the backtest's source
    "ibkr" and the live warm-up. No yfinance fallback: the caller's chain decides that.

    ``end`` None means now on the gateway's clock. ``provider_options`` go to
    :class:`IBKRDataProvider` (e.g. ``pacing_scale``, ``connect_timeout``).
    Raises SourceUnavailableError when the gateway cannot be reached (the message names
    host:port and what to do), UnknownSymbolError for a symbol IB does not know.
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    with IBKRDataProvider(host=host, port=port, client_id=client_id, use_cache=use_cache,
                          fallback_to_yfinance=False, cache=cache, progress=progress,
                          timeout=timeout, **provider_options) as provider:
        return provider.get_range_data(list(symbols), start, end, bar_size, what_to_show,
                                       use_rth, fallback=False)
