"""Parameter sweeps and walk-forward tests of RegimeAwareEnsemble on Dask.

    python -m examples.sweep --grid band=0.05,0.1,0.2 --grid target_vol=0.08,0.12 --symbols ^GSPC,^IXIC
    python -m examples.sweep --source sample --symbols ^GSPC --grid band=0.05,0.1 --serial
    python -m examples.sweep --scheduler tcp://10.0.0.5:8786 --grid band=0.05,0.1,0.2 --out reports/s1
    python -m examples.sweep --source sample --grid band=0.05,0.1,0.2 --walk-forward train=5y,test=1y --select sharpe

One task = one full Cerebro backtest of one parameter set on the symbols (one portfolio, or each
symbol alone with --per-symbol). Tasks run on a local Dask cluster (--workers N, default: the
cores), on an existing Dask cluster (--scheduler), or in this process (--serial).

Exit codes: 0 every task ran; 2 bad input (a malformed --grid/--walk-forward spec, an unknown
param, no data, an unreachable scheduler), nothing run; 3 the Dask scheduler was lost mid-run
(one line; a sweep still writes every output from the tasks that finished, and its JSON lists
the missing ones under "interrupted"); 4 some tasks failed (they are listed, with their errors,
under "failed" in the JSON; all outputs are still written). A sweep of more than 10,000 tasks
first says how long it should take.
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
    positive_int,
    tcp_port,
    whole_number,
)
from bt_ibkr.errors import BtIbkrError, ConfigError
from bt_ibkr.ib.address import GatewayAddress
from bt_ibkr.logs import log_dir, setup_logging
from bt_ibkr.redaction import masked_main
from bt_ibkr.sources import REQUEST_SOURCES

SOURCES = REQUEST_SOURCES
EXIT_OK, EXIT_BAD_INPUT, EXIT_SCHEDULER_LOST, EXIT_TASKS_FAILED = 0, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m examples.sweep``."""
    from bt_ibkr.backtest_run import MAX_BPS
    from bt_ibkr.research.tasks import METRICS, SELECT_METRICS

    p = OneLineParser(
        prog="python -m examples.sweep", description=__doc__.split("\n\n")[0],
        epilog=" ".join(__doc__.split("\n\n")[-1].split()),
    )
    g = p.add_argument_group("what to run")
    g.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...", help="a Strategy param and its values (repeatable); every combination is one task")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="a Strategy param fixed for every task (repeatable)")
    g.add_argument("--strategy", default="strategies:RegimeAwareEnsemble", metavar="MODULE:CLASS", help="the backtrader Strategy to run (default strategies:RegimeAwareEnsemble); Dask workers must be able to import it")
    g.add_argument("--per-symbol", action="store_true", help="one task per symbol and combination (default: all symbols as one portfolio)")
    g.add_argument("--walk-forward", metavar="train=5y,test=1y[,anchored]", help="walk-forward test instead of a plain sweep (lengths in y, m, w or d)")
    g.add_argument("--select", choices=SELECT_METRICS, default="sharpe", help="walk-forward: metric that picks the params on each train window (default sharpe)")
    g.add_argument("--warmup-bars", type=whole_number, default=None, help="walk-forward: sessions fed before each window as warm-up (default: the Strategy's own warm-up, the most any grid point needs)")
    d = p.add_argument_group("data (as in examples.backtest)")
    d.add_argument("--symbols", help="comma-separated symbols (default: SPY, or the ^GSPC sample offline)")
    d.add_argument("--source", choices=SOURCES, default="auto", help="data source (default auto = cache, yahoo, sample)")
    d.add_argument("--csv", help="CSV file(s) for --source csv (comma-separated, one per symbol)")
    d.add_argument("--host", default="127.0.0.1", help="--source ibkr: gateway host")
    d.add_argument("--port", type=tcp_port, default=4002, help="--source ibkr: gateway port (default 4002)")
    d.add_argument("--client-id", type=client_id, default=None, help="--source ibkr: API client id")
    d.add_argument("--start", type=iso_date, help="first date, YYYY-MM-DD")
    d.add_argument("--end", type=iso_date, help="last date, YYYY-MM-DD")
    d.add_argument("--cash", type=positive_float, default=100_000.0, help="starting cash (default 100000)")
    d.add_argument("--commission-bps", type=finite_number(0, high=MAX_BPS), default=1.0, help="commission in basis points of traded value (default 1, as examples.backtest)")
    d.add_argument("--slippage-bps", type=finite_number(0, high=MAX_BPS), default=2.0, help="slippage in basis points of price on every fill, the next open included (default 2, as examples.backtest)")
    d.add_argument("--no-cache", action="store_true", help="do not read or write the local price cache")
    c = p.add_argument_group("where it runs")
    c.add_argument("--workers", type=positive_int, default=None, help="local cluster worker processes (default: the cores)")
    c.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="use an existing Dask cluster (address or scheduler file)")
    c.add_argument("--serial", action="store_true", help="run every task in this process (debugging)")
    o = p.add_argument_group("outputs")
    o.add_argument("--out", type=Path, help="output folder (default reports/sweep-<symbols>-<dates>/)")
    o.add_argument("--json", type=Path, help="JSON summary path (default <out>/sweep.json)")
    o.add_argument("--report", type=Path, help="HTML path (default <out>/sweep.html; walk-forward: the tearsheet)")
    o.add_argument("--no-report", action="store_true", help="skip the HTML report")
    o.add_argument("--metric", choices=METRICS, default="sharpe", help="heatmap and ranking metric (default sharpe)")
    o.add_argument("--top", type=positive_int, default=10, help="rows of the top table (default 10)")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _configs(args):
    """Parse and check every input; return (kind, config). Raises ConfigError."""
    from bt_ibkr.params import parse_params, resolve_strategy
    from bt_ibkr.research import (
        ClusterConfig,
        DataConfig,
        SweepConfig,
        WalkForwardConfig,
        parse_grid,
        parse_walk_forward,
    )

    strategy = resolve_strategy(args.strategy, flag="--strategy")
    grid = parse_grid(args.grid, strategy)  # typed as --param: use_hmm=maybe is refused
    spec = parse_walk_forward(args.walk_forward) if args.walk_forward is not None else None
    fixed = parse_params(strategy, args.param)
    selected = data_selection(args.symbols, args.source, args.csv)
    if args.start and args.end and args.end < args.start:
        raise ConfigError(f"--end {args.end} is before --start {args.start}: swap them")
    if spec is None and args.warmup_bars is not None:
        raise ConfigError("--warmup-bars applies to --walk-forward only")
    if spec is not None and args.per_symbol:
        raise ConfigError("--per-symbol is for sweeps; a walk-forward trades all symbols as one portfolio")
    data = DataConfig(
        symbols=selected.symbols, source=selected.source, csv_paths=selected.csv_paths,
        start=args.start, end=args.end, use_cache=not args.no_cache,
        progress=not args.no_progress, gateway=GatewayAddress(args.host, args.port, args.client_id),
    )
    cluster = ClusterConfig(scheduler=args.scheduler, workers=args.workers, serial=args.serial)
    common = dict(
        grid=grid, data=data, cluster=cluster, fixed_params=fixed, cash=args.cash,
        commission_bps=args.commission_bps, slippage_bps=args.slippage_bps, json_path=args.json, report_path=args.report,
        write_report=not args.no_report, progress=not args.no_progress, strategy=strategy,
    )
    if spec is not None:
        config = WalkForwardConfig(spec=spec, select=args.select, warmup_bars=args.warmup_bars,
                                   out_dir=args.out, **common)
        config.validate()
        return "walk-forward", config
    config = SweepConfig(per_symbol=args.per_symbol, out_dir=args.out, metric=args.metric,
                         top=args.top, **common)
    config.validate()
    return "sweep", config


