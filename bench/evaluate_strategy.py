"""Evaluate RegimeAwareEnsemble so that a skeptic can check it: every table of docs/RESULTS.md.

    python -m bench.evaluate_strategy [--series A,B] [--csv NAME=PATH ...] [--seeds 8]
                                      [--reps 2000] [--workers N | --serial] [--json FILE]

prints the Markdown tables of docs/RESULTS.md (and the README's results section), cell for cell;
``--json FILE`` also writes every number (and the decision record) as one JSON object. About
four minutes on two cores (``--workers``, default: the cores; ``--serial`` in this process).

What is run: one backtest per (series, variant, cost level) with :func:`bt_ibkr.backtest_run.simulate`
(BackBroker, 100,000 of cash, decisions at the close, market orders filled at the next bar's
open), each over the series' whole history. The Strategy is causal, so any stretch of a run is
what a run started earlier would have earned there (tests/parity/test_parity_backtest.py).

Series:
  ^GSPC, ^IXIC  the offline sample (arch.data.sp500 / nasdaq, 1999-2018; price indices, no
                dividends).
  WTI           West Texas Intermediate spot, daily closes 1986-2019 (``arch.data.wti``); closes
                only, so open = high = low = close and an order decided at a close fills at the
                NEXT close. Spot crude is not investable: a test of the rules, not of a product.
  SYN_REGIME    seeded (11) two-state Markov-switching prices: calm (+10%/yr, 16% vol, mean stay
                200 bars) and turbulent (-30%/yr, 40% vol, mean stay 67 bars): the process the
                regime layer assumes, with its regimes known (planted).
  SYN_WALK      seeded (12) geometric random walk (+6%/yr, 18% vol): no regimes to find.
  --csv NAME=PATH  any other daily series (columns date, open, high, low, close[, volume]; the
                ``csv`` source's rules), e.g. for an independent check on unseen data.
  battery       ``--seeds`` more of each synthetic kind (seeds 100, 101, ...), summarised.

Costs: ``COSTS`` = 5 and 10 bp a side, charged as commission on every fill (slippage 0, so the
level is the whole cost); the cost table adds 0 and 20 bp.

Measured period: every row of a series, the benchmarks included, starts on the same day: the
first bar after the longest warm-up of all variants run (523 bars, the ``rank 504, full``
ablation row), so no row is measured on bars another spent warming up. Returns are daily,
from the close of that day on.

Rows: ``default`` (the Strategy's defaults), ``trend`` (``sleeves="trend",
use_regimes=False``: the trend sleeve alone with the same volatility targeting), ``hold``
(``sleeves="hold"``: a volatility-managed buy-and-hold), ``v1`` (the previous default: sleeve
switching), ``walk-forward`` (below), ``B&H same vol`` (buy-and-hold of the series scaled by one
constant to the row's volatility over the period: its Sharpe is buy-and-hold's; CAVEATS: it pays
no costs, and its scale comes from the volatility of the whole period, known only afterwards,
so it is a yardstick, not a strategy anyone could have run).

Intervals: paired stationary bootstrap (Politis & Romano 1994) of the daily returns, mean block
``BLOCK`` = 21 bars, ``--reps`` resamples (seeded), 90% percentile intervals. "Paired": both
series of a difference are resampled on the same days. The Sharpe difference against same-vol
buy-and-hold is the difference against buy-and-hold (scaling does not change a Sharpe ratio).

Turnover: traded value over portfolio value, summed per year (2.0 = twice the portfolio a year).
Exposure: mean gross position over portfolio value at the close. For B&H same vol: its scale,
and the turnover of rebalancing it daily to that scale.

Walk-forward selection: each calendar year trades the structure of ``POOL`` with the best Sharpe
over the five years before it (at the same cost level); the stitched years are the walk-forward
row, next to the fixed rows over the same years. Every structure is one causal run over the
whole history, so this is a selection among fixed rules made only on earlier data, not a re-fit
of parameters; a switch pays the cost level on the change of exposure at the year's first bar.

Decision (``DECISION_RULE``): among ``CANDIDATES`` (regime-aware structures written down before
this evaluation), the one whose WORST Sharpe difference against the trend sleeve alone, over
the built-in series and the battery's means at 5 bp, is highest; within 0.02 of it, the lowest
mean turnover. The JSON records the ranking and whether the Strategy's defaults are the choice.

Also: the ablation (each change of the redesign switched off in the default, switched on in
v1), the planted-regime check on the battery (the classifier's labels and the default's exposure
in the planted turbulent state against the calm one), the share of ^GSPC opens equal to the
previous close (stale opens flatter next-open fills), and how often a daily live session's
regime (730 calendar days of history) differs from the backtest's on the same day.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bench.evaluation.series import (
    BUILTIN,
    SAMPLE,
    load_series,
    synthetic_regime_path,
    synthetic_walk,
)
from bench.evaluation.stats import (
    BLOCK,
    LEVEL,
    _sharpe,
    _turnover,
    bh_row,
    compare,
    measured,
    row_stats,
)
from bench.evaluation.tables import markdown
from bench.evaluation.variants import (
    COST_TABLE,
    COSTS,
    DECISION_RULE,
    LIVE_DAYS,
    POOL,
    RISK_OFF,
    ablation_variants,
    candidates,
    main_variants,
)


# ------------------------------------------------------------------------------ runs
@dataclass
class Run:
    """One backtest, per day over the whole history (tz-naive daily index)."""

    returns: pd.Series  # simple daily returns of portfolio value
    exposure: pd.Series  # gross exposure at the close
    traded: pd.Series  # traded value that day / portfolio value


def simulate_run(frame: pd.DataFrame, params: dict, cost_bps: float) -> Run:
    """Run the Strategy over ``frame`` at ``cost_bps`` a side (commission, no slippage)."""
    from bt_ibkr.backtest_run import BacktestConfig, simulate
    from strategies import RegimeAwareEnsemble

    cfg = BacktestConfig(commission_bps=cost_bps, slippage_bps=0.0, progress=False)
    rec = simulate(cfg, {"X": frame}, strategy_cls=RegimeAwareEnsemble, params=dict(params),
                   attribute_regimes=False)
    idx = pd.DatetimeIndex(rec.values.index).normalize()
    values = pd.Series(rec.values.to_numpy(dtype=float), idx)
    traded = pd.Series(0.0, idx)
    for f in rec.fills:
        day = pd.Timestamp(f.dt).normalize()
        traded.loc[day] += abs(f.size * f.price)
    return Run(
        returns=values.pct_change().fillna(0.0),
        exposure=pd.Series(rec.exposure.to_numpy(dtype=float), idx),
        traded=traded / values,
    )


def _identity(series: str, params: dict, cost: float) -> str:
    """One text per distinct backtest: params merged into the Strategy's defaults."""
    from strategies import RegimeAwareEnsemble

    merged = {**RegimeAwareEnsemble.param_defaults(), **params}
    return json.dumps([series, merged, cost], sort_keys=True, default=str)


