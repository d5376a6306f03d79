"""Command-line argument types the CLIs share: one-line errors, dates, bounded finite numbers.

Every CLI (``examples.backtest``, ``examples.live``, ``examples.parity``, ``examples.sweep``,
``bt_ibkr.doctor``) builds its parser with :class:`OneLineParser` and gives every numeric flag
one of the types below, so a bad value (text, NaN, an infinity, a number out of range) is
refused before any work with exit code 2 and one line that names the flag, the text given and
the accepted range::

    error: argument --partial-fill-qty: '-5' is not a finite number > 0 (see --help)

The types (:func:`finite_number` and :func:`bounded_int` build others) raise
``argparse.ArgumentTypeError``; argparse adds the flag's name.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bt_ibkr.errors import ConfigError

__all__ = ["MAX_CLIENT_ID", "DataSelection", "OneLineParser", "bounded_int", "client_id",
           "data_selection", "finite_number", "iso_date", "nonneg_float", "positive_float",
           "positive_int", "tcp_port", "whole_number"]


class OneLineParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: argument --cash: 'inf' is not ... (see --help)``."""

    def error(self, message: str):  # noqa: D102  (argparse API)
        self.exit(2, f"error: {message} (see --help)\n")


def iso_date(text: str) -> date:
    """Return the date of ``YYYY-MM-DD`` text; ArgumentTypeError naming it otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2015-01-31") from None


def finite_number(low: float, *, low_open: bool = False, high: float | None = None,
                  high_open: bool = True) -> Callable[[str], float]:
    """Return an argparse type: a finite float >= ``low`` (> when ``low_open``) and, with
    ``high``, < ``high`` (<= when not ``high_open``).

    The type raises ArgumentTypeError naming the text and the accepted range for text that is
    not a number, NaN, an infinity or a number out of range.
    """
    bound = f"> {low:g}" if low_open else f">= {low:g}"
    if high is not None:
        bound += f" and < {high:g}" if high_open else f" and <= {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number {bound}")
        return value

    parse.__doc__ = f"Return the float of ``text`` when it is finite and {bound}."
    return parse


positive_float = finite_number(0, low_open=True)
"""argparse type: a finite float > 0 (amounts, quantities, durations)."""

nonneg_float = finite_number(0)
"""argparse type: a finite float >= 0."""


def bounded_int(low: int, high: int | None = None, *,
                what: str = "whole number") -> Callable[[str], int]:
    """Return an argparse type: an int (decimal text) >= ``low`` and, with ``high``, <= ``high``.

    The type raises ArgumentTypeError naming the text and the accepted range otherwise
    (``'1.5' is not a whole number >= 1``).
    """
    bound = f">= {low}" if high is None else f"{low}-{high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what} ({bound})"
                                             if high is not None else
                                             f"{text!r} is not a {what} {bound}")
        return value

    parse.__doc__ = f"Return the int of ``text`` when it is a {what} {bound}."
    return parse


whole_number = bounded_int(0)
"""argparse type: an int >= 0 (counts of bars, delays)."""

positive_int = bounded_int(1)
"""argparse type: an int >= 1 (workers, table rows)."""

tcp_port = bounded_int(1, 65535, what="TCP port")
"""argparse type: a TCP port number, 1-65535."""

MAX_CLIENT_ID = 2**31 - 1
"""The largest API client id IB accepts (a signed 32-bit int)."""

client_id = bounded_int(0, MAX_CLIENT_ID, what="client id")
"""argparse type: an IB API client id, 0-2147483647."""


@dataclass(frozen=True)
class DataSelection:
    """What ``--symbols``, ``--source`` and ``--csv`` ask for: ``symbols`` (None: the
    source's default), the ``source`` to load from, and ``csv_paths`` (None unless CSV)."""

    symbols: list[str] | None
    source: str
    csv_paths: list[Path] | None


def data_selection(symbols: str | None, source: str, csv: str | None) -> DataSelection:
    """Return the DataSelection of the ``--symbols``, ``--source`` and ``--csv`` texts.

    ``--csv`` alone (with ``--source auto``) means ``--source csv``. Raises ConfigError naming
    the flag for an empty ``--symbols``, ``--source csv`` without ``--csv``, or ``--csv`` with
    another source.
    """
    names = [s.strip() for s in symbols.split(",") if s.strip()] if symbols else None
    if symbols is not None and not names:
        raise ConfigError("--symbols is empty: give e.g. --symbols SPY,QQQ")
    paths = [Path(p.strip()) for p in csv.split(",") if p.strip()] if csv else None
    if source == "csv" and not paths:
        raise ConfigError("--source csv needs --csv PATH (a file with date,open,high,low,close,"
                          "volume; comma-separated, one per symbol)")
    if paths and source not in ("csv", "auto"):
        raise ConfigError(f"--csv is only used with --source csv (got --source {source})")
    return DataSelection(symbols=names, source="csv" if paths else source, csv_paths=paths)
