"""Trade RegimeAwareEnsemble on an Interactive Brokers paper account (or, deliberately, live).

    python -m examples.live --paper --simulate                 # no TWS needed: built-in simulator
    python -m examples.live --paper --config live.json         # IB Gateway paper on port 4002
    python -m examples.live --paper --mode stream --max-runtime 3600 --json run.json
    python -m examples.live --live --i-understand-this-is-real-money --config live-real.json

A thin CLI over bt_ibkr.live.runner.LiveRunner. Status lines go to stderr, logs to logs/live.log, the
audit trail to logs/audit-YYYYMMDD.jsonl. Exit codes: 0 ok, 2 bad input or safety refusal (the
message names the input; also a journal, session record or other file that cannot be written:
the run stops, honouring cancel_on_exit, and the message names the file), 3 gateway unreachable
or not answering (the message says what to check), 4 needs attention (lost, recovered or
rejected order, position mismatch, daily-loss halt, an internal error: see the output).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path

from bt_ibkr.cli_args import (
    OneLineParser,
    bounded_int,
    client_id,
    finite_number,
    iso_date,
    positive_float,
    tcp_port,
)
from bt_ibkr.errors import (
    AccountChangedError,
    AttentionError,
    BtIbkrError,
    ConfigError,
    ConnectionFailedError,
    RecordsError,
)
from bt_ibkr.logs import setup_logging
from bt_ibkr.redaction import masked_main

EXIT_OK, EXIT_INPUT, EXIT_GATEWAY, EXIT_ATTENTION = 0, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m examples.live``."""
    p = OneLineParser(prog="python -m examples.live", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--paper", action="store_true",
                      help="trade the paper account (the default unless the config file or "
                           "BT_IBKR_MODE says live, which then still needs --live and its "
                           "confirmation flag): refuses live ports and non-paper (non-DU) "
                           "accounts")
    mode.add_argument("--live", action="store_true",
                      help="trade a LIVE account; needs --i-understand-this-is-real-money")
    p.add_argument("--i-understand-this-is-real-money", "--confirm-live", dest="confirm_live",
                   action="store_true", help="the explicit confirmation --live requires")
    p.add_argument("--config", type=Path, help="JSON config file (see examples/live.example.json)")
    p.add_argument("--host", help="TWS / IB Gateway host (default 127.0.0.1)")
    p.add_argument("--port", type=tcp_port,
                   help="API port (default: 4002 paper, 4001 live; TWS uses 7497 / 7496)")
    p.add_argument("--client-id", type=client_id, help="API client id (default 1)")
    p.add_argument("--account", help="account to trade when the login manages several")
    p.add_argument("--symbols", help="comma-separated symbols (default SPY)")
    p.add_argument("--futures", metavar="SYMBOL[:ROOT],...",
                   help="trade these symbols as futures of a roll-registry root (ES, NQ, CL, "
                        "GC, ZN): the contract held on the session's date, rolled at start "
                        "(docs/SETUP.md, Futures); e.g. --symbols ES --futures ES")
    p.add_argument("--mode", choices=("daily", "stream"), dest="run_mode",
                   help="daily: decide on the last closed bar, place, wait, exit (default); "
                        "stream: trade every bar until stopped")
    p.add_argument("--bar-size", help="IB bar size (default '1 day'; stream mode e.g. '5 secs')")
    p.add_argument("--journal", type=Path, help="SQLite order journal (default "
                   "state/{account}/journal.sqlite: one per account; {account} is the traded "
                   "account)")
    p.add_argument("--equity", type=Path, help="equity CSV (default state/{account}/equity.csv)")
    p.add_argument("--report", type=Path, help="write the quantstats tearsheet of the recorded "
                                               "equity here (HTML; {account}: the traded "
                                               "account)")
    p.add_argument("--report-run", metavar="RUN_ID",
                   help="--report covers this run only ('last': the newest run; default: all "
                   "runs of the journal, of this run's kind: simulated or real)")
    p.add_argument("--report-from", type=iso_date, metavar="YYYY-MM-DD",
                   help="--report covers the runs started from this date")
    p.add_argument("--report-to", type=iso_date, metavar="YYYY-MM-DD",
                   help="--report covers the runs started up to this date")
    p.add_argument("--json", type=Path, help="write the run summary as JSON here ({account}: "
                                             "the traded account)")
    p.add_argument("--max-runtime", type=positive_float, metavar="S",
                   help="stop after S seconds (daily: leave unfinished orders working)")
    p.add_argument("--simulate", action="store_true",
                   help="start the gateway simulator in-process and trade it (no TWS needed)")
    p.add_argument("--read-only", action="store_true",
                   help="decide and record the orders, send nothing")
    p.add_argument("--session-part-mb", metavar="MB",
                   type=finite_number(0, low_open=True, high=4096, high_open=False),
                   help="rotate the session record's bar file into gzip'd parts past MB "
                        "(sessions.part_mb, default 16)")
    p.add_argument("--keep-sessions-days", type=positive_float, metavar="N",
                   help="delete (or with --archive-expired-sessions, archive) session "
                        "records not written for over N days (sessions.keep_days; default: "
                        "keep all)")
    p.add_argument("--archive-expired-sessions", action="store_true",
                   help="archive expired session records to sessions-archive/ instead of "
                        "deleting them (sessions.expired archive)")
    p.add_argument("--lift-halt", action="store_true",
                   help="lift today's daily-loss halt that an earlier run recorded in the "
                        "journal (it otherwise holds until the trading day ends)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy param (repeatable), e.g. --param band=0.05")
    p.add_argument("--capital", type=positive_float, metavar="AMOUNT",
                   help="the equity the strategy sizes from, at most the account's (risk.capital;"
                   " default: the whole account)")
    p.add_argument("--ramp-sessions", type=bounded_int(0, 10_000), metavar="N",
                   help="scale exposure up over N sessions from risk.ramp_start (25%%) of "
                   "capital to all of it (risk.ramp_sessions)")
    ops = p.add_argument_group("running unattended (docs/DEPLOY.md)")
    ops.add_argument("--service", action="store_true",
                     help="run until stopped: one daily decision per exchange session at "
                     "--decide-at, sleeping in between (systemd Type=notify with a watchdog)")
    ops.add_argument("--decide-at", metavar="WHEN",
                     help="--service: when each session is decided: close+5m (default), "
                     "open-15m, close-10m ... (ops.decide_at)")
    ops.add_argument("--calendar", metavar="CODE",
                     help="--service: the exchange calendar (default XNYS; ops.calendar)")
    ops.add_argument("--http-port", type=tcp_port, metavar="PORT",
                     help="serve the status page, /healthz and /metrics on PORT (ops.http_port)")
    ops.add_argument("--http-host", metavar="HOST",
                     help="--http-port's address (default 127.0.0.1; any other needs "
                     "BT_IBKR_HTTP_TOKEN)")
    ops.add_argument("--restart-window", metavar="'HH:MM-HH:MM ZONE'",
                     help="the gateway's daily restart window, e.g. '23:40-00:10 "
                     "America/New_York': a disconnect inside it is expected (no alert)")
    return p


