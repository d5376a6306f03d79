"""The backtest's source chain: which source serves a request for historical bars, and why.

``load_history(HistoryRequest(...))`` returns validated canonical bar frames (see
bt_ibkr.validation) for every requested symbol, all from ONE source (a portfolio must not mix
adjusted and raw prices), plus a one-line message saying which source served and why the others
did not. Sources:

- ``auto``: cache (yahoo entries) -> yahoo -> embedded sample. With no symbols (or only S&P 500
  look-alikes such as SPY), the sample stands in with ^GSPC, and the message says so.
- ``yahoo``: cache -> yahoo; results are cached. Only the missing date ranges are downloaded.
- ``sample``: the arch package's ^GSPC / ^IXIC daily bars, 1999-01-04..2018-12-31.
- ``csv``: one CSV file per symbol.

Default range for cache/yahoo: the 10 years ending today. If yahoo is unreachable and the cache
holds the request except for its most recent days, and the user did not give an end date, the
cache is served as it is (the message names the date it ends on) rather than switching to a
different instrument.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd

from bt_ibkr.cache import BarCache, CacheKey
from bt_ibkr.errors import (
    ConfigError,
    DataError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.ib.bars import INTERVAL_BAR_SIZES
from bt_ibkr.progress import progress
from bt_ibkr.sources import REQUEST_SOURCES
from bt_ibkr.validation import as_date, describe_range

__all__ = [
    "DEFAULT_SYMBOLS",
    "DEFAULT_YEARS",
    "HistoryRequest",
    "HistoryResult",
    "INTERVAL_BAR_SIZES",
    "SPY_LIKE",
    "VALID_SOURCES",
    "load_history",
    "yahoo_cache_key",
]

log = logging.getLogger("bt_ibkr.data.history")

VALID_SOURCES = REQUEST_SOURCES
DEFAULT_SYMBOLS = ("SPY",)
DEFAULT_YEARS = 10
SPY_LIKE = frozenset({"SPY", "^GSPC", "GSPC", "SPX", "SP500", "S&P500", "VOO", "IVV"})
"""Symbols the ^GSPC sample may stand in for (S&P 500 index and its large ETFs)."""

_WHAT_TO_DO = (
    "check your network and retry, use --source csv with one file per symbol, or "
    "--source sample with ^GSPC or ^IXIC"
)


@dataclass
class HistoryRequest:
    """What to load. See load_history."""

    symbols: list[str] | None = None  # None -> defaults (["SPY"]) and default dates
    source: str = "auto"  # auto | yahoo | sample | csv | ibkr
    start: date | None = None
    end: date | None = None
    csv_paths: list[Path] | None = None  # for source csv: one path per symbol (or one path)
    interval: str = "1d"
    auto_adjust: bool = True
    cache: BarCache | None = None  # None -> default BarCache(); use_cache flag below
    use_cache: bool = True
    progress: bool = True  # rich progress bar over symbols when > 1 symbol
    # for source ibkr: the gateway (TWS/IB Gateway or the simulator); client_id None: a free id
    gateway: GatewayAddress = field(default_factory=GatewayAddress)
    # for source ibkr: symbols that are continuous futures ({symbol: root}), built from IB's
    # contracts (bt_ibkr.data.futures_contracts) with futures_adjust (None: ratio)
    futures: dict[str, str] = field(default_factory=dict)
    futures_adjust: str | None = None


@dataclass
class HistoryResult:
    """What load_history served."""

    frames: dict[str, pd.DataFrame]  # symbol -> validated frame, in request order
    source: str  # what served (cache|yahoo|sample|csv)
    message: str  # ONE line: which source served and why the others did not
    tried: list[tuple[str, str]] = field(default_factory=list)  # (source, outcome) in order


def yahoo_cache_key(symbol: str, interval: str = "1d", auto_adjust: bool = True) -> CacheKey:
    """Return the CacheKey under which yahoo bars for ``symbol`` are cached."""
    return CacheKey(
        source="yahoo",
        symbol=symbol.strip().upper(),
        bar_size=INTERVAL_BAR_SIZES[interval],
        what_to_show="ADJUSTED_LAST" if auto_adjust else "TRADES",
        use_rth=True,
        adjusted=bool(auto_adjust),
    )


# ---------------------------------------------------------------------------------------------
# helpers


def _today() -> date:
    return date.today()


def _span(frames: dict[str, pd.DataFrame]) -> str:
    """``first..last`` over all frames (dates only)."""
    first = min(f.index[0] for f in frames.values())
    last = max(f.index[-1] for f in frames.values())
    return f"{first:%Y-%m-%d}..{last:%Y-%m-%d}"


def _strip_source(text: str, source: str) -> str:
    text = " ".join(str(text).split())
    prefix = f"{source} "
    return text[len(prefix):] if text.lower().startswith(prefix) else text


def _check_overlap(frames: dict[str, pd.DataFrame]) -> None:
    items = list(frames.items())
    for i, (a, fa) in enumerate(items):
        for b, fb in items[i + 1:]:
            if fa.index[-1] < fb.index[0] or fb.index[-1] < fa.index[0]:
                raise DataError(
                    f"{a} ({describe_range(fa)}) and {b} ({describe_range(fb)}) have no dates in "
                    f"common, so they cannot be traded as one portfolio; pick dates both cover "
                    f"or run them separately"
                )


def _result(
    frames: dict[str, pd.DataFrame],
    source: str,
    tried: list[tuple[str, str]],
    extra: str = "",
    own: str = "",
) -> HistoryResult:
    """Build the result; the message lists why the other sources did not serve, then ``own``."""
    _check_overlap(frames)
    others = "; ".join(f"{s}: {why}" for s, why in tried if s != source)
    notes = "; ".join(p for p in (others, own) if p)
    symbols = ", ".join(frames)
    message = f"data: {source} {symbols} {_span(frames)}{extra}"
    if notes:
        message += f" ({notes})"
    log.info("%s", message)
    return HistoryResult(frames=frames, source=source, message=message, tried=tried)


# ---------------------------------------------------------------------------------------------
# yahoo (+ its cache entries)


def _cache_lookup(
    cache: BarCache, symbols: list[str], interval: str, adjust: bool, start: date, end: date
) -> tuple[dict[str, pd.DataFrame] | None, str]:
    """Serve every symbol from the cache, or return (None, why not)."""
    frames: dict[str, pd.DataFrame] = {}
    for sym in symbols:
        key = yahoo_cache_key(sym, interval, adjust)
        covered = cache.coverage(key)
        if not covered:
            return None, f"no entry for {sym}"
        gaps = cache.missing(key, start, end)
        if gaps:
            shown = ", ".join(f"{a}..{b}" for a, b in gaps[:3])
            return None, f"{sym} lacks {shown}"
        frame = cache.load(key, start, end)
        if frame is None:
            return None, f"no {sym} bars between {start} and {end}"
        frames[sym] = frame
    return frames, "hit"


def _stale_cache(
    cache: BarCache, symbols: list[str], interval: str, adjust: bool, start: date, end: date
) -> tuple[dict[str, pd.DataFrame], date] | None:
    """Frames when the cache covers the request except a tail ending at ``end``, else None."""
    frames: dict[str, pd.DataFrame] = {}
    ends: list[date] = []
    for sym in symbols:
        key = yahoo_cache_key(sym, interval, adjust)
        gaps = cache.missing(key, start, end)
        if not gaps or len(gaps) > 1 or gaps[0][1] != end or gaps[0][0] <= start:
            return None
        frame = cache.load(key, start, gaps[0][0] - timedelta(days=1))
        if frame is None:
            return None
        frames[sym] = frame
        ends.append(gaps[0][0] - timedelta(days=1))
    return frames, min(ends)


def _adjustment_moved(old: pd.DataFrame | None, new: pd.DataFrame) -> bool:
    """True when overlapping closes differ: the source re-adjusted history (dividend/split)."""
    if old is None:
        return False
    common = old.index.intersection(new.index)
    if len(common) == 0:
        return False
    a = old.loc[common, "close"].to_numpy()
    b = new.loc[common, "close"].to_numpy()
    return bool((abs(a - b) > 1e-6 * abs(b)).any())


def _fetch_yahoo_symbol(
    sym: str, req: HistoryRequest, cache: BarCache | None, start: date, end: date
) -> tuple[pd.DataFrame, str]:
    """Download what the cache lacks for ``sym`` and return (frame for start..end, note)."""
    from feeds.yahoo import download_yahoo

    interval, adjust = req.interval, req.auto_adjust
    if cache is None:
        return download_yahoo(sym, start, end, interval, adjust), "downloaded"

    key = yahoo_cache_key(sym, interval, adjust)
    last_complete = _today() - timedelta(days=1)  # today's bar may still change
    gaps = cache.missing(key, start, end)
    has_bars = bool(cache.coverage(key))
    fetched = 0
    for gap_start, gap_end in gaps:
        # Overlap a few cached days so a re-adjusted history (new dividend) is noticed.
        fetch_start = gap_start - timedelta(days=10) if has_bars and adjust else gap_start
        log.info("yahoo: fetching %s %s..%s (cache lacks %s..%s)",
                 sym, fetch_start, gap_end, gap_start, gap_end)
        try:
            frame = download_yahoo(sym, fetch_start, gap_end, interval, adjust)
        except UnknownSymbolError:
            if not has_bars:
                raise
            # A known symbol with no bars in a short gap (weekend, holiday): nothing to add.
            if gap_start <= min(gap_end, last_complete):
                cache.mark_covered(key, gap_start, min(gap_end, last_complete))
            continue
        if has_bars and _adjustment_moved(
            cache.load(key, fetch_start, gap_start - timedelta(days=1)), frame
        ):
            log.info("yahoo: %s history was re-adjusted since it was cached; refetching "
                     "%s..%s", sym, start, end)
            frame = download_yahoo(sym, start, end, interval, adjust)
            cache.store(key, frame, start, max(start, min(end, last_complete)), replace=True,
                        cover=start <= min(end, last_complete))
            fetched += len(frame)
            break
        cover_end = min(gap_end, last_complete)
        cache.store(key, frame, gap_start, max(gap_start, cover_end),
                    cover=gap_start <= cover_end)
        fetched += int((frame.index >= _ts_for(frame, gap_start)).sum())  # not the overlap
    frame = cache.load(key, start, end)
    if frame is None:
        raise UnknownSymbolError(
            f"yfinance returned no rows for {sym!r} between {start} and {end} - check the "
            f"ticker on finance.yahoo.com or pick another --source"
        )
    frame.attrs.update(source="yahoo")  # read back through the cache, but served by yahoo
    note = "downloaded, cached" if not has_bars else f"updated the cache (+{fetched} bars)"
    return frame, note


def _serve_yahoo(
    symbols: list[str], req: HistoryRequest, cache: BarCache | None, start: date, end: date
) -> tuple[dict[str, pd.DataFrame], str]:
    """All symbols from yahoo (through the cache) or raise the first failure (DataError)."""
    frames: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    with progress(len(symbols), "yahoo", req.progress) as advance:
        for i, sym in enumerate(symbols):
            try:
                frame, note = _fetch_yahoo_symbol(sym, req, cache, start, end)
            except DataError as exc:
                if frames:  # name the symbols that did work: the request must be served whole
                    exc.args = (f"{exc} ({', '.join(frames)} ok, but one request is served by "
                                f"one source)",)
                raise
            frame.attrs["symbol"] = sym
            frames[sym] = frame
            notes.append(note)
            advance(sym)
            if i == 0:
                log.info("yahoo: %s %s", sym, note)
    outcome = notes[0] if len(set(notes)) == 1 else ", ".join(sorted(set(notes)))
    return frames, outcome


# ---------------------------------------------------------------------------------------------
# sample, csv


def _sample_plan(
    req: HistoryRequest, symbols: list[str], explicit: bool
) -> tuple[list[str], date | None, date | None, str]:
    """Return (sample symbols, start, end, note) or raise DataError saying why not."""
    from feeds.sample import SAMPLE_END, SAMPLE_START, SAMPLE_SYMBOLS, resolve_sample_symbol

    if req.interval != "1d":
        raise DataError(f"the sample has daily bars only (asked for interval {req.interval})")
    names = [s.upper().replace(" ", "") for s in symbols]
    if not explicit or all(n in SPY_LIKE for n in names):
        chosen = ["^GSPC"]
        note = "" if names == ["^GSPC"] else f" in place of {', '.join(symbols)}"
    else:
        unknown = []
        chosen = []
        for sym in symbols:
            try:
                chosen.append(resolve_sample_symbol(sym))
            except UnknownSymbolError:
                unknown.append(sym)
        if unknown:
            raise UnknownSymbolError(
                f"has no {', '.join(unknown)} (only {', '.join(SAMPLE_SYMBOLS)})"
            )
        chosen = list(dict.fromkeys(chosen))
        note = ""
    if req.start is None and req.end is None:
        return chosen, None, None, note
    start = max(req.start or SAMPLE_START, SAMPLE_START)
    end = min(req.end or SAMPLE_END, SAMPLE_END)
    if start > end:
        asked = (f"{req.start}..{req.end}" if req.start and req.end
                 else f"from {req.start}" if req.start else f"up to {req.end}")
        raise DataError(
            f"covers {SAMPLE_START}..{SAMPLE_END} only, outside the requested range ({asked})"
        )
    return chosen, start, end, note


def _serve_sample(chosen: list[str], start, end) -> dict[str, pd.DataFrame]:
    from feeds.sample import load_sample

    return {sym: load_sample(sym, start, end) for sym in chosen}


def _serve_csv(req: HistoryRequest) -> dict[str, pd.DataFrame]:
    from feeds.csv_source import load_csv

    paths = [Path(p) for p in (req.csv_paths or [])]
    if not paths:
        raise ConfigError("source 'csv' needs at least one CSV file (--csv FILE[,FILE...])")
    symbols = list(req.symbols or [])
    if symbols and len(symbols) != len(paths):
        raise ConfigError(
            f"source 'csv' needs one file per symbol: got {len(symbols)} symbol(s) "
            f"({', '.join(symbols)}) and {len(paths)} file(s) ({', '.join(map(str, paths))})"
        )
    names = symbols or [p.stem for p in paths]
    frames: dict[str, pd.DataFrame] = {}
    with progress(len(names), "csv", req.progress) as advance:
        for sym, path in zip(names, paths, strict=True):
            frame = load_csv(path, sym)
            full = describe_range(frame)
            if req.start is not None:
                frame = frame.loc[frame.index >= _ts_for(frame, req.start)]
            if req.end is not None:
                frame = frame.loc[frame.index < _ts_for(frame, req.end + timedelta(days=1))]
            if frame.empty:
                raise DataError(
                    f"{path}: no rows between {req.start or '...'} and {req.end or '...'}; the "
                    f"file covers {full} - adjust --start/--end"
                )
            frames[sym] = frame
            advance(sym)
    return frames


def _ts_for(frame: pd.DataFrame, day: date) -> pd.Timestamp:
    ts = pd.Timestamp(day)
    return ts.tz_localize("UTC") if frame.index.tz is not None else ts


# ---------------------------------------------------------------------------------------------


def _normalize_symbols(symbols) -> list[str] | None:
    if symbols is None:
        return None
    if isinstance(symbols, str):
        symbols = symbols.split(",")
    out = [str(s).strip() for s in symbols if str(s).strip()]
    return list(dict.fromkeys(out)) or None


def load_history(req: HistoryRequest) -> HistoryResult:
    """Load validated bars for ``req`` from one source and say which and why.

    Returns a HistoryResult whose ``frames`` map each served symbol (in request order) to a
    canonical bar frame. When the sample stands in for S&P 500 look-alikes the key is ``^GSPC``.
    Symbols served by yahoo are written to the cache (unless ``use_cache`` is False).

    Raises ConfigError for an unknown source, start after end, or a bad csv/symbol pairing;
    DataError (UnknownSymbolError, SourceUnavailableError) naming every source tried and why
    each failed; DataValidationError for a bad row; DataError when two symbols' frames have no
    dates in common.
    """
    source = str(req.source).strip().lower()
    if source not in VALID_SOURCES:
        raise ConfigError(
            f"unknown data source {req.source!r}; valid sources: {', '.join(VALID_SOURCES)}"
        )
    start = as_date(req.start, "start", ConfigError)
    end = as_date(req.end, "end", ConfigError)
    if start is not None and end is not None and start > end:
        raise ConfigError(f"start {start} is after end {end}; swap them or fix one")
    if req.interval not in INTERVAL_BAR_SIZES:
        raise ConfigError(
            f"interval {req.interval!r} is not one of {', '.join(INTERVAL_BAR_SIZES)}"
        )
    req = HistoryRequest(**{**req.__dict__, "start": start, "end": end})
    given = _normalize_symbols(req.symbols)
    req.symbols = given
    tried: list[tuple[str, str]] = []

    if source == "csv":
        frames = _serve_csv(req)
        files = ", ".join(str(p) for p in req.csv_paths or [])
        tried.append(("csv", f"read {files}"))
        return _result(frames, "csv", tried, own=f"from {files}")

    if source == "sample":
        try:
            chosen, s, e, note = _sample_plan(req, given or ["^GSPC"], explicit=given is not None)
        except DataError as exc:  # its messages leave out the subject: "has no AAPL ..."
            text = str(exc)
            if not text.startswith("the "):
                text = f"the embedded sample (--source sample) {text}"
            raise type(exc)(text) from None
        frames = _serve_sample(chosen, s, e)
        tried.append(("sample", "requested"))
        return _result(frames, "sample", tried, note, own="embedded arch sample")

    if source == "ibkr":
        return _serve_ibkr(req, given, start, end)

    # auto / yahoo: cache -> yahoo (-> sample for auto)
    symbols = given or list(DEFAULT_SYMBOLS)
    y_end = end or _today()
    y_start = start or (pd.Timestamp(y_end) - pd.DateOffset(years=DEFAULT_YEARS)).date()
    if y_start > y_end:
        raise ConfigError(f"start {y_start} is after end {y_end} (end defaults to today)")
    cache = (req.cache or BarCache()) if req.use_cache else None

    if cache is not None:
        log.info("history: trying cache for %s %s..%s", ", ".join(symbols), y_start, y_end)
        frames, why = _cache_lookup(cache, symbols, req.interval, req.auto_adjust, y_start, y_end)
        if frames is not None:
            tried.append(("cache", "hit"))
            return _result(frames, "cache", tried, own="cache hit, yahoo not contacted")
        tried.append(("cache", why))
        log.info("history: cache miss: %s", why)
    else:
        tried.append(("cache", "disabled"))

    log.info("history: trying yahoo for %s %s..%s", ", ".join(symbols), y_start, y_end)
    try:
        frames, outcome = _serve_yahoo(symbols, req, cache, y_start, y_end)
    except DataError as exc:
        reason = _strip_source(str(exc), "yahoo")
        tried.append(("yahoo", reason))
        log.info("history: yahoo failed: %s", reason)
        yahoo_exc = exc
    else:
        tried.append(("yahoo", outcome))
        return _result(frames, "yahoo", tried, own=outcome)

    if cache is not None and end is None and isinstance(yahoo_exc, SourceUnavailableError):
        stale = _stale_cache(cache, symbols, req.interval, req.auto_adjust, y_start, y_end)
        if stale is not None:
            frames, upto = stale
            why = f"serving cached bars up to {upto}; newer days not fetched"
            tried.append(("cache", why))
            return _result(frames, "cache", tried, own=why)

    if source == "yahoo":
        raise type(yahoo_exc)(_failure_message(
            symbols, tried,
            "check your network and retry, or use --source sample (^GSPC, ^IXIC) or --source csv",
        ))

    log.info("history: trying the embedded sample")
    try:
        chosen, s, e, note = _sample_plan(req, symbols, explicit=given is not None)
        frames = _serve_sample(chosen, s, e)
    except DataError as exc:
        tried.append(("sample", _strip_source(str(exc), "sample")))
        raise DataError(_failure_message(symbols, tried, _WHAT_TO_DO)) from exc
    tried.append(("sample", "offline fallback"))
    return _result(frames, "sample", tried, note)


def _serve_ibkr(
    req: HistoryRequest, given: list[str] | None, start: date | None, end: date | None
) -> HistoryResult:
    """Serve ``req`` from IB through the shared parquet cache (only missing ranges fetched);
    futures symbols as continuous series built from IB's contracts."""
    from bt_ibkr.data.futures_contracts import continuous_frames, simulator_series_cached
    from bt_ibkr.data.provider import load_ibkr_history

    symbols = given or list(DEFAULT_SYMBOLS)
    futures = {s: r for s, r in (req.futures or {}).items() if s in symbols}
    plain = [s for s in symbols if s not in futures]
    i_end = end or _today()
    i_start = start or (pd.Timestamp(i_end) - pd.DateOffset(years=DEFAULT_YEARS)).date()
    where = req.gateway.where()
    log.info("history: trying ibkr at %s for %s %s..%s", where, ", ".join(symbols), i_start, i_end)
    gw = {"host": req.gateway.host, "port": req.gateway.port,
          "client_id": req.gateway.client_id, "cache": req.cache, "use_cache": req.use_cache}
    try:
        frames = load_ibkr_history(plain, i_start, i_end, bar_size=INTERVAL_BAR_SIZES[
            req.interval], progress=req.progress, **gw) if plain else {}
        # futures: IB keeps expired contracts 2 years, so their default span is 2 years
        built, notes = continuous_frames(futures, start, end, req.futures_adjust,
                                         show_progress=req.progress, **gw) if futures else ({}, [])
    except SourceUnavailableError as exc:
        held = (_simulator_bars(req.cache, plain) + [
            s for s, r in futures.items() if simulator_series_cached(req.cache, [r])]
        ) if req.use_cache else []
        if not held:
            raise
        raise type(exc)(
            f"{exc} (the cache also holds bars of {', '.join(held)} fetched from bt_ibkr's "
            "gateway simulator, filed as ibkr-sim: simulated prices, never used as IB's; to "
            "backtest on them start the simulator, python -m bt_ibkr.gateway_sim --port "
            f"{req.gateway.port}, and run again)") from None
    frames = {s: built[s] if s in built else frames[s] for s in symbols}
    if req.interval == "1d":
        frames, open_notes = _without_open_sessions(frames)
        notes = [*notes, *open_notes]
    cached = all(f.attrs.get("source") == "cache" for f in frames.values())
    if any(f.attrs.get("simulated") for f in frames.values()):
        own = (f"IB gateway simulator at {where}: simulated prices, not IB's, cached as "
               f"ibkr-sim" + (", all from that cache" if cached else ""))
    else:
        own = f"IB gateway at {where}" + (", all from the ibkr cache" if cached else "")
    own = "; ".join([own, *notes])
    return _result(frames, "ibkr", [("ibkr", own)], own=own)


