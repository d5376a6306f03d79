"""Continuous futures (secType ``CONTFUT``) in the simulated gateway.

What IB Gateway does, and this module reproduces:

- reqContractDetails for ``ContFuture("ES", "CME")`` answers ONE contract: the front future
  with ``secType`` "CONTFUT" and the front contract's conId, expiry and localSymbol (so
  ib_async's ``qualifyContracts`` fills a ContFuture whose conId is the front month's).
- reqHistoricalData for a CONTFUT serves the continuous history only with an EMPTY
  endDateTime ("now"); any explicit end time is refused with error 10339 "Setting end
  date/time for continuous future security type is not allowed." (the message IB Gateway
  sends, as reported by users in nautechsystems/nautilus_trader issues #2570 and #2616).
- A CONTFUT cannot be traded or streamed; the simulator only serves it for details and
  history.

The simulated continuous history is the underlying's whole series (the sample's S&P 500 or
the synthetic "ES" walk), as if stitched without roll gaps; each contract's own prices
(gateway_sim.futures_prices) differ from it by the basis. IB's real continuous series stitches
expired contracts by its own rule, which the simulator does not model (a client that wants the
contracts asks for each expired one with includeExpired, as bt_ibkr.data.futures_contracts does).
"""

from __future__ import annotations

import dataclasses
from datetime import date

from bt_ibkr.gateway_sim.model import SimContract

__all__ = ["CONTFUT", "CONTFUT_END_CODE", "CONTFUT_END_TEXT", "contfut_view", "front_future"]

CONTFUT = "CONTFUT"
CONTFUT_END_CODE = 10339
CONTFUT_END_TEXT = "Setting end date/time for continuous future security type is not allowed."


def front_future(contracts: list[SimContract], symbol: str, today: date, exchange: str = "",
                 currency: str = "") -> SimContract | None:
    """Return the future of ``symbol`` (optionally on ``exchange``/``currency``) with the
    nearest last trade date on or after ``today``, or None when there is none."""
    sym = (symbol or "").strip().upper()
    exch = (exchange or "").strip().upper()
    cur = (currency or "").strip().upper()
    live = [c for c in contracts
            if c.secType == "FUT" and c.symbol.upper() == sym
            and (not exch or exch in ("GLOBEX", c.exchange) or exch in c.validExchanges.split(","))
            and (not cur or c.currency == cur)
            and c.lastTradeDateOrContractMonth[:8] >= today.strftime("%Y%m%d")]
    return min(live, key=lambda c: c.lastTradeDateOrContractMonth) if live else None


def contfut_view(front: SimContract) -> SimContract:
    """Return ``front`` as IB describes the continuous future: secType CONTFUT, same conId."""
    return dataclasses.replace(front, secType=CONTFUT)
