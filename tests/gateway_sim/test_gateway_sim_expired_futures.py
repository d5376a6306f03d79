"""Expired futures in the simulator, as IB serves them: an ES contract that expired before the
simulated start is found (contract details, history) only by a request with includeExpired,
for eight quarters (IB keeps expired futures two years); the current ones as before."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, Future

START = datetime(2024, 3, 11, 13, 0, tzinfo=ZoneInfo("America/Chicago"))


@pytest.fixture
def ib(gateway_sim_factory):
    sim = gateway_sim_factory(start=START)
    client = IB()
    client.connect(sim.host, sim.port, clientId=41, timeout=20)
    yield client
    client.disconnect()


@pytest.mark.slow
def test_an_expired_contract_needs_include_expired(ib):
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
def test_an_expired_contracts_history_is_served_with_include_expired(ib):
    (details,) = ib.reqContractDetails(Future("ES", "202312", "CME", includeExpired=True))
    contract = details.contract
    contract.includeExpired = True
    bars = ib.reqHistoricalData(contract, "20231215 23:00:00 UTC", "1 M", "1 day", "TRADES",
                                True)
    assert bars and bars[-1].date.isoformat() <= "2023-12-15"
    contract.includeExpired = False  # IB answers error 200, no security definition
    assert list(ib.reqHistoricalData(contract, "20231215 23:00:00 UTC", "1 M", "1 day",
                                     "TRADES", True)) == []
