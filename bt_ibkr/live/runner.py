"""Run the Strategy against an IB paper (or, deliberately, live) account, restart after restart.

``run_live(config)`` / ``LiveRunner(config).run()`` does what ``python -m examples.live`` does:

1. validate the :class:`~bt_ibkr.live.config.LiveConfig` and refuse a live port in paper mode (or
   live mode without the explicit confirmation) BEFORE connecting (:func:`safety.check_launch`);
2. optionally start the gateway simulator in-process (``simulate``,
   :mod:`bt_ibkr.live.simulator`); the config the run uses (:attr:`LiveRunner.run_config`)
   is resolved here, before connecting: its paths are the configured account's
   (:mod:`bt_ibkr.live.account_paths`; a journal at the old default ``state/journal.sqlite``
   is moved to the account's when it is provably that account's, else the run is refused);
3. connect (:class:`~bt_ibkr.ib.store.IBStore`), refuse accounts that do not match the mode
   (:func:`safety.check_trading_mode`); with no account configured, the one the gateway names
   resolves the paths now (then :attr:`LiveRunner.run_config` never changes again);
4. reconcile the SQLite journal with the gateway (:mod:`bt_ibkr.live.run_reconcile`): open
   and completed orders, executions (``reqExecutions``), positions; adopt what it finds
   (working orders of ours are followed, their fills journaled), bump the client's order-id
   sequence past every id ever used;
5. run Cerebro with the strategy, :class:`~bt_ibkr.live.journaled_broker.JournaledIBBroker`
   (risk gate, journal-before-send, read-only) and the equity recorder (appended across runs).
   Warm-up and backfill go through the store's historical path and the shared bar cache, on
   the store's one connection:

   * ``run_mode="daily"``: backfill completed daily bars (:class:`~feeds.daily_decision.
     DailyDecisionData`), let the strategy decide on the last one, place the orders, wait
     until they are finished (or ``max_runtime``; unfinished ones stay working and
     journaled) and return;
   * ``run_mode="stream"``: backfill, then trade every live bar until :meth:`LiveRunner.stop`
     (SIGINT/SIGTERM in the CLI) or ``max_runtime``; on stop this run's working orders are
     cancelled when ``risk.cancel_on_exit`` is true, also when the run stops on an error
     (raised again after the cancels). A session record that cannot be written stops the run
     (:class:`~bt_ibkr.errors.RecordsError`, naming the file): a run it cannot record could
     not be replayed or audited, so it does not trade on. With several symbols the feeds hand
     the strategy each bar time together (:mod:`feeds.live_sync`): one ``next()`` per time, every
     feed at that time; a feed whose bar does not come within one more bar is reported
     (log, audit, status line) and the strategy goes on without it;

6. write the :class:`~bt_ibkr.live.result.LiveResult` as the run summary (``--json``) and
   the tearsheet of the recorded sessions (``--report``); every decision, order, fill,
   connection event and risk refusal is in the audit log ``<logs>/audit-YYYYMMDD.jsonl``.

The options outside the LiveConfig are one frozen :class:`~bt_ibkr.live.options.RunOptions`;
store, broker, feeds, analyzers and session record are built by :mod:`bt_ibkr.live.wiring`.

Errors: :class:`~bt_ibkr.errors.ConfigError` (bad input, safety refusal: the message names the
input), :class:`~bt_ibkr.errors.RecordsError` (the session record cannot be written: the
message names the file) and :class:`~bt_ibkr.errors.ConnectionFailedError` (gateway
unreachable: the message says what to check).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import backtrader as bt

from bt_ibkr.backtest_run import check_outputs
from bt_ibkr.calendars import DEFAULT_CALENDAR, risk_session
from bt_ibkr.errors import AccountChangedError, BtIbkrError, ConfigError
from bt_ibkr.ib.store import IBStore
from bt_ibkr.live import account_paths, wiring
from bt_ibkr.live.audit import AuditLog, audit_path
from bt_ibkr.live.config import LiveConfig
from bt_ibkr.live.exit_orders import settle_working_orders
from bt_ibkr.live.futures_closeout import CloseOutWatch, traded_futures
from bt_ibkr.live.futures_run import futures_legs, roll_at_start
from bt_ibkr.live.journal import Journal, JournalError
from bt_ibkr.live.journaled_broker import JournaledIBBroker
from bt_ibkr.live.options import CRASH_ENV, RunOptions
from bt_ibkr.live.reconcile import ReconcileReport
from bt_ibkr.live.result import LiveResult, assemble_result, write_outputs
from bt_ibkr.live.run_lock import RunLock
from bt_ibkr.live.run_reconcile import reconcile_run
from bt_ibkr.live.safety import check_launch, check_trading_mode
from bt_ibkr.live.simulator import start_simulator
from bt_ibkr.live.status_lines import audit_line
from bt_ibkr.masking import RedactingFilter, Redactor
from bt_ibkr.params import resolve_strategy

if TYPE_CHECKING:
    from bt_ibkr.gateway_sim import GatewaySim
    from bt_ibkr.records.sessions import SessionWriter

log = logging.getLogger("bt_ibkr.live")


class LiveRunner:
    """One paper/live run (see the module docstring).

    Args:
        config: the validated LiveConfig (:func:`bt_ibkr.live.config.load_config`); never
            changed: the run uses :attr:`run_config`, resolved from it before connecting.
        options: the run's :class:`~bt_ibkr.live.options.RunOptions` (None: the defaults).
        **fields: shorthand for RunOptions fields (``LiveRunner(cfg, max_runtime=60)``),
            replacing those of ``options``.

    Raises:
        ConfigError: a bad option (see RunOptions) or ``$BT_IBKR_CRASH_AT``.
    """

    def __init__(self, config: LiveConfig, options: RunOptions | None = None,
                 **fields: Any) -> None:
        options = options if options is not None else RunOptions()
        self.options = replace(options, **fields) if fields else options
        self.config = config
        #: the config this run uses: ``config`` with the simulator's address and paths when
        #: simulating and the traded account's paths (account_paths); set in :meth:`run`
        #: before connecting, and once more when the gateway names the account, never after
        self.run_config: LiveConfig = config
        # every output of the run (status lines, logs, summary, audit) is masked by one redactor
        self.redactor = Redactor(config.secrets.values())
        sink = self.options.progress or (lambda msg: None)
        self.progress = lambda msg: sink(self.redactor.text(str(msg)))
        self.crash_at = self.options.crash_point()
        self.sim: GatewaySim | None = None
        self.store: IBStore | None = None
        self.broker: JournaledIBBroker | None = None
        self.cerebro: bt.Cerebro | None = None
        self.feeds: list = []
        self.session_dir = None
        self._records = None  # this journal's session records (JournalRecords)
        self._session_writer: SessionWriter | None = None
        self._exited = False
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
        if self.options.max_runtime is None:
            return float("inf")
        return self.options.max_runtime - (time.monotonic() - self._t0)

    def _timed_out(self) -> bool:
        runtime = self.options.max_runtime
        return runtime is not None and time.monotonic() - self._t0 >= runtime

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
        opts = self.options
        self._t0 = time.monotonic()
        masking = RedactingFilter(self.redactor).install()
        try:
            strategy_cls = opts.strategy or resolve_strategy(self.config.strategy)
            wiring.check_params(strategy_cls, self.config.params)
            # before trading, not when the summary is due (one naming {account}: once known)
            self.options, known = account_paths.outputs(opts, self.config.connection.account)
            check_outputs(known)
            cfg = self.config
            if opts.simulate:
                sim, cfg = start_simulator(cfg, opts.sim_options)
                self.sim = sim
                self._say(f"simulator: gateway_sim on {sim.host}:{sim.port} (account "
                          f"{sim.account}, simulated time {sim.now():%Y-%m-%d %H:%M} UTC)")
            # 1. before connecting: mode vs port, live confirmation
            check_launch(cfg.mode, cfg.port, cfg.confirm_live)
            if cfg.connection.account:  # its own journal and records (account_paths)
                cfg = account_paths.resolve(cfg, cfg.connection.account, self._say)
            self.run_config = cfg  # resolved: from here on the run only reads it
            return self._run(strategy_cls)
        finally:
            if self.sim is not None:
                self.sim.stop()
                self.sim = None
            masking.remove()

    def _connect(self) -> IBStore:
        cfg = self.run_config
        self._say(f"connecting to {cfg.connection.host}:{cfg.port} as clientId "
                  f"{cfg.connection.client_id} ({cfg.mode} mode)")
        connect_timeout, deadline = float(cfg.connection.timeout), None
        if self.options.max_runtime is not None:  # every wait of the run ends by its deadline
            connect_timeout = max(0.5, min(connect_timeout, self._left()))
            deadline = self._t0 + self.options.max_runtime
        store = wiring.open_store(cfg, self.options, connect_timeout, deadline)
        self.connected.set()
        return store

    def _run(self, strategy_cls: type) -> LiveResult:
        cfg = self.run_config
        started = datetime.now(UTC)
        # one runner per journal, refused before connecting; a journal named by the account
        # the gateway will name (account_paths) is opened once it has
        lock, journal = (None, None) if account_paths.awaits_account(cfg, "journal") else \
            self._open_journal(cfg)
        audit = AuditLog(audit_path(cfg.paths.logs), secrets=cfg.secrets.values())
        audit.listeners.append(self._decision_line)  # one status line per decision
        operator = self.options.operator
        if operator is not None:  # status page, metrics, alerts (bt_ibkr.ops)
            audit.listeners.append(operator.on_audit)
        store = None
        run_id = None
        try:
            audit.write("run", event="start", mode=cfg.mode, run_mode=cfg.run_mode,
                        read_only=cfg.read_only, config=cfg.redacted(),
                        simulate=self.options.simulate)
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
                if account_paths.awaits_account(cfg):  # the account the gateway named
                    cfg = self.run_config = account_paths.resolve(cfg, account, self._say)
                if journal is None:  # its journal, now that its path is known
                    lock, journal = self._open_journal(cfg)
                self.options, known = account_paths.outputs(self.options, account)
                check_outputs(known)
                journal.bind_account(account)
            except (BtIbkrError, OSError) as exc:
                audit.write("run", event="refused", reason=str(exc))
                raise
            audit.write("run", event="account", account=account, journal=str(cfg.paths.journal),
                        equity=str(cfg.paths.equity))
            self._say(f"account {account} ({cfg.mode}); journal {cfg.paths.journal}")
            # every reconnect is checked against this account before anything is sent
            store.expect_account(account, cfg.mode)
            run_id = journal.start_run(f"{cfg.mode}/{cfg.run_mode}", account)
            report = reconcile_run(cfg, store, journal, audit, account,
                                   self.options.max_intent_age, self._say, self.progress)
            result = self._trade(strategy_cls, store, journal, audit, account, run_id, report)
            if store.identity_error:  # the gateway came back as another account: exit 3
                raise AccountChangedError(store.identity_error)
            result.started = started.isoformat()
            result.ended = datetime.now(UTC).isoformat()
            audit.write("run", event="end", stopped_by=result.stopped_by,
                        orders=len(result.orders), positions=result.positions,
                        equity=result.equity)
            write_outputs(result, cfg, self.options, self._records, self.redactor, self._say)
            return result
        except BaseException as exc:
            with contextlib.suppress(OSError):  # a full disk must not hide the run's own error
                audit.write("run", event="end", stopped_by="error",
                            error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            writer = self._session_writer
            if run_id is not None and journal is not None and writer is not None \
                    and writer.bars_written:
                try:  # tamper evidence: replay checks the record against this digest
                    journal.log_event("record_digest", writer.digest(), run_id=run_id)
                except JournalError:
                    log.warning("the session record's digest could not be journaled")
            if run_id is not None and journal is not None:
                journal.end_run(run_id)
            if store is not None:
                store.close()
            self.store = None
            if operator is not None:
                operator.attach_journal(None)  # the journal closes now
            if journal is not None:
                journal.close()
            audit.close()
            if lock is not None:
                lock.release()

    def _open_journal(self, cfg: LiveConfig) -> tuple[RunLock, Journal]:
        """Lock and open the journal of ``cfg`` (attached to the operator, if any); return
        both. Raises JournalLockedError (another runner holds it), JournalError."""
        lock = RunLock(cfg.paths.journal)
        lock.acquire()
        try:
            journal = Journal(cfg.paths.journal)
        except BaseException:
            lock.release()
            raise
        operator = self.options.operator
        if operator is not None:
            operator.attach_journal(journal)
            if operator.metrics is not None:
                journal.on_commit = operator.metrics.journal_write.observe
        return lock, journal

    # ------------------------------------------------------------------ trade
    def _trade(self, strategy_cls: type, store: IBStore, journal: Journal, audit: AuditLog,
               account: str, run_id: str, report: ReconcileReport) -> LiveResult:
        """Trade until the run stops; return its LiveResult. Every way out once the Strategy
        runs (the end of the data, max-runtime, a signal, an error raised in Cerebro, e.g. a
        session record that cannot be written, or while building the result) goes through
        :meth:`_on_exit` (``cancel_on_exit``) before the error, if any, is raised again."""
        cfg, opts = self.run_config, self.options
        cerebro = bt.Cerebro(stdstats=False, quicknotify=True)
        # the exchange session on the gateway's clock (US symbols share NYSE's sessions);
        # GatewayTimeoutError when the gateway does not tell its time
        day = risk_session(store.server_time(strict=True), DEFAULT_CALENDAR)
        broker, equity0 = wiring.journaled_broker(
            cfg, store, journal, audit, account, run_id, day, report, strategy_cls.__name__,
            self.crash_at, opts.lift_halt, self._say)
        self.broker = broker
        cerebro.setbroker(broker)
        daily = cfg.run_mode == "daily"
        # futures: the held contracts; rolls of held positions before the first decision
        legs = futures_legs(cfg.futures, cfg.symbols, day)
        for leg in legs:
            self._say(leg.line())
        legs = roll_at_start(store, journal, audit, account, legs, day, run_id, self._say,
                             cfg.read_only, bool(broker.gate and broker.gate.halted))
        # the close-out windows of physically settled contracts: warned at start, and an order
        # opening into one stops the run (any future the registry knows, --futures or not)
        watch = CloseOutWatch(audit, self.progress, lambda: _session_day(broker, day))
        watch.warn_at_start(traded_futures(cfg.symbols, legs))
        broker.close_out = watch.check
        self.feeds = wiring.add_feeds(cerebro, cfg, store, opts, self._keep_alive,
                                      lambda note: self._note(audit, note),
                                      {leg.symbol: leg for leg in legs})
        wiring.add_analyzers(cerebro, cfg, strategy_cls, store, opts, account, run_id,
                             lambda: wiring.feeds_live(self.feeds), self._say)
        writer, self._records = wiring.record_session(
            cerebro, cfg, run_id, account, opts.simulate, audit, journal, self._say)
        self._session_writer = writer
        self.session_dir = writer.dir
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
            return assemble_result(cfg, strat, store, broker, journal, account, run_id, report,
                                   self._stopped_by, self.session_dir)
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

    def _decision_line(self, record: dict[str, Any]) -> None:
        """Say one short line per decision and per order outcome (an audit listener)."""
        line = audit_line(record)
        if line is not None:
            self.progress(line)

    def _note(self, audit: AuditLog, note: str) -> None:
        """Report a data note (a bar left out, mis-stamped): log, audit and status line."""
        log.warning("data: %s", note)
        audit.write("data", event="note", note=note)
        self.progress(f"data: {note}")

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
                self._say(f"max-runtime {self.options.max_runtime:g}s reached: stopping")
                if self.run_config.run_mode == "stream":
                    cerebro = self.cerebro
                    if cerebro is not None:
                        cerebro.runstop()
                return

    def _on_exit(self, store: IBStore, broker: JournaledIBBroker, daily: bool) -> None:
        """The one place a stopping run handles its working orders, once per run
        (:func:`~bt_ibkr.live.exit_orders.settle_working_orders`: ``cancel_on_exit``)."""
        if self._exited:
            return
        self._exited = True
        settle_working_orders(self.run_config, store, broker, daily, self._left(), self._say)


def _session_day(broker: JournaledIBBroker, day):
    """Return the exchange session of now on the gateway's clock (``day`` when unknown)."""
    try:
        return broker.session_now() if broker.session_now is not None else day
    except Exception:  # noqa: BLE001 - outside the calendar's years: the run's day
        return day


def run_live(config: LiveConfig, options: RunOptions | None = None, **fields: Any) -> LiveResult:
    """Run one paper/live session with ``options`` (``fields``: shorthand for RunOptions
    fields); see :meth:`LiveRunner.run`."""
    return LiveRunner(config, options, **fields).run()


__all__ = ["CRASH_ENV", "LiveResult", "LiveRunner", "RunOptions", "run_live"]
