"""Evaluate RegimeAwareEnsemble honestly: variants x assets x windows, printed as ONE JSON object.

    python -m bench.evaluate_strategy [--assets A,B] [--variants V,W] [--decision-only]
                                      [--commission-bps 1] [--slippage-bps 2] [--out FILE]

Every number comes from ``bt_ibkr.backtest.run_backtest`` (BackBroker, market orders filled at
the next bar's open, ``write_report=False``): one run per variant and asset over the asset's
whole history, whose daily returns are then cut into windows. The Strategy is causal, so the
1999-2008 slice of a 1999-2018 run is the run a 1999-2008 backtest would give (tested in
tests/test_parity_backtest.py), and a later window starts with the state earlier bars built.

Costs: ``--commission-bps`` and ``--slippage-bps`` (default 1 + 2 bp per side, the backtest's
defaults), applied by the backtest broker to every fill at the next open.

Assets:
  ^GSPC, ^IXIC  the offline sample (1999-2018).
  WTI           West Texas Intermediate spot, daily closes 1986-2019 from ``arch.data.wti``:
                the only other daily price series that ships offline, and one the design was
                never looked at on. It has closes only: open = high = low = close, so an order
                decided at a close fills at the NEXT close (a one-bar delay) and the breakout
                sleeve's channel is a close channel. Spot crude is not directly investable:
                a test of the rules on another price process, not of a tradable product.
  SYN_REGIME    seeded (11) two-state Markov-switching prices, 1999-2018 business days: calm
                (+10%/yr, 16% vol, mean stay 200 bars) and turbulent (-30%/yr, 40% vol, mean
                stay 67 bars). The process the design assumes exists.
  SYN_WALK      seeded (12) geometric random walk (+6%/yr, 18% vol): no regimes to find, so
                nothing should beat buy-and-hold here except by luck or by vol scaling.

Variants (Strategy params):
  ensemble        the defaults (the shipped design)
  bear_cash       bear_quiet and crisis rows explicit cash (caps 0)
  bear_rebound    bear_quiet and crisis rows = the rebound sleeve, caps 0.5 / 0.25
  bear_hold       bear_quiet and crisis rows = the hold sleeve (volatility-managed long),
                  caps 0.5 / 0.25
  static_weights  use_regimes=False: the average row, no regime switching or caps
  <sleeve>        sleeves=<sleeve>, use_regimes=False: that sleeve alone with the same
                  volatility targeting (trend, breakout, meanrev, rebound, hold)
  delay_1         decision_delay=1: act one bar after deciding
  hmm             use_hmm=True

Windows: ``full`` (the asset's whole history), ``train`` 1999-01-01..2008-12-31, ``test``
2009-01-01..2018-12-31, each starting no earlier than the first bar after the Strategy's
warm-up (271 bars, ~March 2000 on the sample), for the strategy and buy-and-hold alike. The crisis/bear design is DECIDED on ^GSPC ``train`` only, by the rule
in ``DECISION_RULE``; ``--decision-only`` runs just that (it is what chose the default).
Everything else is out of sample for that choice: ^GSPC ``test``, every ^IXIC window, WTI and
the synthetic series.

Walk-forward (``walk_forward``): on each asset, for each test year Y, the bear/crisis candidate
with the best Sharpe over all of the asset's years before Y (anchored, at least 3 years after
warm-up) trades Y; the stitched out-of-sample years are compared with the same years of
buy-and-hold scaled to the stitched curve's volatility and of each fixed variant. Switching
between candidates at a year end is taken as free (the runs are separate).

Cost sensitivity (``cost_sensitivity``): ``ensemble`` and ``trend`` over the full window of the
sample assets at 0, 3 and 10 bp per side.

Each result: sharpe, cagr, max_drawdown, vol (annualised, metrics as in the backtest summary)
and ``bh_same_vol`` = buy-and-hold of the same asset over the same dates scaled to the
variant's volatility in that window (its Sharpe equals buy-and-hold's).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE_ASSETS = ("^GSPC", "^IXIC")
OTHER_ASSETS = ("WTI", "SYN_REGIME", "SYN_WALK")
WINDOWS = {
    "full": (None, None),
    "train": ("1999-01-01", "2008-12-31"),
    "test": ("2009-01-01", "2018-12-31"),
}
DECISION_ASSET = "^GSPC"
DECISION_WINDOW = "train"
CANDIDATES = ("bear_cash", "bear_rebound", "bear_hold")
COST_LEVELS = (0.0, 3.0, 10.0)
DECISION_RULE = (
    "highest Sharpe on ^GSPC 1999-2008 at the stated costs; when the best two are within 0.05 "
    "Sharpe, the one with the shallower max drawdown"
)
_ZERO_ROW = {"trend": 0.0, "breakout": 0.0, "meanrev": 0.0, "rebound": 0.0, "hold": 0.0}


def _bear_rows(sleeve: str | None, caps: tuple[float, float]) -> dict:
    row = dict(_ZERO_ROW)
    if sleeve:
        row[sleeve] = 1.0
    return {
        "weights": {"bear_quiet": dict(row), "crisis": dict(row)},
        "caps": {"bear_quiet": caps[0], "crisis": caps[1]},
    }


def variants() -> dict[str, dict]:
    """Name -> Strategy params of every evaluated variant."""
    from strategies import SLEEVES

    out: dict[str, dict] = {
        "ensemble": {},
        "bear_cash": _bear_rows(None, (0.0, 0.0)),
        "bear_rebound": _bear_rows("rebound", (0.5, 0.25)),
        "bear_hold": _bear_rows("hold", (0.5, 0.25)),
        "static_weights": {"use_regimes": False},
    }
    for s in SLEEVES:
        out[s] = {"sleeves": s, "use_regimes": False}
    out["delay_1"] = {"decision_delay": 1}
    out["hmm"] = {"use_hmm": True}
    return out


# ------------------------------------------------------------------------------ data
def _ohlc_from_close(close: np.ndarray, rng: np.random.Generator, sd: np.ndarray) -> pd.DataFrame:
    prev = np.r_[close[0], close[:-1]]
    open_ = prev * np.exp(rng.normal(0.0, 0.2 * sd))
    top = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * sd)))
    bottom = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * sd)))
    return pd.DataFrame(
        {"open": open_, "high": top, "low": bottom, "close": close, "volume": 1e6}
    )


def synthetic_regime(seed: int = 11, n: int = 5040) -> pd.DataFrame:
    """Two-state Markov-switching daily bars (see the module docstring), seeded."""
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
    return frame


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


def write_csvs(folder: Path, assets: list[str]) -> dict[str, Path]:
    """Write the non-sample assets as CSV files the ``csv`` source reads; name -> path."""
    makers = {"WTI": wti, "SYN_REGIME": synthetic_regime, "SYN_WALK": synthetic_walk}
    out = {}
    for name in assets:
        if name in makers:
            path = folder / f"{name}.csv"
            frame = makers[name]()
            frame.index = frame.index.strftime("%Y-%m-%d")
            frame.to_csv(path, index_label="date")
            out[name] = path
    return out


# ------------------------------------------------------------------------------ runs
def _stats(r: pd.Series) -> dict[str, float]:
    from bt_ibkr.metrics import compute_stats

    s = compute_stats(r)
    return {
        "sharpe": round(s.sharpe, 4),
        "cagr": round(s.cagr, 5),
        "max_drawdown": round(s.max_drawdown, 5),
        "vol": round(s.volatility, 5),
    }


def _bh_same_vol(bh: pd.Series, vol: float) -> dict[str, float]:
    from bt_ibkr.metrics import scale_to_volatility

    return _stats(scale_to_volatility(bh, vol))


def cost_config(commission_bps: float, slippage_bps: float) -> tuple[dict, str]:
    """BacktestConfig cost fields and a sentence saying how the costs were applied."""
    return (
        {"commission_bps": commission_bps, "slippage_bps": slippage_bps},
        f"commission {commission_bps:g} bp + slippage {slippage_bps:g} bp per side",
    )


def _source(asset: str, csvs: dict[str, Path]) -> dict:
    if asset in csvs:
        return {"source": "csv", "csv_paths": [csvs[asset]]}
    return {"source": "sample"}


def buy_hold(asset: str, csvs: dict[str, Path]) -> pd.Series:
    """Daily returns of buying and holding ``asset`` (its whole history)."""
    from bt_ibkr.data.history import HistoryRequest, load_history
    from bt_ibkr.metrics import buy_and_hold_returns

    hist = load_history(HistoryRequest(symbols=[asset], use_cache=False, progress=False,
                                       **_source(asset, csvs)))
    return buy_and_hold_returns({s: f["close"] for s, f in hist.frames.items()})


def run_one(asset: str, params: dict, costs: dict, csvs: dict[str, Path]):
    """Return (daily strategy returns, backtest summary) of one backtest over ``asset``."""
    from bt_ibkr.backtest import BacktestConfig, run_backtest
    from bt_ibkr.metrics import to_daily_returns

    if asset in csvs:
        cfg = BacktestConfig(symbols=[asset], source="csv", csv_paths=[csvs[asset]])
    else:
        cfg = BacktestConfig(symbols=[asset], source="sample")
    cfg.params = dict(params)
    cfg.write_report = False
    cfg.progress = False
    cfg.use_cache = False
    for k, v in costs.items():
        setattr(cfg, k, v)
    res = run_backtest(cfg)
    return to_daily_returns(res.values), res.summary


def _window(r: pd.Series, name: str, first: pd.Timestamp) -> pd.Series:
    """The window's slice of ``r``, starting no earlier than ``first`` (the end of warm-up)."""
    lo, hi = WINDOWS[name]
    lo = max(pd.Timestamp(lo), first) if lo else first
    return r.loc[lo:hi]


