"""The IB path killed mid-run and restarted, with an order in flight, through the journal.

:func:`run_ib_path_killed` runs the parity IB path (:func:`~bt_ibkr.parity.paths.run_ib_feeds`)
as two processes on one journal, each set up exactly as a live run is (:class:`JournaledProcess`:
the run lock, the SQLite journal, start-up recovery with :func:`bt_ibkr.live.recovery.recover`,
and :class:`~bt_ibkr.live.journaled_broker.JournaledIBBroker`, which journals every order's
deterministic orderRef before sending it):

1. the first process trades sessions ``0 .. kill_at-1`` and is then killed: its connection is
   dropped without a clean stop, its run is left without an end in the journal, and whatever
   it sent stays working at the gateway (typically the last decision's market order, which
   fills at session ``kill_at``'s open);
2. with ``down`` > 0 the simulator serves ``down`` more sessions while no process is connected
   (the order in flight fills then);
3. the second process, on the same client id, reconciles the journal with the gateway (open
   and completed orders, ``reqExecutions``, positions; our working orders are followed), warms
   up on the first process's recorded bars (its session record) plus the bars of the sessions it
   missed, asked of the gateway's history, and decides on the last of them as on a live bar
   (IBData ``decide_last``), as a daily run decides on its last completed bar. With ``down`` = 0
   that re-makes the first process's last decision: the broker finds its orderRef in the journal,
   sends nothing, attaches the Strategy's order to the gateway's (recorded as ``adopted``), and
   the fill at session ``kill_at`` reaches it. With ``down`` > 0 the fill made while away is
   known from the journal (recorded from ``reqExecutions``), position and cash come from IB, and
   the decision on session ``kill_at + down - 1`` is new. It then trades on.

The Recording returned is the first process's bars, then the second's from ``kill_at`` on. No
Strategy was running to be notified of a fill made while no process was connected: those fills
are taken from the journal and listed on the bar of their session, marked ``"source":
"journal"``. Sessions missed before the last one (``down`` > 1) are warm-up for the second
process (it does not trade on them), as they are for a daily run restarted days later.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.journaled_broker import JournaledIBBroker
from bt_ibkr.live.recovery import Recovery, recover
from bt_ibkr.live.run_lock import RunLock
from bt_ibkr.parity.paths import ParityConfig, run_ib_feeds
from bt_ibkr.parity.sessions import recorded_frames
from bt_ibkr.records.recorder import Recording

JOURNAL = "journal.sqlite"


@dataclass
class JournaledProcess:
    """One process of the kill scenario, on the journal at ``journal_path``.

    :meth:`make_broker` is :func:`~bt_ibkr.parity.paths.run_ib_feeds`'s ``make_broker``: it
    takes the journal's run lock, opens the journal, connects the store, binds the journal to the
    account, starts a run, recovers (:func:`bt_ibkr.live.recovery.recover`) and returns the
    configured JournaledIBBroker. :meth:`kill` drops lock and journal as a killed process does
    (the run keeps no end); :meth:`end` ends the run first.
    """

    journal_path: Path
    strategy_name: str
    mode: str = "parity"
    lock: RunLock | None = None
    journal: Journal | None = None
    run_id: str | None = None
    account: str | None = None
    recovery: Recovery | None = None
    broker: JournaledIBBroker | None = None

    def make_broker(self, store) -> JournaledIBBroker:
        """Return the journaled broker on ``store`` after the start-up recovery (connects it).

        Raises JournalLockedError when another process holds the journal, ConnectionFailedError
        when the gateway cannot be reached, GatewayTimeoutError when it does not answer.
        """
        self.lock = RunLock(self.journal_path)
        self.lock.acquire()
        try:
            self.journal = Journal(self.journal_path)
            store.start()  # connected before the Strategy runs: recovery comes first
            self.account = store.p.account or store.managed_accounts[0]
            self.journal.bind_account(self.account)
            self.run_id = self.journal.start_run(self.mode, self.account)
            self.recovery = recover(store, self.journal, self.account, datetime.now(UTC))
            broker = JournaledIBBroker(store=store)
            broker.configure(journal=self.journal, audit=None, gate=None,
                             strategy_name=self.strategy_name, run_id=self.run_id,
                             account=self.account,
                             resend_refs={r.order_ref for r in self.recovery.report.resend})
        except BaseException:
            store.close()
            self.kill()
            raise
        self.broker = broker
        return broker

    def sent_refs(self) -> set[str]:
        """Return the orderRefs this process journaled (and so sent or is sending)."""
        if self.journal is None or self.run_id is None:
            return set()
        return {r.order_ref for r in self.journal.intents() if r.run_id == self.run_id}

    def kill(self) -> None:
        """Close the journal and drop the run lock without ending the run (what the kernel
        does for a killed process; every committed row stays)."""
        journal, self.journal = self.journal, None
        if journal is not None:
            journal.close()
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()

    def end(self) -> None:
        """Record the run's end, then close the journal and drop the lock."""
        if self.journal is not None and self.run_id is not None:
            self.journal.end_run(self.run_id)
        self.kill()


