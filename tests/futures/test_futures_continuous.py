"""Back-adjusted continuous series from seeded synthetic contracts with known roll gaps."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from helpers.futures_synth import contract_bars

from bt_ibkr.cache import BarCache
from bt_ibkr.errors import ConfigError, DataError
from bt_ibkr.futures.continuous import (
    build_continuous,
    cached_continuous,
    continuous_key,
    load_continuous,
    store_continuous,
)
from bt_ibkr.futures.registry import get_spec

FIRST, LAST = date(2021, 1, 4), date(2023, 12, 29)


@pytest.fixture(scope="module", params=["ES", "GC"])
def contracts(request):
    return request.param, contract_bars(request.param, FIRST, LAST, seed=11, carry=0.06)


def _held_changes(series, contracts, method):
    """Per bar t>0 of the series: (adjusted change, the held contract's own change t-1 -> t)."""
    by_code = {c.code: f for c, f in contracts.items()}
    close = series.frame["close"]
    got, want = [], []
    for prev, ts in zip(close.index[:-1], close.index[1:], strict=True):
        held = by_code[series.held[ts]]
        if method == "ratio":
            got.append(close[ts] / close[prev])
            want.append(held.at[ts, "close"] / held.at[prev, "close"])
        else:
            got.append(close[ts] - close[prev])
            want.append(held.at[ts, "close"] - held.at[prev, "close"])
    return np.array(got), np.array(want)


def test_roll_dates_are_the_registry_rule(contracts):
    root, bars = contracts
    series = build_continuous(root, bars, "ratio")
    spec = get_spec(root)
    expected = [when for when, _, _ in spec.roll_schedule(FIRST, LAST)]
    assert series.roll_dates == expected
    assert len(expected) >= 8
    for r in series.rolls:
        assert r.new == spec.next_contract(spec.held_contract(r.measured)).code
        assert r.new_close != pytest.approx(r.old_close, rel=1e-3)  # a real gap to remove


@pytest.mark.parametrize("method", ["ratio", "difference"])
def test_adjusted_moves_are_the_held_contract_moves_with_no_jump_at_rolls(contracts, method):
    root, bars = contracts
    series = build_continuous(root, bars, method)
    got, want = _held_changes(series, bars, method)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    # the raw stitched series (no adjustment) does jump at every roll by the gap
    raw = pd.Series([{c.code: f for c, f in bars.items()}[series.held[t]].at[t, "close"]
                     for t in series.frame.index], index=series.frame.index)
    for r in series.rolls:
        at, before = pd.Timestamp(r.day), pd.Timestamp(r.measured)
        raw_move = raw[at] / raw[before]
        adj_move = series.frame.at[at, "close"] / series.frame.at[before, "close"]
        assert abs(raw_move - adj_move) > 1e-3


def test_newest_contract_keeps_its_real_prices(contracts):
    root, bars = contracts
    series = build_continuous(root, bars, "ratio")
    last_code = series.held.iloc[-1]
    real = {c.code: f for c, f in bars.items()}[last_code]
    tail = series.frame.loc[series.frame.index >= pd.Timestamp(series.rolls[-1].day)]
    pd.testing.assert_frame_equal(tail, real.loc[tail.index], check_freq=False, check_index_type=False,
                                  check_names=False)


def test_cache_round_trip_keeps_the_roll_dates(tmp_path):
    bars = contract_bars("ES", FIRST, LAST, seed=3)
    series = build_continuous("ES", bars, "difference")
    cache = BarCache(tmp_path)
    store_continuous(cache, series)
    again = load_continuous(BarCache(tmp_path), "ES", "difference")
    assert again is not None
    assert again.rolls == series.rolls
    assert list(again.held) == list(series.held)
    pd.testing.assert_frame_equal(again.frame, series.frame, check_freq=False)
    assert load_continuous(cache, "ES", "ratio") is None  # another method, another key
    # bars without their roll record are a miss, not a series with unknown rolls
    cache.path_for(continuous_key("ES", "difference")).with_suffix(".rolls.json").unlink()
    assert load_continuous(cache, "ES", "difference") is None


def test_missing_contract_and_unmeasurable_gap_are_named():
    bars = contract_bars("ES", FIRST, LAST, seed=3)
    dropped = dict(bars)
    victim = sorted(dropped)[3]
    del dropped[victim]
    with pytest.raises(DataError, match=f"no bars for ES {victim.code}"):
        build_continuous("ES", dropped)
    spec = get_spec("ES")
    when, old, new = spec.roll_schedule(FIRST, LAST)[2]
    cut = dict(bars)
    frame = cut[new]
    cut[new] = frame.loc[frame.index >= pd.Timestamp(when)]
    with pytest.raises(DataError, match="roll gap cannot be measured"):
        build_continuous("ES", cut)
    with pytest.raises(ConfigError, match="ratio, difference"):
        build_continuous("ES", bars, "panama")


def test_cached_continuous_builds_once_then_serves_from_the_cache(tmp_path):
    bars = contract_bars("ES", FIRST, LAST, seed=5)
    first = cached_continuous(BarCache(tmp_path), "ES", bars)
    again = cached_continuous(BarCache(tmp_path), "ES", None)  # no bars needed any more
    assert again.rolls == first.rolls and again.frame.attrs["source"] == "cache"
    with pytest.raises(DataError, match="no cached ratio continuous series"):
        cached_continuous(BarCache(tmp_path / "empty"), "ES", None)


def test_the_series_starts_with_the_first_contract_given():
    bars = contract_bars("ES", FIRST, LAST, seed=3)
    first = sorted(bars)[0]
    later = {c: f for c, f in bars.items() if c != first}
    series = build_continuous("ES", later)
    assert series.held.iloc[0] == sorted(later)[0].code
    assert series.frame.index[0] > build_continuous("ES", bars).frame.index[0]
