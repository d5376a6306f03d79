"""Contract tests: the real, unmodified ib_insync 0.9.86 client against bt_ibkr.gateway_sim.

ib_insync advertises v157..176, so the simulator negotiates 176 with it (ib_insync decodes
execDetails strictly). Every test fails on any ``ib_insync.decoder`` ERROR record.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import arch.data.sp500
import pytest
from helpers.sim import wait_until

ib_insync = pytest.importorskip("ib_insync")
IB, Index, Stock, Forex = ib_insync.IB, ib_insync.Index, ib_insync.Stock, ib_insync.Forex


@pytest.fixture
def clients():
    made = []

    def connect(sim, client_id=1):
        ib = IB()
        ib.connect(sim.host, sim.port, clientId=client_id, timeout=10)
        made.append(ib)
        return ib

    yield connect
    for ib in made:
        ib.disconnect()


@pytest.fixture
def sample_sim(gateway_sim_factory):
    return gateway_sim_factory(data="sample")


def test_connect_negotiates_176_quickly(gateway_sim, clients):
    t0 = time.perf_counter()
    ib = clients(gateway_sim, client_id=3)
    # ib_insync raises on an unanswered reqExecutions; any other gap costs its 4 s timeout
    assert time.perf_counter() - t0 < 2.0
    assert ib.client.serverVersion() == 176
    assert ib.managedAccounts() == ["DU1234567"]
    assert ib.reqCurrentTime() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize("version", [157, 163, 164, 170])
def test_contract_details_at_forced_versions(gateway_sim_factory, clients, version):
    sim = gateway_sim_factory(max_server_version=version)
    ib = clients(sim)
    assert ib.client.serverVersion() == version
    [cd] = ib.reqContractDetails(Stock("SPY", "SMART", "USD"))
    assert (cd.contract.conId, cd.contract.primaryExchange, cd.timeZoneId) == (
        756733, "ARCA", "America/New_York")
    [eur] = ib.qualifyContracts(Forex("EURUSD"))
    assert eur.conId == 12087792


def test_unknown_contract_is_error_200(gateway_sim, clients):
    ib = clients(gateway_sim)
    seen = []
    ib.errorEvent += lambda req_id, code, msg, contract: seen.append(code)
    assert ib.reqContractDetails(Stock("NOPE", "SMART", "USD")) == []
    assert seen == [200]


def test_sample_daily_history(sample_sim, clients):
    ib = clients(sample_sim)
    bars = ib.reqHistoricalData(Index("SPX", "CBOE"), "20101231 23:59:59 US/Eastern", "1 Y",
                                "1 day", "TRADES", True)
    assert len(bars) == 252
    assert bars[0].date == date(2010, 1, 4)
    assert bars[0].close == pytest.approx(arch.data.sp500.load().loc["2010-01-04", "Close"])


def test_streaming_bars_and_delayed_ticks(sample_sim, clients):
    ib = clients(sample_sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    hist = ib.reqHistoricalData(spy, "", "1 D", "5 mins", "TRADES", True, keepUpToDate=True)
    rt = ib.reqRealTimeBars(spy, 5, "TRADES", False)
    sample_sim.wait_for_request("reqRealTimeBars", pump=ib.sleep)
    sample_sim.advance(seconds=60)
    wait_until(lambda: len(rt) >= 12 and len(hist) == 79, ib.sleep)
    assert len(rt) == 12
    assert hist[-1].date.strftime("%Y%m%d %H:%M") == "20170103 09:30"
    ib.reqMarketDataType(3)
    [ticker] = ib.reqTickers(spy)
    assert ticker.marketDataType == 3
    assert ticker.bid < ticker.ask and ticker.close == pytest.approx(223.8830078)


def test_disconnect_is_seen(gateway_sim, clients):
    ib = clients(gateway_sim)
    dropped = []
    ib.disconnectedEvent += lambda: dropped.append(True)
    gateway_sim.drop_connections()
    try:
        wait_until(lambda: dropped, ib.sleep)
    except ConnectionError:
        pass
    assert dropped and not ib.isConnected()
