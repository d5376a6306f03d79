"""Sizing a paper run (issue #20): ``risk.capital`` makes a $1M account trade like a smaller
one, the ramp scales exposure up over sessions, and a limit in ``risk.shrink`` sends the largest
order that fits (journaled, one line) instead of refusing it. Through the real client and the
gateway simulator's $1M paper account."""

from __future__ import annotations

import math

import pytest
from helpers.live import make_config, sim_orders

from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import run_live
from bt_ibkr.live.sizing import ramp_fraction


def _bought(res) -> float:
    return sum(o["quantity"] for o in res.orders if o["side"] == "BUY")


def test_capital_makes_a_large_account_trade_like_a_small_one(gateway_sim_factory, tmp_path):
    full_sim = gateway_sim_factory(data="sample")
    full = run_live(make_config(tmp_path / "full", full_sim.port), max_runtime=60)
    sim = gateway_sim_factory(data="sample")
    lines: list[str] = []
    small = run_live(make_config(tmp_path / "small", sim.port, **{"risk.capital": 50_000}),
                     max_runtime=60, progress=lines.append)
    q_full, q_small = _bought(full), _bought(small)
    assert q_full > 4000  # about 98% of $1M in SPY
    # the same target weight on 5% of the equity: 5% of the shares (integer floors apart)
    assert abs(q_small - q_full * 0.05) <= 2, (q_small, q_full)
    assert "sizing: the strategy sizes from 50,000.00 of the account's 1,000,000.00" in lines
    assert len(sim_orders(sim)) == 1


@pytest.mark.slow
def test_the_ramp_scales_exposure_up_over_sessions(gateway_sim_factory, tmp_path):
    assert [ramp_fraction(n, 4, 0.25) for n in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert ramp_fraction(0, 0, 0.25) == 1.0
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port, **{"risk.ramp_sessions": 4, "risk.ramp_start": 0.25,
                                             "risk.capital": 400_000})
    lines: list[str] = []
    first = run_live(cfg, max_runtime=60, progress=lines.append)
    assert any(line.endswith("ramp session 1 of 4 (25%)") and "sizes from 100,000.00" in line
               for line in lines), lines
    q1 = _bought(first)
    sim.advance_days(1)
    lines.clear()
    second = run_live(cfg, max_runtime=60, progress=lines.append)
    assert any(line.endswith("ramp session 2 of 4 (50%)") and "sizes from 200,000.00" in line
               for line in lines), lines
    q2 = _bought(second)
    # the target doubled: the second session buys about as much again (prices moved a little)
    assert 0.8 * q1 <= q2 <= 1.2 * q1, (q1, q2)


def test_a_limit_that_shrinks_sends_the_largest_order_that_fits(gateway_sim_factory, tmp_path,
                                                               caplog):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port, **{"risk.max_order_notional": 100_000,
                                             "risk.shrink": ["max_order_notional"]})
    with caplog.at_level("WARNING", logger="bt_ibkr"):
        res = run_live(cfg, max_runtime=60)
    [order] = res.orders
    [at_gateway] = sim_orders(sim)
    with Journal(cfg.paths.journal) as j:
        [event] = j.events("shrunk")
        intent = j.get(order["orderRef"])
    d = event["detail"]
    assert d["quantity"] > d["sent"] == intent.quantity == float(at_gateway.spec.totalQuantity)
    assert order["status"] == "filled" and order["quantity"] == d["sent"]
    assert "to fit max_order_notional" in d["reason"]
    # the largest whole quantity under $100k at the decision price
    price = float(d["reason"].split(" at ")[-1].replace(",", ""))
    assert d["sent"] == math.floor(100_000 / price)
    lines = [r.getMessage() for r in caplog.records if "shrunk from" in r.getMessage()]
    assert len(lines) == 1 and f"to {d['sent']:,.0f} to fit max_order_notional" in lines[0]