def _without_open_sessions(frames: dict[str, pd.DataFrame]
                           ) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Return ``frames`` without the daily bar of a session that had not closed on the
    gateway's clock when it was fetched (``attrs["gateway_now"]``, NYSE's calendar: a partial
    bar whose close would move from run to run), and a note per symbol cut."""
    from bt_ibkr.calendars import last_completed_session

    out, notes = {}, []
    for sym, frame in frames.items():
        stamp = frame.attrs.get("gateway_now")
        if not stamp or frame.empty:
            out[sym] = frame
            continue
        now = datetime.fromisoformat(stamp)
        if now.tzinfo is not None:  # the calendars take naive UTC
            now = now.astimezone(UTC).replace(tzinfo=None)
        done = last_completed_session(now)
        keep = frame.index.normalize() <= pd.Timestamp(done)
        if keep.all():
            out[sym] = frame
            continue
        cut = frame.loc[keep].copy()
        cut.attrs = dict(frame.attrs)
        out[sym] = cut
        notes.append(f"{sym}: left out the bar of {frame.index[~keep][0].date()}: that "
                     "session had not closed on the gateway's clock")
    return out, notes


def _simulator_bars(cache: BarCache | None, symbols: list[str]) -> list[str]:
    """Return the symbols of which ``cache`` (default: the default cache) holds bars from the
    gateway simulator (cache source "ibkr-sim")."""
    from bt_ibkr.ib.historical import SIM_SOURCE

    cache = cache if cache is not None else BarCache()
    held = []
    for sym in symbols:
        path = cache.path_for(CacheKey(source=SIM_SOURCE, symbol=sym))
        prefix = path.name.split("__", 1)[0] + "__"
        if path.parent.is_dir() and any(p.name.startswith(prefix)
                                        for p in path.parent.glob("*.parquet")):
            held.append(sym)
    return held


def _failure_message(symbols: list[str], tried: list[tuple[str, str]], what_to_do: str) -> str:
    steps = "; ".join(f"{s}: {why}" for s, why in tried)
    return f"no source could serve {', '.join(symbols)} ({steps}); {what_to_do}"
