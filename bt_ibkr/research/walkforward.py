"""Walk-forward tests: select params on each train window, trade them on the following test window.

    from bt_ibkr.research import DataConfig, WalkForwardConfig, parse_grid, parse_walk_forward
    from bt_ibkr.research import run_walk_forward
    outcome = run_walk_forward(WalkForwardConfig(
        grid=parse_grid(["band=0.05,0.1,0.2"]), spec=parse_walk_forward("train=5y,test=1y"),
        data=DataConfig(symbols=["^GSPC"], source="sample"),
    ))

Windows (:func:`plan_windows`) start after the first ``warmup_bars`` sessions, so every window
opens warmed up, at the next calendar year (month) when the test length is in years (months). Rolling: train windows of fixed length move forward by the test length;
anchored: every train window starts at the first date. Each task of a window is fed the
``warmup_bars`` sessions before its window as warm-up, but its metrics count only inside the
window. Phase 1 runs every grid combination on every train window; the params with the best
``select`` metric (sharpe, calmar or sortino; ties go to the earlier grid combination) are then
run on the test window (phase 2). A train task sees no bar after its train window's last date,
so no test-window bar can influence a selection. The out-of-sample windows are stitched into one
return series and equity curve, which gets the quantstats tearsheet of a backtest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from bt_ibkr.backtest_run import slug
from bt_ibkr.costs import DEFAULT_COMMISSION_BPS, DEFAULT_SLIPPAGE_BPS
from bt_ibkr.errors import ConfigError
from bt_ibkr.metrics import buy_and_hold_returns, compute_stats
from bt_ibkr.research.cluster import ClusterConfig, open_cluster, run_tasks
from bt_ibkr.research.data import DataConfig, load_bars
from bt_ibkr.research.grid import WalkForwardSpec, expand_grid
from bt_ibkr.research.results import (
    ReturnsWriter,
    summary_json,
    write_json,
    write_results_parquet,
)
from bt_ibkr.research.sweep import check_common
from bt_ibkr.research.tasks import (
    METRICS,
    SELECT_METRICS,
    BarSet,
    TaskResult,
    TaskSpec,
    default_strategy,
)

__all__ = [
    "DEFAULT_WARMUP_BARS",
    "WalkForwardConfig",
    "WalkForwardOutcome",
    "Window",
    "WindowResult",
    "plan_windows",
    "run_walk_forward",
    "select_best",
]

log = logging.getLogger("bt_ibkr.research")

DEFAULT_WARMUP_BARS = 250
"""Sessions fed before every window: the default Strategy needs ~220 (SMA200 + 20-bar slope)."""
MIN_TEST_BARS = 21
"""A last, partial test window shorter than this many sessions is dropped."""


@dataclass(frozen=True)
class Window:
    """One walk-forward window; all dates are sessions in the data, inclusive."""

    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date

    def dates(self) -> dict[str, str]:
        """The four dates as ISO strings (JSON-ready)."""
        return {k: getattr(self, k).isoformat()
                for k in ("train_start", "train_end", "test_start", "test_end")}


def _origin(days: pd.DatetimeIndex, spec: WalkForwardSpec, warmup_bars: int) -> pd.Timestamp:
    """First train start: after ``warmup_bars`` sessions, snapped to a year/month boundary."""
    after = days[warmup_bars - 1] + pd.Timedelta(days=1) if warmup_bars else days[0]
    if spec.test.unit == "y":
        snapped = pd.Timestamp(after.year, 1, 1)
    elif spec.test.unit == "m":
        snapped = pd.Timestamp(after.year, after.month, 1)
    else:
        return after
    return snapped if snapped >= after else snapped + (
        pd.DateOffset(years=1) if spec.test.unit == "y" else pd.DateOffset(months=1))


def plan_windows(days: pd.DatetimeIndex, spec: WalkForwardSpec,
                 warmup_bars: int = DEFAULT_WARMUP_BARS) -> list[Window]:
    """Return the windows of ``spec`` over the sessions ``days`` (sorted, tz-naive dates).

    The first train window starts once ``warmup_bars`` sessions have passed, on the next
    January 1st (1st of a month) when the test length is in years (months). Rolling windows
    move by the test length; a last test window shorter than MIN_TEST_BARS sessions is dropped.

    Raises ConfigError when the data cannot hold one train window plus one test window after
    the warm-up (the message gives the span needed and the span available).
    """
    days = pd.DatetimeIndex(days).sort_values()
    if warmup_bars < 0:
        raise ConfigError(f"--warmup-bars {warmup_bars}: must be >= 0")
    if len(days) <= warmup_bars:
        raise ConfigError(f"--warmup-bars {warmup_bars}: the data has only {len(days)} sessions")
    origin = _origin(days, spec, warmup_bars)
    last = days[-1]
    windows: list[Window] = []
    k = 0
    while True:
        train_from = origin if spec.anchored else origin + spec.test.offset(k)
        test_from = origin + spec.train.offset() + spec.test.offset(k)
        test_until = origin + spec.train.offset() + spec.test.offset(k + 1)  # exclusive
        if test_from > last:
            break
        train = days[(days >= train_from) & (days < test_from)]
        test = days[(days >= test_from) & (days < test_until)]
        full = test_until <= last + pd.Timedelta(days=1)
        if len(train) and len(test) and (full or len(test) >= MIN_TEST_BARS):
            windows.append(Window(len(windows), train[0].date(), train[-1].date(),
                                  test[0].date(), test[-1].date()))
        k += 1
    if not windows:
        need = f"{spec.train} + {spec.test}"
        raise ConfigError(
            f"--walk-forward {spec}: needs {need} of data after the {warmup_bars}-session "
            f"warm-up (from {origin:%Y-%m-%d}), but the data ends {last:%Y-%m-%d}; load more "
            f"history (--start/--end) or shorten the windows"
        )
    return windows


def select_best(candidates: list[TaskResult], metric: str) -> TaskResult | None:
    """Return the successful candidate with the highest ``metric`` (ties: lowest task id).

    None when every candidate failed. NaN metrics never win.
    """
    ok = [r for r in candidates if r.ok]
    if not ok:
        return None
    return min(ok, key=lambda r: (-r.metric(metric), r.task_id))


@dataclass
class WalkForwardConfig:
    """A walk-forward test: grid, window spec, selection metric, data, cluster and outputs."""

    grid: dict[str, list[Any]]
    spec: WalkForwardSpec
    select: str = "sharpe"  # sharpe | calmar | sortino
    warmup_bars: int | None = None  # None -> the Strategy's own warm-up (max over the grid)
    data: DataConfig = field(default_factory=DataConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    fixed_params: dict[str, Any] = field(default_factory=dict)
    cash: float = 100_000.0
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    out_dir: Path | None = None  # None -> reports/walkforward-<symbols>-<start>-<end>
    json_path: Path | None = None  # None -> <out_dir>/walkforward.json
    report_path: Path | None = None  # tearsheet; None -> <out_dir>/walkforward.html
    write_report: bool = True
    strategy: type | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.select not in SELECT_METRICS:
            raise ConfigError(f"--select {self.select}: expected one of {', '.join(SELECT_METRICS)}")
        if self.warmup_bars is not None and self.warmup_bars < 0:
            raise ConfigError(f"--warmup-bars {self.warmup_bars}: must be >= 0")
        check_common(self)


@dataclass
class WindowResult:
    """One window: the selected train result (in-sample) and its test result (out-of-sample)."""

    window: Window
    selected: TaskResult | None
    test: TaskResult | None
    candidates: int
    failed: int

    @property
    def params(self) -> dict[str, Any] | None:
        """The selected params, None when every candidate failed."""
        return dict(self.selected.params) if self.selected is not None else None

    def record(self) -> dict[str, Any]:
        """JSON-ready: dates, params, in-sample and out-of-sample metrics, counts, error."""
        def metrics(r: TaskResult | None) -> dict[str, Any] | None:
            if r is None or not r.ok:
                return None
            return {**{m: getattr(r, m) for m in METRICS}, "trades": r.trades,
                    "final_value": r.final_value, "bars": r.bars}

        error = None
        if self.selected is None:
            error = "every parameter set failed on the train window"
        elif self.test is not None and not self.test.ok:
            error = f"test run failed: {self.test.error}"
        return {
            "window": self.window.index, **self.window.dates(), "params": self.params,
            "in_sample": metrics(self.selected), "out_of_sample": metrics(self.test),
            "candidates": self.candidates, "failed": self.failed, "error": error,
        }


@dataclass
class WalkForwardOutcome:
    """What a walk-forward test produced."""

    windows: list[WindowResult]
    results: list[TaskResult]  # every train and test task, in task order
    oos_returns: pd.Series  # stitched out-of-sample daily returns
    summary: dict[str, Any]
    out_dir: Path
    json_path: Path
    parquet_path: Path
    report_path: Path | None
    message: str

    @property
    def failed(self) -> list[TaskResult]:
        """The tasks that failed, in task order."""
        return [r for r in self.results if not r.ok]


def _train_specs(windows, combos, symbols, config) -> list[TaskSpec]:
    specs = []
    for w in windows:
        for combo in combos:
            specs.append(TaskSpec(
                task_id=len(specs), params={**config.fixed_params, **combo}, symbols=symbols,
                start=w.train_start, end=w.train_end, warmup_bars=config.warmup_bars,
                cash=config.cash, commission_bps=config.commission_bps,
                slippage_bps=config.slippage_bps, kind="train",
                window=w.index,
            ))
    return specs


def _stitch(windows: list[WindowResult]) -> pd.Series:
    parts = [w.test.returns for w in windows
             if w.test is not None and w.test.ok and w.test.returns is not None]
    if not parts:
        return pd.Series(dtype="float64", name="return")
    out = pd.concat(parts).sort_index()
    if out.index.has_duplicates:  # windows are disjoint by construction; guard anyway
        raise RuntimeError("walk-forward test windows overlap")
    return out.rename("return")


def strategy_warmup(config: WalkForwardConfig) -> int:
    """Return the bars the Strategy needs before it can act, the most any grid point needs
    (each test window is fed that many bars first, so it trades from its first day)."""
    from bt_ibkr.backtest_run import warmup_bars

    strategy = config.strategy or default_strategy()
    need = 0
    for combo in expand_grid(config.grid):
        try:
            need = max(need, warmup_bars(strategy, {**config.fixed_params, **combo}))
        except Exception:  # noqa: BLE001 - a bad grid point fails its own task later
            continue
    return need or DEFAULT_WARMUP_BARS


def run_walk_forward(config: WalkForwardConfig, *, bars: BarSet | None = None,
                     client=None) -> WalkForwardOutcome:
    """Run the walk-forward test and write its outputs; return a WalkForwardOutcome.

    Outputs (under ``out_dir``): ``results.parquet`` (every task), ``returns.parquet`` (test
    windows), ``walkforward.json`` (windows with in-sample vs out-of-sample metrics, the
    stitched out-of-sample metrics, tasks/failed/results) and the quantstats tearsheet of the
    stitched out-of-sample equity curve. ``bars``/``client`` as in run_sweep.

    Raises ConfigError (bad config, windows that do not fit the data), DataError (no data),
    ClusterError (scheduler unreachable). Failed tasks do not raise.
    """
    config.validate()
    if config.warmup_bars is None:
        config = replace(config, warmup_bars=strategy_warmup(config))
    bars = bars if bars is not None else load_bars(config.data)
    windows = plan_windows(bars.trading_days(), config.spec, config.warmup_bars)
    combos = expand_grid(config.grid)
    symbols = tuple(bars.frames)
    first, last = bars.span()
    out_dir = Path(config.out_dir) if config.out_dir else (
        Path("reports") / f"walkforward-{slug(','.join(symbols))}-{first}-{last}")
    out_dir.mkdir(parents=True, exist_ok=True)
    returns_path = out_dir / "returns.parquet"
    where = "the given Dask client" if client is not None else config.cluster.describe()
    log.info("walk-forward %s: %d windows x %d params on %s", config.spec, len(windows),
             len(combos), where)

    def run_both(active) -> tuple[list[TaskResult], list[TaskResult], list[WindowResult]]:
        train_specs = _train_specs(windows, combos, symbols, config)
        train = run_tasks(train_specs, bars, client=active, strategy=config.strategy,
                          keep_returns=False, progress=config.progress, label="train windows")
        by_window: dict[int, list[TaskResult]] = {}
        for r in train:
            by_window.setdefault(r.window, []).append(r)
        chosen = {w.index: select_best(by_window.get(w.index, []), config.select) for w in windows}
        test_specs = []
        for w in windows:
            best = chosen[w.index]
            if best is None:
                continue
            test_specs.append(TaskSpec(
                task_id=len(train_specs) + len(test_specs), params=dict(best.params),
                symbols=symbols, start=w.test_start, end=w.test_end,
                warmup_bars=config.warmup_bars, cash=config.cash,
                commission_bps=config.commission_bps, slippage_bps=config.slippage_bps,
                kind="test", window=w.index,
            ))
        with ReturnsWriter(returns_path) as writer:
            test = run_tasks(test_specs, bars, client=active, strategy=config.strategy,
                             on_result=writer.add, progress=config.progress,
                             label="test windows")
        tests = {r.window: r for r in test}
        rows = [WindowResult(w, chosen[w.index], tests.get(w.index), len(by_window.get(w.index, [])),
                             sum(1 for r in by_window.get(w.index, []) if not r.ok))
                for w in windows]
        return train, test, rows

    if client is not None:
        train, test, rows = run_both(client)
    else:
        with open_cluster(config.cluster) as opened:
            train, test, rows = run_both(opened)

    results = train + test
    oos = _stitch(rows)
    parquet_path = write_results_parquet(results, out_dir / "results.parquet")
    oos_summary: dict[str, Any] | None = None
    report_path = None
    if len(oos):
        stats = compute_stats(oos)
        mdd = stats.max_drawdown
        oos_summary = {
            "start": oos.index[0].date().isoformat(), "end": oos.index[-1].date().isoformat(),
            "bars": int(len(oos)), **stats.to_dict(),
            "calmar": stats.cagr / abs(mdd) if mdd < 0 else 0.0,
            "final_value": float(config.cash * (1.0 + oos).prod()),
        }
        if config.write_report:
            report_path = _write_tearsheet(config, bars, oos, out_dir)
    summary = summary_json(
        results,
        walk_forward={"spec": str(config.spec), "train": str(config.spec.train),
                      "test": str(config.spec.test), "anchored": config.spec.anchored,
                      "select": config.select, "warmup_bars": config.warmup_bars},
        strategy=(config.strategy or default_strategy()).__name__,
        grid=config.grid, fixed_params=config.fixed_params, symbols=list(symbols),
        data={"source": bars.source, "message": bars.message,
              "start": first.isoformat(), "end": last.isoformat()},
        ran_on=where,
        windows=[w.record() for w in rows],
        out_of_sample=oos_summary,
        files={"results": str(parquet_path), "returns": str(returns_path),
               **({"tearsheet": str(report_path)} if report_path else {})},
    )
    json_path = write_json(summary, config.json_path or out_dir / "walkforward.json")
    return WalkForwardOutcome(
        windows=rows, results=results, oos_returns=oos, summary=summary, out_dir=out_dir,
        json_path=json_path, parquet_path=parquet_path, report_path=report_path,
        message=bars.message,
    )


def _write_tearsheet(config: WalkForwardConfig, bars: BarSet, oos: pd.Series,
                     out_dir: Path) -> Path:
    """The quantstats tearsheet of the stitched out-of-sample curve vs buy & hold."""
    from analyzers.tearsheet import write_tearsheet

    days = bars.trading_days()
    base = days[days < oos.index[0]][-1]  # the session before the first out-of-sample day
    values = pd.concat([pd.Series([config.cash], index=[base]),
                        config.cash * (1.0 + oos).cumprod()])
    # the page covers the out-of-sample days only: the first one's return is real (measured
    # from ``base``, a warm-up day that is not part of the period)
    closes = {}
    for sym, frame in bars.frames.items():
        close = frame["close"].copy()
        idx = pd.DatetimeIndex(close.index)
        close.index = (idx.tz_convert("UTC").tz_localize(None) if idx.tz is not None else idx).normalize()
        closes[sym] = close.loc[(close.index >= base) & (close.index <= oos.index[-1])]
    bench = buy_and_hold_returns(closes)
    path = config.report_path or out_dir / "walkforward.html"
    return write_tearsheet(
        values, path, benchmark=bench, benchmark_title="Buy & hold", returns=oos,
        title=f"Walk-forward {config.spec} ({config.select}) on {', '.join(bars.frames)}: "
              f"out-of-sample",
    )
