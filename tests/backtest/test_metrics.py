"""bt_ibkr.metrics must agree with quantstats (the tearsheet) on the real S&P 500 sample."""

from __future__ import annotations

import math

import arch.data.sp500
import numpy as np
import pandas as pd
import pytest

from bt_ibkr.metrics import (
    buy_and_hold_returns,
    compute_stats,
    constant_exposure_turnover,
    max_drawdown,
    period_returns,
    scale_to_volatility,
    to_daily_returns,
    turnover,
    yearly_returns,
)


@pytest.fixture(scope="module")
def spx_returns() -> pd.Series:
    close = arch.data.sp500.load()["Adj Close"]
    r = close.pct_change().dropna()
    r.index = pd.DatetimeIndex(r.index)
    return r


def test_stats_equal_quantstats(spx_returns):
    import quantstats as qs

    st = compute_stats(spx_returns)
    assert st.cagr == pytest.approx(qs.stats.cagr(spx_returns), rel=1e-9)
    assert st.sharpe == pytest.approx(qs.stats.sharpe(spx_returns), rel=1e-9)
    assert st.sortino == pytest.approx(qs.stats.sortino(spx_returns), rel=1e-9)
    assert st.max_drawdown == pytest.approx(qs.stats.max_drawdown(spx_returns), rel=1e-9)
    assert st.volatility == pytest.approx(qs.stats.volatility(spx_returns), rel=1e-9)
    # The 2007-2009 crash is in the sample: the worst drawdown of the index is about -57%.
    assert -0.58 < st.max_drawdown < -0.55


def test_max_drawdown_counts_from_initial_capital():
    r = pd.Series([-0.5, 1.0, -0.25], index=pd.bdate_range("2020-01-01", periods=3))
    # wealth 1 -> 0.5 -> 1.0 -> 0.75: the worst loss is the first one.
    assert max_drawdown(r) == pytest.approx(-0.5)


def test_daily_returns_from_intraday_curve_take_last_value_per_day():
    idx = pd.DatetimeIndex(
        ["2024-01-02 15:00", "2024-01-02 21:00", "2024-01-03 15:00", "2024-01-03 21:00"], tz="UTC"
    )
    r = to_daily_returns(pd.Series([100.0, 110.0, 99.0, 121.0], index=idx))
    assert list(r.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03"]
    assert r.iloc[1] == pytest.approx(121.0 / 110.0 - 1.0)
    assert r.index.tz is None


def test_buy_and_hold_is_equal_weight_without_rebalancing():
    idx = pd.bdate_range("2021-01-04", periods=3)
    a = pd.Series([10.0, 20.0, 20.0], index=idx)
    b = pd.Series([10.0, 10.0, 5.0], index=idx)
    wealth = (1 + buy_and_hold_returns({"a": a, "b": b})).cumprod()
    # half in each: (2 + 1)/2 = 1.5 after day 2, (2 + 0.5)/2 = 1.25 after day 3
    assert wealth.iloc[1] == pytest.approx(1.5)
    assert wealth.iloc[2] == pytest.approx(1.25)


def test_scale_to_volatility_hits_target(spx_returns):
    scaled = scale_to_volatility(spx_returns, 0.10)
    assert compute_stats(scaled).volatility == pytest.approx(0.10, rel=1e-9)
    assert np.sign(scaled.iloc[100]) == np.sign(spx_returns.iloc[100])


def test_empty_curve_is_a_clear_error():
    with pytest.raises(ValueError, match="empty"):
        to_daily_returns(pd.Series([], dtype=float))
    assert math.isfinite(compute_stats(pd.Series([0.0, 0.0], index=pd.bdate_range("2020-01-01", periods=2))).sharpe)


def test_period_returns_start_at_the_base_bar():
    idx = pd.bdate_range("2020-01-01", periods=6)
    values = pd.Series([100.0, 100.0, 100.0, 110.0, 99.0, 108.9], index=idx)
    r = period_returns(values, 2)
    # base = third bar (its return is 0); then 110/100, 99/110, 108.9/99
    assert list(r.index) == list(idx[2:])
    assert r.to_numpy() == pytest.approx([0.0, 0.1, -0.1, 0.1])
    assert compute_stats(r).total_return == pytest.approx(108.9 / 100.0 - 1.0)
    with pytest.raises(ValueError, match="warm-up"):
        period_returns(values, 6)


def test_yearly_returns_compound_within_each_year():
    idx = pd.DatetimeIndex(["2019-12-30", "2019-12-31", "2020-01-02", "2020-06-01", "2021-03-01"])
    r = pd.Series([0.1, 0.1, 0.5, -0.5, 0.2], index=idx)
    y = yearly_returns(r)
    assert list(y.index) == [2019, 2020, 2021]
    assert y.to_numpy() == pytest.approx([1.1 * 1.1 - 1, 1.5 * 0.5 - 1, 0.2])


def test_turnover_is_traded_value_per_year_over_mean_equity():
    values = pd.Series([100.0, 102.0, 98.0, 100.0])
    # 504 daily returns = 2 years; 400 traded over a mean equity of 100 -> 2x a year
    assert turnover(400.0, values, 504) == pytest.approx(2.0)
    assert turnover(400.0, values, 0) == 0.0


def test_constant_exposure_turnover_counts_the_daily_rebalance():
    r = pd.Series([0.0, 0.10, -0.10])
    e = 0.5
    # day 1: weight drifts to 0.5*1.1/1.05; traded back to 0.5 at wealth 1.05; same on day 2
    w1 = 1.05
    w2 = w1 * 0.95
    traded = e + abs(e * 1.1 / 1.05 - e) * w1 + abs(e * 0.9 / 0.95 - e) * w2
    expected = traded / np.mean([1.0, w1, w2]) / (3 / 252)
    assert constant_exposure_turnover(r, e) == pytest.approx(expected)
    assert constant_exposure_turnover(r, 1.0) == pytest.approx(1.0 / np.mean([1.0, 1.1, 0.99]) / (3 / 252))
