"""The one way historical bars come from IB: chunked, paced, retried and cached.

Every consumer goes through :class:`HistoricalData` on an :class:`~bt_ibkr.ib.connection.IBConnection`:
backtests (``--source ibkr``) and :class:`~bt_ibkr.data.provider.IBKRDataProvider` through the
provider, the live daily warm-up and the stream backfill of :class:`~feeds.ibdata.IBData`
through the store.

* Chunking (:func:`chunk_range`): a range is split by IB's maximum duration per bar size
  (:data:`~bt_ibkr.ib.bars.MAX_DURATION`), counted forward from the range's start, so that with
  a start at a UTC midnight (daily bars always start there) every boundary is a midnight and no
  bar is split between two requests even when the end is "now" in the middle of a session.
* Pacing: :class:`~bt_ibkr.ib.pacing.HistoricalPacer` (60 requests / 10 min, no identical
  request within 15 s, 6 per contract per 2 s), shared by every request of the connection.
* Retries (:meth:`HistoricalData.request`): a pacing violation (162), the gateway losing IB
  (1100: wait for it to come back), a dropped socket (wait for the connection to reconnect) and an
  unanswered request are retried with exponential back-off; other IB errors end the request
  with an error that names it and carries IB's ``code``.
* The parquet cache (:meth:`HistoricalData.bars`): the dates the cache covers are read from it,
  only the gaps are requested, and what arrives is stored. A date is recorded as covered only
  once it is complete on the gateway's clock (before its current UTC date); a gap on a complete
  date is fetched whole so that it can be covered (bars of a minute and longer: a whole day of
  seconds bars would cost 4 to 48 requests), today's is fetched from the requested start.

Frames are the canonical bar frames of :mod:`bt_ibkr.validation` (intraday: indexed by the bar's
start in UTC; daily and longer: by session date).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

import pandas as pd

from bt_ibkr.cache import BarCache, CacheKey
from bt_ibkr.errors import (
    ConfigError,
    DataError,
    DataValidationError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from bt_ibkr.ib.bars import (
    BAR_SECONDS,
    DAY,
    MAX_DURATION,
    duration_str,
    is_intraday,
    normalize_bar_size,
)
from bt_ibkr.ib.codes import (
    CONNECTIVITY_LOST,
    HISTORICAL_DATA_ERROR,
    NO_SECURITY_DEFINITION,
    NOT_SUBSCRIBED,
    is_no_data,
    is_pacing_violation,
)
from bt_ibkr.ib.connection import ConnectFailed, IBConnection
from bt_ibkr.ib.events import BarReceived, HistoryEnded, RequestFailed
from bt_ibkr.ib.pacing import HistoricalPacer, HistRequest
from bt_ibkr.ib.parsing import bars_frame, frame_bars
from bt_ibkr.utc import midnight, naive_utc, to_utc
from bt_ibkr.validation import validate_bars

if TYPE_CHECKING:
    from ib_async import Contract

__all__ = ["ADJUSTED", "Chunk", "HistoricalData", "HistoryStats", "chunk_range", "coded",
           "normalize_request"]

log = logging.getLogger("bt_ibkr.ib.historical")

#: IB's what-to-show for split/dividend adjusted bars: one request ending now, daily and up
ADJUSTED = "ADJUSTED_LAST"


@dataclass(frozen=True)
class Chunk:
    """One historical request: bars in ``[start, end)`` via ``endDateTime=end``, ``duration``."""

    start: datetime
    end: datetime
    duration: str


def chunk_range(start: datetime, end: datetime, bar_size: str) -> list[Chunk]:
    """Split ``[start, end)`` into requests of at most IB's max duration for ``bar_size``.

    Boundaries are ``start + k * max_duration`` (for daily and longer bars ``start`` is moved
    back to 00:00 UTC first); durations are 'N S' up to a day and 'N D' beyond (daily bars:
    always whole days). Returns chunks newest first; consecutive chunks touch and together
    cover the range. Raises ConfigError for an unknown bar size or an empty range.
    """
    size = normalize_bar_size(bar_size)
    if start >= end:
        raise ConfigError(f"historical range is empty: start {start} is not before end {end}")
    intraday = is_intraday(size)
    if not intraday:
        start = midnight(start) if start.tzinfo else midnight(start).replace(tzinfo=None)
    step = timedelta(seconds=MAX_DURATION[size])
    chunks: list[Chunk] = []
    lo = start
    while lo < end:
        hi = min(end, lo + step)
        span = (hi - lo).total_seconds()
        text = duration_str(span) if intraday else f"{max(1, math.ceil(span / DAY))} D"
        chunks.append(Chunk(start=lo, end=hi, duration=text))
        lo = hi
    return chunks[::-1]


def normalize_request(bar_size: str, what: str) -> tuple[str, str]:
    """Return ``(bar size, what to show)`` in IB's spelling; ConfigError for a bar size IB has
    not, or ADJUSTED_LAST with intraday bars (IB serves it for daily and longer only)."""
    size = normalize_bar_size(bar_size)
    what = str(what).upper()
    if what == ADJUSTED and is_intraday(size):
        raise ConfigError(f"IB serves ADJUSTED_LAST for daily and longer bars only, not "
                          f"{size!r}; use TRADES for intraday bars")
    return size, what


def coded(cls: type[Exception], code: int, message: str) -> Exception:
    """Return ``cls(message)`` carrying IB's error ``code`` (0 when none) as ``.code``."""
    exc = cls(message)
    exc.code = code  # type: ignore[attr-defined]
    return exc