def unique_jobs(jobs: dict) -> tuple[dict, dict]:
    """Return (identity -> (series, params, cost), key -> identity): equal runs once."""
    todo, alias = {}, {}
    for k, (s, p, c) in jobs.items():
        ident = _identity(s, p, c)
        todo.setdefault(ident, (s, p, c))
        alias[k] = ident
    return todo, alias


def run_all(jobs: dict, frames: dict[str, pd.DataFrame], client=None, progress=None) -> dict:
    """Run ``jobs`` (key -> (series, params, cost)), each distinct backtest once; return
    key -> Run. ``client``: a Dask client, or None (in this process). ``progress()`` is called
    once per backtest run."""
    todo, alias = unique_jobs(jobs)
    done: dict[str, Run] = {}
    if client is None:
        for ident, (s, p, c) in todo.items():
            done[ident] = simulate_run(frames[s], p, c)
            if progress:
                progress()
    else:
        from distributed import as_completed

        used = {s for s, _p, _c in todo.values()}
        scattered = {s: client.scatter(frames[s], broadcast=True, hash=False) for s in used}
        futs = {client.submit(simulate_run, scattered[s], p, c, pure=False): ident
                for ident, (s, p, c) in todo.items()}
        for fut in as_completed(list(futs)):
            done[futs[fut]] = fut.result()
            fut.release()
            if progress:
                progress()
    return {k: done[ident] for k, ident in alias.items()}


