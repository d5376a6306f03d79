"""Costs: one set of rules for cash, commission and slippage, whichever run charges them."""

from __future__ import annotations

import math

import pytest

from bt_ibkr.backtest_run import BacktestConfig
from bt_ibkr.costs import Costs
from bt_ibkr.errors import ConfigError
from bt_ibkr.parity.paths import ParityConfig
from bt_ibkr.research.sweep import SweepConfig

BAD = [({"cash": 0.0}, "--cash 0.0"), ({"cash": math.nan}, "--cash nan"),
       ({"commission_bps": -1.0}, "--commission-bps -1.0"),
       ({"slippage_bps": math.inf}, "--slippage-bps inf"),
       ({"slippage_bps": 1000.0}, "--slippage-bps 1000.0"),
       ({"commission_bps": True}, "--commission-bps True")]


def test_the_defaults_are_the_backtests_and_valid():
    costs = Costs()
    costs.validate()
    assert costs == BacktestConfig().costs == Costs(100_000.0, 1.0, 2.0)


@pytest.mark.parametrize("bad, flag", BAD)
def test_every_run_refuses_a_bad_cost_with_the_same_line(bad, flag):
    with pytest.raises(ConfigError) as direct:
        Costs(**{**vars(Costs()), **bad}).validate()
    assert str(direct.value).startswith(f"{flag}: ")
    for make in (lambda: BacktestConfig(**bad), lambda: SweepConfig(grid={"band": [0.1]}, **bad),
                 lambda: ParityConfig(**bad)):
        with pytest.raises(ConfigError) as err:
            make().validate()
        assert str(err.value) == str(direct.value)


def test_costs_of_reads_any_config_with_the_three_fields():
    cfg = SweepConfig(grid={"band": [0.1]}, cash=5e5, commission_bps=0.5, slippage_bps=3.0)
    assert Costs.of(cfg) == Costs(5e5, 0.5, 3.0)
