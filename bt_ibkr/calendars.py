"""Exchange sessions and holidays, from exchange_calendars.

``trading_day(now)`` is the session a moment belongs to for daily bookkeeping (the daily-loss
halt, the start-of-day equity): the session that is open, or after its close the one that just
ended, until the next session opens. ``last_completed_session(now)`` is the newest session whose
close is at or before ``now``: the date a daily decision bar must carry.

IB exchange names map to exchange_calendars codes through :data:`EXCHANGE_CALENDARS`; anything
unknown falls back to the New York Stock Exchange (XNYS), whose sessions US stocks and ETFs on
SMART, ARCA, NASDAQ and the other US venues share.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

from bt_ibkr.errors import ConfigError

DEFAULT_CALENDAR = "XNYS"
"""The calendar of US stocks and ETFs (NYSE); also the fallback for unknown exchanges."""

EXCHANGE_CALENDARS: dict[str, str] = {
    "SMART": "XNYS", "NYSE": "XNYS", "ARCA": "XNYS", "AMEX": "XNYS", "BATS": "XNYS",
    "IEX": "XNYS", "ISLAND": "XNAS", "NASDAQ": "XNAS", "CME": "CMES", "GLOBEX": "CMES",
    "CBOT": "CMES", "NYMEX": "CMES", "IDEALPRO": "24/5", "LSE": "XLON", "IBIS": "XETR",
    "XETRA": "XETR", "SBF": "XPAR", "AEB": "XAMS", "TSE": "XTSE", "TSEJ": "XTKS",
    "SEHK": "XHKG", "ASX": "XASX",
}
"""IB exchange -> exchange_calendars code."""

_FIRST = "1990-01-01"  # far enough back for every warm-up and backtest this package runs


@lru_cache(maxsize=16)
def get_calendar(name: str = DEFAULT_CALENDAR) -> xcals.ExchangeCalendar:
    """Return the exchange_calendars calendar ``name`` (cached), covering 1990 to a year ahead.

    Raises:
        ConfigError: ``name`` is not an exchange_calendars code.
    """
    try:
        return xcals.get_calendar(name, start=_FIRST)
    except xcals.errors.InvalidCalendarName:
        raise ConfigError(f"calendar {name!r}: not an exchange calendar; use one of e.g. "
                          "XNYS, XNAS, CMES, XLON") from None


def calendar_for(exchange: str | None) -> str:
    """Return the calendar code for an IB exchange name (``ARCA`` -> ``XNYS``); unknown or
    empty names give :data:`DEFAULT_CALENDAR`."""
    return EXCHANGE_CALENDARS.get(str(exchange or "").upper(), DEFAULT_CALENDAR)


def _ts(now: datetime) -> pd.Timestamp:
    ts = pd.Timestamp(now)
    return ts.tz_localize(UTC) if ts.tzinfo is None else ts.tz_convert(UTC)


def trading_day(now: datetime, calendar: str = DEFAULT_CALENDAR) -> date:
    """Return the session ``now`` (naive = UTC) belongs to: the open one, else the last one
    that closed (a moment after the close, at night, on a weekend or a holiday belongs to the
    session before it)."""
    cal = get_calendar(calendar)
    ts = _ts(now).floor("min")
    return cal.minute_to_session(ts, direction="previous").date()


def risk_session(now: datetime, calendar: str = DEFAULT_CALENDAR) -> date:
    """Return the session a moment belongs to for the daily-loss limit and the start-of-day
    equity: the session open at ``now``, else the NEXT one (a start at 09:29:40, the night,
    a weekend or a holiday belong to the coming session: the one whose losses a run started
    then will see), so a halt filed by a loss at 09:30:10 and a restart at 09:30:43 meet
    under the same session."""
    cal = get_calendar(calendar)
    ts = _ts(now).floor("min")
    return cal.minute_to_session(ts, direction="next").date()


def last_completed_session(now: datetime, calendar: str = DEFAULT_CALENDAR) -> date:
    """Return the newest session whose close is at or before ``now`` (naive = UTC)."""
    cal = get_calendar(calendar)
    ts = _ts(now).floor("min")
    session = cal.minute_to_session(ts, direction="previous")
    if cal.session_close(session) > ts:  # that session is still open
        session = cal.previous_session(session)
    return session.date()


def sessions_between(first: date, last: date, calendar: str = DEFAULT_CALENDAR) -> list[date]:
    """Return the sessions from ``first`` to ``last`` inclusive."""
    cal = get_calendar(calendar)
    return [s.date() for s in cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))]


__all__ = ["DEFAULT_CALENDAR", "EXCHANGE_CALENDARS", "calendar_for", "get_calendar",
           "last_completed_session", "risk_session", "sessions_between", "trading_day"]
