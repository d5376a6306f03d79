"""End-to-end time of ``python -m examples.backtest``, as ratios to a bare interpreter start.

    python -m bench.cli [--repeats N] [--args "CLI ARGS"] [--before PATH]

Runs, interleaved ``--repeats`` times, each as a whole new process in one scratch folder (its
own empty bar cache, its own logs and reports; the machine's network as it is, so by default
the CLI serves the embedded sample when Yahoo is unreachable):

- ``baseline``: ``python -c pass`` (interpreter start-up, the unit of the ratios);
- ``no_report``: ``python -m examples.backtest --no-report``;
- ``report``: ``python -m examples.backtest`` (the tearsheet rendered in its worker process);
- ``report_in_process``: the same with ``BT_IBKR_REPORT_WORKER=0`` (rendered in the CLI's
  process, as before the worker existed).

``--before PATH`` (another checkout of the project, e.g. the commit before a change) adds
``before_no_report`` and ``before_report``: the same two CLI runs from that tree, interleaved
with the others, and the ratios ``no_report_vs_before`` and ``report_vs_before`` (this tree's
median wall / that tree's).

Wall time is what a user waits; CPU time (user + system of the process and its children) is
what it costs the machine. Each figure is the median over the repeats; a ratio is a run's median
over the baseline's median of the same invocation, so a slower or busier machine largely
cancels out. Prints ONE JSON object:

    repeats, args, {baseline,no_report,report,report_in_process}_{wall,cpu}_s,
    {no_report,report,report_in_process}_ratio (wall / baseline wall),
    same_output (the report run prints the same lines with and without the worker),
    final_value (the summary's final value line)
    [before_{no_report,report}_{wall,cpu}_s, {no_report,report}_vs_before]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run ``cmd``; return (wall seconds, its stdout). Raises RuntimeError naming the command
    when it exits non-zero."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-400:]}")
    return wall, proc.stdout


def run(repeats: int = 3, extra: list[str] | None = None, before: Path | None = None) -> dict:
    """Run the benchmark and return its JSON-ready result (see the module docstring)."""
    import resource

    extra = list(extra or [])
    py = sys.executable
    cli = [py, "-m", "examples.backtest", *extra]
    variants = {
        "baseline": ([py, "-c", "pass"], {}),
        "no_report": ([*cli, "--no-report"], {}),
        "report": (cli, {}),
        "report_in_process": (cli, {"BT_IBKR_REPORT_WORKER": "0"}),
    }
    if before is not None:
        other = {"PYTHONPATH": str(Path(before).resolve())}
        variants["before_no_report"] = ([*cli, "--no-report"], other)
        variants["before_report"] = (cli, other)
    walls: dict[str, list[float]] = {k: [] for k in variants}
    cpus: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        base_env = {k: v for k, v in os.environ.items() if k != "BT_IBKR_REPORT_WORKER"}
        base_env.update(BT_IBKR_CACHE_DIR=str(work / "cache"), BT_IBKR_LOG_DIR=str(work / "logs"),
                        PYTHONPATH=os.pathsep.join(
                            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
        for cmd, env in variants.values():  # warm-up: caches, .pyc files, font list
            _timed(cmd, work, {**base_env, **env})
        for _ in range(repeats):
            for name, (cmd, env) in variants.items():
                # CPU of the run and of the worker it started and reaped
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                wall, out = _timed(cmd, work, {**base_env, **env})
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                walls[name].append(wall)
                cpus[name].append((after.ru_utime - before.ru_utime)
                                  + (after.ru_stime - before.ru_stime))
                outputs[name] = out
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    result: dict = {"repeats": repeats, "args": extra}
    for k in variants:
        result[f"{k}_wall_s"] = round(med[k], 3)
        result[f"{k}_cpu_s"] = round(cpu[k], 3)
    for k in ("no_report", "report", "report_in_process"):
        result[f"{k}_ratio"] = round(med[k] / med["baseline"], 1)
    if before is not None:
        for k in ("no_report", "report"):
            result[f"{k}_vs_before"] = round(med[k] / med[f"before_{k}"], 3)
    result["same_output"] = outputs["report"] == outputs["report_in_process"]
    result["final_value"] = next((" ".join(line.strip("│ ").split()) for line in
                                  outputs["report"].splitlines() if "final value" in line), None)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout to time the same CLI runs from, interleaved")
    parser.add_argument("--args", default="",
                        help='extra arguments for the CLI, e.g. "--source sample" (default none)')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    json.dump(run(args.repeats, shlex.split(args.args), args.before), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
