"""The risk gate's margin limit and the contract multiplier in its notionals."""

from __future__ import annotations

import logging

import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.config import RiskConfig, load_config
from bt_ibkr.live.risk import RiskGate, RiskLimits
from bt_ibkr.live.sizing import units_for_value, units_within


def gate(**limits) -> RiskGate:
    g = RiskGate(RiskLimits(**limits))
    g.new_day(1_000_000.0)
    return g


class WhatIf:
    """IB's what-if stand-in: ``per_unit`` margin a unit (None: IB gives none); counts asks."""

    def __init__(self, per_unit):
        self.per_unit = per_unit
        self.asked: list[float] = []

    def __call__(self, qty):
        self.asked.append(qty)
        return None if self.per_unit is None else qty * self.per_unit


def test_notional_limits_count_the_multiplier():
    g = gate(max_order_notional=300_000)
    d = g.check("ES", "BUY", 2, 4000.0, 0, 1_000_000, multiplier=50)
    assert not d.allowed
    assert d.reason == ("order 2 ES @ 4,000.00 x 50 = 400,000.00 exceeds max_order_notional "
                        "300,000.00")
    assert g.check("ES", "BUY", 1, 4000.0, 0, 1_000_000, multiplier=50).allowed
    d = gate(max_position_notional=500_000).check("ES", "BUY", 2, 4000.0, 1, 1_000_000,
                                                  multiplier=50)
    assert not d.allowed and "3 x 4,000.00 x 50 = 600,000.00" in d.reason
    shrunk = gate(max_order_notional=500_000, shrink=frozenset({"max_order_notional"})).check(
        "ES", "BUY", 5, 4000.0, 0, 1_000_000, multiplier=50)
    assert shrunk.allowed and shrunk.quantity == 2


def test_an_order_whose_what_if_margin_exceeds_the_limit_is_refused_in_one_line():
    ask = WhatIf(per_unit=12_000.0)
    d = gate(max_margin_fraction=0.02).check("ES", "BUY", 3, 4000.0, 0, 1_000_000,
                                             multiplier=50, what_if=ask)
    assert not d.allowed
    assert d.reason == ("BUY 3 ES refused: initial margin 36,000.00 (IB's what-if) exceeds "
                        "max_margin_fraction 2.00% of equity 1,000,000.00 = 20,000.00")
    assert "\n" not in d.reason and ask.asked == [3]
    assert gate(max_margin_fraction=0.05).check("ES", "BUY", 3, 4000.0, 0, 1_000_000,
                                                multiplier=50, what_if=ask).allowed


def test_a_reducing_order_never_asks_ib():
    ask = WhatIf(per_unit=12_000.0)
    d = gate(max_margin_fraction=0.001).check("ES", "SELL", 2, 4000.0, 3, 1_000_000,
                                              multiplier=50, what_if=ask)
    assert d.allowed and ask.asked == []


def test_no_margin_from_ib_falls_back_to_the_notional_and_says_so_once(caplog):
    ask = WhatIf(per_unit=None)
    g = gate(max_margin_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="bt_ibkr.live.risk"):
        ok = g.check("ES", "BUY", 2, 4000.0, 0, 1_000_000, multiplier=50, what_if=ask)
        refused = g.check("ES", "BUY", 3, 4000.0, 0, 1_000_000, multiplier=50, what_if=ask)
        g.check("ES", "BUY", 4, 4000.0, 0, 1_000_000, multiplier=50, what_if=ask)
    assert ok.allowed  # 400,000 of notional within 500,000
    assert not refused.allowed
    assert refused.reason == ("BUY 3 ES refused: initial margin 600,000.00 (notional: IB gave no "
                              "what-if margin) exceeds max_margin_fraction 50.00% of equity "
                              "1,000,000.00 = 500,000.00")
    said = [r.getMessage() for r in caplog.records if "no what-if margin" in r.getMessage()]
    assert len(said) == 1 and "checks its notional" in said[0]


def test_the_margin_limit_shrinks_when_listed_in_shrink():
    ask = WhatIf(per_unit=12_000.0)
    g = gate(max_margin_fraction=0.05, shrink=frozenset({"max_margin_fraction"}))
    d = g.check("ES", "BUY", 10, 4000.0, 0, 1_000_000, multiplier=50, what_if=ask)
    assert d.allowed and d.quantity == 4  # 50,000 / 12,000 a contract
    assert "shrunk from 10 to 4 to fit max_margin_fraction" in d.reason
    # a size limit shrinks first; the margin is asked for what it left
    ask2 = WhatIf(per_unit=12_000.0)
    g2 = gate(max_margin_fraction=0.05, max_order_notional=600_000,
              shrink=frozenset({"max_order_notional"}))
    d2 = g2.check("ES", "BUY", 10, 4000.0, 0, 1_000_000, multiplier=50, what_if=ask2)
    assert ask2.asked == [3] and d2.allowed and d2.quantity == 3


def test_the_margin_limit_needs_the_equity():
    d = gate(max_margin_fraction=0.5).check("ES", "BUY", 1, 4000.0, 0, None, multiplier=50,
                                            what_if=WhatIf(1.0))
    assert not d.allowed and "needs the account's net liquidation" in d.reason


def test_config_key_and_its_checks(tmp_path):
    cfg = load_config(None, env={}, overrides={"risk.max_margin_fraction": 0.25,
                                               "risk.shrink": "max_margin_fraction"})
    assert cfg.risk.max_margin_fraction == 0.25 and cfg.risk.shrink == ["max_margin_fraction"]
    assert RiskLimits.from_config(cfg.risk).max_margin_fraction == 0.25
    assert RiskConfig().max_margin_fraction is None
    for bad in (0, 1.5, "x"):
        with pytest.raises(ConfigError, match="max_margin_fraction"):
            load_config(None, env={}, overrides={"risk.max_margin_fraction": bad})


def test_units_for_value_and_within_margin():
    assert units_for_value(500_000, 4000.0, 50) == 2
    assert units_for_value(150_000, 4000.0, 50) == 0
    assert units_for_value(1_000, 9.99) == 100
    with pytest.raises(ValueError, match="price x multiplier"):
        units_for_value(1_000, 0.0, 50)
    assert units_within(10, 120_000.0, 50_000.0) == 4
    assert units_within(10, 40_000.0, 50_000.0) == 10
    assert units_within(10, 120_000.0, 0.0) == 0
