"""Forex pairs in backtests (``python -m examples.backtest --fx``) and the base currency of a
backtest's report.

A backtest runs one cash balance (backtrader's BackBroker). A forex pair read from a CSV is
traded as IB does: one position unit is one unit of the pair's base currency (EUR for
EUR.USD), priced in its quote currency (USD). The backtest's cash, values, tearsheet and JSON
are therefore in the quote currency of its pairs, which is the run's base currency: USD for
stocks and EUR.USD/GBP.USD, JPY for USD.JPY alone. Pairs with different quote currencies, or
a non-USD quote currency beside stocks (quoted in USD), would need a conversion series and are
refused with one line naming them.

IDEALPRO's minimum is 25,000 base units: :func:`odd_lot_note` counts the backtest's fills
below it (IB routes odd lots away from IDEALPRO's quotes at a wider price; the backtest fills
them at its usual price and says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bt_ibkr.errors import ConfigError
from bt_ibkr.fx.pairs import IDEALPRO_MIN_UNITS, FxPair, parse_pair

__all__ = ["base_currency", "fx_pairs", "fx_text", "odd_lot_note"]

#: the currency of every non-forex instrument a backtest reads (US stocks, ETFs, futures)
DEFAULT_CURRENCY = "USD"


def fx_pairs(text: str | None) -> dict[str, str]:
    """Return ``{symbol: "BASE.QUOTE"}`` of a ``--fx`` text (``SYMBOL[:PAIR]``, comma-
    separated; the pair defaults to the symbol read as one, e.g. ``EURUSD`` or ``EURUSD=X``).
    Empty or None gives ``{}``. Raises ConfigError naming the flag and the bad item."""
    if text is None:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        symbol, _, pair = item.strip().partition(":")
        symbol = symbol.strip()
        if not symbol:
            raise ConfigError(f"--fx {text!r}: empty item; give e.g. --fx EURUSD or "
                              "--fx eur.csv-symbol:EUR.USD")
        raw = pair.strip() or symbol.removesuffix("=X")
        try:
            out[symbol] = parse_pair(raw).name
        except ConfigError:
            raise ConfigError(f"--fx {item.strip()}: {raw!r} is not a currency pair; write "
                              "SYMBOL:BASE.QUOTE, e.g. --fx EURUSD:EUR.USD") from None
    return out


def base_currency(fx: dict[str, str], symbols: Iterable[str] | None) -> str:
    """Return the run's base currency: the quote currency its pairs share (USD when there are
    no pairs). Raises ConfigError when the pairs' quote currencies differ, or a non-USD quote
    currency is mixed with other (USD) symbols."""
    quotes = {symbol: parse_pair(pair).quote for symbol, pair in fx.items()}
    if not quotes:
        return DEFAULT_CURRENCY
    distinct = sorted(set(quotes.values()))
    if len(distinct) > 1:
        listed = ", ".join(f"{s} in {q}" for s, q in quotes.items())
        raise ConfigError(f"--fx: the pairs are quoted in different currencies ({listed}); a "
                          "backtest has one cash currency, so run pairs of one quote currency")
    base = distinct[0]
    others = [s for s in (symbols or []) if s not in fx]
    if others and base != DEFAULT_CURRENCY:
        raise ConfigError(f"--fx: pairs quoted in {base} with {', '.join(others)} (quoted in "
                          f"{DEFAULT_CURRENCY}): a backtest has one cash currency; run them "
                          "separately")
    return base


def fx_text(fx: dict[str, str], base: str) -> str:
    """One line describing a run's pairs, e.g. ``EURUSD: EUR.USD on IDEALPRO, sized in EUR,
    priced in USD (the base currency)``."""
    parts = []
    for symbol, name in fx.items():
        pair: FxPair = parse_pair(name)
        label = symbol if symbol == pair.name else f"{symbol} ({pair.name})"
        parts.append(f"{label}: sized in {pair.base}, priced in {pair.quote}")
    return (f"{'; '.join(parts)}; IDEALPRO forex, values in the base currency {base}")


def odd_lot_note(fills: Iterable[Any], fx: dict[str, str]) -> str | None:
    """Return a note counting ``fills`` (objects with ``symbol`` and ``size``) of the pairs in
    ``fx`` below IDEALPRO's 25,000-unit minimum, or None when there are none."""
    fills = [f for f in fills if f.symbol in fx]
    small = [f for f in fills if 0 < abs(f.size) < IDEALPRO_MIN_UNITS]
    if not small:
        return None
    return (f"{len(small)} of {len(fills)} forex fills are below IDEALPRO's "
            f"{IDEALPRO_MIN_UNITS:,.0f}-unit minimum (odd lots): IB routes those away from "
            "IDEALPRO's quotes at a wider price; the backtest filled them at its usual price")