def run_ib_path_killed(frames: dict[str, pd.DataFrame], strategy_cls: type,
                       params: dict[str, Any], cfg: ParityConfig, sim, kill_at: int,
                       state_dir: Path | str | None = None, down: int = 0) -> Recording:
    """Run the IB path killed before session ``kill_at`` and restarted (module docstring).

    ``sim``: a started GatewaySim nobody has connected to. ``state_dir``: the folder of the
    journal (``journal.sqlite``) both processes share (None: a temporary folder, removed
    after). ``down``: sessions served with no process connected before the restart.

    Returns the Recording (first process's bars, then the second's from ``kill_at``); its
    ``meta`` adds ``killed_at``, ``down``, ``replayed_in_restart`` (the restart's warm-up
    bars), ``redecided`` (the restart's first decided bar, as a dict), ``reconcile`` (the
    restart's reconcile report), ``fills_while_down`` and ``journal`` (its path, or None for
    a temporary folder).

    Raises ConfigError when ``kill_at``/``down`` leave either process no session, and
    RuntimeError when a process stops making progress (the hang guard).
    """
    from bt_ibkr.gateway_sim.frames import serve_frames

    cfg.validate()
    served = serve_frames(sim, frames, cfg.commission_bps, cfg.partial_fill_qty, cash=cfg.cash)
    steps = served.steps
    if down < 0:
        raise ConfigError(f"down {down}: must be >= 0 sessions")
    if not 1 <= kill_at <= len(steps) - down - 1:
        raise ConfigError(f"kill_at {kill_at} (down {down}): the first process needs a session "
                          f"and the restarted one a live session after; pick 1 .. "
                          f"{len(steps) - down - 1} for these {len(steps)} sessions")
    names = {name: served.dataname(name) for name in frames}
    if state_dir is None:
        with tempfile.TemporaryDirectory(prefix="bt_ibkr-parity-") as tmp:
            rec = _killed(served, names, strategy_cls, params, cfg, sim, kill_at, down,
                          Path(tmp) / JOURNAL)
            rec.meta["journal"] = None
            return rec
    return _killed(served, names, strategy_cls, params, cfg, sim, kill_at, down,
                   Path(state_dir) / JOURNAL)


def _killed(served, names: dict[str, str], strategy_cls: type, params: dict[str, Any],
            cfg: ParityConfig, sim, kill_at: int, down: int, journal_path: Path) -> Recording:
    """The two processes of :func:`run_ib_path_killed` on the journal at ``journal_path``."""
    steps = served.steps
    first_proc = JournaledProcess(journal_path, strategy_cls.__name__)
    try:
        first = run_ib_feeds(sim, names, steps[:kill_at], strategy_cls, params, cfg,
                             make_broker=first_proc.make_broker)
    finally:
        first_proc.kill()  # killed: no clean stop, the run keeps no end
    restart_at = kill_at + down
    if down:  # the sessions pass with no process connected
        sim.advance(seconds=max(steps[restart_at - 1] - sim.now().timestamp(), 0.0))
    history, _ = recorded_frames(first)
    if down:
        missed = missed_bars(sim, names, steps[kill_at:restart_at], cfg)
        history = {name: pd.concat([history[name], missed[name]]).sort_index()
                   if name in history else missed[name] for name in missed}
    second_proc = JournaledProcess(journal_path, strategy_cls.__name__)

    def on_step(k: int, sim, store) -> None:
        if k == 0:  # what the restart sent while deciding its last warm-up bar is at the gateway
            _wait_at_gateway(sim, second_proc.sent_refs(), cfg.hang)

    try:
        second = run_ib_feeds(sim, names, steps[restart_at:], strategy_cls, params, cfg,
                              on_step=on_step, data_kwargs={"decide_last": True},
                              backfill=history, make_broker=second_proc.make_broker)
    finally:
        second_proc.end()
    rec = Recording(bars=first.bars + second.bars[kill_at:], meta=dict(second.meta))
    report = second_proc.recovery.report
    symbols = {served.contracts[name].symbol: name for name in names}
    attached = _attach_fills(rec, report.missed_fills, symbols, kill_at)
    rec.meta.update(killed_at=kill_at, down=down, replayed_in_restart=restart_at,
                    redecided=second.bars[restart_at - 1].to_dict(),
                    reconcile=report.to_dict(), fills_while_down=attached,
                    journal=str(journal_path))
    return rec