def _print_sweep(outcome, metric: str, top: int, console) -> None:
    """The best ``top`` tasks (``--top``, as in the HTML report), readable at 80 columns: one
    column per param that varies (the others are the same for every task), no text cut."""
    from rich.table import Table

    from bt_ibkr.research.report import rank
    from bt_ibkr.research.sweep import period_label

    ranked = rank(outcome.results, metric)
    best = ranked[:top]
    if not best:
        return
    varying = [k for k in dict.fromkeys(k for r in ranked for k in r.params)
               if len({repr(r.params.get(k)) for r in ranked}) > 1]
    symbols = len({r.symbols for r in ranked}) > 1
    t = Table(title=f"top {len(best)} of {len(ranked)} by {metric} (--top), "
                    f"{period_label(outcome.results)}")
    t.add_column("#", justify="right", overflow="fold")
    for name in varying:
        t.add_column(name, justify="right", overflow="fold")
    if symbols:
        t.add_column("symbols", overflow="fold")
    for col in ("Sharpe", "CAGR", "max DD", "trades", "final"):
        t.add_column(col, justify="right", no_wrap=True)
    for r in best:
        cells = [str(r.task_id)] + [str(r.params.get(k, "")) for k in varying]
        if symbols:
            cells.append(",".join(r.symbols))
        cells += [f"{r.sharpe:.3f}", f"{r.cagr:.2%}", f"{r.max_drawdown:.2%}", str(r.trades),
                  f"{r.final_value:,.0f}"]
        t.add_row(*cells)
    console.print(t)
    fixed = {k: v for k, v in best[0].params.items() if k not in varying}
    if fixed:
        console.print("same in every task: " + ", ".join(f"{k}={v}" for k, v in fixed.items()),
                      highlight=False)


