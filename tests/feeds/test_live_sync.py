"""Several live IBData feeds hand the Strategy each bar time together (feeds.live_sync).

The simulator sends QQQ's 5-second bar of each period 2 simulated seconds after SPY's
(``delay_realtime_bars``), so the race backtrader's live loop loses is deterministic: the test
steps the clock to the end of a period (SPY's bar arrives), waits until the run can make no
progress without QQQ's bar (the Strategy ran, or a feed holds that time for QQQ), then steps 2
more seconds (QQQ's bar arrives). Without feeds.live_sync the Strategy runs each time first
with QQQ's previous bar, then a second time with QQQ's bar.
"""

from __future__ import annotations

import threading
from datetime import datetime

import backtrader as bt
import pytest
from helpers.sim import poll_until

from bt_ibkr.ib.store import IBStore
from feeds.ibdata import IBData

HANG = 60
SYMBOLS = ("SPY", "QQQ")


class Rows(bt.Strategy):
    """Records, at every prenext()/next(), each feed's bar time (naive UTC; None before its
    first bar) and its (open, high, low, close, volume)."""

    params = (("rows", None),)

    def _record(self):
        self.p.rows.append(tuple(
            (bt.num2date(d.datetime[0]), (d.open[0], d.high[0], d.low[0], d.close[0],
                                          d.volume[0])) if len(d) else (None, None)
            for d in self.datas))

    prenext = next = _record


def times(rows):
    return [tuple(t for t, _ in row) for row in rows]


def epoch(naive_utc: datetime) -> int:
    return int((naive_utc - datetime(1970, 1, 1)).total_seconds())


class Run:
    """Cerebro with one 5-second real-time IBData per symbol (no backfill) in a thread."""

    def __init__(self, sim, client_id: int, resample: bool = False, **data_kwargs):
        self.sim = sim
        self.rows: list = []
        self.notes: list[str] = []
        self.store = IBStore(port=sim.port, clientId=client_id, timeout=0.2)
        self.cerebro = bt.Cerebro(stdstats=False)
        self.datas = []
        for sym in SYMBOLS:
            data = IBData(dataname=f"{sym}-STK-SMART-USD", store=self.store, rtbar=True,
                          timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=0.1,
                          backfill_start=False, report=self.notes.append, **data_kwargs)
            if resample:
                self.cerebro.resampledata(data, name=sym, timeframe=bt.TimeFrame.Minutes,
                                          compression=1)
            else:
                self.cerebro.adddata(data, name=sym)
            self.datas.append(data)
        self.cerebro.addstrategy(Rows, rows=self.rows)
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.cerebro.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            self.error = exc

    def __enter__(self):
        self.thread.start()
        poll_until(lambda: len(self.sim.requests_named("reqRealTimeBars")) >= len(SYMBOLS),
                   HANG, "both live subscriptions")
        return self

    def __exit__(self, *exc):
        self.cerebro.runstop()
        self.thread.join(HANG)
        self.store.close()
        IBStore.reset_default()
        assert not self.thread.is_alive(), "cerebro did not stop"
        if self.error is not None and exc[0] is None:
            raise self.error

    def holding(self, when: datetime) -> bool:
        """True when a feed holds its bar of ``when`` for another feed's (feeds.live_sync)."""
        sync = getattr(self.datas[0], "livesync", None)  # None: a feed without live_sync
        waiting = getattr(sync, "waiting", None)
        return waiting is not None and waiting[0] == when

    def ran(self, col: int, when: datetime) -> bool:
        return any(row[col][0] == when for row in list(self.rows))

    def step(self, seconds: float) -> datetime:
        """Advance the simulator; return its time as naive UTC."""
        return self.sim.advance(seconds=seconds).replace(tzinfo=None)


def test_two_live_feeds_deliver_each_bar_time_together(gateway_sim):
    """Reproduction of the review finding: QQQ's bar of each period arrives after SPY's.

    Each period: SPY's bar arrives; the run waits (the Strategy ran, or SPY holds that time
    for QQQ); QQQ's bar arrives; the Strategy must have run once, with both feeds at that
    time. Without the fix (``syncfeeds=False``, backtrader's own behaviour) the first
    recorded row is (T, None) and every time is run twice."""
    gateway_sim.delay_realtime_bars("QQQ", 2)
    with Run(gateway_sim, client_id=41) as run:
        seen = []
        for k in range(5):
            t = run.step(5 if k == 0 else 3)  # to the end of the next period: SPY's bar
            poll_until(lambda t=t: run.ran(0, t) or run.holding(t), HANG,
                       f"SPY's bar of {t} to be decided on or held")
            run.step(2)  # QQQ's bar of t
            poll_until(lambda t=t: run.ran(1, t), HANG, f"QQQ's bar of {t} to be decided on")
            seen.append(t)
        rows = times(run.rows)
    assert rows == [(t, t) for t in seen], "a next() ran with the feeds at different times"
    assert run.notes == []