@dataclass
class HistoryStats:
    """Counters over a HistoricalData's life: ``requests`` sent, ``retries``,
    ``pacing_violations`` (162 pacing answers), ``timeouts``, ``reconnects`` this path had to
    make, ``pacing_wait`` (seconds the client-side pacer held requests back)."""

    requests: int = 0
    retries: int = 0
    pacing_violations: int = 0
    timeouts: int = 0
    reconnects: int = 0
    pacing_wait: float = 0.0


class _Transient(Exception):
    """A failure worth retrying (pacing violation, connectivity, timeout)."""


@dataclass(frozen=True)
class _Range:
    """A request in UTC: bars in ``[start, end)``; ``start_d``..``end_d`` are inclusive dates."""

    start: datetime
    end: datetime
    start_d: date
    end_d: date


@dataclass(frozen=True)
class _Gap:
    """Dates ``first``..``last`` missing from the cache, fetched as bars in ``[lo, hi)``."""

    first: date
    last: date
    lo: datetime
    hi: datetime


class HistoricalData:
    """Historical bars from IB on ``connection`` (see the module docstring).

    Args:
        connection: the IBConnection to request on (its loop runs every coroutine here).
        cache: the BarCache to read and fill (None: no cache).
        pacer: the client-side pacer (default: IB's windows, :meth:`HistoricalPacer.for_gateway`).
        pacing: False sends requests unpaced (only for a simulator that does not enforce it).
        timeout: seconds one request may take before it is retried (default: the connection's).
        max_retries: retries per request on transient errors.
        backoff: first retry delay in seconds (doubles per retry, capped at 60 s).
        max_concurrent: requests in flight at once (over all symbols).
        sleep: the awaitable sleep of the retry back-off (default ``asyncio.sleep``; a test
            passes its controlled clock's, together with a pacer on that clock).
    """

    def __init__(self, connection: IBConnection, *, cache: BarCache | None = None,
                 pacer: HistoricalPacer | None = None, pacing: bool = True,
                 timeout: float | None = None, max_retries: int = 4, backoff: float = 1.0,
                 max_concurrent: int = 6,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.connection = connection
        self.cache = cache
        self.pacer = pacer if pacer is not None else HistoricalPacer.for_gateway()
        self.pacing = bool(pacing)
        self.timeout = float(timeout) if timeout is not None else connection.request_timeout
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_concurrent = max(1, int(max_concurrent))
        self.sleep = sleep
        self.stats = HistoryStats()
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None
        self._key_locks: dict[CacheKey, asyncio.Lock] = {}

    # ------------------------------------------------------------------ one request
    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:  # a store restarts its loop
            self._sem, self._sem_loop = asyncio.Semaphore(self.max_concurrent), loop
            self._key_locks = {}
        return self._sem

    def _key_lock(self, key: CacheKey) -> asyncio.Lock:
        self._semaphore()  # drops the locks of a previous loop
        return self._key_locks.setdefault(key, asyncio.Lock())

    async def request(self, contract: Contract, chunk: Chunk, bar_size: str, what: str,
                      use_rth: bool, *, name: str = "", end_now: bool = False) -> list:
        """Send one paced historical request, retrying transient failures; return IB's bars.

        The request ends at ``chunk.end`` (explicit UTC) or "now" (``endDateTime=""``, which IB
        requires for ADJUSTED_LAST) when ``end_now``. Raises UnknownSymbolError (200),
        SourceUnavailableError (no market-data subscription; retries exhausted), DataError
        (any other refusal); each carries IB's error as ``.code``.
        """
        from bt_ibkr.ib import client as ibc

        name = name or str(getattr(contract, "symbol", contract))
        end_at = "" if end_now else to_utc(chunk.end)
        req = HistRequest(str(contract.conId or name), "" if end_now else chunk.end.isoformat(),
                          chunk.duration, bar_size, what, bool(use_rth))
        last, last_code = "", HISTORICAL_DATA_ERROR
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.retries += 1
                delay = min(self.backoff * 2 ** (attempt - 1), 60.0)
                log.info("history: retry %d for %s %s in %.2f s (%s)", attempt, name,
                         chunk.duration, delay, last)
                await self.sleep(delay)
            try:
                if await self.connection.ensure_connected(self.timeout) and self.connection.connects > 1:
                    self.stats.reconnects += 1
                await self.connection.wait_connectivity(self.timeout)
                async with self._semaphore():
                    if self.pacing:  # not `+= await`: that loses concurrent requests' waits
                        waited = await self.pacer.acquire(req)
                        self.stats.pacing_wait += waited
                    self.stats.requests += 1
                    began = time.monotonic()
                    answered, bars = await self.connection.until_answer_or_loss(
                        self.connection.ib.reqHistoricalDataAsync(
                            contract, endDateTime=end_at, durationStr=chunk.duration,
                            barSizeSetting=bar_size, whatToShow=what, useRTH=bool(use_rth),
                            formatDate=2, timeout=self.timeout))
                if not answered:
                    last_code = CONNECTIVITY_LOST
                    raise _Transient("the gateway lost its connection to IB (1100)")
                if not bars and time.monotonic() - began >= self.timeout * 0.98:
                    self.stats.timeouts += 1
                    raise _Transient(f"no answer within {self.timeout:g} s")
                return list(bars or [])
            except ibc.ib_module.RequestError as exc:
                if is_pacing_violation(exc.code, exc.message):
                    self.stats.pacing_violations += 1
                    last, last_code = f"error 162 pacing violation: {exc.message}", exc.code
                    continue
                if is_no_data(exc.code, exc.message):
                    return []  # a stretch without sessions (weekend, holiday)
                raise self._refusal(exc.code, exc.message, name, chunk, bar_size, what) from exc
            except _Transient as exc:
                last = str(exc)
            except TimeoutError:
                self.stats.timeouts += 1
                last = f"gateway connectivity not restored within {self.timeout:g} s"
                last_code = CONNECTIVITY_LOST
            except ConnectFailed as exc:
                last, last_code = f"connection lost and reconnecting failed: {exc.reason}", \
                    CONNECTIVITY_LOST
            except (ConnectionError, OSError) as exc:
                last, last_code = f"connection lost ({exc})", CONNECTIVITY_LOST
        raise coded(SourceUnavailableError, last_code,
                    f"IB historical request for {name!r} ({chunk.duration} {bar_size} ending "
                    f"{chunk.end:%Y-%m-%d %H:%M} UTC) failed after {self.max_retries + 1} "
                    f"attempts: {last}")

    @staticmethod
    def _refusal(code: int, text: str, name: str, chunk: Chunk, bar_size: str,
                 what: str) -> Exception:
        if code == NO_SECURITY_DEFINITION:
            return coded(UnknownSymbolError, code,
                         f"IB has no contract for {name!r} (error 200: {text})")
        if code in NOT_SUBSCRIBED:
            return coded(SourceUnavailableError, code,
                         f"IB historical data for {name!r} needs a market-data subscription "
                         f"(error {code}: {text})")
        return coded(DataError, code,
                     f"IB refused the historical request for {name!r} ({chunk.duration} "
                     f"{bar_size} {what} ending {chunk.end:%Y-%m-%d %H:%M} UTC): error {code} "
                     f"{text}")

    # ------------------------------------------------------------------ a range, through the cache
    def cache_key(self, name: str, bar_size: str, what: str, use_rth: bool) -> CacheKey:
        """Return the CacheKey of ``name``'s IB bars: source "ibkr", or "ibkr-sim" when the
        connection talks to bt_ibkr's gateway simulator (simulated prices are never IB's)."""
        source = SIM_SOURCE if getattr(self.connection, "simulated", False) else "ibkr"
        return CacheKey(source=source, symbol=name, bar_size=bar_size, what_to_show=what,
                        use_rth=bool(use_rth), adjusted=what == ADJUSTED)

    @staticmethod
    def _range(start: datetime, end: datetime) -> _Range:
        start, end = to_utc(start), to_utc(end)
        if start >= end:
            raise ConfigError(f"historical range is empty: start {start} is not before end {end}")
        return _Range(start, end, start.date(), (end - timedelta(microseconds=1)).date())

    def cached(self, name: str, start: datetime, end: datetime, bar_size: str,
               what: str = "TRADES", use_rth: bool = True) -> pd.DataFrame | None:
        """Return the bars of ``[start, end)`` when the cache covers every date, else None.

        Needs no gateway (use it before connecting). Runs in the caller's thread.
        """
        if self.cache is None:
            return None
        size = normalize_bar_size(bar_size)
        rng = self._range(start, end)
        key = self.cache_key(name, size, what, use_rth)
        if self.cache.missing(key, rng.start_d, rng.end_d):
            return None
        return self._from_cache(key, rng, is_intraday(size))

    def _from_cache(self, key: CacheKey, rng: _Range, intraday: bool) -> pd.DataFrame | None:
        assert self.cache is not None
        frame = self.cache.load(key, rng.start_d, rng.end_d)
        if frame is None:
            return None
        frame = _trim(frame, rng.start, rng.end, intraday) if intraday else frame
        return frame if not frame.empty else None

    @staticmethod
    def _whole_days(cached: bool, bar_size: str) -> bool:
        """Fetch partly requested complete days whole (to cover them in the cache)?"""
        return cached and BAR_SECONDS[bar_size] >= 60

    def _gaps(self, missing: list[tuple[date, date]], rng: _Range, intraday: bool,
              now: datetime, whole_days: bool) -> list[_Gap]:
        last_complete = (now - timedelta(days=1)).date()
        out = []
        for first, last in missing:
            lo, hi = midnight(first), midnight(last, 1)
            if intraday and not (whole_days and first <= last_complete):
                lo = max(lo, rng.start)
            if intraday and not (whole_days and last <= last_complete):
                hi = min(hi, rng.end)
            out.append(_Gap(first, last, lo, min(hi, now)))
        return out

    @staticmethod
    def _chunks_for(gap: _Gap, bar_size: str, what: str, now: datetime) -> list[Chunk]:
        """The requests for one gap. ADJUSTED_LAST is ONE request ending now (IB refuses an
        explicit endDateTime for it) spanning whole years back to the gap's start."""
        if gap.lo >= gap.hi:
            return []
        if what == ADJUSTED:
            years = max(1, math.ceil((now - gap.lo).total_seconds() / (365 * DAY)))
            return [Chunk(start=gap.lo, end=gap.hi, duration=f"{years} Y")]
        return chunk_range(gap.lo, gap.hi, bar_size)

    def plan(self, name: str, start: datetime, end: datetime, bar_size: str, what: str,
             use_rth: bool, now: datetime) -> list[Chunk]:
        """Return the requests :meth:`bars` would send for this range now (for progress)."""
        size = normalize_bar_size(bar_size)
        rng = self._range(start, min(to_utc(end), to_utc(now)))
        missing = [(rng.start_d, rng.end_d)]
        if self.cache is not None and what != ADJUSTED:
            missing = self.cache.missing(self.cache_key(name, size, what, use_rth),
                                         rng.start_d, rng.end_d)
        gaps = self._gaps(missing, rng, is_intraday(size), to_utc(now),
                          self._whole_days(self.cache is not None, size))
        return [c for g in gaps for c in self._chunks_for(g, size, what, to_utc(now))]

    async def _io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run cache file I/O off the loop thread (live streams keep flowing meanwhile)."""
        return await asyncio.get_running_loop().run_in_executor(
            None, functools.partial(fn, *args, **kwargs))

    async def bars(self, name: str, start: datetime, end: datetime | None, bar_size: str,
                   what: str = "TRADES", use_rth: bool = True, *, contract: Any = None,
                   tz: str | None = None, now: datetime | None = None,
                   tick: Callable[[str], None] | None = None) -> pd.DataFrame:
        """Return ``name``'s bars in ``[start, end)`` (UTC; ``end`` None = now on the gateway's
        clock) as a canonical frame, through the cache (loop thread).

        ``name`` is the dataname the cache files the bars under (qualified through the connection
        unless ``contract`` and its exchange ``tz`` are given); ``tick(name)`` is called after
        each request. The frame's attrs say ``source`` ("cache": no request was needed, else
        "ibkr"), ``tz``, ``adjusted``; it is empty when IB has no bars in the range. Raises
        like :meth:`request`, ConfigError for a bad bar size, an empty range, or TRADES or
        ADJUSTED_LAST on a forex (CASH) contract (IB has none: it answers error 162).
        """
        size, what = normalize_request(bar_size, what)
        if getattr(contract, "secType", "") == "CASH":  # IB has no forex trades (error 162)
            from bt_ibkr.fx.pairs import history_what

            what = history_what("CASH", what)
        intraday = is_intraday(size)
        now = to_utc(now) if now is not None else await self.connection.server_time()
        rng = self._range(start, min(to_utc(end), now) if end is not None else now)
        attrs = {"symbol": name, "source": "ibkr", "tz": tz, "adjusted": what == ADJUSTED}
        cache = self.cache
        key = self.cache_key(name, size, what, use_rth) if cache is not None else None
        missing = [(rng.start_d, rng.end_d)]
        if cache is not None and key is not None:
            async with self._key_lock(key):
                gaps = await self._io(cache.missing, key, rng.start_d, rng.end_d)
                if not gaps:
                    frame = await self._io(self._from_cache, key, rng, intraday)
                    if frame is not None:
                        return frame
                # adjusted prices move with every dividend: refetch the whole range, never mix
                if what != ADJUSTED and gaps:
                    missing = gaps
                return await self._fetch(name, key, missing, rng, size, what, use_rth,
                                         contract, tz, now, tick, attrs)
        return await self._fetch(name, None, missing, rng, size, what, use_rth, contract, tz,
                                 now, tick, attrs)

    async def into_queue(self, contract: Contract, start: datetime | None, end: datetime | None,
                         bar_size: str, what: str, use_rth: bool, tz: Any,
                         sessionend: dtime | None, q: queue.Queue, name: str) -> None:
        """Put ``contract``'s bars from ``start`` to ``end`` (naive UTC; None end: now on the
        gateway's clock, None start: IB's max duration) on ``q`` as :class:`BarReceived`
        events, then :class:`HistoryEnded` (loop thread; what
        :meth:`~bt_ibkr.ib.store.IBStore.request_history` runs). Never raises: a failure is a
        :class:`RequestFailed` event before the end (``bad_data`` for bad bars)."""
        n = 0
        try:
            now = await self.connection.server_time()
            until = to_utc(end) if end is not None else now
            since = to_utc(start) if start is not None else \
                until - timedelta(seconds=MAX_DURATION[bar_size])
            if since >= until:
                q.put(HistoryEnded(0))
                return
            zone = getattr(tz, "zone", None) or getattr(tz, "key", None)
            frame = await self.bars(name, since, until, bar_size, what, use_rth,
                                    contract=contract, tz=zone, now=now)
            floor = naive_utc(since)
            for bar in frame_bars(frame, bar_size, tz, sessionend):
                if is_intraday(bar_size) or bar.dt >= floor:
                    q.put(BarReceived(bar))
                    n += 1
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # noqa: BLE001 - surfaced to the feed with IB's code
            code = getattr(exc, "code", 0)
            if isinstance(exc, DataError) and not code:  # bad bars: the message says which
                log.warning("historical request failed: %s", exc)
            elif not code:
                log.exception("historical request failed")
            q.put(RequestFailed(code, str(exc) if code else f"historical request failed: {exc}",
                                bad_data=isinstance(exc, DataError) and not code))
        q.put(HistoryEnded(n))

    async def _fetch(self, name: str, key: CacheKey | None, missing: list[tuple[date, date]],
                     rng: _Range, size: str, what: str, use_rth: bool, contract: Any,
                     tz: str | None, now: datetime, tick: Callable[[str], None] | None,
                     attrs: dict) -> pd.DataFrame:
        if contract is None:
            contract, tz = await self.connection.qualify_dataname(name)
            attrs["tz"] = tz
        intraday = is_intraday(size)
        gaps = self._gaps(missing, rng, intraday, now, self._whole_days(key is not None, size))
        parts: list[tuple[_Gap, pd.DataFrame]] = []
        for gap in gaps:
            got = []
            for chunk in self._chunks_for(gap, size, what, now):
                bars = await self.request(contract, chunk, size, what, use_rth, name=name,
                                          end_now=what == ADJUSTED)
                frame = bars_frame(bars, intraday)
                _refuse_future(frame, name, now, intraday)
                got.append(_trim(frame, chunk.start, chunk.end, intraday))
                if tick is not None:
                    tick(name)
            nonempty = [g for g in got if not g.empty]
            frame = pd.concat(nonempty) if nonempty else bars_frame([], intraday)
            parts.append((gap, frame[~frame.index.duplicated(keep="first")].sort_index()))
        nonempty = [p for _, p in parts if not p.empty]
        fetched = pd.concat(nonempty).sort_index() if nonempty else bars_frame([], intraday)
        fetched = fetched[~fetched.index.duplicated(keep="last")]  # newest chunk wins
        if not fetched.empty:
            fetched = validate_bars(fetched, f"ibkr {name}", intraday=intraday, attrs=attrs)
        if key is None:
            out = _trim(fetched, rng.start, rng.end, intraday)
        else:
            await self._io(self._store, key, parts, now, replace=what == ADJUSTED, attrs=attrs)
            out = await self._io(self._from_cache, key, rng, intraday)
            out = out if out is not None else bars_frame([], intraday)
        out.attrs = dict(attrs)
        return out

    def _store(self, key: CacheKey, parts: list[tuple[_Gap, pd.DataFrame]], now: datetime,
               replace: bool, attrs: dict) -> None:
        """Write each gap's bars; record as covered its complete dates fetched whole."""
        assert self.cache is not None
        last_complete = (now - timedelta(days=1)).date()
        for gap, piece in parts:
            first = gap.first if gap.lo <= midnight(gap.first) else gap.lo.date() + timedelta(1)
            last = min(gap.last, last_complete, gap.hi.date() - timedelta(days=1))
            cover = first <= last
            if not piece.empty:
                piece = validate_bars(piece, f"ibkr {key.symbol}", intraday=key.intraday,
                                      attrs=attrs)
                self.cache.store(key, piece, first if cover else gap.first,
                                 last if cover else gap.first, cover=cover, replace=replace)
                replace = False
            elif cover:
                self.cache.mark_covered(key, first, last)


