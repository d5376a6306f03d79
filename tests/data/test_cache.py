"""BarCache: round trip, coverage and missing ranges, safe names, corrupt files."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from bt_ibkr.cache import BarCache, CacheKey, default_cache_dir
from bt_ibkr.validation import validate_bars
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


# -- integrity: validated on write, checked cheaply on read ---------------------------------------


def _rewrite_close(path: Path, pos: int, delta: float) -> None:
    """Edit one close in place, keeping the file a valid parquet file with valid bars (the
    integrity record in its metadata still describes the values as written)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    close = table.column("close").to_numpy().copy()
    close[pos] += delta
    i = table.schema.get_field_index("close")
    pq.write_table(table.set_column(i, "close", pa.array(close)), path)


def test_a_value_changed_on_disk_is_refused_and_kept_aside(tmp_path):
    cache = BarCache(tmp_path)
    frame = sample("2010-01-01", "2010-01-31")
    cache.store(KEY, frame)
    path = cache.path_for(KEY)
    # a tiny change that keeps every row rule (high >= close >= low) true: only the digest sees it
    row = frame.iloc[3]
    room = min(row["high"] - row["close"], row["close"] - row["low"])
    assert room > 0.01
    _rewrite_close(path, 3, 0.001)
    with pytest.warns(RuntimeWarning, match="digest mismatch"):
        assert cache.load(KEY) is None
    assert not path.exists() and Path(str(path) + ".corrupt").exists()
    assert cache.missing(KEY, "2010-01-01", "2010-01-31") == [(date(2010, 1, 1), date(2010, 1, 31))]


def test_a_truncated_file_is_refused(tmp_path):
    cache = BarCache(tmp_path)
    cache.store(KEY, sample("2010-01-01", "2010-12-31"))
    path = cache.path_for(KEY)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert cache.load(KEY) is None
    assert Path(str(path) + ".corrupt").exists()


def test_rows_dropped_with_the_record_kept_are_refused(tmp_path):
    import pyarrow.parquet as pq

    cache = BarCache(tmp_path)
    cache.store(KEY, sample("2010-01-01", "2010-01-31"))
    path = cache.path_for(KEY)
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 10), path)  # the metadata (and its record) goes along
    with pytest.warns(RuntimeWarning, match="10 rows where 19 were written"):
        assert cache.load(KEY) is None


def test_a_file_without_the_record_is_validated_in_full(tmp_path):
    """A parquet file written by an older version (plain to_parquet, no integrity record):
    served when its bars are valid, refused when a row breaks a rule."""
    cache = BarCache(tmp_path)
    frame = sample("2010-01-01", "2010-01-31")
    cache.store(KEY, frame)
    path = cache.path_for(KEY)
    plain = frame.copy()
    plain.attrs = {}
    plain.to_parquet(path, engine="pyarrow")
    pd.testing.assert_frame_equal(cache.load(KEY), frame, check_freq=False)
    broken = plain.copy()
    broken.iloc[2, broken.columns.get_loc("high")] = broken.iloc[2]["low"] / 2
    broken.to_parquet(path, engine="pyarrow")
    with pytest.warns(RuntimeWarning, match="high .* is below"):
        assert cache.load(KEY) is None


def test_intraday_round_trip_keeps_utc_and_values(tmp_path):
    cache = BarCache(tmp_path)
    key = CacheKey(source="ibkr", symbol="SPY", bar_size="5 mins")
    idx = pd.date_range("2024-01-02 14:30", periods=40, freq="5min", tz="UTC", name="datetime")
    base = pd.Series(range(40), index=idx, dtype="float64") / 10 + 470
    frame = pd.DataFrame({"open": base, "high": base + 0.5, "low": base - 0.5, "close": base + 0.1,
                          "volume": 1000.0}, index=idx)
    cache.store(key, frame)
    got = cache.load(key)
    assert str(got.index.tz) == "UTC"
    expected = validate_bars(frame, "expected", intraday=True)  # canonical: ns stamps
    pd.testing.assert_frame_equal(got, expected, check_freq=False)


def test_a_loaded_frame_is_writable_and_does_not_touch_the_cache(tmp_path):
    cache = BarCache(tmp_path)
    frame = sample("2010-01-01", "2010-01-31")
    cache.store(KEY, frame)
    got = cache.load(KEY)
    got.loc[got.index[0], "close"] = -1.0  # a caller may scribble on its copy
    again = cache.load(KEY)
    assert again["close"].iloc[0] == frame["close"].iloc[0]