def _overrides(args: argparse.Namespace) -> dict:
    symbols = None
    if args.symbols is not None:
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            raise ConfigError("--symbols is empty: give e.g. --symbols SPY,QQQ")
    futures = None
    if args.futures is not None:
        from bt_ibkr.futures.cli import futures_roots

        futures = futures_roots(args.futures)
    out = {
        "mode": "live" if args.live else ("paper" if args.paper else None),
        "run_mode": args.run_mode,
        "symbols": symbols,
        "futures": futures,
        "bar_size": args.bar_size,
        "connection.host": args.host,
        "connection.port": args.port,
        "connection.client_id": args.client_id,
        "connection.account": args.account,
        "paths.journal": str(args.journal) if args.journal else None,
        "paths.equity": str(args.equity) if args.equity else None,
        "read_only": True if args.read_only else None,
        "sessions.part_mb": args.session_part_mb,
        "sessions.keep_days": args.keep_sessions_days,
        "sessions.expired": "archive" if args.archive_expired_sessions else None,
        "confirm_live": True if args.confirm_live else None,
        "risk.capital": args.capital,
        "risk.ramp_sessions": args.ramp_sessions,
        "ops.decide_at": args.decide_at,
        "ops.calendar": args.calendar,
        "ops.http_port": args.http_port,
        "ops.http_host": args.http_host,
        "ops.restart_window": args.restart_window,
    }
    return out


