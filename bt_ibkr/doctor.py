"""``python -m bt_ibkr.doctor``: check an IB setup before trusting it, and say what to fix.

    python -m bt_ibkr.doctor [--host 127.0.0.1] [--port 4002] [--client-id N]
                             [--symbols SPY,AAPL] [--timeout S] [--no-yfinance] [--json]

Checks, in order, each PASS / WARN / FAIL (or SKIP when an earlier failure makes it moot):

1. gateway reachable: a TCP connect to host:port;
2. API handshake: the IB API connection opens (a port that accepts but never answers the handshake
   means the API is disabled, the host is not trusted, or another service owns the port);
3. account: the managed account, paper (DU..., or DF... for an advisor's paper master) or live, and what kind of port this is;
4. market data, per symbol: a snapshot; live, "delayed only" (354/10089/10167/10168), or none;
5. historical data: a 5-day daily request for the first symbol;
6. yfinance: a tiny download with a short timeout (offline is a WARN: only the fallback is lost).

Exit code 0 when nothing FAILed, 1 otherwise, 2 for a bad argument (one line naming it: a
``--port``/``--client-id`` out of range, a ``--timeout`` that is not a finite number of seconds in
(0, 3600]). ``--json`` prints one JSON object instead of text. Secrets of the environment are
masked in the output (:mod:`bt_ibkr.redaction`).
The same checks are available from Python: ``run_doctor(...) -> DoctorReport``.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from bt_ibkr.cli_args import OneLineParser, client_id, finite_number, tcp_port
from bt_ibkr.data.provider import IBKRDataProvider
from bt_ibkr.errors import BtIbkrError, DataError, SourceUnavailableError
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.ib.codes import LIVE_PORTS, PORT_HINT, PORT_NAMES
from bt_ibkr.live.safety import is_paper_account
from bt_ibkr.redaction import masked_main

__all__ = ["Check", "DoctorReport", "build_parser", "main", "run_doctor"]

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"


@dataclass
class Check:
    """One check's outcome: ``status`` PASS/WARN/FAIL/SKIP, ``detail`` what was found,
    ``fix`` what to do (empty when nothing is needed)."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    """All checks of one run against ``host:port``."""

    host: str
    port: int
    client_id: int
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any check FAILed, else 0."""
        return 1 if any(c.status == FAIL for c in self.checks) else 0

    def by_name(self, name: str) -> Check:
        """Return the check called ``name`` (KeyError if there is none)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON-ready form: host, port, client_id, ok, exit_code, checks."""
        return {"host": self.host, "port": self.port, "client_id": self.client_id,
                "ok": self.exit_code == 0, "exit_code": self.exit_code,
                "checks": [asdict(c) for c in self.checks]}

    def render(self) -> str:
        """Human-readable report, one line per check plus its fix."""
        width = max((len(c.name) for c in self.checks), default=10)
        lines = [f"bt_ibkr doctor: {self.host}:{self.port} (client id {self.client_id})"]
        for c in self.checks:
            lines.append(f"{c.status:4}  {c.name:<{width}}  {c.detail}")
            if c.fix:
                lines.append(f"{'':4}  {'':<{width}}  fix: {c.fix}")
        failed = sum(c.status == FAIL for c in self.checks)
        warned = sum(c.status == WARN for c in self.checks)
        lines.append("result: " + (f"{failed} FAIL, {warned} WARN" if failed or warned
                                   else "all checks passed"))
        return "\n".join(lines)


def _port_kind(port: int) -> str:
    return f"{PORT_NAMES[port]} port" if port in PORT_NAMES else "non-standard port"


def check_tcp(host: str, port: int, timeout: float) -> Check:
    """Check 1: does anything listen on host:port?"""
    name = "gateway reachable"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        return Check(name, FAIL, f"nothing listens on {host}:{port}",
                     f"start IB Gateway/TWS, or check the port: {PORT_HINT}")
    except TimeoutError:
        return Check(name, FAIL, f"no TCP answer from {host}:{port} within {timeout:g} s",
                     "check the host address and any firewall between here and the gateway")
    except OSError as exc:
        return Check(name, FAIL, f"cannot reach {host}:{port}: {exc}",
                     "check the host name/address")
    return Check(name, PASS, f"something listens on {host}:{port} ({_port_kind(port)})")