def walk_forward(runs: dict[str, Run], days: pd.DatetimeIndex, cost: float, years: int = 5
                 ) -> dict | None:
    """Yearly walk-forward selection among ``POOL`` (module docstring); None when too short."""
    all_years = sorted({d.year for d in days})
    full = [y for y in all_years if ((days.year == y).sum() >= 200)]
    tests = [y for y in all_years if y - years >= all_years[0] and
             all(y - i in full for i in range(1, years + 1))]
    if not tests:
        return None
    picks: dict[int, str] = {}
    parts, traded, expo = [], [], []
    prev = None
    for y in tests:
        train = days[(days.year >= y - years) & (days.year < y)]
        scores = {c: float(_sharpe(runs[c].returns.loc[train].to_numpy())) for c in POOL}
        pick = max(POOL, key=lambda c: (round(scores[c], 12), -POOL.index(c)))
        picks[y] = pick
        test = days[days.year == y]
        r = runs[pick].returns.loc[test].copy()
        t = runs[pick].traded.loc[test].copy()
        if prev is not None and prev != pick:
            before = days[days < test[0]][-1]
            switch = abs(runs[pick].exposure.loc[before] - runs[prev].exposure.loc[before])
            r.iloc[0] -= switch * cost / 10_000.0
            t.iloc[0] += switch
        prev = pick
        parts.append(r)
        traded.append(t)
        expo.append(runs[pick].exposure.loc[test])
    return {
        "returns": pd.concat(parts), "traded": pd.concat(traded),
        "exposure": pd.concat(expo), "picks": picks,
    }