def _exit_code(exc: BaseException, say, error, logger, log_path) -> int:
    """Print the one line for a run that ended on ``exc``; return its exit code."""
    if isinstance(exc, ConnectionFailedError):
        logger.info("run failed: %s", exc)
        error(exc)
        return EXIT_GATEWAY
    if isinstance(exc, AttentionError):
        logger.warning("run stopped: %s", exc)
        say(f"!! {exc}")
        return EXIT_ATTENTION
    if isinstance(exc, RecordsError):  # the run stopped (cancel_on_exit honoured): the file
        logger.info("run stopped: %s", exc)  # info: stderr shows the error line once
        error(exc)
        return EXIT_INPUT
    if isinstance(exc, BtIbkrError):
        logger.info("run refused: %s", exc)
        error(exc)
        return EXIT_INPUT
    if isinstance(exc, TimeoutError):
        logger.warning("gateway timeout: %s", exc)
        error(f"the gateway stopped answering ({exc or 'no reply in time'}); check that it is "
              "running and logged in, then run again (the journal is safe)")
        return EXIT_GATEWAY
    if isinstance(exc, OSError):
        # every file of a run names itself in its errors (records, audit, equity, summary);
        # one that does not is found from the traceback in the log
        logger.info("file error: %s", exc, exc_info=not exc.filename)  # stderr: one line
        where = exc.filename or f"a file (the traceback in {log_path} names it)"
        error(f"cannot use {where}: {exc.strerror or exc}; check the disk (space, read-only "
              "mount) and the permissions, then run again (the journal is safe)")
        return EXIT_INPUT
    logger.error("internal error", exc_info=exc)
    error(f"internal error {type(exc).__name__}: {exc} (details in {log_path}); the journal "
          "is safe: check TWS and the output above before running again")
    return EXIT_ATTENTION


def _report(result, say, log_path) -> int:
    """Print a finished run's orders and account line; return 0 or 4 (needs attention)."""
    for order in result.orders:
        say(f"order {order['orderRef']}: {order['side']} {order['quantity']:g} "
            f"{order['symbol']} -> {order['status']}")
    pos = ", ".join(f"{s} {q:g}" for s, q in sorted(result.positions.items())) or "flat"
    say(f"account {result.account}: equity {result.equity:,.2f}, positions: {pos}; "
        f"stopped: {result.stopped_by}")
    say(f"log: {log_path}; audit: {result.audit}")
    if result.needs_attention:
        for line in result.needs_attention:
            say(line)
        return EXIT_ATTENTION
    return EXIT_OK


def _operator(config, args, say):
    """Return the run's Operator (alerts from BT_IBKR_ALERT_URLS; the status port when
    --http-port / ops.http_port is set)."""
    from bt_ibkr.ib.restart_window import RestartWindow
    from bt_ibkr.ops.alerts import Alerter
    from bt_ibkr.ops.http import HTTP_TOKEN_ENV
    from bt_ibkr.ops.operator import Operator

    ops = config.ops
    window = RestartWindow.parse(ops.restart_window) if ops.restart_window else None
    operator = Operator(Alerter(mask=_masker(config)), restart_window=window)
    if ops.http_port is not None:
        url = operator.serve(ops.http_host, ops.http_port,
                             token=config.secrets.get(HTTP_TOKEN_ENV))
        say(f"status page {url}/ (health {url}/healthz, metrics {url}/metrics)")
    return operator


