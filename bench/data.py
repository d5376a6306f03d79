"""Loading daily history: parquet cache vs the IB source (the gateway simulator), in one run.

    python -m bench.data [--symbols N] [--years N] [--pacing-scale F] [--concurrency K]

Starts the gateway simulator (synthetic data, seed 0; pacing off by default, so the source
time is the data path itself: request, encode, decode, validate, store), teaches it ``N`` stock
symbols (the 8 it knows plus generated ``SYNnn`` tickers), then with an empty temporary cache:

1. ``source_s``: ``IBKRDataProvider.get_range_data`` of ``--years`` years of daily bars for
   every symbol from the simulator (chunked by IB's 365-day maximum, paced, concurrent on one
   connection) into the cache;
2. ``cache_s``: the same call again, now served by the cache alone (no connection is made).

``--pacing-scale F`` (e.g. 0.001) turns IB's pacing on in the simulator AND the provider with
every window scaled by F (60 requests per 600*F s; the provider adds a 1 s safety margin to
that window, which then dominates source_s).

Prints ONE JSON object: symbols, years, bars, requests, pacing_violations, source_s, cache_s,
speedup = source_s / cache_s, plus identical (the cached frames equal the fetched ones), and
``cache_breakdown``: where a cache run's time goes, each part timed alone over all symbols after
the timed runs (seconds):

- ``connect_s``: opening the API session of a new provider (the cache run needs it: bars from
  the simulator are filed apart from IB's, so the provider asks the gateway who it is first);
- ``coverage_s``: the coverage checks (``BarCache.missing``: the JSON sidecars);
- ``load_s``: ``BarCache.load``: parquet read, integrity check (schema, rows, SHA-256 of the
  values), frame built and cut to the range;
- ``parquet_read_s``: pyarrow reading the same files and nothing else (the floor of load_s);
- ``full_validation_s``: what load_s would be if every read re-ran the row rules of
  bt_ibkr.validation on a pandas read (as reads did before the integrity record).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from datetime import date

from bt_ibkr.cache import BarCache, CacheKey
from bt_ibkr.data.provider import IBKRDataProvider
from bt_ibkr.gateway_sim import GatewaySim

KNOWN = ("SPY", "AAPL", "MSFT", "QQQ", "IWM", "NVDA", "TLT", "GLD")


def add_symbols(sim: GatewaySim, count: int) -> list[str]:
    """Return ``count`` stock symbols the simulator serves, adding ``SYNnn`` stocks as needed.

    The added contracts copy SPY's contract details (SMART/ARCA, USD, New York hours) under a
    new conId and symbol; their prices are the simulator's seeded synthetic series.
    """
    symbols = list(KNOWN[:count])
    template = sim.contracts.by_symbol("SPY", "STK")
    for k in range(len(symbols), count):
        sym = f"SYN{k:02d}"
        sim.contracts.add(dataclasses.replace(
            template, conId=900_000_000 + k, symbol=sym, localSymbol=sym, tradingClass=sym,
            longName=f"SYNTHETIC STOCK {k}", series=sym))
        symbols.append(sym)
    return symbols


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cache_breakdown(cache: BarCache, keys: list[CacheKey], start: date, end: date) -> dict:
    """Time each part of serving ``keys`` from ``cache`` alone (see the module docstring)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bt_ibkr.validation import validate_bars

    def parquet_only() -> None:
        for k in keys:
            pq.ParquetFile(pa.BufferReader(cache.path_for(k).read_bytes())).read(
                use_threads=False)

    def full_validation() -> None:
        for k in keys:
            validate_bars(pd.read_parquet(cache.path_for(k)), "bench", intraday=k.intraday)

    return {
        "coverage_s": round(_timed(lambda: [cache.missing(k, start, end) for k in keys]), 4),
        "load_s": round(_timed(lambda: [cache.load(k, start, end) for k in keys]), 4),
        "parquet_read_s": round(_timed(parquet_only), 4),
        "full_validation_s": round(_timed(full_validation), 4),
    }


def run(n_symbols: int = 50, years: int = 10, pacing_scale: float = 0.0,
        concurrency: int = 6) -> dict:
    """Run the benchmark and return its JSON-ready result (see the module docstring)."""
    end = date(2023, 12, 29)  # the synthetic simulator's clock starts 2024-01-02 09:30 NY
    start = date(end.year - years, end.month, end.day)
    paced = pacing_scale > 0
    with GatewaySim(data="synthetic", seed=0, pacing=paced,
                    pacing_scale=pacing_scale if paced else 1.0) as sim, \
            tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        symbols = add_symbols(sim, n_symbols)
        cache = BarCache(tmp)
        with IBKRDataProvider(port=sim.port, client_id=41, cache=cache, progress=False,
                              fallback_to_yfinance=False, pacing=paced,
                              pacing_scale=pacing_scale if paced else 1.0,
                              max_concurrent=concurrency, timeout=60) as provider:
            t0 = time.perf_counter()
            fetched = provider.get_range_data(symbols, start, end)
            source_s = time.perf_counter() - t0
            stats = provider.stats
        requests = len(sim.requests_named("reqHistoricalData"))
        with IBKRDataProvider(port=sim.port, client_id=42, cache=cache, progress=False,
                              fallback_to_yfinance=False) as provider:
            t0 = time.perf_counter()
            cached = provider.get_range_data(symbols, start, end)
            cache_s = time.perf_counter() - t0
            sources = set(provider.last_sources.values())
        extra = len(sim.requests_named("reqHistoricalData")) - requests
        with IBKRDataProvider(port=sim.port, client_id=43, cache=cache, progress=False,
                              fallback_to_yfinance=False) as provider:
            connect_s = _timed(provider.connect)
            keys = [provider.history.cache_key(s, "1 day", "TRADES", True) for s in symbols]
        breakdown = {"connect_s": round(connect_s, 4),
                     **cache_breakdown(cache, keys, start, end)}
    identical = all(cached[s].equals(fetched[s]) for s in symbols)
    return {
        "symbols": len(symbols),
        "years": years,
        "bars": int(sum(len(f) for f in fetched.values())),
        "requests": requests,
        "requests_on_cache_run": extra,
        "pacing_violations": stats.pacing_violations,
        "pacing_scale": pacing_scale if paced else None,
        "source_s": round(source_s, 4),
        "cache_s": round(cache_s, 4),
        "speedup": round(source_s / cache_s, 2) if cache_s > 0 else None,
        "cache_run_sources": sorted(sources),
        "identical": identical,
        "cache_breakdown": breakdown,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--symbols", type=int, default=50, help="number of symbols (default 50)")
    parser.add_argument("--years", type=int, default=10, help="years of daily bars (default 10)")
    parser.add_argument("--pacing-scale", type=float, default=0.0,
                        help="enforce IB's pacing on both sides with windows scaled by this "
                             "(e.g. 0.001); default 0 = pacing off")
    parser.add_argument("--concurrency", type=int, default=6,
                        help="IB requests in flight at once (default 6)")
    args = parser.parse_args(argv)
    if args.symbols < 1 or args.years < 1:
        parser.error("--symbols and --years must be >= 1")
    result = run(args.symbols, args.years, args.pacing_scale, args.concurrency)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
