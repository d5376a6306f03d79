"""The fast per-bar path of RegimeAwareEnsemble decides exactly what the plain one decided.

``PlainEnsemble`` below is the per-bar logic as it was before the fast path (issue #23): every
sleeve computed on every bar, the regime row read and multiplied out on every bar, the decision
queue always used, fresh dicts every bar. Both run on the real ^GSPC sample (through the
project's sample loader) and on seeded synthetic series; every bar's regime and target, every
order and the final value must be identical (``==`` on floats, not approx), for the default
table and for tables/params that use every sleeve, a decision delay, two feeds and the HMM.
"""

from __future__ import annotations

import math
from collections import deque

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from bt_ibkr.errors import DataError
from feeds.sample import load_sample
from strategies import (
    REGIMES,
    SLEEVES,
    V1_CAPS,
    V1_WEIGHTS,
    RegimeAwareEnsemble,
    RegimeClassifier,
    RegimeParams,
    Sleeves,
    resolve_table,
    weighted_sleeves,
)
from strategies.regime import WARMUP
from strategies.sleeves import SleeveParams

V1_TABLE = {"weights": V1_WEIGHTS, "caps": V1_CAPS, "exposure": {r: 1.0 for r in REGIMES}}


class _Log:
    """Per bar: regimes and targets (copies); every order as (bar, name, signed size)."""

    def __init__(self):
        self.bars = []
        self.orders = []


class FastProbe(RegimeAwareEnsemble):
    """The Strategy as shipped; records without overriding decide() (so the fast path runs)."""

    def __init__(self):
        super().__init__()
        self.log_ = _Log()

    def next(self):
        super().next()
        self.log_.bars.append((self.regime, dict(self.regimes), dict(self.targets)))

    def buy(self, data=None, size=None, **kwargs):
        self.log_.orders.append((len(self), data._name, size))
        return super().buy(data=data, size=size, **kwargs)

    def sell(self, data=None, size=None, **kwargs):
        self.log_.orders.append((len(self), data._name, -size))
        return super().sell(data=data, size=size, **kwargs)


class PlainEnsemble(FastProbe):
    """Reference: the plain per-bar loop (all sleeves, row lookup and formula every bar)."""

    def __init__(self):
        super().__init__()
        p = self.p
        values = {k: getattr(p, k) for k in self.param_names()}
        rp = RegimeParams.from_mapping(values)
        sp = SleeveParams.from_mapping(values)
        self.ref_rows = resolve_table(p.weights, p.caps, p.sleeves, p.use_regimes,
                                      p.exposure).rows
        self.ref = [
            {"data": d, "name": n, "clf": RegimeClassifier(rp), "sleeves": Sleeves(sp),
             "queue": deque(maxlen=p.decision_delay + 1), "seen": 0}
            for d, n in zip(self.datas, self.regimes, strict=True)
        ]
        self.ref_pending = {}

    def ref_decide(self, f, regime, signals):
        weights, cap, exposure = self.ref_rows[regime]
        blend = 0.0
        for w, s in zip(weights, signals, strict=True):
            if w and s:
                blend += w * s
        if not blend > 0.0:
            return 0.0
        rv = f["clf"].realized_vol
        max_lev = float(self.p.max_leverage)
        lev = blend * self.p.target_vol / rv if rv else max_lev
        if lev > max_lev:
            lev = max_lev
        lev *= (1.0 - self.p.cash_buffer) * exposure
        if lev > cap:
            lev = cap
        return lev * (1.0 / len(self.ref))

    def next(self):
        broker = self.broker
        value = broker.getvalue()
        self.regimes = regimes = dict(self.regimes)
        self.targets = targets = dict(self.targets)
        orders = []
        for f in self.ref:
            d = f["data"]
            if len(d) == f["seen"]:
                continue
            f["seen"] = len(d)
            close = d.close[0]
            try:
                fresh = f["clf"].update(close)
            except DataError:
                continue
            signals = f["sleeves"].update(close, d.high[0], d.low[0], f["clf"].sma)
            q = f["queue"]
            q.append((fresh, self.ref_decide(f, fresh, signals)))
            regime, target = q[0] if len(q) == q.maxlen else (WARMUP, 0.0)
            regimes[f["name"]] = regime
            targets[f["name"]] = target
            if self.ref_pending.get(f["name"]) is not None or not value > 0.0:
                continue
            size = broker.getposition(d).size
            cur = size * close / value
            band = self.p.band * target if self.p.band_relative else self.p.band
            if abs(target - cur) > band or (target == 0.0 and size != 0):
                delta = int(target * value / close) - size
                if delta:
                    orders.append((delta, f))
        self.regime = regimes[self.ref[0]["name"]]
        self.hmm_p_high = self.ref[0]["clf"].p_high
        orders.sort(key=lambda o: o[0] > 0)
        for delta, f in orders:
            if delta < 0:
                o = self.sell(data=f["data"], size=-delta)
            else:
                o = self.buy(data=f["data"], size=delta)
            self.ref_pending[f["name"]] = o
        self.log_.bars.append((self.regime, dict(self.regimes), dict(self.targets)))

    def notify_order(self, order):
        if order.status in (order.Submitted, order.Accepted, order.Partial):
            return
        o = self.ref_pending.get(order.data._name)
        if o is not None and o.ref == order.ref:
            self.ref_pending[order.data._name] = None


