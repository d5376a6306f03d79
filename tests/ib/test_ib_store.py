"""IBStore against the gateway simulator, through the real IB client (never mocked)."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from helpers.sim import VirtualClock, history_settled, use_virtual_clock
from helpers.sim import poll_until as wait_until

from bt_ibkr.errors import ConfigError, ConnectionFailedError, UnknownSymbolError
from bt_ibkr.ib.client import Contract
from bt_ibkr.ib.contracts import AmbiguousContractError, make_contract
from bt_ibkr.ib.events import (
    BarReceived,
    ConnectionLost,
    ConnectionRestored,
    HistoryEnded,
    OrderPlaced,
    RequestFailed,
)
from bt_ibkr.ib.store import IBStore

HANG = 60  # hang guard for waits, seconds


def drain(q, until=HistoryEnded, timeout=HANG):
    items = []
    while True:
        event = q.get(timeout=timeout)
        items.append(event)
        if isinstance(event, until):
            return items


@pytest.fixture
def make_store():
    stores = []

    def make(sim, **kwargs):
        kwargs.setdefault("clientId", 11 + len(stores))
        store = IBStore(port=sim.port, timeout=0.2, **kwargs)
        store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()
    IBStore.reset_default()


def test_connects_reports_and_stops_cleanly(gateway_sim, make_store):
    store = make_store(gateway_sim, clientId=21)
    assert store.connected()
    assert store.managed_accounts == ["DU1234567"]
    msgs = [str(m) for m, _, _ in store.get_notifications()]
    assert any("connected to 127.0.0.1" in m and "clientId 21" in m for m in msgs)
    assert any("2104" in m for m in msgs)  # the gateway's farm notices reach notify_store
    thread = store.connection.loop_thread
    assert thread.is_alive() and thread is not threading.current_thread()
    store.stop()
    assert not store.connected()
    assert not thread.is_alive()


def test_start_stop_are_reference_counted(gateway_sim, make_store):
    store = make_store(gateway_sim)
    store.start()  # a second user (e.g. a feed)
    store.stop()
    assert store.connected()  # one user left
    store.stop()
    assert not store.connected()


def test_unreachable_gateway_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # a port nobody listens on
    store = IBStore(port=port, clientId=5, reconnect=1, timeout=0.05, connect_timeout=1)
    try:
        with pytest.raises(ConnectionFailedError) as info:
            store.start()
        msg = str(info.value)
        assert f"127.0.0.1:{port}" in msg and "2 attempt(s)" in msg
    finally:
        store.close()
        IBStore.reset_default()


def test_unknown_store_parameter_is_rejected():
    with pytest.raises(ConfigError, match="clientid"):
        IBStore(clientid=3)
    IBStore.reset_default()


def test_default_store_is_shared_like_backtraders_singleton(gateway_sim, make_store):
    IBStore.reset_default()
    store = make_store(gateway_sim)
    assert IBStore.default() is store
    from bt_ibkr.ib.broker import IBBroker
    from feeds.ibdata import IBData  # registers itself as the store's feed

    data = store.getdata(dataname="AAPL-STK-SMART-USD")
    assert data.ib is store

    assert IBData(dataname="MSFT").ib is store
    assert IBBroker().ib is store
    assert store.getbroker().ib is store


def test_qualify_once_clear_errors(gateway_sim, make_store):
    store = make_store(gateway_sim)
    cd = store.qualify(make_contract("AAPL-STK-SMART-USD"), "AAPL-STK-SMART-USD")
    assert cd.contract.conId == 265598
    assert cd.timeZoneId == "America/New_York"
    fx = store.qualify(make_contract("EUR.USD-CASH-IDEALPRO"), "EUR.USD-CASH-IDEALPRO")
    assert (fx.contract.symbol, fx.contract.currency, fx.contract.secType) == ("EUR", "USD", "CASH")
    with pytest.raises(UnknownSymbolError, match="'NOPE-STK-SMART-USD'"):
        store.qualify(make_contract("NOPE-STK-SMART-USD"), "NOPE-STK-SMART-USD")
    es = Contract(symbol="ES", secType="FUT", exchange="CME", currency="USD")
    with pytest.raises(AmbiguousContractError) as info:
        store.qualify(es, "ES-FUT-CME-USD")
    assert "'ES-FUT-CME-USD'" in str(info.value) and "2 IB contracts" in str(info.value)


def test_time_offset_follows_the_gateway_clock(gateway_sim, make_store):
    store = make_store(gateway_sim)
    from datetime import UTC, datetime

    expected = gateway_sim.now() - datetime.now(UTC)
    assert abs((store.timeoffset() - expected).total_seconds()) < 5
    assert abs((store.server_time() - gateway_sim.now()).total_seconds()) < 5


def test_history_is_chunked_by_max_duration(gateway_sim, make_store):
    store = make_store(gateway_sim)
    gateway_sim.advance(hours=5)
    cd = store.qualify(make_contract("AAPL-STK-SMART-USD"))
    end = gateway_sim.now().replace(tzinfo=None)
    start = end - timedelta(hours=4, minutes=30)
    before = len(gateway_sim.requests_named("reqHistoricalData"))
    items = drain(store.request_history(cd.contract, start, end, "5 secs"))
    reqs = gateway_sim.requests_named("reqHistoricalData")[before:]
    durations = [r[3][list(r[3]).index("5 secs") + 1] for r in reqs]
    assert durations == ["1800 S", "7200 S", "7200 S"]  # newest first, 2 h at most each
    bars = [e.bar for e in items if isinstance(e, BarReceived)]
    stamps = [b.dt for b in bars]
    assert stamps == sorted(set(stamps))  # ascending, no duplicates across chunk seams
    assert all(b - a == timedelta(seconds=5) for a, b in zip(stamps, stamps[1:], strict=False))
    assert stamps[0] > start and stamps[-1] <= end
    assert len(bars) == 4 * 720 + 360  # every 5-second bar of 4.5 hours of session
    assert items[-1] == HistoryEnded(len(bars))


def test_client_pacing_prevents_gateway_pacing_violations(gateway_sim_factory, make_store):
    # IB's real windows, enforced by the simulator and kept by the client on one virtual clock
    clock = VirtualClock()
    sim = gateway_sim_factory(pacing=True, pacing_clock=clock)
    store = make_store(sim)
    cd = store.qualify(make_contract("AAPL-STK-SMART-USD"))
    end = sim.now().replace(tzinfo=None)
    history = store.history
    use_virtual_clock(history, clock)
    clock.settled = history_settled(sim, history)
    history.backoff = 1.0

    def burst():
        errors = []
        for i in range(8):
            q = store.request_history(cd.contract, end - timedelta(days=30 + i), end, "1 day")
            errors += [e for e in drain(q) if isinstance(e, RequestFailed)]
        return errors

    # paced: six requests at t=0, the 7th waits out 6 per contract per 2 s (+ margin)
    assert burst() == []
    assert history.stats.pacing_violations == 0 and history.stats.retries == 0
    per_contract = 2.0 * 1.02 + 0.05
    assert clock.sleeps == pytest.approx([per_contract])
    clock.advance(16.0)  # past IB's 15 s between identical requests: the same burst again
    history.pacing = False
    # unpaced, the gateway answers the 7th with 162 "pacing violation", again after the 1 s
    # back-off, and accepts it after 2 s more: the request is retried, not lost
    assert burst() == []
    assert history.stats.pacing_violations == 2 and history.stats.retries == 2
    assert clock.sleeps[1:] == [1.0, 2.0]
    assert len(sim.requests_named("reqHistoricalData")) == 8 + 8 + 2 == history.stats.requests


def test_connectivity_notices_reach_notify_store(gateway_sim, make_store):
    store = make_store(gateway_sim)
    store.get_notifications()
    gateway_sim.notice(1100)
    gateway_sim.notice(1102)
    wait_until(lambda: len(store.notifs.queue) >= 2, what="notices")
    codes = [m.code for m, _, _ in store.get_notifications()]
    assert codes[:2] == [1100, 1102]


def test_run_refuses_to_deadlock_from_the_loop_thread(gateway_sim, make_store):
    store = make_store(gateway_sim)
    seen = []

    def inside():
        try:
            store.call(lambda: None)
        except RuntimeError as exc:
            seen.append(str(exc))

    store.post(inside)
    wait_until(lambda: seen, what="loop callback")
    assert "deadlock" in seen[0]


@pytest.mark.slow
def test_orders_are_held_while_disconnected_and_sent_after_resync(gateway_sim, make_store):
    from bt_ibkr.ib.client import Order

    store = make_store(gateway_sim, reconnect=-1, connect_timeout=2)
    cd = store.qualify(make_contract("AAPL-STK-SMART-USD"))
    gateway_sim.restart(rollback_ids=True, rollback_to=1, downtime=1.0)
    wait_until(lambda: not store.ready, what="disconnect seen")
    order = Order(action="BUY", orderType="MKT", totalQuantity=5, orderRef="held-1")
    store.place_order("held-1", cd.contract, order)  # returns at once, no exception
    wait_until(lambda: store.routes.held, what="order held")
    assert not gateway_sim.requests_named("placeOrder")
    wait_until(lambda: store.ready, what="reconnect")
    events = []
    wait_until(lambda: events.extend(drain_nowait(store.broker_q)) or any(
        isinstance(e, OrderPlaced) for e in events), what="held order placed")
    placed = [e for e in events if isinstance(e, OrderPlaced)][0]
    assert placed.ref == "held-1"
    wait_until(lambda: gateway_sim.requests_named("placeOrder"), what="order at the gateway")
    sent = gateway_sim.requests_named("placeOrder")
    assert len(sent) == 1 and sent[0][3][26] == "held-1"
    kinds = [type(e) for e in events]
    assert ConnectionLost in kinds and ConnectionRestored in kinds
    assert kinds.index(ConnectionRestored) < kinds.index(OrderPlaced)  # state synced first


def drain_nowait(q):
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_qualifies_futures_and_indices(gateway_sim, make_store):
    store = make_store(gateway_sim)
    es = store.qualify(make_contract("ES-202403-CME"), "ES-202403-CME")
    assert es.contract.secType == "FUT" and es.contract.multiplier == "50"
    assert es.contract.lastTradeDateOrContractMonth.startswith("202403")
    spx = store.qualify(make_contract("SPX-IND-CBOE-USD"), "SPX-IND-CBOE-USD")
    assert (spx.contract.secType, spx.contract.exchange) == ("IND", "CBOE")


def test_client_id_in_use_is_a_clear_error_without_retries(gateway_sim, make_store):
    make_store(gateway_sim, clientId=25)
    other = IBStore(port=gateway_sim.port, clientId=25, reconnect=5, timeout=0.05,
                    connect_timeout=5)
    try:
        with pytest.raises(ConnectionFailedError) as info:
            other.start()
        msg = str(info.value)
        assert "326" in msg and "clientId 25 is already connected" in msg
        starts = [r for r in gateway_sim.requests_named("startApi") if r[0] == 25]
        assert len(starts) == 2  # the first store and one refused attempt, no retries
    finally:
        other.close()


def test_the_store_never_imports_feeds_and_getdata_says_what_to_import():
    """bt_ibkr.ib sits below feeds/: the store and broker load without it, and getdata before
    the feed registered itself is one clear error (the feed registers on import)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from bt_ibkr import IBStore\n"
        "store = IBStore(port=1, clientId=1)\n"
        "broker = store.getbroker()\n"
        "assert not [m for m in sys.modules if m == 'feeds' or m.startswith('feeds.')], "
        "sorted(sys.modules)\n"
        "try:\n"
        "    store.getdata(dataname='AAPL')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "from feeds import IBData\n"
        "assert type(store.getdata(dataname='AAPL')) is IBData\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("ConfigError IBStore.getdata: no IB data feed is registered; "
                                  "import the feed first (from feeds import IBData)")