def check_account(accounts: list[str], port: int) -> Check:
    """Check 3: paper or live account, and does the port agree?"""
    name = "account"
    if not accounts:
        return Check(name, WARN, "the gateway reported no managed account",
                     "log in to TWS/IB Gateway with your (paper) user")
    paper = [a for a in accounts if is_paper_account(a)]
    live = [a for a in accounts if not is_paper_account(a)]
    kind = _port_kind(port)
    if live:
        return Check(name, WARN, f"LIVE account {', '.join(live)} on the {kind}: orders "
                     f"placed through this session use real money",
                     "for paper trading log in to the paper account (DU...) instead; keep live "
                     "trading on purpose only")
    if port in LIVE_PORTS:
        return Check(name, WARN, f"paper account {', '.join(paper)} on the {kind}",
                     "paper sessions normally listen on 7497 (TWS) / 4002 (Gateway); check "
                     "that this is the session you meant")
    return Check(name, PASS, f"paper account {', '.join(paper)} on the {kind}")


def check_market_data(provider: IBKRDataProvider, symbol: str) -> Check:
    """Check 4: a snapshot for ``symbol``: live, delayed only, or nothing."""
    name = f"market data {symbol}"
    try:
        price = provider.get_real_time_price(symbol)
    except DataError as exc:
        return Check(name, FAIL, f"no snapshot: {exc}",
                     "check the symbol (backtrader dataname, e.g. AAPL-STK-SMART-USD) and your "
                     "market-data permissions")
    if provider.last_price_delayed.get(symbol):
        return Check(name, WARN, f"delayed only (15-20 min): {price:g}",
                     "subscribe to the exchange's market data for API use in Client Portal "
                     "(Settings > Market Data Subscriptions), or accept delayed prices")
    return Check(name, PASS, f"live data: {price:g}")


def check_history(provider: IBKRDataProvider, symbol: str) -> Check:
    """Check 5: a 5-day daily historical request answers."""
    name = "historical data"
    try:
        frame = provider.get_ib_bars(symbol, "5 D", "1 day")
    except DataError as exc:
        return Check(name, FAIL, f"5-day daily request for {symbol} failed: {exc}",
                     "check historical-data permissions and pacing (wait 10 minutes after a "
                     "pacing violation)")
    last = frame.index[-1]
    return Check(name, PASS, f"{len(frame)} daily bars of {symbol}, last {last:%Y-%m-%d} close "
                 f"{frame['close'].iloc[-1]:g}")


def check_yfinance(timeout: float, symbol: str = "SPY") -> Check:
    """Check 6: yfinance answers a tiny download (offline is a WARN)."""
    from feeds.yahoo import download_yahoo

    name = "yfinance"
    today = datetime.now(UTC).date()
    try:
        frame = download_yahoo(symbol, today - timedelta(days=7), today, "1d", False,
                               timeout=timeout)
    except SourceUnavailableError as exc:
        return Check(name, WARN, f"unreachable: {exc}",
                     "the yfinance fallback will not work; IB and the cache still do (check "
                     "the network or proxy if you need it)")
    except BtIbkrError as exc:
        return Check(name, WARN, f"answered without data: {exc}",
                     "yfinance may be rate-limiting or broken; retry later")
    return Check(name, PASS, f"{len(frame)} daily bars of {symbol}, last close "
                 f"{frame['close'].iloc[-1]:g}")