def decide(results: dict, delayed: dict | None = None) -> dict | None:
    """Apply DECISION_RULE to the candidates' ^GSPC train results; return the decision record
    (None when the candidates were not run).

    ``delayed`` (candidate -> stats with ``decision_delay=1`` on the same window) is recorded
    as a robustness check; the rule does not look at it.
    """
    block = results[DECISION_ASSET][DECISION_WINDOW]
    cands = {c: block[c] for c in CANDIDATES if c in block}
    if not cands:
        return None
    ranked = sorted(cands, key=lambda c: -cands[c]["sharpe"])
    chosen = ranked[0]
    if len(ranked) > 1:
        a, b = ranked[0], ranked[1]
        if cands[a]["sharpe"] - cands[b]["sharpe"] < 0.05:
            chosen = max((a, b), key=lambda c: cands[c]["max_drawdown"])
    return {
        "rule": DECISION_RULE,
        "asset": DECISION_ASSET,
        "window": WINDOWS[DECISION_WINDOW],
        "candidates": {c: {k: cands[c][k] for k in ("sharpe", "max_drawdown", "cagr")}
                       for c in ranked},
        "chosen": chosen,
        "robustness_delay_1": delayed or {},
    }


def stale_open_fraction(asset: str, csvs: dict[str, Path], index: pd.DatetimeIndex) -> dict:
    """Share of bars whose open equals the previous close, per window (after warm-up).

    Where it is near 1 (^GSPC 1999-2005 in this sample) the "next open" fill is really the
    decision bar's close: no overnight gap is paid, which flatters short-horizon sleeves.
    """
    from bt_ibkr.data.history import HistoryRequest, load_history

    hist = load_history(HistoryRequest(symbols=[asset], use_cache=False, progress=False,
                                       **_source(asset, csvs)))
    frame = next(iter(hist.frames.values()))
    prev = frame["close"].shift(1)
    stale = ((frame["open"] - prev).abs() <= 1e-9 * prev).astype(float)
    stale.index = pd.DatetimeIndex(stale.index).tz_localize(None).normalize()
    out = {}
    for w in WINDOWS:
        part = _window(stale, w, index[_warmup()])
        out[w] = round(float(part.mean()), 3) if len(part) else None
    return out


