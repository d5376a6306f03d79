"""Pre-trade risk gate: limits, readable reasons, the daily-loss halt."""

from __future__ import annotations

import logging

import pytest

from bt_ibkr.live.config import RiskConfig
from bt_ibkr.live.risk import RiskGate, RiskLimits


def gate(**limits) -> RiskGate:
    g = RiskGate(RiskLimits(**limits))
    g.new_day(100_000.0)
    return g


def test_limits_from_config():
    cfg = RiskConfig(max_position_per_symbol=500, max_position_notional=2e5, max_order_notional=1e5,
                     max_daily_loss=0.02)
    assert RiskLimits.from_config(cfg) == RiskLimits(500, 2e5, 1e5, 0.02)
    assert RiskGate(cfg).limits.max_order_notional == 1e5


def test_no_limits_allows_everything():
    d = RiskGate(RiskLimits()).check("SPY", "BUY", 10_000, 450.0, 0, equity=None)
    assert d.allowed and d.reason == "ok" and bool(d)


def test_max_order_notional_reason_is_readable():
    d = gate(max_order_notional=100_000).check("SPY", "BUY", 500, 450.0, 0, 100_000)
    assert not d.allowed
    assert d.reason == "order 500 SPY @ 450.00 = 225,000.00 exceeds max_order_notional 100,000.00"
    assert gate(max_order_notional=100_000).check("SPY", "BUY", 200, 450.0, 0, 100_000).allowed


def test_max_position_per_symbol_counts_the_position_after_the_order():
    g = gate(max_position_per_symbol=500)
    assert g.check("SPY", "BUY", 400, 450.0, 100, 100_000).allowed  # 500: at the limit
    d = g.check("SPY", "BUY", 500, 450.0, 100, 100_000)
    assert not d.allowed
    assert d.reason == ("BUY 500 SPY would take the position from 100 to 600 shares, above "
                        "max_position_per_symbol 500")
    # short side counts too
    d = g.check("SPY", "SELL", 700, 450.0, 0, 100_000)
    assert not d.allowed and "from 0 to -700 shares" in d.reason


def test_max_position_notional():
    d = gate(max_position_notional=250_000).check("SPY", "BUY", 300, 450.0, 300, 100_000)
    assert not d.allowed
    assert d.reason == ("BUY 300 SPY would make the position 600 x 450.00 = 270,000.00, above "
                        "max_position_notional 250,000.00")


def test_reducing_orders_always_pass():
    g = gate(max_position_per_symbol=100, max_order_notional=1_000, max_position_notional=1_000)
    d = g.check("SPY", "SELL", 500, 450.0, 800, 100_000)  # 800 -> 300, all limits exceeded
    assert d.allowed and d.reason == "reduces SPY from 800 to 300 shares"
    assert g.check("SPY", "BUY", 800, 450.0, -800, 100_000).allowed  # short to flat
    # ... but flipping through zero is new exposure
    d = g.check("SPY", "SELL", 900, 450.0, 800, 100_000)
    assert not d.allowed and "exceeds max_order_notional" in d.reason


def test_daily_loss_halts_new_exposure_once_and_allows_reducing(caplog):
    g = gate(max_daily_loss=0.03)
    assert g.check("SPY", "BUY", 10, 450.0, 0, equity=97_500).allowed  # -2.5%: fine
    with caplog.at_level(logging.WARNING, logger="bt_ibkr.live.risk"):
        first = g.check("SPY", "BUY", 10, 450.0, 0, equity=96_500)  # -3.5%
        second = g.check("QQQ", "BUY", 10, 400.0, 0, equity=99_000)  # recovered: still halted
    assert not first.allowed and first.halted and first.newly_halted
    assert first.reason == (
        "BUY 10 SPY refused: daily loss limit hit: equity 96,500.00 is 3.50% below today's start "
        "100,000.00 (max_daily_loss 3.00%); new orders that add exposure are refused until the "
        "next trading day, orders that reduce positions are still allowed")
    assert not second.allowed and second.halted and not second.newly_halted
    assert [r.levelname for r in caplog.records] == ["WARNING"]  # said once, loudly
    assert g.halted and "daily loss limit hit" in g.halt_reason
    sell = g.check("SPY", "SELL", 10, 450.0, 10, equity=96_000)
    assert sell.allowed and sell.halted
    g.new_day(96_000)
    d = g.check("SPY", "BUY", 10, 450.0, 0, equity=96_000)
    assert d.allowed and not d.halted and g.halt_reason == ""


def test_daily_loss_uses_explicit_day_start_equity():
    g = RiskGate(RiskLimits(max_daily_loss=0.05))
    d = g.check("SPY", "BUY", 1, 450.0, 0, equity=90_000, day_start_equity=100_000)
    assert not d.allowed and d.newly_halted


def test_daily_loss_without_equity_fails_closed():
    g = RiskGate(RiskLimits(max_daily_loss=0.03))
    d = g.check("SPY", "BUY", 1, 450.0, 0, equity=100_000)
    assert not d.allowed and "start-of-day equity" in d.reason
    d = gate(max_daily_loss=0.03).check("SPY", "BUY", 1, 450.0, 0, equity=None)
    assert not d.allowed and "is the account data loaded" in d.reason


@pytest.mark.parametrize("side, qty, price, fragment", [
    ("HOLD", 1, 450.0, "expected BUY or SELL"),
    ("BUY", 0, 450.0, "quantity must be > 0"),
    ("BUY", -5, 450.0, "quantity must be > 0"),
    ("BUY", 1, float("nan"), "no valid price"),
    ("BUY", 1, 0.0, "no valid price"),
])
def test_malformed_orders_are_refused(side, qty, price, fragment):
    d = gate().check("SPY", side, qty, price, 0, 100_000)
    assert not d.allowed and fragment in d.reason


def test_new_day_rejects_bad_equity():
    with pytest.raises(ValueError, match="must be a number > 0"):
        RiskGate(RiskLimits()).new_day(0)