def missed_bars(sim, names: dict[str, str], steps: list[int],
                cfg: ParityConfig) -> dict[str, pd.DataFrame]:
    """Return, per feed, the 5-second bars of the sessions at ``steps`` (epoch seconds of a
    session's bar end) from the gateway's history (``reqHistoricalData`` through the store's
    historical path, one 5-second request per session, on the restarted process's client id),
    indexed by bar end (naive UTC) like :func:`~bt_ibkr.parity.sessions.recorded_frames`.
    A feed without a session at a step gets no bar there. Raises RuntimeError when the
    gateway refuses or does not answer (within ``cfg.hang``)."""
    from bt_ibkr.gateway_sim.frames import STEP
    from bt_ibkr.ib.contracts import parse_dataname
    from bt_ibkr.ib.parsing import frame_bars
    from bt_ibkr.ib.store import IBStore

    store = IBStore(port=sim.port, clientId=cfg.client_id, timeout=0.2)
    out: dict[str, pd.DataFrame] = {}
    try:
        store.start()
        for name, dataname in names.items():
            contract = store.qualify(parse_dataname(dataname).to_contract(), dataname).contract
            rows, index = [], []
            for t in steps:
                end = datetime.fromtimestamp(t, UTC)
                try:  # the store's one historical path (chunked, paced, retried)
                    frame = store.run(store.history.bars(
                        dataname, end - timedelta(seconds=STEP), end, "5 secs", use_rth=False,
                        contract=contract), timeout=cfg.hang)
                except TimeoutError:
                    raise RuntimeError(f"no history of {name} at {end:%Y-%m-%d %H:%M:%S} "
                                       f"within {cfg.hang:g}s") from None
                except Exception as exc:  # noqa: BLE001 - IB's refusal, named
                    raise RuntimeError(f"history of {name} at {end:%Y-%m-%d %H:%M:%S}: "
                                       f"{exc}") from exc
                for bar in frame_bars(frame, "5 secs"):  # stamped at the bar's end
                    index.append(bar.dt)
                    rows.append([bar.open, bar.high, bar.low, bar.close, bar.volume])
            out[name] = pd.DataFrame(rows, index=pd.DatetimeIndex(index),
                                     columns=["open", "high", "low", "close", "volume"])
    finally:
        store.close()
        IBStore.reset_default()
    return out


def _wait_at_gateway(sim, refs: set[str], hang: float) -> None:
    """Block until every orderRef in ``refs`` is an order at the simulator (hang guard)."""
    deadline = time.monotonic() + hang
    while True:
        at_gateway = {o.spec.orderRef for o in sim.broker.open_orders()
                      + sim.broker.completed_orders()}
        if refs <= at_gateway:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"orders {sorted(refs - at_gateway)} of the restarted process "
                               f"never reached the gateway within {hang:g}s")
        time.sleep(0.001)


def _attach_fills(rec: Recording, fills, symbols: dict[str, str], since: int) -> int:
    """List each journal fill (made while no process was connected) on the bar of its session
    from bar ``since`` on, marked ``"source": "journal"``; return how many were listed."""
    by_day = {b.dt[:10]: b for b in rec.bars[since:]}
    n = 0
    for f in fills:
        name = symbols.get(f.symbol)
        when = f.time.astimezone(UTC) if f.time.tzinfo else f.time
        bar = by_day.get(when.date().isoformat())
        if name is None or bar is None:
            continue
        shares = abs(float(f.shares))
        bar.fills.append({  # signed size, as the recorder lists backtrader's executions
            "data": name, "ref": None, "orderRef": f.order_ref, "side": f.side,
            "size": round(shares if f.side == "BUY" else -shares, 8),
            "price": round(float(f.price), 10),
            "commission": None if f.commission is None else round(float(f.commission), 8),
            "time": when.isoformat(), "source": "journal"})
        n += 1
    return n


__all__ = ["JOURNAL", "JournaledProcess", "missed_bars", "run_ib_path_killed"]
