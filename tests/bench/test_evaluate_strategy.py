"""bench/evaluate_strategy.py: bootstrap, walk-forward, decision rule, a small run end to end, and
that docs/RESULTS.md and the README carry the bench's own tables cell for cell."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import evaluate_strategy as ev
from bench.evaluation import series, stats, tables

ROOT = Path(__file__).resolve().parents[2]


def test_synthetic_series_are_seeded():
    a, b = series.synthetic_regime(), series.synthetic_regime()
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(series.synthetic_regime(seed=3))
    assert len(a) == 5040 and (a["high"] >= a[["open", "close"]].max(axis=1)).all()
    assert (a["low"] <= a[["open", "close"]].min(axis=1)).all()
    frame, state = ev.synthetic_regime_path(11)
    pd.testing.assert_frame_equal(frame, a)
    assert set(np.unique(state)) == {0, 1} and 0.1 < state.mean() < 0.4  # both states planted


# ------------------------------------------------------------------------------ bootstrap
def test_stationary_bootstrap_draws_wrapped_blocks_of_the_mean_length():
    rng = np.random.default_rng(0)
    idx = stats.stationary_indices(1000, 200, 21.0, rng)
    assert idx.shape == (200, 1000) and idx.min() >= 0 and idx.max() < 1000
    cont = (idx[:, 1:] == (idx[:, :-1] + 1) % 1000)  # the next day of the same block
    assert 1 / (1 - cont.mean()) == pytest.approx(21.0, rel=0.05)  # mean block length
    assert len(np.unique(idx[:, 0])) > 150  # blocks start anywhere


def test_paired_intervals_of_sharpe_differences():
    rng = np.random.default_rng(1)
    bh = pd.Series(rng.normal(0.0003, 0.01, 3000))
    rows = {
        "same": (bh, 1.0, 0.0),  # buy-and-hold itself
        "half": (bh * 0.5, 0.5, 0.0),  # scaled: same Sharpe
        "better": (bh + 0.0008, 1.0, 0.0),  # +20% a year on top, same risk
        "trend": (pd.Series(rng.normal(0.0003, 0.01, 3000)), 1.0, 0.0),
    }
    out = ev.compare(rows, bh, reps=300, seed=0)
    assert out["same"]["vs_bh"] == {"diff": 0.0, "ci": [0.0, 0.0]}
    assert out["half"]["vs_bh"]["diff"] == pytest.approx(0.0, abs=1e-4)
    assert max(map(abs, out["half"]["vs_bh"]["ci"])) < 1e-3  # paired: the same days each time
    lo, hi = out["better"]["vs_bh"]["ci"]
    assert 0.0 < lo < out["better"]["vs_bh"]["diff"] < hi  # a real edge is found, with width
    assert out["better"]["sharpe_ci"][0] < out["better"]["sharpe"] < out["better"]["sharpe_ci"][1]
    # unpaired noise of the same kind: an interval that straddles zero
    lo, hi = out["same"]["vs_trend"]["ci"]
    assert lo < 0.0 < hi


# ------------------------------------------------------------------------------ walk-forward
def _runs_switching_at(year: int) -> dict[str, ev.Run]:
    """POOL runs on 2000-2011: 'trend' earns in the years before ``year``, 'hold' after, the
    others lose a little every year."""
    days = pd.bdate_range("2000-01-03", "2011-12-30")
    rng = np.random.default_rng(3)
    out = {}
    for name in ev.POOL:
        base = rng.normal(-0.001, 0.01, len(days))
        if name in ("trend", "hold"):
            base = base + 0.001
        if name == "trend":
            base = base + np.where(days.year < year, 0.002, -0.002)
        if name == "hold":
            base = base + np.where(days.year >= year, 0.002, -0.002)
        expo = 0.9 if name == "hold" else 0.3
        out[name] = ev.Run(pd.Series(base, days), pd.Series(expo, days), pd.Series(0.0, days))
    return out


def test_walk_forward_chooses_on_the_five_years_before_only():
    runs = _runs_switching_at(2008)
    days = runs["trend"].returns.index
    wf = ev.walk_forward(runs, days, cost=10.0)
    assert list(wf["picks"]) == [2005, 2006, 2007, 2008, 2009, 2010, 2011]
    # 2008-2010 still see trend ahead over their five years before; hold wins from 2011 on
    assert [wf["picks"][y] for y in range(2005, 2012)] == ["trend"] * 6 + ["hold"]
    r = wf["returns"]
    assert list(r.index) == list(days[days.year >= 2005])
    # a switch pays the cost level on the change of exposure (0.3 -> 0.9) at its first bar
    first_2011 = days[days.year == 2011][0]
    assert r.loc[first_2011] == pytest.approx(
        runs["hold"].returns.loc[first_2011] - 0.6 * 10.0 / 10_000)
    assert wf["traded"].loc[first_2011] == pytest.approx(0.6)
    assert r.loc[days[days.year == 2010][0]] == runs["trend"].returns.loc[days[days.year == 2010][0]]
    assert ev.walk_forward(runs, days[days.year < 2005], cost=10.0) is None  # too short


# ------------------------------------------------------------------------------ decision
def _decision_inputs(diffs: dict[str, dict[str, float]], turnover: dict[str, float]):
    series = {s: {"candidates": {c: {"vs_trend": {"diff": diffs[c][s]}, "turnover": turnover[c]}
                                 for c in diffs}} for s in ev.BUILTIN}
    battery = {k: {"variants": {c: {"vs_trend": diffs[c][k], "turnover": turnover[c]}
                                for c in diffs}} for k in ("SYN_REGIME", "SYN_WALK")}
    return series, battery


def test_decision_is_the_best_worst_case_then_the_lower_turnover():
    names = list(ev.candidates())
    keys = [*ev.BUILTIN, "SYN_REGIME", "SYN_WALK"]
    diffs = {c: {k: 0.1 for k in keys} for c in names}
    diffs[names[0]]["WTI"] = -0.03  # worst case -0.03
    diffs[names[1]]["^GSPC"] = -0.20  # higher on average, but one bad series
    diffs[names[1]]["SYN_WALK"] = 0.5
    diffs[names[2]]["^IXIC"] = -0.04  # within 0.02 of the best worst case, fewer trades
    diffs[names[3]]["^IXIC"] = -0.09
    turnover = {names[0]: 2.5, names[1]: 1.0, names[2]: 2.0, names[3]: 1.0}
    series, battery = _decision_inputs(diffs, turnover)
    d = ev.decide(series, battery)
    assert d["chosen"] == names[2]
    assert list(d["ranking"]) == [names[0], names[2], names[3], names[1]]
    assert d["ranking"][names[1]]["worst_on"] == "^GSPC"
    turnover[names[2]] = 3.0
    assert ev.decide(*_decision_inputs(diffs, turnover))["chosen"] == names[0]
    del series["WTI"]
    assert ev.decide(series, battery) is None  # only on the full set of built-in series


def test_the_strategy_defaults_are_the_first_candidate():
    assert ev._is_default(ev.candidates()["trend + crisis cash"])
    assert not ev._is_default(ev.candidates()["trend/hold + crisis cash"])
    assert ev.longest_warmup() == 523  # the 'rank 504, full' ablation row


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_a_small_evaluation_end_to_end(monkeypatch):
    abl = ev.ablation_variants()
    keep = ("default: no regime layer", "default: absolute band 0.10")
    monkeypatch.setattr(ev, "ablation_variants", lambda: {k: abl[k] for k in keep})
    monkeypatch.setattr(ev, "COSTS", (5.0, 10.0))
    frame = ev.synthetic_walk(5, n=2300)
    rep = ev.evaluate({"SYN": frame}, seeds=1, reps=60, battery_bars=1000, extras=False)
    res = rep["series"]["SYN"]
    assert res["dates"][0] == str(frame.index[ev.longest_warmup() + 1].date())  # after warm-up
    for cost in ("5", "10"):
        fx = res["costs"][cost]["fixed"]
        d = fx["default"]
        assert {"sharpe", "sharpe_ci", "vs_bh", "vs_trend", "max_drawdown", "turnover",
                "exposure", "bh_same_vol"} <= set(d)
        assert d["bh_same_vol"]["vol"] == pytest.approx(d["vol"], abs=1e-4)
        assert d["vs_bh"]["diff"] == pytest.approx(d["sharpe"] - res["buy_hold"]["sharpe"],
                                                   abs=2e-4)
        assert 0.0 < d["exposure"] < 1.0 and d["turnover"] > 0.0
        wf = res["costs"][cost]["walk_forward"]
        assert set(wf["rows"]) == {"walk-forward", "default", "trend"}
        assert sum(wf["pick_counts"].values()) == wf["years"][1] - wf["years"][0] + 1
    # a costlier run of the same rules earns less
    assert res["costs"]["10"]["fixed"]["v1"]["sharpe"] < res["costs"]["5"]["fixed"]["v1"]["sharpe"]
    assert set(res["ablation"]) == set(keep)
    assert rep["battery"]["SYN_REGIME"]["planted"]["turbulent_share"] > 0
    assert rep["decision"] is None  # not the built-in series
    text = ev.markdown(rep)
    assert "### Summary (5 bp a side)" in text and "| **SYN** " in text
    assert tables.summary_table(rep) in text
    json.dumps(rep, default=str)  # the --json file can be written


def test_bad_input_exits_2_with_one_line(capsys):
    assert ev.main(["--series", "^GSPC,FOO", "--serial"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "FOO" in err and "--csv FOO=PATH" in err
    with pytest.raises(SystemExit) as exc:
        ev.main(["--csv", "nopath"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------ the docs
def test_results_and_readme_carry_the_bench_tables_cell_for_cell():
    """docs/evaluate_strategy.json is the --json of the run docs/RESULTS.md reports; every line
    the bench prints from it is in docs/RESULTS.md, and the summary table in the README."""
    report = json.loads((ROOT / "docs" / "evaluate_strategy.json").read_text(encoding="utf-8"))
    results = (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for line in ev.markdown(report).splitlines():
        assert line in results.splitlines() or not line.strip(), line
    assert tables.summary_table(report) in readme
    assert report["command"] in results and report["command"] in readme
    assert report["decision"]["strategy_defaults_are_the_choice"] is True
    assert not math.isnan(report["series"]["^GSPC"]["costs"]["5"]["fixed"]["default"]["sharpe"])
