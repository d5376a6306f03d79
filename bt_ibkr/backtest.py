"""Run a backtest the way ``python -m examples.backtest`` does, from Python.

``run_backtest(BacktestConfig(...))`` checks the config and the output paths, loads validated
history (bt_ibkr.data.history), checks that every symbol covers the strategy's warm-up, runs the
strategy (RegimeAwareEnsemble by default) in Cerebro with backtrader's BackBroker, and returns
a BacktestResult with the JSON summary, the fills, the regime report and the tearsheet path.

Fills and costs: market orders decided at a bar's close fill at the next bar's open (no
cheat-on-close, no cheat-on-open); every fill pays ``commission_bps`` of its traded value and
``slippage_bps`` of its price (buys higher, sells lower, the open included, never capped at the
bar's high/low). Defaults: 1 bp commission + 2 bp slippage, a conservative all-in cost for
liquid US index ETFs: IB's per-share commission on an index ETF is well under 1 bp (its $1
minimum makes it 1 bp on a $10,000 order), their bid-ask spread is a fraction of a basis point
to about 1 bp, and the rest allows for opening-auction and market-impact costs.

Reporting period (bt_ibkr.metrics): from the close of the first bar on which the strategy can
act (after :func:`warmup_bars` bars) to the last bar. The summary, the terminal table, the
tearsheet and the ablation all use this period, the same daily returns and the same metric
functions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from analyzers.orders import Fill
from analyzers.regime import RegimeReport
from bt_ibkr.backtest_run import (  # the engine, re-exported: the public backtest API
    BacktestConfig,
    RunRecord,
    check_history_length,
    check_outputs,
    check_writable,
    measure,
    period_benchmark,
    simulate,
    slug,
    warmup_bars,
)
from bt_ibkr.metrics import (
    compute_stats,
    scale_to_volatility,
)
from bt_ibkr.redaction import write_json

log = logging.getLogger("bt_ibkr.backtest")


@dataclass
class BacktestResult:
    """What a backtest produced."""

    summary: dict[str, Any]
    fills: list[Fill]
    regimes: RegimeReport
    values: pd.Series
    report: Path | None
    message: str
    returns: pd.Series | None = None  # the reporting period's daily returns
    benchmark: pd.Series | None = None  # buy-and-hold daily returns over the same days
    ablation: Any = None  # bt_ibkr.research.ablation.AblationReport when config.ablation


class _HeldWarnings(logging.Filter):
    """Hold back WARNING+ records from a console handler; group them by message template."""

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[tuple[str, int, str], list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        group = self.groups.setdefault(key, [record, 0])
        group[1] += 1
        return False


@contextlib.contextmanager
def aggregated_warnings() -> Iterator[None]:
    """Show each distinct warning of a run once on the console, with its count.

    While the block runs, WARNING+ records to console handlers (stream handlers that are not
    files) are held back and grouped by logger, level and message template; on exit each group
    is printed once, as ``<count> times, the first: <message> ...`` when it repeated.
    Log files still get every record.
    """
    held = {
        h: _HeldWarnings() for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    }
    for handler, group in held.items():
        handler.addFilter(group)
    try:
        yield
    finally:
        for handler, group in held.items():
            handler.removeFilter(group)
            for first, count in group.groups.values():
                record = logging.makeLogRecord(first.__dict__)
                if count > 1:
                    record.msg = (f"{count} times, the first: {first.getMessage()} "
                                  f"(each one is in the log file)")
                    record.args = None
                if record.levelno >= handler.level:
                    handler.handle(record)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return the (metric, strategy, buy & hold) rows the terminal and the tearsheet both show.

    A figure that is undefined for the run (a ratio of a flat curve, buy-and-hold scaled to a
    volatility of zero) is ``None`` in the summary and shows as ``n/a``.
    """
    b = summary["benchmark"]
    eq = b["equal_volatility"]
    return [
        ("period", f"{summary['start']}..{summary['end']}", ""),
        ("final value", f"{summary['final_value']:,.2f}", ""),
        ("total return", f"{summary['total_return']:.2%}", f"{b['total_return']:.2%}"),
        ("CAGR", f"{summary['cagr']:.2%}", f"{b['cagr']:.2%}"),
        ("Sharpe", _num(summary["sharpe"]), _num(b["sharpe"])),
        ("Sortino", _num(summary["sortino"]), ""),
        ("max drawdown", f"{summary['max_drawdown']:.2%}", f"{b['max_drawdown']:.2%}"),
        ("volatility", f"{summary['volatility']:.2%}", f"{b['volatility']:.2%}"),
        ("CAGR, B&H at strategy vol", "", _pct(eq["cagr"])),
        ("max DD, B&H at strategy vol", "", _pct(eq["max_drawdown"])),
        ("avg exposure", f"{summary['exposure']:.2f}", "1.00"),
        ("turnover (x/yr)", f"{summary['turnover']:.2f}", ""),
        ("fills", str(summary["trades"]), ""),
        ("rejected orders", str(summary["rejected_orders"]), ""),
        ("bars (warm-up)", f"{summary['period_bars']} ({summary['warmup_bars']})", ""),
    ]


