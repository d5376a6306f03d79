"""Each simulated future's own prices: the underlying series at fair value, while it is listed.

IB serves every futures contract's own history: contracts of one root trade at different
prices (the basis), so a continuous series built from them has a gap at each roll, and an
expired contract has bars only from its listing to its last trade date. The simulator models
both:

- fair value: a contract quotes ``underlying * exp(carry * years to expiry)`` (the cost-of-carry
  price with a constant yearly carry per root, :data:`CARRY_BY_SERIES`: financing minus what
  holding the underlying yields), so it converges to the underlying on its last trade date and
  the next contract is higher by about a quarter's carry (about 0.75% for ES, some 35 points at
  4,750; a month's for CL);
- listing: bars from :data:`LISTED_DAYS` calendar days before the last trade date through it;
  none after it (IB has no bars for a contract after it expired).

The underlying is the series the contract names (``SimContract.series``, e.g. "ES": the
sample's S&P 500 or the synthetic "ES" walk); each contract's series gets its own key, so its
intraday paths are its own.
"""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np

from bt_ibkr.gateway_sim.contracts_db import expiry_of
from bt_ibkr.gateway_sim.model import SimContract

__all__ = ["CARRY", "CARRY_BY_SERIES", "LISTED_DAYS", "futures_series"]

CARRY = 0.03
"""Yearly cost of carry of a simulated future whose series has no entry in
:data:`CARRY_BY_SERIES` (financing rate minus dividend yield, as for ES)."""

CARRY_BY_SERIES = {"ES": 0.03, "NQ": 0.04, "CL": 0.02, "GC": 0.05, "ZN": 0.01}
"""Yearly carry by underlying series: assumed constants of the simulation, not market data
(equity indices: financing minus dividends; gold: financing, a lease rate near zero; crude:
a mild contango; the 10-year note: financing minus the coupon income)."""

LISTED_DAYS = 400
"""Calendar days before its last trade date from which a simulated future has bars (CME lists
ES about five quarters ahead; its volume moves to it in the week of the previous roll)."""


def futures_series(series, contract: SimContract):
    """Return ``series`` (a :class:`~bt_ibkr.gateway_sim.marketdata.DailySeries` of the
    underlying) as ``contract``'s own: cut to its listing and priced at fair value (see the
    module docstring). Any other contract's series is returned unchanged."""
    expiry = expiry_of(contract)
    if expiry is None:
        return series
    last = np.datetime64(expiry, "D")
    first = np.datetime64(date.fromordinal(expiry.toordinal() - LISTED_DAYS), "D")
    keep = (series.dates >= first) & (series.dates <= last)
    dates = series.dates[keep]
    years = (last - dates).astype("int64") / 365.0
    factor = np.exp(CARRY_BY_SERIES.get(contract.series or contract.symbol, CARRY) * years)

    def price(values: np.ndarray) -> np.ndarray:
        out = values[keep] * factor
        if series.tick:
            out = np.round(np.round(out / series.tick) * series.tick, 10)
        return out

    return dataclasses.replace(
        series, key=f"{series.key} {expiry:%Y%m%d}", dates=dates, open=price(series.open),
        high=price(series.high), low=price(series.low), close=price(series.close),
        volume=series.volume[keep], adj=series.adj[keep], opens=series.opens[keep])