def test_resampled_live_feeds_deliver_each_bar_time_together(gateway_sim):
    """The same with backtrader resampling each feed's 5-second bars to 1 minute: both feeds'
    bars of a time reach the Strategy together and each is complete (it equals the
    simulator's own 1-minute window)."""
    gateway_sim.delay_realtime_bars("QQQ", 2)
    with Run(gateway_sim, client_id=42, resample=True) as run:
        seen = []
        for k in range(2):
            for part in range(12):  # twelve 5-second periods make one minute
                t = run.step(5 if k == part == 0 else 3)  # SPY's 5-second bar of t
                if part == 11:
                    poll_until(lambda t=t: run.ran(0, t) or run.holding(t), HANG,
                               f"SPY's minute of {t} to be decided on or held")
                run.step(2)  # QQQ's 5-second bar of t
            poll_until(lambda t=t: run.ran(1, t), HANG, f"QQQ's minute of {t}")
            seen.append(t)
        rows = list(run.rows)
    assert times(rows) == [(t, t) for t in seen]
    for col, sym in enumerate(SYMBOLS):
        contract = gateway_sim.contracts.by_symbol(sym, "STK")
        for row in rows:
            when, values = row[col]
            end = epoch(when)
            ref = gateway_sim.market.window(contract, end - 60, end)
            assert values == pytest.approx((ref.open, ref.high, ref.low, ref.close,
                                            ref.volume)), f"{sym} {when}"


@pytest.mark.slow
def test_a_feed_whose_bars_never_come_holds_the_strategy_only_until_syncwait(gateway_sim):
    """QQQ sends nothing: SPY's bar of T is held until the feed clock reaches T + syncwait
    (SPY's next bar), then the Strategy runs T without QQQ and a warning names QQQ and T.
    When QQQ's held bars finally come they are merged into its next bar (equal to the
    simulator's window over all of them), never delivered on their own."""
    gateway_sim.delay_realtime_bars("QQQ", 10_000)
    with Run(gateway_sim, client_id=43) as run:
        t1 = run.step(5)
        poll_until(lambda: run.holding(t1), HANG, "SPY to hold its first bar for QQQ")
        assert run.rows == []  # not decided while QQQ may still come
        t2 = run.step(5)  # the feed clock reaches t1 + 5 s: QQQ is given up on for t1
        poll_until(lambda: run.ran(0, t1), HANG, f"the Strategy to run {t1}")
        assert len(run.notes) == 1 and "IBData 'QQQ': no bar of" in run.notes[0]
        assert f"{t1:%Y-%m-%d %H:%M:%S} UTC" in run.notes[0]
        # QQQ is not waited for again until it sends: SPY's later bars go on at once
        poll_until(lambda: run.ran(0, t2), HANG, f"the Strategy to run {t2}")
        t3 = run.step(5)
        poll_until(lambda: run.ran(0, t3), HANG, f"the Strategy to run {t3}")
        assert times(run.rows) == [(t1, None), (t2, None), (t3, None)]
        gateway_sim.delay_realtime_bars("QQQ", 0)  # QQQ's bars of t1..t3 arrive now, late
        t4 = run.step(5)
        poll_until(lambda: run.ran(1, t4), HANG, f"QQQ's bar of {t4}")
        rows = list(run.rows)
    assert times(rows) == [(t1, None), (t2, None), (t3, None), (t4, t4)]
    assert len(run.notes) == 2 and "merged into its bar of" in run.notes[1]
    qqq = gateway_sim.contracts.by_symbol("QQQ", "STK")
    end = epoch(t4)
    ref = gateway_sim.market.window(qqq, end - 20, end)  # t1's period .. t4's
    assert rows[-1][1][1] == pytest.approx((ref.open, ref.high, ref.low, ref.close,
                                            ref.volume))


