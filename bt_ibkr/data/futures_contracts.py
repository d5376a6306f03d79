"""A back-adjusted continuous series built from IB's individual futures contracts, cached.

What ``python -m examples.backtest --source ibkr --futures ES`` loads for a futures symbol.
IB's own continuous future (CONTFUT, :mod:`bt_ibkr.futures.history`) is stitched by IB's roll
rule and cannot be asked for a past end date; this instead asks IB for each contract the
registry holds over the span (:meth:`FutureSpec.held_contract`), expired ones with
``includeExpired``, and stitches them with the registry's roll dates
(:func:`~bt_ibkr.futures.continuous.build_continuous`, ratio or difference):

1. the series itself from the cache, when one was built for exactly this span and method
   (:func:`~bt_ibkr.futures.continuous.load_continuous`, source ``ibkr-continuous``);
2. else every contract's daily bars from the cache (the same files as any IB bars, under the
   dataname ``ES-FUT-CME-USD-202403``), when they cover the span; both steps need no gateway;
3. else the gateway: each contract qualified (``includeExpired=True``), then its missing dates
   requested through :class:`~bt_ibkr.ib.historical.HistoricalData` (IB's pacing, retries,
   cache), one progress step per contract.

The built series is stored (step 1's entry). Steps 1 and 2 read IB's bars only: bars from
bt_ibkr's gateway simulator are filed as ``ibkr-sim`` (``ibkr-sim-continuous``) and served only
while the simulator answers, as for any symbol. Each contract fetched covers the days it is held
plus :data:`LEAD_DAYS` before, so that the new contract has a bar on the last day before its
roll, where the gap is measured.

IB keeps an expired future for 2 years after its expiry (its Historical Data Limitations): a
contract it no longer has is named in a :class:`~bt_ibkr.errors.UnknownSymbolError` that says
from which date IB can serve, and how to backtest older years (a CSV).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from bt_ibkr.cache import BarCache
from bt_ibkr.calendars import calendar_for, last_completed_session
from bt_ibkr.errors import ConfigError, DataError, SourceUnavailableError, UnknownSymbolError
from bt_ibkr.futures.continuous import (
    METHODS,
    ContinuousSeries,
    build_continuous,
    load_continuous,
    store_continuous,
)
from bt_ibkr.futures.registry import ContractMonth, FutureSpec, get_spec
from bt_ibkr.progress import progress
from bt_ibkr.utc import midnight
from bt_ibkr.validation import validate_bars

__all__ = ["EXPIRED_YEARS", "LEAD_DAYS", "ContractSpan", "IbkrContinuous", "continuous_frames",
           "continuous_info", "contract_plan", "default_start", "load_ibkr_continuous",
           "simulator_series_cached"]

log = logging.getLogger("bt_ibkr.data.futures_contracts")

EXPIRED_YEARS = 2
"""IB keeps an expired future's definition and bars for 2 years after its expiry."""

LEAD_DAYS = 10
"""Calendar days before a contract is held from which its bars are fetched (the roll gap is
measured on the last day before the roll; 10 days span any exchange holiday week)."""

_BAR = "1 day"


@dataclass(frozen=True)
class ContractSpan:
    """One contract to fetch and the dates ``first``..``last`` (inclusive) needed of it."""

    contract: ContractMonth
    first: date
    last: date

    def dataname(self, spec: FutureSpec) -> str:
        """The contract's dataname, e.g. ``ES-FUT-CME-USD-202403``: its cache entry's name."""
        return f"{spec.root}-FUT-{spec.exchange}-{spec.currency}-{self.contract.code}"

    def label(self) -> str:
        """e.g. ``ES 202403 (ESH4)``."""
        return f"{self.contract} ({self.contract.local_symbol})"


@dataclass(frozen=True)
class IbkrContinuous:
    """What :func:`load_ibkr_continuous` served: the ``series``, the ``spans`` it was built
    from, ``origin`` ("cache": no gateway touched, "ibkr": at least one contract fetched),
    ``gateway`` (describes the gateway, "" when not contacted) and ``simulated`` (the bars are
    bt_ibkr's simulator's)."""

    series: ContinuousSeries
    spans: tuple[ContractSpan, ...]
    origin: str
    gateway: str = ""
    simulated: bool = False

    def describe(self) -> str:
        """One phrase: how the series was built, e.g. ``ES continuous, ratio back-adjusted from
        8 contracts ESH2..ESZ3, 7 rolls``."""
        s = self.series
        first, last = self.spans[0].contract, self.spans[-1].contract
        return (f"{s.root} continuous, {s.method} back-adjusted from {len(self.spans)} "
                f"contracts {first.local_symbol}..{last.local_symbol}, {len(s.rolls)} rolls")