def _masker(config):
    """Return a function that masks the config's secrets in a text."""
    from bt_ibkr.masking import Redactor

    return Redactor(config.secrets.values()).text


@masked_main
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 bad input/refusal, 3 gateway, 4 attention).

    A bad flag value is refused before anything starts, in one line naming it (exit 2).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (one line printed) or --help
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT
    log_path = setup_logging("live")
    logger = logging.getLogger("bt_ibkr.live")
    from bt_ibkr.masking import RedactingFilter, Redactor

    redactor = Redactor()  # the environment's secrets; the config's are added once loaded
    RedactingFilter(redactor).install()

    def say(msg: str) -> None:
        print(f"[live] {redactor.text(str(msg))}", file=sys.stderr, flush=True)

    def error(exc: BaseException | str) -> None:
        print(f"error: {redactor.text(str(exc))}", file=sys.stderr, flush=True)

    operator = None
    try:
        from bt_ibkr.live.config import load_config
        from bt_ibkr.params import check_param_values, parse_params, resolve_strategy

        config = load_config(args.config, overrides=_overrides(args))
        redactor.add(*config.secrets.values())
        strategy_cls = resolve_strategy(config.strategy)
        # the config file's params are typed as --param's text is: use_hmm "maybe" is refused
        check_param_values(strategy_cls, config.params,
                           f"config {args.config}: strategy.params" if args.config
                           else "strategy.params")
        if args.param:
            config = replace(config, params={**config.params,
                                             **parse_params(strategy_cls, args.param)})
        if args.service and config.run_mode != "daily":
            raise ConfigError("--service decides once per exchange session: it runs --mode "
                              "daily (a stream run is already long-running)")
        operator = _operator(config, args, say)
    except Exception as exc:  # noqa: BLE001 - mapped to one line and an exit code
        return _exit_code(exc, say, error, logger, log_path)
    try:
        if args.service:
            code = _service(args, config, strategy_cls, operator, say, error, logger, log_path)
        else:
            code = _run_once(args, config, strategy_cls, operator, say, error, logger,
                             log_path)
        if code != EXIT_OK:
            operator.alert("exit", f"examples.live exited with code {code} (see {log_path})",
                           level="failure", key=f"exit:{code}")
        return code
    finally:
        operator.close()


SERVICE_MAX_RUNTIME = 120.0
"""Seconds a service's daily run may take (orders still working then stay working, journaled,
and the next session's run follows them), well inside the unit's WatchdogSec."""


def service_journal(config, simulate: bool, say=lambda msg: None) -> Path:
    """Return the journal a service marks its decided sessions in: the runs' own, so under
    ``--simulate`` the simulated journal (``state/simulate/``), never the real one (a real
    service would skip a session a simulated one marked), and the configured account's (a
    journal at the old default moved there first when it is that account's). Still naming
    ``{account}`` when no account is configured: the first run tells it."""
    from bt_ibkr.live import account_paths
    from bt_ibkr.live.simulator import simulated_paths

    config = simulated_paths(config)[0] if simulate else config
    if config.connection.account:
        config = account_paths.resolve(config, config.connection.account, say)
    return config.paths.journal


class ServiceSessions:
    """The decided sessions of a service: in its journal (:class:`ServiceRecord`) once the
    journal is known, kept in memory until then (no account configured: the first run's
    gateway names it, and a journal is never created before its account is known)."""

    def __init__(self, journal: Path) -> None:
        from bt_ibkr.ops.service_record import ServiceRecord

        self.record = ServiceRecord(journal)
        self.pending: set = set()

    def known(self) -> bool:
        """True once the journal's path is the account's (no ``{account}`` left)."""
        return "{account}" not in str(self.record.journal_path)

    def follow(self, journal: Path) -> None:
        """Use ``journal`` (a run's resolved journal) from now on; write what was pending."""
        self.record.journal_path = Path(journal)
        if self.known():
            for session in sorted(self.pending):
                self.record.mark(session)
            self.pending.clear()

    def decided(self, session) -> bool:
        return session in self.pending or (self.known() and self.record.decided(session))

    def mark(self, session) -> None:
        if self.known():
            self.record.mark(session)
        else:
            self.pending.add(session)