_PRICE_BASIS = {
    "sample": "{symbols}: price index closes without dividends (the arch package's sample), "
              "for the strategy and buy & hold alike",
    "yahoo": "{symbols}: Yahoo closes adjusted for splits and dividends (dividends reinvested), "
             "for the strategy and buy & hold alike",
    "ibkr": "{symbols}: IB TRADES bars, not adjusted for dividends, for the strategy and buy & "
            "hold alike",
    "csv": "{symbols}: prices as in the CSV file (dividends included only if the file's "
           "prices are adjusted)",
}


def report_notes(summary: dict[str, Any], futures: Mapping[str, str] | None = None) -> list[str]:
    """Return what the figures leave out, as the terminal, the tearsheet and the README say
    it: the price basis (dividends or not), what idle cash earns, the risk-free rate of the
    ratios and the equal-volatility convention. Symbols in ``futures`` (symbol -> root) are
    continuous futures: their basis is the back-adjusted series, which has no dividends."""
    source = str(summary.get("source", ""))
    basis = next((text for key, text in _PRICE_BASIS.items() if source.startswith(key)), None)
    futures = futures or {}
    others = [s for s in summary.get("symbols", []) if s not in futures]
    notes = []
    if basis and others:
        notes.append(basis.format(symbols=", ".join(others)))
    if futures:
        notes.append(f"{', '.join(futures)}: continuous futures, back-adjusted at each roll "
                     "(futures pay no dividends), for the strategy and buy & hold alike")
    rate = float(summary.get("cash_rate_pct", 0.0) or 0.0)
    idle = max(0.0, 1.0 - float(summary.get("exposure", 1.0)))
    flat = 1.0 - float(summary.get("time_in_market", 1.0))
    notes.append(f"idle cash earns {rate:g}% a year (--cash-rate); on average {idle:.0%} of "
                 f"the portfolio was cash, and it held no position on {flat:.0%} of the days")
    notes.append("Sharpe and Sortino use a 0% risk-free rate; \"B&H at strategy vol\" is buy & "
                 "hold scaled down to the strategy's volatility, rebalanced daily")
    return notes


def time_in_market(record: RunRecord, warmup: int) -> float:
    """Return the share of the reporting period's bars on which the portfolio held a position
    (gross exposure above 0.1%)."""
    held = record.exposure.iloc[warmup:]
    return float((held.abs() > 1e-3).mean()) if len(held) else 0.0


def _sessions_missed(first: date, last: date) -> bool:
    """Return True when NYSE had a session from ``first`` to ``last`` inclusive (a weekday,
    outside the calendar's years)."""
    from bt_ibkr.calendars import sessions_between

    if last < first:
        return False
    try:
        return bool(sessions_between(first, last))
    except Exception:  # noqa: BLE001 - dates outside the calendar: any weekday counts
        return any((first + timedelta(days=i)).weekday() < 5
                   for i in range(min((last - first).days + 1, 7)))


def range_notes(config: BacktestConfig, data_start: date, data_end: date) -> list[str]:
    """Return a line for each end of the asked range (``--start``/``--end``) that the data
    does not reach (a session is missing between the data's end and ``--end``: a weekend or
    a holiday is not a cut), so a run cut short never looks like the period asked for."""
    notes = []
    if config.end is not None and _sessions_missed(data_end + timedelta(days=1), config.end):
        notes.append(f"--end {config.end}: the data ends {data_end}, so the run ends there")
    if config.start is not None and _sessions_missed(config.start,
                                                     data_start - timedelta(days=1)):
        notes.append(f"--start {config.start}: the data starts {data_start}, so the run "
                     "starts there (then the warm-up)")
    return notes


def costs_text(summary: dict[str, Any]) -> str:
    """Return the one-line cost model of a run, as the terminal and the tearsheet state it."""
    delay = summary.get("decision_delay", 0)
    return (
        f"commission {summary['commission_bps']:g} bp + slippage {summary['slippage_bps']:g} bp "
        f"per fill; market orders fill at the next bar's open"
        + (f"; decisions delayed {delay} bar(s)" if delay else "")
    )



