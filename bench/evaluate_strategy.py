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
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE = ("^GSPC", "^IXIC")
BUILTIN = ("^GSPC", "^IXIC", "WTI", "SYN_REGIME", "SYN_WALK")
COSTS = (5.0, 10.0)
COST_TABLE = (0.0, 5.0, 10.0, 20.0)
BLOCK = 21
LEVEL = 0.90
LIVE_DAYS = 730  # calendar days of history a daily live session warms up on
REGIMES = ("bull_quiet", "bull_volatile", "range", "bear_quiet", "crisis")
RISK_OFF = ("bull_volatile", "bear_quiet", "crisis")  # high volatility or a down trend
DECISION_RULE = (
    "among CANDIDATES, the highest worst-case Sharpe difference against the trend sleeve alone "
    "over ^GSPC, ^IXIC, WTI, SYN_REGIME, SYN_WALK and the battery's two means at 5 bp a side; "
    "within 0.02 of the best, the lowest mean turnover"
)


# ------------------------------------------------------------------------------ variants
def _rows(**w: float) -> dict:
    from strategies import SLEEVES

    row = {s: float(w.get(s, 0.0)) for s in SLEEVES}
    return {r: dict(row) for r in REGIMES}


def _v1() -> dict:
    """The previous default (sleeve switching), exactly."""
    from strategies import V1_CAPS, V1_WEIGHTS

    return {
        "weights": V1_WEIGHTS, "caps": V1_CAPS, "exposure": {r: 1.0 for r in REGIMES},
        "crisis_immediate": False, "rebound_stop_low": 0, "rebound_max_hold": 0,
        "meanrev_min_hold": 1, "band": 0.10, "band_relative": False,
        "vol_rank_window": 504, "vol_rank_min": 252,
    }


_NEW_MECHANICS = {"crisis_immediate": True, "rebound_stop_low": 10, "rebound_max_hold": 5,
                  "meanrev_min_hold": 5, "band": 0.15, "band_relative": True,
                  "vol_rank_window": 252, "vol_rank_min": None}
_ONES = {r: 1.0 for r in REGIMES}
_CAPS1 = {r: 1.0 for r in REGIMES}


def candidates() -> dict[str, dict]:
    """The regime-aware structures the decision chooses among (name -> full params)."""
    from strategies import V1_CAPS, V1_WEIGHTS

    return {
        # the trend sleeve; the regime layer takes it to cash in crisis
        "trend + crisis cash": {"weights": _rows(trend=1.0), "caps": _CAPS1,
                                "exposure": {**_ONES, "crisis": 0.0}, **_NEW_MECHANICS},
        # half trend, half volatility-managed hold; cash in crisis
        "trend/hold + crisis cash": {"weights": _rows(trend=0.5, hold=0.5), "caps": _CAPS1,
                                     "exposure": {**_ONES, "crisis": 0.0}, **_NEW_MECHANICS},
        # regimes as the only signal: a volatility-managed hold scaled by regime
        "hold scaled by regime": {"weights": _rows(hold=1.0), "caps": _CAPS1,
                                  "exposure": {**_ONES, "range": 0.5, "bear_quiet": 0.0,
                                               "crisis": 0.0}, **_NEW_MECHANICS},
        # v1's sleeve switching with every mechanical fix (stopped rebound, min hold, band, ...)
        "v1 fixed": {"weights": V1_WEIGHTS, "caps": V1_CAPS, "exposure": _ONES,
                     **_NEW_MECHANICS},
    }


def main_variants() -> dict[str, dict]:
    """The rows of the main tables and of the walk-forward pool (name -> params)."""
    return {
        "default": {},
        "trend": {"sleeves": "trend", "use_regimes": False},
        "hold": {"sleeves": "hold", "use_regimes": False},
        "v1": _v1(),
        **candidates(),
    }


POOL = ("trend + crisis cash", "trend/hold + crisis cash", "hold scaled by regime", "v1 fixed",
        "trend", "hold")


