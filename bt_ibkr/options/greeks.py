"""Greeks from an ib_async Ticker, with IB's "not computed" cases mapped to None.

IB sends option computations (tickOptionComputation) asynchronously after the first prices,
so ``Ticker.modelGreeks`` is None until the first one arrives. Inside one, IB marks what it
could not compute with sentinels: -1 for implied vol, option price, pvDividend and underlying
price; -2 for delta, gamma, vega and theta. ib_async 2.x maps most of them to None but passes a
-2 vega/theta through unchanged, and NaN or Double.MAX (1.7976931348623157e308) can also
appear; :func:`greeks_of` maps every one of those to None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Greeks", "greeks_of"]

_UNSET = 1.7976931348623157e308
_SENTINELS = {"iv": -1.0, "price": -1.0, "pv_dividend": -1.0, "und_price": -1.0,
              "delta": -2.0, "gamma": -2.0, "vega": -2.0, "theta": -2.0}
_SOURCES = {"model": "modelGreeks", "bid": "bidGreeks", "ask": "askGreeks", "last": "lastGreeks"}


@dataclass(frozen=True)
class Greeks:
    """One option computation; any field IB did not compute is None.

    ``vega`` is per one volatility point, ``theta`` per calendar day (IB's conventions).
    """

    iv: float | None
    delta: float | None
    gamma: float | None
    vega: float | None
    theta: float | None
    price: float | None
    und_price: float | None
    pv_dividend: float | None


def _clean(name: str, value) -> float | None:
    if value is None:
        return None
    x = float(value)
    if math.isnan(x) or math.isinf(x) or x >= _UNSET or x == _SENTINELS[name]:
        return None
    return x


def greeks_of(ticker, source: str = "model") -> Greeks | None:
    """Return the ``source`` ("model", "bid", "ask", "last") greeks of ``ticker``, or None when
    IB has not sent that computation yet. Raises ValueError for an unknown ``source``."""
    if source not in _SOURCES:
        raise ValueError(f"greeks source {source!r} is not one of {sorted(_SOURCES)}")
    comp = getattr(ticker, _SOURCES[source], None)
    if comp is None:
        return None
    return Greeks(
        iv=_clean("iv", comp.impliedVol), delta=_clean("delta", comp.delta),
        gamma=_clean("gamma", comp.gamma), vega=_clean("vega", comp.vega),
        theta=_clean("theta", comp.theta), price=_clean("price", comp.optPrice),
        und_price=_clean("und_price", comp.undPrice),
        pv_dividend=_clean("pv_dividend", comp.pvDividend))