def test_daily_runner_on_two_symbols_is_aligned_without_live_sync(gateway_sim_factory,
                                                                 tmp_path):
    """Daily mode needs no live_sync (feeds.daily_decision says why): every next() of the
    warm-up and the decision has both symbols at the same session, each session once."""
    from helpers.live import multi_config as config

    from bt_ibkr.live.runner import LiveRunner

    sim = gateway_sim_factory(data="sample")
    rows: list = []
    runner = LiveRunner(config(tmp_path, sim.port, list(SYMBOLS)),
                        strategy=type("Rec", (RunnerRows,), {"rows": rows}), max_runtime=120)
    assert runner.run().stopped_by == "finished"
    assert all(d.livesync is None for d in runner.feeds)
    assert len(rows) > 400  # two years of sessions
    assert [r for r in rows if r[0] != r[1]] == []
    stamps = [r[0] for r in rows]
    assert stamps == sorted(set(stamps))


@pytest.mark.slow
def test_when_every_stream_stalls_a_hold_ends_after_synctimeout(gateway_sim):
    """QQQ sends nothing and SPY no further bar (the feed clock stands still, as when every
    stream stops at the close): SPY's bar of T is decided after ``synctimeout`` seconds of
    the machine's clock, with the warning naming QQQ and T."""
    gateway_sim.delay_realtime_bars("QQQ", 10_000)
    with Run(gateway_sim, client_id=45, synctimeout=0.3) as run:
        t1 = run.step(5)
        poll_until(lambda: run.ran(0, t1), HANG, f"the Strategy to run {t1}")
    assert times(run.rows) == [(t1, None)]
    assert len(run.notes) == 1 and "IBData 'QQQ': no bar of" in run.notes[0]
    assert f"{t1:%Y-%m-%d %H:%M:%S} UTC" in run.notes[0]


def test_stopping_the_run_ends_a_hold_at_once(gateway_sim):
    """cerebro.runstop() (the live runner's stop) while SPY holds its bar for QQQ: the run
    ends within the hang guard, long before ``synctimeout``, and nothing is decided."""
    gateway_sim.delay_realtime_bars("QQQ", 10_000)
    with Run(gateway_sim, client_id=46, synctimeout=600) as run:
        t1 = run.step(5)
        poll_until(lambda: run.holding(t1), HANG, "SPY to hold its bar for QQQ")
    assert run.rows == [] and run.notes == []


def test_syncwait_and_synctimeout_must_be_positive_seconds():
    from bt_ibkr.errors import ConfigError

    for bad in (0, -1.0, float("nan"), float("inf"), "5"):
        with pytest.raises(ConfigError, match=r"syncwait=.*: must be a finite number"):
            IBData(dataname="SPY", syncwait=bad, store=object())
    with pytest.raises(ConfigError, match=r"synctimeout=0: must be a finite number"):
        IBData(dataname="SPY", synctimeout=0, store=object())



class RunnerRows(bt.Strategy):
    """Rows (see :class:`Rows`) into the class attribute ``rows`` (the runner makes the
    strategy; a test subclasses this with its own list)."""

    rows: list = []

    def _record(self):
        self.rows.append(tuple(bt.num2date(d.datetime[0]) if len(d) else None
                               for d in self.datas))

    prenext = next = _record


@pytest.mark.slow
@pytest.mark.parametrize("bar_size, periods", [("5 secs", 1), ("1 min", 12)],
                         ids=["5s", "1min-resampled"])