def _run(cls, frames: dict[str, pd.DataFrame], **params):
    cerebro = bt.Cerebro(stdstats=False)
    for name, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.setcommission(commission=0.0005)
    cerebro.addstrategy(cls, **params)
    strat = cerebro.run()[0]
    return strat, cerebro.broker.getvalue()


def _synthetic(seed: int, n: int = 2600) -> pd.DataFrame:
    """Seeded OHLC with calm/volatile and up/down stretches (every regime shows up)."""
    rng = np.random.default_rng(seed)
    drift = np.repeat(rng.choice([0.0008, -0.0010, 0.0], size=n // 200 + 1), 200)[:n]
    vol = np.repeat(rng.choice([0.006, 0.012, 0.03], size=n // 150 + 1), 150)[:n]
    r = drift + vol * rng.standard_normal(n)
    close = 100.0 * np.exp(np.cumsum(r))
    spread = np.abs(rng.standard_normal(n)) * vol * close
    open_ = close * np.exp(vol * 0.3 * rng.standard_normal(n))
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    idx = pd.bdate_range("2000-01-03", periods=n)
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                         "volume": 1e6}, index=idx)


@pytest.fixture(scope="module")
def gspc():
    return load_sample("^GSPC")


CASES = [
    pytest.param({}, id="default"),
    pytest.param(V1_TABLE, id="v1-table-every-sleeve"),
    pytest.param({**V1_TABLE, "sleeves": "breakout,meanrev,rebound"}, id="sleeves-subset"),
    pytest.param({"use_regimes": False}, id="static-row"),
    pytest.param({"decision_delay": 2, "band_relative": False, "band": 0.05}, id="delay-band"),
    pytest.param({"weights": {r: {"trend": 0.0, "hold": 1.0} for r in REGIMES}}, id="hold"),
]


def _assert_same(fast, plain):
    (fs, fv), (ps, pv) = fast, plain
    assert len(fs.log_.bars) == len(ps.log_.bars)
    for i, (a, b) in enumerate(zip(fs.log_.bars, ps.log_.bars, strict=True)):
        assert a == b, f"bar {i + 1}: fast {a} != plain {b}"
    assert fs.log_.orders == ps.log_.orders
    assert fv == pv  # the final value, every digit


@pytest.mark.slow
@pytest.mark.parametrize("params", CASES)
def test_fast_path_decides_as_the_plain_loop_on_gspc(gspc, params):
    fast = _run(FastProbe, {"^GSPC": gspc}, **params)
    plain = _run(PlainEnsemble, {"^GSPC": gspc}, **params)
    assert len(fast[0].log_.orders) > 20  # the comparison covers real trading
    _assert_same(fast, plain)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 7, 23])
@pytest.mark.parametrize("params", CASES[:2] + CASES[4:5])
def test_fast_path_decides_as_the_plain_loop_on_synthetic_series(params, seed):
    fast = _run(FastProbe, {"SYN": _synthetic(seed)}, **params)
    plain = _run(PlainEnsemble, {"SYN": _synthetic(seed)}, **params)
    _assert_same(fast, plain)


@pytest.mark.slow
def test_fast_path_with_two_feeds_and_the_hmm(gspc):
    frames = {"^GSPC": gspc, "SYN": _synthetic(5, n=len(gspc)).set_axis(gspc.index)}
    fast = _run(FastProbe, frames, use_hmm=True)
    plain = _run(PlainEnsemble, frames, use_hmm=True)
    assert fast[0].hmm_p_high is not None
    _assert_same(fast, plain)


def test_only_weighted_sleeves_are_computed_and_they_match_all_sleeves(gspc):
    # the default table weighs the trend sleeve only: that is all the Strategy computes
    assert weighted_sleeves(resolve_table()) == ("trend",)
    assert weighted_sleeves(resolve_table(**V1_TABLE)) == SLEEVES[:4]
    for frame in (gspc, _synthetic(11)):
        clf = RegimeClassifier()
        every = Sleeves()
        subsets = {a: Sleeves(active=a) for a in [("trend",), ("breakout",), ("meanrev",),
                                                   ("rebound", "hold"), SLEEVES]}
        for c, h, lo in zip(frame["close"], frame["high"], frame["low"], strict=True):
            clf.update(c)
            want = every.update(c, h, lo, clf.sma)
            for active, s in subsets.items():
                got = s.update(c, h, lo, clf.sma)
                for i, name in enumerate(SLEEVES):
                    assert got[i] == (want[i] if name in active else 0.0), (name, active)


def test_the_dicts_a_bar_handed_out_are_never_changed_later(gspc):
    kept = []

    class Keep(FastProbe):
        def next(self):
            super().next()
            kept.append((self.regimes, dict(self.regimes), self.targets, dict(self.targets)))

    _run(Keep, {"^GSPC": gspc.iloc[:1500]})
    for held_r, copy_r, held_t, copy_t in kept:
        assert held_r == copy_r and held_t == copy_t
    assert not math.isnan(sum(t for *_, c in kept for t in c.values()))
