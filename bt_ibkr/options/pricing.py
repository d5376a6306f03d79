"""Black-Scholes prices, greeks and implied volatility of European options (no dividends).

Used by the gateway simulator's option prices and by backtests that price options from their
underlying (``bt_ibkr.options.feed``). ``vol`` is annual, ``years`` the time to expiry in
years (365-day), ``rate`` the continuously compounded risk-free rate.
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_VOL", "bs_greeks", "bs_price", "implied_vol"]

DEFAULT_VOL = 0.20


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def bs_price(spot: float, strike: float, years: float, right: str, vol: float = DEFAULT_VOL,
             rate: float = 0.0) -> float:
    """Return the Black-Scholes price of a European option (intrinsic value at expiry)."""
    call = right.upper().startswith("C")
    if years <= 0 or vol <= 0:
        return max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
    sq = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sq
    d2 = d1 - sq
    disc = math.exp(-rate * years)
    if call:
        return spot * _ncdf(d1) - strike * disc * _ncdf(d2)
    return strike * disc * _ncdf(-d2) - spot * _ncdf(-d1)


def bs_greeks(spot: float, strike: float, years: float, right: str, vol: float = DEFAULT_VOL,
              rate: float = 0.0) -> dict[str, float] | None:
    """Return delta, gamma, vega (per 1 vol point), theta (per calendar day); None at expiry."""
    if years <= 0 or vol <= 0:
        return None
    call = right.upper().startswith("C")
    sq = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * years) / sq
    d2 = d1 - sq
    disc = math.exp(-rate * years)
    delta = _ncdf(d1) if call else _ncdf(d1) - 1.0
    gamma = _npdf(d1) / (spot * sq)
    vega = spot * _npdf(d1) * math.sqrt(years) / 100.0
    decay = -spot * _npdf(d1) * vol / (2.0 * math.sqrt(years))
    carry = rate * strike * disc * (_ncdf(d2) if call else -_ncdf(-d2))
    theta = (decay - carry) / 365.0
    return {"delta": delta, "gamma": gamma, "vega": vega, "theta": theta}


def implied_vol(price: float, spot: float, strike: float, years: float, right: str) -> float | None:
    """Return the volatility at which Black-Scholes gives ``price`` (bisection), or None when
    no volatility in (0.1%, 500%) does (e.g. a price below intrinsic value)."""
    if years <= 0 or price <= 0:
        return None
    lo, hi = 0.001, 5.0
    if not bs_price(spot, strike, years, right, lo) <= price <= bs_price(spot, strike, years,
                                                                          right, hi):
        return None
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if bs_price(spot, strike, years, right, mid) < price:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