def evaluate_series(name: str, frame: pd.DataFrame, runs: dict, warm: int, reps: int,
                    seed: int) -> dict:
    """Main rows, walk-forward and ablation of one series. ``runs``: (variant, cost) -> Run."""
    days = measured(frame, warm)
    close = frame["close"]
    bh_all = close.pct_change().fillna(0.0)
    bh = bh_all.loc[days]
    out: dict = {"dates": [str(days[0].date()), str(days[-1].date())],
                 "buy_hold": row_stats(bh, 1.0, 0.0), "costs": {}}
    for cost in COSTS:
        main = {v: (runs[(v, cost)].returns.loc[days], float(runs[(v, cost)].exposure.loc[days]
                    .mean()), _turnover(runs[(v, cost)].traded.loc[days]))
                for v in ("default", "trend", "hold", "v1")}
        block = {"fixed": compare(main, bh, reps, seed)}
        for v in ("default", "trend", "hold", "v1"):
            block["fixed"][v]["bh_same_vol"] = bh_row(bh, block["fixed"][v]["vol"])
        pool = {c: runs[(c, cost)] for c in POOL}
        wf = walk_forward(pool, days, cost)
        if wf is not None:
            wdays = pd.DatetimeIndex(wf["returns"].index)
            rows = {
                "walk-forward": (wf["returns"], float(wf["exposure"].mean()),
                                 _turnover(wf["traded"])),
                "default": (runs[("default", cost)].returns.loc[wdays],
                            float(runs[("default", cost)].exposure.loc[wdays].mean()),
                            _turnover(runs[("default", cost)].traded.loc[wdays])),
                "trend": (runs[("trend", cost)].returns.loc[wdays],
                          float(runs[("trend", cost)].exposure.loc[wdays].mean()),
                          _turnover(runs[("trend", cost)].traded.loc[wdays])),
            }
            cmp = compare(rows, bh.loc[wdays], reps, seed + 1)
            for v in rows:
                cmp[v]["bh_same_vol"] = bh_row(bh.loc[wdays], cmp[v]["vol"])
            counts: dict[str, int] = {}
            for p in wf["picks"].values():
                counts[p] = counts.get(p, 0) + 1
            block["walk_forward"] = {
                "years": [min(wf["picks"]), max(wf["picks"])],
                "dates": [str(wdays[0].date()), str(wdays[-1].date())],
                "picks": {str(y): p for y, p in wf["picks"].items()},
                "pick_counts": counts, "rows": cmp,
            }
        out["costs"][f"{cost:g}"] = block
    # ablation and candidates at the first cost level
    cost = COSTS[0]
    abl = {}
    for v, (base, _params) in ablation_variants().items():
        a, b = runs[(v, cost)], runs[(base, cost)]
        rows = {v: (a.returns.loc[days], float(a.exposure.loc[days].mean()),
                    _turnover(a.traded.loc[days])),
                base: (b.returns.loc[days], float(b.exposure.loc[days].mean()),
                       _turnover(b.traded.loc[days]))}
        st = compare(rows, bh, reps, seed + 2, ref=(base,))[v]
        st["base"] = base
        abl[v] = st
    out["ablation"] = abl
    cands = {c: (runs[(c, cost)].returns.loc[days], float(runs[(c, cost)].exposure.loc[days]
                 .mean()), _turnover(runs[(c, cost)].traded.loc[days]))
             for c in (*candidates(), "trend")}
    out["candidates"] = {k: v for k, v in compare(cands, bh, reps, seed + 3).items()
                         if k != "trend"}
    # cost table
    table = {}
    for c in COST_TABLE:
        for v in ("default", "trend", "v1"):
            if (v, c) in runs:
                r = runs[(v, c)]
                table.setdefault(f"{c:g}", {})[v] = row_stats(
                    r.returns.loc[days], float(r.exposure.loc[days].mean()),
                    _turnover(r.traded.loc[days]))
    out["cost_table"] = table
    return out


