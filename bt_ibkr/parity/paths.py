"""The two paths of a parity run: one Strategy over the same bars through BackBroker and
through IBStore/IBBroker/IBData against the gateway simulator.

* :func:`run_backtest_path`: frame feeds on the backtest's own Cerebro and BackBroker
  (:func:`bt_ibkr.backtest_run.backtest_cerebro`: cash, ``commission_bps`` of the value,
  ``slippage_bps`` on the next open, market orders at the next bar's open).
* :func:`run_ib_path`: the simulator serves exactly the same frames, one session per
  5-second step (:mod:`bt_ibkr.gateway_sim.frames` says why that is faithful for daily bars);
  IBData subscribes to real-time bars (no backfill: every bar arrives live), IBBroker sends
  the orders, the simulator fills them at the next open with the same commission. The driver
  advances the simulator one session at a time and waits until the Strategy decided on that
  bar and its orders reached the gateway, so the run is a pure function of the bars.
  ``on_step(k, sim, store)`` is called before session ``k`` is sent (fault scenarios).

Both return a :class:`~bt_ibkr.records.recorder.Recording`. Raises ConfigError for bad input
and RuntimeError when the IB path stops making progress (``hang`` seconds, a hang guard).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import backtrader as bt
import pandas as pd

from bt_ibkr.backtest_run import backtest_cerebro
from bt_ibkr.costs import Costs
from bt_ibkr.errors import ConfigError
from bt_ibkr.records.recorder import ParityRecorder, Recording


@dataclass
class ParityConfig:
    """Costs and run settings shared by both paths.

    ``slippage_bps`` applies to the backtest only (the simulator does not slip), so a
    non-zero value shows up as fill diffs; ``tolerance`` is the largest fill-price difference
    (relative) reported as a match; ``partial_fill_qty`` makes the simulator fill at most that
    many shares per bar; ``client_id`` the IB client id of the IB path.
    """

    cash: float = 100_000.0
    commission_bps: float = 1.0
    slippage_bps: float = 0.0
    tolerance: float = 0.0
    partial_fill_qty: float | None = None
    client_id: int = 71
    qcheck: float = 0.5
    hang: float = 120.0
    preload: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field (as its CLI flag)."""
        Costs.of(self).validate()  # the backtest's own rules
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"--tolerance {self.tolerance}: must be a fraction in [0, 1)")
        qty = self.partial_fill_qty
        if qty is not None and (isinstance(qty, bool) or not isinstance(qty, int | float)
                                or not math.isfinite(qty) or qty <= 0):
            raise ConfigError(f"--partial-fill-qty {qty}: must be a finite number of shares > 0")


def run_backtest_path(frames: dict[str, pd.DataFrame], strategy_cls: type,
                      params: dict[str, Any], cfg: ParityConfig) -> Recording:
    """Run the Strategy over ``frames`` with BackBroker; return its Recording."""
    from feeds.frame_feed import make_feed

    cfg.validate()
    # exactly the broker python -m examples.backtest runs (bt_ibkr.backtest_run)
    cerebro = backtest_cerebro(cfg.cash, cfg.commission_bps, cfg.slippage_bps,
                               preload=cfg.preload, runonce=cfg.preload)
    for name, frame in frames.items():
        cerebro.adddata(make_feed(frame, name=name), name=name)
    cerebro.addstrategy(strategy_cls, **params)
    cerebro.addanalyzer(ParityRecorder, _name="parity")
    strat = cerebro.run()[0]
    rec = strat.analyzers.parity.get_analysis()
    rec.meta.update(path="backtest", broker="BackBroker")
    return rec


