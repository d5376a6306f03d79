"""bt_ibkr.backtest building blocks: next-open fills, slippage and commission, decision delay,
warm-up, config checks and counted warnings (issues #13 item 3 and #9 item 11)."""

from __future__ import annotations

import io
import logging
import math

import arch.data.sp500
import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from bt_ibkr.backtest import (
    BacktestConfig,
    aggregated_warnings,
    check_history_length,
    check_writable,
    simulate,
    warmup_bars,
)
from bt_ibkr.errors import ConfigError, DataError


def _frame(n: int = 30, gap_up_at: int | None = None) -> pd.DataFrame:
    """Daily bars: open 100+i, close open+0.5, high close+1, low open-1; ``gap_up_at`` opens at its high."""
    idx = pd.bdate_range("2021-01-04", periods=n)
    o = 100.0 + np.arange(n)
    frame = pd.DataFrame(
        {"open": o, "high": o + 1.5, "low": o - 1.0, "close": o + 0.5, "volume": np.full(n, 1e6)},
        index=pd.DatetimeIndex(idx, name="datetime"),
    )
    if gap_up_at is not None:
        frame.iloc[gap_up_at, frame.columns.get_loc("open")] = frame["high"].iloc[gap_up_at]
    return frame


class Scripted(bt.Strategy):
    """Buys 10 on decision bar ``buy_bar``, sells them on ``sell_bar``, ``decision_delay`` bars late."""

    params = (("buy_bar", 5), ("sell_bar", 12), ("decision_delay", 0))

    def next(self):
        n = len(self) - self.p.decision_delay
        if n == self.p.buy_bar:
            self.buy(size=10)
        elif n == self.p.sell_bar:
            self.sell(size=10)


class NoDelay(bt.Strategy):
    params = (("x", 1),)


def _config(**kw) -> BacktestConfig:
    return BacktestConfig(progress=False, write_report=False, **kw)


def test_market_orders_fill_at_the_next_open_with_slippage_and_commission():
    frame = _frame()
    record = simulate(_config(commission_bps=1.0, slippage_bps=2.0), {"X": frame}, Scripted, {})
    buy, sell = record.fills
    # decided at the close of bar 5 (index 4), filled at the open of bar 6 (index 5)
    assert pd.Timestamp(buy.dt).normalize() == frame.index[5]
    assert buy.price == pytest.approx(frame["open"].iloc[5] * (1 + 2e-4), rel=1e-12)
    assert sell.price == pytest.approx(frame["open"].iloc[12] * (1 - 2e-4), rel=1e-12)
    assert buy.commission == pytest.approx(10 * buy.price * 1e-4, rel=1e-12)
    # final value = cash + trade P&L - both commissions (the position is flat again)
    pnl = 10 * (sell.price - buy.price) - buy.commission - sell.commission
    assert record.values.iloc[-1] == pytest.approx(100_000.0 + pnl, rel=1e-12)


def test_without_costs_the_fill_is_the_next_open_not_the_decision_close():
    frame = _frame()
    buy, _ = simulate(_config(commission_bps=0.0, slippage_bps=0.0), {"X": frame}, Scripted, {}).fills
    assert buy.price == frame["open"].iloc[5] != frame["close"].iloc[4]
    assert buy.commission == 0.0


def test_slippage_is_charged_even_when_the_open_is_the_bar_high():
    frame = _frame(gap_up_at=5)
    buy, _ = simulate(_config(slippage_bps=5.0), {"X": frame}, Scripted, {}).fills
    assert buy.price == pytest.approx(frame["high"].iloc[5] * (1 + 5e-4), rel=1e-12)
    assert buy.price > frame["high"].iloc[5]  # backtrader's default would cap it at the high


def test_decision_delay_is_passed_to_the_strategy():
    frame = _frame()
    config = _config(slippage_bps=0.0, decision_delay=3, strategy=Scripted)
    params = config.strategy_params()
    assert params["decision_delay"] == 3
    buy, sell = simulate(config, {"X": frame}, Scripted, params).fills
    assert pd.Timestamp(buy.dt).normalize() == frame.index[5 + 3]
    assert pd.Timestamp(sell.dt).normalize() == frame.index[12 + 3]
    assert warmup_bars(Scripted, params) == 3  # a delay pushes the first possible action back


