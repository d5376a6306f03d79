"""An option held at the simulated gateway through its expiry: IB exercises an in-the-money
one into shares at the strike and lets an out-of-the-money one expire (no execution report):
what the real ib_async client sees in its positions and account."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from helpers.sim import wait_until
from ib_async import IB, MarketOrder

from bt_ibkr.gateway_sim.options import expiry_close_epoch
from bt_ibkr.ib.contracts import make_contract

EXPIRY = "20240105"


@pytest.mark.slow
def test_itm_call_is_exercised_into_shares_and_otm_put_expires_worthless(gateway_sim):
    ib = IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=9, timeout=10)
    try:
        # strikes either side of SPY's close on the expiry day
        spy_sim = gateway_sim.contracts.by_symbol("SPY", "STK")
        call_sim = gateway_sim.contracts.matches(symbol="SPY", secType="OPT",
                                                 lastTradeDateOrContractMonth=EXPIRY)[0]
        spot = gateway_sim.market.quote_at(spy_sim, expiry_close_epoch(call_sim)).last
        strike = 5.0 * math.floor(spot / 5.0) - 5.0  # call in the money, put out of it
        call = make_contract(f"SPY-OPT-SMART-USD-{EXPIRY}-{strike:g}-C")
        put = make_contract(f"SPY-OPT-SMART-USD-{EXPIRY}-{strike:g}-P")
        ib.qualifyContracts(call, put)
        trades = [ib.placeOrder(c, MarketOrder("BUY", 2)) for c in (call, put)]
        wait_until(lambda: all(t.orderStatus.status in ("Submitted", "Filled") for t in trades),
                   ib.sleep)
        gateway_sim.advance(seconds=5)  # (next_bar fill mode: market orders fill at the open)
        wait_until(lambda: all(t.orderStatus.status == "Filled" for t in trades)
                   and len(ib.positions()) == 2, ib.sleep)
        cash_after_buys = gateway_sim.broker.cash
        assert {(p.contract.conId, p.position) for p in ib.positions()} == {
            (call.conId, 2), (put.conId, 2)}
        # to the session after the expiry (Friday 2024-01-05 -> Monday 2024-01-08)
        gateway_sim.advance_days(4)
        assert gateway_sim.now() > datetime(2024, 1, 8, 14, 30, tzinfo=UTC)
        wait_until(lambda: {(p.contract.symbol, p.contract.secType, p.position)
                            for p in ib.positions() if p.position} == {("SPY", "STK", 200)},
                   ib.sleep)
        [pos] = [p for p in ib.positions() if p.position]
        assert pos.avgCost == pytest.approx(strike)
        # 200 shares paid at the strike; no execution for the exercise
        assert gateway_sim.broker.cash == pytest.approx(cash_after_buys - 200 * strike)
        assert len(gateway_sim.broker.executions()) == 2
    finally:
        ib.disconnect()


@pytest.mark.slow
def test_short_itm_put_is_assigned_and_short_otm_call_lapses_in_another_managed_account(
        gateway_sim):
    """Every managed account's options settle: a short put in the money is assigned (100
    shares per contract bought at the strike), a short call out of the money lapses; the
    client sees both positions change, and no execution."""
    gateway_sim.add_account("DU7654321", cash=500_000.0)
    ib = IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=9, timeout=10)
    try:
        spy_sim = gateway_sim.contracts.by_symbol("SPY", "STK")
        call_sim = gateway_sim.contracts.matches(symbol="SPY", secType="OPT",
                                                 lastTradeDateOrContractMonth=EXPIRY)[0]
        spot = gateway_sim.market.quote_at(spy_sim, expiry_close_epoch(call_sim)).last
        strike = 5.0 * math.ceil(spot / 5.0) + 5.0  # put in the money, call out of it
        put = make_contract(f"SPY-OPT-SMART-USD-{EXPIRY}-{strike:g}-P")
        call = make_contract(f"SPY-OPT-SMART-USD-{EXPIRY}-{strike:g}-C")
        ib.qualifyContracts(put, call)
        orders = [MarketOrder("SELL", 3, account="DU7654321"),
                  MarketOrder("SELL", 1, account="DU7654321")]
        trades = [ib.placeOrder(c, o) for c, o in zip((put, call), orders, strict=True)]
        wait_until(lambda: all(t.orderStatus.status in ("Submitted", "Filled") for t in trades),
                   ib.sleep)
        gateway_sim.advance(seconds=5)
        wait_until(lambda: all(t.orderStatus.status == "Filled" for t in trades), ib.sleep)
        ledger = gateway_sim.broker.accounts.ledger_for("DU7654321")
        cash_after_sales = ledger.cash
        reports = []
        ib.positionEvent += reports.append
        gateway_sim.advance_days(4)
        wait_until(lambda: {(p.contract.secType, p.position) for p in ib.positions()
                            if p.account == "DU7654321" and p.position} == {("STK", 300)},
                   ib.sleep)
        # ib_async drops a position reported at 0; its positionEvent saw each option leave
        assert {(p.contract.conId, p.position) for p in reports
                if p.contract.secType == "OPT"} == {(put.conId, 0), (call.conId, 0)}
        assert ledger.cash == pytest.approx(cash_after_sales - 300 * strike)
        assert len(gateway_sim.broker.executions()) == 2
        how = {(s.account, s.option.right, s.how, s.delivered)
               for s in gateway_sim.server.options.expiry.settlements}
        assert how == {("DU7654321", "P", "assigned", 300.0), ("DU7654321", "C", "lapsed", 0.0)}
    finally:
        ib.disconnect()


@pytest.mark.slow
def test_itm_index_call_is_cash_settled_at_intrinsic_value(gateway_sim):
    """An SPX call in the money at the expiry's close leaves for cash (intrinsic x 100 per
    contract), no shares; an SPX put out of the money lapses."""
    ib = IB()
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=9, timeout=10)
    try:
        spx = gateway_sim.contracts.by_symbol("SPX", "IND")
        opt = gateway_sim.contracts.matches(symbol="SPX", secType="OPT",
                                            lastTradeDateOrContractMonth=EXPIRY)[0]
        close = gateway_sim.market.quote_at(spx, expiry_close_epoch(opt)).last
        strike = 50.0 * math.floor(close / 50.0) - 50.0
        call = make_contract(f"SPX-OPT-SMART-USD-{EXPIRY}-{strike:g}-C")
        put = make_contract(f"SPX-OPT-SMART-USD-{EXPIRY}-{strike:g}-P")
        ib.qualifyContracts(call, put)
        trades = [ib.placeOrder(c, MarketOrder("BUY", 2)) for c in (call, put)]
        wait_until(lambda: all(t.orderStatus.status in ("Submitted", "Filled") for t in trades),
                   ib.sleep)
        gateway_sim.advance(seconds=5)
        wait_until(lambda: all(t.orderStatus.status == "Filled" for t in trades), ib.sleep)
        cash = gateway_sim.broker.cash
        gateway_sim.advance_days(4)
        wait_until(lambda: not [p for p in ib.positions() if p.position], ib.sleep)
        assert gateway_sim.broker.cash == pytest.approx(cash + 2 * 100 * (close - strike))
        assert {(s.option.right, s.how) for s in gateway_sim.server.options.expiry.settlements
                } == {("C", "cash_settled"), ("P", "lapsed")}
        assert len(gateway_sim.broker.executions()) == 2
    finally:
        ib.disconnect()
