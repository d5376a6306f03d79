"""`python -m examples.sweep` end to end (serial, in-process): outputs, a failing task, exit
codes, and bad specs rejected before any work."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from examples.sweep import EXIT_BAD_INPUT, EXIT_OK, EXIT_TASKS_FAILED, main

DATA = ["--source", "sample", "--symbols", "^GSPC,^IXIC", "--start", "2010-01-01",
        "--end", "2011-12-31", "--no-progress"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_sweep_writes_json_parquet_and_html_and_reports_a_failed_task(workdir, capsys):
    code, out, err = _run([*DATA, "--serial", "--grid", "band=0.05,0.1,-0.5",
                           "--grid", "target_vol=0.08,0.12", "--out", "s", "--top", "3"], capsys)
    assert code == EXIT_TASKS_FAILED, err
    assert "6 tasks on serial (in this process), 2 failed" in out
    assert "failed task 4 (band=-0.5, target_vol=0.08): ConfigError: band must be" in out
    summary = json.loads((workdir / "s" / "sweep.json").read_text())
    assert summary["tasks"] == 6 and len(summary["results"]) == 4
    assert [f["params"] for f in summary["failed"]] == [
        {"band": -0.5, "target_vol": 0.08}, {"band": -0.5, "target_vol": 0.12}]
    assert all("band must be a finite number >= 0" in f["error"] for f in summary["failed"])
    first = summary["results"][0]
    assert first["symbols"] == ["^GSPC", "^IXIC"] and first["data_start"] == "2010-01-04"
    assert first["end"] == "2011-12-30" and first["params"] == {"band": 0.05, "target_vol": 0.08}
    # one period convention: the metrics' period, as examples.backtest labels the same run
    from examples.backtest import main as backtest

    assert backtest([*DATA, "--param", "band=0.05", "--param", "target_vol=0.08",
                     "--no-report", "--json", "b.json"]) == 0
    run = json.loads((workdir / "b.json").read_text())
    assert (first["start"], first["end"]) == (run["start"], run["end"])
    assert abs(first["sharpe"] - run["sharpe"]) < 1e-9
    assert f"period {run['start']}..{run['end']}" in " ".join(out.split())
    assert summary["strategy"] == "RegimeAwareEnsemble"
    table = pd.read_parquet(workdir / "s" / "results.parquet")
    assert len(table) == 6 and table["error"].notna().sum() == 2
    returns = pd.read_parquet(workdir / "s" / "returns.parquet")
    assert sorted(returns["task_id"].unique()) == [0, 1, 2, 3]
    page = (workdir / "s" / "sweep.html").read_text()
    assert "id='heatmap'" in page and "id='curves'" in page and "id='failed'" in page
    best = max(summary["results"], key=lambda r: r["sharpe"])
    top_rows = page.split("<table id='top'>")[1].split("</table>")[0].count("<tr>") - 1
    assert top_rows == 3 and f"<td>{best['task_id']}</td>" in page
    assert (workdir / "logs" / "sweep.log").exists()


def test_all_tasks_ok_exits_0_and_per_symbol_splits_the_portfolio(workdir, capsys):
    code, out, err = _run([*DATA, "--serial", "--grid", "band=0.05,0.1", "--per-symbol",
                           "--no-report", "--json", "one.json"], capsys)
    assert code == EXIT_OK, err
    summary = json.loads((workdir / "one.json").read_text())
    assert [(r["params"]["band"], r["symbols"]) for r in summary["results"]] == [
        (0.05, ["^GSPC"]), (0.05, ["^IXIC"]), (0.1, ["^GSPC"]), (0.1, ["^IXIC"])]
    assert "report" not in summary["files"]


@pytest.mark.parametrize("args, words", [
    (["--grid", "band"], "--grid 'band': expected name=v1,v2"),
    (["--grid", "band=0.1,,0.2"], "--grid 'band=0.1,,0.2': empty value"),
    (["--grid", "band=0.1,0.1"], "listed twice"),
    (["--grid", "vol_target=0.08,0.12"], "--grid vol_target: RegimeAwareEnsemble has no such param. Did you mean"),
    (["--grid", "band=0.1", "--walk-forward", "train=5y"], "--walk-forward 'train=5y': no test= length"),
    (["--grid", "band=0.1", "--walk-forward", "train=5q,test=1y"], "not a length"),
    (["--grid", "band=0.1", "--param", "band=0.2"], "band is given both in --grid and --param"),
    (["--grid", "band=0.1", "--serial", "--scheduler", "tcp://127.0.0.1:1"], "--serial and --scheduler"),
    (["--grid", "band=0.1", "--strategy", "nowhere:Thing"], "--strategy 'nowhere:Thing': cannot import"),
    (["--grid", "band=0.1", "--warmup-bars", "100"], "--warmup-bars applies to --walk-forward only"),
    (["--grid", "band=0.1", "--report", "/proc/nope/s.html"], "--report /proc/nope/s.html: cannot be written"),
    (["--grid", "band=0.1", "--json", "/proc/nope/s.json"], "--json /proc/nope/s.json: cannot be written"),
    (["--grid", "band=0.1", "--start", "2011-06-01"], "needs at least 273 (271 warm-up bars, one to decide on, one to fill at)"),
])
def test_bad_input_is_exit_2_with_one_line_before_any_work(workdir, capsys, args, words):
    code, out, err = _run([*DATA, "--out", "never", *args], capsys)
    assert code == EXIT_BAD_INPUT
    assert words in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not (workdir / "never").exists() and out == ""


def test_an_out_path_that_is_a_file_is_exit_2_before_any_work(workdir, capsys):
    (workdir / "afile").write_text("x")
    code, out, err = _run([*DATA, "--out", "afile", "--grid", "band=0.1"], capsys)
    assert code == EXIT_BAD_INPUT and "--out afile: is a file" in err and out == ""


@pytest.mark.slow
def test_walk_forward_cli_writes_windows_and_a_tearsheet(workdir, capsys):
    # the default warm-up is the Strategy's own (271 sessions): 2008 warms up, 2010 trains
    code, out, err = _run(["--source", "sample", "--symbols", "^GSPC", "--start", "2008-01-01",
                           "--end", "2012-12-31", "--no-progress", "--serial",
                           "--grid", "band=0.02,0.1", "--walk-forward", "train=1y,test=1y",
                           "--select", "sortino", "--out", "wf"], capsys)
    assert code == EXIT_OK, err
    assert "walk-forward train=1y,test=1y (select sortino)" in out
    data = json.loads((workdir / "wf" / "walkforward.json").read_text())
    assert [w["test_start"] for w in data["windows"]] == ["2011-01-03", "2012-01-03"]
    for w in data["windows"]:
        assert set(w["in_sample"]) >= {"sharpe", "sortino", "calmar", "cagr", "max_drawdown"}
        assert w["out_of_sample"]["bars"] > 240 and w["params"]["band"] in (0.02, 0.1)
    assert data["out_of_sample"]["start"] == "2011-01-03"
    sheet = workdir / data["files"]["tearsheet"]
    assert sheet.exists() and sheet.stat().st_size > 100_000
    # the tearsheet covers the out-of-sample days only: no day before (no "2010 0.00" row)
    text = sheet.read_text(encoding="utf-8")
    heading = re.search(r"<dt>(.*?)</dt>", text).group(1)
    assert heading.strip().startswith("3 Jan, 2011 - ")
    eoy = text.split('<div id="eoy">')[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\d{4})</td>", eoy) == ["2011", "2012"]


@pytest.mark.slow
def test_terminal_table_is_readable_at_80_columns_and_follows_top(workdir, capsys, monkeypatch):
    """Not a TTY, 80 columns: every varying param's value and the final value are printed in
    full (no "…"), and --top sets the rows as it does in the HTML."""
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = _run([*DATA, "--serial", "--grid", "band=0.05,0.1",
                           "--grid", "target_vol=0.08,0.12", "--grid", "vol_high_enter=0.8,0.85",
                           "--no-report", "--json", "s.json", "--top", "2"], capsys)
    assert code == EXIT_OK, err
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    summary = json.loads((workdir / "s.json").read_text())
    best = sorted(summary["results"], key=lambda r: -r["sharpe"])[:2]
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == 2
    for r, row in zip(best, rows, strict=True):
        cells = [c.strip() for c in row.strip("│").split("│")]
        assert cells[0] == str(r["task_id"])
        assert cells[1:4] == [str(r["params"][k]) for k in ("band", "target_vol",
                                                              "vol_high_enter")]
        assert cells[-1] == f"{r['final_value']:,.0f}"
    assert "top 2 of 8 by sharpe (--top)" in " ".join(out.split())


def test_a_scheduler_that_is_not_there_fails_at_once_and_writes_nothing(workdir, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = _run([*DATA, "--grid", "band=0.05,0.1", "--scheduler",
                           f"tcp://127.0.0.1:{port}", "--out", "s"], capsys)
    assert code == EXIT_BAD_INPUT
    assert f"tcp://127.0.0.1:{port}: nothing listens there" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (workdir / "s").exists() or not list((workdir / "s").iterdir())


def test_a_large_sweep_says_how_long_it_will_take_before_it_starts(workdir, monkeypatch):
    """Above ESTIMATE_ABOVE tasks (10,000; lowered here) one task is timed in this process,
    the estimate is announced, and only then do the other tasks run; the timed task is kept,
    not run twice."""
    from bt_ibkr.research import sweep as sweep_mod
    from bt_ibkr.research.cluster import ClusterConfig
    from bt_ibkr.research.data import DataConfig

    assert sweep_mod.ESTIMATE_ABOVE == 10_000
    monkeypatch.setattr(sweep_mod, "ESTIMATE_ABOVE", 3)
    lines: list[str] = []
    seen_at_start: list[tuple[int, int]] = []
    real = sweep_mod.run_tasks

    def watched(specs, *args, **kwargs):
        seen_at_start.append((len(lines), len(specs)))
        return real(specs, *args, **kwargs)

    monkeypatch.setattr(sweep_mod, "run_tasks", watched)
    config = sweep_mod.SweepConfig(
        grid={"band": [0.05, 0.1], "target_vol": [0.08, 0.12]},
        data=DataConfig(symbols=["^GSPC"], source="sample", start=pd.Timestamp("2010-01-01").date(),
                        end=pd.Timestamp("2011-12-31").date(), progress=False),
        cluster=ClusterConfig(serial=True), out_dir=workdir / "s", write_report=False,
        progress=False)
    outcome = sweep_mod.run_sweep(config, notify=lines.append)
    assert len(lines) == 1 and seen_at_start == [(1, 3)]  # announced, then 3 more tasks
    assert re.fullmatch(r"sweep: 4 tasks; one took \d+\.\d\d s here, so about \d+ (s|min) on 1 "
                        r"worker thread \(serial \(in this process\)\)", lines[0]), lines[0]
    assert [r.task_id for r in outcome.results] == [0, 1, 2, 3] and not outcome.failed
    returns = pd.read_parquet(workdir / "s" / "returns.parquet")
    assert sorted(returns["task_id"].unique()) == [0, 1, 2, 3]  # the timed one's returns too
    assert (returns.groupby("task_id").size() == outcome.results[0].bars).all()


def test_a_large_sweep_prints_the_estimate_on_the_terminal(workdir, capsys, monkeypatch):
    from bt_ibkr.research import sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "ESTIMATE_ABOVE", 1)
    code, out, err = _run([*DATA, "--serial", "--grid", "band=0.05,0.1", "--no-report",
                           "--out", "s"], capsys)
    assert code == EXIT_OK, err
    text = " ".join(out.split())
    assert "sweep: 2 tasks; one took" in text and text.index("sweep: 2 tasks") < text.index(
        "2 tasks on serial")
