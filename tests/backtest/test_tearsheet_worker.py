"""The tearsheet rendered in a worker process (bt_ibkr.tearsheet_worker) is the page the caller's
process would write, reaches the caller's folder and logs, and survives a dead worker."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bt_ibkr.backtest import BacktestConfig, run_backtest
from bt_ibkr.tearsheet_worker import WORKER_ENV, TearsheetWorker, matplotlib_cache_dir

ROOT = Path(__file__).resolve().parents[2]
RANGE = ["--source", "sample", "--start", "2012-01-01", "--end", "2014-12-31"]


def normalized(page: str) -> str:
    """The page without what differs between any two renders: the SVG files' creation dates and
    matplotlib's SVG ids (salted at random per figure), renumbered in order of appearance."""
    page = re.sub(r"<dc:date>[^<]*</dc:date>", "<dc:date/>", page)
    ids: dict[str, str] = {}
    return re.sub(r"\b([pm][0-9a-f]{10})\b",
                  lambda m: ids.setdefault(m.group(1), f"id{len(ids)}"), page)


def _cli(tmp: Path, env_extra: dict[str, str]) -> tuple[str, str, dict]:
    env = {k: v for k, v in os.environ.items() if k != WORKER_ENV}
    env.update(env_extra, BT_IBKR_CACHE_DIR=str(tmp / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "examples.backtest", "--source", *RANGE[1:],
                          "--report", "r/t.html", "--json", "t.json", "--no-progress"],
                         cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout, (tmp / "r" / "t.html").read_text(encoding="utf-8"), \
        json.loads((tmp / "t.json").read_text())


@pytest.mark.slow
def test_cli_prints_and_writes_the_same_with_and_without_the_worker(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out_a, page_a, json_a = _cli(tmp_path / "a", {WORKER_ENV: "0"})  # in the CLI's process
    out_b, page_b, json_b = _cli(tmp_path / "b", {})  # in the worker
    assert out_a == out_b
    assert out_b.rstrip().splitlines()[-3] == "tearsheet: r/t.html"  # after the summary
    assert json_a == json_b and json_b["report"] == "r/t.html"
    assert normalized(page_a) == normalized(page_b)
    assert len(page_b) > 100_000


_RENDER = """
import contextlib, pickle, sys
import analyzers.tearsheet as t
if sys.argv[2] == "all-charts":
    t.skip_unused_charts = contextlib.nullcontext
kwargs = pickle.load(open(sys.argv[1], "rb"))
t.write_tearsheet(**kwargs)
"""


@pytest.mark.slow
def test_charts_left_undrawn_change_nothing_on_the_page(tmp_path):
    """quantstats' log, volatility-matched and EOY charts are no longer drawn (they never
    reached the page); a fresh process rendering them all writes the same page."""
    import pickle

    result = run_backtest(BacktestConfig(source="sample", start=pd.Timestamp("2012-01-01").date(),
                                         end=pd.Timestamp("2014-12-31").date(),
                                         write_report=False, progress=False))
    pages = {}
    for mode in ("skip", "all-charts"):
        kwargs = dict(values=result.values, output=str(tmp_path / f"{mode}.html"),
                      benchmark=result.benchmark, regime_report=result.regimes,
                      warmup_bars=result.summary["warmup_bars"], title="t")
        (tmp_path / "in.pkl").write_bytes(pickle.dumps(kwargs))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                           os.environ.get("PYTHONPATH", "")]))
        subprocess.run([sys.executable, "-c", _RENDER, str(tmp_path / "in.pkl"), mode],
                       check=True, env=env, timeout=600, capture_output=True)
        pages[mode] = (tmp_path / f"{mode}.html").read_text(encoding="utf-8")
    assert normalized(pages["skip"]) == normalized(pages["all-charts"])
    assert 'id="log_returns"' not in pages["skip"] and 'id="vol_returns"' not in pages["skip"]


@pytest.fixture(scope="module")
def worker():
    w = TearsheetWorker()
    w.start()
    yield w
    w.close()


@pytest.fixture(scope="module")
def inputs():
    result = run_backtest(BacktestConfig(source="sample", start=pd.Timestamp("2013-01-01").date(),
                                         end=pd.Timestamp("2014-12-31").date(),
                                         write_report=False, progress=False))
    return dict(values=result.values, benchmark=result.benchmark,
                warmup_bars=result.summary["warmup_bars"])


