"""A real Dask cluster (``dask scheduler`` + two ``dask worker`` processes on 127.0.0.1) runs a
sweep through ``python -m examples.sweep --scheduler``; one worker is killed while it executes a
task, and the results are still complete and equal to a serial run of the same tasks. When the
scheduler itself is killed, the sweep exits 3 with one line and keeps what had finished."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from helpers.sim import poll_until

from bt_ibkr.research import BarSet, ClusterConfig, TaskSpec, open_cluster, run_task, run_tasks
from feeds.sample import load_sample

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parents[1]
GRID = {"band": [0.02, 0.05, 0.1], "target_vol": [0.08, 0.12]}
START, END = date(2010, 1, 1), date(2012, 12, 31)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    return env


@contextlib.contextmanager
def _local_cluster(tmp_path: Path, nthreads: int):
    """Start a scheduler and 2 workers of ``nthreads`` threads (no nanny: a killed worker stays
    dead) as real processes; kill them all on exit, whatever happens. Yields
    (scheduler_file, scheduler Popen, [worker Popen], client)."""
    from distributed import Client

    sched_file = tmp_path / "scheduler.json"
    logs = tmp_path / "cluster-logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    client = None

    def spawn(args, name):
        proc = subprocess.Popen(args, env=_env(), cwd=tmp_path, stdout=(logs / name).open("w"),
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        scheduler = spawn([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                           "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                          "scheduler.log")
        poll_until(sched_file.exists, timeout=60, what="the scheduler file", interval=0.02)
        workers = [
            spawn([sys.executable, "-m", "dask", "worker", "--scheduler-file", str(sched_file),
                   "--nthreads", str(nthreads), "--nworkers", "1", "--no-dashboard",
                   "--host", "127.0.0.1", "--no-nanny"], f"worker{i}.log")
            for i in range(2)
        ]
        client = Client(scheduler_file=str(sched_file), timeout=60)
        client.wait_for_workers(2, timeout=60)
        yield sched_file, scheduler, workers, client
    finally:
        if client is not None:
            client.close(timeout=5)
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            proc.wait(timeout=30)


@pytest.fixture
def cluster(tmp_path):
    """Scheduler + 2 single-threaded workers. Yields (scheduler_file, {worker_address: Popen},
    client)."""
    with _local_cluster(tmp_path, nthreads=1) as (sched_file, _scheduler, workers, client):
        pids = client.run(os.getpid)
        by_address = {addr: next(w for w in workers if w.pid == pid) for addr, pid in pids.items()}
        yield sched_file, by_address, client



def _executing(client) -> dict[str, list[str]]:
    """Worker address -> sweep task keys it is executing right now."""
    return {addr: [k for k in keys if str(k).startswith("bt-task-")]
            for addr, keys in client.call_stack().items()
            if any(str(k).startswith("bt-task-") for k in keys)}


@pytest.mark.slow
def test_worker_killed_mid_sweep_costs_only_a_rerun(cluster, tmp_path):
    from distributed import Event

    sched_file, workers, client = cluster
    gate = Event("bt-ibkr-test-gate", client=client)
    gate.clear()
    out = tmp_path / "out"
    args = [sys.executable, "-m", "examples.sweep", "--scheduler", str(sched_file),
            "--strategy", "helpers.research_gate:GatedEnsemble", "--source", "sample",
            "--symbols", "^GSPC", "--start", START.isoformat(), "--end", END.isoformat(),
            "--grid", "band=0.02,0.05,0.1", "--grid", "target_vol=0.08,0.12",
            "--no-report", "--no-progress", "--out", str(out)]
    cli = subprocess.Popen(args, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        # Both workers hold a task open at the gate: a state, not a moment in time.
        poll_until(lambda: len(_executing(client)) == 2 or cli.poll() is not None,
                   timeout=120, what="a task executing on each worker", interval=0.02)
        assert cli.poll() is None, cli.stdout.read()
        busy = _executing(client)
        victim_addr = sorted(busy)[0]
        victim = workers[victim_addr]
        victim_pid = victim.pid
        in_flight = busy[victim_addr]
        victim.kill()
        victim.wait(timeout=30)
        poll_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60,
                   what="the scheduler to drop the killed worker")
        gate.set()
        output, _ = cli.communicate(timeout=180)
    finally:
        gate.set()
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=30)
    assert cli.returncode == 0, output

    summary = json.loads((out / "sweep.json").read_text())
    assert summary["tasks"] == 6 and summary["failed"] == []
    table = pd.read_parquet(out / "results.parquet").set_index("task_id")
    # the task the killed worker was running was re-run by the surviving worker
    rerun = [int(k.split("-")[3]) for k in in_flight]
    assert rerun and all(not table.loc[t, "worker"].endswith(f":{victim_pid}") for t in rerun)

    # complete and bit-identical to a serial run of the same tasks (the ungated Strategy)
    frame = load_sample("^GSPC", START, END)
    bars = BarSet({"^GSPC": frame})
    first, last = bars.span()
    returns = pd.read_parquet(out / "returns.parquet")
    for rec in summary["results"]:
        spec = TaskSpec(rec["task_id"], rec["params"], ("^GSPC",), first, last)
        serial = run_task(spec, bars)
        assert serial.ok
        for key in ("sharpe", "cagr", "max_drawdown", "volatility", "sortino", "trades",
                    "final_value"):
            assert rec[key] == getattr(serial, key), (rec["task_id"], key)
        got = returns[returns["task_id"] == rec["task_id"]]
        assert got["ret"].tolist() == serial.returns.tolist()
    assert sorted(r["task_id"] for r in summary["results"]) == list(range(6))
    assert {tuple(sorted(r["params"].items())) for r in summary["results"]} == {
        (("band", b), ("target_vol", v)) for b in GRID["band"] for v in GRID["target_vol"]}


@pytest.mark.slow
def test_bars_lost_with_the_only_worker_are_sent_again(caplog):
    """The one worker of a LocalCluster dies mid-task (its nanny starts a new one): the
    scattered bars died with it, so they are scattered again and every task still finishes,
    equal to serial."""
    from distributed import Event
    from helpers.research_gate import GATE, GatedEnsemble

    frame = load_sample("^GSPC", date(2011, 1, 1), date(2012, 12, 31))
    bars = BarSet({"^GSPC": frame})
    first, last = bars.span()
    specs = [TaskSpec(i, {"band": b}, ("^GSPC",), first, last) for i, b in enumerate((0.02, 0.1, 0.2))]
    with open_cluster(ClusterConfig(workers=1)) as client:
        gate = Event(GATE, client=client)
        gate.clear()
        (old_addr, old_pid), = client.run(os.getpid).items()
        errors: list[BaseException] = []

        def kill_then_open_gate():
            try:
                poll_until(lambda: any(_executing(client).values()), timeout=120,
                           what="a task executing", interval=0.02)
                os.kill(old_pid, signal.SIGKILL)
                poll_until(lambda: set(client.scheduler_info()["workers"]) - {old_addr},
                           timeout=120, what="the nanny's new worker", interval=0.05)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                gate.set()

        helper = threading.Thread(target=kill_then_open_gate, daemon=True)
        helper.start()
        with caplog.at_level("WARNING", logger="bt_ibkr.research"):
            results = run_tasks(specs, bars, client=client, strategy=GatedEnsemble, progress=False)
        helper.join(timeout=120)
    assert not errors, errors
    assert "the bars were lost with a worker; sending them again" in caplog.text
    assert all(r.ok for r in results) and all(not r.worker.endswith(f":{old_pid}") for r in results)
    for r in results:
        serial = run_task(specs[r.task_id], bars)
        assert r.record() == serial.record() and r.returns.equals(serial.returns)


@pytest.fixture
def doomed_cluster(tmp_path):
    """Scheduler + 2 workers of 2 threads whose scheduler the test kills: four task slots, so
    no task of a four-task sweep ever waits in a worker's queue behind a task held at the gate
    (with one thread each, Dask may queue an ungated task behind a gated one, and the state
    the test waits for never comes). Yields (scheduler_file, scheduler Popen, client)."""
    with _local_cluster(tmp_path, nthreads=2) as (sched_file, scheduler, _workers, client):
        yield sched_file, scheduler, client


@pytest.mark.slow
def test_scheduler_lost_mid_sweep_exits_3_with_one_line_and_keeps_what_finished(
        doomed_cluster, tmp_path):
    """Two tasks finish, two are held open at the gate, then the scheduler dies: the sweep
    stops with exit 3 and one line, and its files hold the two that finished."""
    from distributed import Event
    from helpers.research_gate import GATE, SomeGatedEnsemble

    sched_file, scheduler, client = doomed_cluster
    Event(GATE, client=client).clear()
    address = json.loads(sched_file.read_text())["address"]
    out = tmp_path / "out"
    args = [sys.executable, "-m", "examples.sweep", "--scheduler", str(sched_file),
            "--strategy", "helpers.research_gate:SomeGatedEnsemble", "--source", "sample",
            "--symbols", "^GSPC", "--start", START.isoformat(), "--end", END.isoformat(),
            "--grid", "band=0.05,0.1", "--grid", "gated=false,true", "--no-progress",
            "--out", str(out)]
    cli = subprocess.Popen(args, env=_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)

    def on_scheduler() -> set[int]:
        keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in
                                                               dask_scheduler.tasks])
        return {int(k.split("-")[3]) for k in keys if k.startswith("bt-task-")}

    try:
        # tasks 0 and 2 (gated=false) came back and were released by the sweep; 1 and 3
        # (gated=true) are executing at the gate: a state, not a moment
        poll_until(lambda: cli.poll() is not None or (
            on_scheduler() == {1, 3}
            and sum(len(keys) for keys in _executing(client).values()) == 2),
            timeout=120, what="two tasks finished and two held at the gate", interval=0.05)
        assert cli.poll() is None, cli.communicate()
        scheduler.kill()
        scheduler.wait(timeout=30)
        stdout, stderr = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(timeout=30)
    assert cli.returncode == 3, (stdout, stderr)
    assert stderr.count("\n") == 1, stderr  # one line, no traceback
    assert stderr.startswith(f"error: lost the Dask scheduler ({address}) after 2 of 4 tasks; "
                             f"the 2 finished are kept in {out}"), stderr
    assert "rerun" in stderr
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["tasks"] == 4 and summary["failed"] == []
    assert [r["task_id"] for r in summary["results"]] == [0, 2]
    assert summary["interrupted"]["missing_task_ids"] == [1, 3]
    table = pd.read_parquet(out / "results.parquet")
    assert table["task_id"].tolist() == [0, 2] and table["error"].isna().all()
    returns = pd.read_parquet(out / "returns.parquet")
    assert sorted(returns["task_id"].unique()) == [0, 2]
    # what was kept is the real result: equal to a serial run of the same task
    frame = load_sample("^GSPC", START, END)
    bars = BarSet({"^GSPC": frame})
    first, last = bars.span()
    serial = run_task(TaskSpec(2, {"band": 0.1, "gated": False}, ("^GSPC",), first, last), bars,
                      SomeGatedEnsemble)
    assert summary["results"][1]["sharpe"] == serial.sharpe
    assert returns[returns["task_id"] == 2]["ret"].tolist() == serial.returns.tolist()