def years_before(day: date, years: int) -> date:
    """``day`` ``years`` years earlier (later when negative; Feb 29 -> Feb 28)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def default_start(end: date) -> date:
    """The start used when none is given: :data:`EXPIRED_YEARS` before ``end`` (as far back as
    IB keeps expired contracts when ``end`` is today)."""
    return years_before(end, EXPIRED_YEARS)


def contract_plan(spec: FutureSpec, first: date, last: date) -> list[ContractSpan]:
    """Return the contracts held from ``first`` to ``last`` (registry rule), oldest first, each
    with the dates to fetch: from :data:`LEAD_DAYS` before it is held (``first`` for the first)
    to the day before its roll (``last``, at most its last trade date, for the newest)."""
    spans: list[ContractSpan] = []
    begin = first
    held = spec.held_contract(first)
    for when, old, new in spec.roll_schedule(first, last):
        spans.append(ContractSpan(old, begin, when - timedelta(days=1)))
        begin, held = max(first, when - timedelta(days=LEAD_DAYS)), new
    expiry = spec.last_trade(held.year, held.month)
    spans.append(ContractSpan(held, begin, min(last, expiry)))
    return spans


def _request(spans: list[ContractSpan], first: date, last: date) -> dict:
    """What a stored series was built for (kept with it; a later run must match it)."""
    return {"first": first.isoformat(), "last": last.isoformat(),
            "contracts": [s.contract.code for s in spans]}


def _series_source(simulated: bool) -> str:
    return "ibkr-sim-continuous" if simulated else "ibkr-continuous"


def load_ibkr_continuous(root: str, start: date | None, end: date | None,
                         method: str = "ratio", *, host: str = "127.0.0.1", port: int = 4002,
                         client_id: int | None = None, cache: BarCache | None = None,
                         use_cache: bool = True, show_progress: bool = True,
                         **provider_options: Any) -> IbkrContinuous:
    """Return ``root``'s back-adjusted continuous daily series for ``start``..``end`` built
    from IB's contracts (see the module docstring for the order: series cache, contract cache,
    gateway).

    ``end`` None: the gateway's date (the gateway is then always asked); ``start`` None:
    :func:`default_start`. ``provider_options`` go to
    :class:`~bt_ibkr.data.provider.IBKRDataProvider` (e.g. ``pacing_scale``, ``timeout``).
    Raises ConfigError (unknown root or method, start after end), UnknownSymbolError naming a
    contract IB does not have, SourceUnavailableError (no gateway, retries exhausted),
    DataError (a contract without bars where it is held, or without the bar a roll gap is
    measured on).
    """
    spec = get_spec(root)
    if method not in METHODS:
        raise ConfigError(f"--futures-adjust {method!r}: use one of {', '.join(METHODS)}")
    if start is not None and end is not None and start > end:
        raise ConfigError(f"start {start} is after end {end}; swap them or fix one")
    cache = (cache if cache is not None else BarCache()) if use_cache else None
    from bt_ibkr.data.provider import IBKRDataProvider

    with IBKRDataProvider(host=host, port=port, client_id=client_id, use_cache=use_cache,
                          fallback_to_yfinance=False, cache=cache, progress=show_progress,
                          **provider_options) as provider:
        if end is not None and cache is not None:
            hit = _from_cache(provider, cache, spec, start or default_start(end), end, method)
            if hit is not None:
                return hit
        return _from_gateway(provider, cache, spec, start, end, method, show_progress)


def _from_cache(provider: Any, cache: BarCache, spec: FutureSpec, first: date, last: date,
                method: str) -> IbkrContinuous | None:
    """Steps 1 and 2 (no gateway): the stored series, or the contracts' cached bars."""
    spans = contract_plan(spec, first, last)
    request = _request(spans, first, last)
    stored = load_continuous(cache, spec.root, method, source=_series_source(False),
                             request=request)
    if stored is not None:
        log.info("futures: %s %s series %s..%s from the cache", spec.root, method, first, last)
        return IbkrContinuous(stored, tuple(spans), "cache")
    frames: dict[ContractMonth, pd.DataFrame] = {}
    for span in spans:
        frame = provider.history.cached(span.dataname(spec), midnight(span.first),
                                        midnight(span.last, 1), _BAR)
        if frame is None:
            log.info("futures: %s not cached for %s..%s; asking the gateway", span.label(),
                     span.first, span.last)
            return None
        frames[span.contract] = frame
    series = _build(spec, frames, method, "cache")
    store_continuous(cache, series, source=_series_source(False), request=request)
    return IbkrContinuous(series, tuple(spans), "cache")


