"""Performance statistics of a daily return series, as printed and written by every run.

Conventions (the same as quantstats' defaults, so the summary and the tearsheet agree):
252 periods a year, risk-free rate 0, sample standard deviation, CAGR over trading time
(observations / 252), max drawdown as a negative fraction of the running peak.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252


@dataclass(frozen=True)
class PerformanceStats:
    """Headline numbers of one return series (fractions, not percent)."""

    total_return: float
    cagr: float
    sharpe: float
    sortino: float
    max_drawdown: float
    volatility: float

    def to_dict(self) -> dict[str, float]:
        """Return the stats as a plain dict (JSON-ready)."""
        return asdict(self)


def to_daily_returns(values: pd.Series) -> pd.Series:
    """Return simple daily returns of an equity curve, on a tz-naive daily index.

    Intraday curves are reduced to their last value per calendar day first; the first return
    is measured from the first recorded value. Raises ValueError on an empty curve.
    """
    if values is None or len(values) == 0:
        raise ValueError("equity curve is empty: the run recorded no bars")
    s = pd.Series(values, dtype="float64").copy()
    idx = pd.DatetimeIndex(s.index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    s.index = idx.normalize()
    s = s.groupby(level=0).last()
    return s.pct_change().fillna(0.0)


def max_drawdown(returns: pd.Series) -> float:
    """Return the worst peak-to-trough loss of the compounded returns (<= 0)."""
    if len(returns) == 0:
        return 0.0
    wealth = np.cumprod(1.0 + returns.to_numpy(dtype="float64"))
    wealth = np.concatenate([[1.0], wealth])
    peak = np.maximum.accumulate(wealth)
    return float(np.min(wealth / peak - 1.0))


def compute_stats(returns: pd.Series) -> PerformanceStats:
    """Return PerformanceStats of a daily simple-return series.

    A series shorter than two observations, or with zero volatility, gets 0.0 ratios rather
    than a division error.
    """
    r = pd.Series(returns, dtype="float64").fillna(0.0)
    n = len(r)
    total = float(np.prod(1.0 + r.to_numpy())) - 1.0 if n else 0.0
    years = n / PERIODS_PER_YEAR
    if total <= -1.0:
        cagr = -1.0
    else:
        cagr = (1.0 + total) ** (1.0 / years) - 1.0 if years > 0 else 0.0
    std = float(r.std(ddof=1)) if n >= 2 else 0.0
    mean = float(r.mean()) if n else 0.0
    sharpe = mean / std * math.sqrt(PERIODS_PER_YEAR) if std > 0 else 0.0
    downside = math.sqrt(float((np.minimum(r.to_numpy(), 0.0) ** 2).sum()) / n) if n else 0.0
    sortino = mean / downside * math.sqrt(PERIODS_PER_YEAR) if downside > 0 else 0.0
    vol = std * math.sqrt(PERIODS_PER_YEAR)
    return PerformanceStats(
        total_return=total,
        cagr=cagr,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max_drawdown(r),
        volatility=vol,
    )


def buy_and_hold_returns(closes: dict[str, pd.Series]) -> pd.Series:
    """Return daily returns of an equal-weight buy-and-hold of ``closes`` (symbol -> close series).

    Each symbol gets the same capital on its first common date and is held, never rebalanced.
    Calendars are aligned on the union of dates with forward fill. Raises ValueError when empty.
    """
    if not closes:
        raise ValueError("buy-and-hold needs at least one close series")
    frame = pd.concat({k: pd.Series(v, dtype="float64") for k, v in closes.items()}, axis=1)
    idx = pd.DatetimeIndex(frame.index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    frame.index = idx.normalize()
    frame = frame.groupby(level=0).last().sort_index().ffill().dropna()
    if frame.empty:
        raise ValueError("the close series share no common dates")
    wealth = (frame / frame.iloc[0]).mean(axis=1)
    return wealth.pct_change().fillna(0.0)


def scale_to_volatility(returns: pd.Series, target_vol: float) -> pd.Series:
    """Return ``returns`` scaled by a constant so its annual volatility equals ``target_vol``.

    This is the "buy-and-hold at equal volatility" comparison of DESIGN §8 (daily rebalanced
    constant exposure). A zero-volatility series is returned unchanged.
    """
    vol = float(returns.std(ddof=1)) * math.sqrt(PERIODS_PER_YEAR) if len(returns) > 1 else 0.0
    if vol <= 0 or target_vol <= 0:
        return returns
    return returns * (target_vol / vol)
