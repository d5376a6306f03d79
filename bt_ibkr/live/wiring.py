"""The parts of a paper/live run built from its resolved config: the store's connection, the
journaled broker behind its risk gate, the Cerebro's feeds and analyzers, and the session
record attached to it.

Each function builds and returns; none keeps state, none changes the config it is given.
The run itself (when to connect, trade, stop) is :mod:`bt_ibkr.live.runner`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import backtrader as bt

from analyzers.live_equity import LiveEquityRecorder
from analyzers.live_progress import LiveProgress
from bt_ibkr.backtest_run import warmup_bars
from bt_ibkr.calendars import DEFAULT_CALENDAR, risk_session
from bt_ibkr.errors import ConfigError, ConnectionFailedError
from bt_ibkr.ib.bars import BAR_SECONDS, normalize_bar_size, timeframe_of
from bt_ibkr.ib.store import IBStore
from bt_ibkr.live.audit import AuditLog
from bt_ibkr.live.config import LiveConfig
from bt_ibkr.live.futures_run import FuturesLeg
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.journaled_broker import JournaledIBBroker
from bt_ibkr.live.options import RunOptions
from bt_ibkr.live.reconcile import ReconcileReport
from bt_ibkr.live.risk import RiskGate
from bt_ibkr.live.sizing import strategy_capital, traded_days
from bt_ibkr.live.trading_day import open_day
from bt_ibkr.utc import utc_now
from feeds.continuous_decision import ContinuousDecisionData
from feeds.daily_decision import DailyDecisionData
from feeds.ibdata import IBData

log = logging.getLogger("bt_ibkr.live")

CONNECT_RETRIES = 1
"""Attempts after the first when a run connects (``retry_delay`` 0.5 s): a gateway that is not
there fails the run at once (ConnectionFailedError, exit 3)."""

REDIAL_RETRIES = 1_000_000
"""Once connected, a lost connection is re-dialled (with back-off) until the run stops."""


def check_params(strategy_cls: type, params: dict[str, Any]) -> None:
    """Refuse strategy params ``strategy_cls`` does not have, or values of the wrong type.

    Raises:
        ConfigError: names the param(s) (``strategy.params``) and the valid names.
    """
    from bt_ibkr.params import check_param_values, param_defaults

    names = set(param_defaults(strategy_cls))
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(f"strategy.params {unknown}: {strategy_cls.__name__} has no such "
                          f"param; valid: {', '.join(sorted(names))}")
    # typed as the CLI types them: a library caller's use_hmm="maybe" is refused too
    check_param_values(strategy_cls, params, "strategy.params")


def bar_cache(cfg: LiveConfig, options: RunOptions):
    """Return the store's BarCache (None: no cache), see :attr:`RunOptions.cache`."""
    if options.cache is False:
        return None
    if options.cache is not None:
        return options.cache
    from bt_ibkr.cache import BarCache

    if options.simulate:  # simulated prices must never be served as IB's to a backtest
        return BarCache(Path(cfg.paths.journal).parent / "cache")
    return BarCache()


def open_store(cfg: LiveConfig, options: RunOptions, connect_timeout: float,
               deadline: float | None) -> IBStore:
    """Connect to the gateway of ``cfg`` and return the started IBStore: one retry to
    connect (a gateway that is not there fails at once), then every lost connection re-dialled
    (:data:`REDIAL_RETRIES`, back-off up to ``options.reconnect_backoff_max``). ``deadline``
    (monotonic; None: none) ends every blocking wait of the store.

    Raises:
        ConnectionFailedError: the gateway cannot be reached; the one line says why and what
            to check.
    """
    host, port = cfg.connection.host, cfg.port
    IBStore.reset_default()
    store = IBStore(host=host, port=port, clientId=cfg.connection.client_id,
                    account=cfg.connection.account or "", readonly=cfg.connection.readonly,
                    connect_timeout=connect_timeout, reconnect=REDIAL_RETRIES, timeout=0.5,
                    backoff_max=options.reconnect_backoff_max, timerefresh=0,
                    cache=bar_cache(cfg, options))
    store.deadline = deadline
    try:
        # the first connect is tried twice only; ``reconnect`` above is for lost connections
        store.connection.connect(CONNECT_RETRIES, 0.5)
        store.start()
    except ConnectionFailedError as exc:
        store.close()
        why = getattr(exc, "reason", None)  # the connection's one-line reason: why, and what to do
        if why:
            raise ConnectionFailedError(f"cannot connect to the IB gateway: {why}") from None
        raise ConnectionFailedError(
            f"cannot reach the IB gateway at {host}:{port}: {exc}. Check: TWS or IB "
            "Gateway is running and logged in; host and port (paper: IB Gateway 4002, TWS "
            "7497; live: 4001 / 7496); the API is enabled (TWS: Global Configuration -> API "
            "-> Settings -> Enable ActiveX and Socket Clients) and 127.0.0.1 is a trusted "
            "IP; no other program uses clientId "
            f"{cfg.connection.client_id}."
        ) from None
    return store


