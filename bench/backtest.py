"""Per-bar cost of RegimeAwareEnsemble relative to an empty Strategy and an SMA crossover.

    python -m bench.backtest [--repeats N] [--quick] [--feeds K] [--no-preload]
                             [--hmm-backend auto|numba|python] [--no-cold-compile]

Runs, in one process and interleaved, Cerebro over the arch S&P 500 sample (5,031 daily bars,
1999-2018; ``--feeds K`` adds K copies of the sample as extra feeds) with: an empty Strategy,
a plain backtrader SMA(50)/SMA(200) crossover (buy on cross up, close on cross down), the
ensemble (use_hmm off) and the ensemble with the HMM overlay. Each timing is the whole
``cerebro.run()`` in CPU seconds of this process (``time.process_time``: other processes on a
shared machine do not inflate it the way they inflate wall time; feed loading included,
``stdstats=False``, same broker settings); the reported figure is the median over
``--repeats`` runs. Prints ONE JSON object:

    bars, feeds, repeats, preload, bars_per_sec_{empty,sma,ensemble,ensemble_hmm},
    ratio_vs_empty, ratio_vs_sma, ratio_vs_empty_hmm, floor_ratio_vs_empty (a Strategy that
    only replays the ensemble's orders, vs the empty one: the floor for these decisions),
    final_value_ensemble (the replay must end on the same value, or the bench exits),
    hmm_fit_ms_1260x50 (one EM fit, 1,260 returns, 50 forced iterations, on the path that ran;
    hmm_fit_ms_1260x50_python the same on the pure-Python path),
    hmm_backend (which EM path ran: "numba" or "python"; ``--hmm-backend``, else BT_IBKR_HMM,
    else numba when installed), hmm_backend_reason, hmm_load_s (what loading it cost this
    process, before any timing: importing numba and loading the compiled kernels from numba's
    on-disk cache, or compiling them), hmm_from_cache, hmm_compile_s_cold (a fresh process
    compiling the kernels into an empty cache, i.e. a machine's first run; skipped with
    ``--no-cold-compile``),
    breakdown_us_per_bar (CPU microseconds per bar: the whole run, the empty Strategy's,
    the Strategy's computing with the regime update, sleeves and decide(), backtrader's work
    for orders and the held position, the HMM overlay and its refits; see :func:`breakdown`)

A ratio is (time of the ensemble) / (time of the baseline) on the same bars: machine noise
largely cancels. Targets (issue #23): ratio_vs_empty <= 1.3, ratio_vs_sma <= 1.0,
ratio_vs_empty_hmm <= 2.0; README's Benchmarks section has the measured rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import backtrader as bt
import pandas as pd


class EmptyStrategy(bt.Strategy):
    """Does nothing: the cost of Cerebro, the feed and the broker alone."""

    def next(self):
        pass


class SmaCross(bt.Strategy):
    """Plain backtrader SMA(fast)/SMA(slow) crossover: buy on cross up, close on cross down."""

    params = (("fast", 50), ("slow", 200), ("stake", 100))

    def __init__(self):
        self.cross = bt.ind.CrossOver(
            bt.ind.SMA(period=self.p.fast), bt.ind.SMA(period=self.p.slow)
        )

    def next(self):
        if self.cross[0] > 0 and not self.position:
            self.buy(size=self.p.stake)
        elif self.cross[0] < 0 and self.position:
            self.close()


class ReplayOrders(bt.Strategy):
    """Sends given orders on given bars and computes nothing: ``plan`` maps len(self) (the
    bar count) to a list of (data index, signed size). Replaying the ensemble's orders gives
    backtrader's own cost of the ensemble's decisions (orders, fills, valuing the position)."""

    params = (("plan", None),)

    def next(self):
        todo = self.p.plan.get(len(self))
        if todo:
            for i, size in todo:
                if size < 0:
                    self.sell(data=self.datas[i], size=-size)
                else:
                    self.buy(data=self.datas[i], size=size)


def _recording_ensemble(plan: dict):
    """RegimeAwareEnsemble that writes each order it sends into ``plan`` (see ReplayOrders);
    decide() is untouched, so it runs the Strategy's own per-bar path."""
    from strategies import RegimeAwareEnsemble

    class Recording(RegimeAwareEnsemble):
        def _note(self, data, size):
            plan.setdefault(len(self), []).append((self.datas.index(data), size))

        def buy(self, data=None, size=None, **kwargs):
            self._note(data, size)
            return super().buy(data=data, size=size, **kwargs)

        def sell(self, data=None, size=None, **kwargs):
            self._note(data, -size)
            return super().sell(data=data, size=size, **kwargs)

    return Recording


def load_sample() -> pd.DataFrame:
    """The arch S&P 500 sample with lowercase OHLCV columns (open, high, low, close, volume)."""
    from arch.data import sp500

    df = sp500.load()
    df.columns = [c.lower() for c in df.columns]
    return df[["open", "high", "low", "close", "volume"]]


