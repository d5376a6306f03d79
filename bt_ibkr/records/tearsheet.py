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

import html
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.records.ownership import OURS, JournalRecords
from bt_ibkr.records.sessions import find_sessions, iter_session, read_meta

MIN_DAYS_FOR_RATIOS = 20
"""Fewer days of equity than this and the tearsheet withholds annualized ratios (a Sharpe of
three points means nothing): the page then lists the values and says why."""


@dataclass(frozen=True)
class SessionSelection:
    """Which recorded sessions a live tearsheet covers: ``run`` (a run id, or ``"last"``),
    else the sessions that started from ``start`` to ``end`` (dates, inclusive; None: open),
    always of one kind: ``simulated`` True (``--simulate`` runs) or False (real gateway runs);
    None takes the kind of the newest session."""

    run: str | None = None
    start: date | None = None
    end: date | None = None
    simulated: bool | None = None

    def describe(self) -> str:
        """Return the selection in words (for the page and the status line)."""
        if self.run:
            return f"run {self.run}"
        if self.start or self.end:
            return f"runs started {self.start or '...'}..{self.end or '...'}"
        return "all runs of the journal"


def _started(meta: dict) -> date | None:
    day = _day(meta.get("started"))
    return None if day is None else day.date()


def select_sessions(found: list[Path], selection: SessionSelection
                    ) -> tuple[list[Path], list[str]]:
    """Return the sessions of ``found`` that ``selection`` picks, in time order, and notes on
    what was left out (the other kind, another run, outside the dates).

    Raises ConfigError: the selection matches no session (the message says what exists).
    """
    metas = [(d, read_meta(d)) for d in found]
    metas.sort(key=lambda dm: (str(dm[1].get("started") or ""), dm[0].name))
    kind = selection.simulated
    if kind is None and metas:
        kind = bool(metas[-1][1].get("simulate"))
    same = [(d, m) for d, m in metas if bool(m.get("simulate")) == kind]
    notes = []
    other = len(metas) - len(same)
    if other:
        notes.append(f"{other} {'real' if kind else 'simulated'} session(s) left out: "
                     "simulated and real sessions are never mixed")
    picked = same
    if selection.run == "last":
        picked = same[-1:]
    elif selection.run:
        picked = [(d, m) for d, m in same if m.get("run_id") == selection.run or
                  d.name == selection.run]
    elif selection.start or selection.end:
        picked = [(d, m) for d, m in same
                  if (_started(m) is not None
                      and (selection.start is None or _started(m) >= selection.start)
                      and (selection.end is None or _started(m) <= selection.end))]
    if not picked:
        runs = ", ".join(m.get("run_id") or d.name for d, m in same[-5:]) or "none"
        raise ConfigError(f"no {'simulated' if kind else 'real'} session record matches "
                          f"{selection.describe()} (newest runs: {runs})")
    return [d for d, _ in picked], notes


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


def session_equity(path: Path, records: JournalRecords | None = None,
                   sessions: list[Path] | None = None) -> tuple[pd.Series, pd.Series]:
    """Return ``(values, closes)``: the account's value per day and the first symbol's close
    per day over every session under ``path`` (``records``' journal's only, when given; the
    given ``sessions`` only, when given). Raises ConfigError when there is none."""
    points: dict[pd.Timestamp, float] = {}
    closes: dict[pd.Timestamp, float] = {}
    for directory in sessions if sessions is not None else journal_sessions(path, records):
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


def _points_page(values: pd.Series, output: Path, title: str, notes: list[str]) -> Path:
    rows = "".join(f"<tr><td>{d:%Y-%m-%d}</td><td>{v:,.2f}</td></tr>" for d, v in values.items())
    text = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em}td,th{padding:3px 10px;"
        "border-bottom:1px solid #ddd;text-align:right}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{text}<table id='values'><tr><th>day</th>"
        f"<th>account value</th></tr>{rows}</table></body></html>", encoding="utf-8")
    return output


def write_live_tearsheet(path: Path, output: Path, title: str = "bt_ibkr live",
                         records: JournalRecords | None = None,
                         selection: SessionSelection | None = None) -> tuple[Path, str]:
    """Write the tearsheet of the sessions under ``path`` (``records``' journal's only, when
    given; the ones ``selection`` picks, of one kind, simulated or real); return ``(output,
    summary)``, the summary saying how many sessions and days the figures rest on.

    With fewer than :data:`MIN_DAYS_FOR_RATIOS` days of equity the page lists the values and
    withholds annualized ratios (it says so); from there on it is the quantstats tearsheet with
    the same line under its run summary.

    Raises ValueError when the sessions hold fewer than two days, ConfigError when there is no
    session (of that journal, or matching the selection).
    """
    from analyzers.tearsheet import write_tearsheet

    selection = selection or SessionSelection()
    picked, notes = select_sessions(journal_sessions(path, records), selection)
    values, close = session_equity(path, records, sessions=picked)
    if len(values) < 2:
        raise ValueError(f"the selected session records ({selection.describe()}) hold "
                         f"{len(values)} day(s) of account value; a tearsheet needs at least 2")
    kind = "simulated" if bool(read_meta(picked[-1]).get("simulate")) else "real"
    summary = (f"{len(picked)} {kind} session(s), {len(values)} days of account value "
               f"({values.index[0]:%Y-%m-%d}..{values.index[-1]:%Y-%m-%d}; "
               f"{selection.describe()})")
    notes = [summary, *notes]
    if len(values) < MIN_DAYS_FOR_RATIOS:
        notes.append(f"annualized ratios (Sharpe, Sortino, CAGR, volatility) are withheld below "
                     f"{MIN_DAYS_FOR_RATIOS} days of equity: {len(values)} days would make them "
                     "noise")
        return _points_page(values, output, title, notes), summary
    bench = close.reindex(values.index).ffill().pct_change().fillna(0.0) if len(close) else None
    rows = [("sessions", str(len(picked)), ""), ("days", str(len(values)), ""),
            ("first value", f"{values.iloc[0]:,.2f}", ""),
            ("last value", f"{values.iloc[-1]:,.2f}", "")]
    out = write_tearsheet(values, output, benchmark=bench, title=title, summary_rows=rows,
                          notes=notes)
    return out, summary
