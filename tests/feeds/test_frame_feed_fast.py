"""FrameFeed's fast paths (list-based _load, one-step preload, vectorised date numbers) give
exactly what backtrader's own PandasData gives, bar for bar, and the same backtest."""

from __future__ import annotations

import math

import backtrader as bt
import pandas as pd
import pytest

from feeds.frame_feed import FrameFeed, make_feed
from feeds.sample import load_sample
from strategies import RegimeAwareEnsemble


def _preloaded(feed) -> tuple[list[list[float]], list[tuple[int, int]]]:
    cerebro = bt.Cerebro()
    cerebro.adddata(feed)
    feed.reset()
    feed._start()
    feed.preload()
    return [list(line.array) for line in feed.lines], [(line.idx, line.lencount) for line in feed.lines]


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True))


def _intraday() -> pd.DataFrame:
    idx = pd.date_range("2024-01-02 14:30", periods=300, freq="5min", tz="UTC", name="datetime")
    close = pd.Series(range(300), index=idx, dtype="float64") * 0.01 + 100.0
    return pd.DataFrame({"open": close, "high": close + 0.05, "low": close - 0.05,
                         "close": close + 0.01, "volume": 1000.0})


@pytest.mark.parametrize("frame", [load_sample("^GSPC", "2015-01-01", "2016-12-31"), _intraday()],
                         ids=["daily", "intraday"])
def test_preloaded_lines_equal_backtraders_pandasdata(frame):
    fast = make_feed(frame, name="x")
    data = fast.p.dataname  # the frame exactly as make_feed hands it to backtrader
    ref = bt.feeds.PandasData(dataname=data, name="x", timeframe=fast.p.timeframe,
                              compression=fast.p.compression, openinterest=None)
    got, got_pos = _preloaded(fast)
    want, want_pos = _preloaded(ref)
    assert got_pos == want_pos == [(-1, 0)] * len(want_pos)  # rewound, like backtrader
    assert all(_same(g, w) for g, w in zip(got, want, strict=True))
    assert len(got[0]) == len(frame)


def test_a_filter_or_date_limit_takes_backtraders_bar_by_bar_path():
    frame = load_sample("^GSPC", "2015-01-01", "2015-12-31")
    limited = make_feed(frame, name="x", fromdate=pd.Timestamp("2015-06-01").to_pydatetime())
    lines, _ = _preloaded(limited)
    assert len(lines[0]) == int((frame.index >= "2015-06-01").sum())
    assert not limited._bulk_preload_ok()


def test_a_backtest_is_the_same_with_preload_off():
    frame = load_sample("^GSPC", "2010-01-01", "2013-12-31")
    values = []
    for preload in (True, False):
        cerebro = bt.Cerebro(preload=preload, runonce=preload, stdstats=False)
        cerebro.adddata(make_feed(frame, name="^GSPC"), name="^GSPC")
        cerebro.addstrategy(RegimeAwareEnsemble)
        cerebro.run()
        values.append(cerebro.broker.getvalue())
    assert values[0] == values[1] and values[0] != 10_000.0
    assert isinstance(make_feed(frame), FrameFeed)
