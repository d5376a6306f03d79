"""A live run restarted after IB settled an option the journal held: the expiry (and the
shares an exercise delivered) are journaled as what they are, not as drift needing attention."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers.sim import wait_until
from ib_async import IB, MarketOrder

from bt_ibkr.gateway_sim.options import expiry_close_epoch
from bt_ibkr.ib.contracts import make_contract
from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.reconcile import reconcile
from bt_ibkr.live.runner import run_live


def config(tmp_path: Path, port: int):
    return load_config(None, env={}, overrides={
        "connection.port": port, "paths.journal": str(tmp_path / "journal.sqlite"),
        "paths.logs": str(tmp_path / "logs"), "paths.equity": str(tmp_path / "equity.csv")})


def buy_elsewhere(sim, orders) -> dict[str, object]:
    """Buy/sell ``[(dataname, action, qty)]`` from another client; return the contracts."""
    ib = IB()
    ib.connect(sim.host, sim.port, clientId=9, timeout=10)
    try:
        contracts = {name: make_contract(name) for name, _, _ in orders}
        ib.qualifyContracts(*contracts.values())
        trades = [ib.placeOrder(contracts[n], MarketOrder(a, q)) for n, a, q in orders]
        wait_until(lambda: all(t.orderStatus.status in ("Submitted", "Filled")
                               for t in trades), ib.sleep)
        sim.advance(seconds=5)
        wait_until(lambda: all(t.orderStatus.status == "Filled" for t in trades), ib.sleep)
    finally:
        ib.disconnect()
    return contracts


@pytest.mark.slow
def test_restart_after_an_exercise_and_a_lapse_reconciles_without_attention(
        gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")  # Tuesday 2017-01-03
    spy = sim.contracts.by_symbol("SPY", "STK")
    opt = min(sim.contracts.matches(symbol="SPY", secType="OPT"),
              key=lambda c: c.lastTradeDateOrContractMonth)  # Friday 2017-01-06
    expiry = opt.lastTradeDateOrContractMonth
    spot = sim.market.quote_at(spy, expiry_close_epoch(opt)).last
    low = 5.0 * math.floor(spot / 5.0) - 5.0
    call, put = (f"SPY-OPT-SMART-USD-{expiry}-{low:g}-{r}" for r in "CP")
    contracts = buy_elsewhere(sim, [(call, "BUY", 2), (put, "BUY", 3)])
    call_sym, put_sym = contracts[call].localSymbol, contracts[put].localSymbol
    # the journal of the run that held them (as an earlier run would have journaled them)
    with Journal(tmp_path / "journal.sqlite") as j:
        j.accept_positions({call_sym: 2, put_sym: 3, "SPY": 0})

    sim.advance_days(4)  # IB settles Friday's expiry: the call is exercised, the put lapses
    assert sum(p.position for p in sim.broker.positions() if p.contract.secType == "STK") == 200

    result = run_live(config(tmp_path, sim.port), max_runtime=60)
    assert result.reconcile["ok"], result.reconcile
    assert result.reconcile["position_mismatches"] == []
    assert result.needs_attention == []
    assert sorted(result.reconcile["settlements"]) == sorted([
        f"option {call_sym.strip()}: +2 contract(s) exercised, SPY +200 shares at {low:g} "
        "(IB's settlement, no order)",
        f"option {put_sym.strip()}: +3 contract(s) expired (IB's settlement, no order)"])
    with Journal(tmp_path / "journal.sqlite") as j:
        expiries = {e["detail"]["option"]: e["detail"] for e in j.events("expiry")}
        assert set(expiries) == {call_sym, put_sym}
        assert (expiries[call_sym]["how"], expiries[call_sym]["delivered"]) == ("exercised", 200)
        assert j.position_from_fills(call_sym) == 0 and j.position_from_fills(put_sym) == 0
        assert not j.fills(symbol=call_sym), "an expiry is not a fill"

    # a second restart finds nothing left to explain
    again = run_live(config(tmp_path, sim.port), max_runtime=60)
    assert again.reconcile["ok"] and again.reconcile["settlements"] == []


CALL = "SPY   240105C00455000"
PUT = "SPY   240105P00470000"
FRIDAY_CLOSE = datetime(2024, 1, 5, 21, 0, tzinfo=UTC)


def reconciled(tmp_path: Path, journal_positions: dict, gateway: dict, gateway_now: datetime):
    with Journal(tmp_path / "j.sqlite") as j:
        j.accept_positions(journal_positions)
        report = reconcile(j, [], [], gateway, datetime.now(UTC), timedelta(hours=12),
                           gateway_now=gateway_now)
        return report, j.positions(), j.events("expiry")


@pytest.mark.parametrize("seconds, explained", [(-1, False), (0, True)])
def test_an_option_is_expired_only_from_its_expiry_on_the_gateways_clock(tmp_path, seconds,
                                                                          explained):
    report, positions, events = reconciled(
        tmp_path, {CALL: 2, "SPY": 0}, {"SPY": 200},
        FRIDAY_CLOSE + timedelta(seconds=seconds))
    assert report.ok is explained
    if explained:
        assert positions == {"SPY": 200} and len(events) == 1
    else:  # before 16:00 New York on the expiry date: not IB's settlement, attention
        assert {m.symbol for m in report.position_mismatches} == {CALL, "SPY"}
        assert events == []


def test_a_stock_difference_that_is_not_the_delivery_stays_a_mismatch(tmp_path):
    report, positions, events = reconciled(
        tmp_path, {CALL: 2, PUT: -1, "SPY": 0}, {"SPY": 250}, FRIDAY_CLOSE)
    # the options did leave (expired), but 250 shares are no close's delivery (200 or 300)
    assert [(m.symbol, m.journal, m.gateway) for m in report.position_mismatches] == [
        ("SPY", 0, 250)]
    assert not report.ok
    assert {e["detail"]["option"]: e["detail"]["how"] for e in events} == {
        CALL: "expired", PUT: "expired"}
    assert positions == {}


def test_two_options_delivered_into_one_stock_position_are_both_explained(tmp_path):
    # a close between the strikes: the 455 call exercised (+200), the 470 put assigned (+100)
    report, positions, events = reconciled(
        tmp_path, {CALL: 2, PUT: -1, "SPY": 0}, {"SPY": 300}, FRIDAY_CLOSE)
    assert report.ok and positions == {"SPY": 300}
    assert {e["detail"]["option"]: (e["detail"]["how"], e["detail"]["delivered"])
            for e in events} == {CALL: ("exercised", 200), PUT: ("assigned", 100)}
    assert any("SPY +100 shares at 470" in line for line in report.summary().splitlines())
