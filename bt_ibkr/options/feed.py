"""Option price series for a backtest, priced from the underlying's daily bars.

There is no free option price history, so a backtest prices an option with Black-Scholes
(``bt_ibkr.options.pricing``) from the underlying's bars at a fixed volatility: each bar is
priced at its own close with the calendar days left to the expiry (``(expiry - day) / 365``
years; on the expiry day the price is the intrinsic value). Open/high/low/close map through the
price, which is monotonic in the underlying on one day (a put's high is at the underlying's
low). Volume is 0. State the volatility you used: real option prices carry a volatility smile
and a premium this model leaves out.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.options.pricing import DEFAULT_VOL, bs_price

__all__ = ["option_frame"]


def option_frame(underlying: pd.DataFrame, expiry: date, strike: float, right: str,
                 vol: float = DEFAULT_VOL, rate: float = 0.0, first: date | None = None,
                 tick: float = 0.01) -> pd.DataFrame:
    """Return daily OHLCV of the option for the underlying's rows from ``first`` (default: the
    first row) to ``expiry``, rounded to ``tick``.

    ``underlying``: columns open/high/low/close (any case), a DatetimeIndex. Raises ConfigError
    naming the input when a column is missing, ``right`` is not C/P or ``vol``/``strike`` is not
    positive; the frame is empty when no row falls in the range.
    """
    cols = {c.lower(): c for c in underlying.columns}
    missing = [c for c in ("open", "high", "low", "close") if c not in cols]
    if missing:
        raise ConfigError(f"underlying prices lack column(s) {missing}; need open/high/low/close")
    r = str(right).upper()[:1]
    if r not in ("C", "P"):
        raise ConfigError(f"option right {right!r} must be 'C' or 'P'")
    if not vol > 0 or not strike > 0:
        raise ConfigError(f"option vol {vol!r} and strike {strike!r} must be positive")
    days = pd.DatetimeIndex(underlying.index)
    keep = (days.date <= expiry) & ((days.date >= first) if first else True)
    rows = underlying[keep]
    out = {"open": [], "high": [], "low": [], "close": []}
    for ts, row in rows.iterrows():
        years = max((expiry - pd.Timestamp(ts).date()).days, 0) / 365.0

        def px(spot: float, years: float = years) -> float:
            value = bs_price(float(spot), strike, years, r, vol, rate)
            return round(round(value / tick) * tick, 10)

        a, b = px(row[cols["high"]]), px(row[cols["low"]])
        out["open"].append(px(row[cols["open"]]))
        out["high"].append(max(a, b))
        out["low"].append(min(a, b))
        out["close"].append(px(row[cols["close"]]))
    frame = pd.DataFrame(out, index=rows.index)
    frame["volume"] = 0.0
    return frame
