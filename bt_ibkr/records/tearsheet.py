"""The live tearsheet: the backtest's quantstats report, built from recorded sessions.

The equity curve of a paper/live account across runs is taken from the session records
(:mod:`bt_ibkr.records.sessions`), not from a file a run may reset:

* for each session: its starting value on the last bar before its feeds went live (the
  account when the Strategy started), the value at every LIVE bar (marked at that bar's
  close, after the decision), and, when orders filled after its last bar, IB's
  NetLiquidation when it stopped, dated at that last fill;
* sessions in time order, one point per day (the latest wins).

So one daily run gives three points (start, decision, after the fill) and a month of daily
runs a month of daily values. The benchmark is buy and hold of the first symbol over the same
days, from the recorded closes.

Given a journal's claim (:class:`~bt_ibkr.records.ownership.JournalRecords`, as the live
runner's ``--report`` does), only that journal's sessions count: two journals in one folder
share the sessions folder, not their equity.

The records are streamed part by part (:func:`bt_ibkr.records.sessions.iter_session`): memory
holds one point per day, not the sessions' bars.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.records.ownership import OURS, JournalRecords
from bt_ibkr.records.sessions import find_sessions, iter_session, read_meta


def _day(text: str | None) -> pd.Timestamp | None:
    if not text:
        return None
    ts = pd.Timestamp(text)
    if ts.tzinfo is not None:
        ts = ts.tz_convert(None)
    return ts.normalize()


def _bar_day(text: str, cache: dict[str, pd.Timestamp]) -> pd.Timestamp:
    """:func:`_day` of a bar time, parsed once per date when the time has no UTC offset."""
    if len(text) > 19 and any(c in text[19:] for c in "+-Z"):
        return _day(text)
    key = text[:10]
    day = cache.get(key)
    if day is None:
        day = cache[key] = _day(text)
    return day


def _all_live(bar) -> bool:
    return bool(bar.feeds) and all(f.get("live") for f in bar.feeds.values())


def journal_sessions(path: Path, records: JournalRecords | None = None) -> list[Path]:
    """Return the session folders under ``path`` (:func:`~bt_ibkr.records.sessions.
    find_sessions`), only ``records``' journal's when given. Raises ConfigError when there
    is none."""
    found = find_sessions(path)
    if records is None:
        return found
    ours = [d for d in found if records.claim(d) == OURS]
    if not ours:
        raise ConfigError(f"no session record of journal {records.journal} under {path} "
                          f"({len(found)} of other or earlier journals)")
    return ours


def session_equity(path: Path, records: JournalRecords | None = None
                   ) -> tuple[pd.Series, pd.Series]:
    """Return ``(values, closes)``: the account's value per day and the first symbol's close
    per day over every session under ``path`` (``records``' journal's only, when given).
    Raises ConfigError when there is none."""
    points: dict[pd.Timestamp, float] = {}
    closes: dict[pd.Timestamp, float] = {}
    for directory in journal_sessions(path, records):
        meta = read_meta(directory)
        before = last_live = None
        day_of: dict[str, pd.Timestamp] = {}  # one parse per date, not per bar
        for b in iter_session(directory):
            if not _all_live(b):
                if last_live is None:
                    before = b
                continue
            if last_live is None and before is not None and meta.get("start_value"):
                points[_day(before.dt)] = float(meta["start_value"])
            last_live = b
            day = _bar_day(b.dt, day_of)
            points[day] = b.value
            first_bar = next(iter(b.bars.values()))
            if first_bar is not None:
                closes[day] = first_bar[3]
        if last_live is None:
            continue
        end = meta.get("end") or {}
        fills = end.get("fills_after_last_bar") or []
        if fills and end.get("account_value"):
            # filled after the last bar: the account's own mark at that time (IB's
            # NetLiquidation), not the position marked at the stale decision close
            points[_day(fills[-1].get("time")) or _day(last_live.dt)] = float(
                end["account_value"])
    values = pd.Series(points, dtype=float).sort_index()
    values.index = pd.DatetimeIndex(values.index)
    close = pd.Series(closes, dtype=float).sort_index()
    return values, close


def write_live_tearsheet(path: Path, output: Path, title: str = "bt_ibkr live",
                         records: JournalRecords | None = None) -> Path:
    """Write the quantstats tearsheet of the sessions under ``path`` (``records``' journal's
    only, when given); return ``output``.

    Raises ValueError (from the tearsheet) when the sessions hold fewer than two days,
    ConfigError when there is no session (of that journal).
    """
    from analyzers.tearsheet import write_tearsheet

    values, close = session_equity(path, records)
    if len(values) < 2:
        raise ValueError(f"the session records under {path} hold {len(values)} day(s) of "
                         "account value; a tearsheet needs at least 2")
    bench = close.reindex(values.index).ffill().pct_change().fillna(0.0) if len(close) else None
    return write_tearsheet(values, output, benchmark=bench, title=title)
