"""Prices the simulator serves: daily series, a consistent 1-second intraday path, bars, quotes.

Data modes
----------
* ``sample``: real index prices from the ``arch`` package (1999-01-04 .. 2018-12-31).
  ``SPX`` (alias ``^GSPC``) is ``arch.data.sp500`` unchanged, ``COMP`` (alias ``^IXIC``) is
  ``arch.data.nasdaq`` unchanged, **SPY is served as ^GSPC / 10** (prices; volume / 40) and ES
  futures as ^GSPC at fair value (gateway_sim.futures_prices), so an ETF strategy has real
  prices. Every other symbol is synthetic (the NQ, CL, GC and ZN futures too: their
  underlyings are seeded walks named by the root).
  Outside the sample's range those series have no data.
* ``synthetic``: every symbol is a seeded GBM-like daily series, deterministic per
  ``(seed, symbol)``, on the New York Stock Exchange's sessions (exchange_calendars XNYS:
  weekends, holidays and special closures closed; the sample's real prices share them) from 2000
  to 2035,
  anchored at a typical price on 2024-01-02; prices are rounded to the contract's minTick.

Intraday
--------
Each session day has a deterministic 1-second price path (seeded per (seed, symbol, date)) made
of Brownian bridges through the day's open, high, low and close, so every intraday bar size,
the 5-second real-time bars, keepUpToDate updates and quotes agree with the daily bar: the
session's first price is the daily open, its last the daily close, and its max/min are exactly
the daily high/low. Volume is spread over the session with a U-shaped profile and sums to the
daily volume. There is no extended-hours data: ``useRTH`` 0 and 1 return the same bars.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from bt_ibkr.gateway_sim.clock import SimClock
from bt_ibkr.gateway_sim.contracts_db import SessionSpec, session_for
from bt_ibkr.gateway_sim.model import Quote, SimContract
from bt_ibkr.ib.bars import BAR_SECONDS, bar_step  # noqa: F401 - bar_step re-exported

HMDS = "Historical Market Data Service error message:"



WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST")

#: synthetic series parameters: anchor price on 2024-01-02, annual vol, typical daily volume
SYNTHETIC_PARAMS: dict[str, tuple[float, float, float]] = {
    "SPY": (470.0, 0.16, 80e6), "AAPL": (185.0, 0.28, 55e6), "MSFT": (370.0, 0.26, 25e6),
    "QQQ": (400.0, 0.22, 45e6), "IWM": (195.0, 0.22, 30e6), "NVDA": (48.0, 0.50, 400e6),
    "TLT": (98.0, 0.15, 35e6), "GLD": (190.0, 0.14, 8e6), "^GSPC": (4700.0, 0.16, 3.5e9),
    "^IXIC": (14800.0, 0.22, 5e9), "EUR.USD": (1.10, 0.07, 0.0), "ES": (4750.0, 0.16, 1.5e6),
    "NQ": (16800.0, 0.22, 5e5), "CL": (72.0, 0.35, 3e5), "GC": (2070.0, 0.15, 2e5),
    "ZN": (112.0, 0.06, 1.2e6),
}
SYNTHETIC_ANCHOR = date(2024, 1, 2)
SYNTHETIC_FIRST = date(2000, 1, 3)
SYNTHETIC_LAST = date(2035, 12, 31)
#: sample mode: series key -> (arch dataset, price factor, volume factor)
SAMPLE_MAP: dict[str, tuple[str, float, float]] = {
    "^GSPC": ("sp500", 1.0, 1.0), "^IXIC": ("nasdaq", 1.0, 1.0),
    "SPY": ("sp500", 0.1, 1 / 40), "ES": ("sp500", 1.0, 1 / 2000),
}


class HistoricalDataError(Exception):
    """A historical request IB would refuse: carries the TWS error ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar. ``start`` is the bar's start (epoch s, UTC); ``day`` is set for bars of
    one day or longer (the session date that labels it)."""

    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int
    day: date | None = None


@dataclass
class DailySeries:
    """Daily OHLCV for one contract plus each session's open (epoch s) and length (s)."""

    key: str
    dates: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    adj: np.ndarray  # adjusted-close / close factor
    opens: np.ndarray  # int64 epoch seconds of each session's open
    length: int
    tick: float | None  # round the intraday path to this tick (synthetic) or None (sample)
    spec: SessionSpec

    def locate(self, t: int) -> tuple[int, int | None]:
        """Return ``(i, elapsed)`` for epoch ``t``: the last session opened at or before ``t``
        and the seconds since its open if ``t`` is inside it (else None). i == -1: no data yet."""
        i = int(np.searchsorted(self.opens, t, side="right")) - 1
        if i < 0:
            return -1, None
        elapsed = t - int(self.opens[i])
        return i, (elapsed if elapsed < self.length else None)

    def session_date(self, i: int) -> date:
        """Return the session date of index ``i``."""
        return self.dates[i].astype(object)


