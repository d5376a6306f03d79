"""bench/evaluate_strategy.py: the decision rule, the benchmark scaling and the JSON it prints."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench import evaluate_strategy as ev


def _block(**cands):
    return {"^GSPC": {"train": {c: {"sharpe": s, "max_drawdown": dd, "cagr": 0.0}
                                for c, (s, dd) in cands.items()}}}


def test_decision_rule_is_sharpe_then_drawdown():
    clear = _block(bear_cash=(0.20, -0.05), bear_rebound=(0.40, -0.20), bear_hold=(-0.1, -0.3))
    assert ev.decide(clear)["chosen"] == "bear_rebound"
    close = _block(bear_cash=(0.37, -0.05), bear_rebound=(0.40, -0.20), bear_hold=(-0.1, -0.3))
    assert ev.decide(close)["chosen"] == "bear_cash"  # within 0.05: the shallower drawdown
    assert ev.decide({"^GSPC": {"train": {}}}) is None


def test_synthetic_series_are_seeded():
    a, b = ev.synthetic_regime(), ev.synthetic_regime()
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(ev.synthetic_regime(seed=3))
    assert len(a) == 5040 and (a["high"] >= a[["open", "close"]].max(axis=1)).all()
    assert (a["low"] <= a[["open", "close"]].min(axis=1)).all()


def test_prints_variants_windows_and_same_vol_benchmark(capsys):
    assert ev.main(["--assets", "SYN_WALK", "--variants", "ensemble,trend"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decision"] is None
    assert out["costs"] == "commission 1 bp + slippage 2 bp per side"
    res = out["results"]["SYN_WALK"]
    assert set(res) == {"full", "train", "test"}
    for block in res.values():
        bh = block["buy_hold"]
        for v in ("ensemble", "trend"):
            st = block[v]
            assert set(st) == {"sharpe", "cagr", "max_drawdown", "vol", "bh_same_vol"}
            # scaled buy-and-hold: the variant's volatility, buy-and-hold's Sharpe
            assert st["bh_same_vol"]["vol"] == pytest.approx(st["vol"], abs=1e-5)
            assert st["bh_same_vol"]["sharpe"] == pytest.approx(bh["sharpe"], abs=1e-4)
    # the two variants are different strategies, not one run printed twice
    assert res["full"]["ensemble"]["sharpe"] != res["full"]["trend"]["sharpe"]
    assert res["full"]["dates"][0] > "2000-01-01"  # windows start after the warm-up


def test_bad_names_exit_2(capsys):
    assert ev.main(["--assets", "^GSPC,FOO"]) == 2
    assert "FOO" in capsys.readouterr().err
