"""The regime layer on synthetic prices with PLANTED regimes: it finds them, and exposure falls.

Each series (seeded) runs through a fixed schedule of calm spells (+12%/yr at 12% vol) and
turbulent spells (-40%/yr at 45% vol: a volatile bear market), so every bar's true regime is
known. Detection is scored after a lag (the 20-day volatility and the 200-day average need time
to see a change) and away from the recovery after a turbulent spell: the first 25 bars of a
turbulent spell and the first 150 of a calm spell that follows one are not scored.
"""

from __future__ import annotations

import math

import backtrader as bt
import numpy as np
import pandas as pd
import pytest

from strategies import REGIMES, RegimeAwareEnsemble, label_series

SCHEDULE = (("calm", 700), ("turbulent", 150), ("calm", 500), ("turbulent", 120),
            ("calm", 500), ("turbulent", 150), ("calm", 300))
RISK_OFF = ("bull_volatile", "bear_quiet", "crisis")  # high volatility or a down trend
HOLD = {r: {"trend": 0.0, "hold": 1.0} for r in REGIMES}  # long in every regime


def planted(seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Return (daily bars, scored turbulent bars, scored calm bars) for one seed."""
    rng = np.random.default_rng(seed)
    turbulent = np.concatenate([np.full(n, kind == "turbulent") for kind, n in SCHEDULE])
    mu = np.where(turbulent, -0.40, 0.12) / 252
    sd = np.where(turbulent, 0.45, 0.12) / math.sqrt(252)
    close = 100.0 * np.exp(np.cumsum(rng.normal(mu, sd)))
    prev = np.r_[close[0], close[:-1]]
    open_ = prev * np.exp(rng.normal(0.0, 0.2 * sd))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.5 * sd)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.5 * sd)))
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close,
                          "volume": 1e6}, index=pd.bdate_range("2000-01-03", periods=len(close)))
    scored_t = np.zeros(len(close), bool)
    scored_c = np.zeros(len(close), bool)
    pos = 0
    for kind, n in SCHEDULE:
        if kind == "turbulent":
            scored_t[pos + 25:pos + n] = True
        elif pos > 0:
            scored_c[pos + 150:pos + n] = True
        pos += n
    return frame, scored_t, scored_c


class _Exposure(RegimeAwareEnsemble):
    """Records, after every bar, the regime, the target and the held position / value."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, float, float]] = []

    def next(self):
        super().next()
        d = self.datas[0]
        value = self.broker.getvalue()
        held = abs(self.getposition(d).size * d.close[0]) / value
        self.seen.append((self.regime, self.targets[d._name], held))


def _run(frame: pd.DataFrame, **params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame), name="SYN")
    cerebro.broker.setcash(1_000_000.0)
    cerebro.addstrategy(_Exposure, **params)
    seen = cerebro.run()[0].seen
    return (np.array([s[0] for s in seen]), np.array([s[1] for s in seen]),
            np.array([s[2] for s in seen]))


def test_the_classifier_finds_the_planted_turbulence():
    crisis_t, crisis_c, off_t, off_c = [], [], [], []
    for seed in range(1, 9):
        frame, turb, calm = planted(seed)
        labels = np.array(label_series(frame["close"].tolist()))
        ct, cc = np.mean(labels[turb] == "crisis"), np.mean(labels[calm] == "crisis")
        assert ct > 1.4 * cc, (seed, ct, cc)  # on every seed crisis is likelier in turbulence
        crisis_t.append(ct)
        crisis_c.append(cc)
        off_t.append(np.mean(np.isin(labels[turb], RISK_OFF)))
        off_c.append(np.mean(np.isin(labels[calm], RISK_OFF)))
    # pooled over the seeds: crisis on about half the turbulent bars, almost never when calm
    assert np.mean(crisis_t) > 0.40 and np.mean(crisis_c) < 0.06
    assert np.mean(crisis_t) > 8 * np.mean(crisis_c)
    # and a volatile or falling regime on most turbulent bars, on a minority of calm ones
    assert np.mean(off_t) > 0.75 and np.mean(off_c) < 0.35


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_default_holds_less_in_planted_turbulence(seed):
    frame, turb, calm = planted(seed)
    regime, target, held = _run(frame)
    # crisis holds cash: every crisis bar's target is 0
    assert (target[regime == "crisis"] == 0.0).all() and (regime[turb] == "crisis").any()
    # the position held in turbulence is a small fraction of the one held when calm
    assert held[turb].mean() < 0.3 * held[calm].mean(), (held[turb].mean(), held[calm].mean())
    # and the regime layer only ever takes exposure away: never more than without it
    _r, _t, held_off = _run(frame, use_regimes=False)
    assert held[turb].mean() <= held_off[turb].mean() + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_the_regime_layer_alone_cuts_a_long_position_in_planted_turbulence(seed):
    """On a sleeve that is long in every regime (a volatility-managed hold), what is left of
    the cut is the regime layer's own: cash in crisis. It takes a large share of the turbulent
    exposure away and leaves the calm exposure almost whole."""
    frame, turb, calm = planted(seed)
    _r, _t, with_layer = _run(frame, weights=HOLD)
    _r, _t, without = _run(frame, weights=HOLD, use_regimes=False)
    assert with_layer[turb].mean() < 0.8 * without[turb].mean()
    assert with_layer[calm].mean() > 0.85 * without[calm].mean()
