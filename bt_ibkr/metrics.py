"""Performance statistics of a daily return series, as printed and written by every run.

Conventions (the same as quantstats' defaults, so the summary and the tearsheet agree):
252 periods a year, risk-free rate 0, sample standard deviation, CAGR over trading time
(observations / 252), max drawdown as a negative fraction of the running peak.

The *reporting period* of a run (what the terminal, the JSON and the tearsheet all describe)
starts at the close of the first bar on which the strategy can act: the bars before it are the
strategy's warm-up, when it can only hold cash. :func:`period_returns` cuts an equity curve to
that period; its first daily return is 0 (the close of the base bar is the starting capital),
so a buy-and-hold benchmark over the same period buys at that same close.
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


def period_returns(values: pd.Series, warmup_bars: int = 0) -> pd.Series:
    """Return the daily returns of ``values`` over the reporting period.

    The first ``warmup_bars`` bars are dropped; the next bar is the base (its return is 0) and
    the series runs to the last bar. Raises ValueError when nothing is left.
    """
    if warmup_bars < 0:
        raise ValueError(f"warmup_bars must be >= 0, got {warmup_bars}")
    if values is not None and warmup_bars >= len(values) > 0:
        raise ValueError(
            f"equity curve has {len(values)} bars, all inside the {warmup_bars}-bar warm-up"
        )
    return to_daily_returns(values.iloc[warmup_bars:] if values is not None else values)


def yearly_returns(returns: pd.Series) -> pd.Series:
    """Return the compounded return of each calendar year of a daily return series.

    The index holds the years as ints, in order (only years that have observations).
    """
    r = pd.Series(returns, dtype="float64")
    years = pd.DatetimeIndex(r.index).year
    return (1.0 + r).groupby(years).prod() - 1.0


def turnover(traded_value: float, values: pd.Series, periods: int) -> float:
    """Return annualised turnover: ``traded_value`` / mean of ``values`` / (``periods`` / 252).

    ``traded_value`` is the sum of |size x price| of every fill in the period, ``values`` the
    portfolio value per bar over the same period and ``periods`` its number of daily returns.
    A turnover of 2.0 means the portfolio traded twice its average value per year.
    """
    mean_value = float(pd.Series(values, dtype="float64").mean()) if len(values) else 0.0
    years = periods / PERIODS_PER_YEAR
    if mean_value <= 0 or years <= 0:
        return 0.0
    return float(traded_value) / mean_value / years


def constant_exposure_turnover(asset_returns: pd.Series, exposure: float) -> float:
    """Return the annualised turnover of holding ``exposure`` x an asset, rebalanced daily.

    The initial purchase counts as traded value, as for a strategy's first fill; each day the
    weight drifts to ``e(1+r)/(1+e r)`` and is traded back to ``e``. Same units as
    :func:`turnover` (traded value / mean portfolio value per year).
    """
    r = pd.Series(asset_returns, dtype="float64").fillna(0.0).to_numpy()
    if len(r) == 0 or exposure == 0:
        return 0.0
    e = float(exposure)
    port = 1.0 + e * r
    wealth = np.cumprod(port)
    drifted = e * (1.0 + r) / np.where(port == 0, np.nan, port)
    traded = np.nansum(np.abs(drifted - e) * wealth) + abs(e)
    return turnover(traded, pd.Series(wealth), len(r))


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
