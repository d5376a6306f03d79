"""--grid / --walk-forward parsing and the walk-forward window plan."""

from __future__ import annotations

import pandas as pd
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.research.grid import (
    GridSpecError,
    Period,
    expand_grid,
    parse_grid,
    parse_walk_forward,
)
from bt_ibkr.research.walkforward import plan_windows


def test_grid_values_are_typed_and_expanded_in_order():
    grid = parse_grid(["band=0.05,0.1", "sma_long=150,200", "use_hmm=false,true",
                       'weights={"crisis": {"meanrev": 0.5}},{"range": {"trend": 1}}'])
    assert grid["band"] == [0.05, 0.1]
    assert grid["sma_long"] == [150, 200] and all(type(v) is int for v in grid["sma_long"])
    assert grid["use_hmm"] == [False, True]
    assert grid["weights"] == [{"crisis": {"meanrev": 0.5}}, {"range": {"trend": 1}}]
    combos = expand_grid({"band": [0.05, 0.1], "target_vol": [0.08, 0.12]})
    assert combos == [
        {"band": 0.05, "target_vol": 0.08}, {"band": 0.05, "target_vol": 0.12},
        {"band": 0.1, "target_vol": 0.08}, {"band": 0.1, "target_vol": 0.12},
    ]
    assert expand_grid({}) == [{}]


@pytest.mark.parametrize("item, words", [
    ("band", "expected name=v1,v2"),
    ("band=", "empty value"),
    ("band=0.1,,0.2", "empty value"),
    ("=0.1", "not a parameter name"),
    ("band=0.1,0.1", "listed twice"),
    ('weights={"a": 1', "unbalanced"),
])
def test_malformed_grid_items_name_the_item(item, words):
    with pytest.raises(GridSpecError) as err:
        parse_grid([item])
    msg = str(err.value)
    assert words in msg and f"--grid {item!r}" in msg and "\n" not in msg
    assert isinstance(err.value, ConfigError)


def test_a_param_given_twice_is_an_error():
    with pytest.raises(GridSpecError, match="band is given twice"):
        parse_grid(["band=0.1", "band=0.2"])


def test_walk_forward_specs():
    spec = parse_walk_forward("train=5y,test=1y")
    assert (spec.train, spec.test, spec.anchored) == (Period(5, "y"), Period(1, "y"), False)
    assert parse_walk_forward("test=6m, train=18m, anchored").anchored
    assert str(parse_walk_forward("train=2y,test=3m,anchored")) == "train=2y,test=3m,anchored"
    for bad, words in [("train=5y", "no test="), ("train=5x,test=1y", "not a length"),
                       ("train=0y,test=1y", "not a length"), ("train=5y,test=1y,foo", "unknown item"),
                       ("train=5y,,test=1y", "empty item")]:
        with pytest.raises(GridSpecError, match=words) as err:
            parse_walk_forward(bad)
        assert f"--walk-forward {bad!r}" in str(err.value)


def _sessions(start="2000-01-03", end="2009-12-31"):
    return pd.bdate_range(start, end)


@pytest.mark.parametrize("anchored", [False, True])
def test_windows_tile_the_data_after_the_warmup(anchored):
    days = _sessions()
    spec = parse_walk_forward(f"train=3y,test=1y{',anchored' if anchored else ''}")
    windows = plan_windows(days, spec, warmup_bars=250)
    # 250 sessions from 2000-01-03 end in December 2000: windows start on 2001-01-01
    assert windows[0].train_start == pd.Timestamp("2001-01-01").date()
    assert [w.test_start.year for w in windows] == [2004, 2005, 2006, 2007, 2008, 2009]
    for prev, w in zip(windows, windows[1:], strict=False):
        assert w.test_start > prev.test_end  # test windows never overlap
        assert (pd.Timestamp(w.test_start) - pd.Timestamp(prev.test_end)).days <= 3  # contiguous
    for w in windows:
        assert w.train_end < w.test_start
        first = days[days >= pd.Timestamp(w.test_start.year - 3, 1, 1)][0].date()
        assert w.train_start == (windows[0].train_start if anchored else first)
        assert w.train_end == days[days < pd.Timestamp(w.test_start)][-1].date()


def test_a_short_last_test_window_is_dropped_and_too_little_data_is_an_error():
    spec = parse_walk_forward("train=1y,test=1y")
    windows = plan_windows(_sessions("2000-01-03", "2003-01-10"), spec, warmup_bars=250)
    assert [w.test_start.year for w in windows] == [2002]  # Jan 2003 has < 21 sessions
    with pytest.raises(ConfigError, match=r"needs 1y \+ 1y of data after the 250-session warm-up"):
        plan_windows(_sessions("2000-01-03", "2002-01-15"), spec, warmup_bars=250)
    # a partial last window long enough is kept (and says where it ends)
    partial = plan_windows(_sessions("2000-01-03", "2002-06-28"), spec, warmup_bars=250)
    assert [(w.test_start.isoformat(), w.test_end.isoformat()) for w in partial] == [
        ("2002-01-01", "2002-06-28")]
