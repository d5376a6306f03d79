"""load_history: the auto chain (cache -> yahoo -> sample), its one-line message and its errors.

Only ``yfinance.download`` is patched; its fake answers in yfinance 1.7's shape (see
test_yahoo.py) with business-day bars whose prices are a function of the date, so overlapping
downloads agree the way real ones do.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yfinance

import bt_ibkr.data.history as history
from bt_ibkr.cache import BarCache
from bt_ibkr.data.history import HistoryRequest, load_history, yahoo_cache_key
from bt_ibkr.errors import ConfigError, DataError, SourceUnavailableError

DATA = Path(__file__).parents[1] / "fixtures"
TODAY = date(2024, 1, 10)  # a Wednesday


def _yf_shape(symbol: str, days: pd.DatetimeIndex, scale: float) -> pd.DataFrame:
    age = (days - pd.Timestamp("2000-01-01")).days.to_numpy(dtype=float)
    close = (100.0 + 0.01 * age) * scale
    hist = pd.DataFrame(
        {"Close": close, "High": close + 1.0, "Low": close - 1.5, "Open": close - 0.5,
         "Volume": (1_000 + age).astype(np.int64)},
        index=days.tz_localize("America/New_York"),
    )
    hist.index.name = "Date"
    data = pd.concat([hist], axis=1, keys=[symbol.upper()], names=["Ticker", "Price"])
    data.columns = data.columns.swaplevel(0, 1)
    return data.sort_index(level=0, axis=1)


class FakeYahoo:
    """yfinance.download stand-in: known symbols get bars for [start, end), others nothing."""

    def __init__(self, known=("SPY", "QQQ"), scale=1.0, raises=None):
        self.known, self.scale, self.raises, self.calls = set(known), scale, raises, []

    def __call__(self, tickers, **kw):
        self.calls.append((tickers, kw["start"], kw["end"]))
        if self.raises is not None:
            raise self.raises
        days = pd.bdate_range(kw["start"], pd.Timestamp(kw["end"]) - pd.Timedelta(days=1))
        if tickers.upper() not in self.known or len(days) == 0:
            logging.getLogger("yfinance").error(
                f"${tickers}: possibly delisted; no price data found (1d {kw['start']} -> "
                f"{kw['end']})")
            return _yf_shape(tickers, pd.DatetimeIndex([]), 1.0).iloc[0:0]
        return _yf_shape(tickers, days, self.scale)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own cache dir (never the repo's .cache) and a fixed 'today'."""
    monkeypatch.setenv("BT_IBKR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(history, "_today", lambda: TODAY)


@pytest.fixture
def yahoo(monkeypatch):
    def install(**kw) -> FakeYahoo:
        fake = FakeYahoo(**kw)
        monkeypatch.setattr(yfinance, "download", fake)
        return fake

    return install


def test_auto_offline_serves_the_sample_and_says_why(yahoo, tmp_path):
    yahoo(raises=ConnectionError("Failed to establish a new connection: [Errno 101] "
                                 "Network is unreachable"))
    result = load_history(HistoryRequest(progress=False))
    assert result.source == "sample"
    assert list(result.frames) == ["^GSPC"]
    frame = result.frames["^GSPC"]
    assert len(frame) == 5031
    assert frame.attrs["source"] == "sample"
    assert result.message == (
        "data: sample ^GSPC 1999-01-04..2018-12-31 in place of SPY (cache: no entry for SPY; "
        "yahoo: unreachable (offline?): ConnectionError: Failed to establish a new connection: "
        "[Errno 101] Network is unreachable)"
    )
    assert [s for s, _ in result.tried] == ["cache", "yahoo", "sample"]
    assert not (tmp_path / "cache").exists()  # nothing cached from a failed download


def test_auto_online_serves_yahoo_then_cache_without_download(yahoo, tmp_path):
    fake = yahoo()
    cache = BarCache(tmp_path / "c")
    req = HistoryRequest(symbols=["SPY"], start=date(2023, 1, 1), end=date(2023, 12, 31),
                         cache=cache, progress=False)
    first = load_history(req)
    assert first.source == "yahoo"
    assert fake.calls == [("SPY", "2023-01-01", "2024-01-01")]
    assert len(first.frames["SPY"]) == 260  # business days in 2023
    assert first.message == "data: yahoo SPY 2023-01-02..2023-12-29 (cache: no entry for SPY; downloaded, cached)"
    key = yahoo_cache_key("SPY")
    assert cache.path_for(key).exists()
    assert cache.missing(key, "2023-01-01", "2023-12-31") == []

    second = load_history(req)
    assert len(fake.calls) == 1  # served from the cache: no new download
    assert second.source == "cache"
    assert second.message.startswith("data: cache SPY 2023-01-02..2023-12-29 (")
    pd.testing.assert_frame_equal(second.frames["SPY"], first.frames["SPY"], check_like=True)
    assert second.frames["SPY"].attrs["source"] == "cache"


def test_extended_range_downloads_only_the_missing_part(yahoo, tmp_path):
    fake = yahoo()
    cache = BarCache(tmp_path / "c")
    load_history(HistoryRequest(symbols=["SPY"], start=date(2022, 1, 1), end=date(2022, 12, 31),
                                cache=cache, progress=False))
    result = load_history(HistoryRequest(symbols=["SPY"], start=date(2022, 1, 1),
                                         end=date(2023, 6, 30), cache=cache, progress=False))
    # the second download starts 10 days before the gap (to detect re-adjusted history)
    assert fake.calls[1] == ("SPY", "2022-12-22", "2023-07-01")
    assert result.source == "yahoo"
    assert result.frames["SPY"].index[-1] == pd.Timestamp("2023-06-30")
    assert len(result.frames["SPY"]) == len(pd.bdate_range("2022-01-01", "2023-06-30"))
    assert "updated the cache (+130 bars)" in result.message  # business days 2023-01..06
    assert result.frames["SPY"].attrs["source"] == "yahoo"


def test_readjusted_history_is_refetched_whole(yahoo, tmp_path):
    cache = BarCache(tmp_path / "c")
    req = dict(symbols=["SPY"], start=date(2022, 1, 1), cache=cache, progress=False)
    yahoo()
    load_history(HistoryRequest(end=date(2022, 12, 31), **req))
    fake = yahoo(scale=0.99)  # a dividend re-scaled every adjusted price
    result = load_history(HistoryRequest(end=date(2023, 3, 31), **req))
    assert fake.calls[-1] == ("SPY", "2022-01-01", "2023-04-01")
    frame = result.frames["SPY"]
    expected = (100.0 + 0.01 * (pd.Timestamp("2022-01-03") - pd.Timestamp("2000-01-01")).days)
    assert frame["close"].iloc[0] == pytest.approx(expected * 0.99)  # old bars replaced


def test_default_request_serves_stale_cache_offline(yahoo, monkeypatch):
    yahoo()
    first = load_history(HistoryRequest(progress=False))
    assert first.source == "yahoo"
    assert first.frames["SPY"].index[0] == pd.Timestamp("2014-01-10")  # 10 years back
    assert first.frames["SPY"].index[-1] == pd.Timestamp("2024-01-10")
    # five days later, offline: the default range now ends 2024-01-15, the cache 2024-01-09
    yahoo(raises=OSError("curl: (6) Could not resolve host: query2.finance.yahoo.com"))
    monkeypatch.setattr(history, "_today", lambda: date(2024, 1, 15))
    second = load_history(HistoryRequest(progress=False))
    assert second.source == "cache"
    assert second.frames["SPY"].index[-1] == pd.Timestamp("2024-01-09")
    assert second.message == (
        "data: cache SPY 2014-01-15..2024-01-09 (yahoo: unreachable (offline?): OSError: "
        "curl: (6) Could not resolve host: query2.finance.yahoo.com; serving cached bars up "
        "to 2024-01-09; newer days not fetched)"
    )


def test_explicit_unknown_symbol_names_every_source(yahoo):
    yahoo()
    with pytest.raises(DataError) as err:
        load_history(HistoryRequest(symbols=["XYZ"], progress=False))
    msg = str(err.value)
    assert "no source could serve XYZ" in msg
    assert "cache: no entry for XYZ" in msg
    assert "yahoo: yfinance returned no rows for 'XYZ'" in msg
    assert "sample: has no XYZ (only ^GSPC, ^IXIC)" in msg
    assert "--source csv" in msg


def test_one_request_one_source(yahoo):
    yahoo()
    with pytest.raises(DataError) as err:
        load_history(HistoryRequest(symbols=["SPY", "XYZ"], start=date(2023, 1, 1),
                                    end=date(2023, 3, 1), progress=False))
    assert "SPY ok, but one request is served by one source" in str(err.value)


def test_explicit_yahoo_offline_raises_source_unavailable(yahoo):
    yahoo(raises=ConnectionError("Connection refused"))
    with pytest.raises(SourceUnavailableError, match="yahoo: unreachable"):
        load_history(HistoryRequest(symbols=["SPY"], source="yahoo", progress=False))


def test_end_before_start_is_config_error():
    with pytest.raises(ConfigError, match="start 2020-02-01 is after end 2020-01-01"):
        load_history(HistoryRequest(start=date(2020, 2, 1), end=date(2020, 1, 1)))


def test_unknown_source_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid sources: auto, yahoo, sample, csv"):
        load_history(HistoryRequest(source="bloomberg"))


def test_sample_source_with_clipped_dates():
    result = load_history(HistoryRequest(symbols=["^IXIC", "SPX"], source="sample",
                                         start=date(2018, 6, 1), end=date(2030, 1, 1)))
    assert list(result.frames) == ["^IXIC", "^GSPC"]
    assert result.frames["^GSPC"].index[-1] == pd.Timestamp("2018-12-31")
    assert result.message.startswith("data: sample ^IXIC, ^GSPC 2018-06-01..2018-12-31")
    from feeds.frame_feed import load_frames_as_feeds

    feeds = load_frames_as_feeds(result)
    assert [f._name for f in feeds] == ["^IXIC", "^GSPC"]
    assert [f._name for f in load_frames_as_feeds(result.frames)] == ["^IXIC", "^GSPC"]
    assert [len(f.p.dataname) for f in feeds] == [147, 147]  # NYSE sessions 2018-06-01..12-31


def test_csv_source_and_disjoint_dates(tmp_path):
    result = load_history(HistoryRequest(source="csv", csv_paths=[DATA / "spy_daily.csv"],
                                         symbols=["SPY"], progress=False))
    assert result.source == "csv"
    assert result.frames["SPY"]["close"].iloc[-1] == 324.45
    other = tmp_path / "OLD.csv"
    other.write_text("date,open,high,low,close,volume\n1999-01-04,1,2,0.5,1.5,10\n")
    with pytest.raises(DataError, match=r"spy_daily .* and OLD .* have no dates in common"):
        load_history(HistoryRequest(source="csv", csv_paths=[DATA / "spy_daily.csv", other],
                                    progress=False))


def test_sample_equals_arch_data_and_loads_without_importing_arch(spx, ndx):
    """The embedded sample is arch's own data file, read without importing the arch package
    (whose __init__ pulls in scipy.stats, statsmodels and matplotlib: over a second)."""
    import subprocess
    import sys

    from feeds.sample import load_sample

    for symbol, ref in (("^GSPC", spx), ("^IXIC", ndx)):
        got = load_sample(symbol)
        np.testing.assert_array_equal(got.to_numpy(), ref.to_numpy(dtype="float64"))
        assert (got.index == pd.DatetimeIndex(ref.index)).all()
    code = ("import sys; from feeds.sample import load_sample; f = load_sample('^GSPC'); "
            "print(len(f), 'arch' in sys.modules, 'scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], check=True, timeout=120)
    assert out.stdout.split() == [str(len(spx)), "False", "False"]