def run_backtest(config: BacktestConfig, history: Any = None, *,
                 on_summary: Callable[[BacktestResult], None] | None = None,
                 report_worker: bool = True) -> BacktestResult:
    """Run one backtest and return its BacktestResult (also writes the report/JSON if asked).

    ``history`` (a bt_ibkr.data.history.HistoryResult) skips loading; by default the bars are
    loaded as ``config`` says. Everything that can be checked without running is checked
    first: config values, output paths, then bar counts against the strategy's warm-up.

    The tearsheet is rendered in a separate process (bt_ibkr.tearsheet_worker), started
    before the bars are loaded so that its imports overlap the run; ``report_worker`` False
    renders it in this process instead (the same page). ``on_summary`` is called with the
    result as soon as the summary is known, while the tearsheet is still being written (its
    ``report`` is then None and ``summary`` has no "report" yet); meanwhile a transient
    progress line shows on stderr (``config.progress``, on a terminal). The JSON is written once the
    tearsheet is, so it names the report.

    Raises:
        ConfigError: a bad config value (dates, cash, costs, params) or an unwritable output.
        DataError: no source could serve the symbols (the message names each source tried), or
            a symbol has fewer bars than the strategy's warm-up needs.
    """
    from bt_ibkr.data.history import HistoryRequest, load_history

    config.validate()
    check_outputs(config.output_paths())
    worker = None
    if config.write_report and report_worker:
        from bt_ibkr.tearsheet_worker import shared_worker

        worker = shared_worker()
        worker.start()  # its imports run while the bars load and the strategy runs
    strategy_cls = config.strategy_class()
    params = config.strategy_params()
    warmup = warmup_bars(strategy_cls, params)
    if history is None:
        history = load_history(
            HistoryRequest(
                symbols=config.symbols, source=config.source, start=config.start,
                end=config.end, csv_paths=config.csv_paths, use_cache=config.use_cache,
                progress=config.progress, gateway=config.gateway,
                futures=config.futures if config.source == "ibkr" else {},
                futures_adjust=config.futures_adjust,
            )
        )
    log.info(history.message)
    check_history_length(history.frames, warmup, strategy_cls.__name__)

    ablation = None
    with aggregated_warnings():
        record = simulate(config, history.frames, strategy_cls, params)
        if config.ablation:
            from bt_ibkr.research.ablation import run_ablation

            ablation = run_ablation(config, history.frames, strategy=strategy_cls,
                                    params=params, ensemble=record, warmup=warmup)
    perf = measure(record, warmup)
    returns = perf.returns
    bench = period_benchmark(history.frames, returns)
    bench_stats = compute_stats(bench)
    flat = not perf.stats.volatility > 0  # no position ever held: ratios are undefined
    bench_eq = None if flat else compute_stats(scale_to_volatility(bench, perf.stats.volatility))
    values = record.values
    symbols = list(history.frames)
    first = min(f.index[0] for f in history.frames.values())
    last = max(f.index[-1] for f in history.frames.values())
    summary: dict[str, Any] = {
        "source": history.source,
        "source_message": history.message,
        "symbols": symbols,
        "strategy": strategy_cls.__name__,
        "params": dict(config.params),
        "bars": int(len(values)),
        "warmup_bars": warmup,
        "period_bars": int(len(values) - warmup),
        "data_start": pd.Timestamp(first).date().isoformat(),
        "data_end": pd.Timestamp(last).date().isoformat(),
        "start": returns.index[0].date().isoformat(),
        "end": returns.index[-1].date().isoformat(),
        "cash": config.cash,
        "commission_bps": config.commission_bps,
        "slippage_bps": config.slippage_bps,
        "cash_rate_pct": config.cash_rate_pct,
        "decision_delay": int(params.get("decision_delay", config.decision_delay) or 0),
        "fill_price": "next bar open",
        "final_value": float(values.iloc[-1]),
        **perf.stats.to_dict(),
        "time_in_market": time_in_market(record, warmup),
        "trades": perf.fills,
        "rejected_orders": len(record.rejected),
        "exposure": perf.exposure,
        "turnover": perf.turnover,
        "regime_counts": perf.regimes.counts(),
        "benchmark": {
            "name": "buy_and_hold_equal_weight",
            "total_return": bench_stats.total_return,
            "cagr": bench_stats.cagr,
            "sharpe": bench_stats.sharpe,
            "max_drawdown": bench_stats.max_drawdown,
            "volatility": bench_stats.volatility,
            "equal_volatility": {
                "cagr": None if bench_eq is None else bench_eq.cagr,
                "sharpe": None if bench_eq is None else bench_eq.sharpe,
                "max_drawdown": None if bench_eq is None else bench_eq.max_drawdown,
            },
        },
    }
    if flat:
        summary["sharpe"] = summary["sortino"] = None
    summary["range_notes"] = range_notes(config, pd.Timestamp(first).date(),
                                         pd.Timestamp(last).date())
    summary["notes"] = report_notes(summary, config.futures)
    if config.futures:
        from bt_ibkr.futures.backtest import continuous_built, continuous_text, futures_text

        summary["futures"] = dict(config.futures)
        summary["notes"].insert(0, f"futures: {futures_text(config.futures)}")
        built = continuous_built(history.frames, config.futures)
        if built:  # series built here from IB's contracts: how, and the roll dates
            summary["futures_series"] = built
            summary["notes"].insert(1, f"futures series: {continuous_text(built)}")
    from bt_ibkr.fx.backtest import base_currency, fx_text, odd_lot_note

    summary["base_currency"] = base_currency(config.fx, symbols)
    if config.fx:
        summary["fx"] = dict(config.fx)
        summary["notes"].insert(0, f"forex: {fx_text(config.fx, summary['base_currency'])}")
        odd = odd_lot_note(record.fills, config.fx)
        if odd:
            summary["notes"].append(odd)
    if ablation is not None:
        summary["ablation"] = ablation.to_list()
        if ablation.skipped:
            summary["ablation_skipped"] = list(ablation.skipped)

    report: Path | None = None
    job = None
    if config.write_report:
        report = config.report or Path("reports") / (
            f"backtest-{slug(','.join(symbols))}-{summary['start']}-{summary['end']}.html"
        )
        tearsheet_args = dict(
            values=values,
            output=report,
            benchmark=bench,
            benchmark_title="Buy & hold",
            title=f"{strategy_cls.__name__} on {', '.join(symbols)}",
            regime_report=perf.regimes,
            warmup_bars=warmup,
            summary_rows=summary_rows(summary),
            notes=summary["range_notes"] + summary["notes"],
            ablation=summary.get("ablation"),
            ablation_note="; ".join(summary.get("ablation_skipped", [])),
            parameters={"Base currency": _base_text(summary),
                        "Costs": costs_text(summary),
                        **({"Futures": _futures_line(summary)} if config.futures else {})},
        )
        if worker is not None:
            job = worker.submit(**tearsheet_args)
        else:
            from bt_ibkr.tearsheet_worker import TearsheetJob

            job = TearsheetJob(None, tearsheet_args)  # renders here when asked for

    def result(report: Path | None) -> BacktestResult:
        return BacktestResult(
            summary=summary, fills=record.fills, regimes=perf.regimes, values=values,
            report=report, message=history.message, returns=returns, benchmark=bench,
            ablation=ablation,
        )

    if on_summary is not None:
        on_summary(result(None))
    if job is not None:
        try:
            if job.done():
                report = job.result()
            else:
                import sys

                from bt_ibkr.progress import progress

                # a live line on a terminal only (rich leaves a blank line on a pipe)
                shown = config.progress and sys.stderr.isatty()
                with progress(None, "tearsheet: rendering", enabled=shown):
                    report = job.result()
            summary["report"] = str(report)
        except ValueError as exc:  # e.g. intraday bars spanning fewer than 2 days
            log.warning("no tearsheet written to %s: %s", report, exc)
            report = None
    if config.json_path:
        write_json(summary, config.json_path)  # the environment's secrets masked
    return result(report)


def _base_text(summary: dict[str, Any]) -> str:
    """Return the tearsheet's "Base currency" line: the currency of every value on the page."""
    return (f"{summary['base_currency']} (cash, values and returns; forex pairs are sized in "
            "their base currency and priced in this one)" if summary.get("fx")
            else f"{summary['base_currency']} (cash, values and returns)")


def _futures_line(summary: dict[str, Any]) -> str:
    """Return the futures note of ``summary`` without its ``futures: `` label."""
    return next((n[len("futures: "):] for n in summary["notes"] if n.startswith("futures: ")),
                "")


__all__ = ["BacktestConfig", "BacktestResult", "RunRecord", "aggregated_warnings",
           "check_history_length", "check_writable", "costs_text", "measure",
           "period_benchmark", "range_notes", "report_notes", "run_backtest", "simulate",
           "summary_rows", "time_in_market", "warmup_bars"]
