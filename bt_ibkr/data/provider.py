"""IBKRDataProvider: historical bars and snapshot prices, IB first, yfinance as the fallback.

For research notebooks, CLIs, checks and backtests: code that is not running inside backtrader
and wants bars now::

    from bt_ibkr import IBKRDataProvider

    with IBKRDataProvider(port=4002) as p:
        spy = p.get_historical_data("SPY", "1 Y", "1 day")        # canonical bar frame
        px = p.get_real_time_price("SPY")                           # float
        many = p.get_multiple_symbols_data(["SPY", "AAPL", "NVDA"], "1 M", "1 day")
        p.last_sources        # {"SPY": "ibkr", ...}; p.last_attempts says why others did not

Source chain per symbol: the parquet cache (only the missing date ranges are fetched), then IB
when a gateway answers on ``host:port``, then yfinance when ``fallback_to_yfinance``; when all
fail, a :class:`~bt_ibkr.errors.DataError` names every source tried and why it did not serve.

IB history goes the one way every layer uses (:mod:`bt_ibkr.ib.historical`): split by IB's
maximum duration per bar size, paced, transient failures retried with back-off, cached; several
symbols are fetched concurrently on one connection with one shared pacer.

Ranges: ``duration`` is a calendar span ending at ``end`` ("1 Y" ending 2023-12-29 = the
sessions dated 2022-12-30..2023-12-29; "30 D" = 30 calendar days), because the cache is keyed
by dates. ``end`` None means now on the gateway's clock; a date means "through that date".
:meth:`IBKRDataProvider.get_ib_bars` sends ONE request counted IB's way ("5 D" of daily bars =
the last 5 sessions).

Threading: the provider owns one :class:`~bt_ibkr.ib.connection.IBConnection` (its own loop thread,
``bt_ibkr-provider``), opened on first use, so it works the same from a plain script, a CLI and
a Jupyter notebook whose own loop is already running. Every public method blocks the caller
until done. ``close()`` (or leaving the ``with`` block) disconnects and ends the thread.

Returned frames follow the canonical bar convention of :mod:`bt_ibkr.validation` with
``attrs["source"]`` = "ibkr" (IB served at least part of it), "cache" (all from the cache) or
"yahoo".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import pandas as pd

from bt_ibkr.cache import BarCache
from bt_ibkr.errors import ConfigError, DataError, SourceUnavailableError, UnknownSymbolError
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.ib.bars import duration_delta, is_intraday, normalize_bar_size, parse_duration
from bt_ibkr.ib.codes import PORT_HINT
from bt_ibkr.ib.connection import ConnectFailed, IBConnection
from bt_ibkr.ib.historical import (
    ADJUSTED,
    Chunk,
    HistoricalData,
    HistoryStats,
    normalize_request,
)
from bt_ibkr.ib.pacing import HistoricalPacer
from bt_ibkr.ib.parsing import bars_frame
from bt_ibkr.ib.snapshot import snapshot_price
from bt_ibkr.progress import progress
from bt_ibkr.utc import to_utc, utc_now
from bt_ibkr.validation import validate_bars

__all__ = ["Attempt", "IBKRDataProvider", "load_ibkr_history"]

log = logging.getLogger("bt_ibkr.data.provider")

T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One source tried for one symbol: ``source`` ("cache", "ibkr", "yahoo"), whether it
    ``served``, and ``detail`` (what it served, or why it did not)."""

    source: str
    served: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}"


def _parse_end(end) -> datetime | None:
    """None stays None ("now"); a date (or a date-only string / midnight) means the end of that
    day (bars of that date included); naive datetimes are UTC."""
    if end is None:
        return None
    if isinstance(end, date) and not isinstance(end, datetime):
        return to_utc(end) + timedelta(days=1)
    try:
        ts = pd.Timestamp(end)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"end {end!r} is not a date/time (e.g. '2024-01-31'): {exc}") from None
    if ts.tzinfo is None and ts == ts.normalize():
        return to_utc(ts.date()) + timedelta(days=1)
    return to_utc(ts.to_pydatetime())


