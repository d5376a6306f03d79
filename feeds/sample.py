"""Embedded sample: real S&P 500 and NASDAQ Composite daily bars, 1999-01-04..2018-12-31.

The prices ship with the ``arch`` package (``arch.data.sp500``, ``arch.data.nasdaq``; NCSA
licence); bt_ibkr depends on the package rather than copying its files. This is the source that
runs when there is no network and no IB gateway.
"""

from __future__ import annotations

import functools
import importlib.util
from datetime import date
from pathlib import Path

import pandas as pd

from bt_ibkr.errors import DataError, UnknownSymbolError
from bt_ibkr.validation import as_date, describe_range, validate_bars

__all__ = [
    "SAMPLE_ALIASES",
    "SAMPLE_END",
    "SAMPLE_START",
    "SAMPLE_SYMBOLS",
    "SAMPLE_TZ",
    "load_sample",
    "resolve_sample_symbol",
]

SAMPLE_SYMBOLS: tuple[str, ...] = ("^GSPC", "^IXIC")
"""Symbols the embedded sample serves (Yahoo spelling)."""

SAMPLE_ALIASES: dict[str, str] = {
    "^GSPC": "^GSPC",
    "GSPC": "^GSPC",
    "SPX": "^GSPC",
    "SP500": "^GSPC",
    "S&P500": "^GSPC",
    "^IXIC": "^IXIC",
    "IXIC": "^IXIC",
    "NASDAQ": "^IXIC",
    "COMP": "^IXIC",
}
"""Accepted spellings (upper case, spaces removed) -> sample symbol."""

SAMPLE_START = date(1999, 1, 4)
SAMPLE_END = date(2018, 12, 31)
SAMPLE_TZ = "America/New_York"

_MODULES = {"^GSPC": "sp500", "^IXIC": "nasdaq"}


def resolve_sample_symbol(symbol: str) -> str:
    """Return the sample symbol (``"^GSPC"`` or ``"^IXIC"``) that ``symbol`` names.

    Matching ignores case and spaces (``"s&p 500"`` -> ``"^GSPC"``).
    Raises UnknownSymbolError naming ``symbol`` and listing the available symbols and aliases.
    """
    key = str(symbol).upper().replace(" ", "")
    if key in SAMPLE_ALIASES:
        return SAMPLE_ALIASES[key]
    aliases = ", ".join(a for a in SAMPLE_ALIASES if a not in SAMPLE_SYMBOLS)
    raise UnknownSymbolError(
        f"the embedded sample has no symbol {symbol!r}; available: "
        f"{', '.join(SAMPLE_SYMBOLS)} (aliases: {aliases}), daily "
        f"{SAMPLE_START}..{SAMPLE_END}; use --source csv or --source yahoo for other symbols"
    )


def _arch_data_file(symbol: str) -> Path:
    """Return the path of the arch package's ``<module>.csv.gz`` for ``symbol``.

    Found without importing ``arch``: its ``__init__`` imports arch.univariate, which pulls in
    scipy.stats, statsmodels and matplotlib (over a second of start-up) for a CSV file.
    Raises DataError when the arch package (or its data file) is not installed.
    """
    spec = importlib.util.find_spec("arch")
    base = Path(next(iter(spec.submodule_search_locations or []), "")) if spec else None
    path = base / "data" / _MODULES[symbol] / f"{_MODULES[symbol]}.csv.gz" if base else None
    if path is None or not path.is_file():
        raise DataError(f"the embedded sample needs the arch package's data file "
                        f"arch/data/{_MODULES[symbol]}/{_MODULES[symbol]}.csv.gz, not found "
                        f"({path or 'arch is not installed'}); pip install arch")
    return path


@functools.lru_cache(maxsize=2)
def _load_arch(symbol: str) -> pd.DataFrame:
    # what arch.data.<module>.load() returns (arch.data.utility.load_file), read directly
    raw = pd.read_csv(_arch_data_file(symbol))
    raw["Date"] = pd.to_datetime(raw["Date"])
    raw = raw.set_index("Date")
    frame = raw[["Open", "High", "Low", "Close", "Volume"]].apply(pd.to_numeric, errors="coerce")
    frame.columns = ["open", "high", "low", "close", "volume"]
    return validate_bars(
        frame,
        f"sample {symbol} (arch.data.{_MODULES[symbol]})",
        intraday=False,
        attrs={"symbol": symbol, "source": "sample", "tz": SAMPLE_TZ, "adjusted": False},
    )


def load_sample(
    symbol: str = "^GSPC", start: date | str | None = None, end: date | str | None = None
) -> pd.DataFrame:
    """Return the sample's daily bars for ``symbol`` between ``start`` and ``end`` (inclusive).

    ``symbol`` may be an alias (SPX, GSPC, SP500, S&P500 -> ^GSPC; IXIC, NASDAQ, COMP -> ^IXIC).
    The frame is canonical (see bt_ibkr.validation) with attrs symbol = the sample symbol,
    source "sample", tz "America/New_York", adjusted False (index levels; Close == Adj Close).

    Raises UnknownSymbolError for a symbol the sample lacks (listing the available ones) and
    DataError when ``start``..``end`` leaves no rows (naming the range and the sample's coverage).
    """
    resolved = resolve_sample_symbol(symbol)
    full = _load_arch(resolved)
    start_d = as_date(start, "sample: start", DataError)
    end_d = as_date(end, "sample: end", DataError)
    frame = full
    if start_d is not None:
        frame = frame.loc[frame.index >= pd.Timestamp(start_d)]
    if end_d is not None:
        frame = frame.loc[frame.index <= pd.Timestamp(end_d)]
    if frame.empty:
        raise DataError(
            f"the embedded sample has no {resolved} bars in the requested range "
            f"{start_d or '...'}..{end_d or '...'}; it covers {describe_range(full)} - pick "
            f"dates in that range or another --source"
        )
    out = frame.copy()
    out.attrs = dict(full.attrs)
    return out
