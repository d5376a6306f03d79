"""UTC, the one time zone bt_ibkr computes in: the conversions every layer needs.

Rule: a naive datetime is UTC; a ``date`` means its 00:00 UTC. Exchange time zones appear only
where a bar is stamped (feeds, parsing) and in what users read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

__all__ = ["midnight", "naive_utc", "to_utc", "utc_now"]


def to_utc(value: datetime | date) -> datetime:
    """Return ``value`` as a tz-aware UTC datetime (naive = UTC, a date = its 00:00 UTC).

    Raises TypeError for anything that is not a date or datetime.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    raise TypeError(f"expected a date or datetime, got {value!r}")


def naive_utc(value: datetime | date) -> datetime:
    """Return ``value`` as a naive datetime in UTC (backtrader's internal form)."""
    return to_utc(value).replace(tzinfo=None)


def midnight(value: datetime | date, days: int = 0) -> datetime:
    """Return 00:00 UTC (tz-aware) of ``value``'s UTC date, ``days`` later."""
    day = value.astimezone(UTC).date() if isinstance(value, datetime) and value.tzinfo else (
        value.date() if isinstance(value, datetime) else value)
    return datetime.combine(day, time(0), tzinfo=UTC) + timedelta(days=days)


def utc_now() -> datetime:
    """Return the current time as a tz-aware UTC datetime (this machine's clock)."""
    return datetime.now(UTC)
