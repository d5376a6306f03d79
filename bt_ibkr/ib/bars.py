"""Bar sizes and durations, IB's way: the one table every layer reads.

* :data:`MAX_DURATION` / :data:`BAR_SECONDS`: IB's maximum request duration and the length of
  each bar size (from IB's historical data limitations; months as 30 days, years as 365);
* :func:`normalize_bar_size` turns a user's spelling into IB's (``"1  Day"`` -> ``"1 day"``);
* :func:`bar_size` / :func:`timeframe_of`: backtrader ``(timeframe, compression)`` <-> IB;
* :func:`parse_duration`, :func:`duration_delta`, :func:`duration_str`: IB duration strings;
* :data:`YF_INTERVALS` / :data:`INTERVAL_BAR_SIZES`: yfinance intervals <-> IB bar sizes.

Pure: imports neither backtrader (until :func:`bar_size`/:func:`timeframe_of` are called) nor an
IB client library, so the backtest path may use it.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

from bt_ibkr.errors import ConfigError

DAY = 86400

#: IB's maximum request duration per bar size, in seconds
MAX_DURATION: dict[str, int] = {
    "1 secs": 1800, "5 secs": 7200, "10 secs": 10800, "15 secs": 14400, "30 secs": 28800,
    "1 min": DAY, "2 mins": 2 * DAY, "3 mins": 7 * DAY, "5 mins": 7 * DAY, "10 mins": 7 * DAY,
    "15 mins": 14 * DAY, "20 mins": 14 * DAY, "30 mins": 30 * DAY,
    "1 hour": 30 * DAY, "2 hours": 30 * DAY, "3 hours": 30 * DAY, "4 hours": 30 * DAY,
    "8 hours": 30 * DAY, "1 day": 365 * DAY, "1 week": 365 * DAY, "1 month": 365 * DAY,
}  # fmt: skip

#: bar size -> bar length in seconds (months as 30 days)
BAR_SECONDS: dict[str, int] = {
    "1 secs": 1, "5 secs": 5, "10 secs": 10, "15 secs": 15, "30 secs": 30,
    "1 min": 60, "2 mins": 120, "3 mins": 180, "5 mins": 300, "10 mins": 600,
    "15 mins": 900, "20 mins": 1200, "30 mins": 1800,
    "1 hour": 3600, "2 hours": 7200, "3 hours": 10800, "4 hours": 14400, "8 hours": 28800,
    "1 day": DAY, "1 week": 7 * DAY, "1 month": 30 * DAY,
}  # fmt: skip

#: every bar size IB's historical-data API accepts (``barSizeSetting``), shortest first
BAR_SIZES: tuple[str, ...] = tuple(MAX_DURATION)

_ALIASES = {
    "1 sec": "1 secs", "1 mins": "1 min", "1 hours": "1 hour", "1 days": "1 day",
    "1 d": "1 day", "1 weeks": "1 week", "1 months": "1 month", "60 mins": "1 hour",
}  # fmt: skip

#: IB bar size -> yfinance interval (IB sizes missing here have no yfinance equivalent)
YF_INTERVALS: dict[str, str] = {
    "1 min": "1m", "2 mins": "2m", "5 mins": "5m", "15 mins": "15m", "30 mins": "30m",
    "1 hour": "1h", "1 day": "1d", "1 week": "1wk", "1 month": "1mo",
}  # fmt: skip

#: yfinance interval -> the bar size it names in cache keys (IB's spelling where IB has it)
INTERVAL_BAR_SIZES: dict[str, str] = {
    **{interval: size for size, interval in YF_INTERVALS.items()},
    "60m": "1 hour", "90m": "90 mins", "5d": "5 days", "3mo": "3 months",
}


def normalize_bar_size(bar_size: str) -> str:
    """Return IB's spelling of ``bar_size`` ("1  Day" -> "1 day"); ConfigError if IB has none."""
    text = " ".join(str(bar_size).lower().split())
    text = _ALIASES.get(text, text)
    if text not in MAX_DURATION:
        raise ConfigError(
            f"bar size {bar_size!r} is not an IB bar size; use one of {', '.join(MAX_DURATION)}"
        )
    return text


