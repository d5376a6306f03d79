"""One research task = one backtest: the same numbers as examples.backtest, windows with
warm-up, per-task errors, bit-identical results serially and on Dask, results on disk."""

from __future__ import annotations

import json
import pickle
from datetime import date

import numpy as np
import pandas as pd
import pytest

from bt_ibkr.backtest import BacktestConfig, run_backtest
from bt_ibkr.data.history import HistoryRequest, load_history
from bt_ibkr.research import BarSet, ClusterConfig, TaskSpec, open_cluster, run_task, run_tasks
from bt_ibkr.research.results import (
    ReturnsWriter,
    read_returns,
    results_frame,
    summary_json,
)
from feeds.sample import load_sample
from strategies import RegimeAwareEnsemble

START, END = date(2010, 1, 1), date(2012, 12, 31)


@pytest.fixture(scope="module")
def bars() -> BarSet:
    h = load_history(HistoryRequest(symbols=["^GSPC", "^IXIC"], source="sample", start=START,
                                    end=END, use_cache=False, progress=False))
    return BarSet(h.frames, h.source, h.message)


def test_a_task_reports_what_examples_backtest_reports(bars):
    params = {"band": 0.05, "target_vol": 0.1}
    ref = run_backtest(BacktestConfig(symbols=["^GSPC", "^IXIC"], source="sample", start=START,
                                      end=END, params=params, write_report=False,
                                      progress=False, use_cache=False, cash=50_000,
                                      commission_bps=3)).summary
    first, last = bars.span()
    result = run_task(TaskSpec(0, params, ("^GSPC", "^IXIC"), first, last, cash=50_000,
                               commission_bps=3), bars)
    assert result.ok, result.error
    for key in ("sharpe", "cagr", "max_drawdown", "volatility", "sortino", "total_return",
                "trades", "final_value"):
        assert getattr(result, key) == ref[key], key  # same run, same functions: equal floats
    assert result.bars == ref["period_bars"] == len(result.returns)  # the same reporting period
    assert result.calmar == pytest.approx(ref["cagr"] / abs(ref["max_drawdown"]))
    assert result.trades > 10 and result.returns.index[0] == pd.Timestamp(ref["start"])


def test_a_bad_parameter_fails_its_task_only(bars):
    first, last = bars.span()
    specs = [TaskSpec(i, p, ("^GSPC",), first, last) for i, p in enumerate([
        {"band": 0.1}, {"band": -1.0}, {"vol_target": 0.1}, {"sma_long": "long"}, {"band": 0.2},
    ])]
    results = run_tasks(specs, bars, progress=False)
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert results[1].error == "ConfigError: band must be a finite number >= 0, got -1.0"
    assert "has no param 'vol_target'; did you mean" in results[2].error
    assert "target_vol" in results[2].error
    assert "sma_long" in results[3].error
    assert all(r.sharpe is None and r.returns is None for r in results[1:4])
    assert results[0].final_value != results[4].final_value  # two real, different runs


def _perturb(frame: pd.DataFrame, mask: np.ndarray, seed: int) -> pd.DataFrame:
    out = frame.copy()
    factor = np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.03, int(mask.sum()))))
    for col in ("open", "high", "low", "close"):
        out.loc[mask, col] = out.loc[mask, col].to_numpy() * factor
    return out


def test_a_window_counts_its_own_bars_and_is_fed_only_its_warmup():
    frame = load_sample("^GSPC", date(2009, 1, 1), date(2013, 12, 31))
    warmup = RegimeAwareEnsemble.warmup_bars()  # fed exactly what the Strategy needs
    spec = TaskSpec(0, {}, ("^GSPC",), date(2012, 1, 1), date(2012, 12, 31), warmup_bars=warmup)
    result = run_task(spec, {"^GSPC": frame})
    assert result.ok, result.error
    in_2012 = frame.index[(frame.index >= "2012-01-01") & (frame.index <= "2012-12-31")]
    assert list(result.returns.index) == list(in_2012) and result.bars == len(in_2012)
    assert result.final_value == pytest.approx(100_000 * (1 + result.total_return), rel=1e-12)
    # bars before the warm-up and after the window cannot change anything
    days = frame.index
    warm_start = days[days < "2012-01-01"][-warmup]
    outside = np.asarray((days < warm_start) | (days > "2012-12-31"))
    again = run_task(spec, {"^GSPC": _perturb(frame, outside, 1)})
    assert again.record() == result.record() and again.returns.equals(result.returns)
    # ...but the warm-up bars do: they drive the positions held in the window (the default,
    # the trend sleeve, is flat in January 2012 on the real bars and decides from the
    # averages the warm-up bars feed)
    warm = np.asarray((days >= warm_start) & (days < "2012-01-01"))
    assert run_task(spec, {"^GSPC": _perturb(frame, warm, 2)}).returns.tolist() != \
        result.returns.tolist()
    cold = run_task(TaskSpec(1, {}, ("^GSPC",), date(2012, 1, 1), date(2012, 12, 31)),
                    {"^GSPC": frame})
    # without warm-up the whole year is the Strategy's warm-up: the task says so, never a
    # silent all-cash result
    assert not cold.ok and "warm-up" in cold.error and result.trades > 0


