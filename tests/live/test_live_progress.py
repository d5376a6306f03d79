"""A live run says how far its warm-up is when the warm-up takes time, and nothing when history
fills it at once (#20 "it says what it is doing"). Time comes from a clock the test moves."""

from __future__ import annotations

import backtrader as bt
import pandas as pd

from analyzers.live_progress import LiveProgress
from feeds.frame_feed import make_feed


class Tick:
    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def _run(step: float) -> list[str]:
    days = pd.bdate_range("2020-01-01", periods=60)
    frame = pd.DataFrame({"open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0},
                         index=days)
    lines: list[str] = []
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(make_feed(frame, name="X"), name="X")
    cerebro.addstrategy(bt.Strategy)
    cerebro.addanalyzer(LiveProgress, need=40, say=lines.append, clock=Tick(step))
    cerebro.run()
    return lines


def test_a_slow_warm_up_is_reported_by_tenths_then_done():
    lines = _run(step=1.0)  # one second per bar: bars arrive as a live feed's do
    assert lines[0].startswith("warm-up: ") and "no decision before it is complete" in lines[0]
    assert [line.split()[1] for line in lines[:-1]] == [str(n) for n in range(8, 40, 4)]
    assert lines[-1] == "warm-up done: 40 bars; the strategy decides from this bar on"


def test_a_warm_up_filled_from_history_at_once_says_nothing():
    assert _run(step=0.001) == []
