"""Seeded synthetic futures contracts and continuous CSVs for the futures tests.

Every contract of a root is the same underlying random walk times its own carry factor
``exp(carry * years_to_expiry)``, so adjacent contracts differ by a known, non-zero gap on the
roll day (contango for ``carry`` > 0). Bars exist on CME business days from ``listed_days``
calendar days before a contract's last trade date through that date.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from bt_ibkr.futures.registry import ContractMonth, get_spec, is_business_day


def underlying(first: date, last: date, seed: int = 7, start: float = 4000.0,
               vol: float = 0.01) -> pd.Series:
    """A seeded geometric random walk on CME business days in ``[first, last]``."""
    days = [d for d in pd.date_range(first, last, freq="D") if is_business_day(d.date())]
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0002, vol, len(days))
    return pd.Series(start * np.exp(np.cumsum(steps)), index=pd.DatetimeIndex(days))


def contract_bars(root: str, first: date, last: date, seed: int = 7, carry: float = 0.05,
                  listed_days: int = 250) -> dict[ContractMonth, pd.DataFrame]:
    """Return each held contract of ``root`` trading in ``[first, last]`` as a daily bar frame."""
    spec = get_spec(root)
    under = underlying(first - timedelta(days=10), last + timedelta(days=400), seed)
    out: dict[ContractMonth, pd.DataFrame] = {}
    c = spec.held_contract(first)
    # include the contract held before ``first`` so the series starts correctly
    while True:
        expiry = spec.last_trade(c.year, c.month)
        listed = expiry - timedelta(days=listed_days)
        if listed > last:
            break
        days = under.loc[(under.index >= pd.Timestamp(max(listed, first)))
                         & (under.index <= pd.Timestamp(min(expiry, last)))]
        if len(days):
            years = np.array([(expiry - d.date()).days / 365.0 for d in days.index])
            close = days.to_numpy() * np.exp(carry * years)
            openp = close * (1 - 0.001)
            frame = pd.DataFrame({"open": openp, "high": np.maximum(openp, close) * 1.002,
                                  "low": np.minimum(openp, close) * 0.998, "close": close,
                                  "volume": 1000.0}, index=pd.DatetimeIndex(days.index,
                                                                            name="datetime"))
            out[c] = frame
        c = spec.next_contract(c)
    return out


def write_continuous_csv(path: Path, root: str = "ES", first: date = date(2019, 1, 2),
                         last: date = date(2023, 12, 29), seed: int = 7) -> Path:
    """Write a ratio back-adjusted continuous series of synthetic contracts as a CSV
    (date,open,high,low,close,volume) and return ``path``."""
    from bt_ibkr.futures.continuous import build_continuous

    series = build_continuous(root, contract_bars(root, first, last, seed), "ratio")
    frame = series.frame.copy()
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.index.name = "date"
    frame.to_csv(path)
    return path
