"""The futures roots the simulated gateway lists besides ES (NQ, CL, GC, ZN), through the real
ib_async client: each contract as IB describes it (exchange, trading class, multiplier, local
symbol), its last trade date by the exchange's rule (the expected dates are the exchanges'
published ones, not computed), expired ones only with includeExpired and for 2 years, and
each contract priced from its root's underlying with its own carry (a gap at each roll)."""

from __future__ import annotations

from datetime import date

import pytest
from ib_async import IB, Future

NO_SECDEF = (200, "No security definition has been found for the request")

# (root, exchange, contract month, localSymbol, last trade date, multiplier, minTick), the
# last trade dates as the exchanges published them
CASES = [
    ("NQ", "CME", "202403", "NQH4", "20240315", "20", 0.25),   # 3rd Friday
    ("CL", "NYMEX", "202403", "CLH4", "20240220", "1000", 0.01),  # 3 bd before Feb 25 (a
    # Sunday: 4 business days before it, Presidents' Day Feb 19 skipped)
    ("CL", "NYMEX", "202404", "CLJ4", "20240320", "1000", 0.01),
    ("GC", "COMEX", "202402", "GCG4", "20240227", "100", 0.1),  # 3rd last business day
    ("GC", "COMEX", "202404", "GCJ4", "20240426", "100", 0.1),
    ("ZN", "CBOT", "202403", "ZNH4", "20240319", "1000", 0.015625),  # 7 bd before Mar 28
]


def _connect(sim, client_id: int = 61) -> tuple[IB, list[tuple[int, str]]]:
    ib = IB()
    ib.connect(sim.host, sim.port, clientId=client_id, timeout=20)
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((code, text))
    return ib, errors


def _daily(ib: IB, contract, end: str, duration: str = "1 Y"):
    return ib.reqHistoricalData(contract, endDateTime=end, durationStr=duration,
                                barSizeSetting="1 day", whatToShow="TRADES", useRTH=True,
                                timeout=20)


def test_each_root_is_listed_as_ib_describes_it(gateway_sim):
    ib, errors = _connect(gateway_sim)
    try:
        for root, exchange, month, local, last, mult, tick in CASES:
            (details,) = ib.reqContractDetails(Future(root, month, exchange))
            c = details.contract
            assert (c.symbol, c.exchange, c.localSymbol, c.tradingClass) == (
                root, exchange, local, root), c
            assert (c.lastTradeDateOrContractMonth, c.multiplier) == (last, mult), c
            assert details.minTick == tick and details.timeZoneId == "America/Chicago"
        assert errors == []
    finally:
        ib.disconnect()


@pytest.mark.parametrize("root, exchange, months", [
    ("NQ", "CME", ["20240315", "20240621"]),
    ("ZN", "CBOT", ["20240319", "20240618"]),
    ("CL", "NYMEX", ["20240122", "20240220", "20240320"]),
])
def test_the_live_contracts_of_a_root_are_its_listed_months(gateway_sim, root, exchange,
                                                             months):
    ib, _ = _connect(gateway_sim, 62)
    try:
        found = ib.reqContractDetails(Future(root, exchange=exchange))
        assert sorted(d.contract.lastTradeDateOrContractMonth for d in found) == months
    finally:
        ib.disconnect()


def test_gold_lists_every_near_month(gateway_sim):
    ib, _ = _connect(gateway_sim, 63)
    try:
        found = ib.reqContractDetails(Future("GC", exchange="COMEX"))
        locals_ = sorted((d.contract.lastTradeDateOrContractMonth, d.contract.localSymbol)
                         for d in found)
        assert [s for _, s in locals_] == ["GCF4", "GCG4", "GCH4", "GCJ4", "GCK4", "GCM4",
                                           "GCN4", "GCQ4"]
    finally:
        ib.disconnect()


def test_an_expired_crude_contract_needs_include_expired_and_is_kept_two_years(gateway_sim):
    # the clock starts on 2024-01-02; CL January 2023 (CLF3) expired on 2022-12-20 (4
    # business days before the 25th, a Sunday), CL
    # December 2021 (CLZ1) on 2021-11-19, over 2 years before
    ib, errors = _connect(gateway_sim, 64)
    try:
        assert ib.qualifyContracts(Future("CL", "202301", "NYMEX")) == [None]
        assert errors[-1] == NO_SECDEF
        (cl,) = ib.qualifyContracts(Future("CL", "202301", "NYMEX", includeExpired=True))
        assert (cl.localSymbol, cl.lastTradeDateOrContractMonth) == ("CLF3", "20221220")
        cl.includeExpired = True
        bars = _daily(ib, cl, "20221231 23:59:59 UTC")
        assert bars and bars[-1].date == date(2022, 12, 20)  # none after its last trade
        errors.clear()
        assert ib.qualifyContracts(Future("CL", "202112", "NYMEX", includeExpired=True)) == [
            None]
        assert errors[-1] == NO_SECDEF
    finally:
        ib.disconnect()


@pytest.mark.parametrize("root, exchange, near, far", [
    ("GC", "COMEX", "202402", "202404"),
    ("ZN", "CBOT", "202403", "202406"),
    ("CL", "NYMEX", "202402", "202403"),
])
def test_contracts_of_a_root_differ_by_their_carry(gateway_sim, root, exchange, near, far):
    ib, _ = _connect(gateway_sim, 65)
    try:
        closes = {}
        for month in (near, far):
            (c,) = ib.qualifyContracts(Future(root, month, exchange))
            closes[month] = {b.date: b.close for b in _daily(ib, c, "20231229 23:59:59 UTC")}
        both = sorted(set(closes[near]) & set(closes[far]))
        assert len(both) > 100
        gaps = [closes[far][d] / closes[near][d] - 1 for d in both]
        assert all(g > 0 for g in gaps)  # contango: the later contract carries more
        assert max(gaps) - min(gaps) < 1e-3  # the carry between two expiries, every day
    finally:
        ib.disconnect()
