"""Run the Strategy against an IB paper (or, deliberately, live) account, restart after restart.

``run_live(config)`` / ``LiveRunner(config).run()`` does what ``python -m examples.live`` does:

1. validate the :class:`~bt_ibkr.live.config.LiveConfig` and refuse a live port in paper mode (or
   live mode without the explicit confirmation) BEFORE connecting (:func:`safety.check_launch`);
2. optionally start the gateway simulator in-process (``simulate=True``);
3. connect (:class:`~bt_ibkr.ib.store.IBStore`), refuse accounts that do not match the mode
   (:func:`safety.check_trading_mode`);
4. reconcile the SQLite journal with the gateway: open and completed orders, executions
   (``reqExecutions``), positions; adopt what it finds (working orders of ours are followed,
   their fills journaled), bump the client's order-id sequence past every id ever used;
5. run Cerebro with the strategy, :class:`~bt_ibkr.live.journaled_broker.JournaledIBBroker`
   (risk gate, journal-before-send, read-only) and the equity recorder (appended across runs).
   Warm-up and backfill go through the store's historical path and the shared bar cache, on
   the store's one connection:

   * ``run_mode="daily"``: backfill completed daily bars (:class:`~feeds.daily_decision.
     DailyDecisionData`), let the strategy decide on the last one, place the orders, wait until they are finished (or ``max_runtime``; unfinished ones
     stay working and journaled) and return;
   * ``run_mode="stream"``: backfill, then trade every live bar until :meth:`LiveRunner.stop`
     (SIGINT/SIGTERM in the CLI) or ``max_runtime``; on stop this run's working orders are
     cancelled when ``risk.cancel_on_exit`` is true, also when the run stops on an error
     (raised again after the cancels). A session record that cannot be written stops the run
     (:class:`~bt_ibkr.errors.RecordsError`, naming the file): a run it cannot record could
     not be replayed or audited, so it does not trade on. With several symbols the feeds hand
     the strategy each bar time together (:mod:`feeds.live_sync`): one ``next()`` per time, every
     feed at that time; a feed whose bar does not come within one more bar is reported
     (log, audit, status line) and the strategy goes on without it;

6. write the run summary (``--json``) and the quantstats tearsheet of the recorded equity
   (``--report``); every decision, order, fill, connection event and risk refusal is in the
   audit log ``<logs>/audit-YYYYMMDD.jsonl``.

Errors: :class:`~bt_ibkr.errors.ConfigError` (bad input, safety refusal: the message names the
input), :class:`~bt_ibkr.errors.RecordsError` (the session record cannot be written: the
message names the file) and :class:`~bt_ibkr.errors.ConnectionFailedError` (gateway
unreachable: the message says what to check).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import backtrader as bt

from analyzers.live_equity import LiveEquityRecorder
from analyzers.live_progress import LiveProgress
from bt_ibkr.backtest_run import check_outputs, warmup_bars
from bt_ibkr.calendars import DEFAULT_CALENDAR, risk_session
from bt_ibkr.errors import (
    AccountChangedError,
    AttentionError,
    ConfigError,
    ConnectionFailedError,
)
from bt_ibkr.ib.bars import BAR_SECONDS, normalize_bar_size, timeframe_of
from bt_ibkr.ib.store import IBStore
from bt_ibkr.live.audit import AuditLog, RedactingFilter, Redactor, audit_path
from bt_ibkr.live.client_ids import ClientIdError, refusal, unfollowable
from bt_ibkr.live.config import LiveConfig, PathsConfig
from bt_ibkr.live.journal import REJECTED, Journal, JournalError
from bt_ibkr.live.journaled_broker import CRASH_POINTS, JournaledIBBroker
from bt_ibkr.live.reconcile import ReconcileReport
from bt_ibkr.live.recovery import MAX_INTENT_AGE, recover
from bt_ibkr.live.risk import RiskGate
from bt_ibkr.live.run_lock import RunLock
from bt_ibkr.live.safety import check_launch, check_trading_mode
from bt_ibkr.live.sizing import strategy_capital, traded_days
from bt_ibkr.live.trading_day import open_day
from bt_ibkr.params import resolve_strategy
from bt_ibkr.records.tearsheet import SessionSelection
from bt_ibkr.utc import utc_now
from feeds.daily_decision import DailyDecisionData
from feeds.ibdata import IBData

log = logging.getLogger("bt_ibkr.live")

CRASH_ENV = "BT_IBKR_CRASH_AT"
"""Testing hook: ``after_journal`` / ``after_send`` make the runner SIGKILL itself there."""


# ------------------------------------------------------------------------------------- result
@dataclass
class LiveResult:
    """What a run did. ``to_summary()`` is the ``--json`` document."""

    account: str
    mode: str
    run_mode: str
    run_id: str
    orders: list[dict[str, Any]]
    positions: dict[str, float]
    equity: float
    cash: float
    reconcile: dict[str, Any]
    stopped_by: str
    read_only: bool
    journal: str
    audit: str
    equity_file: str
    report: str | None = None
    report_message: str = ""
    regime: str | None = None
    halted: bool = False
    needs_attention: list[str] = field(default_factory=list)
    started: str = ""
    ended: str = ""
    session_dir: str | None = None  # the session record (bt_ibkr.records.sessions)

    def to_summary(self) -> dict[str, Any]:
        """Return the JSON-able run summary (account, orders, positions, equity, ...)."""
        return json.loads(json.dumps(asdict(self), default=str))


# ------------------------------------------------------------------------------------- runner
class LiveRunner:
    """One paper/live run (see the module docstring).

    Args:
        config: the validated LiveConfig (:func:`bt_ibkr.live.config.load_config`).
        strategy: a Strategy class to use instead of ``config.strategy`` (by name).
        simulate: start a GatewaySim in-process (sample data, paper account DU1234567) and
            connect to it; ``sim_options`` are extra GatewaySim keyword arguments. Default
            journal/equity paths become ``state/simulate/...`` so simulated orders never mix
            with the real account's journal.
        max_runtime: seconds after which the run stops (None: daily runs stop when their
            orders are finished, stream runs when :meth:`stop` is called).
        json_path / report_path: where to write the run summary / the tearsheet (optional).
        progress: called with one status line at each step (the CLI prints them on stderr).
        crash_at: testing hook (default: ``$BT_IBKR_CRASH_AT``), see
            :mod:`bt_ibkr.live.journaled_broker`.
        reconnect_backoff_max: longest wait between reconnect attempts, seconds.
        cache: the parquet BarCache the warm-up and the stream backfill read and extend (the
            one backtests with ``--source ibkr`` share; the store passes it to the historical
            path, on its own connection); None: the default cache (``$BT_IBKR_CACHE_DIR`` or
            ``.cache/bt_ibkr/bars``), except with ``simulate`` where simulated prices get their
            own cache under ``state/simulate/cache``; False: no cache, IB history only.
        max_intent_age: an intent journaled but never sent is resent after a restart only if
            younger than this (daily mode: the restarted Strategy decides the same bar again
            and finds it). Stream mode expires every such intent at once: a restarted stream
            run decides on new bars under new orderRefs, so an old one would never be sent
            and would only count against the risk limits as pending.
        lift_halt: lift a daily-loss halt that an earlier run of the same trading day recorded
            in the journal (the operator's explicit decision; audited). Without it the halt
            holds across restarts until the trading day ends.
        operator: a :class:`~bt_ibkr.ops.operator.Operator` that turns the run's audit records
            and bars into the status page, metrics and alerts (None: none).
        report_select: which recorded sessions ``--report`` covers (one run, a date range,
            all runs of the journal: :class:`~bt_ibkr.records.tearsheet.SessionSelection`);
            always of this run's kind, simulated or real.
    """

    def __init__(self, config: LiveConfig, *, strategy: type | None = None,
                 simulate: bool = False, sim_options: dict | None = None,
                 max_runtime: float | None = None, json_path: Path | str | None = None,
                 report_path: Path | str | None = None,
                 progress: Callable[[str], None] | None = None,
                 crash_at: str | None = None, reconnect_backoff_max: float = 10.0,
                 max_intent_age: timedelta = MAX_INTENT_AGE,
                 backfill_days: int = 730, cache: Any = None, lift_halt: bool = False,
                 report_select: SessionSelection | None = None,
                 operator: Any = None) -> None:
        self.config = config
        self.strategy_cls = strategy
        self.simulate = simulate
        self.sim_options = dict(sim_options or {})
        if max_runtime is not None and not (math.isfinite(max_runtime) and max_runtime > 0):
            raise ConfigError(f"max_runtime {max_runtime!r}: must be a finite number of seconds "
                              "> 0 (or None: no limit)")
        self.max_runtime = max_runtime
        self.json_path = Path(json_path) if json_path else None
        self.report_path = Path(report_path) if report_path else None
        # every output of the run (status lines, logs, summary, audit) is masked by one redactor
        self.redactor = Redactor(config.secrets.values())
        sink = progress or (lambda msg: None)
        self.progress = lambda msg: sink(self.redactor.text(str(msg)))
        env_crash = os.environ.get(CRASH_ENV) or None
        self.crash_at = crash_at if crash_at is not None else env_crash
        if self.crash_at and self.crash_at not in CRASH_POINTS:
            raise ConfigError(f"{CRASH_ENV}={self.crash_at!r}: expected one of "
                              f"{', '.join(CRASH_POINTS)} (a testing hook; unset it)")
        self.backoff_max = float(reconnect_backoff_max)
        self.max_intent_age = max_intent_age
        self.backfill_days = int(backfill_days)
        self.cache = cache
        self.lift_halt = bool(lift_halt)
        self.report_select = report_select or SessionSelection()
        self.operator = operator
        self.sim = None
        self.store: IBStore | None = None
        self.broker: JournaledIBBroker | None = None
        self.cerebro: bt.Cerebro | None = None
        self.feeds: list = []
        self._stop = threading.Event()
        self._stopped_by = ""
        self._t0 = 0.0
        self.connected = threading.Event()

    # ------------------------------------------------------------------ control
    def stop(self, reason: str = "stop requested") -> None:
        """Ask the run to stop cleanly (thread- and signal-safe); returns at once."""
        if not self._stop.is_set():
            self._stopped_by = reason
            self._stop.set()
        cerebro = self.cerebro
        if cerebro is not None:  # checked before the strategy's next bar: no new decision
            cerebro.runstop()

    def _say(self, msg: str) -> None:
        log.info(msg)  # the log handlers mask secrets (RedactingFilter)
        self.progress(msg)

    def _left(self) -> float:
        """Return the seconds left until ``max_runtime`` (inf without one)."""
        if self.max_runtime is None:
            return float("inf")
        return self.max_runtime - (time.monotonic() - self._t0)

    def _timed_out(self) -> bool:
        return self.max_runtime is not None and time.monotonic() - self._t0 >= self.max_runtime

    # ------------------------------------------------------------------ run
    def run(self) -> LiveResult:
        """Run once; return the LiveResult (also writes the JSON summary / report if asked).

        Raises:
            ConfigError: bad config, strategy or params; a safety refusal (SafetyError).
            ConnectionFailedError: the gateway cannot be reached.
            DataError: the gateway has no data for a symbol.
            RecordsError: the session record cannot be written (the run stopped; this run's
                working orders were handled as on any stop, see ``cancel_on_exit``).
        """
        cfg = self.config
        self._t0 = time.monotonic()
        masking = RedactingFilter(self.redactor).install()
        try:
            strategy_cls = self.strategy_cls or resolve_strategy(cfg.strategy)
            self._check_params(strategy_cls)
            # before trading, not when the summary is due
            check_outputs((("--json", self.json_path), ("--report", self.report_path)))
            if self.simulate:
                self._start_sim()
            # 1. before connecting: mode vs port, live confirmation
            check_launch(cfg.mode, cfg.port, cfg.confirm_live)
            return self._run(strategy_cls)
        finally:
            if self.sim is not None:
                self.sim.stop()
                self.sim = None
            masking.remove()

    def _check_params(self, strategy_cls: type) -> None:
        names = set(strategy_cls.params._getkeys())
        unknown = sorted(set(self.config.params) - names)
        if unknown:
            raise ConfigError(f"strategy.params {unknown}: {strategy_cls.__name__} has no such "
                              f"param; valid: {', '.join(sorted(names))}")
        from bt_ibkr.params import check_param_values

        # typed as the CLI types them: a library caller's use_hmm="maybe" is refused too
        check_param_values(strategy_cls, self.config.params, "strategy.params")

    def _bar_cache(self):
        """Return the store's BarCache (None: no cache), see the ``cache`` arg."""
        if self.cache is False:
            return None
        if self.cache is not None:
            return self.cache
        from bt_ibkr.cache import BarCache

        if self.simulate:  # simulated prices must never be served as IB's to a backtest
            return BarCache(Path(self.config.paths.journal).parent / "cache")
        return BarCache()

    @staticmethod
    def _set_aside(path: Path) -> None:
        """Rename ``path`` (and SQLite's -wal/-shm companions) to ``*.prev``, replacing older ones."""
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(path) + suffix)
            if p.exists():
                p.replace(Path(str(p) + ".prev"))

    def _start_sim(self) -> None:
        from bt_ibkr.gateway_sim import GatewaySim

        opts: dict[str, Any] = {"data": "sample", "account": "DU1234567"}
        if self.config.run_mode == "stream":
            opts["speed"] = 1.0  # a running clock: live bars arrive in real time
        opts.update(self.sim_options)
        self.sim = GatewaySim(**opts).start()
        # never mix simulated orders into the real account's journal and equity curve
        defaults = PathsConfig()
        paths = self.config.paths
        if paths.journal == defaults.journal:
            paths.journal = Path("state/simulate/journal.sqlite")
            # the in-process simulator starts fresh every run, so the previous run's simulated
            # journal describes a gateway that no longer exists: keep it as *.prev, start anew
            self._set_aside(paths.journal)
        if paths.equity == defaults.equity:
            paths.equity = Path("state/simulate/equity.csv")
            self._set_aside(paths.equity)
        self.config.connection.host = self.sim.host
        self.config.connection.port = self.sim.port
        self._say(f"simulator: gateway_sim on {self.sim.host}:{self.sim.port} "
                  f"(account {self.sim.account}, simulated time {self.sim.now():%Y-%m-%d %H:%M} UTC)")

    def _connect(self) -> IBStore:
        cfg = self.config
        host, port = cfg.connection.host, cfg.port
        self._say(f"connecting to {host}:{port} as clientId {cfg.connection.client_id} "
                  f"({cfg.mode} mode)")
        IBStore.reset_default()
        connect_timeout = float(cfg.connection.timeout)
        if self.max_runtime is not None:  # every wait of the run ends by its deadline
            connect_timeout = max(0.5, min(connect_timeout, self._left()))
        store = IBStore(host=host, port=port, clientId=cfg.connection.client_id,
                        account=cfg.connection.account or "", readonly=cfg.connection.readonly,
                        connect_timeout=connect_timeout, reconnect=1, timeout=0.5,
                        backoff_max=self.backoff_max, timerefresh=0, cache=self._bar_cache())
        if self.max_runtime is not None:
            store.deadline = self._t0 + self.max_runtime
        try:
            store.start()
        except ConnectionFailedError as exc:
            store.close()
            why = getattr(exc, "reason", None)  # the connection's one line: why, and what to do
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
        # from now on a lost connection is retried (with backoff) until the run stops
        store.p.reconnect = 1_000_000
        self.connected.set()
        return store

    def _run(self, strategy_cls: type) -> LiveResult:
        cfg = self.config
        started = datetime.now(UTC)
        lock = RunLock(cfg.paths.journal)
        lock.acquire()  # one runner per journal; refused before connecting
        try:
            journal = Journal(cfg.paths.journal)
        except BaseException:
            lock.release()
            raise
        audit = AuditLog(audit_path(cfg.paths.logs), secrets=cfg.secrets.values())
        audit.listeners.append(self._decision_line)  # one status line per decision
        if self.operator is not None:  # status page, metrics, alerts (bt_ibkr.ops)
            audit.listeners.append(self.operator.on_audit)
            self.operator.attach_journal(journal)
            if self.operator.metrics is not None:
                journal.on_commit = self.operator.metrics.journal_write.observe
        store = None
        run_id = None
        try:
            audit.write("run", event="start", mode=cfg.mode, run_mode=cfg.run_mode,
                        read_only=cfg.read_only, config=cfg.redacted(),
                        simulate=self.simulate)
            store = self.store = self._connect()
            audit.write("connection", event="connected", host=cfg.connection.host,
                        port=cfg.port, accounts=store.managed_accounts,
                        simulator=store.connection.simulated)
            if store.connection.simulated:
                self._say(f"the gateway at {cfg.connection.host}:{cfg.port} is bt_ibkr's "
                          "simulator: simulated prices and fills (bars cached as ibkr-sim)")
            try:
                account = check_trading_mode(cfg.mode, cfg.port, store.managed_accounts,
                                             cfg.confirm_live, cfg.connection.account)
            except ConfigError as exc:
                audit.write("run", event="refused", reason=str(exc))
                raise
            try:
                journal.bind_account(account)
            except JournalError as exc:
                audit.write("run", event="refused", reason=str(exc))
                raise
            self._say(f"account {account} ({cfg.mode}); journal {cfg.paths.journal}")
            # every reconnect is checked against this account before anything is sent
            store.expect_account(account, cfg.mode)
            run_id = journal.start_run(f"{cfg.mode}/{cfg.run_mode}", account)
            report = self._reconcile(store, journal, audit, account)
            result = self._trade(strategy_cls, store, journal, audit, account, run_id, report)
            if store.identity_error:  # the gateway came back as another account: exit 3
                raise AccountChangedError(store.identity_error)
            result.started = started.isoformat()
            result.ended = datetime.now(UTC).isoformat()
            audit.write("run", event="end", stopped_by=result.stopped_by,
                        orders=len(result.orders), positions=result.positions,
                        equity=result.equity)
            self._write_outputs(result)
            return result
        except BaseException as exc:
            with contextlib.suppress(OSError):  # a full disk must not hide the run's own error
                audit.write("run", event="end", stopped_by="error",
                            error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            writer = getattr(self, "_session_writer", None)
            if run_id is not None and writer is not None and writer.bars_written:
                try:  # tamper evidence: replay checks the record against this digest
                    journal.log_event("record_digest", writer.digest(), run_id=run_id)
                except JournalError:
                    log.warning("the session record's digest could not be journaled")
            if run_id is not None:
                journal.end_run(run_id)
            if store is not None:
                store.close()
            self.store = None
            if self.operator is not None:
                self.operator.attach_journal(None)  # the journal closes now
            journal.close()
            audit.close()
            lock.release()

    # ------------------------------------------------------------------ reconcile
    def _reconcile(self, store: IBStore, journal: Journal, audit: AuditLog,
                   account: str) -> ReconcileReport:
        """Match the journal against the gateway; adopt our working orders; bump order ids
        (:func:`bt_ibkr.live.recovery.recover`); report what it did."""
        self._say("reconciling the journal with the gateway (orders, executions, positions)")
        # a stream run never decides an earlier run's bar again (module docstring of
        # __init__'s max_intent_age): its unsent intents expire instead of waiting for a resend
        age = self.max_intent_age if self.config.run_mode == "daily" else timedelta(0)
        rec = recover(store, journal, account, datetime.now(UTC), age)
        report = rec.report
        audit.write("reconcile", **report.to_dict())  # also when one of the checks below stops
        if report.conflicts:  # an order carrying our ref is not the one we decided: stop
            raise AttentionError(report.conflicts[0].removeprefix("!! "))
        try:
            self._check_client_ids(store, journal, rec.snapshots)
        except ClientIdError as exc:  # what was settled stays journaled; nothing was sent
            audit.write("run", event="refused", reason=str(exc))
            raise
        shared = {jid: sorted(set(syms) & set(self.config.symbols))
                  for jid, syms in report.other_journals.items()}
        shared = {jid: syms for jid, syms in shared.items() if syms}
        if shared:  # another bt_ibkr journal trades these symbols on this account: stop
            jid, syms = next(iter(shared.items()))
            who = "refs bt1:..." if jid == "bt1" else f"bt2:{jid}"
            raise AttentionError(
                f"another bt_ibkr journal ({who}) has orders on {', '.join(syms)} in account "
                f"{account} today; bt_ibkr trades one journal per account, so this run sends "
                "nothing. If that journal was lost, run with --journal at its old path (it "
                "recognises its orders); if another program trades these symbols, give this "
                "one its own account")
        for line in report.summary().splitlines():
            (log.warning if line.startswith("!!") else log.info)("reconcile: %s", line)
            self.progress(f"reconcile: {line}")
        if rec.highest_id:
            log.info("order ids: next id is above %d (highest used)", rec.highest_id)
        if rec.followed:
            self._say(f"following {len(rec.followed)} working order(s) of earlier runs: "
                      + ", ".join(rec.followed))
        return report

    def _check_client_ids(self, store: IBStore, journal: Journal, snapshots: list) -> None:
        """Refuse to trade (:class:`~bt_ibkr.live.client_ids.ClientIdError`, exit 2) when one
        of this journal's orders still works at the gateway and this process does not follow
        it: IB sends an order's status and fills only to the client that placed it
        (``reqAllOpenOrders`` shows it to others, read-only), so a run under another clientId
        would never see it fill and would refuse that side of the symbol for ever."""
        stuck = unfollowable(journal, snapshots, store.follows_order)
        if stuck:
            rec, client_id = stuck[0]
            raise ClientIdError(refusal(self.config.paths.journal, rec, client_id,
                                        store.clientId))

    # ------------------------------------------------------------------ trade
    def _trade(self, strategy_cls: type, store: IBStore, journal: Journal, audit: AuditLog,
               account: str, run_id: str, report: ReconcileReport) -> LiveResult:
        """Trade until the run stops; return its LiveResult. Every way out once the Strategy
        runs (the end of the data, max-runtime, a signal, an error raised in Cerebro, e.g. a
        session record that cannot be written, or while building the result) goes through
        :meth:`_on_exit` (``cancel_on_exit``) before the error, if any, is raised again."""
        cfg = self.config
        cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
        # the exchange session on the gateway's clock (US symbols share NYSE's sessions);
        # GatewayTimeoutError when the gateway does not tell its time
        day = risk_session(store.server_time(strict=True), DEFAULT_CALENDAR)
        account_value = store.get_acc_value()
        # risk.capital and the ramp: how much of the account the Strategy sizes from
        sizing = strategy_capital(cfg.risk, account_value, traded_days(journal, account), day)
        self._say(sizing.line(cfg.risk.ramp_sessions))
        broker = self.broker = JournaledIBBroker(store=store, capital=sizing.capital)
        self._exited = False
        self._session_writer = None
        # the daily-loss floor is on what the gate sees: the Strategy's value
        equity0 = sizing.capital if sizing.capital is not None else account_value
        gate = RiskGate(cfg.risk)
        open_day(gate, journal, audit, day=day, account=account, run_id=run_id,
                 equity=equity0, lift_halt=self.lift_halt, say=self._say)
        broker.configure(journal=journal, audit=audit, gate=gate,
                         strategy_name=strategy_cls.__name__, run_id=run_id, account=account,
                         read_only=cfg.read_only,
                         resend_refs={r.order_ref for r in report.resend},
                         crash_at=self.crash_at, trading_day=day)
        broker.halt_announced = gate.halted  # a halt restored from the journal is reported
        # the session of "now" on the gateway's clock: a halt is filed under the session in
        # which the loss happened, and a stream run that reaches the next session starts a
        # new day there (its start-of-day equity; that day's halt, if any)
        broker.session_now = lambda: risk_session(utc_now() + store.timeoffset(),
                                                  DEFAULT_CALENDAR)
        broker.on_new_day = lambda new_day, equity: open_day(
            gate, journal, audit, day=new_day, account=account, run_id=run_id, equity=equity,
            lift_halt=False, say=self._say)
        cerebro.setbroker(broker)
        daily = cfg.run_mode == "daily"
        self.feeds = []
        for sym in cfg.symbols:
            if daily:
                if cfg.bar_size != "1 day":
                    raise ConfigError(f"bar_size {cfg.bar_size!r}: run_mode 'daily' trades daily "
                                      "bars; use bar_size '1 day' or run_mode 'stream'")
                data = DailyDecisionData(dataname=sym, store=store, timeframe=bt.TimeFrame.Days,
                                         backfill_days=self.backfill_days,
                                         keep_alive=self._keep_alive,
                                         report=lambda note: self._note(audit, note))
                cerebro.adddata(data, name=sym)
            else:
                tf, comp = timeframe_of(cfg.bar_size)
                # syncfeeds: with several symbols every feed's bar of a time reaches the
                # strategy in one next() (feeds.live_sync); a late feed is audited by name
                data = IBData(dataname=sym, store=store, timeframe=tf, compression=comp,
                              rtbar=True, backfill_start=True, backfill=True, qcheck=0.2,
                              syncfeeds=True, report=lambda note: self._note(audit, note))
                if (tf, comp) == (bt.TimeFrame.Seconds, 5):
                    cerebro.adddata(data, name=sym)
                else:
                    cerebro.resampledata(data, name=sym, timeframe=tf, compression=comp)
            self.feeds.append(data)
        cerebro.addstrategy(strategy_cls, **cfg.params)
        if self.operator is not None:
            self.operator.status.update(
                account=account, run_id=run_id, strategy=strategy_cls.__name__,
                symbols=list(cfg.symbols), mode=cfg.mode, run_mode=cfg.run_mode,
                bar_seconds=float(BAR_SECONDS[normalize_bar_size(cfg.bar_size)]),
                connected=store.connected())
            cerebro.addanalyzer(self.operator.recorder(), _name="status")
        cerebro.addanalyzer(LiveEquityRecorder, _name="equity", path=str(cfg.paths.equity),
                            is_live=self._feeds_live)
        # what the run is doing: the warm-up's progress, then one line per decision
        cerebro.addanalyzer(LiveProgress, _name="progress", say=self._say,
                            need=warmup_bars(strategy_cls, cfg.params))
        self.session_dir = self._record_session(cerebro, run_id, account, strategy_cls, audit,
                                                journal)
        self.cerebro = cerebro
        held = store.get_positions()
        self._say(f"running {strategy_cls.__name__} on {', '.join(cfg.symbols)} "
                  f"({cfg.run_mode}, {cfg.bar_size}{', read-only' if cfg.read_only else ''}); "
                  f"equity {equity0:,.2f}, {sum(1 for v in held.values() if v[0])} position(s)")
        watchdog = threading.Thread(target=self._watch, name="bt_ibkr-live-watchdog",
                                    daemon=True)
        watchdog.start()
        try:
            try:
                strat = None if self._stop.is_set() else cerebro.run()[0]
            finally:
                self._stop.set()
                self.cerebro = None
            if not self._stopped_by:
                self._stopped_by = "finished" if daily else "data ended"
            self._on_exit(store, broker, daily)
            return self._result(strat, store, broker, journal, account, run_id, report)
        except BaseException as exc:
            self._stop_on_error(exc, store, broker, daily)
            raise

    def _stop_on_error(self, exc: BaseException, store: IBStore, broker: JournaledIBBroker,
                       daily: bool) -> None:
        """The run stops on ``exc``: close the session record as far as it goes, then honour
        ``cancel_on_exit`` (:meth:`_on_exit`, once). Never raises: the caller raises ``exc``."""
        if not self._stopped_by:
            self._stopped_by = "error"
        writer = self._session_writer
        if writer is not None:
            writer.abort()  # what could be written stays on disk; the folder's lock is freed
        if self._exited:
            return
        self._say(f"!! stopping on an error ({type(exc).__name__}); no new decision")
        try:
            self._on_exit(store, broker, daily)
        except Exception as err:  # noqa: BLE001 - the run's own error is the one raised
            log.exception("cancel_on_exit after %s failed", type(exc).__name__)
            self._say(f"!! could not handle this run's working orders ({type(err).__name__}: "
                      f"{err}); check TWS")

    # ------------------------------------------------------------------ session record (parity)
    def _record_session(self, cerebro, run_id: str, account: str, strategy_cls: type,
                        audit: AuditLog, journal: Journal) -> Path:
        """Record what the Strategy sees and does under <journal dir>/sessions/<run_id>/
        (bt_ibkr.records.sessions; ``python -m examples.parity --replay`` replays it), after
        the upkeep of this journal's records (bt_ibkr.records.retention: retention when
        configured; records of other journals in the folder are never touched, unclaimed
        ones are reported once). Raises RecordsError when the record cannot be started."""
        from bt_ibkr.records import sessions
        from bt_ibkr.records.ownership import JournalRecords, unclaimed_line
        from bt_ibkr.records.retention import maintain_sessions

        cfg = self.config
        kept = cfg.sessions
        state = Path(cfg.paths.journal).parent
        root = sessions.sessions_root(state)
        records = self._records = JournalRecords.of(cfg.paths.journal,
                                                    [r.run_id for r in journal.runs()])
        try:
            done = maintain_sessions(root, time.time(), kept.keep_days, kept.expired,
                                     kept.archive, records=records)
        except OSError as exc:  # upkeep never stops a run from trading
            audit.write("error", event="sessions_upkeep", error=str(exc))
            self._say(f"!! sessions upkeep failed ({exc}); records are kept as they are")
            done = None
        if done and (done.expired or done.repaired or done.busy):
            audit.write("run", event="sessions_upkeep", **done.to_dict())
            for line in done.lines():
                self._say(line)
        if done and done.unclaimed:  # once per journal: the names it reported before are known
            told = {name for ev in journal.events("sessions_unclaimed")
                    for name in ev["detail"].get("sessions", [])}
            new = [name for name in done.unclaimed if name not in told]
            if new:
                journal.log_event("sessions_unclaimed", {"root": str(root), "sessions": new},
                                  run_id=run_id)
                audit.write("run", event="sessions_unclaimed", root=str(root), sessions=new)
                self._say(unclaimed_line(root, records.journal, new))
        writer = self._session_writer = sessions.attach(cerebro, sessions.session_dir(state,
                                                                                      run_id), {
            "run_id": run_id, "account": account, "mode": cfg.mode, "run_mode": cfg.run_mode,
            "symbols": list(cfg.symbols), "bar_size": cfg.bar_size, "params": cfg.params,
            "simulate": self.simulate, "started": datetime.now(UTC).isoformat(),
            **records.meta()},
            part_bytes=max(1, int(kept.part_mb * 1024 * 1024)))
        return writer.dir

    def _decision_line(self, record: dict[str, Any]) -> None:
        """Say one short line per decision and per order outcome (an audit listener)."""
        kind = record.get("kind")
        if kind == "decision":
            self.progress(f"decision {record.get('bar', '')}: {record.get('side')} "
                          f"{float(record.get('quantity') or 0):g} {record.get('symbol')} "
                          f"(position {float(record.get('position') or 0):g}, equity "
                          f"{float(record.get('equity') or 0):,.2f})")
        elif kind == "order" and record.get("status") in ("sent", "refused", "withheld"):
            why = f": {record.get('reason')}" if record.get("reason") else ""
            self.progress(f"order {record.get('orderRef')}: {record.get('status')}{why}")
        elif kind == "fill":
            self.progress(f"fill {record.get('side')} {float(record.get('shares') or 0):g} "
                          f"{record.get('symbol')} @ {float(record.get('price') or 0):g}")

    def _note(self, audit: AuditLog, note: str) -> None:
        """Report a data note (a bar left out, mis-stamped): log, audit and status line."""
        log.warning("data: %s", note)
        audit.write("data", event="note", note=note)
        self.progress(f"data: {note}")

    def _feeds_live(self) -> bool:
        for d in self.feeds:
            if isinstance(d, DailyDecisionData):
                if d.last_bar_dt is None:
                    return False
            elif d._laststatus != d.LIVE:
                return False
        return True

    def _keep_alive(self) -> bool:
        """Daily mode: keep the loop turning while this run's orders are working."""
        if self._stop.is_set():
            return False
        if self._timed_out():
            self._stopped_by = "max-runtime"
            return False
        if not all(getattr(d, "decided", True) for d in self.feeds):
            return True
        broker = self.broker
        return bool(broker is not None and broker.working_refs())

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            store = self.store
            if store is not None and store.identity_error:
                # nothing was sent on the new connection; no new decision either
                self._say(f"!! {store.identity_error}")
                self.stop("account changed")
                return
            if self._timed_out():
                if not self._stopped_by:
                    self._stopped_by = "max-runtime"
                self._say(f"max-runtime {self.max_runtime:g}s reached: stopping")
                if self.config.run_mode == "stream":
                    cerebro = self.cerebro
                    if cerebro is not None:
                        cerebro.runstop()
                return

    def _on_exit(self, store: IBStore, broker: JournaledIBBroker, daily: bool) -> None:
        """The one place a stopping run handles its working orders (once per run): stream
        runs with ``risk.cancel_on_exit`` (not read-only) cancel them while the store is
        connected and wait for the gateway's confirmation; otherwise they stay working."""
        if self._exited:
            return
        self._exited = True
        working = broker.working_refs()
        if not working:
            return
        if daily or not self.config.risk.cancel_on_exit or self.config.read_only:
            self._say(f"leaving {len(working)} order(s) working at the gateway (journaled): "
                      + ", ".join(working))
            return
        self._say(f"cancel_on_exit: cancelling {len(working)} working order(s)")
        if store.connected():
            for ref in working:
                store.cancel_order(ref)
            # the cancels get 10 s, cut to 5 s past the run's max-runtime
            deadline = time.monotonic() + min(10.0, max(1.0, self._left() + 5.0))
            while broker.working_refs() and time.monotonic() < deadline:
                broker.process_events()
                time.sleep(0.05)
        left = broker.working_refs()
        if left:
            self._say(f"!! could not confirm the cancel of {', '.join(left)}; check TWS")

    def _result(self, strat, store: IBStore, broker: JournaledIBBroker, journal: Journal,
                account: str, run_id: str, report: ReconcileReport) -> LiveResult:
        cfg = self.config
        broker.process_events()
        orders: dict[str, dict[str, Any]] = {}
        for rec in journal.intents():
            if rec.run_id == run_id or rec.order_ref in broker.records:
                orders[rec.order_ref] = {
                    "orderRef": rec.order_ref, "symbol": rec.symbol, "side": rec.side,
                    "quantity": rec.quantity, "status": rec.status, "filled": rec.filled,
                    "avg_price": rec.avg_price, "order_id": rec.order_id,
                    "decision_time": str(rec.decision_time),
                }
        for ref, info in broker.records.items():
            if ref in orders and info.get("reason"):
                orders[ref]["reason"] = info["reason"]
            if ref not in orders:
                orders[ref] = {"orderRef": ref, "symbol": info.get("symbol"),
                               "side": info.get("side"), "quantity": info.get("quantity"),
                               "status": info.get("status")}
            elif info.get("duplicate_skipped"):
                orders[ref]["duplicate_skipped"] = True
        positions = store.holdings(account) if store.connected() else {}
        attention = [line for line in report.summary().splitlines() if line.startswith("!!")]
        for order in orders.values():
            if order.get("status") == REJECTED:
                attention.append(f"!! REJECTED order {order['orderRef']}: "
                                 f"{order.get('reason') or 'rejected by the gateway'}; check "
                                 "the order in TWS (permissions, margin, price) before the "
                                 "next run")
        for rec in journal.intents():
            if rec.filled > rec.quantity + 1e-9:
                attention.append(f"!! OVERFILL {rec.order_ref}: {rec.filled:g} filled of "
                                 f"{rec.quantity:g} {rec.symbol}; check the position in TWS")
        refused = [o for o in orders.values() if o.get("status") == "refused"]
        if orders and len(refused) == len(orders) and any(
                "still working at the gateway" in str(o.get("reason") or "") for o in refused):
            attention.append("!! every decision of this run was refused because an earlier "
                             "order still works at the gateway (see the orders above): check it "
                             "in TWS; the run traded nothing")
        if broker.halt_announced and broker.gate is not None:
            attention.append(f"!! {broker.gate.halt_reason}")
        return LiveResult(
            account=account, mode=cfg.mode, run_mode=cfg.run_mode, run_id=run_id,
            orders=list(orders.values()), positions=positions,
            equity=float(store.get_acc_value()), cash=float(store.get_acc_cash()),
            reconcile=report.to_dict(), stopped_by=self._stopped_by,
            read_only=cfg.read_only, journal=str(cfg.paths.journal),
            audit=str(audit_path(cfg.paths.logs)), equity_file=str(cfg.paths.equity),
            regime=getattr(strat, "regime", None), halted=bool(broker.halt_announced),
            needs_attention=attention,
            session_dir=str(getattr(self, "session_dir", None) or "") or None,
        )

    def _write_outputs(self, result: LiveResult) -> None:
        """Write the tearsheet (``--report``: this journal's session records only) and the
        JSON summary. Raises OSError naming the file that cannot be written."""
        if self.report_path is not None:
            # parity: the tearsheet is built from the recorded sessions of this journal
            from bt_ibkr.records.sessions import sessions_root
            from bt_ibkr.records.tearsheet import write_live_tearsheet

            try:
                out, rests_on = write_live_tearsheet(
                    sessions_root(Path(self.config.paths.journal).parent), self.report_path,
                    title=f"bt_ibkr {result.mode} run {result.account}",
                    records=getattr(self, "_records", None),
                    selection=replace(self.report_select, simulated=self.simulate))
                result.report = str(out)
                result.report_message = f"tearsheet: {out} ({rests_on})"
            except (ValueError, FileNotFoundError, ConfigError) as exc:  # ConfigError: none yet
                result.report_message = (f"no tearsheet yet: {exc} (the equity curve grows by "
                                         "one point per live bar across runs)")
            except OSError as exc:
                raise _named(exc, self.report_path) from exc
            self._say(result.report_message)
        if self.json_path is not None:
            try:
                self.json_path.parent.mkdir(parents=True, exist_ok=True)
                self.json_path.write_text(json.dumps(self.redactor(result.to_summary()),
                                                     indent=2), encoding="utf-8")
            except OSError as exc:
                raise _named(exc, self.json_path) from exc
            self._say(f"summary: {self.json_path}")


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` when it names its file, else the same OS error naming ``path`` (a write to an
    open file fails without one)."""
    if exc.filename:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def run_live(config: LiveConfig, **kwargs: Any) -> LiveResult:
    """Run one paper/live session; ``kwargs`` go to :class:`LiveRunner`. See its ``run()``."""
    return LiveRunner(config, **kwargs).run()


__all__ = ["CRASH_ENV", "LiveResult", "LiveRunner", "run_live"]
