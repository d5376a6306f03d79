"""The canonical bar frame and its validation (DESIGN §9).

Every data source in bt_ibkr (cache, yahoo, sample, csv, ibkr) hands out bars in one shape, the
*canonical bar frame*, and every consumer (cache, feeds, strategies, tearsheet) relies on it:

- a ``pandas.DataFrame`` whose columns are exactly ``open, high, low, close, volume``, in that
  order, all ``float64``;
- the index is a ``DatetimeIndex`` named ``datetime``, sorted ascending, without duplicates,
  in nanosecond resolution;

  - daily (and coarser) bars: tz-naive session dates at 00:00 (the exchange's trading date);
  - intraday bars: tz-aware, in UTC (the bar's start time);

- ``frame.attrs`` carries:

  - ``symbol`` (str): the symbol as the user asked for it (e.g. ``"SPY"``, ``"^GSPC"``);
  - ``source`` (str): one of ``"cache"``, ``"yahoo"``, ``"sample"``, ``"csv"``, ``"ibkr"``;
  - ``tz`` (str): the exchange time zone, e.g. ``"America/New_York"``;
  - ``adjusted`` (bool): True when prices are adjusted for splits and dividends.

Validation rules (a bad row is an error naming the input and the row's date, never dropped):
not empty; monotonic, unique timestamps; no NaN (or infinite) open/high/low/close;
open/high/low/close > 0 (returns, drawdowns and share counts need positive prices: a zero or
negative price is a data error, e.g. a bad back-adjustment);
``high >= max(open, close)`` and ``low <= min(open, close)`` with a relative tolerance of 1e-9;
``volume >= 0`` and not NaN. Sources that have no volume at all (indices, forex) may ask for NaN
volume to be read as 0 with ``fill_missing_volume=True``; the default is an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from bt_ibkr.errors import DataValidationError
from bt_ibkr.sources import BAR_SOURCES

__all__ = [
    "BAR_COLUMNS",
    "BAR_SOURCES",
    "PRICE_COLUMNS",
    "REL_TOLERANCE",
    "describe_range",
    "format_stamp",
    "is_intraday_frame",
    "set_bar_attrs",
    "validate_bars",
]

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""Columns of the canonical bar frame, in order."""

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

"""Allowed values of ``frame.attrs["source"]``."""

REL_TOLERANCE = 1e-9
"""Relative float tolerance of the high/low checks."""

_MAX_LISTED = 5
_FIX_HINT = "fix or remove that row in the source data (or re-download it); rows are never dropped"


def format_stamp(ts: pd.Timestamp, intraday: bool) -> str:
    """Return a timestamp as a user reads it: ``2020-01-31`` for daily bars, ISO with zone else."""
    if not intraday:
        return ts.strftime("%Y-%m-%d")
    return ts.isoformat()


def describe_range(frame: pd.DataFrame) -> str:
    """Return ``first..last`` of a non-empty canonical frame (dates for daily, ISO for intraday)."""
    intraday = is_intraday_frame(frame)
    return f"{format_stamp(frame.index[0], intraday)}..{format_stamp(frame.index[-1], intraday)}"


def is_intraday_frame(frame: pd.DataFrame) -> bool:
    """True when the frame's index is tz-aware or has a time of day other than 00:00."""
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        return False
    if index.tz is not None:
        return True
    return bool(len(index)) and bool((index != index.normalize()).any())


def set_bar_attrs(
    frame: pd.DataFrame, *, symbol: str, source: str, tz: str, adjusted: bool
) -> pd.DataFrame:
    """Set the four canonical ``attrs`` on ``frame`` (in place) and return it.

    Raises DataValidationError when ``source`` is not one of BAR_SOURCES.
    """
    if source not in BAR_SOURCES:
        raise DataValidationError(
            f"{symbol}: unknown bar source {source!r}; expected one of {', '.join(BAR_SOURCES)}"
        )
    frame.attrs.update(symbol=str(symbol), source=source, tz=str(tz), adjusted=bool(adjusted))
    return frame


def _list_stamps(stamps, intraday: bool) -> str:
    stamps = list(stamps)
    shown = ", ".join(format_stamp(pd.Timestamp(s), intraday) for s in stamps[:_MAX_LISTED])
    if len(stamps) > _MAX_LISTED:
        shown += f" and {len(stamps) - _MAX_LISTED} more"
    return shown


def _fmt(value: float) -> str:
    return f"{value:.10g}"


