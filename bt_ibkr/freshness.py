"""Is the decision bar the one the exchange calendar says it should be?

A daily run decides on the last completed session's bar. If the gateway's newest bar is older
(stale data, a frozen feed, a clock far ahead) the run must not trade on it; if a bar is stamped
after the last completed session (a time-zone or clock error, or a bar still forming), it is
reported, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from bt_ibkr.calendars import (
    DEFAULT_CALENDAR,
    last_completed_session,
    sessions_between,
    trading_day,
)
from bt_ibkr.errors import StaleDataError


@dataclass(frozen=True)
class DecisionBarCheck:
    """What :func:`check_decision_bar` found: the bars to use and the notes to report."""

    symbol: str
    expected: date  # the last completed session at ``now``
    decision: date  # the bar the run decides on (== expected)
    left_out: tuple[date, ...]  # bars after ``expected`` (still forming), reported
    # bars on non-session days are left out too, and named in ``notes``
    notes: tuple[str, ...]
    kept: tuple[date, ...] = ()  # the bar dates to use: sessions up to ``decision``, in order


def check_decision_bar(symbol: str, bar_dates: list[date], now: datetime,
                       calendar: str = DEFAULT_CALENDAR) -> DecisionBarCheck:
    """Check the daily bars' dates against the exchange calendar at ``now`` (naive = UTC).

    Returns the check; bars dated after the last completed session are listed in ``left_out``
    with a note (the session still forming, or a future stamp).

    Raises:
        StaleDataError: no bars, or the newest bar on or before the last completed session is
            older than it (message names the symbol, the bar's date and the expected date); or
            a bar is dated after the session that is open now (a clock or time-zone error).
    """
    expected = last_completed_session(now, calendar)
    notes: list[str] = []
    if bar_dates:
        sessions = set(sessions_between(min(bar_dates), max(max(bar_dates), expected), calendar))
        off = [d for d in bar_dates if d not in sessions]
        if off:
            notes.append(f"{symbol}: left out {len(off)} bar(s) dated on days that are not "
                         f"{calendar} sessions (first {off[0]}): mis-stamped (time zone?)")
            bar_dates = [d for d in bar_dates if d in sessions]
    if not bar_dates:
        raise StaleDataError(f"{symbol}: no daily bars to decide on (expected the bar of "
                             f"{expected}); check the market-data permissions")
    upto = [d for d in bar_dates if d <= expected]
    after = tuple(d for d in bar_dates if d > expected)
    today = trading_day(now, calendar)
    future = [d for d in after if d > today or (d == today and today == expected)]
    if future:
        raise StaleDataError(
            f"{symbol}: bar dated {future[0]} is in the future at the gateway's clock "
            f"{now:%Y-%m-%d %H:%M} UTC (last completed session {expected}); a time-zone or "
            "clock error: check the gateway's clock and the contract's time zone")
    for d in after:
        notes.append(f"{symbol}: leaving out the bar of {d}: that session has not closed yet")
    newest = max(upto) if upto else None
    if newest is None or newest < expected:
        raise StaleDataError(
            f"{symbol}: the newest daily bar is {newest or 'missing'} but the last completed "
            f"session is {expected} (gateway clock {now:%Y-%m-%d %H:%M} UTC): stale data, not "
            "deciding; check the gateway's market data and clock, then run again")
    return DecisionBarCheck(symbol, expected, newest, after, tuple(notes), tuple(upto))


__all__ = ["DecisionBarCheck", "check_decision_bar"]