@pytest.mark.slow
def test_relative_output_lands_in_the_callers_folder_and_logs_come_back(
        worker, inputs, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)  # the worker was started elsewhere
    with caplog.at_level(logging.INFO, logger="bt_ibkr"):
        path = worker.submit(output="rel/w.html", **inputs).result()
    assert path == Path("rel/w.html")
    assert (tmp_path / "rel" / "w.html").stat().st_size > 100_000
    assert any(r.name == "bt_ibkr.tearsheet" and "tearsheet written to rel/w.html" in r.message
               for r in caplog.records)


def test_a_refusal_crosses_the_process_as_the_same_error(worker, tmp_path):
    one_day = pd.Series([100.0], index=pd.DatetimeIndex(["2020-01-02"]))
    with pytest.raises(ValueError, match=r"cannot build a tearsheet from 1 day\(s\)"):
        worker.submit(values=one_day, output=tmp_path / "x.html").result()
    assert not (tmp_path / "x.html").exists()


@pytest.mark.slow
def test_a_worker_that_dies_mid_job_still_gives_the_report(inputs, tmp_path, caplog):
    w = TearsheetWorker()
    job = w.submit(output=tmp_path / "d.html", **inputs)
    os.kill(w.pid, signal.SIGKILL)  # long before it can answer (imports + render take seconds)
    with caplog.at_level(logging.WARNING, logger="bt_ibkr"):
        path = job.result()
    w.close()
    assert path.stat().st_size > 100_000
    assert any("tearsheet worker failed" in r.message for r in caplog.records)


def test_matplotlib_gets_a_persistent_cache_when_home_is_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("HOME", str(blocker))
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    chosen = matplotlib_cache_dir()
    assert chosen is not None and chosen.parent == tmp_path / "tmp"
    assert os.environ["MPLCONFIGDIR"] == str(chosen)
    assert matplotlib_cache_dir() is None  # set now: left alone
    # matplotlib builds its font list there once; the next process finds it
    code = "import matplotlib.font_manager, matplotlib; print(matplotlib.get_cachedir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == str(chosen)
    assert list(chosen.glob("fontlist-*.json"))


def test_a_writable_default_is_left_to_matplotlib(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLCONFIGDIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert matplotlib_cache_dir() is None
    assert "MPLCONFIGDIR" not in os.environ


@pytest.mark.slow
def test_a_secret_set_after_the_worker_started_is_masked_on_the_page(
        worker, inputs, tmp_path, monkeypatch):
    """The page is masked with the caller's environment as it is when the job is handed over,
    not the one the worker was started with."""
    secret = "hunter2-very-secret"
    monkeypatch.setenv("TWS_PASSWORD", secret)
    path = worker.submit(output=tmp_path / "s.html", title=f"run {secret}", **inputs).result()
    page = path.read_text(encoding="utf-8")
    assert secret not in page and "run ***" in page


@pytest.mark.slow
def test_the_worker_imports_yfinance_only_when_used():
    """quantstats imports yfinance (half a second) for downloads a report never makes: the
    worker's warm-up leaves it unimported until an attribute is read, then it is the real one."""
    code = ("import sys, bt_ibkr.tearsheet_worker as w; w._warm_up(); "
            "a = 'yfinance.base' in sys.modules; import quantstats, yfinance; "
            "f = yfinance.download; print(a, 'yfinance.base' in sys.modules, "
            "sys.modules['yfinance'].__file__ is not None, callable(f))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    assert out.stdout.split() == ["False", "True", "True", "True"]


@pytest.mark.slow
def test_quantstats_never_writes_its_unmasked_page_at_the_output(inputs, tmp_path, monkeypatch):
    """quantstats writes its page before bt_ibkr masks it: that draft goes to a temporary
    folder, so the output path only ever holds the masked page."""
    import quantstats

    from analyzers.tearsheet import write_tearsheet

    secret = "hunter2-very-secret"
    monkeypatch.setenv("TWS_PASSWORD", secret)
    drafts: list[str] = []
    html = quantstats.reports.html

    def recording(*args, **kwargs):
        drafts.append(kwargs["output"])
        return html(*args, **kwargs)

    monkeypatch.setattr(quantstats.reports, "html", recording)
    out = tmp_path / "m.html"
    write_tearsheet(output=out, title=f"run {secret}", **inputs)
    assert drafts and all(Path(d).resolve() != out.resolve() for d in drafts)
    assert secret not in out.read_text(encoding="utf-8")
