"""Backtest RegimeAwareEnsemble and write a quantstats tearsheet.

    python -m examples.backtest                          # offline-capable default (SPY or ^GSPC sample)
    python -m examples.backtest --symbols SPY,QQQ --start 2015-01-01 --json out.json
    python -m examples.backtest --source sample --symbols ^GSPC,^IXIC --param band=0.05
    python -m examples.backtest --source ibkr --port 4002 --symbols SPY,QQQ --start 2016-01-01
    python -m examples.backtest --source sample --ablation      # each sleeve, static weights, B&H
    python -m examples.backtest --symbols EURUSD --csv eurusd.csv --fx EURUSD   # a forex pair
    python -m examples.backtest --source ibkr --symbols ES --futures ES   # from IB's contracts

A thin CLI over bt_ibkr.backtest.run_backtest; exit code 2 on bad input, with one line that
names it, before any work is done. The summary is printed as soon as the run ends; the
tearsheet is rendered meanwhile in a worker process (bt_ibkr.tearsheet_worker) started first
thing, and its line follows once it is written (``BT_IBKR_REPORT_WORKER=0``: rendered here).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bt_ibkr.cli_args import (
    OneLineParser,
    client_id,
    data_selection,
    finite_number,
    iso_date,
    positive_float,
    tcp_port,
    whole_number,
)
from bt_ibkr.errors import BtIbkrError
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.logs import setup_logging
from bt_ibkr.redaction import masked_main
from bt_ibkr.sources import REQUEST_SOURCES

SOURCES = REQUEST_SOURCES


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m examples.backtest``."""
    from bt_ibkr.backtest_run import (
        DEFAULT_COMMISSION_BPS,
        DEFAULT_SLIPPAGE_BPS,
        MAX_BPS,
        MAX_CASH_RATE_PCT,
    )

    p = OneLineParser(prog="python -m examples.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", help="comma-separated symbols, one portfolio (default: SPY, or the ^GSPC sample offline)")
    p.add_argument("--source", choices=SOURCES, default="auto", help="data source (default: auto = cache, yahoo, sample; ibkr = IB historical data via --host/--port, cached)")
    p.add_argument("--host", default="127.0.0.1", help="--source ibkr: gateway host (default 127.0.0.1)")
    p.add_argument("--port", type=tcp_port, default=4002, help="--source ibkr: gateway port (default 4002, IB Gateway paper)")
    p.add_argument("--client-id", type=client_id, default=None, help="--source ibkr: API client id (default: a random free one)")
    p.add_argument("--csv", help="CSV file(s) for --source csv (comma-separated, one per symbol)")
    p.add_argument(
        "--futures", metavar="SYMBOL[:ROOT],...",
        help="symbols that are continuous futures (e.g. --symbols ES --csv es.csv --futures ES; "
        "ROOT defaults to the symbol; known roots: ES, NQ, CL, GC, ZN): the contract multiplier "
        "applies to value, sizing and commission",
    )
    p.add_argument(
        "--futures-adjust", choices=("ratio", "difference"), default=None,
        help="--source ibkr --futures: the continuous series is built from IB's individual "
        "contracts (expired ones included; IB keeps them 2 years) with the roll registry's "
        "dates and back-adjusted by ratio (default: returns kept) or difference (point moves "
        "kept); cached, so a second run needs no gateway",
    )
    p.add_argument(
        "--fx", metavar="SYMBOL[:PAIR],...",
        help="symbols that are forex pairs (e.g. --symbols EURUSD --csv eurusd.csv --fx EURUSD; "
        "PAIR defaults to the symbol read as BASE.QUOTE): sized in the pair's base currency "
        "(EUR), priced in its quote currency (USD), which is the report's base currency",
    )
    p.add_argument("--start", type=iso_date, help="first date, YYYY-MM-DD")
    p.add_argument("--end", type=iso_date, help="last date, YYYY-MM-DD")
    p.add_argument("--cash", type=positive_float, default=100_000.0, help="starting cash (default 100000)")
    p.add_argument(
        "--commission-bps", type=finite_number(0, high=MAX_BPS), default=DEFAULT_COMMISSION_BPS,
        help=f"commission per fill in basis points of traded value (default {DEFAULT_COMMISSION_BPS:g}: "
        "IB's per-share commission on a liquid index ETF is well under 1 bp)",
    )
    p.add_argument(
        "--slippage-bps", type=finite_number(0, high=MAX_BPS), default=DEFAULT_SLIPPAGE_BPS,
        help=f"slippage per fill in basis points of price, buys up and sells down, applied to the "
        f"next-open fill (default {DEFAULT_SLIPPAGE_BPS:g}: about a liquid index ETF's spread plus "
        "opening-auction and impact costs; raise it for less liquid symbols)",
    )
    p.add_argument(
        "--cash-rate", type=finite_number(0, high=MAX_CASH_RATE_PCT), default=0.0,
        metavar="PCT",
        help="yearly interest in percent earned on idle (positive) cash, compounded daily "
        "(default 0: cash earns nothing, as backtrader's broker)",
    )
    p.add_argument(
        "--decision-delay", type=whole_number, default=0, metavar="BARS",
        help="act BARS bars after each decision (strategy param decision_delay; default 0: "
        "decide at the close, fill at the next open)",
    )
    p.add_argument(
        "--ablation", action="store_true",
        help="also run each sleeve alone, the sleeves with static weights (no regimes) and "
        "buy-and-hold at the ensemble's volatility; one table in the terminal, JSON and tearsheet",
    )
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="strategy param (repeatable), e.g. --param band=0.05")
    p.add_argument("--report", type=Path, help="tearsheet HTML path (default reports/backtest-<symbols>-<dates>.html)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML tearsheet")
    p.add_argument("--json", type=Path, help="write the run summary as JSON here")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the local price cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _print_summary(summary: dict, message: str, *, report_line: bool = True) -> None:
    """Print the run summary; ``report_line`` False leaves out the closing "tearsheet:" line
    (printed by :func:`_print_report_line` once the tearsheet is written)."""
    from rich.console import Console
    from rich.table import Table

    from bt_ibkr.backtest import costs_text, summary_rows

    console = Console()
    console.print(message)
    title = f"{summary['strategy']} — {', '.join(summary['symbols'])} {summary['start']}..{summary['end']}"
    t = Table(title=title)
    t.add_column("metric")
    t.add_column("strategy", justify="right")
    t.add_column("buy & hold", justify="right")
    for row in summary_rows(summary):
        t.add_row(*row)
    console.print(t)
    console.print(
        f"period: {summary['start']}..{summary['end']}, after {summary['warmup_bars']} warm-up bars "
        f"from {summary['data_start']} (the tearsheet and the JSON use the same period)"
    )
    console.print(f"costs: {costs_text(summary)}")
    console.print(f"base currency: {summary.get('base_currency', 'USD')} (cash, values, returns)")
    for note in summary.get("range_notes", []):
        console.print(f"[bold]range: {note}[/bold]")
    for note in summary.get("notes", []):
        console.print(f"note: {note}")
    regimes = ", ".join(f"{k} {v}" for k, v in sorted(summary["regime_counts"].items(), key=lambda kv: -kv[1]))
    console.print(f"regimes (bars): {regimes}")
    if summary.get("ablation"):
        _print_ablation(console, summary["ablation"], summary.get("ablation_skipped", []))
    if report_line:
        _print_report_line(summary, console)