def run_once(frame: pd.DataFrame, feeds: int, strategy, preload: bool, **kwargs):
    """One timed Cerebro run; returns (CPU seconds, final broker value)."""
    cerebro = bt.Cerebro(preload=preload, runonce=preload, stdstats=False)
    for i in range(feeds):
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=f"SPX{i}")
    cerebro.broker.setcash(1_000_000.0)
    cerebro.addstrategy(strategy, **kwargs)
    t0 = time.process_time()
    cerebro.run()
    return time.process_time() - t0, cerebro.broker.getvalue()


def _cpu_per_bar(fn, bars: int, repeats: int) -> float:
    """Median CPU microseconds per bar of ``fn()`` (which runs over ``bars`` bars)."""
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        out.append(time.process_time() - t0)
    return statistics.median(out) * 1e6 / bars


def component_costs(frame: pd.DataFrame, repeats: int) -> dict[str, float]:
    """CPU microseconds per bar of the regime update (without and with the HMM overlay) and of
    the default sleeves, each replayed alone over the sample's bars (the Strategy's own
    classes with the Strategy's default params), plus the HMM refit count and cost."""
    from strategies import (
        RegimeAwareEnsemble,
        RegimeClassifier,
        RegimeParams,
        Sleeves,
        resolve_table,
        weighted_sleeves,
    )
    from strategies.sleeves import SleeveParams

    params = RegimeAwareEnsemble.param_defaults()
    closes = frame["close"].tolist()
    highs = frame["high"].tolist()
    lows = frame["low"].tolist()
    rp = RegimeParams.from_mapping(params)
    rp_hmm = RegimeParams.from_mapping({**params, "use_hmm": True})
    sp = SleeveParams.from_mapping(params)
    ref = RegimeClassifier(rp)
    smas = [(ref.update(c), ref.sma)[1] for c in closes]
    active = weighted_sleeves(resolve_table())

    def regime(p=rp):
        upd = RegimeClassifier(p).update
        for c in closes:
            upd(c)

    def sleeves():
        upd = Sleeves(sp, active).update
        for c, h, lo, m in zip(closes, highs, lows, smas, strict=True):
            upd(c, h, lo, m)

    bars = len(closes)
    hmm_clf = RegimeClassifier(rp_hmm)
    t0 = time.process_time()
    for c in closes:
        hmm_clf.update(c)
    hmm_s = time.process_time() - t0
    fits = hmm_clf.hmm_fits
    return {
        "regime_update": _cpu_per_bar(regime, bars, repeats),
        "regime_update_hmm": hmm_s * 1e6 / bars,
        "sleeves": _cpu_per_bar(sleeves, bars, repeats),
        "hmm_refits": fits,
        "hmm_ms_per_refit": (hmm_s - _cpu_per_bar(regime, bars, 1) * bars * 1e-6) * 1e3
        / max(fits, 1),
    }


def breakdown(med: dict[str, float], bars: int, parts: dict[str, float]) -> dict:
    """Where the ensemble's time goes, in CPU microseconds per bar.

    From the interleaved whole-run medians ``med``: ``backtrader_empty`` (feed, clock and
    broker with an empty Strategy), ``orders_and_positions`` (a Strategy that only replays the
    ensemble's orders on the same bars, minus the empty one: backtrader creating, checking and
    filling those orders and valuing the held position every bar; no Strategy that makes
    these decisions can cost less), ``strategy_compute`` (the ensemble minus that replay: its
    next() with the regime update, sleeves, decide() and the band check) and ``hmm_overlay``
    (the run with use_hmm minus the one without). From replays of the Strategy's classes alone
    (``parts``): ``regime_update`` and ``sleeves`` inside strategy_compute
    (``decide_and_rest`` is the remainder) and the HMM's refits.
    """
    us = {k: v * 1e6 / bars for k, v in med.items()}
    compute = us["ensemble"] - us["orders_only"]
    out = {
        "total": us["ensemble"],
        "backtrader_empty": us["empty"],
        "orders_and_positions": us["orders_only"] - us["empty"],
        "strategy_compute": compute,
        "regime_update": parts["regime_update"],
        "sleeves": parts["sleeves"],
        "decide_and_rest": compute - parts["regime_update"] - parts["sleeves"],
        "hmm_overlay": us["ensemble_hmm"] - us["ensemble"],
        "regime_update_hmm": parts["regime_update_hmm"],
        "hmm_refits": parts["hmm_refits"],
        "hmm_ms_per_refit": parts["hmm_ms_per_refit"],
    }
    return {k: v if isinstance(v, int) else round(v, 2) for k, v in out.items()}


def hmm_fit_ms(frame: pd.DataFrame, repeats: int, backend: str | None = None) -> float:
    """Median CPU time (ms) of one forced 50-iteration EM fit on the last 1,260 log returns,
    on the EM path in use or, given ``backend``, on that one (the path in use is restored)."""
    import numpy as np

    from strategies.hmm import fit_hmm, hmm_backend, select_hmm_backend

    before = hmm_backend().name
    if backend is not None:
        select_hmm_backend(backend)
    x = np.diff(np.log(frame["close"].to_numpy(dtype=float)))[-1260:]
    out = []
    for _ in range(repeats):
        t0 = time.process_time()
        fit_hmm(x, max_iter=50, tol=0.0)
        out.append(time.process_time() - t0)
    if backend is not None:
        select_hmm_backend(before)
    return statistics.median(out) * 1e3


