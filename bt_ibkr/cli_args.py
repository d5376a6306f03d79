"""Command-line argument types the CLIs share: one-line errors, dates, bounded finite numbers.

``OneLineParser`` prints ``error: argument --cash: 'inf' is not ... (see --help)`` and exits 2;
the types below raise ``argparse.ArgumentTypeError`` with a message that names the text given.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from datetime import date

__all__ = ["OneLineParser", "finite_number", "iso_date", "tcp_port", "whole_number"]


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