def _build(spec: FutureSpec, frames: dict[ContractMonth, pd.DataFrame], method: str,
           source: str) -> ContinuousSeries:
    series = build_continuous(spec.root, frames, method, spec)
    frame = validate_bars(series.frame, f"{spec.root} continuous", intraday=False,
                          attrs={"source": source})
    return ContinuousSeries(series.root, series.method, frame, series.rolls, series.held)


def _from_gateway(provider: Any, cache: BarCache | None, spec: FutureSpec, start: date | None,
                  end: date | None, method: str, show_progress: bool) -> IbkrContinuous:
    """Step 3: qualify and fetch every contract over the span (missing dates only)."""
    from bt_ibkr.ib.connection import ConnectFailed

    connection = provider.connection
    connection.open()
    try:
        now = connection.run(_gateway_now(connection))
    except ConnectFailed as exc:
        raise SourceUnavailableError(exc.reason) from exc
    # the newest bar is the last session that has CLOSED on the gateway's clock: the one
    # still trading would enter the backtest (and the series cache) as a partial bar
    done = last_completed_session(now, calendar_for(spec.exchange))
    last = min(end, done) if end is not None else done
    first = start or default_start(last)
    if first > last:
        raise UnknownSymbolError(f"{spec.root}: no days between {first} and {last} (the "
                                 f"gateway's date is {now.date()}); pick an earlier --start")
    spans = contract_plan(spec, first, last)
    with progress(len(spans), f"IB {spec.root} contracts", enabled=show_progress) as tick:
        try:
            frames = connection.run(_fetch_all(provider, spec, spans, now, tick))
        except ConnectFailed as exc:
            raise SourceUnavailableError(exc.reason) from exc
    simulated = bool(connection.simulated)
    fetched = any(f.attrs.get("source") != "cache" for f in frames.values())
    series = _build(spec, frames, method, "ibkr" if fetched else "cache")
    if cache is not None:
        store_continuous(cache, series, source=_series_source(simulated),
                         request=_request(spans, first, last))
    return IbkrContinuous(series, tuple(spans), "ibkr" if fetched else "cache",
                          connection.describe(), simulated)


async def _gateway_now(connection: Any) -> datetime:
    await connection.ensure_connected(connection.connect_timeout + 5)
    return await connection.server_time(connection.request_timeout)


async def _fetch_all(provider: Any, spec: FutureSpec, spans: list[ContractSpan], now: datetime,
                     tick: Callable[[str], None]) -> dict[ContractMonth, pd.DataFrame]:
    """Every span's bars, oldest contract first (paced by the provider's HistoricalData)."""
    out: dict[ContractMonth, pd.DataFrame] = {}
    for span in spans:
        contract, tz = await _qualify(provider.connection, spec, span, now)
        name = span.dataname(spec)
        frame = await provider.history.bars(name, midnight(span.first), midnight(span.last, 1),
                                            _BAR, "TRADES", True, contract=contract, tz=tz,
                                            now=now)
        if frame.empty:
            raise DataError(f"IB returned no daily bars for {span.label()} between {span.first} "
                            f"and {span.last}, where the {spec.root} series holds it; pick "
                            "another --start/--end, or give the bars as a CSV (--source csv)")
        log.info("futures: %s %d bars %s..%s (%s)", span.label(), len(frame),
                 frame.index[0].date(), frame.index[-1].date(), frame.attrs.get("source"))
        out[span.contract] = frame
        tick(span.contract.local_symbol)
    return out


