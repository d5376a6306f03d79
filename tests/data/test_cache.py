"""BarCache: round trip, coverage and missing ranges, safe names, corrupt files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from bt_ibkr.cache import BarCache, CacheKey, default_cache_dir
from feeds.sample import load_sample

KEY = CacheKey(source="yahoo", symbol="^GSPC", bar_size="1 day", what_to_show="ADJUSTED_LAST",
               use_rth=True, adjusted=True)


def sample(start: str, end: str) -> pd.DataFrame:
    return load_sample("^GSPC", start, end)


def test_store_load_round_trip(tmp_path):
    cache = BarCache(tmp_path)
    frame = sample("2010-01-01", "2010-12-31")
    path = cache.store(KEY, frame, date(2010, 1, 1), date(2010, 12, 31))
    assert path.exists() and path.is_relative_to(tmp_path)
    got = cache.load(KEY)
    pd.testing.assert_frame_equal(got, frame, check_freq=False)
    assert got.attrs == {
        "symbol": "^GSPC", "source": "cache", "tz": "America/New_York", "adjusted": True,
        "cache_source": "yahoo",
    }
    part = cache.load(KEY, "2010-03-01", "2010-03-31")
    assert part.index[0] == pd.Timestamp("2010-03-01")
    assert part.index[-1] == pd.Timestamp("2010-03-31")
    assert len(part) == 23


def test_missing_returns_only_the_extension(tmp_path):
    cache = BarCache(tmp_path)
    assert cache.missing(KEY, "2010-01-01", "2010-12-31") == [(date(2010, 1, 1), date(2010, 12, 31))]
    cache.store(KEY, sample("2010-01-01", "2010-12-31"), "2010-01-01", "2010-12-31")
    assert cache.missing(KEY, "2010-01-01", "2010-12-31") == []
    # weekends and holidays inside the covered range are not "missing"
    assert cache.missing(KEY, "2010-12-24", "2010-12-26") == []
    assert cache.missing(KEY, "2009-06-01", "2011-06-30") == [
        (date(2009, 6, 1), date(2009, 12, 31)), (date(2011, 1, 1), date(2011, 6, 30)),
    ]
    cache.store(KEY, sample("2011-01-01", "2011-06-30"), "2011-01-01", "2011-06-30")
    assert cache.missing(KEY, "2010-01-01", "2011-06-30") == []
    assert cache.coverage(KEY) == [(date(2010, 1, 1), date(2011, 6, 30))]  # merged, adjacent
    assert len(cache.load(KEY)) == len(sample("2010-01-01", "2011-06-30"))


def test_store_merges_and_new_rows_win(tmp_path):
    cache = BarCache(tmp_path)
    cache.store(KEY, sample("2010-01-01", "2010-01-31"))
    newer = sample("2010-01-25", "2010-02-10")
    newer["close"] = newer["close"] + 1.0
    newer["high"] = newer["high"] + 1.0
    cache.store(KEY, newer)
    got = cache.load(KEY)
    assert got.index.is_unique and got.index.is_monotonic_increasing
    base = sample("2010-01-01", "2010-02-10")
    assert got.loc["2010-01-22", "close"] == base.loc["2010-01-22", "close"]  # untouched
    assert got.loc["2010-01-25", "close"] == base.loc["2010-01-25", "close"] + 1.0  # new wins
    assert len(got) == len(base)


def test_unsafe_symbols_get_distinct_safe_file_names(tmp_path):
    cache = BarCache(tmp_path)
    symbols = ["^GSPC", "EUR.USD", "BRK B", "BRK.B", "../etc/passwd", "spy", "SPY"]
    paths = {cache.path_for(CacheKey("ibkr", s)) for s in symbols}
    assert len(paths) == len(symbols)
    for path in paths:
        assert path.parent == tmp_path / "ibkr"
        assert all(ch.isalnum() or ch in "-_~." for ch in path.name), path.name
    frame = sample("2015-01-01", "2015-01-31")
    for sym in ("BRK B", "../etc/passwd"):
        cache.store(CacheKey("ibkr", sym), frame)
        assert cache.load(CacheKey("ibkr", sym))["close"].tolist() == frame["close"].tolist()
    assert not (tmp_path.parent / "etc").exists()


def test_corrupt_parquet_is_a_miss_and_kept_aside(tmp_path):
    cache = BarCache(tmp_path)
    cache.store(KEY, sample("2010-01-01", "2010-01-31"))
    path = cache.path_for(KEY)
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.warns(RuntimeWarning, match=str(path.name).replace("^", r"\^")):
        assert cache.load(KEY) is None
    assert not path.exists()
    assert Path(str(path) + ".corrupt").read_bytes() == b"PAR1 this is not parquet"
    assert cache.missing(KEY, "2010-01-01", "2010-01-31") == [(date(2010, 1, 1), date(2010, 1, 31))]
    cache.store(KEY, sample("2010-01-01", "2010-01-31"))  # heals
    assert len(cache.load(KEY)) == 19


def test_writes_leave_no_temp_files(tmp_path):
    cache = BarCache(tmp_path)
    cache.store(KEY, sample("2010-01-01", "2010-01-31"))
    cache.store(KEY, sample("2010-02-01", "2010-02-28"))
    names = sorted(p.name for p in cache.path_for(KEY).parent.iterdir())
    assert len(names) == 2 and names[0].endswith(".json") and names[1].endswith(".parquet")


def test_default_dir_honours_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "bars"))
    assert default_cache_dir() == (tmp_path / "bars").resolve()
    assert BarCache().root == (tmp_path / "bars").resolve()
    monkeypatch.delenv("BT_IBKR_CACHE_DIR")
    monkeypatch.chdir(tmp_path)
    assert default_cache_dir() == tmp_path / ".cache" / "bt_ibkr" / "bars"