def test_live_runner_stream_on_two_symbols_is_aligned_by_default(gateway_sim_factory, tmp_path,
                                                                  bar_size, periods):
    """``python -m examples.live --mode stream --symbols SPY,QQQ --bar-size ...``: warm-up and
    live, every next() has both feeds at one time, each time once, though QQQ's live bars
    reach the client 2 simulated seconds after SPY's; no late-feed note."""
    from helpers.live import multi_config as config

    from bt_ibkr.live.runner import LiveRunner

    sim = gateway_sim_factory(data="sample")
    sim.advance(minutes=10)  # history for the warm-up
    sim.delay_realtime_bars("QQQ", 2)
    rows: list = []
    strategy = type("Rec", (RunnerRows,), {"rows": rows})
    lines: list[str] = []
    cfg = config(tmp_path, sim.port, list(SYMBOLS), run_mode="stream", bar_size=bar_size)
    runner = LiveRunner(cfg, strategy=strategy, max_runtime=120, progress=lines.append)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        sim.wait_for_request("reqRealTimeBars", count=2, timeout=HANG)
        poll_until(lambda: len(runner.feeds) == 2
                   and all(d.sync_phase() == "live" for d in runner.feeds), HANG,
                   "both feeds past their backfill")
        warm = len(rows)
        assert warm >= 600 // (5 * periods)  # both feeds' 10-minute backfill
        sync = runner.feeds[0].livesync
        live = []
        for k in range(2):
            for part in range(periods):
                t = sim.advance(seconds=5 if k == part == 0 else 3).replace(tzinfo=None)
                if part == periods - 1:
                    poll_until(lambda t=t: any(r[0] == t for r in list(rows))
                               or (sync.waiting or (None,))[0] == t, HANG,
                               f"SPY's bar of {t} decided on or held")
                sim.advance(seconds=2)
            poll_until(lambda t=t: any(r[1] == t for r in list(rows)), HANG,
                       f"QQQ's bar of {t}")
            live.append(t)
    finally:
        runner.stop("test")
        thread.join(HANG)
    assert not thread.is_alive()
    assert [r for r in rows if r[0] != r[1]] == [], "a next() had the feeds at different times"
    stamps = [r[0] for r in rows]
    assert stamps == sorted(set(stamps)), "a bar time was run twice (or went back)"
    assert stamps[-2:] == live
    assert not [line for line in lines if line.startswith("data:")]


def test_backtraders_retry_does_not_close_a_resampled_bar_whose_last_part_has_arrived(
        gateway_sim):
    """Drives the feeds as one turn of ``Cerebro._runnext`` does when SPY found its queue empty
    and QQQ then delivered its minute of T (holding it until SPY's last 5-second bar of T
    arrived): backtrader retries SPY with ``_check(forcedata=QQQ)`` then
    ``next(datamaster=QQQ)``. SPY's bar of T must be complete (the simulator's 1-minute
    window), not closed at T without its last part (backtrader forces minute and day bars
    only, so the bars here are minutes)."""
    store = IBStore(port=gateway_sim.port, clientId=44, timeout=0.2)
    cerebro = bt.Cerebro(stdstats=False)
    spy, qqq = (IBData(dataname=f"{sym}-STK-SMART-USD", store=store, rtbar=True,
                       timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=0.05,
                       backfill_start=False) for sym in SYMBOLS)
    for sym, data in zip(SYMBOLS, (spy, qqq), strict=True):
        cerebro.resampledata(data, name=sym, timeframe=bt.TimeFrame.Minutes, compression=1)
        data._start()
        data._qcheck = data.p.qcheck
    try:
        for data in (spy, qqq):
            assert data.next(ticks=False) is None  # subscribes; no bar yet
        poll_until(lambda: len(gateway_sim.requests_named("reqRealTimeBars")) == 2, HANG,
                   "both subscriptions")
        gateway_sim.advance(seconds=55)  # the first eleven 5-second parts of both minutes
        poll_until(lambda: spy.livesync.has_arrived(qqq, datetime(2024, 1, 2, 14, 30, 55)),
                   HANG, "the first parts")
        assert spy.next(ticks=False) is None and qqq.next(ticks=False) is None
        gateway_sim.delay_realtime_bars("SPY", 2)
        t = gateway_sim.advance(seconds=5).replace(tzinfo=None)  # QQQ's last part of t
        out: dict = {}
        worker = threading.Thread(target=lambda: out.update(ret=qqq.next(ticks=False)))
        worker.start()
        poll_until(lambda: spy.livesync.waiting == (t, ("SPY",)), HANG, "QQQ to hold t")
        gateway_sim.advance(seconds=2)  # SPY's last part of t arrives: QQQ delivers
        worker.join(HANG)
        assert out["ret"] is True and bt.num2date(qqq.datetime[0]) == t
        spy._check(forcedata=qqq)  # backtrader's retry of a feed that delivered nothing
        assert spy.next(datamaster=qqq, ticks=False) is True
        assert bt.num2date(spy.datetime[0]) == t
        ref = gateway_sim.market.window(gateway_sim.contracts.by_symbol("SPY", "STK"),
                                        epoch(t) - 60, epoch(t))
        assert (spy.open[0], spy.high[0], spy.low[0], spy.close[0], spy.volume[0]) == \
            pytest.approx((ref.open, ref.high, ref.low, ref.close, ref.volume))
    finally:
        for data in (spy, qqq):
            data.stop()
        store.close()
        IBStore.reset_default()