@pytest.mark.slow
def test_serial_and_dask_give_bit_identical_results(bars):
    first, last = bars.span()
    specs = [TaskSpec(i, {"band": b, "target_vol": v}, ("^GSPC", "^IXIC"), first, last)
             for i, (b, v) in enumerate([(0.02, 0.1), (0.1, 0.1), (0.2, 0.14), (-1, 0.1)])]
    serial = run_tasks(specs, bars, progress=False)
    assert bars._windows  # the tasks' shared window was sliced once and kept...
    assert pickle.loads(pickle.dumps(bars))._windows == {}  # ...but is never sent to workers
    seen = []
    with open_cluster(ClusterConfig(workers=2, processes=False)) as client:
        dask = run_tasks(specs, bars, client=client, progress=False, on_result=seen.append)
    assert sorted(r.task_id for r in seen) == [0, 1, 2, 3]
    assert [r.task_id for r in dask] == [0, 1, 2, 3]  # spec order, whatever the completion order
    for a, b in zip(serial, dask, strict=True):
        assert a.record() == b.record()
        assert (a.returns is None and b.returns is None) or a.returns.equals(b.returns)
    assert not dask[3].ok and "band" in dask[3].error


def test_results_go_to_parquet_and_json(tmp_path, bars):
    first, last = bars.span()
    specs = [TaskSpec(0, {"band": 0.05}, ("^GSPC",), first, last),
             TaskSpec(1, {"band": "wide"}, ("^GSPC",), first, last),
             TaskSpec(2, {"band": 0.1}, ("^IXIC",), first, last)]
    with ReturnsWriter(tmp_path / "returns.parquet", batch=1) as writer:
        results = run_tasks(specs, bars, progress=False, on_result=writer.add, keep_returns=False)
    assert all(r.returns is None for r in results)  # dropped once written
    stored = read_returns(tmp_path / "returns.parquet", [0, 2])
    again = run_task(specs[2], bars)
    assert stored[2].tolist() == again.returns.tolist()
    assert list(stored[2].index) == list(again.returns.index)

    frame = results_frame(results)
    assert list(frame["task_id"]) == [0, 1, 2]
    assert frame["param.band"].tolist() == ["0.05", '"wide"', "0.1"]  # mixed types -> JSON text
    assert frame.loc[1, "error"].startswith("ConfigError") and pd.isna(frame.loc[1, "sharpe"])
    summary = json.loads(json.dumps(summary_json(results)))
    assert summary["tasks"] == 3 and [f["task_id"] for f in summary["failed"]] == [1]
    keys = {"params", "symbols", "start", "end", "sharpe", "cagr", "max_drawdown",
            "volatility", "trades", "final_value"}
    assert all(keys <= set(r) for r in summary["results"])
    assert summary["results"][1]["symbols"] == ["^IXIC"]
    assert summary["results"][0]["sharpe"] == results[0].sharpe


def test_an_unreachable_scheduler_is_a_clear_error():
    import socket

    from bt_ibkr.research import ClusterError

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClusterError) as err:
        with open_cluster(ClusterConfig(scheduler=f"tcp://127.0.0.1:{port}", timeout=1)):
            pass
    msg = str(err.value)
    assert f"tcp://127.0.0.1:{port}" in msg and "dask scheduler" in msg and "\n" not in msg
