"""A parameter sweep on Dask vs the same tasks serially vs backtrader's optstrategy, in one run.

    python -m bench.sweep [--feeds 50] [--years 2] [--repeats 3] [--rss-feeds 5] [--quick]

Data: ``--feeds`` seeded synthetic daily stocks (geometric random walks with their own drift
and volatility, seed 0; validated canonical frames), ``--years`` x 252 sessions each. Grid: 20
combinations (band 0.02..0.2 x target_vol 0.08..0.15) of RegimeAwareEnsemble, every task one
portfolio of all the feeds. Measured in wall-clock seconds (parallel work cannot be measured in
CPU time), each of 1-3 ``--repeats`` times, interleaved; other processes on a shared machine
only ever add time, so the fastest repeat is reported (as timeit does), every repeat in
``runs_s``:

1. ``serial_s``: bt_ibkr.research.run_tasks in this process (imports warmed first);
2. ``dask_s``: the same tasks on a LocalCluster of 2 single-threaded worker processes: scatter
   the bars, run, gather (``dask_startup_s``, starting the cluster and importing the Strategy
   on the workers, is reported apart: a cluster serves many sweeps); ``speedup`` = serial_s /
   dask_s (target >= 1.6 on 2 cores) and ``identical``: every metric equal to the serial run;
3. ``optstrategy_s``: ``cerebro.optstrategy`` over the same grid and feeds, ``maxcpus=2``, with
   the same analyzers (equity, orders) - pool start included, as backtrader runs it;
   ``optstrategy_matches``: its final values equal ours; target dask_s <= optstrategy_s;
4. ``peak_rss_mb``: one fresh process per size runs a sweep of 20, then of 200 tasks
   (``--rss-feeds`` feeds x 2 years: smaller tasks, the same path: LocalCluster of 2, returns
   streamed to parquet) and reports the peak RSS of the client and of the largest worker;
   memory must not grow with the number of tasks.

Prints ONE JSON object: tasks, feeds, bars, cores, repeats, serial_s, dask_startup_s, dask_s,
speedup, identical, optstrategy_s, optstrategy_matches, dask_vs_optstrategy, serial_cpu_s and
dask_cpu_s (median CPU seconds of the serial run, and of the Dask run summed over the client
and both workers: Dask's own overhead, whatever else the machine runs), runs_s, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bt_ibkr.research import BarSet, ClusterConfig, TaskSpec, expand_grid, open_cluster, run_tasks
from bt_ibkr.research.cluster import available_cores
from bt_ibkr.research.results import ReturnsWriter

GRID = {"band": [0.02, 0.05, 0.1, 0.15, 0.2], "target_vol": [0.08, 0.1, 0.12, 0.15]}


def synthetic_bars(feeds: int, sessions: int, seed: int = 0) -> BarSet:
    """Return ``feeds`` validated daily frames of ``sessions`` bars from seeded random walks."""
    from bt_ibkr.validation import validate_bars

    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2010-01-04", periods=sessions, name="datetime")
    frames = {}
    for k in range(feeds):
        vol = rng.uniform(0.10, 0.40) / np.sqrt(252)
        drift = rng.uniform(-0.05, 0.15) / 252
        # regime-like volatility bursts so the Strategy trades in every regime
        scale = np.where(rng.random(sessions) < 0.1, 2.5, 1.0)
        rets = drift + vol * scale * rng.standard_normal(sessions)
        close = 50.0 * np.exp(np.cumsum(rets))
        open_ = close * np.exp(vol * 0.3 * rng.standard_normal(sessions))
        high = np.maximum(open_, close) * (1 + np.abs(vol * 0.5 * rng.standard_normal(sessions)))
        low = np.minimum(open_, close) * (1 - np.abs(vol * 0.5 * rng.standard_normal(sessions)))
        raw = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                            "volume": rng.integers(1e5, 1e6, sessions).astype(float)}, index=index)
        sym = f"SYN{k:02d}"
        frames[sym] = validate_bars(raw, sym, intraday=False, attrs={
            "symbol": sym, "source": "csv", "tz": "America/New_York", "adjusted": True})
    return BarSet(frames, "synthetic", f"{feeds} synthetic feeds x {sessions} sessions, seed {seed}")


def _specs(bars: BarSet, combos: list[dict]) -> list[TaskSpec]:
    first, last = bars.span()
    return [TaskSpec(i, p, tuple(bars.frames), first, last) for i, p in enumerate(combos)]


def _warm_imports() -> None:
    import strategies  # noqa: F401
    from analyzers import EquityRecorder  # noqa: F401


def _optstrategy(bars: BarSet) -> tuple[float, dict[tuple, float]]:
    """Time backtrader's optstrategy over GRID; return (seconds, {(band, target_vol): value})."""
    import backtrader as bt

    from analyzers.equity import EquityRecorder
    from analyzers.orders import OrderLog
    from feeds.frame_feed import make_feed
    from strategies import RegimeAwareEnsemble

    cerebro = bt.Cerebro(preload=True, runonce=True, stdstats=False, maxcpus=2)
    cerebro.broker.setcash(100_000.0)
    cerebro.broker.setcommission(commission=1.0 / 10_000.0)
    for sym, frame in bars.frames.items():
        cerebro.adddata(make_feed(frame, name=sym), name=sym)
    cerebro.optstrategy(RegimeAwareEnsemble, band=GRID["band"], target_vol=GRID["target_vol"])
    cerebro.addanalyzer(EquityRecorder, _name="equity")
    cerebro.addanalyzer(OrderLog, _name="orders")
    t0 = time.perf_counter()
    runs = cerebro.run()
    seconds = time.perf_counter() - t0
    values = {}
    for (strat,) in runs:
        values[(strat.params.band, strat.params.target_vol)] = float(
            strat.analyzers.equity.get_analysis().values().iloc[-1])
    return seconds, values


