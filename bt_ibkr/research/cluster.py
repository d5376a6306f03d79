"""Running many tasks: in-process (serial) or on Dask, a LocalCluster or any existing cluster.

``open_cluster(ClusterConfig(...))`` yields a ``distributed.Client`` (or None for ``serial``):

- default: a ``distributed.LocalCluster`` with one single-threaded worker process per core
  (backtrader is pure Python, so threads would share one GIL);
- ``scheduler="tcp://host:port"`` (or a scheduler JSON file): an existing cluster - started by
  hand with ``dask scheduler`` / ``dask worker``, or by any Dask deployment (Kubernetes, SLURM,
  cloud); the workers need bt_ibkr importable;
- ``serial=True``: no Dask at all, every task runs in this process (debugging, baselines).

``run_tasks(specs, bars, client=...)`` scatters the bars to every worker ONCE (not once per
task), submits one Dask task per TaskSpec, shows a progress bar, and returns the TaskResults in
spec order. A task that fails is a TaskResult with its error (the others finish). A worker that
dies mid-run costs only its tasks: the scheduler re-runs them elsewhere, and if the bars were
lost with it they are scattered again. Results are identical to a serial run. A SCHEDULER that
dies mid-run cannot be worked around (it held every task's state): ``run_tasks`` raises
:class:`SchedulerLostError`, which carries the results that had arrived.

``estimate_run(specs, bars, client, strategy)`` times the first task in this process and
returns a :class:`RunEstimate` (how long all of them should take on the cluster's threads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bt_ibkr.errors import BtIbkrError, ConfigError
from bt_ibkr.progress import progress as progress_bar
from bt_ibkr.research.tasks import BarSet, TaskResult, TaskSpec, run_task

__all__ = [
    "ClusterConfig",
    "ClusterError",
    "RunEstimate",
    "SchedulerLostError",
    "available_cores",
    "estimate_run",
    "open_cluster",
    "route_dask_logs",
    "run_tasks",
]

log = logging.getLogger("bt_ibkr.research")

DASK_LOGGERS = ("distributed", "dask", "tornado", "bokeh", "asyncio")
MAX_RESCATTERS = 3


class ClusterError(BtIbkrError):
    """The Dask cluster could not be reached or started (the message says what to do)."""


class SchedulerLostError(ClusterError):
    """The connection to the Dask scheduler was lost mid-run.

    ``results`` holds the TaskResults that had arrived (in spec order), ``missing`` the ids of
    the tasks without one, ``where`` the scheduler as the user named it.
    """

    def __init__(self, where: str, results: list[TaskResult], missing: list[int]):
        self.where = where
        self.results = results
        self.missing = missing
        done = len(results)
        self.summary = f"lost the Dask scheduler ({where}) after {done} of {done + len(missing)} tasks"
        super().__init__(f"{self.summary}; start the scheduler again and rerun")


def _scheduler_lost(client, exc: BaseException) -> bool:
    """True when a future failed because this client lost its scheduler (every pending future
    is then cancelled with the reason 'scheduler-connection-lost'), not because of its task."""
    if getattr(exc, "reason", None) == "scheduler-connection-lost":
        return True
    return getattr(client, "status", "running") not in ("running", "newly-created")


def available_cores() -> int:
    """Return the CPU cores this process may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass
class ClusterConfig:
    """Where tasks run. Default: a LocalCluster with ``workers`` processes (default: the cores)."""

    scheduler: str | None = None  # tcp://host:port or a scheduler file; None -> LocalCluster
    workers: int | None = None  # LocalCluster worker processes (default available_cores())
    serial: bool = False  # run in this process, no Dask
    processes: bool = True  # LocalCluster: worker processes (False: threads of this process)
    threads_per_worker: int = 1
    timeout: float = 30.0  # seconds to reach the scheduler

    def validate(self) -> None:
        """Raise ConfigError naming the first contradictory or bad setting."""
        if self.serial and self.scheduler:
            raise ConfigError("--serial and --scheduler contradict each other: pick one")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: must be >= 1")
        if self.workers is not None and (self.scheduler or self.serial):
            what = "--scheduler" if self.scheduler else "--serial"
            raise ConfigError(f"--workers applies to the local cluster only, not with {what}")

    def describe(self) -> str:
        """One line saying where tasks run."""
        if self.serial:
            return "serial (in this process)"
        if self.scheduler:
            return f"Dask cluster at {self.scheduler}"
        n = self.workers or available_cores()
        kind = "processes" if self.processes else "threads"
        return f"Dask LocalCluster, {n} worker {kind}"


