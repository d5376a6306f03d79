"""Expired futures in the simulated gateway, as IB serves them, through the real ib_async
client: found (details and history) only with includeExpired, only for 2 years after expiry,
error 200 otherwise; each contract has its own prices (the basis), and none after its expiry."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, Future

from bt_ibkr.gateway_sim.contracts_db import EXPIRED_YEARS

NO_SECDEF = (200, "No security definition has been found for the request")


def _connect(sim, client_id: int = 41) -> tuple[IB, list[tuple[int, str]]]:
    ib = IB()
    ib.connect(sim.host, sim.port, clientId=client_id, timeout=20)
    errors: list[tuple[int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((code, text))
    return ib, errors


def _daily(ib: IB, contract, end: str = "20231229 23:59:59 UTC", duration: str = "2 Y"):
    return ib.reqHistoricalData(contract, endDateTime=end, durationStr=duration,
                                barSizeSetting="1 day", whatToShow="TRADES", useRTH=True,
                                timeout=20)


def test_an_expired_contract_needs_include_expired(gateway_sim):
    # the synthetic simulator's clock: 2024-01-02; ES June 2022 expired on 2022-06-17
    assert EXPIRED_YEARS == 2
    ib, errors = _connect(gateway_sim)
    try:
        assert ib.qualifyContracts(Future("ES", "202206", "CME")) == [None]
        assert errors[-1] == NO_SECDEF
        errors.clear()
        assert not _daily(ib, Future("ES", "202206", "CME"))  # history without the flag
        assert errors[-1] == NO_SECDEF

        asked = Future("ES", "202206", "CME", includeExpired=True)
        (es,) = ib.qualifyContracts(asked)
        assert (es.localSymbol, es.lastTradeDateOrContractMonth) == ("ESM2", "20220617")
        es.includeExpired = True
        bars = _daily(ib, es, "20220630 23:59:59 UTC")
        assert bars[-1].date == date(2022, 6, 17)  # none after its last trade date
        assert bars[0].date >= date(2021, 5, 13)  # none before its listing, 400 days earlier
        assert len(bars) > 250

        listed = ib.reqContractDetails(Future("ES", exchange="CME", includeExpired=True))
        expiries = sorted(d.contract.lastTradeDateOrContractMonth for d in listed)
        assert expiries[0] == "20220318"  # the oldest expired within 2 years of 2024-01-02
        assert expiries[-2:] == ["20240315", "20240621"]  # and the live ones
    finally:
        ib.disconnect()


def test_a_contract_expired_over_two_years_ago_is_gone_even_with_the_flag(gateway_sim):
    ib, errors = _connect(gateway_sim, 42)
    try:
        # ES December 2021 expired on 2021-12-17, more than 2 years before 2024-01-02
        assert ib.qualifyContracts(Future("ES", "202112", "CME", includeExpired=True)) == [None]
        assert errors[-1] == NO_SECDEF
        errors.clear()
        assert not _daily(ib, Future("ES", "202112", "CME", includeExpired=True))
        assert errors[-1] == NO_SECDEF
    finally:
        ib.disconnect()


def test_each_contract_has_its_own_price_converging_at_expiry(gateway_sim):
    ib, _ = _connect(gateway_sim, 43)
    try:
        closes = {}
        for code in ("202203", "202206"):
            (c,) = ib.qualifyContracts(Future("ES", code, "CME", includeExpired=True))
            c.includeExpired = True
            closes[code] = {b.date: b.close for b in _daily(ib, c, "20220318 23:59:59 UTC",
                                                            "1 M")}
        day = date(2022, 3, 10)
        near, far = closes["202203"][day], closes["202206"][day]
        assert far > near  # contango: the later contract is dearer by about a quarter's carry
        assert 0.004 < far / near - 1 < 0.01
    finally:
        ib.disconnect()


def test_the_continuous_future_is_the_whole_underlying_not_the_front_alone(gateway_sim):
    from ib_async import ContFuture

    ib, _ = _connect(gateway_sim, 44)
    try:
        (cf,) = ib.qualifyContracts(ContFuture("ES", "CME", currency="USD"))
        bars = ib.reqHistoricalData(cf, endDateTime="", durationStr="2 Y",
                                    barSizeSetting="1 day", whatToShow="TRADES", useRTH=True,
                                    timeout=20)
        assert len(bars) > 480  # two years of sessions: more than the front's listing
        (front,) = ib.qualifyContracts(Future("ES", "202403", "CME"))
        own = _daily(ib, front, "", "5 D")
        assert own[-1].close > bars[-1].close  # the front carries its basis, CONTFUT none
    finally:
        ib.disconnect()


# a simulator started on an ES roll day (March 2024), as the live roll tests start it
START = datetime(2024, 3, 11, 13, 0, tzinfo=ZoneInfo("America/Chicago"))


@pytest.fixture
def ib_in_march_2024(gateway_sim_factory):
    sim = gateway_sim_factory(start=START)
    client = IB()
    client.connect(sim.host, sim.port, clientId=41, timeout=20)
    yield client
    client.disconnect()


@pytest.mark.slow
def test_on_a_roll_day_eight_expired_quarters_are_kept(ib_in_march_2024):
    ib = ib_in_march_2024
    assert ib.reqContractDetails(Future("ES", "202312", "CME")) == []
    (details,) = ib.reqContractDetails(Future("ES", "202312", "CME", includeExpired=True))
    assert details.contract.localSymbol == "ESZ3"
    assert details.contract.lastTradeDateOrContractMonth == "20231215"
    assert ib.reqContractDetails(Future("ES", "202112", "CME", includeExpired=True)) == []
    # without a month: the live contracts only, or every one kept with includeExpired
    assert [d.contract.localSymbol for d in ib.reqContractDetails(Future("ES", "", "CME"))] \
        == ["ESH4", "ESM4"]
    every = ib.reqContractDetails(Future("ES", "", "CME", includeExpired=True))
    assert len(every) == 10


@pytest.mark.slow
def test_an_expired_contracts_history_is_served_with_include_expired(ib_in_march_2024):
    ib = ib_in_march_2024
    (details,) = ib.reqContractDetails(Future("ES", "202312", "CME", includeExpired=True))
    contract = details.contract
    contract.includeExpired = True
    bars = ib.reqHistoricalData(contract, "20231215 23:00:00 UTC", "1 M", "1 day", "TRADES",
                                True)
    assert bars and bars[-1].date.isoformat() <= "2023-12-15"
    contract.includeExpired = False  # IB answers error 200, no security definition
    assert list(ib.reqHistoricalData(contract, "20231215 23:00:00 UTC", "1 M", "1 day",
                                     "TRADES", True)) == []
