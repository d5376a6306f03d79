"""Research at scale: parameter sweeps and walk-forward tests on Dask.

Each task is one full Cerebro backtest of one parameter set on one symbol set and window
(:func:`run_task`); it returns metrics and daily returns, never Strategy objects. Tasks run on a
Dask LocalCluster, on any existing Dask cluster, or serially (:func:`open_cluster`,
:func:`run_tasks`), with the bars loaded once and scattered to the workers.

- :func:`run_sweep` (:class:`SweepConfig`): every combination of a parameter grid.
- :func:`run_walk_forward` (:class:`WalkForwardConfig`): select on train windows, trade the
  selection on the following test windows, stitch the out-of-sample curve.

The command line is ``python -m examples.sweep``.
"""

from bt_ibkr.research.cluster import ClusterConfig, ClusterError, open_cluster, run_tasks
from bt_ibkr.research.data import DataConfig, load_bars
from bt_ibkr.research.grid import (
    GridSpecError,
    WalkForwardSpec,
    expand_grid,
    parse_grid,
    parse_walk_forward,
)
from bt_ibkr.research.sweep import SweepConfig, SweepOutcome, plan_sweep, run_sweep
from bt_ibkr.research.tasks import BarSet, TaskResult, TaskSpec, run_task
from bt_ibkr.research.walkforward import (
    WalkForwardConfig,
    WalkForwardOutcome,
    Window,
    plan_windows,
    run_walk_forward,
    select_best,
)

__all__ = [
    "BarSet",
    "ClusterConfig",
    "ClusterError",
    "DataConfig",
    "GridSpecError",
    "SweepConfig",
    "SweepOutcome",
    "TaskResult",
    "TaskSpec",
    "WalkForwardConfig",
    "WalkForwardOutcome",
    "WalkForwardSpec",
    "Window",
    "expand_grid",
    "load_bars",
    "open_cluster",
    "parse_grid",
    "parse_walk_forward",
    "plan_sweep",
    "plan_windows",
    "run_sweep",
    "run_task",
    "run_tasks",
    "run_walk_forward",
    "select_best",
]