def route_dask_logs(path: Path | str) -> None:
    """Send Dask's (distributed, tornado, ...) log records to ``path`` only, not to the console.

    Imports distributed first: its import installs a console handler of its own.
    """
    import distributed  # noqa: F401

    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in DASK_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False


def probe_scheduler(address: str, timeout: float) -> None:
    """Open and close a TCP connection to a ``tcp://host:port`` scheduler address; returns
    None (other protocols are left to Dask).

    Raises:
        ClusterError: nothing listens there (refused at once) or no answer within ``timeout``.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme != "tcp" or not parts.hostname or not parts.port:
        return
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return
    except OSError as exc:
        why = "nothing listens there" if isinstance(exc, ConnectionRefusedError) else str(exc)
        raise ClusterError(
            f"--scheduler {address}: {why}; start one with `dask scheduler` and `dask worker`, "
            "check the address, or drop --scheduler to use a local cluster") from None


@contextlib.contextmanager
def open_cluster(config: ClusterConfig) -> Iterator[object | None]:
    """Yield a connected ``distributed.Client`` (None when ``config.serial``); close it after.

    Raises:
        ConfigError: contradictory settings (see ClusterConfig.validate).
        ClusterError: the scheduler at ``config.scheduler`` did not answer within the timeout,
            or the local cluster could not start.
    """
    config.validate()
    if config.serial:
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if config.scheduler:
            target = config.scheduler
            if not Path(target).is_file():
                probe_scheduler(target, min(config.timeout, 5.0))
            if Path(target).is_file():
                client = Client(scheduler_file=target, timeout=config.timeout)
            else:
                client = Client(target, timeout=config.timeout)
        else:
            import dask

            # no dashboard, so no use for the workers' sampling profiler (~3% of a task's CPU)
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = LocalCluster(
                    n_workers=config.workers or available_cores(),
                    threads_per_worker=config.threads_per_worker,
                    processes=config.processes,
                    host="127.0.0.1",  # a local cluster listens on loopback only
                    protocol="tcp://",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            client = Client(cluster)
    except (OSError, TimeoutError) as exc:
        if cluster is not None:
            cluster.close()
        where = config.scheduler or "a local cluster"
        raise ClusterError(
            f"could not reach the Dask scheduler at {where} within {config.timeout:g} s ({exc}); "
            f"start one with `dask scheduler` and `dask worker`, check the address, or drop "
            f"--scheduler to use a local cluster"
        ) from None
    log.info("research: %s (%s)", config.describe(), client)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _infrastructure_failure(spec: TaskSpec, exc: BaseException) -> TaskResult:
    message = " ".join(str(exc).split()) or repr(exc)
    return TaskResult(
        task_id=spec.task_id, params=dict(spec.params), symbols=tuple(spec.symbols),
        start=spec.start, end=spec.end, kind=spec.kind, window=spec.window,
        error=f"dask {type(exc).__name__}: {message}",
    )


def _run_dask(client, specs, bars, strategy, done: Callable[[TaskSpec, TaskResult], None]) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:8]
    state = {"bars": client.scatter(bars, broadcast=True, hash=False), "rescatters": 0}
    pending: dict[str, tuple[TaskSpec, int, object]] = {}  # key -> (spec, attempt, bars used)

    def submit(spec: TaskSpec, attempt: int = 0):
        fut = client.submit(
            run_task, spec, state["bars"], strategy, pure=False,
            key=f"bt-task-{token}-{spec.task_id}-{attempt}",
        )
        pending[fut.key] = (spec, attempt, state["bars"])
        return fut

    queue = as_completed([submit(spec) for spec in specs])
    for fut in queue:
        spec, attempt, used = pending.pop(fut.key)
        if fut.status == "finished":
            result = fut.result()
        else:
            exc = _exception(fut)
            if _scheduler_lost(client, exc):
                # every pending future was cancelled with this one: nothing more will arrive,
                # and nothing may be sent (no release, no re-scatter) to a scheduler that is gone
                raise SchedulerLostError(_address(client), [], [])
            # The scattered bars died with every worker holding them (the scheduler re-runs
            # the tasks of a dead worker by itself, but cannot rebuild scattered data): scatter
            # them again, once for all such tasks, and re-run the task.
            if used.status != "finished" and attempt < MAX_RESCATTERS:
                if state["bars"].status != "finished" and state["rescatters"] < MAX_RESCATTERS:
                    state["rescatters"] += 1
                    log.warning("research: the bars were lost with a worker; sending them again")
                    state["bars"] = client.scatter(bars, broadcast=True, hash=False)
                if state["bars"].status == "finished":
                    queue.add(submit(spec, attempt + 1))
                    fut.release()
                    continue
            result = _infrastructure_failure(spec, exc)
        fut.release()
        done(spec, result)
    state["bars"].release()


def _address(client) -> str:
    try:
        return str(client.scheduler.address)
    except AttributeError:
        return "the scheduler"


def _exception(fut) -> BaseException:
    """The exception of a failed or cancelled future (a cancelled one raises it)."""
    try:
        return fut.exception(timeout=5) or RuntimeError(f"task {fut.key} {fut.status}")
    except Exception as exc:  # noqa: BLE001 - FutureCancelledError, TimeoutError
        return exc


def run_tasks(
    specs: Sequence[TaskSpec],
    bars: BarSet,
    *,
    client=None,
    strategy: type | None = None,
    on_result: Callable[[TaskResult], None] | None = None,
    keep_returns: bool = True,
    progress: bool = True,
    label: str = "tasks",
) -> list[TaskResult]:
    """Run every spec and return the TaskResults in spec order.

    Args:
        client: a ``distributed.Client`` (see open_cluster); None runs serially in-process.
        strategy: the Strategy class (default strategies.RegimeAwareEnsemble); it must be
            importable on the workers.
        on_result: called with each TaskResult as it arrives (in completion order), e.g. to
            write its returns to disk.
        keep_returns: False drops each result's returns series after ``on_result`` saw it, so
            memory does not grow with the number of tasks.
        progress: a rich progress bar over tasks on stderr.

    Task-level failures are TaskResults with ``error`` set. Raises ConfigError for duplicate
    task ids, and SchedulerLostError (with the results that had arrived) when the connection to
    the Dask scheduler is lost mid-run.
    """
    ids = [s.task_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ConfigError("task ids must be unique within one run")
    results: dict[int, TaskResult] = {}
    failed = 0
    with progress_bar(len(specs), label, enabled=progress, minimum=1) as advance:

        def done(spec: TaskSpec, result: TaskResult) -> None:
            nonlocal failed
            if on_result is not None:
                on_result(result)
            if not keep_returns:
                result.returns = None
            results[spec.task_id] = result
            failed += 0 if result.ok else 1
            advance(f"({failed} failed)" if failed else "")

        if client is None:
            for spec in specs:
                done(spec, run_task(spec, bars, strategy))
        else:
            try:
                _run_dask(client, list(specs), bars, strategy, done)
            except SchedulerLostError as exc:
                raise SchedulerLostError(
                    exc.where, [results[i] for i in ids if i in results],
                    [i for i in ids if i not in results]) from None
    return [results[i] for i in ids]


@dataclass(frozen=True)
class RunEstimate:
    """How long a run should take: ``tasks`` at ``seconds_per_task`` (one timed in this
    process) on ``threads`` worker threads."""

    tasks: int
    seconds_per_task: float
    threads: int

    @property
    def seconds(self) -> float:
        """Estimated wall time of all tasks, assuming the threads stay busy."""
        return self.tasks * self.seconds_per_task / max(1, self.threads)

    def describe(self) -> str:
        """One line: the task count, the timed task and the estimate, e.g. 'about 1 h 05 m'."""
        return (f"{self.tasks:,} tasks; one took {self.seconds_per_task:.2f} s here, so about "
                f"{_duration(self.seconds)} on {self.threads} worker thread"
                f"{'s' if self.threads != 1 else ''}")


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return f"{max(1, round(seconds))} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"


def cluster_threads(client) -> int:
    """Worker threads of ``client``'s cluster right now (1 for a serial run)."""
    if client is None:
        return 1
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - a scheduler that cannot say: assume one
        return 1


def estimate_run(specs: Sequence[TaskSpec], bars: BarSet, client=None,
                 strategy: type | None = None) -> tuple[RunEstimate, TaskResult]:
    """Run the first spec in this process, timed; return (the estimate for all ``specs`` on
    ``client``'s threads, that first result, to be kept rather than run again)."""
    import time

    t0 = time.perf_counter()
    first = run_task(specs[0], bars, strategy)
    took = time.perf_counter() - t0
    return RunEstimate(len(specs), took, cluster_threads(client)), first