class _Gate:
    """Counts recorded bars for the driver (called in backtrader's thread). With ``ack`` set,
    every live bar's decision is followed by ``ack()`` (the paced clock's step request)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.bars = 0
        self.orders = 0
        self.ack: Callable[[], None] | None = None
        self.warm = 0

    def __call__(self, record) -> None:
        with self.cond:
            self.bars += 1
            self.orders += len(record.orders)
            self.cond.notify_all()
        if self.ack is not None and self.bars > self.warm:
            self.ack()

    def wait(self, n: int, timeout: float, failed: Callable[[], bool]) -> bool:
        """Wait until ``n`` bars were recorded; False when ``failed()`` or ``timeout``
        seconds pass without a new bar (a hang guard, not a time limit on the run)."""
        end = time.monotonic() + timeout
        with self.cond:
            seen = self.bars
            while self.bars < n:
                if failed():
                    return False
                if self.bars != seen:
                    seen, end = self.bars, time.monotonic() + timeout
                elif time.monotonic() > end:
                    return False
                self.cond.wait(0.05)
        return True


def run_ib_path(frames: dict[str, pd.DataFrame], strategy_cls: type, params: dict[str, Any],
                cfg: ParityConfig, sim=None,
                on_step: Callable[[int, Any, Any], None] | None = None) -> Recording:
    """Run the Strategy over ``frames`` through IB (the simulator); return its Recording.

    ``sim``: a started GatewaySim nobody has connected to yet (None: one is started and
    stopped here).
    """
    from bt_ibkr.gateway_sim.frames import serve_frames
    from bt_ibkr.gateway_sim.harness import GatewaySim

    cfg.validate()
    own = sim is None
    if own:
        sim = GatewaySim(data="synthetic").start()
    try:
        served = serve_frames(sim, frames, cfg.commission_bps, cfg.partial_fill_qty,
                              cash=cfg.cash)
        datanames = {name: served.dataname(name) for name in frames}
        return run_ib_feeds(sim, datanames, served.steps, strategy_cls, params, cfg,
                            on_step=on_step)
    finally:
        if own:
            sim.stop()


def run_ib_feeds(sim, datanames: dict[str, str], steps: list[int], strategy_cls: type,
                 params: dict[str, Any], cfg: ParityConfig,
                 on_step: Callable[[int, Any, Any], None] | None = None,
                 data_kwargs: dict[str, Any] | None = None,
                 backfill: dict[str, pd.DataFrame] | None = None,
                 make_broker: Callable[[Any], Any] | None = None) -> Recording:
    """Run the Strategy on IBData 5-second real-time bars of ``datanames`` (feed name ->
    IBData dataname) and IBBroker against ``sim``, advancing the simulator to each epoch
    second of ``steps`` in lockstep with the Strategy (one decision per step); return the
    Recording. ``data_kwargs`` go to every IBData (default: no backfill). ``backfill``:
    per feed, bars (index: UTC bar times) the feed replays first (``backfill_from``), as a
    restarted process warms up from its session record. ``make_broker(store)``: the broker to
    trade through instead of ``store.getbroker()`` (the journaled broker of
    :mod:`bt_ibkr.parity.restart`)."""
    from bt_ibkr.ib.store import IBStore
    from feeds.ibdata import IBData

    store = IBStore(port=sim.port, clientId=cfg.client_id, timeout=0.2)
    try:  # closed on every path: a failure while building the run must not leave it open
        gate = _Gate()
        notes: list[str] = []  # a feed the Strategy stopped waiting for (never expected here)
        cerebro = bt.Cerebro(stdstats=False)
        kwargs = {"backfill_start": False, **(data_kwargs or {})}
        warm = 0
        for name, dataname in datanames.items():
            extra = dict(kwargs)
            if backfill is not None:
                frame = backfill[name]
                warm = max(warm, len(frame))
                extra["backfill_from"] = bt.feeds.PandasData(dataname=frame, tz="UTC")
            # several feeds: IBData hands the Strategy each session's bars together (syncfeeds)
            data = IBData(dataname=dataname, store=store, rtbar=True, report=notes.append,
                          timeframe=bt.TimeFrame.Seconds, compression=5, qcheck=cfg.qcheck,
                          **extra)
            cerebro.adddata(data, name=name)
        cerebro.setbroker(make_broker(store) if make_broker is not None else store.getbroker())
        cerebro.addstrategy(strategy_cls, **params)
        cerebro.addanalyzer(ParityRecorder, _name="parity", on_bar=gate)
        errors: list[BaseException] = []
        result: list = []

        def run() -> None:
            try:
                result.extend(cerebro.run())
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        # what the gateway had before this run's Strategy starts (it subscribes from its
        # thread, which may be before _drive runs)
        before = (len(sim.requests_named("reqRealTimeBars")),
                  len(sim.requests_named("placeOrder")))
        thread = threading.Thread(target=run, name="parity-ib-cerebro", daemon=True)
        thread.start()
        try:
            _drive(sim, store, len(datanames), steps, gate, cfg, errors, on_step, warm, before)
        finally:
            cerebro.runstop()
            thread.join(cfg.hang)
        if errors:
            raise errors[0]
        rec = result[0].analyzers.parity.get_analysis()
        rec.meta.update(path="ib", broker="IBBroker", executions=len(sim.broker.executions()),
                        feed_notes=notes)
        return rec
    finally:
        store.close()
        IBStore.reset_default()


def _drive(sim, store, n_feeds: int, steps: list[int], gate: _Gate, cfg: ParityConfig,
           errors: list, on_step, warm: int, before: tuple[int, int]) -> None:
    """Advance the simulator through ``steps`` in lockstep with the Strategy.

    Without ``on_step`` the client paces the clock (``GatewayServer.pace``): after deciding
    on a live bar (its orders already on the socket) the Strategy's thread asks the gateway
    for its time, and the gateway steps to the next session first; this thread only starts
    the first step and waits for the last decision. With ``on_step`` (fault scenarios that
    act between sessions) this thread steps the clock itself and waits for each decision and
    its orders. ``before``: the gateway's reqRealTimeBars and placeOrder counts from before the
    Strategy's thread started.
    """
    subs, placed = before
    deadline = time.monotonic() + cfg.hang
    while len(sim.requests_named("reqRealTimeBars")) < subs + n_feeds or gate.bars < warm:
        if errors or time.monotonic() > deadline:
            raise RuntimeError(f"the IB path did not subscribe its feeds: {errors}")
        time.sleep(0.002)
    if not steps:
        return
    if on_step is None:
        connection = store.connection
        # ib_async holds a client to 45 requests per wall second (IB's limit is 50/s). On the
        # compressed clock a session lasts a fraction of a millisecond, so one request per
        # bar would hit a limit no real daily run comes near: lift it for this connection.
        store.call(setattr, connection.ib.client, "MaxRequests", 0)
        gate.warm = warm
        gate.ack = lambda: store.post(lambda: connection.ib.client.reqCurrentTime())
        sim.call(sim.server.pace, steps[1:])
        try:
            sim.advance(seconds=max(steps[0] - sim.now().timestamp(), 0.0))
            if not gate.wait(warm + len(steps), cfg.hang, lambda: bool(errors)):
                why = errors or "no decision within the hang guard"
                raise RuntimeError(f"the IB path stopped at bar {gate.bars - warm} of "
                                   f"{len(steps)} ({why})")
        finally:
            gate.ack = None
            sim.call(sim.server.pace, None)
        return
    gate.orders += placed  # orders placed at the gateway by an earlier process
    for k, t in enumerate(steps):
        on_step(k, sim, store)
        now = sim.now().timestamp()
        sim.advance(seconds=max(t - now, 0.0))
        if not gate.wait(warm + k + 1, cfg.hang, lambda: bool(errors)):
            raise RuntimeError(f"the IB path stopped at bar {k} of {len(steps)} "
                               f"({errors or 'no decision within the hang guard'})")
        end = time.monotonic() + cfg.hang
        while len(sim.requests_named("placeOrder")) < gate.orders:
            if errors or time.monotonic() > end:
                raise RuntimeError(f"orders of bar {k} never reached the gateway: {errors}")
            time.sleep(0.0005)
