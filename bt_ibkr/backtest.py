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
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import backtrader as bt
import pandas as pd

from analyzers.equity import EquityRecorder
from analyzers.orders import Fill, OrderLog
from analyzers.regime import RegimeAttribution, RegimeReport, build_report
from analyzers.tearsheet import write_tearsheet
from bt_ibkr.errors import ConfigError, DataError
from bt_ibkr.metrics import (
    PerformanceStats,
    buy_and_hold_returns,
    compute_stats,
    period_returns,
    scale_to_volatility,
    turnover,
)
from bt_ibkr.params import param_defaults, resolve_strategy
from bt_ibkr.progress import progress

log = logging.getLogger("bt_ibkr.backtest")

DEFAULT_COMMISSION_BPS = 1.0
DEFAULT_SLIPPAGE_BPS = 2.0
MAX_BPS = 1000.0


@dataclass
class BacktestConfig:
    """What to backtest. Defaults reproduce ``python -m examples.backtest`` with no flags."""

    symbols: list[str] | None = None
    source: str = "auto"
    csv_paths: list[Path] | None = None
    start: date | None = None
    end: date | None = None
    cash: float = 100_000.0
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    decision_delay: int = 0  # bars between a decision and its order (strategy param)
    params: dict[str, Any] = field(default_factory=dict)
    report: Path | None = None  # None -> reports/backtest-<symbols>-<start>-<end>.html
    write_report: bool = True
    json_path: Path | None = None
    ablation: bool = False  # also run the ablation variants (bt_ibkr.research.ablation)
    progress: bool = True
    use_cache: bool = True
    preload: bool = True
    runonce: bool = True
    strategy: type | None = None  # None -> strategies.RegimeAwareEnsemble
    ib_host: str = "127.0.0.1"  # source "ibkr": the gateway to load history from
    ib_port: int = 4002
    ib_client_id: int | None = None

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field (as its CLI flag) and its value."""
        if not _finite(self.cash) or self.cash <= 0:
            raise ConfigError(f"--cash {self.cash}: must be a finite amount > 0, e.g. --cash 100000")
        for flag, bps in (("--commission-bps", self.commission_bps),
                          ("--slippage-bps", self.slippage_bps)):
            if not _finite(bps) or not 0 <= bps < MAX_BPS:
                raise ConfigError(f"{flag} {bps}: must be a finite number of basis points in [0, {MAX_BPS:g})")
        if isinstance(self.decision_delay, bool) or not isinstance(self.decision_delay, int) \
                or self.decision_delay < 0:
            raise ConfigError(f"--decision-delay {self.decision_delay}: must be a whole number of bars >= 0")
        if self.start and self.end and self.end < self.start:
            raise ConfigError(f"--end {self.end} is before --start {self.start}: swap them")
        for key, value in self.params.items():
            bad = _non_finite(value)
            if bad is not None:
                raise ConfigError(f"--param {key}={value}: {bad} is not a finite number")

    def strategy_class(self) -> type:
        """Return the Strategy class to run (``strategy`` or RegimeAwareEnsemble)."""
        return self.strategy if self.strategy is not None else resolve_strategy()

    def strategy_params(self) -> dict[str, Any]:
        """Return the params passed to the Strategy: ``params`` plus ``decision_delay``.

        Raises ConfigError when a delay is asked for and the Strategy has no such param.
        """
        cls = self.strategy_class()
        params = dict(self.params)
        if not self.decision_delay:
            return params
        if "decision_delay" in param_defaults(cls):
            given = params.get("decision_delay", self.decision_delay)
            if given != self.decision_delay:
                raise ConfigError(
                    f"--decision-delay {self.decision_delay} and --param decision_delay={given} "
                    f"disagree: give one of them"
                )
            params["decision_delay"] = self.decision_delay
        else:
            raise ConfigError(
                f"--decision-delay {self.decision_delay}: {cls.__name__} has no decision_delay "
                f"param, so it cannot delay its decisions; drop the flag"
            )
        return params

    def output_paths(self) -> list[tuple[str, Path]]:
        """Return (flag, path) of every file the run will write (the default report: a probe)."""
        out: list[tuple[str, Path]] = []
        if self.write_report:
            out.append(("--report", Path(self.report) if self.report else Path("reports") / ".bt_ibkr-write-test"))
        if self.json_path:
            out.append(("--json", Path(self.json_path)))
        return out


@dataclass
class RunRecord:
    """What one Cerebro run recorded, bar by bar (every series has one entry per bar)."""

    values: pd.Series
    exposure: pd.Series
    fills: list[Fill]
    rejected: list[tuple[str, str, str]]
    regimes: RegimeReport


@dataclass
class PeriodPerformance:
    """A run measured over its reporting period (what every report prints)."""

    returns: pd.Series  # daily returns; the first (base day) is 0
    stats: PerformanceStats
    exposure: float  # mean gross exposure over the period's bars
    turnover: float  # traded value per year / mean equity (bt_ibkr.metrics.turnover)
    fills: int
    regimes: RegimeReport  # regime attribution over the period's bars


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


def _non_finite(value: Any) -> float | None:
    """Return the first NaN/infinite float in ``value`` (nested dicts/lists too), else None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
    for item in items:
        bad = _non_finite(item)
        if bad is not None:
            return bad
    return None


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_writable(path: str | Path, flag: str) -> Path:
    """Return ``path`` after checking that a file can be written there (before any work).

    Missing parent folders are created; no file is left behind. Raises ConfigError naming
    ``flag`` and the path when it is a folder, sits under a file, or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a folder; give a file path such as {path / 'out'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path}: cannot be written ({exc.strerror or exc}); choose a writable path"
        ) from None
    return path


def warmup_bars(strategy_cls: type, params: dict[str, Any] | None = None) -> int:
    """Return how many bars ``strategy_cls`` needs before the first bar it can act on.

    A Strategy declares it with a classmethod ``warmup_bars(params: dict) -> int``. Without one,
    RegimeAwareEnsemble's params give it: its regime classifier labels its first bar after
    ``max(sma_long + slope_lookback, vol_window + vol_rank_min) - 1`` bars (271 with the
    defaults). A ``decision_delay`` param adds its bars. Other strategies: 0.
    """
    merged = {**param_defaults(strategy_cls), **(params or {})}
    hook = getattr(strategy_cls, "warmup_bars", None)
    if callable(hook):
        return int(hook(merged))
    need = ("sma_long", "slope_lookback", "vol_window", "vol_rank_min")
    bars = 0
    if all(isinstance(merged.get(k), int) for k in need):
        bars = max(merged["sma_long"] + merged["slope_lookback"],
                   merged["vol_window"] + merged["vol_rank_min"]) - 1
    delay = merged.get("decision_delay", 0)
    return max(0, bars + (delay if isinstance(delay, int) else 0))


def check_history_length(frames: dict[str, pd.DataFrame], warmup: int, strategy: str) -> None:
    """Raise DataError naming each symbol whose bars cannot cover ``warmup`` and one trade.

    A strategy needs ``warmup`` bars, one bar to decide on and the next one to fill at.
    """
    needed = warmup + 2
    short = [(s, f) for s, f in frames.items() if len(f) < needed]
    if short:
        parts = "; ".join(
            f"{s} has {len(f)} bars ({f.index[0].date()}..{f.index[-1].date()})" if len(f)
            else f"{s} has no bars" for s, f in short
        )
        raise DataError(
            f"{parts}, {strategy} needs at least {needed} ({warmup} warm-up bars, one to decide "
            f"on, one to fill at): start earlier (--start) or shorten the warm-up params"
        )


class _Progress(bt.Analyzer):
    """A rich progress bar over the bars of the run (stderr)."""

    params = (("total", 0), ("label", "backtest"))

    def start(self) -> None:
        self._bar = contextlib.ExitStack()
        self._advance = self._bar.enter_context(progress(self.p.total or None, self.p.label,
                                                         minimum=0))
        self._n = 0

    def next(self) -> None:
        self._n += 1
        if self._n % 50 == 0:
            self._advance(steps=50)

    def stop(self) -> None:
        self._advance(steps=self._n % 50)
        self._bar.close()


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


def simulate(config: BacktestConfig, frames: dict[str, pd.DataFrame],
             strategy_cls: type | None = None, params: dict[str, Any] | None = None,
             *, label: str = "backtest") -> RunRecord:
    """Run ``strategy_cls`` once over in-memory canonical bar frames and return its RunRecord.

    ``config`` gives cash, costs, preload/runonce and progress; ``params`` default to
    ``config.strategy_params()``. Raises ConfigError for a bad strategy param.
    """
    from feeds.frame_feed import make_feed

    strategy_cls = strategy_cls or config.strategy_class()
    params = config.strategy_params() if params is None else params
    cerebro = bt.Cerebro(preload=config.preload, runonce=config.runonce, stdstats=False)
    broker = cerebro.broker
    broker.setcash(config.cash)
    broker.setcommission(commission=config.commission_bps / 10_000.0)
    # market orders fill at the next bar's open (backtrader's default, stated explicitly);
    # slippage applies to that open too and is never capped at the bar's high/low
    broker.set_coc(False)
    broker.set_coo(False)
    broker.set_slippage_perc(config.slippage_bps / 10_000.0, slip_open=True, slip_limit=True,
                             slip_match=True, slip_out=True)
    bars = 0
    for symbol, frame in frames.items():
        cerebro.adddata(make_feed(frame, name=symbol), name=symbol)
        bars = max(bars, len(frame))
    cerebro.addstrategy(strategy_cls, **params)
    cerebro.addanalyzer(EquityRecorder, _name="equity")
    cerebro.addanalyzer(OrderLog, _name="orders")
    cerebro.addanalyzer(RegimeAttribution, _name="regimes")
    if config.progress:
        cerebro.addanalyzer(_Progress, _name="progress", total=bars, label=label)
    strat = cerebro.run()[0]
    curve = strat.analyzers.equity.get_analysis()
    orders = strat.analyzers.orders.get_analysis()
    return RunRecord(
        values=curve.values(),
        exposure=curve.exposure(),
        fills=orders["fills"],
        rejected=orders["rejected"],
        regimes=strat.analyzers.regimes.get_analysis(),
    )


def measure(record: RunRecord, warmup: int) -> PeriodPerformance:
    """Return the performance of ``record`` over its reporting period (after ``warmup`` bars)."""
    values = record.values
    returns = period_returns(values, warmup)
    kept = values.iloc[warmup:]
    base = pd.Timestamp(kept.index[0])
    fills = [f for f in record.fills if pd.Timestamp(f.dt) >= base]
    traded = sum(abs(f.size * f.price) for f in fills)
    timeline = record.regimes.timeline
    regimes = record.regimes
    if len(timeline) == len(values):
        regimes = build_report(
            [dt for dt, _ in timeline[warmup:]], [lb for _, lb in timeline[warmup:]],
            kept.tolist(), record.exposure.iloc[warmup:].tolist(),
        )
    return PeriodPerformance(
        returns=returns,
        stats=compute_stats(returns),
        exposure=float(record.exposure.iloc[warmup:].mean()),
        turnover=turnover(traded, kept, len(returns)),
        fills=len(fills),
        regimes=regimes,
    )


def period_benchmark(frames: dict[str, pd.DataFrame], returns: pd.Series) -> pd.Series:
    """Return equal-weight buy-and-hold daily returns on the days of ``returns``.

    Bought at the close of the period's first day (its return is 0), like the strategy's base.
    """
    base = pd.Timestamp(returns.index[0])
    closes = {}
    for symbol, frame in frames.items():
        close = frame["close"]
        idx = pd.DatetimeIndex(close.index)
        day = (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).normalize()
        closes[symbol] = close[day >= base]
    return buy_and_hold_returns(closes).reindex(returns.index).fillna(0.0)


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Return the (metric, strategy, buy & hold) rows the terminal and the tearsheet both show."""
    b = summary["benchmark"]
    eq = b["equal_volatility"]
    return [
        ("period", f"{summary['start']}..{summary['end']}", ""),
        ("final value", f"{summary['final_value']:,.2f}", ""),
        ("total return", f"{summary['total_return']:.2%}", f"{b['total_return']:.2%}"),
        ("CAGR", f"{summary['cagr']:.2%}", f"{b['cagr']:.2%}"),
        ("Sharpe", f"{summary['sharpe']:.2f}", f"{b['sharpe']:.2f}"),
        ("Sortino", f"{summary['sortino']:.2f}", ""),
        ("max drawdown", f"{summary['max_drawdown']:.2%}", f"{b['max_drawdown']:.2%}"),
        ("volatility", f"{summary['volatility']:.2%}", f"{b['volatility']:.2%}"),
        ("CAGR at equal vol", "", f"{eq['cagr']:.2%}"),
        ("max DD at equal vol", "", f"{eq['max_drawdown']:.2%}"),
        ("avg exposure", f"{summary['exposure']:.2f}", "1.00"),
        ("turnover (x/yr)", f"{summary['turnover']:.2f}", ""),
        ("fills", str(summary["trades"]), ""),
        ("rejected orders", str(summary["rejected_orders"]), ""),
        ("bars (warm-up)", f"{summary['period_bars']} ({summary['warmup_bars']})", ""),
    ]