def battery_summary(kind: str, seeds: list[int], runs: dict, frames: dict, warm: int,
                    states: dict) -> dict:
    """Means over a synthetic battery: per variant Sharpe, differences and wins against
    buy-and-hold and trend, max drawdown, turnover, exposure; the planted-regime check."""
    from strategies import label_series

    cost = COSTS[0]
    per: dict[str, list[dict]] = {}
    planted = []
    for s in seeds:
        key = f"{kind}{s}"
        frame = frames[key]
        days = measured(frame, warm)
        bh = frame["close"].pct_change().fillna(0.0).loc[days]
        bh_sh = float(_sharpe(bh.to_numpy()))
        tr = float(_sharpe(runs[(key, "trend", cost)].returns.loc[days].to_numpy()))
        for v in ("default", "trend", "hold", "v1", *candidates()):
            r = runs[(key, v, cost)]
            st = row_stats(r.returns.loc[days], float(r.exposure.loc[days].mean()),
                           _turnover(r.traded.loc[days]))
            st["vs_bh"] = st["sharpe"] - bh_sh
            st["vs_trend"] = st["sharpe"] - tr
            st["bh_max_drawdown"] = bh_row(bh, st["vol"])["max_drawdown"]
            per.setdefault(v, []).append(st)
        if key in states:
            state = pd.Series(states[key], frame.index).loc[days]
            labels = pd.Series(label_series(frame["close"].tolist()), frame.index).loc[days]
            ex = runs[(key, "default", cost)].exposure.loc[days]
            ex_off = runs[(key, "default: no regime layer", cost)].exposure.loc[days]
            turb, calm = state == 1, state == 0
            planted.append({
                "turbulent_share": float(turb.mean()),
                "risk_off_in_turbulent": float(labels[turb].isin(RISK_OFF).mean()),
                "risk_off_in_calm": float(labels[calm].isin(RISK_OFF).mean()),
                "crisis_in_turbulent": float((labels[turb] == "crisis").mean()),
                "crisis_in_calm": float((labels[calm] == "crisis").mean()),
                "exposure_turbulent": float(ex[turb].mean()),
                "exposure_calm": float(ex[calm].mean()),
                "exposure_turbulent_no_regimes": float(ex_off[turb].mean()),
            })
    out = {"seeds": seeds, "variants": {}}
    for v, sts in per.items():
        out["variants"][v] = {
            "sharpe": round(float(np.mean([x["sharpe"] for x in sts])), 4),
            "vs_bh": round(float(np.mean([x["vs_bh"] for x in sts])), 4),
            "wins_vs_bh": int(sum(x["vs_bh"] > 0 for x in sts)),
            "vs_trend": round(float(np.mean([x["vs_trend"] for x in sts])), 4),
            "wins_vs_trend": int(sum(x["vs_trend"] > 0 for x in sts)),
            "max_drawdown": round(float(np.mean([x["max_drawdown"] for x in sts])), 4),
            "bh_same_vol_max_drawdown": round(float(np.mean([x["bh_max_drawdown"]
                                                              for x in sts])), 4),
            "turnover": round(float(np.mean([x["turnover"] for x in sts])), 3),
            "exposure": round(float(np.mean([x["exposure"] for x in sts])), 4),
            "n": len(sts),
        }
    if planted:
        out["planted"] = {k: round(float(np.mean([p[k] for p in planted])), 4)
                          for k in planted[0]}
    return out


def decide(series: dict, battery: dict) -> dict | None:
    """Apply DECISION_RULE; None when a built-in series or the battery is missing."""
    if any(s not in series for s in BUILTIN) or set(battery) != {"SYN_REGIME", "SYN_WALK"}:
        return None
    worst, turn = {}, {}
    for c in candidates():
        diffs = {s: series[s]["candidates"][c]["vs_trend"]["diff"] for s in BUILTIN}
        for kind, b in battery.items():
            diffs[f"battery {kind}"] = b["variants"][c]["vs_trend"]
        worst[c] = (min(diffs.values()), min(diffs, key=diffs.get), diffs)
        turn[c] = float(np.mean([series[s]["candidates"][c]["turnover"] for s in BUILTIN]
                                + [b["variants"][c]["turnover"] for b in battery.values()]))
    best = max(w[0] for w in worst.values())
    near = [c for c in candidates() if worst[c][0] >= best - 0.02]
    chosen = min(near, key=lambda c: (turn[c], list(candidates()).index(c)))
    return {
        "rule": DECISION_RULE,
        "ranking": {c: {"worst_vs_trend": round(worst[c][0], 4), "worst_on": worst[c][1],
                        "vs_trend": {k: round(v, 4) for k, v in worst[c][2].items()},
                        "mean_turnover": round(turn[c], 3)}
                    for c in sorted(worst, key=lambda c: -worst[c][0])},
        "chosen": chosen,
        "strategy_defaults_are_the_choice": _is_default(candidates()[chosen]),
    }


def _is_default(params: dict) -> bool:
    """True when ``params`` give the same allocation and mechanics as the Strategy's defaults."""
    from strategies import RegimeAwareEnsemble, resolve_table

    d = RegimeAwareEnsemble.param_defaults()
    same = all(d[k] == v for k, v in params.items() if k not in ("weights", "caps", "exposure"))
    a = resolve_table(params.get("weights"), params.get("caps"), None, True,
                      params.get("exposure"))
    b = resolve_table(d["weights"], d["caps"], None, True, d["exposure"])
    return bool(same and a.rows == b.rows)


