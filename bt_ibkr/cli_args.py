"""Command-line argument types the CLIs share: one-line errors, dates, bounded finite numbers.

``OneLineParser`` prints ``error: argument --cash: 'inf' is not ... (see --help)`` and exits 2;
the types below raise ``argparse.ArgumentTypeError`` with a message that names the text given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from bt_ibkr.errors import ConfigError

__all__ = ["DataSelection", "OneLineParser", "data_selection", "finite_number", "iso_date",
           "tcp_port", "whole_number"]


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


def finite_number(low: float, *, low_open: bool = False,
                  high: float | None = None) -> Callable[[str], float]:
    """Return an argparse type: a finite float >= ``low`` (> when ``low_open``), < ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value > low if low_open else value >= low)
        if ok and high is not None:
            ok = value < high
        if not ok:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
            if high is not None:
                bound += f" and < {high:g}"
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number {bound}")
        return value

    return parse


def whole_number(text: str) -> int:
    """Return an int >= 0; ArgumentTypeError naming the text otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def tcp_port(text: str) -> int:
    """Return a TCP port number (1-65535); ArgumentTypeError naming the text otherwise."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return value


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