def run_doctor(host: str = "127.0.0.1", port: int = 4002, client_id: int | None = None,
               symbols: Sequence[str] = ("SPY",), timeout: float = 5.0,
               yf_timeout: float = 5.0, check_yf: bool = True,
               on_check: Callable[[Check], None] | None = None) -> DoctorReport:
    """Run every check and return the report (never raises for a failed check).

    ``timeout`` bounds the TCP connect, the API handshake and each IB request;
    ``on_check`` is called with each check as soon as it is done (for live output).
    """
    symbols = [s.strip() for s in symbols if s and s.strip()] or ["SPY"]
    provider = IBKRDataProvider.at(GatewayAddress(host, port, client_id), use_cache=False,
                                   fallback_to_yfinance=False, progress=False, timeout=timeout,
                                   connect_timeout=timeout, max_retries=1, backoff=0.5)
    report = DoctorReport(host, port, provider.client_id)

    def add(check: Check) -> None:
        report.checks.append(check)
        if on_check is not None:
            on_check(check)

    ib_names = ["API handshake", "account"] + [f"market data {s}" for s in symbols] + [
        "historical data"]
    try:
        tcp = check_tcp(host, port, timeout)
        add(tcp)
        accounts: list[str] | None = None
        if tcp.status == PASS:
            try:
                accounts = provider.connect()
                add(Check("API handshake", PASS, f"API connection open (server version "
                          f"{provider.server_version}, client id {provider.client_id})"))
            except SourceUnavailableError as exc:
                add(Check("API handshake", FAIL, str(exc).split(" — ")[0].split("; ")[0],
                          _handshake_fix(str(exc))))
        if accounts is None:
            for n in ib_names[len(report.checks) - 1:]:
                add(Check(n, SKIP, "needs a working API connection"))
        else:
            add(check_account(accounts, port))
            for sym in symbols:
                add(check_market_data(provider, sym))
            add(check_history(provider, symbols[0]))
    finally:
        provider.close()
    if check_yf:
        add(check_yfinance(yf_timeout))
    else:
        add(Check("yfinance", SKIP, "skipped (--no-yfinance)"))
    return report


def _handshake_fix(reason: str) -> str:
    if "client id" in reason:
        return "pass another --client-id (each API connection needs its own)"
    if "handshake" in reason:
        return ("enable the API (TWS/Gateway: Configure > API > Settings > 'Enable ActiveX and "
                "Socket Clients'), add 127.0.0.1 to the trusted IPs, and check that this port "
                f"is the API port ({PORT_HINT})")
    return "check that the API is enabled and the client id is free"


MAX_TIMEOUT = 3600.0
"""The longest ``--timeout`` (seconds) the doctor accepts."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m bt_ibkr.doctor`` (one-line errors, exit 2)."""
    parser = OneLineParser(
        prog="python -m bt_ibkr.doctor",
        description="Check that IB Gateway/TWS, market data, history and yfinance work.")
    parser.add_argument("--host", default="127.0.0.1", help="gateway host (default 127.0.0.1)")
    parser.add_argument("--port", type=tcp_port, default=4002,
                        help=f"gateway API port (default 4002; {PORT_HINT})")
    parser.add_argument("--client-id", type=client_id, default=None,
                        help="API client id (default: a random free-looking one)")
    parser.add_argument("--symbols", default="SPY",
                        help="comma-separated symbols for the market-data check (default SPY)")
    parser.add_argument("--timeout", type=finite_number(0, low_open=True, high=MAX_TIMEOUT,
                                                        high_open=False), default=5.0,
                        help="seconds for the connect, handshake and each request (default 5, "
                             f"at most {MAX_TIMEOUT:g})")
    parser.add_argument("--no-yfinance", action="store_true", help="skip the yfinance check")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--healthcheck", action="store_true",
                        help="one fast check for a container or service: exit 0 only when the "
                        "API answers a real request and manages --account (1 unhealthy, 3 "
                        "wrong account or kind); prints one line")
    parser.add_argument("--account", help="--healthcheck: the account the gateway must manage")
    parser.add_argument("--mode", choices=("paper", "live"), default="paper",
                        help="--healthcheck: the kind of account expected (default paper)")
    return parser


@masked_main
def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 1 a check failed, 2 bad arguments: one
    line naming the flag; with ``--healthcheck`` 0 healthy, 1 unhealthy, 3 wrong account or
    kind). What it prints has the environment's secrets masked."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        symbols = [s for s in args.symbols.split(",") if s.strip()]
        if not symbols:
            parser.error("--symbols needs at least one symbol, e.g. SPY,AAPL")
    except SystemExit as exc:  # a bad flag (one line printed) or --help
        return exc.code if isinstance(exc.code, int) else 2
    for name in ("ib_async", "ib_insync"):  # the report says what went wrong, not their logs
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if args.healthcheck:
        from bt_ibkr.ops.healthcheck import gateway_health

        result = gateway_health(args.host, args.port, client_id=args.client_id,
                                account=args.account, mode=args.mode, timeout=args.timeout)
        print(result.line)
        return result.code
    report = run_doctor(args.host, args.port, args.client_id, symbols, args.timeout,
                        yf_timeout=args.timeout, check_yf=not args.no_yfinance)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.render())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