async def _qualify(connection: Any, spec: FutureSpec, span: ContractSpan,
                   now: datetime) -> tuple[Any, str]:
    """Return ``(contract, exchange time zone)`` of the span's contract, asked with
    ``includeExpired`` (and the flag kept on the contract for its history requests).
    UnknownSymbolError names the contract and what to do when IB does not have it."""
    from bt_ibkr.ib import client as ibc

    c = span.contract
    asked = ibc.ib_module.Future(spec.root, c.code, spec.exchange, currency=spec.currency,
                                 includeExpired=True)
    try:
        details = await connection.qualify(asked, span.dataname(spec))
    except UnknownSymbolError:
        raise UnknownSymbolError(_missing_text(spec, span, now.date())) from None
    contract = details.contract
    contract.includeExpired = True
    return contract, details.timeZoneId or "America/Chicago"


def _missing_text(spec: FutureSpec, span: ContractSpan, today: date) -> str:
    c = span.contract
    expiry = spec.last_trade(c.year, c.month)
    kept = years_before(today, EXPIRED_YEARS)
    head = f"--futures {spec.root}: IB has no {span.label()}, held {span.first}..{span.last}"
    if expiry < kept:
        return (f"{head}: it expired on {expiry}, and IB keeps an expired future for "
                f"{EXPIRED_YEARS} years after its expiry (until "
                f"{years_before(expiry, -EXPIRED_YEARS)}); start on or after {kept} (--start "
                f"{kept}), or backtest earlier years from a CSV of the continuous series "
                f"(--source csv --csv FILE --futures {spec.root})")
    return (f"{head} (last trade {expiry}, asked as {spec.root} {c.code} on {spec.exchange} in "
            f"{spec.currency} with includeExpired): check that the account's gateway lists "
            f"{spec.root} futures on {spec.exchange} (TWS: the contract search), or give the "
            f"continuous series as a CSV (--source csv --csv FILE --futures {spec.root})")


def continuous_frames(futures: dict[str, str], start: date | None, end: date | None,
                      method: str | None = None, *, host: str = "127.0.0.1", port: int = 4002,
                      client_id: int | None = None, cache: BarCache | None = None,
                      use_cache: bool = True, show_progress: bool = True,
                      **provider_options: Any) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Return ``({symbol: continuous frame}, notes)`` for ``futures`` (``{symbol: root}``),
    each from :func:`load_ibkr_continuous` (``method`` None: ratio); ``notes`` says how each
    was built and whether it came from the cache. Each frame's attrs carry ``symbol``,
    ``gateway``, ``simulated`` and ``futures`` (root, method, contracts, rolls as JSON) for
    the reports. Raises as :func:`load_ibkr_continuous`."""
    frames: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for symbol, root in futures.items():
        got = load_ibkr_continuous(root, start, end, method or "ratio", host=host, port=port,
                                   client_id=client_id, cache=cache, use_cache=use_cache,
                                   show_progress=show_progress, **provider_options)
        frame = got.series.frame.copy()
        frame.attrs = dict(got.series.frame.attrs, symbol=symbol, gateway=got.gateway,
                           simulated=got.simulated, futures=continuous_info(got))
        frames[symbol] = frame
        where = "all from the cache" if got.origin == "cache" else "contracts fetched"
        notes.append(f"{symbol}: {got.describe()}, {where}")
    return frames, notes


def continuous_info(got: IbkrContinuous) -> dict:
    """The JSON-safe description of a built series, for a run's summary: root, method, the
    contracts (local symbols, oldest first) and the rolls."""
    s = got.series
    return {"root": s.root, "method": s.method, "built_from": "ibkr contracts",
            "contracts": [span.contract.local_symbol for span in got.spans],
            "rolls": [r.to_json() for r in s.rolls]}


def simulator_series_cached(cache: BarCache | None, roots: list[str]) -> list[str]:
    """Return the roots of which ``cache`` (default: the default cache) holds a continuous
    series built from bt_ibkr's gateway simulator (never served as IB's)."""
    from bt_ibkr.futures.continuous import continuous_key

    cache = cache if cache is not None else BarCache()
    return [r for r in roots
            if any(cache.path_for(continuous_key(r, m, _series_source(True))).exists()
                   for m in METHODS)]