def validate_bars(
    frame: pd.DataFrame,
    name: str,
    *,
    intraday: bool | None = None,
    fill_missing_volume: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Check ``frame`` against the canonical bar frame rules and return a canonical copy.

    ``frame`` needs the columns open/high/low/close/volume (any letter case; extra columns are
    dropped) and a DatetimeIndex. ``name`` (a symbol or file path) is put in every error message.
    ``intraday`` None infers it: a tz-aware index or a time of day other than 00:00 means
    intraday. Daily frames with a tz-aware index keep their wall-clock date and lose the zone;
    intraday frames are converted to UTC (a tz-naive intraday index is an error, because the
    zone it was meant in is unknown). ``fill_missing_volume`` reads NaN volume as 0; only for
    sources that publish no volume (indices, forex). ``attrs`` are merged over ``frame.attrs``.

    Returns a new frame (the input is not modified) with float64 columns in canonical order, the
    index named ``datetime`` and the attrs carried over.

    Raises DataValidationError naming ``name``, the offending row's date and the broken rule.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(
            f"{name}: expected a pandas DataFrame of bars, got {type(frame).__name__}"
        )
    merged_attrs = dict(frame.attrs)
    if attrs:
        merged_attrs.update(attrs)
    if "source" in merged_attrs and merged_attrs["source"] not in BAR_SOURCES:
        raise DataValidationError(
            f"{name}: unknown bar source {merged_attrs['source']!r}; "
            f"expected one of {', '.join(BAR_SOURCES)}"
        )

    if len(frame) == 0:
        raise DataValidationError(
            f"{name}: no bars (empty frame); check the symbol and the date range"
        )
    lower = {str(c).strip().lower(): c for c in frame.columns}
    missing = [c for c in BAR_COLUMNS if c not in lower]
    if missing:
        found = ", ".join(str(c) for c in frame.columns) or "none"
        raise DataValidationError(
            f"{name}: missing column(s) {', '.join(missing)} (found: {found}); "
            f"bars need open, high, low, close, volume"
        )

    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        try:
            index = pd.DatetimeIndex(index)
        except (TypeError, ValueError) as exc:
            raise DataValidationError(
                f"{name}: the index must hold timestamps, got {frame.index.dtype} ({exc})"
            ) from None
    if index.hasnans:
        pos = int(np.flatnonzero(index.isna())[0])
        raise DataValidationError(
            f"{name}: row {pos + 1} has no timestamp (NaT); {_FIX_HINT}"
        )

    if intraday is None:
        intraday = index.tz is not None or bool((index != index.normalize()).any())
    if intraday:
        if index.tz is None:
            raise DataValidationError(
                f"{name}: intraday bars need tz-aware timestamps (first: {index[0]}); "
                f"localize them to the exchange zone first, e.g. "
                f"frame.tz_localize('America/New_York')"
            )
        index = index.tz_convert("UTC")
    else:
        if index.tz is not None:
            index = index.tz_localize(None)
        off_midnight = index != index.normalize()
        if off_midnight.any():
            bad = index[off_midnight]
            raise DataValidationError(
                f"{name}: daily bars must be dates at 00:00, but {_list_stamps(bad, True)} "
                f"carry a time of day; pass intraday=True if these are intraday bars"
            )
    index = index.as_unit("ns")

    out = pd.DataFrame(index=index)
    for col in BAR_COLUMNS:
        values = frame[lower[col]]
        try:
            values = pd.to_numeric(values.to_numpy(), errors="raise")
        except (TypeError, ValueError):
            coerced = pd.to_numeric(values.to_numpy(), errors="coerce")
            bad_pos = int(np.flatnonzero(pd.isna(coerced) & ~pd.isna(values.to_numpy()))[0])
            raise DataValidationError(
                f"{name}: {format_stamp(index[bad_pos], intraday)}: {col} "
                f"{values.iloc[bad_pos]!r} is not a number; {_FIX_HINT}"
            ) from None
        out[col] = np.asarray(values, dtype="float64")
    out.index.name = "datetime"

    _check_order(out.index, name, intraday)
    _check_values(out, name, intraday, fill_missing_volume)

    out.attrs = merged_attrs
    return out