def cost_sensitivity(assets: list[str], csvs: dict[str, Path], all_variants: dict) -> dict:
    """Full-window Sharpe / max drawdown of ``ensemble`` and ``trend`` at 0, 3 and 10 bp a side.

    Costs go in as commission only (what the broker charges per side, slippage included).
    """
    out: dict = {}
    for asset in assets:
        if asset not in SAMPLE_ASSETS:
            continue
        bh = None
        for bps in COST_LEVELS:
            for v in ("ensemble", "trend"):
                r, _ = run_one(asset, all_variants[v], {"commission_bps": bps}, csvs)
                first = r.index[_warmup()]
                if bh is None:
                    bh = buy_hold(asset, csvs).reindex(r.index).fillna(0.0)
                st = _stats(_window(r, "full", first))
                st["bh_same_vol"] = _bh_same_vol(_window(bh, "full", first), st["vol"])
                out.setdefault(asset, {}).setdefault(f"{bps:g}bp", {})[v] = st
    return out


def _warmup() -> int:
    """Bars the Strategy spends in warm-up with its default params."""
    from strategies import warmup_bars

    return warmup_bars()


def walk_forward(rets: dict[str, pd.Series], bh: pd.Series, warmup_end: pd.Timestamp) -> dict:
    """Anchored yearly walk-forward over the bear/crisis candidates (module docstring)."""
    from bt_ibkr.metrics import compute_stats

    years = sorted({d.year for d in bh.index})
    first_test = warmup_end.year + 4  # >= 3 whole years of trading before the first test year
    picks: dict[int, str] = {}
    stitched = []
    for y in years:
        if y < first_test:
            continue
        train_end = f"{y - 1}-12-31"
        scores = {c: compute_stats(rets[c].loc[warmup_end:train_end]).sharpe for c in CANDIDATES}
        pick = max(CANDIDATES, key=lambda c: (scores[c], c))
        picks[y] = pick
        stitched.append(rets[pick].loc[f"{y}-01-01":f"{y}-12-31"])
    if not stitched:
        return {}
    oos = pd.concat(stitched)
    out = {"test_years": [min(picks), max(picks)], "picks": picks, "stitched": _stats(oos)}
    out["buy_hold"] = _stats(bh.loc[oos.index])
    out["bh_same_vol"] = _bh_same_vol(bh.loc[oos.index], out["stitched"]["vol"])
    out["fixed"] = {c: _stats(rets[c].loc[oos.index]) for c in ("ensemble", *CANDIDATES, "trend")
                    if c in rets}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.evaluate_strategy",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--assets", default=",".join(SAMPLE_ASSETS + OTHER_ASSETS))
    ap.add_argument("--variants", default="all", help="comma-separated names, or 'all'")
    ap.add_argument("--decision-only", action="store_true",
                    help="only the candidates on ^GSPC 1999-2008 (the decision), nothing else")
    ap.add_argument("--commission-bps", type=float, default=1.0)
    ap.add_argument("--slippage-bps", type=float, default=2.0)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON to this file")
    args = ap.parse_args(argv)

    from rich.progress import Progress


    all_variants = variants()
    if args.decision_only:
        assets, names, windows = [DECISION_ASSET], list(CANDIDATES) + ["ensemble"], ["train"]
    else:
        assets = [a.strip() for a in args.assets.split(",") if a.strip()]
        names = list(all_variants) if args.variants == "all" else [
            v.strip() for v in args.variants.split(",") if v.strip()]
        windows = list(WINDOWS)
    bad = [a for a in assets if a not in SAMPLE_ASSETS + OTHER_ASSETS]
    bad += [v for v in names if v not in all_variants]
    if bad:
        print(f"error: unknown asset/variant {bad}; assets: {SAMPLE_ASSETS + OTHER_ASSETS}, "
              f"variants: {list(all_variants)}", file=sys.stderr)
        return 2
    costs, cost_note = cost_config(args.commission_bps, args.slippage_bps)
    t0 = time.perf_counter()
    results: dict = {}
    runs: dict = {}
    wf: dict = {}
    stale: dict = {}
    costs_table: dict = {}
    delayed: dict = {}
    with tempfile.TemporaryDirectory() as tmp, Progress(transient=True) as progress:
        csvs = write_csvs(Path(tmp), assets)
        task = progress.add_task("backtests", total=len(assets) * len(names))
        for asset in assets:
            rets = {}
            for v in names:
                progress.update(task, description=f"{asset} {v}")
                rets[v], summary = run_one(asset, all_variants[v], costs, csvs)
                runs.setdefault(asset, {})[v] = {
                    "trades": summary["trades"], "exposure": round(summary["exposure"], 4),
                    "regime_counts": summary["regime_counts"],
                }
                progress.advance(task)
            index = rets[names[0]].index
            bh = buy_hold(asset, csvs).reindex(index).fillna(0.0)
            # windows start after the warm-up (the bars the Strategy must hold cash)
            first = index[_warmup()]
            per = {}
            for w in windows:
                bhw = _window(bh, w, first)
                block = {"dates": [str(bhw.index[0].date()), str(bhw.index[-1].date())],
                         "buy_hold": _stats(bhw)}
                for v in names:
                    st = _stats(_window(rets[v], w, first))
                    st["bh_same_vol"] = _bh_same_vol(bhw, st["vol"])
                    block[v] = st
                per[w] = block
            results[asset] = per
            stale[asset] = stale_open_fraction(asset, csvs, index)
            if asset == DECISION_ASSET:
                for c in CANDIDATES:
                    progress.update(task, description=f"{asset} {c} decision_delay=1")
                    r1, _ = run_one(asset, {**all_variants[c], "decision_delay": 1}, costs, csvs)
                    st = _stats(_window(r1, DECISION_WINDOW, first))
                    delayed[c] = {k: st[k] for k in ("sharpe", "max_drawdown", "cagr")}
            if not args.decision_only and all(c in rets for c in CANDIDATES):
                wf[asset] = walk_forward(rets, bh, first)
        if not args.decision_only:
            progress.update(task, description="cost sensitivity")
            costs_table = cost_sensitivity(assets, csvs, all_variants)
    out = {
        "command": "python -m bench.evaluate_strategy " + " ".join(argv or sys.argv[1:]),
        "costs": cost_note,
        "fills": "market orders at the next bar's open (BackBroker); WTI: next close",
        "windows": {k: list(v) for k, v in WINDOWS.items() if k in windows},
        "decision": decide(results, delayed) if DECISION_ASSET in results else None,
        "stale_open_fraction": stale,
        "results": results,
        "runs": runs,
        "walk_forward": wf,
        "cost_sensitivity": costs_table,
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(out, indent=1, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
