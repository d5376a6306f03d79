"""Backtest/live parity: preload+runonce on and off give the same orders, fills and value.

Also: the regime the Strategy reports on bar t does not change when later bars exist (no
look-ahead), checked through full Cerebro runs over truncated data.
"""

from __future__ import annotations

import backtrader as bt
import pandas as pd
import pytest

from strategies import REGIMES, RegimeAwareEnsemble
from strategies.regime import WARMUP


class Recorder(bt.Analyzer):
    """Per bar: date, regime, regimes, targets, p_high, value; and every completed fill."""

    def start(self):
        self.bars = []
        self.fills = []

    def next(self):
        s = self.strategy
        self.bars.append(
            (
                self.data.datetime.date(0),
                s.regime,
                dict(s.regimes),
                dict(s.targets),
                s.hmm_p_high,
                s.broker.getvalue(),
            )
        )

    def notify_order(self, order):
        if order.status == order.Completed:
            self.fills.append(
                (
                    bt.num2date(order.executed.dt).date(),
                    order.data._name,
                    order.executed.size,
                    order.executed.price,
                )
            )

    def get_analysis(self):
        return {"bars": self.bars, "fills": self.fills}


def run(frames: dict[str, pd.DataFrame], preload: bool, **params):
    cerebro = bt.Cerebro(preload=preload, runonce=preload, stdstats=False)
    for name, frame in frames.items():
        cerebro.adddata(bt.feeds.PandasData(dataname=frame), name=name)
    cerebro.broker.setcash(1_000_000.0)
    cerebro.broker.setcommission(commission=0.0005)
    cerebro.addstrategy(RegimeAwareEnsemble, **params)
    cerebro.addanalyzer(Recorder, _name="rec")
    strat = cerebro.run()[0]
    rec = strat.analyzers.rec.get_analysis()
    return rec["bars"], rec["fills"], cerebro.broker.getvalue()


@pytest.mark.slow
def test_single_feed_parity_preload_on_off(spx):
    bars_on, fills_on, value_on = run({"SPX": spx}, preload=True)
    bars_off, fills_off, value_off = run({"SPX": spx}, preload=False)
    assert len(fills_on) > 20  # it trades
    assert fills_on == fills_off
    assert value_on == value_off  # bit-identical, not approximately
    assert bars_on == bars_off
    assert all(isinstance(size, (int, float)) and size == int(size) for _, _, size, _ in fills_on)
    assert value_on != 1_000_000.0


@pytest.mark.slow
def test_two_feed_parity_preload_on_off(spx, ndx):
    frames = {"SPX": spx, "IXIC": ndx}
    bars_on, fills_on, value_on = run(frames, preload=True)
    bars_off, fills_off, value_off = run(frames, preload=False)
    assert {name for _, name, _, _ in fills_on} == {"SPX", "IXIC"}
    assert fills_on == fills_off
    assert value_on == value_off
    assert bars_on == bars_off
    # each feed gets at most half of the (cash-buffered) budget, and both are used
    per_feed = [t for b in bars_on for t in b[3].values()]
    assert max(per_feed) <= 0.5 * 0.98 + 1e-12
    assert max(b[3]["SPX"] + b[3]["IXIC"] for b in bars_on) > 0.5


@pytest.mark.slow
def test_parity_with_hmm_overlay(spx):
    frame = spx.iloc[:2000]
    bars_on, fills_on, value_on = run({"SPX": frame}, preload=True, use_hmm=True)
    bars_off, fills_off, value_off = run({"SPX": frame}, preload=False, use_hmm=True)
    assert fills_on == fills_off and value_on == value_off and bars_on == bars_off
    p = [b[4] for b in bars_on]
    assert p[1259] is None and p[1260] is not None  # first fit on 1,260 returns (bar 1,261)


@pytest.mark.slow
@pytest.mark.parametrize(
    "params",
    [
        {"decision_delay": 2},
        {"sleeves": "trend,rebound"},
        {"use_regimes": False},
        {"sleeves": "trend", "use_regimes": False},
    ],
)
def test_parity_of_the_ablation_modes(spx, params):
    frame = spx.iloc[:2500]
    on = run({"SPX": frame}, preload=True, **params)
    off = run({"SPX": frame}, preload=False, **params)
    assert on == off
    assert len(on[1]) > 5  # it trades


@pytest.mark.slow
@pytest.mark.parametrize("use_hmm, cuts", [(False, (600, 1500, 3000)), (True, (1500,))])
def test_cerebro_regimes_have_no_look_ahead(spx, use_hmm, cuts):
    end = 3200 if not use_hmm else 2200
    full, _, _ = run({"SPX": spx.iloc[:end]}, preload=True, use_hmm=use_hmm)
    regimes_full = [(b[0], b[1], b[4]) for b in full]
    assert {r for _, r, _ in regimes_full} <= set(REGIMES) | {WARMUP}
    for t in cuts:
        part, _, _ = run({"SPX": spx.iloc[:t]}, preload=True, use_hmm=use_hmm)
        assert [(b[0], b[1], b[4]) for b in part] == regimes_full[:t], t