@lru_cache(maxsize=4)
def _arch_frame(name: str) -> pd.DataFrame:
    if name == "sp500":
        import arch.data.sp500 as ds
    else:
        import arch.data.nasdaq as ds
    return ds.load()


@lru_cache(maxsize=2)
def _exchange_sessions(first: date, last: date, calendar: str = "XNYS") -> np.ndarray:
    """Return the sessions of the exchange_calendars ``calendar`` from ``first`` to ``last``
    (datetime64[D]): NYSE's real trading days, holidays and special closures included, so
    synthetic series share their sessions with the sample's real prices."""
    import exchange_calendars as xcals

    cal = xcals.get_calendar(calendar, start=str(first), end=str(last))
    return cal.sessions.to_numpy().astype("datetime64[D]")


def _seed_for(*parts: object) -> list[int]:
    return [zlib.crc32("|".join(str(p) for p in parts).encode())]


def _session_opens(dates: np.ndarray, spec: SessionSpec) -> np.ndarray:
    idx = pd.DatetimeIndex(dates) + pd.Timedelta(seconds=spec.open_seconds)
    local = idx.tz_localize(spec.tz, nonexistent="shift_forward", ambiguous=False)
    return local.as_unit("s").asi8.astype("int64")


class MarketData:
    """Serves bars and quotes for the contracts in a ContractDB, driven by a SimClock.

    ``MarketData(clock, data="synthetic"|"sample", seed=0)``. All methods are pure functions of
    (data, seed, clock time), so two simulators with the same settings serve identical data.
    """

    def __init__(self, clock: SimClock, data: str = "synthetic", seed: int = 0) -> None:
        if data not in ("synthetic", "sample"):
            raise ValueError(f"data must be 'synthetic' or 'sample', got {data!r}")
        self.clock = clock
        self.data = data
        self.seed = int(seed)
        self._series: dict[tuple[int, str], DailySeries | None] = {}
        self._paths: OrderedDict[tuple[str, int], tuple[np.ndarray, ...]] = OrderedDict()

    # ----------------------------------------------------------------- series
    def series(self, contract: SimContract) -> DailySeries | None:
        """Return the contract's daily series (built lazily), or None if it has none."""
        key = (contract.conId, contract.secType)  # a CONTFUT view is not its front's FUT
        if key not in self._series:
            self._series[key] = self._build(contract)
        return self._series[key]

    def serve(self, contract: SimContract, series: DailySeries) -> None:
        """Serve ``series`` for ``contract`` from now on (see gateway_sim.frames)."""
        self._series[(contract.conId, contract.secType)] = series
        for ck in [k for k in self._paths if k[0] == series.key]:
            del self._paths[ck]

    def _build(self, contract: SimContract) -> DailySeries | None:
        from bt_ibkr.gateway_sim.futures_prices import futures_series

        series = self._underlying(contract)
        return futures_series(series, contract) if series is not None else None

    def _underlying(self, contract: SimContract) -> DailySeries | None:
        key = contract.series or contract.symbol
        spec = session_for(contract)
        if self.data == "sample" and key in SAMPLE_MAP:
            name, pf, vf = SAMPLE_MAP[key]
            df = _arch_frame(name)
            dates = df.index.to_numpy().astype("datetime64[D]")
            close = df["Close"].to_numpy(float) * pf
            adj = df["Adj Close"].to_numpy(float) / df["Close"].to_numpy(float)
            return DailySeries(
                key=key, dates=dates, open=df["Open"].to_numpy(float) * pf,
                high=df["High"].to_numpy(float) * pf, low=df["Low"].to_numpy(float) * pf,
                close=close, volume=np.round(df["Volume"].to_numpy(float) * vf), adj=adj,
                opens=_session_opens(dates, spec), length=spec.length, tick=None, spec=spec)
        return self._synthetic(key, contract, spec)

    def _synthetic(self, key: str, contract: SimContract, spec: SessionSpec) -> DailySeries:
        price, vol, volume = SYNTHETIC_PARAMS.get(key, (100.0, 0.25, 1e6))
        tick = contract.minTick or 0.01
        dates = _exchange_sessions(SYNTHETIC_FIRST, SYNTHETIC_LAST)
        n = len(dates)
        rng = np.random.default_rng(_seed_for(self.seed, key, "daily"))
        sig = vol / math.sqrt(252.0)
        mu = 0.0 if contract.secType == "CASH" else 0.06 / 252.0
        r = rng.standard_normal(n) * sig + mu - 0.5 * sig * sig
        logc = np.cumsum(r)
        anchor = int(np.searchsorted(dates, np.datetime64(SYNTHETIC_ANCHOR)))
        close = price * np.exp(logc - logc[anchor])
        prev = np.concatenate([[close[0]], close[:-1]])
        opn = prev * np.exp(rng.standard_normal(n) * sig * 0.25)
        hi_ext = np.abs(rng.standard_normal(n)) * sig * 0.6
        lo_ext = np.abs(rng.standard_normal(n)) * sig * 0.6
        vols = np.round(volume * np.exp(0.3 * rng.standard_normal(n))) if volume else np.zeros(n)

        def rnd(x: np.ndarray) -> np.ndarray:
            return np.round(np.round(x / tick) * tick, 10)

        opn, close = rnd(opn), rnd(close)
        high = np.maximum(rnd(np.maximum(opn, close) * np.exp(hi_ext)), np.maximum(opn, close))
        low = np.minimum(rnd(np.minimum(opn, close) * np.exp(-lo_ext)), np.minimum(opn, close))
        return DailySeries(key=key, dates=dates, open=opn, high=high, low=low, close=close,
                           volume=vols, adj=np.ones(n), opens=_session_opens(dates, spec),
                           length=spec.length, tick=tick, spec=spec)

    # ----------------------------------------------------------------- intraday
    def seconds(self, s: DailySeries, i: int) -> tuple[np.ndarray, ...]:
        """Return the per-second (open, high, low, close, volume) arrays of session ``i``."""
        ck = (s.key, i)
        hit = self._paths.get(ck)
        if hit is not None:
            self._paths.move_to_end(ck)
            return hit
        n = s.length
        o_, h_, l_, c_ = (float(s.open[i]), float(s.high[i]), float(s.low[i]), float(s.close[i]))
        rng = np.random.default_rng(_seed_for(self.seed, s.key, str(s.dates[i]), "path"))
        kh, kl = (int(k) for k in rng.choice(np.arange(1, n), size=2, replace=False))
        anchors = sorted([(0, o_), (kh, h_), (kl, l_), (n, c_)])
        noise = rng.standard_normal(n)
        sigma = (h_ - l_) * 0.5 / math.sqrt(n) if h_ > l_ else 0.0
        path = np.empty(n + 1)
        for (t0, v0), (t1, v1) in zip(anchors[:-1], anchors[1:], strict=True):
            m = t1 - t0
            if m == 0:
                continue
            w = np.concatenate([[0.0], np.cumsum(noise[t0:t1])])
            j = np.arange(m + 1)
            path[t0:t1 + 1] = v0 + (v1 - v0) * j / m + sigma * (w - j / m * w[-1])
        if s.tick:
            path = np.round(np.round(path / s.tick) * s.tick, 10)
        path = np.clip(path, l_, h_)
        path[0], path[kh], path[kl], path[n] = o_, h_, l_, c_
        x = (np.arange(n) + 0.5) / n
        weights = 1.0 + 6.0 * (x - 0.5) ** 2
        cum = np.round(float(s.volume[i]) * np.cumsum(weights) / weights.sum())
        vol = np.diff(np.concatenate([[0.0], cum]))
        po, pc = path[:-1], path[1:]
        out = (po, np.maximum(po, pc), np.minimum(po, pc), pc, vol)
        self._paths[ck] = out
        if len(self._paths) > 256:
            self._paths.popitem(last=False)
        return out

    def window(self, contract: SimContract, t0: int, t1: int) -> Bar | None:
        """Return the bar aggregated over epoch seconds [t0, t1) within one session, or None
        when no second of that range is inside a session."""
        if contract.secType == "OPT":  # priced from the underlying (gateway_sim.options)
            from bt_ibkr.gateway_sim.options import option_bar
            return option_bar(self, contract, t0, t1)
        s = self.series(contract)
        if s is None:
            return None
        i = int(np.searchsorted(s.opens, t1 - 1, side="right")) - 1
        if i < 0:
            return None
        a = max(t0 - int(s.opens[i]), 0)
        b = min(t1 - int(s.opens[i]), s.length)
        if b <= a:
            return None
        o, h, lo, c, v = self.seconds(s, i)
        return _agg(int(s.opens[i]) + a, o[a:b], h[a:b], lo[a:b], c[a:b], v[a:b])

    def in_session(self, contract: SimContract, t: int) -> bool:
        """Return True if epoch second ``t`` is inside one of the contract's sessions."""
        s = self.series(contract)
        return s is not None and s.locate(t)[1] is not None

    def next_open(self, contract: SimContract, t: int) -> int | None:
        """Return the first session open strictly after epoch ``t`` (None if the data ends)."""
        s = self.series(contract)
        if s is None:
            return None
        i = int(np.searchsorted(s.opens, t, side="right"))
        return int(s.opens[i]) if i < len(s.opens) else None

    # ----------------------------------------------------------------- quotes
    def quote(self, contract: SimContract) -> Quote | None:
        """Return the market for ``contract`` at ``clock.now()`` (None before its data starts)."""
        return self.quote_at(contract, int(math.floor(self.clock.now().timestamp())))

    def quote_at(self, contract: SimContract, t: int) -> Quote | None:
        """Return the market at epoch ``t``: the last price, bid/ask around it, and the last
        completed 5-second bar (o/h/l/c/volume). Outside a session: the last session's close."""
        if contract.secType == "OPT":  # priced from the underlying (gateway_sim.options)
            from bt_ibkr.gateway_sim.options import option_quote
            return option_quote(self, contract, t)
        s = self.series(contract)
        if s is None:
            return None
        i, elapsed = s.locate(t)
        if i < 0:
            return None
        o, h, lo, c, v = self.seconds(s, i)
        if elapsed is None:
            elapsed = s.length
        e5 = elapsed - elapsed % 5
        if e5 >= 5:
            bar = _agg(0, o[e5 - 5:e5], h[e5 - 5:e5], lo[e5 - 5:e5], c[e5 - 5:e5], v[e5 - 5:e5])
            bo, bh, bl, bc, bv = bar.open, bar.high, bar.low, bar.close, bar.volume
        else:
            bo = bh = bl = bc = float(o[0])
            bv = 0.0
        last = float(c[elapsed - 1]) if elapsed > 0 else float(o[0])
        half = 0.0 if contract.secType == "IND" else _half_spread(contract)
        return Quote(time=datetime.fromtimestamp(t, UTC), open=bo, high=bh, low=bl, close=bc,
                     last=last, bid=round(last - half, 10), ask=round(last + half, 10),
                     volume=bv)

    def day_stats(self, contract: SimContract, t: int) -> dict[str, float] | None:
        """Return the session's open/high/low/volume so far and the prior close at epoch ``t``
        (between sessions: the last session's values, and its own close as ``close``)."""
        if contract.secType == "OPT":  # priced from the underlying (gateway_sim.options)
            from bt_ibkr.gateway_sim.options import option_day_stats
            return option_day_stats(self, contract, t)
        s = self.series(contract)
        if s is None:
            return None
        i, elapsed = s.locate(t)
        if i < 0:
            return None
        o = self.seconds(s, i)[0]
        hmax, lmin, vcum = self._running(s, i)
        e = s.length if elapsed is None else max(elapsed, 1)
        if elapsed is None:  # between sessions: the close tick is the last session's close
            prev_close = float(s.close[i])
        else:
            prev_close = float(s.close[i - 1]) if i > 0 else float(s.open[i])
        return {"open": float(o[0]), "high": float(hmax[e - 1]), "low": float(lmin[e - 1]),
                "volume": float(vcum[e - 1]), "close": prev_close}

    def _running(self, s: DailySeries, i: int) -> tuple[np.ndarray, ...]:
        ck = (s.key + "|running", i)
        hit = self._paths.get(ck)
        if hit is None:
            _, h, lo, _, v = self.seconds(s, i)
            hit = (np.maximum.accumulate(h), np.minimum.accumulate(lo), np.cumsum(v))
            self._paths[ck] = hit
        return hit

    # ----------------------------------------------------------------- history
    def historical(self, contract: SimContract, end: int, duration: str, bar_size: str,
                   what: str, now: int) -> list[Bar]:
        """Return the bars of a reqHistoricalData request, oldest first.

        ``end``: epoch seconds of endDateTime (already clipped to ``now``); ``duration`` like
        ``"3 D"``/``"1 Y"``/``"3600 S"``; ``bar_size`` like ``"5 mins"``. Bars never extend past
        ``now``; a bar still forming at ``end`` holds only the data up to ``end``.
        Raises HistoricalDataError (code 321 for a bad duration/bar size, 162 for no data).
        """
        bar_size = " ".join(bar_size.split())
        if bar_size not in BAR_SECONDS:
            raise HistoricalDataError(
                321, f"Error validating request.-'bP' : cause - Historical data bar size "
                     f"setting is invalid: {bar_size!r}. Use e.g. '1 min', '5 mins', '1 day'.")
        what = what.upper()
        if what not in WHAT_TO_SHOW:
            raise HistoricalDataError(162, f"{HMDS}No historical market data for "
                                           f"{contract.symbol}/{contract.secType} {what}")
        if contract.secType == "CASH" and what in ("TRADES", "ADJUSTED_LAST"):
            # IB disseminates no trades for forex; its answer (as users report it, e.g.
            # github.com/ranaroussi/ezibpy/issues/24, erdewit/ib_insync/issues/316):
            # "Error 162 ... No historical market data for EUR/CASH@FXSUBPIP Last 1d"
            raise HistoricalDataError(
                162, f"{HMDS}No historical market data for {contract.symbol}/CASH@FXSUBPIP "
                     f"Last {bar_size}")
        if contract.secType == "OPT":  # priced from the underlying (gateway_sim.options)
            from bt_ibkr.gateway_sim.options import option_history
            bars = option_history(self, contract, end, duration, bar_size, now)
            if not bars:
                raise HistoricalDataError(162, f"{HMDS}HMDS query returned no data: "
                                               f"{contract.localSymbol}@{contract.exchange} "
                                               f"{what}")
            return [transform_bar(b, what, contract, None) for b in bars]
        s = self.series(contract)
        if s is None:
            raise HistoricalDataError(162, f"{HMDS}HMDS query returned no data: "
                                           f"{contract.symbol}@{contract.exchange} Trades")
        cut = min(end, now)
        num, unit = _parse_duration(duration)
        start = _duration_start(s, cut, num, unit)
        step = bar_step(bar_size)
        if step:
            bars = self._intraday(contract, s, start, cut, step)
        else:
            bars = self._daily(s, start, cut, unit, num)
            if bar_size == "1 week":
                bars = _group(bars, lambda d: d.isocalendar()[:2])
            elif bar_size == "1 month":
                bars = _group(bars, lambda d: (d.year, d.month))
        if not bars:
            raise HistoricalDataError(162, f"{HMDS}HMDS query returned no data: "
                                           f"{contract.localSymbol}@{contract.exchange} {what}")
        return [transform_bar(b, what, contract, s) for b in bars]

    def _daily(self, s: DailySeries, start: int, cut: int, unit: str, num: int) -> list[Bar]:
        last = int(np.searchsorted(s.opens, cut, side="left")) - 1
        if last < 0:
            return []
        if unit == "D":
            first = max(last - num + 1, 0)
        else:
            first = int(np.searchsorted(s.opens, start, side="left"))
        out = []
        for i in range(first, last + 1):
            opened = int(s.opens[i])
            day = s.session_date(i)
            if opened + s.length <= cut:
                out.append(Bar(opened, float(s.open[i]), float(s.high[i]), float(s.low[i]),
                               float(s.close[i]), float(s.volume[i]),
                               _wap(s.high[i], s.low[i], s.close[i]),
                               _count(float(s.volume[i])), day))
            else:
                o, h, lo, c, v = self.seconds(s, i)
                e = cut - opened
                part = _agg(opened, o[:e], h[:e], lo[:e], c[:e], v[:e])
                out.append(Bar(opened, part.open, part.high, part.low, part.close,
                               part.volume, part.wap, part.count, day))
        return out

    def _intraday(self, contract: SimContract, s: DailySeries, start: int, cut: int,
                  step: int) -> list[Bar]:
        first = max(int(np.searchsorted(s.opens + s.length, start, side="right")), 0)
        last = int(np.searchsorted(s.opens, cut, side="left")) - 1
        if last - first > 3000:
            raise HistoricalDataError(162, f"{HMDS}Time length exceed max.")
        align = s.spec.open_seconds
        out: list[Bar] = []
        for i in range(first, last + 1):
            opened = int(s.opens[i])
            lo_s = max(start - opened, 0)
            if lo_s > 0:  # first whole bucket at or after the start bound
                lo_s = -((-(lo_s + align)) // step) * step - align
            hi_s = min(cut - opened, s.length)
            if hi_s <= lo_s:
                continue
            o, h, lo, c, v = self.seconds(s, i)
            rel = np.arange(lo_s, hi_s)
            bucket = (rel + align) // step
            edges = np.flatnonzero(np.diff(bucket)) + 1
            idx = np.concatenate([[0], edges])
            so, sh, sl, sc, sv = (a[lo_s:hi_s] for a in (o, h, lo, c, v))
            bo = so[idx]
            bh = np.maximum.reduceat(sh, idx)
            bl = np.minimum.reduceat(sl, idx)
            bc = sc[np.concatenate([edges, [len(rel)]]) - 1]
            bv = np.add.reduceat(sv, idx)
            starts = np.maximum(bucket[idx] * step - align, lo_s) + opened
            for k in range(len(idx)):
                out.append(Bar(int(starts[k]), float(bo[k]), float(bh[k]), float(bl[k]),
                               float(bc[k]), float(bv[k]), _wap(bh[k], bl[k], bc[k]),
                               _count(float(bv[k]))))
        return out


def _agg(start: int, o, h, lo, c, v) -> Bar:
    high, low, close, vol = float(h.max()), float(lo.min()), float(c[-1]), float(v.sum())
    return Bar(start, float(o[0]), high, low, close, vol, _wap(high, low, close), _count(vol))


def _wap(h: float, lo: float, c: float) -> float:
    return round((float(h) + float(lo) + float(c)) / 3.0, 6)


def _count(volume: float) -> int:
    return int(max(volume // 200, 1 if volume > 0 else 0))


def _half_spread(contract: SimContract) -> float:
    return contract.minTick or 0.01


def transform_bar(bar: Bar, what: str, contract: SimContract, s: DailySeries | None) -> Bar:
    """Return ``bar`` (trade prices) as ``what`` shows it: MIDPOINT/BID/ASK shift by the
    simulated half spread (volume -1), ADJUSTED_LAST applies the dividend adjustment of
    daily bars, TRADES is unchanged."""
    if what in ("TRADES",):
        return bar
    if what == "ADJUSTED_LAST":
        if bar.day is None:
            return bar
        i = int(np.searchsorted(s.dates, np.datetime64(bar.day))) if s is not None else -1
        f = float(s.adj[i]) if s is not None and 0 <= i < len(s.adj) else 1.0
        return Bar(bar.start, bar.open * f, bar.high * f, bar.low * f, bar.close * f,
                   bar.volume, bar.wap * f, bar.count, bar.day)
    half = 0.0 if contract.secType == "IND" else _half_spread(contract)
    shift = {"MIDPOINT": 0.0, "BID": -half, "ASK": half}.get(what)
    if shift is None:  # BID_ASK: time-average bid / max ask / min bid / time-average ask
        return Bar(bar.start, round(bar.wap - half, 10), round(bar.high + half, 10),
                   round(bar.low - half, 10), round(bar.wap + half, 10), -1.0, -1.0, -1,
                   bar.day)
    return Bar(bar.start, round(bar.open + shift, 10), round(bar.high + shift, 10),
               round(bar.low + shift, 10), round(bar.close + shift, 10), -1.0, -1.0, -1,
               bar.day)


def _group(bars: list[Bar], key) -> list[Bar]:
    out: list[Bar] = []
    groups: OrderedDict[object, list[Bar]] = OrderedDict()
    for b in bars:
        groups.setdefault(key(b.day), []).append(b)
    for members in groups.values():
        vol = sum(m.volume for m in members)
        high = max(m.high for m in members)
        low = min(m.low for m in members)
        out.append(Bar(members[0].start, members[0].open, high, low, members[-1].close, vol,
                       _wap(high, low, members[-1].close), sum(m.count for m in members),
                       members[0].day))
    return out


def _parse_duration(duration: str) -> tuple[int, str]:
    parts = duration.strip().upper().split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in ("S", "D", "W", "M", "Y") \
            or int(parts[0]) <= 0:
        raise HistoricalDataError(
            321, f"Error validating request.-'bQ' : cause - Historical data duration "
                 f"{duration!r} is invalid: use '<n> S|D|W|M|Y', e.g. '30 D'.")
    return int(parts[0]), parts[1]


def _duration_start(s: DailySeries, cut: int, num: int, unit: str) -> int:
    if unit == "S":
        return cut - num
    if unit == "D":
        last = int(np.searchsorted(s.opens, cut, side="left")) - 1
        first = max(last - num + 1, 0)
        return int(s.opens[first]) if len(s.opens) else cut
    tz = ZoneInfo(s.spec.tz)
    end_local = datetime.fromtimestamp(cut, tz)
    if unit == "W":
        start_local = end_local - timedelta(days=7 * num)
    elif unit == "M":
        start_local = _minus_months(end_local, num)
    else:
        start_local = _minus_months(end_local, 12 * num)
    return int(start_local.timestamp())


def _minus_months(t: datetime, months: int) -> datetime:
    y, m = divmod(t.year * 12 + (t.month - 1) - months, 12)
    day = min(t.day, [31, 29 if (y % 4 == 0 and (y % 100 or y % 400 == 0)) else 28, 31, 30,
                      31, 30, 31, 31, 30, 31, 30, 31][m])
    return t.replace(year=y, month=m + 1, day=day)


def parse_end_datetime(text: str, tz_name: str, now: int) -> int:
    """Return epoch seconds for a reqHistoricalData ``endDateTime`` (G8).

    Accepts ``""`` (now), ``"YYYYMMDD HH:MM:SS <Zone>"`` (e.g. ``UTC``, ``US/Eastern``),
    ``"YYYYMMDD-HH:MM:SS"`` (UTC), ``"YYYYMMDD HH:MM:SS"`` (exchange time zone ``tz_name``) and
    ``"YYYYMMDD"`` (end of that day in the exchange zone). Raises HistoricalDataError 321 for
    anything else.
    """
    text = (text or "").strip()
    if not text:
        return now
    try:
        if "-" in text and " " not in text:
            naive = datetime.strptime(text, "%Y%m%d-%H:%M:%S")
            return int(naive.replace(tzinfo=UTC).timestamp())
        parts = text.split()
        if len(parts) == 1 and len(text) == 8:
            naive = datetime.strptime(text, "%Y%m%d") + timedelta(hours=23, minutes=59,
                                                                   seconds=59)
            return int(naive.replace(tzinfo=ZoneInfo(tz_name)).timestamp())
        naive = datetime.strptime(parts[0] + " " + parts[1], "%Y%m%d %H:%M:%S")
        zone = parts[2] if len(parts) > 2 else tz_name
        tzinfo = UTC if zone.upper() in ("UTC", "GMT") else ZoneInfo(zone)
        return int(naive.replace(tzinfo=tzinfo).timestamp())
    except (ValueError, IndexError, KeyError) as exc:
        raise HistoricalDataError(
            321, f"Error validating request.-'bW' : cause - End date/time {text!r} is invalid: "
                 f"use 'YYYYMMDD HH:MM:SS <zone>' or 'YYYYMMDD-HH:MM:SS' (UTC) ({exc})") from exc


def format_bar_time(bar: Bar, tz_name: str, format_date: int) -> str:
    """Return a bar's date field as TWS sends it: ``YYYYMMDD`` for day+ bars; intraday
    ``YYYYMMDD HH:MM:SS <zone>`` (formatDate 1) or epoch seconds (formatDate 2)."""
    if bar.day is not None:
        return bar.day.strftime("%Y%m%d")
    if format_date == 2:
        return str(bar.start)
    return datetime.fromtimestamp(bar.start, ZoneInfo(tz_name)).strftime(
        f"%Y%m%d %H:%M:%S {tz_name}")