def stale_open_fraction(frame: pd.DataFrame, days: pd.DatetimeIndex) -> dict:
    """Share of measured bars whose open equals the previous close, overall and by half."""
    prev = frame["close"].shift(1)
    stale = ((frame["open"] - prev).abs() <= 1e-9 * prev).astype(float).loc[days]
    mid = days[len(days) // 2]
    return {"all": round(float(stale.mean()), 3),
            "first_half": round(float(stale.loc[:mid].mean()), 3),
            "second_half": round(float(stale.loc[mid:].mean()), 3)}


def live_warmup_parity(frame: pd.DataFrame, every: int = 20) -> dict:
    """How often the regime a daily live session computes (``LIVE_DAYS`` calendar days of
    history) differs from the backtest's regime on the same day, with the default rank and v1's.
    """
    from strategies import label_series

    close = frame["close"]
    out = {}
    for label, params in (("default (rank 252, full)", {}),
                          ("v1 (rank 504, from 252)", {"vol_rank_window": 504,
                                                       "vol_rank_min": 252})):
        full = pd.Series(label_series(close.tolist(), **params), close.index)
        first = close.index[0] + pd.Timedelta(days=3 * 365)
        days = close.index[close.index >= first][::every]
        differ = warm = 0
        for d in days:
            sub = close[(close.index > d - pd.Timedelta(days=LIVE_DAYS)) & (close.index <= d)]
            lab = label_series(sub.tolist(), **params)[-1]
            differ += lab != full.loc[d]
            warm += lab == "warmup"
        out[label] = {"days": len(days), "differ": int(differ), "warmup": int(warm)}
    return out


# ------------------------------------------------------------------------------ main
def plan(series: list[str], seeds: int) -> tuple[dict, dict]:
    """Return (series jobs, battery jobs): key -> (frame key, params, cost)."""
    mv = main_variants()
    jobs: dict = {}
    for s in series:
        for cost in COSTS:
            for v in {**mv}:
                jobs[(s, v, cost)] = (s, mv[v], cost)
        for v, (_b, p) in ablation_variants().items():
            jobs[(s, v, COSTS[0])] = (s, p, COSTS[0])
        if not s.startswith("SYN"):
            for c in COST_TABLE:
                for v in ("default", "trend", "v1"):
                    jobs.setdefault((s, v, c), (s, mv[v], c))
    bjobs: dict = {}
    for kind in ("SYN_REGIME", "SYN_WALK"):
        for i in range(seeds):
            key = f"{kind}{100 + i}"
            for v in ("default", "trend", "hold", "v1", *candidates()):
                bjobs[(key, v, COSTS[0])] = (key, mv[v], COSTS[0])
            if kind == "SYN_REGIME":
                nr = ablation_variants()["default: no regime layer"][1]
                bjobs[(key, "default: no regime layer", COSTS[0])] = (key, nr, COSTS[0])
    return jobs, bjobs


def longest_warmup() -> int:
    """The longest warm-up of every variant run (bars)."""
    from strategies import RegimeAwareEnsemble

    params = [*main_variants().values(), *(p for _b, p in ablation_variants().values())]
    return max(RegimeAwareEnsemble.warmup_bars(p) for p in params)


def evaluate(series: dict[str, pd.DataFrame], seeds: int = 8, reps: int = 2000, client=None,
             progress=None, extras: bool = True, battery_bars: int = 5040) -> dict:
    """Run everything and return the report dict (the JSON); ``series``: name -> bars;
    ``battery_bars``: the length of each synthetic battery series."""
    warm = longest_warmup()
    frames = dict(series)
    states = {}
    for i in range(seeds):
        f, st = synthetic_regime_path(100 + i, battery_bars)
        frames[f"SYN_REGIME{100 + i}"] = f
        states[f"SYN_REGIME{100 + i}"] = st
        frames[f"SYN_WALK{100 + i}"] = synthetic_walk(100 + i, battery_bars)
    jobs, bjobs = plan(list(series), seeds)
    todo = {**jobs, **bjobs}
    results = run_all(todo, frames, client=client, progress=progress)
    out_series = {}
    for k, (name, frame) in enumerate(series.items()):
        runs = {(v, c): results[(s, v, c)] for (s, v, c) in jobs if s == name}
        out_series[name] = evaluate_series(name, frame, runs, warm, reps, seed=1000 * k)
    battery = {}
    if seeds:
        for kind in ("SYN_REGIME", "SYN_WALK"):
            battery[kind] = battery_summary(kind, [100 + i for i in range(seeds)], results,
                                            frames, warm, states)
    report = {
        "costs": f"{', '.join(f'{c:g}' for c in COSTS)} bp a side as commission, no slippage",
        "fills": "market orders at the next bar's open (BackBroker); WTI: the next close",
        "bootstrap": {"kind": "paired stationary (Politis-Romano)", "mean_block": BLOCK,
                      "reps": reps, "level": LEVEL},
        "warmup_bars": warm,
        "series": out_series,
        "battery": battery,
        "decision": decide(out_series, battery),
    }
    if extras:
        report["stale_open_fraction"] = {
            n: stale_open_fraction(series[n], measured(series[n], warm)) for n in series
            if n in SAMPLE}
        report["live_warmup_parity"] = {n: live_warmup_parity(series[n]) for n in series
                                        if not n.startswith("SYN")}
    return report


def _csv_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"--csv {text!r}: expected NAME=PATH")
    return name.strip(), Path(path.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.evaluate_strategy",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--series", default=",".join(BUILTIN),
                    help=f"comma-separated series (default {','.join(BUILTIN)})")
    ap.add_argument("--csv", action="append", type=_csv_arg, default=[], metavar="NAME=PATH",
                    help="add a daily OHLCV CSV as series NAME (repeatable)")
    ap.add_argument("--seeds", type=int, default=8,
                    help="synthetic battery: seeds per kind (default 8; 0 = none)")
    ap.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--workers", type=int, default=None, help="local Dask workers")
    ap.add_argument("--serial", action="store_true", help="run in this process, no Dask")
    ap.add_argument("--json", type=Path, default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)

    from bt_ibkr.errors import BtIbkrError

    csv = dict(args.csv)
    names = [s.strip() for s in args.series.split(",") if s.strip()]
    names += [n for n in csv if n not in names]
    if args.seeds < 0 or args.reps < 10:
        print("error: --seeds must be >= 0 and --reps >= 10", file=sys.stderr)
        return 2
    try:
        series = {n: load_series(n, csv) for n in names}
        from bt_ibkr.research.cluster import ClusterConfig, open_cluster, route_dask_logs

        warm = longest_warmup()
        short = [n for n, f in series.items() if len(f) < warm + 2 + 252 * 6]
        if short:
            raise BtIbkrError(f"{', '.join(short)}: fewer than {warm + 2 + 252 * 6} bars (the "
                              f"{warm}-bar warm-up and six years to measure and walk forward)")
        if not args.serial:
            from bt_ibkr.logs import log_dir

            route_dask_logs(log_dir() / "evaluate-dask.log")
        from rich.progress import Progress

        t0 = time.perf_counter()
        cluster = ClusterConfig(workers=args.workers, serial=args.serial)
        with open_cluster(cluster) as client, Progress(transient=True) as bar:
            jobs, bjobs = plan(names, args.seeds)
            task = bar.add_task("backtests", total=len(unique_jobs({**jobs, **bjobs})[0]))
            report = evaluate(series, seeds=args.seeds, reps=args.reps, client=client,
                              progress=lambda: bar.advance(task))
    except BtIbkrError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report["command"] = "python -m bench.evaluate_strategy " + " ".join(
        sys.argv[1:] if argv is None else argv)
    report["ran_on"] = cluster.describe()
    report["elapsed_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