def _parse_start(start) -> datetime:
    """A date (or date-only string) means 00:00 UTC of that day; naive datetimes are UTC."""
    if start is None:
        raise ConfigError("start is required, e.g. '2015-01-01'")
    if isinstance(start, date) and not isinstance(start, datetime):
        return to_utc(start)
    try:
        ts = pd.Timestamp(start)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"start {start!r} is not a date/time (e.g. '2015-01-01'): {exc}") \
            from None
    return to_utc(ts.to_pydatetime())


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
        market_data_type: 1 live (falls back to 3 delayed when not subscribed), 3 delayed.
        yf_timeout: seconds each yfinance HTTP request may take.

    Raises ConfigError for a bad port, pacing scale or market-data type.
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
        self.use_cache = use_cache
        self.fallback_to_yfinance = fallback_to_yfinance
        self.cache = cache if cache is not None else (BarCache() if use_cache else None)
        self.progress = progress
        self.timeout = float(timeout)
        self.yf_timeout = float(yf_timeout)
        self.connection = IBConnection(host, port, client_id, readonly=True,
                                 connect_timeout=connect_timeout, request_timeout=timeout,
                                 market_data_type=market_data_type, replace_client_id=True,
                                 name="bt_ibkr-provider")
        self.history = HistoricalData(
            self.connection, cache=self.cache if use_cache else None,
            pacer=HistoricalPacer.for_gateway(pacing_scale), pacing=pacing, timeout=timeout,
            max_retries=max_retries, backoff=backoff, max_concurrent=max_concurrent)
        #: symbol -> the source that served it in the last call ("ibkr", "cache", "yahoo")
        self.last_sources: dict[str, str] = {}
        #: symbol -> every source tried in the last call, in order, with the reason
        self.last_attempts: dict[str, list[Attempt]] = {}
        #: symbol -> True when the last snapshot price was delayed data
        self.last_price_delayed: dict[str, bool] = {}

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> IBKRDataProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def at(cls, gateway: GatewayAddress, **kwargs: Any) -> IBKRDataProvider:
        """Return a provider for ``gateway`` (host, port, clientId); ``kwargs`` as the
        constructor's."""
        return cls(gateway.host, gateway.port, gateway.client_id, **kwargs)

    def __repr__(self) -> str:
        return (f"IBKRDataProvider(host={self.host!r}, port={self.port}, "
                f"client_id={self.client_id}, cache={self.cache!r})")

    @property
    def host(self) -> str:
        return self.connection.host

    @property
    def port(self) -> int:
        return self.connection.port

    @property
    def client_id(self) -> int:
        """The API client id (a clash with another connection replaces it)."""
        return self.connection.client_id

    @property
    def stats(self) -> HistoryStats:
        """Counters of the IB history requests (requests, retries, pacing violations, ...)."""
        return self.history.stats

    def close(self) -> None:
        """Disconnect from the gateway and stop the provider's thread (idempotent)."""
        self.connection.close()

    def connect(self) -> list[str]:
        """Open the API connection now (normally opened on first use); return the managed accounts.

        Raises SourceUnavailableError saying why it failed (nothing listens on the port, the
        API handshake never completes, the client id is in use).
        """
        self._run(self.connection.ensure_connected())
        return list(self.connection.managed_accounts)

    @property
    def server_version(self) -> int | None:
        """The TWS API server version of the open connection (None when not connected)."""
        return self.connection.server_version

    @property
    def connected(self) -> bool:
        """True while the provider holds an open API connection."""
        return self.connection.connected

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the connection's loop; a failed connect is a SourceUnavailableError."""
        self.connection.open()
        try:
            return self.connection.run(coro)
        except ConnectFailed as exc:
            raise SourceUnavailableError(exc.reason) from exc

    # ------------------------------------------------------------------ the chain
    def _serve(self, symbols: list[str], duration: str | None, bar_size: str,
               start: datetime | None, end, what: str, use_rth: bool,
               allow_yahoo: bool) -> dict[str, pd.DataFrame]:
        """The chain for several symbols; raises DataError naming each failed symbol/source."""
        if not symbols:
            raise ConfigError("no symbols given; pass e.g. ['SPY', 'AAPL']")
        bad = [s for s in symbols if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ConfigError(f"symbols must be non-empty strings, got {bad!r}")
        bar_size, what = normalize_request(bar_size, what)
        intraday = is_intraday(bar_size)
        end_dt = _parse_end(end)
        span = duration_delta(duration) if duration is not None else None

        def begin(end_at: datetime) -> datetime:
            return start if start is not None else to_utc(
                (pd.Timestamp(end_at) - span).to_pydatetime())

        attempts: dict[str, list[Attempt]] = {s: [] for s in symbols}
        frames: dict[str, pd.DataFrame] = {}
        errors: dict[str, list[Exception]] = {s: [] for s in symbols}

        # 1) cache, when the range is known without asking the gateway
        if self.history.cache is not None and end_dt is not None:
            for sym in symbols:
                frame = self.history.cached(sym, begin(end_dt), end_dt, bar_size, what,
                                            use_rth)
                if frame is not None:
                    frames[sym] = frame
                    attempts[sym].append(Attempt("cache", True, f"{len(frame)} bars"))
                    continue
                key = self.history.cache_key(sym, bar_size, what, use_rth)
                gaps = self.history.cache.missing(key, begin(end_dt).date(),
                                                  (end_dt - timedelta(microseconds=1)).date())
                shown = ", ".join(f"{a}..{b}" for a, b in gaps[:3]) or "no bars"
                attempts[sym].append(Attempt("cache", False, f"lacks {shown}"))

        # 2) IB
        todo = [s for s in symbols if s not in frames]
        if todo:
            self._serve_ib(todo, begin, end_dt, bar_size, what, use_rth, frames, attempts,
                           errors)

        # 3) yahoo
        todo = [s for s in symbols if s not in frames]
        if todo and allow_yahoo and self.fallback_to_yfinance:
            end_at = end_dt or utc_now()
            for sym in todo:
                try:
                    frame = self._serve_yahoo(sym, duration, bar_size, what, begin(end_at),
                                              end_at, intraday)
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

    def _serve_ib(self, todo: list[str], begin: Callable[[datetime], datetime],
                  end_dt: datetime | None, bar_size: str, what: str, use_rth: bool,
                  frames: dict, attempts: dict, errors: dict) -> None:
        def fail(sym: str, exc: Exception) -> None:
            errors[sym].append(exc)
            attempts[sym].append(Attempt("ibkr", False, str(exc)))

        try:
            now = self._run(self._gateway_now())
        except SourceUnavailableError as exc:
            for sym in todo:
                fail(sym, exc)
            return
        end_at = end_dt or now
        start_at = begin(end_at)
        try:
            total = sum(len(self.history.plan(s, start_at, end_at, bar_size, what, use_rth, now))
                        for s in todo)
        except DataError:
            total = None
        with progress(total, f"IB {bar_size}", enabled=self.progress) as tick:
            results = self._run(self._fetch_many(todo, start_at, end_at, bar_size, what,
                                                 use_rth, now, tick))
        for sym, res in results.items():
            if isinstance(res, ConnectFailed):
                res = SourceUnavailableError(res.reason)
            if isinstance(res, Exception):
                fail(sym, res)
            elif res.empty:
                fail(sym, UnknownSymbolError(
                    f"IB returned no {bar_size} bars for {sym!r} between {start_at.date()} and "
                    f"{(end_at - timedelta(microseconds=1)).date()}; check the dates "
                    f"(weekend/holiday?) and the contract"))
            else:
                frames[sym] = res
                # where the bars come from: a real gateway or bt_ibkr's simulator, and when
                res.attrs["gateway"] = self.connection.describe()
                res.attrs["gateway_now"] = now.isoformat()
                res.attrs["simulated"] = bool(self.connection.simulated)
                if res.attrs.get("source") == "cache":
                    attempts[sym].append(Attempt("cache", True, f"{len(res)} bars"))

    async def _gateway_now(self) -> datetime:
        await self.connection.ensure_connected(self.connection.connect_timeout + 5)
        return await self.connection.server_time(self.timeout)

    async def _fetch_many(self, symbols: list[str], start: datetime, end: datetime,
                          bar_size: str, what: str, use_rth: bool, now: datetime,
                          tick: Callable[[str], None]) -> dict[str, Any]:
        """Every symbol's frame concurrently (one connection, one pacer); per symbol the frame
        or the exception it raised."""
        import asyncio

        async def one(sym: str) -> Any:
            try:
                return await self.history.bars(sym, start, end, bar_size, what, use_rth,
                                               now=now, tick=tick)
            except Exception as exc:  # noqa: BLE001 - reported per symbol
                return exc

        results = await asyncio.gather(*(one(s) for s in symbols))
        return dict(zip(symbols, results, strict=True))

    def _serve_yahoo(self, sym: str, duration: str | None, bar_size: str, what: str,
                     start: datetime, end: datetime, intraday: bool) -> pd.DataFrame:
        from feeds.yahoo import download_yahoo, yahoo_plan

        start_d, end_d = start.date(), (end - timedelta(microseconds=1)).date()
        plan = yahoo_plan(duration, bar_size, start_d, end_d)
        parts = [download_yahoo(sym, lo, hi, plan.interval, what == ADJUSTED,
                                timeout=self.yf_timeout) for lo, hi in plan.pieces]
        frame = pd.concat(parts) if len(parts) > 1 else parts[0]
        frame = frame[~frame.index.duplicated(keep="last")].sort_index()
        attrs = dict(parts[0].attrs)
        if intraday:
            frame = frame.loc[(frame.index >= start) & (frame.index < end)]
        if frame.empty:
            raise UnknownSymbolError(f"yfinance returned no {bar_size} bars for {sym!r} between "
                                     f"{start_d} and {end_d}")
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

        async def fetch() -> tuple[list, str]:
            now = await self._gateway_now()
            contract, tz = await self.connection.qualify_dataname(symbol)
            chunk = Chunk(start=now, end=now, duration=" ".join(duration.upper().split()))
            return await self.history.request(contract, chunk, size, what, use_rth,
                                              name=symbol), tz

        bars, tz = self._run(fetch())
        if not bars:
            raise UnknownSymbolError(f"IB returned no {size} bars for {symbol!r} over "
                                     f"{duration!r}")
        frame = validate_bars(bars_frame(bars, is_intraday(size)), f"ibkr {symbol}",
                              intraday=is_intraday(size),
                              attrs={"symbol": symbol, "source": "ibkr", "tz": tz,
                                     "adjusted": what == ADJUSTED})
        self.last_sources[symbol] = "ibkr"
        self.last_attempts[symbol] = [Attempt("ibkr", True, f"{len(frame)} bars")]
        return frame

    def get_continuous_future(self, root: str, duration: str = "1 Y", bar_size: str = "1 day",
                              use_rth: bool = True):
        """Return IB's continuous history of futures ``root`` (one CONTFUT request ending now;
        IB refuses an explicit end) as a :class:`bt_ibkr.futures.history.ContFutHistory`
        (bars plus the front contract). Raises ConfigError for an unknown root (naming the
        known ones), UnknownSymbolError, SourceUnavailableError, DataError."""
        from bt_ibkr.futures.history import contfut_history
        from bt_ibkr.futures.registry import get_spec

        spec = get_spec(root)
        size = normalize_bar_size(bar_size)
        parse_duration(duration)
        return self._run(contfut_history(self.connection, self.history, spec, duration, size,
                                         use_rth=use_rth))

    def get_real_time_price(self, symbol: str) -> float:
        """Return the current price of ``symbol`` from an IB snapshot (reqMktData snapshot).

        Asks for live data first and, when not subscribed, for delayed data (reqMarketDataType
        3); ``self.last_price_delayed[symbol]`` says which one answered. Without IB, and with
        ``fallback_to_yfinance``, the last daily close from yfinance. Raises
        SourceUnavailableError naming every source tried when none answers.
        """
        attempts: list[Attempt] = []

        async def snap() -> tuple[float, bool]:
            await self.connection.ensure_connected(self.connection.connect_timeout + 5)
            contract, _tz = await self.connection.qualify_dataname(symbol)
            return await snapshot_price(self.connection, contract, symbol, self.timeout)

        try:
            price, delayed = self._run(snap())
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

            today = utc_now().date()
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


# ---------------------------------------------------------------------------------------------
# the backtest entry point


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
    "ibkr". No yfinance fallback: the caller's chain decides that.

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
