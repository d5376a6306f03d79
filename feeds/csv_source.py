"""CSV source: bars from a user's CSV file, parsed strictly into a canonical bar frame.

Accepted layout: a header row; a date column named date, datetime, timestamp or time (any
letter case; otherwise the first column); open, high, low, close, volume in any letter case and
order; optionally "adj close" (also adj_close / adjclose), ignored unless
``use_adj_close=True``. Extra columns are ignored. Dates must be ISO 8601 (``2020-01-31``,
``2020-01-31 15:30:00``, ``2020-01-31T15:30:00-05:00``); nothing is guessed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bt_ibkr.errors import DataError, DataValidationError
from bt_ibkr.validation import BAR_COLUMNS, PRICE_COLUMNS, validate_bars

__all__ = ["DATE_COLUMN_NAMES", "load_csv"]

DATE_COLUMN_NAMES = ("date", "datetime", "timestamp", "time")
_ADJ_NAMES = ("adj close", "adj_close", "adjclose", "adjusted close", "adj. close")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)


def _err_line(path: Path, line: int, what: str) -> DataValidationError:
    return DataValidationError(f"{path}: line {line}: {what}")


def _parse_dates(raw: pd.Series, path: Path, tz: str, intraday: bool | None) -> pd.DatetimeIndex:
    text = raw.astype("string").str.strip()
    empty = text.isna() | (text == "")
    if empty.any():
        pos = int(np.flatnonzero(empty.to_numpy())[0])
        raise _err_line(path, pos + 2, f"empty date in column {raw.name!r}; fill it in")
    has_offset = text.str.contains(_OFFSET).to_numpy(dtype=bool)
    if has_offset.any() and not has_offset.all():
        pos = int(np.flatnonzero(has_offset != has_offset[0])[0])
        raise _err_line(
            path, pos + 2,
            f"date {text.iloc[pos]!r} mixes zoned and zone-less timestamps "
            f"(line 2 is {text.iloc[0]!r}); use one style for the whole column",
        )
    aware = bool(has_offset.all())
    parsed = pd.to_datetime(text, format="ISO8601", errors="coerce", utc=aware)
    bad = parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise _err_line(
            path, pos + 2,
            f"cannot parse date {text.iloc[pos]!r} in column {raw.name!r}; expected ISO 8601, "
            f"e.g. 2020-01-31 or 2020-01-31 15:30:00",
        )
    index = pd.DatetimeIndex(parsed)
    if intraday is None:
        local = index.tz_convert(tz) if aware else index
        intraday = bool((local != local.normalize()).any())
    if intraday:
        if not aware:
            try:
                index = index.tz_localize(tz, ambiguous="raise", nonexistent="raise")
            except Exception as exc:  # pytz and zoneinfo raise different types
                raise DataValidationError(
                    f"{path}: a timestamp does not exist or is ambiguous in {tz} ({exc}); "
                    f"write timestamps with a UTC offset"
                ) from None
        return index.tz_convert("UTC")
    if aware:
        index = index.tz_convert(tz).tz_localize(None)
    return index


def load_csv(
    path: str | Path,
    symbol: str | None = None,
    *,
    tz: str = "America/New_York",
    adjusted: bool = False,
    use_adj_close: bool = False,
    intraday: bool | None = None,
    no_volume: bool = False,
) -> pd.DataFrame:
    """Read bars from the CSV file at ``path`` and return a canonical bar frame.

    ``symbol`` defaults to the file stem (``data/SPY.csv`` -> ``SPY``). ``tz`` is the exchange
    zone: zone-less intraday timestamps are read in it, zoned ones are converted to UTC.
    ``intraday`` None infers it from the timestamps (any time other than 00:00). ``adjusted``
    records whether the file's prices are already adjusted. ``use_adj_close`` scales open, high
    and low by adj close / close and uses adj close as close (attrs adjusted True); it needs an
    adj close column. ``no_volume`` allows a missing volume column or empty cells (read as 0),
    for indices and forex only.

    Raises DataError when the file does not exist or cannot be read; DataValidationError listing
    the missing and the found columns, naming the line and value of an unparseable date or a
    non-numeric price, or naming the date of a row that breaks a validation rule.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise DataError(
            f"CSV file {path} {what}; check the path given to --csv (resolved: {path.resolve()})"
        )
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read CSV file {path}: {exc}") from None
    symbol = symbol or path.stem
    name = f"{path} ({symbol})"

    names = {str(c).strip().lower(): c for c in raw.columns}
    date_col = next((names[n] for n in DATE_COLUMN_NAMES if n in names), None)
    if date_col is None and len(raw.columns):
        first = str(raw.columns[0]).strip().lower()
        if first not in BAR_COLUMNS:
            date_col = raw.columns[0]
    adj_col = next((names[n] for n in _ADJ_NAMES if n in names), None)
    required = [c for c in BAR_COLUMNS if not (no_volume and c == "volume")]
    missing = [c for c in required if c not in names]
    if date_col is None:
        missing.insert(0, "date")
    if use_adj_close and adj_col is None:
        missing.append("adj close")
    if missing:
        found = ", ".join(str(c) for c in raw.columns) or "none"
        raise DataValidationError(
            f"{path}: missing column(s) {', '.join(missing)}; found: {found}. The header needs "
            f"a date column (date/datetime/timestamp) and open, high, low, close, volume"
        )
    if raw.empty:
        raise DataValidationError(f"{path}: the file has a header but no rows")

    index = _parse_dates(raw[date_col], path, tz, intraday)

    wanted = list(PRICE_COLUMNS) + ["volume"]
    numbers: dict[str, np.ndarray] = {}
    sources = {c: names.get(c) for c in wanted}
    if use_adj_close:
        sources["adj close"] = adj_col
    for col, src in sources.items():
        if src is None:  # volume under no_volume
            numbers[col] = np.full(len(raw), np.nan)
            continue
        text = raw[src].astype("string").str.strip()
        values = pd.to_numeric(text.replace("", pd.NA), errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
        bad = np.isnan(values) & (text != "").to_numpy(dtype=bool)
        bad &= ~text.str.lower().isin(["nan", "na", "null"]).to_numpy(dtype=bool)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise _err_line(
                path, pos + 2,
                f"{src} value {text.iloc[pos]!r} is not a number; fix it (decimal point, no "
                f"thousands separators or currency signs)",
            )
        numbers[col] = values

    if use_adj_close:
        ratio = numbers["adj close"] / numbers["close"]
        for col in ("open", "high", "low"):
            numbers[col] = numbers[col] * ratio
        numbers["close"] = numbers.pop("adj close")
        adjusted = True

    frame = pd.DataFrame({c: numbers[c] for c in wanted}, index=index)
    return validate_bars(
        frame,
        name,
        intraday=index.tz is not None,
        fill_missing_volume=no_volume,
        attrs={"symbol": symbol, "source": "csv", "tz": tz, "adjusted": bool(adjusted)},
    )