def journaled_broker(cfg: LiveConfig, store: IBStore, journal: Journal, audit: AuditLog,
                     account: str, run_id: str, day, report: ReconcileReport,
                     strategy_name: str, crash_at: str | None, lift_halt: bool,
                     say: Callable[[str], None]) -> tuple[JournaledIBBroker, float]:
    """Return ``(broker, equity0)``: the run's JournaledIBBroker, sized from ``risk.capital``
    and the ramp (said), behind a RiskGate opened on trading day ``day`` (a halt of that day
    in the journal holds unless ``lift_halt``), resending the intents ``report`` found unsent;
    and the equity the daily-loss floor starts from (the Strategy's value)."""
    account_value = store.get_acc_value()
    # risk.capital and the ramp: how much of the account the Strategy sizes from
    sizing = strategy_capital(cfg.risk, account_value, traded_days(journal, account), day)
    say(sizing.line(cfg.risk.ramp_sessions))
    broker = JournaledIBBroker(store=store, capital=sizing.capital)
    # the daily-loss floor is on what the gate sees: the Strategy's value
    equity0 = sizing.capital if sizing.capital is not None else account_value
    gate = RiskGate(cfg.risk)
    open_day(gate, journal, audit, day=day, account=account, run_id=run_id,
             equity=equity0, lift_halt=lift_halt, say=say)
    broker.configure(journal=journal, audit=audit, gate=gate, strategy_name=strategy_name,
                     run_id=run_id, account=account, read_only=cfg.read_only,
                     resend_refs={r.order_ref for r in report.resend},
                     crash_at=crash_at, trading_day=day)
    broker.halt_announced = gate.halted  # a halt restored from the journal is reported
    # the session of "now" on the gateway's clock: a halt is filed under the session in
    # which the loss happened, and a stream run that reaches the next session starts a
    # new day there (its start-of-day equity; that day's halt, if any)
    broker.session_now = lambda: risk_session(utc_now() + store.timeoffset(),
                                              DEFAULT_CALENDAR)
    broker.on_new_day = lambda new_day, equity: open_day(
        gate, journal, audit, day=new_day, account=account, run_id=run_id, equity=equity,
        lift_halt=False, say=say)
    return broker, equity0


def add_feeds(cerebro: bt.Cerebro, cfg: LiveConfig, store: IBStore, options: RunOptions,
              keep_alive: Callable[[], bool], note: Callable[[str], None],
              futures: Mapping[str, FuturesLeg] | None = None) -> list:
    """Add one feed per symbol of ``cfg`` to ``cerebro``, named by the symbol; return the
    feeds. A futures symbol (``futures``: its :class:`~bt_ibkr.live.futures_run.FuturesLeg`)
    trades the held contract; daily, its warm-up is the root's back-adjusted continuous series
    (:class:`~feeds.continuous_decision.ContinuousDecisionData`). Other symbols are their own
    dataname.

    Daily runs get a :class:`~feeds.daily_decision.DailyDecisionData` (kept turning by
    ``keep_alive``), stream runs an :class:`~feeds.ibdata.IBData` of 5-second bars, resampled
    to ``bar_size``, whose bars of one time reach the strategy together (``syncfeeds``).
    ``note`` reports a data note (a bar left out, mis-stamped).

    Raises:
        ConfigError: a daily run on a bar size other than ``1 day``.
    """
    daily = cfg.run_mode == "daily"
    feeds = []
    for sym in cfg.symbols:
        leg = (futures or {}).get(sym)
        dataname = leg.dataname if leg is not None else sym
        if daily:
            if cfg.bar_size != "1 day":
                raise ConfigError(f"bar_size {cfg.bar_size!r}: run_mode 'daily' trades daily "
                                  "bars; use bar_size '1 day' or run_mode 'stream'")
            extra = {"root": leg.spec.root} if leg is not None else {}
            feed_cls = ContinuousDecisionData if leg is not None else DailyDecisionData
            data = feed_cls(dataname=dataname, store=store, timeframe=bt.TimeFrame.Days,
                            backfill_days=options.backfill_days, keep_alive=keep_alive,
                            report=note, **extra)
            cerebro.adddata(data, name=sym)
        else:
            tf, comp = timeframe_of(cfg.bar_size)
            # syncfeeds: with several symbols every feed's bar of a time reaches the
            # strategy in one next() (feeds.live_sync); a late feed is audited by name
            data = IBData(dataname=dataname, store=store, timeframe=tf, compression=comp,
                          rtbar=True, backfill_start=True, backfill=True, qcheck=0.2,
                          syncfeeds=True, report=note)
            if (tf, comp) == (bt.TimeFrame.Seconds, 5):
                cerebro.adddata(data, name=sym)
            else:
                cerebro.resampledata(data, name=sym, timeframe=tf, compression=comp)
        feeds.append(data)
    return feeds