def costs_text(summary: dict[str, Any]) -> str:
    """Return the one-line cost model of a run, as the terminal and the tearsheet state it."""
    delay = summary.get("decision_delay", 0)
    return (
        f"commission {summary['commission_bps']:g} bp + slippage {summary['slippage_bps']:g} bp "
        f"per fill; market orders fill at the next bar's open"
        + (f"; decisions delayed {delay} bar(s)" if delay else "")
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "", text.replace(",", "_")) or "run"


def run_backtest(config: BacktestConfig, history: Any = None) -> BacktestResult:
    """Run one backtest and return its BacktestResult (also writes the report/JSON if asked).

    ``history`` (a bt_ibkr.data.history.HistoryResult) skips loading; by default the bars are
    loaded as ``config`` says. Everything that can be checked without running is checked
    first: config values, output paths, then bar counts against the strategy's warm-up.

    Raises:
        ConfigError: a bad config value (dates, cash, costs, params) or an unwritable output.
        DataError: no source could serve the symbols (the message names each source tried), or
            a symbol has fewer bars than the strategy's warm-up needs.
    """
    from bt_ibkr.data.history import HistoryRequest, load_history

    config.validate()
    for flag, path in config.output_paths():
        check_writable(path, flag)
    strategy_cls = config.strategy_class()
    params = config.strategy_params()
    warmup = warmup_bars(strategy_cls, params)
    if history is None:
        history = load_history(
            HistoryRequest(
                symbols=config.symbols, source=config.source, start=config.start,
                end=config.end, csv_paths=config.csv_paths, use_cache=config.use_cache,
                progress=config.progress, ib_host=config.ib_host, ib_port=config.ib_port,
                ib_client_id=config.ib_client_id,
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
    bench_eq = compute_stats(scale_to_volatility(bench, perf.stats.volatility))
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
        "decision_delay": int(params.get("decision_delay", config.decision_delay) or 0),
        "fill_price": "next bar open",
        "final_value": float(values.iloc[-1]),
        **perf.stats.to_dict(),
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
                "cagr": bench_eq.cagr,
                "sharpe": bench_eq.sharpe,
                "max_drawdown": bench_eq.max_drawdown,
            },
        },
    }
    if ablation is not None:
        summary["ablation"] = ablation.to_list()
        if ablation.skipped:
            summary["ablation_skipped"] = list(ablation.skipped)

    report: Path | None = None
    if config.write_report:
        report = config.report or Path("reports") / (
            f"backtest-{_slug(','.join(symbols))}-{summary['start']}-{summary['end']}.html"
        )
        try:
            report = write_tearsheet(
                values,
                report,
                benchmark=bench,
                benchmark_title="Buy & hold",
                title=f"{strategy_cls.__name__} on {', '.join(symbols)}",
                regime_report=perf.regimes,
                warmup_bars=warmup,
                summary_rows=summary_rows(summary),
                ablation=summary.get("ablation"),
                ablation_note="; ".join(summary.get("ablation_skipped", [])),
                parameters={"Costs": costs_text(summary)},
            )
            summary["report"] = str(report)
        except ValueError as exc:  # e.g. intraday bars spanning fewer than 2 days
            log.warning("no tearsheet written to %s: %s", report, exc)
            report = None
    if config.json_path:
        path = Path(config.json_path)
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return BacktestResult(
        summary=summary, fills=record.fills, regimes=perf.regimes, values=values, report=report,
        message=history.message, returns=returns, benchmark=bench, ablation=ablation,
    )
