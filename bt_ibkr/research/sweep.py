"""Parameter sweeps: every combination of a grid, one Cerebro backtest each, on Dask or serially.

    from bt_ibkr.research import DataConfig, SweepConfig, parse_grid, run_sweep
    outcome = run_sweep(SweepConfig(
        grid=parse_grid(["band=0.05,0.1,0.2", "target_vol=0.08,0.12"]),
        data=DataConfig(symbols=["^GSPC", "^IXIC"], source="sample"),
    ))
    print(outcome.summary["results"][0])

The bars are loaded once (the backtest's source chain) and scattered to the workers; each task
returns metrics and daily returns only. Outputs (under ``out_dir``): ``results.parquet``,
``returns.parquet``, ``sweep.json`` and the HTML summary ``sweep.html``.

A sweep of more than ``ESTIMATE_ABOVE`` tasks first times one task here and says how long the
whole grid should take (``notify``) before it starts. A sweep whose Dask scheduler is lost
mid-run writes every output from the results that had arrived (``sweep.json`` says
``"interrupted"`` and lists the missing task ids) and then raises SweepInterrupted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bt_ibkr.backtest_run import check_history_length, check_outputs, slug, warmup_bars
from bt_ibkr.costs import DEFAULT_COMMISSION_BPS, DEFAULT_SLIPPAGE_BPS, Costs
from bt_ibkr.errors import ConfigError
from bt_ibkr.research.cluster import (
    ClusterConfig,
    SchedulerLostError,
    estimate_run,
    open_cluster,
    run_tasks,
)
from bt_ibkr.research.data import DataConfig, load_bars
from bt_ibkr.research.grid import expand_grid
from bt_ibkr.research.results import (
    ReturnsWriter,
    summary_json,
    write_json,
    write_results_parquet,
)
from bt_ibkr.research.tasks import METRICS, BarSet, TaskResult, TaskSpec, default_strategy

__all__ = ["ESTIMATE_ABOVE", "SweepConfig", "SweepInterrupted", "SweepOutcome", "check_common",
           "period_label", "plan_sweep", "run_sweep"]

log = logging.getLogger("bt_ibkr.research")

ESTIMATE_ABOVE = 10_000  # tasks: a larger sweep says how long it should take before it starts


class SweepInterrupted(SchedulerLostError):
    """The scheduler was lost mid-sweep; the outputs hold the results that had arrived.

    ``outcome`` is the SweepOutcome of those results (its files are written).
    """

    def __init__(self, lost: SchedulerLostError, outcome: SweepOutcome):
        super().__init__(lost.where, lost.results, lost.missing)
        self.outcome = outcome
        self.args = (
            f"{lost.summary}; the {len(lost.results)} finished are kept in {outcome.out_dir} "
            f"(sweep.json lists the {len(lost.missing)} missing); start the scheduler again and "
            f"rerun the sweep",)


def check_common(config: Any) -> None:
    """Check what sweeps and walk-forwards share: costs (the rules of ``python -m
    examples.backtest``), grid vs ``--param`` names, the cluster settings.

    Raises ConfigError naming the first bad field.
    """
    Costs.of(config).validate()
    both = sorted(set(config.grid) & set(config.fixed_params))
    if both:
        raise ConfigError(f"{', '.join(both)} is given both in --grid and --param: keep one")
    config.cluster.validate()
    check_outputs((("--json", config.json_path), ("--report", config.report_path)))
    if config.out_dir is not None:  # checked now, not when the results are due
        out = Path(config.out_dir)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: is a file; give a folder")
        base = next(p for p in (out, *out.parents) if p.exists())  # created only by the run
        if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"--out {out}: {base} is not a writable folder; choose another")


def check_warmup(config: Any, bars: BarSet) -> None:
    """Raise DataError when a symbol's bars cannot cover the Strategy's warm-up, one decision
    and its fill under any combination of the grid (the backtest's rule,
    :func:`bt_ibkr.backtest_run.check_history_length`, with the shortest warm-up of the grid): no
    task would trade, and every result would be an empty run."""
    strategy = config.strategy or default_strategy()
    need = min(warmup_bars(strategy, {**config.fixed_params, **combo})
               for combo in expand_grid(config.grid))
    check_history_length(bars.frames, need, strategy.__name__)


def period_label(results: list[TaskResult]) -> str:
    """Return the metrics' period of a sweep's tasks, labelled as ``examples.backtest`` labels a
    run (after the warm-up): ``period 2000-01-31..2018-12-31``, or a range of first days when
    the warm-up depends on the params."""
    ok = [r.period() for r in results if r.ok]
    if not ok:
        return "no period (every task failed)"
    firsts = sorted({p[0] for p in ok})
    lasts = sorted({p[1] for p in ok})
    first = str(firsts[0]) if len(firsts) == 1 else f"{firsts[0]}/{firsts[-1]}"
    last = str(lasts[-1])
    note = " (the first day depends on the params' warm-up)" if len(firsts) > 1 else ""
    return f"period {first}..{last}{note}"


@dataclass
class SweepConfig:
    """A sweep: the grid, the data, where it runs and what it writes."""

    grid: dict[str, list[Any]]
    data: DataConfig = field(default_factory=DataConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    fixed_params: dict[str, Any] = field(default_factory=dict)  # same for every task
    per_symbol: bool = False  # one symbol per task instead of one portfolio of all symbols
    cash: float = 100_000.0
    commission_bps: float = DEFAULT_COMMISSION_BPS
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS
    out_dir: Path | None = None  # None -> reports/sweep-<symbols>-<start>-<end>
    json_path: Path | None = None  # None -> <out_dir>/sweep.json
    report_path: Path | None = None  # None -> <out_dir>/sweep.html
    write_report: bool = True
    metric: str = "sharpe"  # heatmap / ranking metric
    top: int = 10
    strategy: type | None = None  # None -> strategies.RegimeAwareEnsemble
    progress: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if self.metric not in METRICS:
            raise ConfigError(f"--metric {self.metric}: expected one of {', '.join(METRICS)}")
        if self.top < 1:
            raise ConfigError(f"--top {self.top}: must be >= 1")
        check_common(self)


@dataclass
class SweepOutcome:
    """What a sweep produced (results hold metrics; returns are in ``returns_path``)."""

    results: list[TaskResult]
    summary: dict[str, Any]
    out_dir: Path
    json_path: Path
    parquet_path: Path
    returns_path: Path
    report_path: Path | None
    message: str

    @property
    def failed(self) -> list[TaskResult]:
        """The tasks that failed, in task order."""
        return [r for r in self.results if not r.ok]


def plan_sweep(
    grid: dict[str, list[Any]],
    bars: BarSet,
    *,
    fixed_params: dict[str, Any] | None = None,
    per_symbol: bool = False,
    cash: float = 100_000.0,
    commission_bps: float = DEFAULT_COMMISSION_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
) -> list[TaskSpec]:
    """Return one TaskSpec per grid combination (x symbol when ``per_symbol``), ids 0..n-1.

    Every task covers the whole loaded span of its symbols, with no extra warm-up: it is the
    backtest ``python -m examples.backtest`` would run with those params.
    """
    sets = [(s,) for s in bars.frames] if per_symbol else [tuple(bars.frames)]
    specs: list[TaskSpec] = []
    for combo in expand_grid(grid):
        params = {**(fixed_params or {}), **combo}
        for symbols in sets:
            first, last = BarSet({s: bars.frames[s] for s in symbols}).span()
            specs.append(TaskSpec(
                task_id=len(specs), params=params, symbols=symbols, start=first, end=last,
                cash=cash, commission_bps=commission_bps, slippage_bps=slippage_bps,
            ))
    return specs


def _default_dir(kind: str, bars: BarSet) -> Path:
    first, last = bars.span()
    return Path("reports") / f"{kind}-{slug(','.join(bars.frames))}-{first}-{last}"


def run_sweep(config: SweepConfig, *, bars: BarSet | None = None, client=None,
              notify=None) -> SweepOutcome:
    """Run the sweep and write its outputs; return a SweepOutcome.

    ``bars`` skips loading (use these frames); ``client`` reuses a connected Dask client
    instead of opening ``config.cluster``; ``notify(line)`` receives the time estimate of a
    sweep of more than ESTIMATE_ABOVE tasks before it starts (default: the log). Failed tasks
    are in the outcome and the JSON's ``failed`` list; this call does not raise for them.

    Raises:
        ConfigError: a bad config value (metric, cash, commission, cluster settings).
        DataError: no source could serve the symbols.
        ClusterError: the Dask scheduler could not be reached.
        SweepInterrupted: the scheduler was lost mid-run, after every output was written from
            the results that had arrived.
    """
    config.validate()
    bars = bars if bars is not None else load_bars(config.data)
    check_warmup(config, bars)
    specs = plan_sweep(
        config.grid, bars, fixed_params=config.fixed_params, per_symbol=config.per_symbol,
        cash=config.cash, commission_bps=config.commission_bps, slippage_bps=config.slippage_bps,
    )
    out_dir = Path(config.out_dir) if config.out_dir else _default_dir("sweep", bars)
    out_dir.mkdir(parents=True, exist_ok=True)
    returns_path = out_dir / "returns.parquet"
    where = "the given Dask client" if client is not None else config.cluster.describe()
    log.info("sweep: %d tasks on %s; %s", len(specs), where, bars.message)
    say = notify or log.info
    lost: SchedulerLostError | None = None
    with contextlib.ExitStack() as stack:
        # the cluster first: a scheduler that does not answer leaves no file behind
        active = client if client is not None else stack.enter_context(
            open_cluster(config.cluster))
        writer = stack.enter_context(ReturnsWriter(returns_path))
        timed_first: list[TaskResult] = []
        todo = specs
        if len(specs) > ESTIMATE_ABOVE:
            estimate, timed = estimate_run(specs, bars, active, config.strategy)
            say(f"sweep: {estimate.describe()} ({where})")
            writer.add(timed)
            timed.returns = None
            timed_first, todo = [timed], specs[1:]
        try:
            results = timed_first + run_tasks(
                todo, bars, client=active, strategy=config.strategy, on_result=writer.add,
                keep_returns=False, progress=config.progress, label="sweep")
        except SchedulerLostError as exc:
            lost = exc
            results = sorted(timed_first + exc.results, key=lambda r: r.task_id)
    missing = lost.missing if lost is not None else []
    parquet_path = write_results_parquet(results, out_dir / "results.parquet")
    first, last = bars.span()
    summary = summary_json(
        results,
        strategy=(config.strategy or default_strategy()).__name__,
        grid=config.grid,
        fixed_params=config.fixed_params,
        metric=config.metric,
        symbols=list(bars.frames),
        data={"source": bars.source, "message": bars.message,
              "start": first.isoformat(), "end": last.isoformat()},
        ran_on=where,
        files={"results": str(parquet_path), "returns": str(returns_path)},
    )
    if lost is not None:
        summary["tasks"] = len(specs)
        summary["interrupted"] = {"reason": lost.summary, "missing_task_ids": missing}
    report_path = None
    if config.write_report:
        from bt_ibkr.research.report import write_sweep_report

        report_path = config.report_path or out_dir / "sweep.html"
        ok = [r for r in results if r.ok]
        report_path = write_sweep_report(
            results, returns_path, report_path, grid=config.grid, metric=config.metric,
            top=config.top, title=f"Sweep on {', '.join(bars.frames)}",
            subtitle=f"{period_label(results)} (data {first}..{last}), {len(results)} tasks "
                     f"({len(ok)} ok), {where}",
        )
        summary["files"]["report"] = str(report_path)
    json_path = write_json(summary, config.json_path or out_dir / "sweep.json")
    outcome = SweepOutcome(
        results=results, summary=summary, out_dir=out_dir, json_path=json_path,
        parquet_path=parquet_path, returns_path=returns_path, report_path=report_path,
        message=bars.message,
    )
    if lost is not None:
        raise SweepInterrupted(lost, outcome)
    return outcome