def _service(args, config, strategy_cls, operator, say, error, logger, log_path) -> int:
    """Run the daily run once per exchange session until stopped; return the exit code (0 on
    a clean stop, 2/3/4 when a run stops the service: a refusal, a wrong account, something a
    person must look at)."""
    import threading
    from datetime import UTC, datetime, timedelta

    from bt_ibkr.live.config import parse_decide_at
    from bt_ibkr.ops.schedule import SessionSchedule, SessionService
    from bt_ibkr.ops.systemd import SystemdNotifier

    anchor, minutes = parse_decide_at(config.ops.decide_at)
    schedule = SessionSchedule(config.ops.calendar, anchor, timedelta(minutes=minutes))
    if args.max_runtime is None:
        args.max_runtime = SERVICE_MAX_RUNTIME
    stop = threading.Event()
    current: list = []
    fatal: list[int] = []

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        say(f"{signal.Signals(signum).name} received: stopping the service")
        stop.set()
        for runner in current:
            runner.stop(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    record = ServiceSessions(service_journal(config, args.simulate, say))

    def run_session(session):
        runner = _runner(args, config, strategy_cls, operator, say)
        current[:] = [runner]
        try:
            result = runner.run()
            record.follow(runner.run_config.paths.journal)
        except (ConnectionFailedError, TimeoutError) as exc:
            if isinstance(exc, AccountChangedError):
                fatal.append(_exit_code(exc, say, error, logger, log_path))
                stop.set()
                return None
            raise  # the gateway is away: retried in a few minutes
        except Exception as exc:  # noqa: BLE001 - a refusal or attention stops the service
            fatal.append(_exit_code(exc, say, error, logger, log_path))
            stop.set()
            return None
        finally:
            current.clear()
        code = _report(result, say, log_path)
        if code != EXIT_OK:
            fatal.append(code)
            stop.set()
        return result.stopped_by

    service = SessionService(
        schedule=schedule, run_session=run_session, decided=record.decided,
        mark_decided=record.mark,
        clock=lambda: datetime.now(UTC), wait=lambda seconds: stop.wait(seconds) or stop.is_set(),
        notifier=SystemdNotifier(),
        alert=lambda kind, text: operator.alert(kind, text, level="warning"), say=say)
    say(f"service: one decision per {config.ops.calendar} session at {config.ops.decide_at}")
    service.run()
    return fatal[0] if fatal else EXIT_OK


def _runner(args, config, strategy_cls, operator, say):
    from bt_ibkr.live.options import RunOptions
    from bt_ibkr.live.runner import LiveRunner
    from bt_ibkr.records.tearsheet import SessionSelection

    return LiveRunner(config, RunOptions(
        strategy=strategy_cls, simulate=args.simulate, max_runtime=args.max_runtime,
        json_path=args.json, report_path=args.report, progress=say, lift_halt=args.lift_halt,
        report_select=SessionSelection(run=args.report_run, start=args.report_from,
                                       end=args.report_to),
        operator=operator))


def _run_once(args, config, strategy_cls, operator, say, error, logger, log_path) -> int:
    try:
        runner = _runner(args, config, strategy_cls, operator, say)

        def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
            name = signal.Signals(signum).name
            say(f"{name} received: stopping cleanly (again to exit at once)")
            runner.stop(name)
            # a second signal ends the process at once (the journal is safe at any point)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        result = runner.run()
    except Exception as exc:  # noqa: BLE001 - mapped to one line and an exit code
        from bt_ibkr.futures.cli import futures_hint

        hint = futures_hint(exc, config.symbols, config.futures)
        if hint:  # an unknown symbol that is a futures root left out of --futures
            exc = type(exc)(f"{exc}{hint}")
        return _exit_code(exc, say, error, logger, log_path)
    return _report(result, say, log_path)


if __name__ == "__main__":
    sys.exit(main())