def test_decision_delay_without_the_param_is_a_named_error():
    with pytest.raises(ConfigError, match=r"--decision-delay 1: NoDelay has no decision_delay param"):
        _config(decision_delay=1, strategy=NoDelay).strategy_params()
    assert "decision_delay" not in _config(strategy=NoDelay).strategy_params()
    with pytest.raises(ConfigError, match=r"--decision-delay 1 and --param decision_delay=2 disagree"):
        _config(decision_delay=1, strategy=Scripted, params={"decision_delay": 2}).strategy_params()


@pytest.mark.parametrize(
    "field, value, flag",
    [
        ("cash", math.nan, "--cash"), ("cash", math.inf, "--cash"), ("cash", 0.0, "--cash"),
        ("commission_bps", -1.0, "--commission-bps"), ("commission_bps", math.nan, "--commission-bps"),
        ("slippage_bps", -0.1, "--slippage-bps"), ("slippage_bps", math.inf, "--slippage-bps"),
        ("slippage_bps", 1000.0, "--slippage-bps"), ("decision_delay", -1, "--decision-delay"),
        ("params", {"band": math.nan}, "--param band=nan"),
        ("params", {"weights": {"crisis": {"meanrev": math.inf}}}, "--param weights="),
    ],
)
def test_bad_config_values_are_named(field, value, flag):
    with pytest.raises(ConfigError) as err:
        _config(**{field: value}).validate()
    assert str(err.value).startswith(flag)


def test_warmup_of_the_ensemble_equals_its_warmup_labels():
    """warmup_bars() computes, from the params, how many bars the classifier labels "warmup"."""
    from strategies import RegimeAwareEnsemble, label_series

    closes = arch.data.sp500.load()["Close"].iloc[:400].tolist()
    for params in ({}, {"sma_long": 50, "slope_lookback": 10, "vol_window": 10, "vol_rank_min": 30},
                   {"sma_long": 20, "slope_lookback": 5, "vol_window": 20, "vol_rank_min": 60}):
        labels = label_series(closes, **params)
        first = labels.index(next(lb for lb in labels if lb != "warmup"))
        assert warmup_bars(RegimeAwareEnsemble, params) == first
    assert warmup_bars(RegimeAwareEnsemble) == 271  # max(200 + 20, 20 + 252) - 1


def test_a_strategy_can_declare_its_warmup():
    class Declared(bt.Strategy):
        params = (("window", 30),)

        @classmethod
        def warmup_bars(cls, params):
            return params["window"] - 1

    assert warmup_bars(Declared, {"window": 80}) == 79


def test_short_history_names_symbol_bars_and_need():
    frames = {"SPY": _frame(50), "QQQ": _frame(200)}
    with pytest.raises(DataError) as err:
        check_history_length(frames, 100, "RegimeAwareEnsemble")
    msg = str(err.value)
    assert "SPY has 50 bars (2021-01-04..2021-03-12)" in msg and "needs at least 102" in msg
    assert "QQQ" not in msg
    check_history_length(frames, 48, "RegimeAwareEnsemble")  # 50 bars = 48 + decide + fill


def test_check_writable_leaves_nothing_behind(tmp_path):
    target = tmp_path / "new" / "deeper" / "s.json"
    assert check_writable(target, "--json") == target
    assert not target.exists() and target.parent.is_dir()
    (tmp_path / "f").write_text("keep")
    check_writable(tmp_path / "f", "--json")
    assert (tmp_path / "f").read_text() == "keep"  # an existing file is not truncated
    with pytest.raises(ConfigError, match=r"--report .*f/x.html: cannot be written"):
        check_writable(tmp_path / "f" / "x.html", "--report")


def test_repeated_warnings_are_printed_once_with_a_count(tmp_path):
    root = logging.getLogger()
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    console.setLevel(logging.WARNING)
    logfile = logging.FileHandler(tmp_path / "run.log")
    root.addHandler(console)
    root.addHandler(logfile)
    lg = logging.getLogger("bt_ibkr.test_warnings")
    try:
        with aggregated_warnings():
            for i in range(5):
                lg.warning("order %d rejected for margin", i)
            lg.warning("a different warning")
            assert stream.getvalue() == ""  # held back while the run goes on
    finally:
        root.removeHandler(console)
        root.removeHandler(logfile)
        logfile.close()
    assert stream.getvalue().splitlines() == [
        "5 times, the first: order 0 rejected for margin (each one is in the log file)",
        "a different warning",
    ]
    assert len((tmp_path / "run.log").read_text().splitlines()) == 6
