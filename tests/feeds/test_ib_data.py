"""IBData (historical and live) through the real IB client against the gateway simulator."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta

import backtrader as bt
import numpy as np
import pytest
import pytz
from helpers.sim import poll_until as wait_until

from bt_ibkr.errors import UnknownSymbolError
from bt_ibkr.ib.events import BarReceived, HistoryEnded
from bt_ibkr.ib.store import IBStore
from feeds.ibdata import IBData

HANG = 60


class Recorder(bt.Strategy):
    """Records every bar of data0 and every notification."""

    params = (("rec", None),)

    def __init__(self):
        self.rec = self.p.rec
        self.rec.setdefault("bars", [])
        self.rec.setdefault("status", [])
        self.rec.setdefault("store", [])

    def notify_data(self, data, status, *args, **kwargs):
        self.rec["status"].append((data._getstatusname(status), args))

    def notify_store(self, msg, *args, **kwargs):
        self.rec["store"].append(msg)

    def next(self):
        d = self.data0
        self.rec["bars"].append(
            (d.datetime.datetime(0, tz=None), d.open[0], d.high[0], d.low[0], d.close[0],
             d._laststatus)
        )


class LiveRun:
    """cerebro.run() in a worker thread (it blocks); the test drives the simulator."""

    def __init__(self, cerebro):
        self.cerebro = cerebro
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.result = self.cerebro.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.cerebro.runstop()
        self.thread.join(HANG)
        assert not self.thread.is_alive(), "cerebro did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error


@pytest.fixture
def store(gateway_sim):
    st = IBStore(port=gateway_sim.port, clientId=31, timeout=0.2, reconnect=-1, connect_timeout=2)
    yield st
    st.close()
    IBStore.reset_default()


def subscribed(sim, n=1):
    """Wait until the simulator has handled ``n`` live subscriptions (bars or ticks)."""
    wait_until(lambda: len(sim.requests_named("reqRealTimeBars"))
               + len(sim.requests_named("reqMktData")) >= n, what="live subscription")


def statuses(rec):
    return [s for s, _ in rec.get("status", [])]


def test_historical_daily_range_is_chunked_and_complete(gateway_sim, store):
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL", currency="USD", store=store, historical=True,
                  timeframe=bt.TimeFrame.Days, fromdate=datetime(2022, 1, 1),
                  todate=datetime(2023, 12, 31))
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    cerebro.run(runonce=False)  # backtrader delivers data notifications in the next() loop only
    assert not data.islive()
    series = gateway_sim.market.series(gateway_sim.contracts.by_symbol("AAPL", "STK"))
    mask = (series.dates >= np.datetime64("2022-01-01")) & (series.dates <= np.datetime64("2023-12-31"))
    want_dates = [d.astype(object) for d in series.dates[mask]]
    got_dates = [b[0].date() for b in rec["bars"]]
    assert got_dates == want_dates
    assert [b[4] for b in rec["bars"]] == pytest.approx(list(series.close[mask]), abs=0.006)
    assert [b[1] for b in rec["bars"]] == pytest.approx(list(series.open[mask]), abs=0.006)
    # two years of daily bars need two requests of at most 365 days each
    assert len(gateway_sim.requests_named("reqHistoricalData")) == 2
    assert statuses(rec) == ["CONNECTED", "DELAYED", "DISCONNECTED"]
    # stamped at the session end (16:00 New York, from liquidHours) in the exchange zone
    assert rec["bars"][0][0].time() == datetime(2000, 1, 1, 16, 0).time()


def test_unknown_symbol_stops_the_run_with_a_clear_error(gateway_sim, store):
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(IBData(dataname="NOPE-STK-SMART-USD", store=store, historical=True))
    cerebro.addstrategy(Recorder, rec={})
    with pytest.raises(UnknownSymbolError, match="'NOPE-STK-SMART-USD'"):
        cerebro.run()


def test_live_backfill_then_rtbars_resample_to_ibs_own_minute_bars(gateway_sim, store):
    gateway_sim.advance(minutes=20)  # history to backfill
    sim_start = gateway_sim.now()
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, rtbar=True,
                  timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=0.1,
                  fromdate=datetime(2024, 1, 2, 9, 30))
    assert data.islive()
    cerebro.resampledata(data, timeframe=bt.TimeFrame.Minutes, compression=1)
    cerebro.addstrategy(Recorder, rec=rec)
    with LiveRun(cerebro):
        wait_until(lambda: len(rec.get("bars", [])) >= 20, what="backfilled minutes")
        subscribed(gateway_sim)  # the live 5-second bars reach the feed from now on
        for _ in range(10):
            gateway_sim.advance(minutes=1)
        wait_until(lambda: len(rec["bars"]) >= 30, what="live minutes")
    assert statuses(rec)[:3] == ["CONNECTED", "DELAYED", "LIVE"]
    stamps = [b[0] for b in rec["bars"]]
    assert stamps[0] == datetime(2024, 1, 2, 9, 31)
    assert all(b - a == timedelta(minutes=1) for a, b in zip(stamps, stamps[1:], strict=False))
    assert len(stamps) == 30
    # live minutes (built by backtrader from 5-second bars) equal IB's own 1-minute bars
    store.start()  # cerebro released the store at the end of its run
    q = store.request_history(data.contract, sim_start.replace(tzinfo=None) - timedelta(minutes=20),
                              None, "1 min", tz=data._tz)
    ib_bars = {}
    while True:
        event = q.get(timeout=HANG)
        if isinstance(event, HistoryEnded):
            break
        if isinstance(event, BarReceived):
            ib_bars[event.bar.dt] = event.bar
    for dt, o, h, lo, c, _ in rec["bars"]:
        utc = data._tz.localize(dt).astimezone(pytz.utc).replace(tzinfo=None)
        ref = ib_bars[utc]
        assert (o, h, lo, c) == pytest.approx((ref.open, ref.high, ref.low, ref.close))


@pytest.mark.slow
def test_reconnect_backfills_the_gap_without_duplicates_or_holes(gateway_sim, store):
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="MSFT-STK-SMART-USD", store=store, rtbar=True,
                  timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=0.1,
                  fromdate=datetime(2024, 1, 2, 9, 30))
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    with LiveRun(cerebro):
        subscribed(gateway_sim)
        for _ in range(12):
            gateway_sim.advance(seconds=5)
        wait_until(lambda: len(rec["bars"]) >= 12, what="first live bars")
        gateway_sim.restart(rollback_ids=False, downtime=0.5)  # disconnect, refuse for 0.5 s
        gateway_sim.advance(seconds=60)  # 12 bars nobody receives
        wait_until(lambda: "CONNBROKEN" in statuses(rec), what="CONNBROKEN")
        wait_until(lambda: store.ready, what="reconnect")
        subscribed(gateway_sim, 2)  # resubscribed: the next bars reach the feed
        for _ in range(12):
            gateway_sim.advance(seconds=5)
        wait_until(lambda: len(rec["bars"]) >= 36, what="bars after the reconnect")
    stamps = [b[0] for b in rec["bars"]]
    assert len(stamps) == 36
    assert all(b - a == timedelta(seconds=5) for a, b in zip(stamps, stamps[1:], strict=False))
    st = statuses(rec)
    assert st.index("CONNBROKEN") < len(st) - 1
    after = st[st.index("CONNBROKEN"):]
    assert after[:3] == ["CONNBROKEN", "DELAYED", "LIVE"]


@pytest.mark.parametrize(
    "code, status",
    [
        (162, "DISCONNECTED"),
        (200, "DISCONNECTED"),
        (354, "NOTSUBSCRIBED"),
        (10089, "NOTSUBSCRIBED"),
        (10168, "NOTSUBSCRIBED"),
        (10197, "NOTSUBSCRIBED"),
    ],
)
def test_errors_that_stop_a_feed_reach_notify_data_with_their_code(gateway_sim, store, code, status):
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, qcheck=0.05, backfill_start=False,
                  timeframe=bt.TimeFrame.Ticks)
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    run = LiveRun(cerebro)
    with run:
        subscribed(gateway_sim)
        gateway_sim.advance(seconds=10)
        wait_until(lambda: rec.get("bars"), what="ticks")
        req_id = store.streams.streams[0].reqId
        gateway_sim.call(gateway_sim.server.error, None, req_id, code, f"simulated {code}")
        run.thread.join(HANG)  # the feed ends, so cerebro ends by itself
        assert not run.thread.is_alive()
    assert rec["status"][-1] == (status, (code, f"simulated {code}"))
    assert any(getattr(m, "code", None) == code for m in rec["store"])


def test_connectivity_loss_and_restore_codes(gateway_sim, store):
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, rtbar=True, qcheck=0.05,
                  timeframe=bt.TimeFrame.Seconds, compression=5,
                  fromdate=datetime(2024, 1, 2, 9, 30))
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    with LiveRun(cerebro):
        subscribed(gateway_sim)
        gateway_sim.advance(seconds=20)
        wait_until(lambda: "LIVE" in statuses(rec), what="LIVE")
        gateway_sim.notice(1100)
        wait_until(lambda: "CONNBROKEN" in statuses(rec), what="CONNBROKEN")
        gateway_sim.notice(1101)  # data lost: subscriptions must be renewed
        wait_until(lambda: len(gateway_sim.requests_named("reqRealTimeBars")) == 2,
                   what="resubscription")
        gateway_sim.advance(seconds=20)
        wait_until(lambda: statuses(rec)[-1] == "LIVE", what="LIVE again")
        # LIVE again may come before the last of these four bars: wait for all eight
        wait_until(lambda: len(rec["bars"]) >= 8, what="bars after 1101")
        gateway_sim.advance(seconds=20)
        wait_until(lambda: len(rec["bars"]) >= 12, what="more bars after 1101")
    assert ("CONNBROKEN", (1100, rec["status"][-3][1][1])) in rec["status"]
    stamps = [b[0] for b in rec["bars"]]
    assert all(b - a == timedelta(seconds=5) for a, b in zip(stamps, stamps[1:], strict=False))
    assert len(stamps) == 12
    assert [m.code for m in rec["store"] if m.code in (1100, 1101)] == [1100, 1101]


def test_delayed_market_data_is_reported_as_delayed(gateway_sim):
    st = IBStore(port=gateway_sim.port, clientId=32, marketdatatype=3)
    try:
        rec = {}
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(dataname="AAPL-STK-SMART-USD", store=st, qcheck=0.05,
                      backfill_start=False, timeframe=bt.TimeFrame.Ticks)
        cerebro.adddata(data)
        cerebro.addstrategy(Recorder, rec=rec)
        with LiveRun(cerebro):
            subscribed(gateway_sim)
            gateway_sim.advance(minutes=20)  # delayed ticks are 15 minutes old
            # a slow client reads a burst of ticks in one go and sees one ticker update: step
            # the simulator until three ticks reached the strategy (hang guard: 120 s)
            deadline = time.monotonic() + 120
            while len(rec.get("bars", [])) < 3:
                assert time.monotonic() < deadline, "hang guard: no delayed ticks"
                gateway_sim.advance(seconds=5)
                time.sleep(0.01)
        assert "DELAYED" in statuses(rec) and "LIVE" not in statuses(rec)
        assert [r for r in gateway_sim.requests_named("reqMarketDataType")][0][3][-1] == "3"
        assert all(b[5] == data.DELAYED for b in rec["bars"])
    finally:
        st.close()
        IBStore.reset_default()


def test_load_polls_with_qcheck_and_never_blocks(gateway_sim, store):
    cerebro = bt.Cerebro()
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, qcheck=0.05, backfill_start=False,
                  rtbar=True, timeframe=bt.TimeFrame.Seconds, compression=5)
    cerebro.adddata(data)
    data._start()
    try:
        data._qcheck = data.p.qcheck
        t0 = time.monotonic()
        assert data.load() is None  # no bar yet: returns, does not wait for one
        assert time.monotonic() - t0 < HANG
        subscribed(gateway_sim)
        gateway_sim.advance(seconds=5)
        wait_until(lambda: not data.qlive.empty(), what="a bar")
        assert data.load() is True
        assert data.close[0] > 0
    finally:
        data.stop()


def _constant_days(first: str, last: str):
    """Business days ``first..last`` and a daily PandasData feed of one constant bar on each
    (open 1, high 2, low 0.5, close 1.5, volume 10): a file to backfill from."""
    import pandas as pd

    idx = pd.bdate_range(first, last)
    frame = pd.DataFrame({"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0},
                         index=idx)
    return idx, bt.feeds.PandasData(dataname=frame, timeframe=bt.TimeFrame.Days)


def test_backfill_from_another_feed_then_ib_history(gateway_sim, store):
    idx, src = _constant_days("2023-11-01", "2023-11-30")
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, backfill_from=src,
                  timeframe=bt.TimeFrame.Days, qcheck=0.05)
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    with LiveRun(cerebro):
        wait_until(lambda: len(rec.get("bars", [])) >= len(idx) + 20, what="both backfills")
    dates = [b[0].date() for b in rec["bars"]]
    assert dates[: len(idx)] == [d.date() for d in idx]
    assert rec["bars"][0][4] == 1.5  # from the other feed
    ib_part = dates[len(idx):]
    assert ib_part[0] == date(2023, 12, 1)  # IB history continues after the file, no overlap
    assert ib_part == sorted(set(ib_part))


@pytest.mark.parametrize("decide_last", [False, True])
def test_decide_last_delivers_the_last_backfill_from_bar_live(gateway_sim, store, decide_last):
    idx, src = _constant_days("2023-11-01", "2023-11-10")
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, backfill_from=src,
                  backfill_start=False, timeframe=bt.TimeFrame.Days, qcheck=0.05,
                  decide_last=decide_last)
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    with LiveRun(cerebro):
        wait_until(lambda: len(rec.get("bars", [])) >= len(idx), what="the backfill")
    backfill = rec["bars"][:len(idx)]  # a tick of the live stream may follow
    live = [b[5] == IBData.LIVE for b in backfill]
    assert [b[0].date() for b in backfill] == [d.date() for d in idx]
    # the Strategy decides on the last bar as on a live one (a restart re-making a decision)
    assert live == [False] * (len(idx) - 1) + [decide_last]


def test_delayed_data_warning_10167_is_reported_and_the_feed_goes_on(gateway_sim, store):
    rec = {}
    cerebro = bt.Cerebro(stdstats=False)
    data = IBData(dataname="AAPL-STK-SMART-USD", store=store, qcheck=0.05, backfill_start=False,
                  timeframe=bt.TimeFrame.Ticks)
    cerebro.adddata(data)
    cerebro.addstrategy(Recorder, rec=rec)
    with LiveRun(cerebro):
        subscribed(gateway_sim)
        gateway_sim.advance(seconds=10)
        wait_until(lambda: "LIVE" in statuses(rec), what="LIVE")
        req_id = store.streams.streams[0].reqId
        text = "Requested market data is not subscribed. Displaying delayed market data."
        gateway_sim.call(gateway_sim.server.error, None, req_id, 10167, text)
        wait_until(lambda: "DELAYED" in statuses(rec), what="DELAYED")
        n = len(rec["bars"])
        gateway_sim.advance(seconds=10)
        wait_until(lambda: len(rec["bars"]) > n, what="ticks after the warning")
    assert ("DELAYED", (10167, text)) in rec["status"]
    assert any(getattr(m, "code", None) == 10167 for m in rec["store"])


def test_delayed_fallback_after_a_missing_subscription(gateway_sim):
    st = IBStore(port=gateway_sim.port, clientId=33, delayed_fallback=True)
    try:
        rec = {}
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(dataname="AAPL-STK-SMART-USD", store=st, qcheck=0.05,
                      backfill_start=False, timeframe=bt.TimeFrame.Ticks)
        cerebro.adddata(data)
        cerebro.addstrategy(Recorder, rec=rec)
        with LiveRun(cerebro):
            subscribed(gateway_sim)
            gateway_sim.advance(minutes=16)
            wait_until(lambda: "LIVE" in statuses(rec), what="LIVE")
            text = "Requested market data is not subscribed."
            gateway_sim.call(gateway_sim.server.error, None, st.streams.streams[0].reqId, 354, text)
            subscribed(gateway_sim, n=2)  # the same stream, requested again as delayed
            n = len(rec["bars"])
            gateway_sim.advance(seconds=30)
            wait_until(lambda: len(rec["bars"]) > n, what="delayed ticks")
        assert ("DELAYED", (354, text)) in rec["status"]
        assert "NOTSUBSCRIBED" not in statuses(rec)
        assert gateway_sim.requests_named("reqMarketDataType")[-1][3][-1] == "3"
        assert rec["bars"][-1][5] == data.DELAYED
    finally:
        st.close()
        IBStore.reset_default()


def test_live_backfill_reads_and_fills_the_shared_bar_cache(gateway_sim, tmp_path):
    """The stream backfill goes through the store's historical path and its parquet cache:
    complete days are fetched whole and cached, so a second run asks IB for today only."""
    from bt_ibkr.cache import BarCache, CacheKey

    gateway_sim.advance(minutes=10)  # today's session (2024-01-02) has ten minutes
    cache = BarCache(tmp_path / "bars")

    def backfill(client_id):
        st = IBStore(port=gateway_sim.port, clientId=client_id, cache=cache)
        rec = {}
        cerebro = bt.Cerebro(stdstats=False)
        data = IBData(dataname="AAPL-STK-SMART-USD", store=st, rtbar=True, qcheck=0.05,
                      timeframe=bt.TimeFrame.Minutes, compression=1,
                      fromdate=datetime(2023, 12, 29, 15, 0))
        cerebro.adddata(data)
        cerebro.addstrategy(Recorder, rec=rec)
        before = len(gateway_sim.requests_named("reqHistoricalData"))
        try:
            with LiveRun(cerebro):
                wait_until(lambda: len(rec.get("bars", [])) >= 70, what="backfilled minutes")
        finally:
            st.close()
            IBStore.reset_default()
        return rec["bars"], gateway_sim.requests_named("reqHistoricalData")[before:]

    first, asked_first = backfill(34)
    stamps = [b[0] for b in first]
    # 15:01..16:00 New York on Friday 2023-12-29, then 09:31..09:40 today: no gap, no repeat
    assert stamps[0] == datetime(2023, 12, 29, 15, 1) and stamps[59] == datetime(2023, 12, 29, 16)
    assert stamps[60:] == [datetime(2024, 1, 2, 9, 31) + timedelta(minutes=i) for i in range(10)]
    # the simulator's bars are filed as "ibkr-sim", never as IB's
    key = CacheKey("ibkr-sim", "AAPL-STK-SMART-USD", "1 min", "TRADES", use_rth=False)
    assert cache.coverage(key) == [(date(2023, 12, 29), date(2024, 1, 1))]  # today: not yet
    assert len(asked_first) == 5  # one day per request: Friday, the weekend, New Year, today

    second, asked_second = backfill(35)
    assert second == first
    assert len(asked_second) == 1  # today only; Friday came from the cache
    assert asked_second[0][3][15] == asked_first[0][3][15]  # the same request: ending now