def cold_compile_s() -> float:
    """Seconds a fresh process takes to select the compiled HMM path with an empty numba cache
    (importing numba, compiling the kernels, their self-check): a machine's first run."""
    code = ("from strategies.hmm import select_hmm_backend as s; b = s('numba'); "
            "print(b.load_s, b.from_cache)")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True, timeout=600).stdout.split()
    if out[1] != "False":
        raise SystemExit("bench.backtest: the cold compile found a cache; it measured nothing")
    return float(out[0])


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print its JSON line and return the dict."""
    from strategies import RegimeAwareEnsemble

    ap = argparse.ArgumentParser(
        prog="python -m bench.backtest", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--repeats", type=int, default=7, help="runs per variant (median taken)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, HMM variant run once")
    ap.add_argument("--feeds", type=int, default=1, help="copies of the sample fed at once")
    ap.add_argument("--no-preload", action="store_true", help="preload/runonce off")
    ap.add_argument("--hmm-backend", choices=("auto", "numba", "python"), default=None,
                    help="EM path of the HMM overlay (default: BT_IBKR_HMM, else auto)")
    ap.add_argument("--no-cold-compile", action="store_true",
                    help="skip timing a compile of the HMM kernels into an empty cache")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.feeds < 1:
        ap.error("--repeats and --feeds must be >= 1")
    repeats = 3 if args.quick else args.repeats
    hmm_repeats = 1 if args.quick else max(1, min(repeats, 3))
    preload = not args.no_preload

    from strategies.hmm import select_hmm_backend

    backend = select_hmm_backend(args.hmm_backend)  # loaded (or compiled) before any timing
    frame = load_sample()
    variants = {
        "empty": (EmptyStrategy, {}),
        "sma": (SmaCross, {}),
        "ensemble": (RegimeAwareEnsemble, {}),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    times["ensemble_hmm"] = []
    times["orders_only"] = []
    plan: dict = {}
    _, recorded_value = run_once(frame, args.feeds, _recording_ensemble(plan), preload)
    final_value = None
    run_once(frame, args.feeds, EmptyStrategy, preload)  # warm caches / imports
    for i in range(repeats):
        for name, (cls, kw) in variants.items():  # interleaved: drift hits all variants alike
            dt, value = run_once(frame, args.feeds, cls, preload, **kw)
            times[name].append(dt)
            if name == "ensemble":
                final_value = value
                dt, replay_value = run_once(frame, args.feeds, ReplayOrders, preload, plan=plan)
                times["orders_only"].append(dt)
        if i < hmm_repeats:
            dt, _ = run_once(frame, args.feeds, RegimeAwareEnsemble, preload, use_hmm=True)
            times["ensemble_hmm"].append(dt)

    med = {k: statistics.median(v) for k, v in times.items()}
    if not final_value == recorded_value == replay_value:
        raise SystemExit(f"bench.backtest: final values differ: ensemble {final_value!r}, "
                         f"recorded {recorded_value!r}, replayed {replay_value!r}")
    bars = len(frame) * args.feeds
    out = {
        "bars": bars,
        "feeds": args.feeds,
        "repeats": repeats,
        "hmm_repeats": hmm_repeats,
        "preload": preload,
        "bars_per_sec_empty": round(bars / med["empty"], 1),
        "bars_per_sec_sma": round(bars / med["sma"], 1),
        "bars_per_sec_ensemble": round(bars / med["ensemble"], 1),
        "bars_per_sec_ensemble_hmm": round(bars / med["ensemble_hmm"], 1),
        "ratio_vs_empty": round(med["ensemble"] / med["empty"], 3),
        "ratio_vs_sma": round(med["ensemble"] / med["sma"], 3),
        "ratio_vs_empty_hmm": round(med["ensemble_hmm"] / med["empty"], 3),
        "floor_ratio_vs_empty": round(med["orders_only"] / med["empty"], 3),
        "final_value_ensemble": round(final_value, 2),
        "hmm_fit_ms_1260x50": round(hmm_fit_ms(frame, 5), 2),
        "hmm_fit_ms_1260x50_python": round(hmm_fit_ms(frame, 3, "python"), 2),
        "hmm_backend": backend.name,
        "hmm_backend_reason": backend.reason,
        "hmm_load_s": round(backend.load_s, 3),
        "hmm_from_cache": backend.from_cache,
        "hmm_compile_s_cold": (
            round(cold_compile_s(), 2)
            if backend.name == "numba" and not args.no_cold_compile else None
        ),
        "breakdown_us_per_bar": breakdown(med, bars, component_costs(frame, 5)),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
