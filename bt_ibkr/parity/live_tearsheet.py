"""The live tearsheet: the backtest's quantstats report, built from recorded sessions.

The equity curve of a paper/live account across runs is taken from the session records
(:mod:`bt_ibkr.parity.sessions`), not from a file a run may reset:

* for each session: its starting value on the last bar before its feeds went live (the
  account when the Strategy started), the value at every LIVE bar (marked at that bar's
  close, after the decision), and, when orders filled after its last bar, IB's
  NetLiquidation when it stopped, dated at that last fill;
* sessions in time order, one point per day (the latest wins).

So one daily run gives three points (start, decision, after the fill) and a month of daily
runs a month of daily values. The benchmark is buy and hold of the first symbol over the same
days, from the recorded closes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bt_ibkr.parity.sessions import find_sessions, load_session


def _day(text: str | None) -> pd.Timestamp | None:
    if not text:
        return None
    ts = pd.Timestamp(text)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.normalize()


def session_equity(path: Path) -> tuple[pd.Series, pd.Series]:
    """Return ``(values, closes)``: the account's value per day and the first symbol's close
    per day over every session under ``path``. Raises ConfigError when there is none."""
    points: dict[pd.Timestamp, float] = {}
    closes: dict[pd.Timestamp, float] = {}
    for directory in find_sessions(path):
        rec = load_session(directory)
        meta = rec.meta
        live = [b for b in rec.bars if b.feeds and all(f.get("live") for f in b.feeds.values())]
        if not live:
            continue
        first = rec.bars.index(live[0])
        if first > 0 and meta.get("start_value"):
            points[_day(rec.bars[first - 1].dt)] = float(meta["start_value"])
        for b in live:
            day = _day(b.dt)
            points[day] = b.value
            first_bar = next(iter(b.bars.values()))
            if first_bar is not None:
                closes[day] = first_bar[3]
        end = meta.get("end") or {}
        fills = end.get("fills_after_last_bar") or []
        if fills and end.get("account_value"):
            # filled after the last bar: the account's own mark at that time (IB's
            # NetLiquidation), not the position marked at the stale decision close
            points[_day(fills[-1].get("time")) or _day(live[-1].dt)] = float(
                end["account_value"])
    values = pd.Series(points, dtype=float).sort_index()
    values.index = pd.DatetimeIndex(values.index)
    close = pd.Series(closes, dtype=float).sort_index()
    return values, close


def write_live_tearsheet(path: Path, output: Path, title: str = "bt_ibkr live") -> Path:
    """Write the quantstats tearsheet of the sessions under ``path``; return ``output``.

    Raises ValueError (from the tearsheet) when the sessions hold fewer than two days.
    """
    from analyzers.tearsheet import write_tearsheet

    values, close = session_equity(path)
    if len(values) < 2:
        raise ValueError(f"the session records under {path} hold {len(values)} day(s) of "
                         "account value; a tearsheet needs at least 2")
    bench = close.reindex(values.index).ffill().pct_change().fillna(0.0) if len(close) else None
    return write_tearsheet(values, output, benchmark=bench, title=title)