def is_intraday(bar_size: str) -> bool:
    """Return True for bar sizes below one day (bars stamped in UTC, not by session date)."""
    return BAR_SECONDS[normalize_bar_size(bar_size)] < DAY


def bar_size(timeframe: int, compression: int) -> str:
    """Return IB's ``barSizeSetting`` for a backtrader ``(timeframe, compression)``.

    Raises :class:`ConfigError` when IB has no such bar size (e.g. 7 minutes, ticks).
    """
    import backtrader as bt

    tf = bt.TimeFrame
    name = None
    if timeframe == tf.Seconds:
        name = f"{compression} secs"
    elif timeframe == tf.Minutes:
        if compression % 60 == 0:
            hours = compression // 60
            name = f"{hours} hour" + ("s" if hours > 1 else "")
        else:
            name = f"{compression} min" + ("s" if compression > 1 else "")
    elif timeframe == tf.Days:
        name = "1 week" if compression == 7 else f"{compression} day"
    elif timeframe == tf.Weeks:
        name = f"{compression} week"
    elif timeframe == tf.Months:
        name = f"{compression} month"
    if name not in MAX_DURATION:
        raise ConfigError(
            f"IB has no historical bar size for timeframe {tf.getname(timeframe, compression)} "
            f"x{compression}; use one of: {', '.join(MAX_DURATION)}"
        )
    return name


def timeframe_of(bar_size: str) -> tuple[int, int]:
    """Return backtrader's ``(timeframe, compression)`` for an IB bar size like ``"5 mins"``.

    Raises ConfigError naming ``bar_size`` when it is not an IB bar size.
    """
    import backtrader as bt

    n, unit = normalize_bar_size(bar_size).split()
    tf, mult = {
        "secs": (bt.TimeFrame.Seconds, 1), "min": (bt.TimeFrame.Minutes, 1),
        "mins": (bt.TimeFrame.Minutes, 1), "hour": (bt.TimeFrame.Minutes, 60),
        "hours": (bt.TimeFrame.Minutes, 60), "day": (bt.TimeFrame.Days, 1),
        "week": (bt.TimeFrame.Weeks, 1), "month": (bt.TimeFrame.Months, 1),
    }[unit]  # fmt: skip
    return tf, int(n) * mult


_DURATION = re.compile(r"^\s*(\d+)\s*([SDWMY])\s*$", re.IGNORECASE)


def parse_duration(duration: str) -> tuple[int, str]:
    """Return ``(count, unit)`` of an IB duration string such as "1 Y", "6 M", "30 D", "3600 S".

    Units: S seconds, D days, W weeks, M months, Y years. Raises ConfigError otherwise.
    """
    match = _DURATION.match(str(duration))
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(
            f"duration {duration!r} is not an IB duration; write '<n> <unit>' with unit "
            f"S, D, W, M or Y, e.g. '3600 S', '30 D', '2 W', '6 M', '1 Y'"
        )
    return int(match.group(1)), match.group(2).upper()


def duration_delta(duration: str):
    """Return the calendar span of an IB duration: a timedelta for S/D/W, a pandas DateOffset
    for M/Y ("6 M" -> 6 calendar months, "1 Y" -> 1 year)."""
    n, unit = parse_duration(duration)
    if unit in ("S", "D", "W"):
        return timedelta(seconds=n * {"S": 1, "D": DAY, "W": 7 * DAY}[unit])
    import pandas as pd

    return pd.DateOffset(months=n) if unit == "M" else pd.DateOffset(years=n)


def duration_str(seconds: float) -> str:
    """Return the shortest IB ``durationStr`` covering ``seconds``: 'N S' up to a day, else 'N D'."""
    if seconds <= DAY:
        return f"{max(60, math.ceil(seconds))} S"
    return f"{math.ceil(seconds / DAY)} D"


def bar_step(bar_size: str) -> int:
    """Return the seconds of an intraday IB bar size, 0 for day/week/month bars (handled by
    session); KeyError when IB has no such bar size."""
    seconds = BAR_SECONDS[bar_size]
    return seconds if seconds < DAY else 0