def _print_report_line(summary: dict, console=None) -> None:
    if summary.get("report"):
        if console is None:
            from rich.console import Console

            console = Console()
        console.print(f"tearsheet: {summary['report']}")


def _print_ablation(console, rows: list[dict], skipped: list[str]) -> None:
    from rich.table import Table

    t = Table(title="Ablation (same period and costs)",
              caption="vol: annualised; exp.: mean gross exposure; turn./yr: traded value per year / mean equity")
    for col in ("variant", "Sharpe", "CAGR", "max DD", "vol", "exp.", "turn./yr"):
        t.add_column(col, justify="left" if col == "variant" else "right", no_wrap=True)
    for r in rows:
        t.add_row(r["name"], f"{r['sharpe']:.2f}", f"{r['cagr']:.2%}", f"{r['max_drawdown']:.2%}",
                  f"{r['volatility']:.2%}", f"{r['exposure']:.2f}", f"{r['turnover']:.2f}")
    console.print(t)
    for why in skipped:
        console.print(f"ablation skipped {why}")


def _quiet_roots(text: str | None) -> dict[str, str]:
    """``--futures`` as parsed, or {} when it does not parse (its own error was the line)."""
    from bt_ibkr.futures.cli import futures_roots

    try:
        return futures_roots(text)
    except BtIbkrError:
        return {}


@masked_main
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 2 bad input or no data).

    Everything it prints and writes has the environment's secrets masked (bt_ibkr.redaction).
    """
    from bt_ibkr.tearsheet_worker import shared_worker

    raw = sys.argv[1:] if argv is None else list(argv)
    if not {"--no-report", "-h", "--help"} & set(raw):
        # start the tearsheet's process first: its imports (quantstats, matplotlib, about two
        # seconds) then run while the arguments are read, the bars load and the strategy runs
        shared_worker().start()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (one line printed) or --help
        shared_worker().close()
        return exc.code if isinstance(exc.code, int) else 2
    if args.no_report:
        shared_worker().close()  # e.g. an abbreviated --no-rep
    try:
        log_path = setup_logging("backtest")
    except OSError as exc:
        print(f"error: log folder (BT_IBKR_LOG_DIR or ./logs): {exc}", file=sys.stderr)
        return 2
    try:
        from bt_ibkr.backtest import BacktestConfig, run_backtest
        from bt_ibkr.futures.cli import futures_roots
        from bt_ibkr.fx.backtest import fx_pairs
        from bt_ibkr.params import parse_params
        from strategies import RegimeAwareEnsemble

        data = data_selection(args.symbols, args.source, args.csv)
        config = BacktestConfig(
            symbols=data.symbols,
            source=data.source,
            csv_paths=data.csv_paths,
            start=args.start,
            end=args.end,
            cash=args.cash,
            commission_bps=args.commission_bps,
            slippage_bps=args.slippage_bps,
            cash_rate_pct=args.cash_rate,
            decision_delay=args.decision_delay,
            params=parse_params(RegimeAwareEnsemble, args.param),
            report=args.report,
            write_report=not args.no_report,
            json_path=args.json,
            ablation=args.ablation,
            progress=not args.no_progress,
            use_cache=not args.no_cache,
            gateway=GatewayAddress(args.host, args.port, args.client_id),
            futures=futures_roots(args.futures),
            futures_adjust=args.futures_adjust,
            fx=fx_pairs(args.fx),
        )
        # the summary is printed as soon as it is known, while the tearsheet renders
        result = run_backtest(config, on_summary=lambda r: _print_summary(
            r.summary, r.message, report_line=False))
    except BtIbkrError as exc:
        logging.getLogger("bt_ibkr.backtest").info("run failed: %s", exc)  # file only
        from bt_ibkr.futures.cli import futures_hint

        hint = futures_hint(exc, (args.symbols or "").split(","), _quiet_roots(args.futures))
        print(f"error: {exc}{hint}", file=sys.stderr)
        return 2
    _print_report_line(result.summary)
    if args.json:
        print(f"summary: {args.json}")
    print(f"log: {log_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