def ablation_variants() -> dict[str, tuple[str, dict]]:
    """Name -> (the row it is compared with, params): each change off in the default, on in v1."""
    v1 = _v1()
    crisis_rebound = {"weights": {"crisis": {"trend": 0.0, "rebound": 1.0}},
                      "exposure": {"crisis": 1.0}, "caps": {"crisis": 0.25}}
    return {
        "default: no regime layer": ("default", {"use_regimes": False}),
        "default: absolute band 0.10": ("default", {"band": 0.10, "band_relative": False}),
        "default: crisis waits for the dwell": ("default", {"crisis_immediate": False}),
        "default: rank 504, from 252 values (v1)": ("default", {"vol_rank_window": 504,
                                                                "vol_rank_min": 252}),
        "default: rank 504, full": ("default", {"vol_rank_window": 504}),
        "default: crisis = stopped rebound": ("default", crisis_rebound),
        "default: crisis = unstopped rebound": ("default", {**crisis_rebound,
                                                          "rebound_stop_low": 0,
                                                          "rebound_max_hold": 0}),
        "default + HMM overlay (experimental)": ("default", {"use_hmm": True}),
        "default, acting one bar later": ("default", {"decision_delay": 1}),
        "v1 + stopped rebound": ("v1", {**v1, "rebound_stop_low": 10, "rebound_max_hold": 5}),
        "v1 + meanrev min hold 5": ("v1", {**v1, "meanrev_min_hold": 5}),
        "v1 + no meanrev in bull rows": ("v1", {**v1, "weights": {
            **v1["weights"],
            "bull_quiet": {**v1["weights"]["bull_quiet"], "meanrev": 0.0},
            "bull_volatile": {**v1["weights"]["bull_volatile"], "meanrev": 0.0}}}),
        "v1 + relative band 0.15": ("v1", {**v1, "band": 0.15, "band_relative": True}),
        "v1 + crisis at once": ("v1", {**v1, "crisis_immediate": True}),
        "v1 + crisis cash": ("v1", {**v1, "exposure": {**_ONES, "crisis": 0.0}}),
        "v1 + full 252 rank": ("v1", {**v1, "vol_rank_window": 252, "vol_rank_min": None}),
        "v1 + all of the above but crisis cash": ("v1", candidates()["v1 fixed"]),
    }


# ------------------------------------------------------------------------------ data
def _ohlc_from_close(close: np.ndarray, rng: np.random.Generator, sd: np.ndarray) -> pd.DataFrame:
    prev = np.r_[close[0], close[:-1]]
    open_ = prev * np.exp(rng.normal(0.0, 0.2 * sd))
    top = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * sd)))
    bottom = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * sd)))
    return pd.DataFrame(
        {"open": open_, "high": top, "low": bottom, "close": close, "volume": 1e6}
    )


def synthetic_regime_path(seed: int = 11, n: int = 5040) -> tuple[pd.DataFrame, np.ndarray]:
    """Two-state Markov-switching daily bars and their planted state (1 = turbulent), seeded."""
    rng = np.random.default_rng(seed)
    mu = np.array([0.10, -0.30]) / 252
    sd = np.array([0.16, 0.40]) / math.sqrt(252)
    stay = np.array([1 - 1 / 200, 1 - 1 / 67])
    state = np.zeros(n, dtype=int)
    u = rng.random(n)
    for t in range(1, n):
        s = state[t - 1]
        state[t] = s if u[t] < stay[s] else 1 - s
    r = rng.normal(mu[state], sd[state])
    close = 100.0 * np.exp(np.cumsum(r))
    frame = _ohlc_from_close(close, rng, sd[state])
    frame.index = pd.bdate_range("1999-01-04", periods=n, name="date")
    return frame, state


def synthetic_regime(seed: int = 11, n: int = 5040) -> pd.DataFrame:
    """Two-state Markov-switching daily bars (see the module docstring), seeded."""
    return synthetic_regime_path(seed, n)[0]


def synthetic_walk(seed: int = 12, n: int = 5040) -> pd.DataFrame:
    """Geometric random walk daily bars (+6%/yr drift, 18% vol), seeded."""
    rng = np.random.default_rng(seed)
    sd = np.full(n, 0.18 / math.sqrt(252))
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.06 / 252, sd)))
    frame = _ohlc_from_close(close, rng, sd)
    frame.index = pd.bdate_range("1999-01-04", periods=n, name="date")
    return frame


def wti() -> pd.DataFrame:
    """WTI spot daily closes from arch (holidays dropped) as bars with open=high=low=close."""
    from arch.data import wti as wti_data

    close = wti_data.load()["DCOILWTICO"].dropna().astype(float)
    frame = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 0.0}
    )
    frame.index = pd.DatetimeIndex(close.index, name="date")
    return frame


