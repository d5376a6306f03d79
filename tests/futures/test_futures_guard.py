"""Close-out guard of physically settled contracts, and sizing with the multiplier (also in a
backtrader run with the futures commission scheme)."""

from __future__ import annotations

import logging
from datetime import date, timedelta

import backtrader as bt
import pandas as pd
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.futures.backtest import futures_comminfo
from bt_ibkr.futures.guard import CloseOutError, CloseOutGuard, contracts_for, exposure
from bt_ibkr.futures.registry import ContractMonth, get_spec, is_business_day, known_roots

CLM24 = ContractMonth("CL", 2024, 6)  # last trade 2024-05-21


def test_opening_inside_the_close_out_window_is_refused_naming_the_contract(caplog):
    guard = CloseOutGuard()
    caplog.set_level(logging.WARNING, logger="bt_ibkr.futures.guard")
    guard.check(CLM24, date(2024, 5, 6), 0, 1)  # before the warning window: silent
    assert not caplog.records
    guard.check(CLM24, date(2024, 5, 7), 0, 1)  # warned (10 business days before), once
    guard.check(CLM24, date(2024, 5, 15), 1, 2)
    assert len([r for r in caplog.records if "CLM4" in r.getMessage()]) == 1
    with pytest.raises(CloseOutError) as err:
        guard.check(CLM24, date(2024, 5, 17), 0, 1)
    text = str(err.value)
    assert "CL 202406" in text and "2024-05-17" in text and "CL 202407" in text
    with pytest.raises(CloseOutError):
        guard.check(CLM24, date(2024, 5, 20), 1, 3)  # adding
    with pytest.raises(CloseOutError):
        guard.check(CLM24, date(2024, 5, 20), 1, -1)  # flipping short opens a new position
    guard.check(CLM24, date(2024, 5, 20), 3, 1)  # reducing is allowed
    guard.check(CLM24, date(2024, 5, 21), 1, 0)  # closing on the last day too
    assert isinstance(err.value, ConfigError)


def test_cash_settled_contracts_are_never_refused():
    guard = CloseOutGuard()
    es = ContractMonth("ES", 2024, 3)
    guard.check(es, date(2024, 3, 15), 0, 5)  # expiry day
    assert not guard.warned


@pytest.mark.parametrize("root", known_roots())
def test_the_held_contract_is_never_inside_its_close_out_window(root):
    """The registry rolls before close-out, so a continuous strategy can always open."""
    spec = get_spec(root)
    guard = CloseOutGuard()
    day = date(2020, 1, 1)
    while day < date(2027, 1, 1):
        if is_business_day(day):
            guard.check(spec.held_contract(day), day, 0, 1)
        day += timedelta(days=1)


def test_exposure_is_contracts_times_multiplier_times_price():
    es, cl = get_spec("ES"), get_spec("CL")
    assert exposure(es, 2, 4000.0) == 400_000.0
    assert exposure(cl, -3, 80.0) == -240_000.0
    assert contracts_for(es, 500_000.0, 4000.0) == 2
    assert contracts_for(es, -500_000.0, 4000.0) == -2
    assert contracts_for(es, 150_000.0, 4000.0) == 0
    with pytest.raises(ConfigError, match="price"):
        contracts_for(es, 1.0, 0.0)


class _Buy(bt.Strategy):
    def next(self):
        if len(self) == 1:
            self.order_target_percent(target=0.9)


def test_backtrader_sizes_and_settles_with_the_multiplier():
    days = pd.bdate_range("2024-01-02", periods=5)
    close = [4000.0, 4000.0, 4010.0, 4020.0, 4030.0]
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                          "volume": 1.0}, index=days)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.addcommissioninfo(futures_comminfo(get_spec("ES"), 1.0), name="ES")
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="ES")
    cerebro.addstrategy(_Buy)
    strat = cerebro.run()[0]
    pos = strat.getposition(strat.datas[0])
    # 90% of 1,000,000 of notional at 4000 * 50 = 200,000 per contract -> 4 contracts
    assert pos.size == 4
    fee = 4 * 4000.0 * 50 * 1e-4
    assert cerebro.broker.getvalue() == pytest.approx(1_000_000.0 + 4 * 50 * 30.0 - fee)


class _Short(bt.Strategy):
    def next(self):
        if len(self) == 1:
            self.order_target_percent(target=-0.9)
        if len(self) == 4:
            self.close()


def test_a_short_gains_what_the_price_falls_times_the_multiplier():
    days = pd.bdate_range("2024-01-02", periods=6)
    close = [4000.0, 4000.0, 3990.0, 3980.0, 3970.0, 3970.0]
    frame = pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                          "volume": 1.0}, index=days)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.addcommissioninfo(futures_comminfo(get_spec("ES"), 0.0), name="ES")
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="ES")
    cerebro.addstrategy(_Short)
    strat = cerebro.run()[0]
    assert strat.getposition(strat.datas[0]).size == 0
    # sold 4 at 4000 (bar 2 open), bought back at 3970 (bar 5 open)
    assert cerebro.broker.getvalue() == pytest.approx(1_000_000.0 + 4 * 50 * 30.0)
    assert cerebro.broker.getcash() == pytest.approx(cerebro.broker.getvalue())
