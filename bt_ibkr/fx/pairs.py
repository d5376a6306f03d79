"""Forex (IB ``CASH`` on IDEALPRO) rules: what history to ask for, how orders are sized.

* History: IB disseminates no trades for forex. A ``reqHistoricalData`` with whatToShow
  ``TRADES`` on a CASH contract is answered with error 162 "Historical Market Data Service
  error message:No historical market data for EUR/CASH@FXSUBPIP Last 1d" (as users report it,
  e.g. github.com/ranaroussi/ezibpy/issues/24 and erdewit/ib_insync/issues/316); ask for
  ``MIDPOINT`` (the default here), ``BID`` or ``ASK`` instead.
* Sizing: an order's quantity is in the pair's base currency (the first one): buying 25,000
  EUR.USD buys 25,000 EUR and pays 25,000 x price USD.
* Odd lots: IDEALPRO's minimum is 25,000 units of the base currency (USD 25,000 equivalent
  for IB's published pairs). Smaller orders are odd lots, which IB routes away from the
  interbank quotes (to its odd-lot venue, at a wider price). The gateway simulator fills an
  odd lot like any other order at its simulated price: the routing and its worse price are not
  simulated. :func:`is_odd_lot` says whether a size is one, so a strategy or a report can flag it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bt_ibkr.errors import ConfigError

__all__ = ["FX_WHAT_TO_SHOW", "IDEALPRO_MIN_UNITS", "FxPair", "history_what", "is_odd_lot",
           "parse_pair"]

#: whatToShow values IB serves for CASH contracts (no TRADES, no ADJUSTED_LAST)
FX_WHAT_TO_SHOW = ("MIDPOINT", "BID", "ASK", "BID_ASK")
#: IDEALPRO's minimum order, in units of the pair's base currency
IDEALPRO_MIN_UNITS = 25_000.0


@dataclass(frozen=True)
class FxPair:
    """A currency pair: ``base`` (what an order's size counts) and ``quote`` (what its price
    is in): EUR.USD at 1.08 means one EUR costs 1.08 USD."""

    base: str
    quote: str

    @property
    def name(self) -> str:
        """Return IB's local symbol, e.g. ``EUR.USD``."""
        return f"{self.base}.{self.quote}"

    @property
    def dataname(self) -> str:
        """Return the backtrader dataname, e.g. ``EUR.USD-CASH-IDEALPRO``."""
        return f"{self.name}-CASH-IDEALPRO"


def parse_pair(text: str) -> FxPair:
    """Return the pair in ``text`` (``EUR.USD``, ``EURUSD``, ``EUR/USD`` or a dataname
    ``EUR.USD-CASH-IDEALPRO``). Raises ConfigError naming the text."""
    raw = str(text or "").strip().upper().split("-")[0]
    for sep in (".", "/"):
        if sep in raw:
            base, _, quote = raw.partition(sep)
            break
    else:
        base, quote = raw[:3], raw[3:]
    if len(base) != 3 or len(quote) != 3 or not (base + quote).isalpha() or base == quote:
        raise ConfigError(f"forex pair {text!r}: write it as BASE.QUOTE, e.g. EUR.USD")
    return FxPair(base, quote)


def history_what(sectype: str, what: str | None) -> str:
    """Return the whatToShow to request for a contract of ``sectype``: ``what`` (upper case),
    MIDPOINT when unset for forex, TRADES when unset otherwise. Raises ConfigError for TRADES
    or ADJUSTED_LAST on forex (IB answers error 162: it has no forex trades)."""
    sec = str(sectype or "").upper()
    if not what:
        return "MIDPOINT" if sec == "CASH" else "TRADES"
    what = str(what).upper()
    if sec == "CASH" and what not in FX_WHAT_TO_SHOW:
        raise ConfigError(f"whatToShow {what!r} for a forex pair: IB has no forex trades "
                          f"(it answers error 162); use one of {', '.join(FX_WHAT_TO_SHOW)}")
    return what


def is_odd_lot(size: float) -> bool:
    """Return True when an order of ``size`` base units is below IDEALPRO's 25,000 minimum."""
    return 0 < abs(float(size)) < IDEALPRO_MIN_UNITS