SIM_SOURCE = "ibkr-sim"
"""The cache source of bars fetched from bt_ibkr's gateway simulator."""


def _refuse_future(frame: pd.DataFrame, name: str, now: datetime, intraday: bool) -> None:
    """Raise DataValidationError when IB sent a bar stamped after ``now`` (the gateway's
    clock; daily bars: a session date after tomorrow's UTC date, which leaves room for
    exchanges east of UTC): a clock or time-zone error is reported, never dropped quietly."""
    if frame.empty:
        return
    newest = frame.index.max()
    if intraday:
        future = newest > pd.Timestamp(to_utc(now)) + pd.Timedelta(minutes=1)
    else:
        future = newest.date() > (to_utc(now) + timedelta(days=1)).date()
    if future:
        raise DataValidationError(
            f"ibkr {name}: IB sent a bar stamped {newest if intraday else newest.date()} after the gateway's clock "
            f"{to_utc(now):%Y-%m-%d %H:%M} UTC: a clock or time-zone error; check the "
            "gateway's clock and time zone")


def _trim(frame: pd.DataFrame, lo: datetime, hi: datetime, intraday: bool) -> pd.DataFrame:
    """Keep bars in [lo, hi): intraday by start time, daily by session date."""
    if frame.empty:
        return frame
    if intraday:
        return frame.loc[(frame.index >= lo) & (frame.index < hi)]
    lo_d = pd.Timestamp(lo.date())
    hi_d = pd.Timestamp((hi - timedelta(microseconds=1)).date())
    return frame.loc[(frame.index >= lo_d) & (frame.index <= hi_d)]