def _naive(frame: pd.DataFrame) -> pd.DataFrame:
    idx = pd.DatetimeIndex(frame.index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    out = frame[["open", "high", "low", "close", "volume"]].astype(float).copy()
    out.index = idx.normalize().rename("date")
    return out


def load_series(name: str, csv: dict[str, Path] | None = None) -> pd.DataFrame:
    """Return the daily bars of a built-in series or of a ``--csv NAME=PATH`` one.

    Raises ConfigError for an unknown name, DataError for a CSV the csv source rejects."""
    from bt_ibkr.errors import ConfigError

    if csv and name in csv:
        from bt_ibkr.data.history import HistoryRequest, load_history

        hist = load_history(HistoryRequest(symbols=[name], source="csv", csv_paths=[csv[name]],
                                           use_cache=False, progress=False))
        return _naive(next(iter(hist.frames.values())))
    if name in SAMPLE:
        from feeds.sample import load_sample

        return _naive(load_sample(name, None, None))
    makers = {"WTI": wti, "SYN_REGIME": synthetic_regime, "SYN_WALK": synthetic_walk}
    if name not in makers:
        raise ConfigError(f"--series {name}: unknown; built-in: {', '.join(BUILTIN)}, or give "
                          f"--csv {name}=PATH")
    return makers[name]()


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


# ------------------------------------------------------------------------------ statistics
def _sharpe(x: np.ndarray) -> np.ndarray:
    """Annualised Sharpe along the last axis (0 where the volatility is 0)."""
    m = x.mean(axis=-1)
    s = x.std(axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(s > 0, m / s * math.sqrt(252), 0.0)


def stationary_indices(n: int, reps: int, block: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``reps`` x ``n`` indices of a stationary bootstrap (Politis & Romano 1994): blocks
    start at uniform positions, their lengths are geometric with mean ``block``, the series wraps
    around."""
    start = rng.integers(0, n, size=(reps, n))
    new = rng.random((reps, n)) < 1.0 / block
    new[:, 0] = True
    pos = np.arange(n)
    last = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    return (np.take_along_axis(start, last, axis=1) + (pos - last)) % n


def bootstrap_sharpes(rows: dict[str, np.ndarray], reps: int, seed: int,
                      block: float = BLOCK) -> dict[str, np.ndarray]:
    """Resampled Sharpe ratios of every row on the SAME resampled days: name -> array(reps)."""
    names = list(rows)
    mat = np.vstack([rows[k] for k in names])
    n = mat.shape[1]
    rng = np.random.default_rng(seed)
    out = {k: np.empty(reps) for k in names}
    step = max(1, min(reps, 2_000_000 // max(1, n * len(names))))
    for lo in range(0, reps, step):
        k = min(step, reps - lo)
        idx = stationary_indices(n, k, block, rng)
        sh = _sharpe(mat[:, idx])  # rows x k
        for i, name in enumerate(names):
            out[name][lo:lo + k] = sh[i]
    return out


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples``."""
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [a, 1.0 - a])
    return float(lo), float(hi)


def _max_dd(r: np.ndarray) -> float:
    w = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    return float(np.min(w / np.maximum.accumulate(w) - 1.0))


def row_stats(r: pd.Series, exposure: float, turnover: float) -> dict:
    """Sharpe, CAGR, max drawdown, volatility, turnover and exposure of one row."""
    x = r.to_numpy(dtype=float)
    years = len(x) / 252
    total = float(np.prod(1.0 + x))
    return {
        "sharpe": round(float(_sharpe(x)), 4),
        "cagr": round(total ** (1.0 / years) - 1.0 if years > 0 and total > 0 else -1.0, 5),
        "max_drawdown": round(_max_dd(x), 5),
        "vol": round(float(x.std(ddof=1) * math.sqrt(252)), 5),
        "turnover": round(turnover, 3),
        "exposure": round(exposure, 4),
    }


def _turnover(traded: pd.Series) -> float:
    years = len(traded) / 252
    return float(traded.sum()) / years if years > 0 else 0.0


def same_vol(bh: pd.Series, vol: float) -> tuple[pd.Series, float, float]:
    """Buy-and-hold scaled to ``vol``: (returns, scale, turnover of holding that scale)."""
    from bt_ibkr.metrics import constant_exposure_turnover

    v = float(bh.std(ddof=1) * math.sqrt(252))
    k = vol / v if v > 0 else 0.0
    return bh * k, k, constant_exposure_turnover(bh, k)


# ------------------------------------------------------------------------------ evaluation
def measured(frame: pd.DataFrame, warm: int) -> pd.DatetimeIndex:
    """The measured days: after the base day ``warm`` bars in (its close is the base)."""
    return pd.DatetimeIndex(frame.index)[warm + 1:]


def compare(rows: dict[str, tuple[pd.Series, float, float]], bh: pd.Series, reps: int,
            seed: int, ref: tuple[str, ...] = ("trend",)) -> dict:
    """Stats of each row with its Sharpe interval and paired intervals of its Sharpe
    difference against buy-and-hold (= B&H same vol) and against each ``ref`` row.

    ``rows``: name -> (returns, exposure, turnover) over the same days as ``bh``."""
    data = {k: v[0].to_numpy(dtype=float) for k, v in rows.items()}
    data["__bh"] = bh.to_numpy(dtype=float)
    boot = bootstrap_sharpes(data, reps, seed)
    out = {}
    for name, (r, ex, to) in rows.items():
        st = row_stats(r, ex, to)
        st["sharpe_ci"] = [round(v, 4) for v in interval(boot[name])]
        d = boot[name] - boot["__bh"]
        st["vs_bh"] = {"diff": round(st["sharpe"] - float(_sharpe(data["__bh"])), 4),
                       "ci": [round(v, 4) for v in interval(d)]}
        for other in ref:
            if other in rows and other != name:
                d = boot[name] - boot[other]
                st[f"vs_{other}"] = {
                    "diff": round(st["sharpe"] - float(_sharpe(data[other])), 4),
                    "ci": [round(v, 4) for v in interval(d)]}
        out[name] = st
    return out


def bh_row(bh: pd.Series, vol: float) -> dict:
    """The B&H same vol row for a row of volatility ``vol``."""
    r, k, to = same_vol(bh, vol)
    st = row_stats(r, k, to)
    st["sharpe_ci"] = None
    return st


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


# ------------------------------------------------------------------------------ tables
def _pct(x: float) -> str:
    return f"{x * 100:.1f}%".replace("-", "−")


def _num(x: float, plus: bool = False) -> str:
    s = f"{x:+.2f}" if plus else f"{x:.2f}"
    return s.replace("-", "−")


def _ci(ci) -> str:
    return f"[{_num(ci[0], True)}, {_num(ci[1], True)}]" if ci else ""


def _diff(d: dict | None) -> str:
    return f"{_num(d['diff'], True)} {_ci(d['ci'])}" if d else "—"


def _main_row(label: str, st: dict) -> str:
    sh = f"{_num(st['sharpe'])} [{_num(st['sharpe_ci'][0])}, {_num(st['sharpe_ci'][1])}]" \
        if st.get("sharpe_ci") else _num(st["sharpe"])
    return (f"| {label} | {sh} | {_diff(st.get('vs_bh'))} | {_diff(st.get('vs_trend'))} | "
            f"{_pct(st['cagr'])} | {_pct(st['max_drawdown'])} | {st['turnover']:.1f} | "
            f"{st['exposure']:.2f} |")


_MAIN_HEAD = ("| series, row | Sharpe [90% CI] | − B&H (same vol) [90% CI] | − trend alone [90% CI] "
              "| CAGR | max DD | turnover/yr | exposure |\n|---|---|---|---|---|---|---|---|")

LABELS = {"default": "**default** (fixed)", "walk-forward": "walk-forward selection",
          "trend": "trend alone", "hold": "hold alone (vol-managed)", "v1": "v1 (previous default)"}


def summary_table(report: dict, cost: float = COSTS[0]) -> str:
    """The headline table (README and docs/RESULTS.md): the default per series at ``cost``."""
    out = [
        "| series, measured | default Sharpe [90% CI] | − B&H same vol [90% CI] | "
        "− trend alone [90% CI] | max DD (B&H same vol) | turnover/yr (v1) | exposure |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, res in report["series"].items():
        fx = res["costs"][f"{cost:g}"]["fixed"]
        d, v1 = fx["default"], fx["v1"]
        out.append(
            f"| {name} {res['dates'][0][:4]}–{res['dates'][1][:4]} | {_num(d['sharpe'])} "
            f"[{_num(d['sharpe_ci'][0])}, {_num(d['sharpe_ci'][1])}] | {_diff(d['vs_bh'])} | "
            f"{_diff(d['vs_trend'])} | {_pct(d['max_drawdown'])} "
            f"({_pct(d['bh_same_vol']['max_drawdown'])}) | {d['turnover']:.1f} "
            f"({v1['turnover']:.1f}) | {d['exposure']:.2f} |")
    return "\n".join(out) + "\n"


def markdown(report: dict) -> str:
    """The Markdown tables of docs/RESULTS.md (the README copies the summary table)."""
    out: list[str] = [f"### Summary ({COSTS[0]:g} bp a side)\n", summary_table(report)]
    ser = report["series"]
    out.append("### Table 1. Each series: the default and the walk-forward, fixed rows "
               "and benchmarks\n")
    for cost in (f"{c:g}" for c in COSTS):
        out.append(f"**{cost} bp a side**\n")
        out.append(_MAIN_HEAD)
        for name, res in ser.items():
            blk = res["costs"][cost]
            fx = blk["fixed"]
            d0, d1 = res["dates"]
            out.append(f"| **{name}** {d0[:4]}–{d1[:4]} | | | | | | | | |")
            for v in ("default", "trend", "v1"):
                out.append(_main_row(LABELS[v], fx[v]))
            bsv = fx["default"]["bh_same_vol"]
            out.append(_main_row("B&H same vol as the default", bsv))
            wf = blk.get("walk_forward")
            if wf:
                y0, y1 = wf["years"]
                out.append(f"| *{y0}–{y1}, walk-forward years:* | | | | | | | | |")
                for v in ("walk-forward", "default", "trend"):
                    out.append(_main_row(LABELS[v], wf["rows"][v]))
        out.append("")
    out.append("### Table 2. Walk-forward picks (5 bp; count of years)\n")
    out.append("| series | years | " + " | ".join(POOL) + " |")
    out.append("|---|---|" + "---|" * len(POOL))
    for name, res in ser.items():
        wf = res["costs"][f"{COSTS[0]:g}"].get("walk_forward")
        if wf:
            cells = [str(wf["pick_counts"].get(p, 0)) for p in POOL]
            out.append(f"| {name} | {wf['years'][0]}–{wf['years'][1]} | " + " | ".join(cells)
                       + " |")
    out.append("")
    if report.get("battery"):
        out.append(f"### Table 3. Synthetic battery ({COSTS[0]:g} bp; means over seeds)\n")
        out.append("| kind | row | Sharpe | − B&H | wins vs B&H | − trend | wins vs trend | "
                   "max DD | B&H same vol max DD | turnover/yr | exposure |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind, b in report["battery"].items():
            for v in ("default", "trend", "hold", "v1", *candidates()):
                s = b["variants"][v]
                label = LABELS.get(v, v)
                out.append(
                    f"| {kind} ×{s['n']} | {label} | {_num(s['sharpe'])} | "
                    f"{_num(s['vs_bh'], True)} | {s['wins_vs_bh']}/{s['n']} | "
                    f"{_num(s['vs_trend'], True)} | {s['wins_vs_trend']}/{s['n']} | "
                    f"{_pct(s['max_drawdown'])} | {_pct(s['bh_same_vol_max_drawdown'])} | "
                    f"{s['turnover']:.1f} | {s['exposure']:.2f} |")
        out.append("")
        pl = report["battery"].get("SYN_REGIME", {}).get("planted")
        if pl:
            out.append("### Table 4. Planted regimes (SYN_REGIME battery, means over seeds)\n")
            out.append("| | planted turbulent days | planted calm days |")
            out.append("|---|---|---|")
            out.append(f"| share of days | {_pct(pl['turbulent_share'])} | "
                       f"{_pct(1 - pl['turbulent_share'])} |")
            out.append(f"| labelled bull_volatile, bear_quiet or crisis | "
                       f"{_pct(pl['risk_off_in_turbulent'])} | {_pct(pl['risk_off_in_calm'])} |")
            out.append(f"| labelled crisis | {_pct(pl['crisis_in_turbulent'])} | "
                       f"{_pct(pl['crisis_in_calm'])} |")
            out.append(f"| default's mean exposure | {pl['exposure_turbulent']:.2f} | "
                       f"{pl['exposure_calm']:.2f} |")
            out.append(f"| same, no regime layer | {pl['exposure_turbulent_no_regimes']:.2f} "
                       f"| |")
            out.append("")
    out.append(f"### Table 5. Ablation ({COSTS[0]:g} bp): Sharpe, difference to its base "
               "[90% CI], max DD, turnover/yr, exposure\n")
    names = list(ser)
    out.append("| change | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))
    base_rows = {"default": "default", "v1": "v1"}
    for base in base_rows:
        cells = []
        for n in names:
            st = ser[n]["costs"][f"{COSTS[0]:g}"]["fixed"][base]
            cells.append(f"{_num(st['sharpe'])}, {_pct(st['max_drawdown'])}, "
                         f"{st['turnover']:.1f}, {st['exposure']:.2f}")
        out.append(f"| {base} | " + " | ".join(cells) + " |")
        for v, (b, _p) in ablation_variants().items():
            if b != base:
                continue
            cells = []
            for n in names:
                st = ser[n]["ablation"][v]
                cells.append(f"{_num(st['sharpe'])} ({_diff(st[f'vs_{b}'])}), "
                             f"{_pct(st['max_drawdown'])}, {st['turnover']:.1f}, "
                             f"{st['exposure']:.2f}")
            out.append(f"| {v} | " + " | ".join(cells) + " |")
    out.append("")
    out.append(f"### Table 6. The candidates of the decision ({COSTS[0]:g} bp): Sharpe, "
               "− trend alone [90% CI], max DD, turnover/yr, exposure\n")
    out.append("| candidate | " + " | ".join(names) + " |")
    out.append("|---|" + "---|" * len(names))
    for c in candidates():
        cells = []
        for n in names:
            st = ser[n]["candidates"][c]
            cells.append(f"{_num(st['sharpe'])} ({_diff(st['vs_trend'])}), "
                         f"{_pct(st['max_drawdown'])}, {st['turnover']:.1f}, "
                         f"{st['exposure']:.2f}")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("### Table 7. Cost sensitivity: Sharpe / turnover per year / exposure, all "
               "cost as commission (no slippage)\n")
    real = [n for n in names if not n.startswith("SYN")]
    if not real:
        out.pop()
        out.pop()
        return _tail(out, report)
    out.append("| per side | " + " | ".join(f"{n} {v}" for n in real
                                           for v in ("default", "trend", "v1")) + " |")
    out.append("|---|" + "---|" * (3 * len(real)))
    for c in COST_TABLE:
        cells = []
        for n in real:
            for v in ("default", "trend", "v1"):
                st = ser[n]["cost_table"].get(f"{c:g}", {}).get(v)
                cells.append(f"{_num(st['sharpe'])} / {st['turnover']:.1f} / "
                             f"{st['exposure']:.2f}" if st else "—")
        out.append(f"| {c:g} bp | " + " | ".join(cells) + " |")
    out.append("")
    return _tail(out, report)


def _tail(out: list[str], report: dict) -> str:
    dec = report.get("decision")
    if dec:
        out.append("### Table 8. Decision: worst Sharpe difference against trend alone "
                   f"({COSTS[0]:g} bp)\n")
        out.append("| candidate | worst − trend | on | mean turnover/yr | chosen |")
        out.append("|---|---|---|---|---|")
        for c, r in dec["ranking"].items():
            mark = "**yes**" if c == dec["chosen"] else ""
            out.append(f"| {c} | {_num(r['worst_vs_trend'], True)} | {r['worst_on']} | "
                       f"{r['mean_turnover']:.1f} | {mark} |")
        out.append("")
        out.append(f"Strategy defaults are the chosen candidate: "
                   f"{dec['strategy_defaults_are_the_choice']}.")
        out.append("")
    if report.get("live_warmup_parity"):
        out.append(f"### Table 9. A daily live session's regime ({LIVE_DAYS} calendar days of "
                   "history) against the backtest's, every 20th day\n")
        out.append("| series | rank | days | differ | still warming up |")
        out.append("|---|---|---|---|---|")
        for n, res in report["live_warmup_parity"].items():
            for lab, r in res.items():
                out.append(f"| {n} | {lab} | {r['days']} | {r['differ']} | {r['warmup']} |")
        out.append("")
    if report.get("stale_open_fraction"):
        out.append("Stale opens (open equal to the previous close), share of measured bars: "
                   + "; ".join(f"{n} {v['all']:.0%} (first half {v['first_half']:.0%}, second "
                               f"half {v['second_half']:.0%})"
                               for n, v in report["stale_open_fraction"].items()) + ".")
    return "\n".join(out).rstrip() + "\n"


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
