"""Backtest RegimeAwareEnsemble and write a quantstats tearsheet.

    python -m examples.backtest                          # offline-capable default (SPY or ^GSPC sample)
    python -m examples.backtest --symbols SPY,QQQ --start 2015-01-01 --json out.json
    python -m examples.backtest --source sample --symbols ^GSPC,^IXIC --param band=0.05
    python -m examples.backtest --source ibkr --port 4002 --symbols SPY,QQQ --start 2016-01-01

A thin CLI over bt_ibkr.backtest.run_backtest; exit code 2 on bad input (the message names it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date
from pathlib import Path

from bt_ibkr.errors import BtIbkrError, ConfigError
from bt_ibkr.logs import setup_logging

SOURCES = ("auto", "yahoo", "sample", "csv", "ibkr")


def _date(flag: str):
    def parse(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} {text!r}: expected a date like 2015-01-31") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m examples.backtest``."""
    p = argparse.ArgumentParser(prog="python -m examples.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", help="comma-separated symbols, one portfolio (default: SPY, or the ^GSPC sample offline)")
    p.add_argument("--source", choices=SOURCES, default="auto", help="data source (default: auto = cache, yahoo, sample; ibkr = IB historical data via --host/--port, cached)")
    p.add_argument("--host", default="127.0.0.1", help="--source ibkr: gateway host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4002, help="--source ibkr: gateway port (default 4002, IB Gateway paper)")
    p.add_argument("--client-id", type=int, default=None, help="--source ibkr: API client id (default: a random free one)")
    p.add_argument("--csv", help="CSV file(s) for --source csv (comma-separated, one per symbol)")
    p.add_argument("--start", type=_date("--start"), help="first date, YYYY-MM-DD")
    p.add_argument("--end", type=_date("--end"), help="last date, YYYY-MM-DD")
    p.add_argument("--cash", type=float, default=100_000.0, help="starting cash (default 100000)")
    p.add_argument("--commission-bps", type=float, default=1.0, help="commission in basis points of traded value (default 1)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="strategy param (repeatable), e.g. --param band=0.05")
    p.add_argument("--report", type=Path, help="tearsheet HTML path (default reports/backtest-<symbols>-<dates>.html)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML tearsheet")
    p.add_argument("--json", type=Path, help="write the run summary as JSON here")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the local price cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _print_summary(summary: dict, message: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(message)
    t = Table(title=f"{summary['strategy']} — {', '.join(summary['symbols'])} {summary['start']}..{summary['end']}")
    t.add_column("metric")
    t.add_column("strategy", justify="right")
    t.add_column("buy & hold", justify="right")
    b = summary["benchmark"]
    rows = [
        ("final value", f"{summary['final_value']:,.2f}", ""),
        ("total return", f"{summary['total_return']:.2%}", f"{b['total_return']:.2%}"),
        ("CAGR", f"{summary['cagr']:.2%}", f"{b['cagr']:.2%}"),
        ("Sharpe", f"{summary['sharpe']:.2f}", f"{b['sharpe']:.2f}"),
        ("Sortino", f"{summary['sortino']:.2f}", ""),
        ("max drawdown", f"{summary['max_drawdown']:.2%}", f"{b['max_drawdown']:.2%}"),
        ("volatility", f"{summary['volatility']:.2%}", f"{b['volatility']:.2%}"),
        ("CAGR at equal vol", "", f"{b['equal_volatility']['cagr']:.2%}"),
        ("max DD at equal vol", "", f"{b['equal_volatility']['max_drawdown']:.2%}"),
        ("fills", str(summary["trades"]), ""),
        ("avg exposure", f"{summary['exposure']:.2f}", "1.00"),
        ("bars", str(summary["bars"]), ""),
    ]
    for row in rows:
        t.add_row(*row)
    console.print(t)
    regimes = ", ".join(f"{k} {v}" for k, v in sorted(summary["regime_counts"].items(), key=lambda kv: -kv[1]))
    console.print(f"regimes (bars): {regimes}")
    if summary.get("report"):
        console.print(f"tearsheet: {summary['report']}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 2 bad input or no data)."""
    args = build_parser().parse_args(argv)
    log_path = setup_logging("backtest")
    try:
        from bt_ibkr.backtest import BacktestConfig, run_backtest
        from bt_ibkr.params import parse_params
        from strategies import RegimeAwareEnsemble

        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
        if args.symbols is not None and not symbols:
            raise ConfigError("--symbols is empty: give e.g. --symbols SPY,QQQ")
        csv_paths = [Path(p.strip()) for p in args.csv.split(",")] if args.csv else None
        if args.source == "csv" and not csv_paths:
            raise ConfigError("--source csv needs --csv PATH (a file with date,open,high,low,close,volume)")
        if csv_paths and args.source not in ("csv", "auto"):
            raise ConfigError(f"--csv is only used with --source csv (got --source {args.source})")
        source = "csv" if csv_paths else args.source
        config = BacktestConfig(
            symbols=symbols,
            source=source,
            csv_paths=csv_paths,
            start=args.start,
            end=args.end,
            cash=args.cash,
            commission_bps=args.commission_bps,
            params=parse_params(RegimeAwareEnsemble, args.param),
            report=args.report,
            write_report=not args.no_report,
            json_path=args.json,
            progress=not args.no_progress,
            use_cache=not args.no_cache,
            ib_host=args.host,
            ib_port=args.port,
            ib_client_id=args.client_id,
        )
        result = run_backtest(config)
    except BtIbkrError as exc:
        logging.getLogger("bt_ibkr.backtest").info("run failed: %s", exc)  # file only
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(result.summary, result.message)
    if args.json:
        print(f"summary: {args.json}")
    print(f"log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
