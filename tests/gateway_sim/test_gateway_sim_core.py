"""Contract tests: the real, unmodified ib_async 2.1 client against bt_ibkr.gateway_sim.

Every test fails on any ``ib_async.Decoder`` ERROR record (a message the client could not
decode is silently dropped otherwise, G3).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import arch.data.sp500
import pytest
from helpers.sim import VirtualClock, poll_until, wait_until
from ib_async import IB, Contract, Forex, Future, Index, Stock

from bt_ibkr.errors import ConfigError
from bt_ibkr.gateway_sim import GatewaySim
from bt_ibkr.gateway_sim.__main__ import main as cli_main

ACCOUNT = "DU1234567"


@pytest.fixture
def clients():
    made: list[IB] = []

    def connect(sim: GatewaySim, client_id: int = 1, **kw) -> IB:
        ib = IB()
        ib.connect(sim.host, sim.port, clientId=client_id, timeout=10, **kw)
        made.append(ib)
        return ib

    yield connect
    for ib in made:
        ib.disconnect()


@pytest.fixture
def sample_sim(gateway_sim_factory) -> GatewaySim:
    return gateway_sim_factory(data="sample")


def _errors(ib: IB) -> list[tuple[int, int, str]]:
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, msg, contract: seen.append((req_id, code, msg))
    return seen


def _wait_for_disconnect(ib: IB, dropped: list) -> None:
    """Pump until disconnectedEvent fired (ib_async's sync API raises ConnectionError from
    the pump when the socket closes under it)."""
    try:
        wait_until(lambda: dropped, ib.sleep)
    except ConnectionError:
        pass
    assert dropped, "disconnectedEvent did not fire"


# ---------------------------------------------------------------- handshake and startup
def test_connect_negotiates_178_and_answers_every_startup_request(gateway_sim, clients):
    # raiseSyncErrors: an unanswered startup request (positions, orders, account updates,
    # executions) makes ib_async's connect raise instead of logging a timeout
    ib = clients(gateway_sim, client_id=7, raiseSyncErrors=True)
    assert ib.client.serverVersion() == 178
    assert ib.managedAccounts() == [ACCOUNT]
    names = [r[2] for r in gateway_sim.requests if r[0] == 7]
    for needed in ("startApi", "reqPositions", "reqOpenOrders", "reqCompletedOrders",
                   "reqAccountUpdates", "reqAccountUpdatesMulti", "reqExecutions"):
        assert needed in names


@pytest.mark.parametrize("version", [157, 163, 164, 170, 176])
def test_forced_server_versions_decode_contract_details(gateway_sim_factory, clients,
                                                        version):
    sim = gateway_sim_factory(max_server_version=version)
    ib = clients(sim)
    assert ib.client.serverVersion() == version
    [cd] = ib.reqContractDetails(Stock("AAPL", "SMART", "USD"))
    assert cd.contract.conId == 265598
    assert cd.contract.primaryExchange == "NASDAQ"
    assert cd.timeZoneId == "America/New_York"
    assert cd.longName == "APPLE INC"
    assert cd.minTick == 0.01
    assert cd.tradingHours.startswith("20240102:0930-20240102:1600")
    seen = _errors(ib)
    assert ib.reqContractDetails(Stock("NOPE", "SMART", "USD")) == []
    assert [code for _, code, _ in seen] == [200]


@pytest.mark.slow
def test_refuses_server_versions_below_157(gateway_sim_factory):
    sim = gateway_sim_factory(max_server_version=150)
    ib = IB()
    with pytest.raises((ConnectionError, OSError, TimeoutError)):
        ib.connect(sim.host, sim.port, clientId=1, timeout=1)
    ib.disconnect()
    assert not sim.server.connections


def test_farm_notices_after_start(gateway_sim):
    ib = IB()
    seen = _errors(ib)
    ib.connect(gateway_sim.host, gateway_sim.port, clientId=3, timeout=10)
    try:
        wait_until(lambda: len(seen) >= 3, ib.sleep)
        assert [code for _, code, _ in seen[:3]] == [2104, 2106, 2158]
        assert all(req_id == -1 for req_id, _, _ in seen[:3])
    finally:
        ib.disconnect()


def test_current_time_is_the_simulated_clock(gateway_sim, clients):
    ib = clients(gateway_sim)
    assert ib.reqCurrentTime() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    gateway_sim.advance(hours=2)
    assert ib.reqCurrentTime() == datetime(2024, 1, 2, 16, 30, tzinfo=UTC)


@pytest.mark.slow
def test_client_id_in_use_gets_326_and_close(gateway_sim, clients):
    first = clients(gateway_sim, client_id=5)
    second = IB()
    with pytest.raises((ConnectionError, OSError, TimeoutError)):
        second.connect(gateway_sim.host, gateway_sim.port, clientId=5, timeout=1)
    second.disconnect()
    assert first.isConnected()
    assert first.reqCurrentTime() is not None
    assert len([s for s in gateway_sim.server.connections if s.client_id == 5]) == 1


# ---------------------------------------------------------------- reference data
@pytest.mark.parametrize(("symbol", "con_id", "primary"), [
    ("SPY", 756733, "ARCA"), ("AAPL", 265598, "NASDAQ"), ("MSFT", 272093, "NASDAQ"),
    ("QQQ", 320227571, "NASDAQ"), ("IWM", 9579970, "ARCA"), ("NVDA", 4815747, "NASDAQ"),
    ("TLT", 15547841, "NASDAQ"), ("GLD", 51529211, "ARCA"),
])
def test_qualify_us_stocks(gateway_sim, clients, symbol, con_id, primary):
    ib = clients(gateway_sim)
    [c] = ib.qualifyContracts(Stock(symbol, "SMART", "USD"))
    assert (c.conId, c.primaryExchange, c.exchange, c.currency) == (con_id, primary, "SMART",
                                                                    "USD")


def test_indices_forex_and_futures(gateway_sim, clients):
    ib = clients(gateway_sim)
    [spx] = ib.reqContractDetails(Index("SPX", "CBOE"))
    assert (spx.contract.conId, spx.contract.secType, spx.timeZoneId) == (416904, "IND",
                                                                          "America/New_York")
    [comp] = ib.reqContractDetails(Index("^IXIC", "NASDAQ"))  # sample alias
    assert comp.contract.symbol == "COMP"
    [eur] = ib.qualifyContracts(Forex("EURUSD"))
    assert (eur.conId, eur.exchange, eur.localSymbol) == (12087792, "IDEALPRO", "EUR.USD")
    futs = ib.reqContractDetails(Future("ES", exchange="CME"))
    expiries = sorted(d.contract.lastTradeDateOrContractMonth for d in futs)
    assert expiries == ["20240315", "20240621"]
    assert all(d.contract.multiplier == "50" for d in futs)
    [es] = ib.qualifyContracts(Future("ES", "202406", "CME"))
    assert es.lastTradeDateOrContractMonth == "20240621"
    by_conid = ib.reqContractDetails(Contract(conId=756733))
    assert by_conid[0].contract.symbol == "SPY"


# ---------------------------------------------------------------- historical bars
def test_sample_daily_bars_match_arch(sample_sim, clients):
    ib = clients(sample_sim)
    bars = ib.reqHistoricalData(Index("SPX", "CBOE"), "20101231 23:59:59 US/Eastern", "1 Y",
                                "1 day", "TRADES", True)
    frame = arch.data.sp500.load()
    assert len(bars) == 252
    assert bars[0].date == date(2010, 1, 4) and bars[-1].date == date(2010, 12, 31)
    assert bars[0].close == pytest.approx(frame.loc["2010-01-04", "Close"], abs=1e-6)
    assert bars[-1].high == pytest.approx(frame.loc["2010-12-31", "High"], abs=1e-6)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    spy_bars = ib.reqHistoricalData(spy, "20101231 23:59:59 US/Eastern", "5 D", "1 day",
                                    "TRADES", True)
    assert len(spy_bars) == 5
    assert spy_bars[-1].close == pytest.approx(frame.loc["2010-12-31", "Close"] / 10, abs=1e-6)


@pytest.mark.parametrize(("end", "last_day"), [
    ("20100105 12:00:00 UTC", date(2010, 1, 4)),          # 07:00 New York: before the open
    ("20100105 12:00:00 US/Eastern", date(2010, 1, 5)),   # mid-session (partial bar)
    ("20100105-12:00:00", date(2010, 1, 4)),              # dash form is UTC
    (date(2010, 1, 5), date(2010, 1, 5)),                 # ib_async: local 23:59:59 -> UTC
])
def test_end_datetime_time_zones_choose_the_right_last_bar(sample_sim, clients, end,
                                                           last_day):
    ib = clients(sample_sim)
    bars = ib.reqHistoricalData(Index("SPX", "CBOE"), end, "5 D", "1 day", "TRADES", True)
    assert bars[-1].date == last_day
    assert len(bars) == 5


def test_intraday_bars_are_consistent_with_the_daily_bar(sample_sim, clients):
    ib = clients(sample_sim)
    spx = Index("SPX", "CBOE")
    end = "20100105 23:59:59 US/Eastern"
    [daily] = ib.reqHistoricalData(spx, end, "1 D", "1 day", "TRADES", True)
    five = ib.reqHistoricalData(spx, end, "1 D", "5 mins", "TRADES", True, formatDate=2)
    assert len(five) == 78
    assert five[0].date == datetime(2010, 1, 5, 14, 30, tzinfo=UTC)
    assert five[-1].date == datetime(2010, 1, 5, 20, 55, tzinfo=UTC)
    assert five[0].open == pytest.approx(daily.open)
    assert five[-1].close == pytest.approx(daily.close)
    assert max(b.high for b in five) == pytest.approx(daily.high)
    assert min(b.low for b in five) == pytest.approx(daily.low)
    hourly = ib.reqHistoricalData(spx, end, "1 D", "1 hour", "TRADES", True)
    assert [b.date.strftime("%H:%M") for b in hourly] == [
        "09:30", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00"]
    assert str(hourly[0].date.tzinfo) == "America/New_York"


@pytest.mark.parametrize(("bar_size", "duration", "count"), [
    ("1 secs", "60 S", 60), ("30 secs", "1800 S", 60), ("1 min", "1 D", 390),
    ("15 mins", "2 D", 52), ("1 week", "1 M", 5), ("1 month", "1 Y", 12),
])
def test_bar_sizes_and_durations(sample_sim, clients, bar_size, duration, count):
    ib = clients(sample_sim)
    bars = ib.reqHistoricalData(Index("SPX", "CBOE"), "20160630 16:00:00 US/Eastern",
                                duration, bar_size, "TRADES", True)
    assert len(bars) == count


def test_what_to_show_shapes(gateway_sim, clients):
    ib = clients(gateway_sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    trades = ib.reqHistoricalData(spy, "", "3 D", "1 day", "TRADES", True)
    bid = ib.reqHistoricalData(spy, "", "3 D", "1 day", "BID", True)
    ask = ib.reqHistoricalData(spy, "", "3 D", "1 day", "ASK", True)
    mid = ib.reqHistoricalData(spy, "", "3 D", "1 day", "MIDPOINT", True)
    assert [b.date for b in trades] == [b.date for b in bid] == [b.date for b in mid]
    assert bid[-1].close < mid[-1].close < ask[-1].close
    assert mid[-1].close == pytest.approx(trades[-1].close)
    assert trades[-1].volume > 0 and mid[-1].volume == -1
    [eur] = ib.qualifyContracts(Forex("EURUSD"))
    assert len(ib.reqHistoricalData(eur, "", "5 D", "1 day", "MIDPOINT", True)) == 5
    seen = _errors(ib)
    assert len(ib.reqHistoricalData(eur, "", "5 D", "1 day", "TRADES", True)) == 0
    assert [code for _, code, _ in seen] == [162]


def test_history_never_returns_bars_after_now(sample_sim, clients):
    ib = clients(sample_sim)  # clock: 2017-01-03 09:30 New York
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    bars = ib.reqHistoricalData(spy, "20171231 23:59:59 UTC", "1 M", "1 day", "TRADES", True)
    assert bars[-1].date == date(2016, 12, 30)
    sample_sim.advance(hours=1)
    bars = ib.reqHistoricalData(spy, "", "5 D", "1 day", "TRADES", True)
    assert bars[-1].date == date(2017, 1, 3)  # today's bar, partial
    quote = sample_sim.market.quote(sample_sim.contracts.by_conid(spy.conId))
    assert bars[-1].close == pytest.approx(quote.last)
    mins = ib.reqHistoricalData(spy, "", "3600 S", "1 min", "TRADES", True)
    assert len(mins) == 60
    assert mins[-1].date == datetime(2017, 1, 3, 10, 29, tzinfo=mins[-1].date.tzinfo)


def test_synthetic_data_is_deterministic_per_seed(gateway_sim_factory, clients):
    closes = []
    for seed in (0, 0, 1):
        sim = gateway_sim_factory(seed=seed)
        ib = clients(sim, client_id=10 + len(closes))
        bars = ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", "10 D", "1 day",
                                    "TRADES", True)
        closes.append([b.close for b in bars])
    assert len(closes[0]) == 10
    assert closes[0] == closes[1]
    assert closes[0] != closes[2]
    assert all(round(c * 100) == pytest.approx(c * 100) for c in closes[0])  # on the tick grid


# ---------------------------------------------------------------- streaming
def test_keep_up_to_date_bars_after_advance(sample_sim, clients):
    ib = clients(sample_sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    bars = ib.reqHistoricalData(spy, "", "1 D", "5 mins", "TRADES", True, keepUpToDate=True)
    assert len(bars) == 78 and bars[-1].date.date() == date(2016, 12, 30)
    sample_sim.wait_for_request("reqHistoricalData", pump=ib.sleep)
    sample_sim.advance(seconds=600)
    wait_until(lambda: len(bars) == 80 and bars[-1].date.minute == 35, ib.sleep)
    assert [b.date.strftime("%Y%m%d %H:%M") for b in bars[-2:]] == ["20170103 09:30",
                                                                     "20170103 09:35"]
    quote = sample_sim.market.quote(sample_sim.contracts.by_conid(spy.conId))
    assert bars[-1].close == pytest.approx(quote.last)


def test_keep_up_to_date_daily_bar_over_a_day(sample_sim, clients):
    ib = clients(sample_sim)
    [spx] = ib.qualifyContracts(Index("SPX", "CBOE"))
    bars = ib.reqHistoricalData(spx, "", "5 D", "1 day", "TRADES", True, keepUpToDate=True)
    assert bars[-1].date == date(2016, 12, 30)
    sample_sim.wait_for_request("reqHistoricalData", pump=ib.sleep)
    sample_sim.advance_days(1)
    frame = arch.data.sp500.load()
    wait_until(lambda: bars[-1].date == date(2017, 1, 3)
               and bars[-1].close == pytest.approx(frame.loc["2017-01-03", "Close"]), ib.sleep)
    assert bars[-1].high == pytest.approx(frame.loc["2017-01-03", "High"])
    assert bars[-1].low == pytest.approx(frame.loc["2017-01-03", "Low"])


def test_realtime_bars_twelve_per_minute(sample_sim, clients):
    ib = clients(sample_sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    bars = ib.reqRealTimeBars(spy, 5, "TRADES", False)
    sample_sim.wait_for_request("reqRealTimeBars", pump=ib.sleep)
    sample_sim.advance(seconds=60)
    wait_until(lambda: len(bars) >= 12, ib.sleep)
    ib.reqCurrentTime()  # a round trip: whatever the simulator sent before it has been read
    assert len(bars) == 12
    times = [b.time for b in bars]
    assert times[0] == datetime(2017, 1, 3, 14, 30, tzinfo=UTC)
    assert all(b - a == timedelta(seconds=5) for a, b in zip(times, times[1:], strict=False))
    assert bars[0].open_ == pytest.approx(arch.data.sp500.load().loc["2017-01-03", "Open"] / 10)
    assert all(b.low <= min(b.open_, b.close) and b.high >= max(b.open_, b.close) for b in bars)
    ib.cancelRealTimeBars(bars)
    sample_sim.wait_for_request("cancelRealTimeBars", pump=ib.sleep)
    sample_sim.advance(seconds=60)
    ib.reqCurrentTime()  # a round trip after the advance: no bar was sent before it
    assert len(bars) == 12


def test_realtime_bars_of_one_symbol_lag_by_simulated_seconds(sample_sim, clients):
    """``delay_realtime_bars``: QQQ's bar of a period arrives 2 simulated seconds after SPY's,
    released by the clock; clearing the lag sends what is still held."""
    ib = clients(sample_sim)
    spy, qqq = ib.qualifyContracts(Stock("SPY", "SMART", "USD"), Stock("QQQ", "SMART", "USD"))
    fast = ib.reqRealTimeBars(spy, 5, "TRADES", False)
    slow = ib.reqRealTimeBars(qqq, 5, "TRADES", False)
    sample_sim.wait_for_request("reqRealTimeBars", count=2, pump=ib.sleep)
    sample_sim.delay_realtime_bars("QQQ", 2)
    sample_sim.advance(seconds=5)
    ib.reqCurrentTime()  # a round trip: whatever the simulator sent before it has been read
    assert (len(fast), len(slow)) == (1, 0)
    sample_sim.advance(seconds=1)
    ib.reqCurrentTime()
    assert len(slow) == 0
    sample_sim.advance(seconds=1)
    ib.reqCurrentTime()
    assert len(slow) == 1 and slow[0].time == fast[0].time
    sample_sim.advance(seconds=9)  # two more periods: QQQ's second bar is due, its third not
    ib.reqCurrentTime()
    assert (len(fast), len(slow)) == (3, 2)
    sample_sim.delay_realtime_bars("QQQ", 0)
    ib.reqCurrentTime()
    assert [b.time for b in slow] == [b.time for b in fast]


def test_delayed_and_live_ticks(sample_sim, clients):
    ib = clients(sample_sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    sample_sim.advance(hours=1)  # 10:30 New York
    tick_types: list[int] = []
    ib.pendingTickersEvent += lambda tickers: tick_types.extend(
        t.tickType for tk in tickers for t in tk.ticks)
    ib.reqMarketDataType(3)
    [delayed] = ib.reqTickers(spy)
    assert delayed.marketDataType == 3
    assert set(tick_types) == {66, 67, 68, 72, 73, 74, 75, 76}
    for value in (delayed.bid, delayed.ask, delayed.high, delayed.low, delayed.close,
                  delayed.open, delayed.volume):
        assert value == value and value > 0  # not NaN: every delayed field arrived
    contract = sample_sim.contracts.by_conid(spy.conId)
    now = int(sample_sim.now().timestamp())
    fifteen_ago = sample_sim.market.quote_at(contract, now - 900)
    assert delayed.last == pytest.approx(fifteen_ago.last)
    assert delayed.bid < delayed.last < delayed.ask
    ib.reqMarketDataType(1)
    tick_types.clear()
    live = ib.reqMktData(spy)
    wait_until(lambda: live.last == live.last and live.marketDataType == 1, ib.sleep)
    assert live.last == pytest.approx(sample_sim.market.quote(contract).last)
    assert set(tick_types) == {1, 2, 4, 6, 7, 8, 9, 14}
    assert live.bid < live.last < live.ask
    before = live.last
    sample_sim.advance(minutes=30)
    wait_until(lambda: live.last != before, ib.sleep)
    assert live.last == pytest.approx(sample_sim.market.quote(contract).last)


def test_speed_factor_runs_the_clock(gateway_sim_factory, clients):
    sim = gateway_sim_factory(speed=600.0)
    start = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # the clock starts when serving begins
    ib = clients(sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    bars = ib.reqRealTimeBars(spy, 5, "TRADES", False)
    wait_until(lambda: len(bars) >= 10, ib.sleep)  # no advance(): the clock runs by itself
    times = [b.time for b in bars]
    assert times[0] >= start
    assert all(b - a == timedelta(seconds=5) for a, b in zip(times, times[1:], strict=False))
    assert sim.now() - start >= timedelta(seconds=50)


class RecordingBroker:
    """Stands in for sim-orders' SimBroker to observe the server's on_bar calls."""

    def __init__(self, con_ids, clock):
        self.con_ids = set(con_ids)
        self.clock = clock
        self.calls = []
        self.clock_at_call = []

    def active_conids(self):
        return self.con_ids

    def on_bar(self, contract, quote):
        self.calls.append((contract.conId, quote))
        self.clock_at_call.append(self.clock.now())


def test_advance_days_drives_broker_on_bar(sample_sim):
    spy = sample_sim.contracts.by_symbol("SPY", "STK")
    broker = RecordingBroker([spy.conId], sample_sim.server.clock)
    saved = sample_sim.server.broker
    sample_sim.server.broker = broker
    try:
        sample_sim.advance_days(1)
    finally:
        sample_sim.server.broker = saved
    assert sample_sim.now() == datetime(2017, 1, 4, 14, 30, tzinfo=UTC)
    assert len(broker.calls) == 4680  # 6.5 h of 5-second steps
    times = [q.time for _, q in broker.calls]
    assert times == sorted(times)
    assert times[0] == datetime(2017, 1, 3, 14, 30, 5, tzinfo=UTC)
    assert broker.clock_at_call == times  # the clock walks with the steps
    frame = arch.data.sp500.load()
    assert broker.calls[-1][1].close == pytest.approx(frame.loc["2017-01-03", "Close"] / 10)


# ---------------------------------------------------------------- faults
def test_connectivity_notices_reach_error_event(gateway_sim, clients):
    ib = clients(gateway_sim)
    seen = _errors(ib)
    gateway_sim.connectivity_lost()
    gateway_sim.connectivity_restored(data_lost=True)
    wait_until(lambda: len(seen) >= 2, ib.sleep)
    assert [(r, c) for r, c, _ in seen] == [(-1, 1100), (-1, 1101)]
    assert "lost" in seen[0][2]


def test_drop_connections_is_seen_and_server_keeps_listening(gateway_sim, clients):
    ib = clients(gateway_sim)
    dropped = []
    ib.disconnectedEvent += lambda: dropped.append(True)
    gateway_sim.drop_connections()
    _wait_for_disconnect(ib, dropped)
    assert not ib.isConnected()
    again = clients(gateway_sim, client_id=2)
    assert again.reqCurrentTime() is not None


@pytest.mark.slow
def test_restart_rolls_next_valid_id_back(gateway_sim_factory, clients):
    sim = gateway_sim_factory(next_valid_id=1000)
    ib = clients(sim)
    assert ib.client.getReqId() >= 1000
    dropped = []
    ib.disconnectedEvent += lambda: dropped.append(True)
    sim.restart(rollback_ids=True, rollback_to=5, downtime=2.0)
    _wait_for_disconnect(ib, dropped)
    # while it restarts the port is closed, like IB Gateway's: refused at once (connection
    # refused, not a timeout of the handshake)
    import socket

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((sim.host, sim.port), timeout=10).close()
    refused = IB()
    with pytest.raises(ConnectionRefusedError):
        refused.connect(sim.host, sim.port, clientId=9, timeout=10)
    refused.disconnect()

    def listening() -> bool:
        try:
            socket.create_connection((sim.host, sim.port), timeout=10).close()
        except ConnectionRefusedError:
            return False
        return True

    poll_until(listening, 30, "the restarted gateway to listen again", interval=0.05)
    fresh = clients(sim, client_id=1)
    assert fresh.client.getReqId() == 7  # ids 5 and 6 went to its two startup requests
    assert sim.next_order_id() == 5


@pytest.mark.slow
def test_delay_and_drop_replies(gateway_sim, clients):
    ib = clients(gateway_sim)
    gateway_sim.drop_replies(49, 1)
    with pytest.raises((asyncio.TimeoutError, TimeoutError)):
        ib.run(asyncio.wait_for(ib.reqCurrentTimeAsync(), 0.3))
    assert ib.reqCurrentTime() == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)  # only one dropped
    gateway_sim.delay_replies(9, 0.3)
    t0 = time.perf_counter()
    [cd] = ib.reqContractDetails(Stock("MSFT", "SMART", "USD"))
    assert time.perf_counter() - t0 >= 0.28
    assert cd.contract.conId == 272093


def test_reject_next_order_flag_is_exposed(gateway_sim):
    assert gateway_sim.faults.reject_next_order is None
    gateway_sim.reject_next_order(201, "Order rejected - reason:test")
    assert gateway_sim.faults.reject_next_order == (201, "Order rejected - reason:test")


def test_historical_pacing_identical_requests(gateway_sim_factory, clients):
    sim = gateway_sim_factory(pacing=True)
    ib = clients(sim)
    seen = _errors(ib)
    spy = Stock("SPY", "SMART", "USD")
    assert len(ib.reqHistoricalData(spy, "", "5 D", "1 day", "TRADES", True)) == 5
    assert len(ib.reqHistoricalData(spy, "", "5 D", "1 day", "TRADES", True)) == 0
    assert [c for _, c, _ in seen] == [162]
    assert "pacing violation" in seen[0][2]


@pytest.mark.slow
def test_historical_pacing_same_contract_and_window(gateway_sim_factory, clients):
    sim = gateway_sim_factory(pacing=True, pacing_scale=1.0)
    ib = clients(sim)
    seen = _errors(ib)
    spy = Stock("SPY", "SMART", "USD")
    got = [len(ib.reqHistoricalData(spy, "", f"{n} D", "1 day", "TRADES", True))
           for n in range(1, 8)]
    assert got == [1, 2, 3, 4, 5, 6, 0]  # 7th request for SPY within 2 s
    assert [c for _, c, _ in seen] == [162]
    sim2 = gateway_sim_factory(pacing=True, pacing_scale=1.0)
    ib2 = clients(sim2, client_id=2)
    seen2 = _errors(ib2)
    symbols = ["AAPL", "MSFT", "QQQ", "IWM", "NVDA", "TLT", "GLD", "SPY"]
    requests = [(sym, what, n) for sym in symbols for what in ("TRADES", "MIDPOINT", "BID",
                                                              "ASK") for n in (1, 2)]
    results = [len(ib2.reqHistoricalData(Stock(sym, "SMART", "USD"), "", f"{n} D", "1 day",
                                         what, True)) for sym, what, n in requests[:61]]
    assert all(results[:60]) and results[60] == 0  # 61st request in 10 minutes refused
    assert [c for _, c, _ in seen2] == [162]


# ---------------------------------------------------------------- package, CLI, log
def test_request_log_records_client_and_fields(gateway_sim, clients):
    ib = clients(gateway_sim, client_id=4)
    ib.reqHistoricalData(Stock("AAPL", "SMART", "USD"), "", "2 D", "1 hour", "TRADES", True)
    [req] = gateway_sim.requests_named("reqHistoricalData")
    client_id, msg_id, name, fields = req
    assert (client_id, msg_id, name) == (4, 20, "reqHistoricalData")
    assert "AAPL" in fields and "1 hour" in fields and "2 D" in fields


def test_non_loopback_host_is_refused():
    with pytest.raises(ConfigError, match="loopback"):
        GatewaySim(host="0.0.0.0")
    assert cli_main(["--host", "192.168.1.5"]) == 2


def test_cli_port_in_use_names_the_port(gateway_sim, capsys, tmp_path):
    code = cli_main(["--port", str(gateway_sim.port), "--lifetime", "0.1",
                     "--log-file", str(tmp_path / "gateway_sim.log")])
    assert code == 2
    assert str(gateway_sim.port) in capsys.readouterr().err


@pytest.mark.slow
def test_cli_serves_and_logs_requests(tmp_path, capsys):
    import socket
    import threading

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_file = tmp_path / "logs" / "gateway_sim.log"
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(cli_main(
        ["--port", str(port), "--lifetime", "5.0", "--data", "sample", "--speed", "0",
         "--log-file", str(log_file)])))
    thread.start()
    try:
        ib = IB()
        for _ in range(100):
            try:
                ib.connect("127.0.0.1", port, clientId=8, timeout=5)
                break
            except (ConnectionError, OSError):
                time.sleep(0.02)
        assert ib.reqCurrentTime() == datetime(2017, 1, 3, 14, 30, tzinfo=UTC)
        ib.disconnect()
    finally:
        thread.join(10)
        import logging
        for h in list(logging.getLogger("bt_ibkr.gateway_sim").handlers):
            logging.getLogger("bt_ibkr.gateway_sim").removeHandler(h)
            h.close()
        logging.getLogger("bt_ibkr.gateway_sim").propagate = True
    assert result == [0]
    text = log_file.read_text()
    assert "client 8 reqCurrentTime" in text
    assert "client 8 startApi" in text


def test_req_ids_and_managed_accounts(gateway_sim, clients):
    ib = clients(gateway_sim)
    gateway_sim.call(gateway_sim.server.note_order_id, 499)
    ids: list[int] = []
    ib.wrapper.nextValidId = ids.append  # ib_async's own handler is a no-op: observe it
    ib.client.reqIds(1)
    wait_until(lambda: ids, ib.sleep)
    assert ids == [500]
    ib.wrapper.accounts = []
    ib.client.reqManagedAccts()
    wait_until(lambda: ib.wrapper.accounts, ib.sleep)
    assert ib.managedAccounts() == [ACCOUNT]


def test_directed_exchange_and_primary_exchange_lookup(gateway_sim, clients):
    ib = clients(gateway_sim)
    [direct] = ib.reqContractDetails(Stock("AAPL", "NASDAQ", "USD"))
    assert (direct.contract.exchange, direct.contract.conId) == ("NASDAQ", 265598)
    [smart] = ib.qualifyContracts(Stock("GLD", "SMART", "USD", primaryExchange="ARCA"))
    assert smart.conId == 51529211
    assert ib.reqContractDetails(Stock("GLD", "SMART", "USD", primaryExchange="NASDAQ")) == []


def test_account_without_live_data_gets_10089_then_delayed(gateway_sim_factory, clients):
    sim = gateway_sim_factory(live_data=False)
    ib = clients(sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    seen = _errors(ib)
    ib.reqMktData(spy)
    wait_until(lambda: seen, ib.sleep)
    assert seen[0][1] == 10089
    ib.cancelMktData(spy)
    ib.reqMarketDataType(3)
    sim.advance(hours=1)
    ticker = ib.reqMktData(spy)
    wait_until(lambda: ticker.last == ticker.last and len(seen) >= 2, ib.sleep)
    assert [code for _, code, _ in seen] == [10089, 10167]
    assert ticker.marketDataType == 3


def test_rt_volume_generic_tick(sample_sim, clients):
    ib = clients(sample_sim)
    [spy] = ib.qualifyContracts(Stock("SPY", "SMART", "USD"))
    ticker = ib.reqMktData(spy, "233")
    sample_sim.wait_for_request("reqMktData", pump=ib.sleep)
    sample_sim.advance(seconds=30)
    wait_until(lambda: ticker.rtTime is not None
               and ticker.rtTime == datetime(2017, 1, 3, 14, 30, 30, tzinfo=UTC), ib.sleep)
    contract = sample_sim.contracts.by_conid(spy.conId)
    assert ticker.last == pytest.approx(sample_sim.market.quote(contract).last)
    assert ticker.vwap > 0 and ticker.rtVolume > 0


def test_pacing_windows_scale(gateway_sim_factory, clients):
    clock = VirtualClock()  # the simulator's pacing time moves only when the test says so
    sim = gateway_sim_factory(pacing=True, pacing_scale=0.01, pacing_clock=clock)
    ib = clients(sim)
    spy = Stock("SPY", "SMART", "USD")
    assert len(ib.reqHistoricalData(spy, "", "2 D", "1 day", "TRADES", True)) == 2
    assert len(ib.reqHistoricalData(spy, "", "2 D", "1 day", "TRADES", True)) == 0
    clock.advance(0.14)  # identical requests: 15 s x 0.01 apart
    assert len(ib.reqHistoricalData(spy, "", "2 D", "1 day", "TRADES", True)) == 0
    clock.advance(0.02)
    assert len(ib.reqHistoricalData(spy, "", "2 D", "1 day", "TRADES", True)) == 2


def test_api_port_in_use_raises_connection_failed(gateway_sim):
    from bt_ibkr.errors import ConnectionFailedError

    with pytest.raises(ConnectionFailedError, match=str(gateway_sim.port)):
        GatewaySim(port=gateway_sim.port).start()


def test_synthetic_and_sample_series_share_the_nyse_sessions(gateway_sim_factory):
    """Synthetic symbols trade on exchange_calendars' XNYS sessions, like the sample's real
    prices: no bar on 2017-01-02 (New Year observed), 2017-01-16 (MLK day) or 2012-10-29
    (Hurricane Sandy); the two series have identical session dates where both exist."""
    import numpy as np

    sim = gateway_sim_factory(data="sample")
    spy = sim.market.series(sim.contracts.by_symbol("SPY", "STK"))  # arch's S&P 500 / 10
    qqq = sim.market.series(sim.contracts.by_symbol("QQQ", "STK"))  # synthetic
    for closed in ("2017-01-02", "2017-01-16", "2012-10-29"):
        assert np.datetime64(closed) not in qqq.dates
    lo, hi = np.datetime64("2005-01-01"), np.datetime64("2018-12-31")
    both = [s.dates[(s.dates >= lo) & (s.dates <= hi)] for s in (spy, qqq)]
    assert len(both[0]) > 3000
    assert np.array_equal(both[0], both[1])