def _check_order(index: pd.DatetimeIndex, name: str, intraday: bool) -> None:
    if index.has_duplicates:
        dups = index[index.duplicated(keep="first")].unique()
        raise DataValidationError(
            f"{name}: duplicate timestamp(s) {_list_stamps(dups, intraday)}; each bar must "
            f"appear once - remove the repeated row(s) in the source data"
        )
    if not index.is_monotonic_increasing:
        values = index.asi8
        pos = int(np.flatnonzero(values[1:] < values[:-1])[0]) + 1
        raise DataValidationError(
            f"{name}: timestamps are not in ascending order: "
            f"{format_stamp(index[pos], intraday)} comes after "
            f"{format_stamp(index[pos - 1], intraday)} (row {pos + 1}); sort the data by date"
        )


def _check_values(out: pd.DataFrame, name: str, intraday: bool, fill_missing_volume: bool):
    prices = out[list(PRICE_COLUMNS)].to_numpy()
    bad_rows = ~np.isfinite(prices).all(axis=1)
    if bad_rows.any():
        pos = int(np.flatnonzero(bad_rows)[0])
        cols = [c for c, ok in zip(PRICE_COLUMNS, np.isfinite(prices[pos]), strict=True) if not ok]
        count = int(bad_rows.sum())
        more = f" ({count} rows in all: {_list_stamps(out.index[bad_rows], intraday)})"
        raise DataValidationError(
            f"{name}: {format_stamp(out.index[pos], intraday)}: {', '.join(cols)} is "
            f"missing (NaN or infinite){more if count > 1 else ''}; {_FIX_HINT}"
        )

    non_positive = prices <= 0
    bad_rows = non_positive.any(axis=1)
    if bad_rows.any():
        pos = int(np.flatnonzero(bad_rows)[0])
        cols = [
            f"{col} {_fmt(prices[pos, i])}"
            for i, col in enumerate(PRICE_COLUMNS)
            if non_positive[pos, i]
        ]
        count = int(bad_rows.sum())
        more = f" ({count} rows in all: {_list_stamps(out.index[bad_rows], intraday)})"
        raise DataValidationError(
            f"{name}: {format_stamp(out.index[pos], intraday)}: {', '.join(cols)} is not a "
            f"positive price (open/high/low/close must be > 0){more if count > 1 else ''}; "
            f"{_FIX_HINT}"
        )

    o, h, low, c = (out[k].to_numpy() for k in PRICE_COLUMNS)
    top = np.maximum(o, c)
    bottom = np.minimum(o, c)
    high_bad = h < top - REL_TOLERANCE * np.abs(top)
    if high_bad.any():
        pos = int(np.flatnonzero(high_bad)[0])
        which = "close" if c[pos] >= o[pos] else "open"
        raise DataValidationError(
            f"{name}: {format_stamp(out.index[pos], intraday)}: high {_fmt(h[pos])} is below "
            f"{which} {_fmt(top[pos])} (high must be >= max(open, close)); {_FIX_HINT}"
        )
    low_bad = low > bottom + REL_TOLERANCE * np.abs(bottom)
    if low_bad.any():
        pos = int(np.flatnonzero(low_bad)[0])
        which = "close" if c[pos] <= o[pos] else "open"
        raise DataValidationError(
            f"{name}: {format_stamp(out.index[pos], intraday)}: low {_fmt(low[pos])} is above "
            f"{which} {_fmt(bottom[pos])} (low must be <= min(open, close)); {_FIX_HINT}"
        )

    vol = out["volume"].to_numpy()
    nan_vol = np.isnan(vol)
    if nan_vol.any():
        if fill_missing_volume:
            out["volume"] = np.where(nan_vol, 0.0, vol)
            vol = out["volume"].to_numpy()
        else:
            pos = int(np.flatnonzero(nan_vol)[0])
            raise DataValidationError(
                f"{name}: {format_stamp(out.index[pos], intraday)}: volume is missing (NaN); "
                f"{_FIX_HINT} (only sources without any volume, like indices or forex, may "
                f"read missing volume as 0)"
            )
    vol_bad = (vol < 0) | np.isinf(vol)
    if vol_bad.any():
        pos = int(np.flatnonzero(vol_bad)[0])
        raise DataValidationError(
            f"{name}: {format_stamp(out.index[pos], intraday)}: volume {_fmt(vol[pos])} is "
            f"negative or infinite (volume must be >= 0); {_FIX_HINT}"
        )


def as_date(value: Any, what: str, error: type[Exception] = ValueError) -> date | None:
    """Return ``value`` (date, datetime, Timestamp or date text) as a date; None stays None.

    Raises ``error`` (pass the caller's error type, e.g. ConfigError) with a message that
    starts with ``what`` and shows the bad value.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError) as exc:
        raise error(f"{what} {value!r} is not a date (expected YYYY-MM-DD): {exc}") from None