def peak_rss_mb() -> float:
    """This process's peak resident set in MB.

    Linux: VmHWM of /proc/self/status, which starts afresh at exec (``ru_maxrss`` does not: it
    keeps the high-water mark of the parent that spawned the process). Elsewhere ru_maxrss.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _rss_child(tasks: int, feeds: int) -> dict:
    """Run a ``tasks``-task sweep on a 2-worker LocalCluster; return peak RSS (MB)."""
    bars = synthetic_bars(feeds, 2 * 252, seed=1)
    bands = np.round(np.linspace(0.01, 0.3, tasks // 2), 6).tolist()
    combos = expand_grid({"band": bands, "target_vol": [0.08, 0.12]})[:tasks]
    with tempfile.TemporaryDirectory() as tmp, open_cluster(ClusterConfig(workers=2)) as client:
        with ReturnsWriter(Path(tmp) / "returns.parquet") as writer:
            results = run_tasks(_specs(bars, combos), bars, client=client, on_result=writer.add,
                                keep_returns=False, progress=False)
        workers = client.run(peak_rss_mb)
    assert len(results) == tasks and all(r.ok for r in results)
    return {
        "client": round(peak_rss_mb(), 1),
        "worker_max": round(max(workers.values()), 1),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print its JSON line and return the dict."""
    ap = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n")[0])
    ap.add_argument("--feeds", type=int, default=50, help="synthetic feeds per task (default 50)")
    ap.add_argument("--years", type=int, default=2, help="years of daily bars (default 2)")
    ap.add_argument("--rss-feeds", type=int, default=5, help="feeds per task in the memory runs")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats, median taken (default 3)")
    ap.add_argument("--quick", action="store_true", help="10 feeds, 1 repeat, no memory runs")
    ap.add_argument("--no-rss", action="store_true", help="skip the memory runs")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        out = _rss_child(args.rss_child, args.rss_feeds)
        print(json.dumps(out))
        return out
    feeds = 10 if args.quick else args.feeds
    repeats = 1 if args.quick else args.repeats
    bars = synthetic_bars(feeds, args.years * 252)
    specs = _specs(bars, expand_grid(GRID))
    _warm_imports()

    times: dict[str, list[float]] = {"serial": [], "dask": [], "optstrategy": []}
    cpu: dict[str, list[float]] = {"serial": [], "dask": []}
    identical = matches = True
    t0 = time.perf_counter()
    with open_cluster(ClusterConfig(workers=2)) as client:
        client.run(_warm_imports)
        startup_s = time.perf_counter() - t0
        for _ in range(repeats):  # interleaved: machine noise hits every variant alike
            c0, t0 = time.process_time(), time.perf_counter()
            serial = run_tasks(specs, bars, progress=False)
            times["serial"].append(time.perf_counter() - t0)
            cpu["serial"].append(time.process_time() - c0)

            w0, c0 = client.run(time.process_time), time.process_time()
            t0 = time.perf_counter()
            dask = run_tasks(specs, bars, client=client, progress=False)
            times["dask"].append(time.perf_counter() - t0)
            w1 = client.run(time.process_time)
            cpu["dask"].append(time.process_time() - c0 + sum(w1[k] - w0[k] for k in w0))
            identical = identical and all(
                a.record() == b.record() and a.returns.equals(b.returns)
                for a, b in zip(serial, dask, strict=True))

            opt_s, opt_values = _optstrategy(bars)
            times["optstrategy"].append(opt_s)
            matches = matches and all(
                opt_values[(r.params["band"], r.params["target_vol"])] == r.final_value
                for r in serial)
    # Other processes on a shared machine only ever add wall time: the fastest repeat is the
    # estimate (as timeit does); every repeat is in runs_s.
    serial_s, dask_s, opt_s = (min(times[k]) for k in ("serial", "dask", "optstrategy"))

    rss = {}
    if not (args.quick or args.no_rss):
        env = dict(os.environ)
        for n in (20, 200):
            proc = subprocess.run(
                [sys.executable, "-m", "bench.sweep", "--rss-child", str(n),
                 "--rss-feeds", str(args.rss_feeds)],
                env=env, capture_output=True, text=True, timeout=1800, check=True)
            rss[str(n)] = json.loads(proc.stdout.strip().splitlines()[-1])

    out = {
        "tasks": len(specs),
        "feeds": feeds,
        "bars": args.years * 252,
        "cores": available_cores(),
        "repeats": repeats,
        "serial_s": round(serial_s, 2),
        "dask_startup_s": round(startup_s, 2),
        "dask_s": round(dask_s, 2),
        "speedup": round(serial_s / dask_s, 3),
        "identical": identical,
        "optstrategy_s": round(opt_s, 2),
        "optstrategy_matches": matches,
        "dask_vs_optstrategy": round(dask_s / opt_s, 3),
        "serial_cpu_s": round(statistics.median(cpu["serial"]), 2),
        "dask_cpu_s": round(statistics.median(cpu["dask"]), 2),
        "runs_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "peak_rss_mb": rss or None,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