def _print_walk_forward(outcome, console) -> None:
    from rich.table import Table

    t = Table(title=f"walk-forward {outcome.summary['walk_forward']['spec']} "
                    f"(select {outcome.summary['walk_forward']['select']})")
    for col in ("window", "train", "test", "params", "IS Sharpe", "OOS Sharpe", "OOS return"):
        t.add_column(col, justify="left" if col in ("train", "test", "params") else "right")
    for w in outcome.windows:
        rec = w.record()
        ins, oos = rec["in_sample"], rec["out_of_sample"]
        t.add_row(
            str(w.window.index), f"{w.window.train_start}..{w.window.train_end}",
            f"{w.window.test_start}..{w.window.test_end}",
            ", ".join(f"{k}={v}" for k, v in (w.params or {}).items()) or (rec["error"] or ""),
            f"{ins['sharpe']:.3f}" if ins else "-", f"{oos['sharpe']:.3f}" if oos else "-",
            f"{oos['total_return']:.2%}" if oos else "-",
        )
    console.print(t)
    s = outcome.summary.get("out_of_sample")
    if s:
        console.print(
            f"out-of-sample {s['start']}..{s['end']}: Sharpe {s['sharpe']:.3f}, CAGR "
            f"{s['cagr']:.2%}, max drawdown {s['max_drawdown']:.2%}, volatility {s['volatility']:.2%}"
        )


@masked_main
def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (0 ok, 2 bad input, 3 scheduler lost mid-run, 4 some
    tasks failed).

    Everything it prints and writes has the environment's secrets masked (bt_ibkr.redaction).
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # a bad flag (one line printed) or --help
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        log_path = setup_logging("sweep")
    except OSError as exc:
        print(f"error: log folder (BT_IBKR_LOG_DIR or ./logs): {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from bt_ibkr.masking import RedactingFilter
    from bt_ibkr.redaction import env_redactor
    from bt_ibkr.research.cluster import DASK_LOGGERS, route_dask_logs

    route_dask_logs(log_dir() / "sweep-dask.log")
    RedactingFilter(env_redactor()).install(logging.getLogger(DASK_LOGGERS[0]))
    from rich.console import Console
    from rich.markup import escape

    from bt_ibkr.research.cluster import SchedulerLostError

    console = Console()
    try:
        kind, config = _configs(args)
        if kind == "walk-forward":
            from bt_ibkr.research import run_walk_forward

            outcome = run_walk_forward(config)
        else:
            from bt_ibkr.research import run_sweep

            outcome = run_sweep(config, notify=lambda line: console.print(line, highlight=False))
    except SchedulerLostError as exc:
        logging.getLogger("bt_ibkr.research").info("run interrupted: %s", exc)  # file only
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SCHEDULER_LOST
    except BtIbkrError as exc:
        logging.getLogger("bt_ibkr.research").info("run failed: %s", exc)  # file only
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    console.print(outcome.message)
    summary = outcome.summary
    console.print(f"{summary['tasks']} tasks on {summary['ran_on']}, {len(summary['failed'])} failed")
    if kind == "walk-forward":
        _print_walk_forward(outcome, console)
    else:
        _print_sweep(outcome, config.metric, config.top, console)
    for r in outcome.failed:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        console.print(f"[red]failed[/red] task {r.task_id} ({escape(params)}): {escape(r.error or '')}",
                      highlight=False)
    for name, path in summary["files"].items():
        console.print(f"{name}: {path}", highlight=False)
    console.print(f"json: {outcome.json_path}", highlight=False)
    console.print(f"log: {log_path}", highlight=False)
    return EXIT_TASKS_FAILED if outcome.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