def feeds_live(feeds: list) -> bool:
    """Return True when every feed is live: a daily feed has its last completed bar, a stream
    feed has reported LIVE (backtrader's last data status)."""
    for d in feeds:
        if isinstance(d, DailyDecisionData):
            if d.last_bar_dt is None:
                return False
        elif d._laststatus != d.LIVE:  # backtrader keeps the status only here (no query)
            return False
    return True


def add_analyzers(cerebro: bt.Cerebro, cfg: LiveConfig, strategy_cls: type, store: IBStore,
                  options: RunOptions, account: str, run_id: str,
                  is_live: Callable[[], bool], say: Callable[[str], None]) -> None:
    """Add the strategy and the run's analyzers to ``cerebro``: the operator's status
    recorder (when there is an operator), the equity recorder (appended across runs, one
    point per live bar: ``is_live``) and the progress lines (warm-up, then decisions)."""
    cerebro.addstrategy(strategy_cls, **cfg.params)
    operator = options.operator
    if operator is not None:
        operator.status.update(
            account=account, run_id=run_id, strategy=strategy_cls.__name__,
            symbols=list(cfg.symbols), mode=cfg.mode, run_mode=cfg.run_mode,
            bar_seconds=float(BAR_SECONDS[normalize_bar_size(cfg.bar_size)]),
            connected=store.connected())
        cerebro.addanalyzer(operator.recorder(), _name="status")
    cerebro.addanalyzer(LiveEquityRecorder, _name="equity", path=str(cfg.paths.equity),
                        is_live=is_live)
    # what the run is doing: the warm-up's progress, then one line per decision
    cerebro.addanalyzer(LiveProgress, _name="progress", say=say,
                        need=warmup_bars(strategy_cls, cfg.params))


def record_session(cerebro: bt.Cerebro, cfg: LiveConfig, run_id: str, account: str,
                   simulated: bool, audit: AuditLog, journal: Journal,
                   say: Callable[[str], None]):
    """Record what the Strategy sees and does under <journal dir>/sessions/<run_id>/
    (bt_ibkr.records.sessions; ``python -m examples.parity --replay`` replays it), after the
    upkeep of this journal's records (bt_ibkr.records.retention: retention when configured;
    records of other journals in the folder are never touched, unclaimed ones are reported
    once). Return ``(writer, records)``: the session writer attached to ``cerebro`` and this
    journal's :class:`~bt_ibkr.records.ownership.JournalRecords`.

    Raises:
        RecordsError: the record cannot be started.
    """
    from bt_ibkr.records import sessions
    from bt_ibkr.records.ownership import JournalRecords, unclaimed_line
    from bt_ibkr.records.retention import maintain_sessions

    kept = cfg.sessions
    state = Path(cfg.paths.journal).parent
    root = sessions.sessions_root(state)
    records = JournalRecords.of(cfg.paths.journal, [r.run_id for r in journal.runs()])
    try:
        done = maintain_sessions(root, time.time(), kept.keep_days, kept.expired,
                                 kept.archive, records=records)
    except OSError as exc:  # upkeep never stops a run from trading
        audit.write("error", event="sessions_upkeep", error=str(exc))
        say(f"!! sessions upkeep failed ({exc}); records are kept as they are")
        done = None
    if done and (done.expired or done.repaired or done.busy):
        audit.write("run", event="sessions_upkeep", **done.to_dict())
        for line in done.lines():
            say(line)
    if done and done.unclaimed:  # once per journal: the names it reported before are known
        told = {name for ev in journal.events("sessions_unclaimed")
                for name in ev["detail"].get("sessions", [])}
        new = [name for name in done.unclaimed if name not in told]
        if new:
            journal.log_event("sessions_unclaimed", {"root": str(root), "sessions": new},
                              run_id=run_id)
            audit.write("run", event="sessions_unclaimed", root=str(root), sessions=new)
            say(unclaimed_line(root, records.journal, new))
    writer = sessions.attach(cerebro, sessions.session_dir(state, run_id), {
        "run_id": run_id, "account": account, "mode": cfg.mode, "run_mode": cfg.run_mode,
        "symbols": list(cfg.symbols), "bar_size": cfg.bar_size, "params": cfg.params,
        "simulate": simulated, "started": datetime.now(UTC).isoformat(),
        **records.meta()},
        part_bytes=max(1, int(kept.part_mb * 1024 * 1024)))
    return writer, records


__all__ = ["add_analyzers", "add_feeds", "bar_cache", "check_params", "feeds_live",
           "journaled_broker",
           "open_store", "record_session"]
