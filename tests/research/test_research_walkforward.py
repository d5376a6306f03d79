"""Walk-forward: selection on train windows only (a perturbation of the test windows cannot
change it), the stitched out-of-sample curve, and the JSON of in-sample vs out-of-sample."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

from bt_ibkr.metrics import compute_stats
from bt_ibkr.research import (
    BarSet,
    ClusterConfig,
    WalkForwardConfig,
    parse_grid,
    parse_walk_forward,
    run_walk_forward,
)
from feeds.sample import load_sample

GRID = ["band=0.02,0.1", "target_vol=0.06,0.15"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return load_sample("^GSPC", date(2009, 1, 1), date(2013, 12, 31))


def _run(frame: pd.DataFrame, out, **kw):
    kw.setdefault("warmup_bars", 250)  # fixed, so the windows stay put whatever the Strategy's
    config = WalkForwardConfig(
        grid=parse_grid(GRID), spec=parse_walk_forward("train=1y,test=1y"),
        cluster=ClusterConfig(serial=True), out_dir=out, write_report=False, progress=False,
        **kw,
    )
    return run_walk_forward(config, bars=BarSet({"^GSPC": frame}, "sample", "sample ^GSPC"))


def _perturb_after(frame: pd.DataFrame, cutoff: date, seed: int) -> pd.DataFrame:
    """Every price after ``cutoff`` times a random walk (OHLC stay consistent)."""
    out = frame.copy()
    mask = np.asarray(out.index > pd.Timestamp(cutoff))
    factor = np.exp(np.cumsum(np.random.default_rng(seed).normal(0.0, 0.03, int(mask.sum()))))
    for col in ("open", "high", "low", "close"):
        out.loc[mask, col] = out.loc[mask, col].to_numpy() * factor
    return out


@pytest.mark.slow
def test_no_test_window_bar_influences_a_selection(frame, tmp_path):
    base = _run(frame, tmp_path / "base")
    windows = base.windows
    assert [w.window.test_start.year for w in windows] == [2011, 2012, 2013]
    assert all(w.selected is not None and w.test.ok for w in windows)
    for k, w in enumerate(windows):
        # change every price after this selection's train window (its test window and on)
        moved = _run(_perturb_after(frame, w.window.train_end, seed=k), tmp_path / f"p{k}")
        for j in range(k + 1):  # selections whose train windows end by then: unchanged
            assert moved.windows[j].params == windows[j].params, (k, j)
            assert moved.windows[j].selected.record() == windows[j].selected.record(), (k, j)
        # the perturbation was real: this window's out-of-sample run saw other prices...
        assert moved.windows[k].test.returns.tolist() != windows[k].test.returns.tolist()
        # ...and the next window, whose train window holds these bars, measured them
        if k + 1 < len(windows):
            assert moved.windows[k + 1].selected.record() != windows[k + 1].selected.record()


@pytest.mark.slow
def test_out_of_sample_windows_are_stitched_and_reported(frame, tmp_path):
    outcome = _run(frame, tmp_path / "wf", select="calmar", cash=40_000)
    tests = [w.test for w in outcome.windows]
    stitched = pd.concat([t.returns for t in tests])
    assert outcome.oos_returns.equals(stitched.rename("return"))
    assert outcome.oos_returns.index.is_monotonic_increasing and outcome.oos_returns.index.is_unique
    data = json.loads(outcome.json_path.read_text())
    assert data["walk_forward"] == {"spec": "train=1y,test=1y", "train": "1y", "test": "1y",
                                    "anchored": False, "select": "calmar", "warmup_bars": 250}
    assert data["tasks"] == 3 * 4 + 3 and data["failed"] == []
    stats = compute_stats(outcome.oos_returns)
    oos = data["out_of_sample"]
    assert oos["sharpe"] == stats.sharpe and oos["bars"] == len(stitched)
    assert oos["final_value"] == pytest.approx(40_000 * (1 + stats.total_return))
    for w, rec in zip(outcome.windows, data["windows"], strict=True):
        train = [r for r in outcome.results if r.kind == "train" and r.window == w.window.index]
        best = max(r.calmar for r in train)
        assert rec["in_sample"]["calmar"] == best  # selected by calmar on the train window
        assert rec["params"] == w.selected.params and rec["candidates"] == 4
        assert rec["out_of_sample"]["sharpe"] == w.test.sharpe
        assert rec["test_start"] == w.test.returns.index[0].date().isoformat()
    table = pd.read_parquet(outcome.parquet_path)
    assert sorted(table["kind"].unique()) == ["test", "train"] and len(table) == 15
