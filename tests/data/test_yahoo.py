"""download_yahoo against frames shaped exactly as yfinance 1.x returns them.

Only ``yfinance.download`` is patched. ``yf_frame`` rebuilds yfinance 1.7's output by the steps
in yfinance/multi.py (``_download_impl``): each ticker's ``Ticker.history`` frame (columns
Open, High, Low, Close[, Adj Close], Volume int64; index "Date" or "Datetime" in the exchange
zone) is concatenated with ``keys=[TICKER], names=["Ticker", "Price"]``, levels swapped to
(Price, Ticker), sorted by Price; ``ignore_tz`` strips the zone; ``multi_level_index=False``
drops the Ticker level. Checked against the real ``yfinance.download`` code path (with a stub
Ticker) for every auto_adjust x interval x ignore_tz x multi_level_index combination.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import yfinance

from bt_ibkr.errors import DataValidationError, SourceUnavailableError, UnknownSymbolError
from feeds.yahoo import download_yahoo

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04"]


def yf_frame(symbol, stamps, *, auto_adjust=True, intraday=False, tz="America/New_York",
             multi_level=True, ignore_tz=False) -> pd.DataFrame:
    n = len(stamps)
    close = 100.0 + np.arange(n, dtype=float)
    open_ = close - 0.25
    cols = {"Open": open_, "High": close + 0.5, "Low": open_ - 0.5, "Close": close}
    if not auto_adjust:
        cols["Adj Close"] = close * 0.98
    cols["Volume"] = (1_000_000 + 1000 * np.arange(n)).astype(np.int64)
    idx = pd.DatetimeIndex(pd.to_datetime(stamps)).tz_localize(tz)
    hist = pd.DataFrame(cols, index=idx)
    hist.index.name = "Datetime" if intraday else "Date"
    if ignore_tz:
        hist.index = hist.index.tz_localize(None)
    data = pd.concat([hist], axis=1, keys=[symbol.upper()], names=["Ticker", "Price"])
    data.columns = data.columns.swaplevel(0, 1)
    data = data.sort_index(level=0, axis=1)
    if not multi_level:
        data = data.droplevel(1, axis=1).rename_axis(None, axis=1)
    return data


def yf_empty(symbol: str) -> pd.DataFrame:
    """What yfinance 1.7 returns when the one ticker failed (utils.empty_df, concatenated)."""
    empty = pd.DataFrame(index=pd.DatetimeIndex([], name="Date"), data={
        "Open": np.nan, "High": np.nan, "Low": np.nan, "Close": np.nan, "Adj Close": np.nan,
        "Volume": np.nan})
    data = pd.concat([empty], axis=1, keys=[symbol], names=["Ticker", "Price"])
    data.columns = data.columns.swaplevel(0, 1)
    return data.sort_index(level=0, axis=1)


class Recorder:
    """Stands in for yfinance.download: records calls, logs like yfinance, returns or raises."""

    def __init__(self, result=None, raises=None, logs=()):
        self.result, self.raises, self.logs, self.calls = result, raises, logs, []

    def __call__(self, tickers, **kwargs):
        self.calls.append((tickers, kwargs))
        for msg in self.logs:
            logging.getLogger("yfinance").error(msg)
        if self.raises is not None:
            raise self.raises
        return self.result


@pytest.fixture
def patch_download(monkeypatch):
    def install(**kw) -> Recorder:
        rec = Recorder(**kw)
        monkeypatch.setattr(yfinance, "download", rec)
        return rec

    return install


def test_multiindex_single_ticker_daily(patch_download):
    rec = patch_download(result=yf_frame("SPY", DAYS))
    frame = download_yahoo("SPY", "2024-01-02", "2024-01-04")
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame["close"].tolist() == [100.0, 101.0, 102.0]
    assert frame["volume"].tolist() == [1_000_000.0, 1_001_000.0, 1_002_000.0]
    assert list(frame.index) == [pd.Timestamp(d) for d in DAYS]  # session dates, tz-naive
    assert frame.attrs == {
        "symbol": "SPY", "source": "yahoo", "tz": "America/New_York", "adjusted": True,
    }
    (ticker, kwargs), = rec.calls
    assert ticker == "SPY"
    assert kwargs["start"] == "2024-01-02"
    assert kwargs["end"] == "2024-01-05"  # yfinance's end is exclusive: inclusive end + 1 day
    assert kwargs["auto_adjust"] is True
    assert kwargs["progress"] is False and kwargs["threads"] is False
    assert kwargs["actions"] is False
    assert kwargs["timeout"] <= 10


def test_single_level_tz_naive_daily_columns(patch_download):
    patch_download(result=yf_frame("QQQ", DAYS, multi_level=False, ignore_tz=True))
    frame = download_yahoo("QQQ", "2024-01-02", "2024-01-04")
    assert frame["open"].tolist() == [99.75, 100.75, 101.75]
    assert frame.index.tz is None


def test_auto_adjust_false_uses_raw_close_and_drops_adj_close(patch_download):
    rec = patch_download(result=yf_frame("SPY", DAYS, auto_adjust=False))
    frame = download_yahoo("SPY", "2024-01-02", "2024-01-04", auto_adjust=False)
    assert rec.calls[0][1]["auto_adjust"] is False
    assert frame["close"].tolist() == [100.0, 101.0, 102.0]  # not Adj Close (98.0, ...)
    assert "adj close" not in frame.columns
    assert frame.attrs["adjusted"] is False


def test_intraday_new_york_index_becomes_utc(patch_download):
    stamps = ["2024-01-02 09:30", "2024-01-02 10:30", "2024-01-02 11:30"]
    patch_download(result=yf_frame("SPY", stamps, intraday=True))
    frame = download_yahoo("SPY", "2024-01-02", "2024-01-02", interval="1h")
    assert str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")  # 09:30 EST
    assert frame.attrs["tz"] == "America/New_York"


def test_empty_frame_is_unknown_symbol(patch_download):
    patch_download(
        result=yf_empty("XYZ"),
        logs=["$XYZ: possibly delisted; no price data found  (1d 2024-01-02 -> 2024-01-05)"],
    )
    with pytest.raises(UnknownSymbolError) as err:
        download_yahoo("XYZ", "2024-01-02", "2024-01-04")
    msg = str(err.value)
    assert "yfinance returned no rows for 'XYZ' between 2024-01-02 and 2024-01-04" in msg
    assert "finance.yahoo.com" in msg and "--source" in msg


def test_empty_frame_after_dns_failure_is_source_unavailable(patch_download):
    patch_download(result=yf_empty("SPY"), logs=[
        "['SPY']: DNSError('Failed to perform, curl: (6) Could not resolve host: "
        "query2.finance.yahoo.com. See https://curl.se/libcurl/c/libcurl-errors.html first')",
    ])
    with pytest.raises(SourceUnavailableError) as err:
        download_yahoo("SPY", "2024-01-02", "2024-01-04")
    assert str(err.value) == (
        "yahoo unreachable (offline?): curl: (6) Could not resolve host: "
        "query2.finance.yahoo.com"
    )


def test_rate_limit_exception_is_source_unavailable(patch_download):
    from yfinance.exceptions import YFRateLimitError

    patch_download(raises=YFRateLimitError())
    with pytest.raises(SourceUnavailableError) as err:
        download_yahoo("SPY", "2024-01-02", "2024-01-04")
    assert "rate-limited" in str(err.value)
    assert "wait a few minutes" in str(err.value)


def test_connection_exception_is_source_unavailable_in_one_line(patch_download):
    patch_download(raises=ConnectionError("Connection refused\n  by peer"))
    with pytest.raises(SourceUnavailableError) as err:
        download_yahoo("SPY", "2024-01-02", "2024-01-04")
    assert str(err.value) == "yahoo unreachable (offline?): ConnectionError: Connection refused by peer"


def test_nan_row_is_a_validation_error(patch_download):
    data = yf_frame("SPY", DAYS)
    data.loc[pd.Timestamp("2024-01-03", tz="America/New_York"), ("Close", "SPY")] = np.nan
    patch_download(result=data)
    with pytest.raises(DataValidationError, match=r"yahoo SPY: 2024-01-03: close is missing"):
        download_yahoo("SPY", "2024-01-02", "2024-01-04")


def test_yfinance_errors_do_not_reach_the_console(patch_download, caplog):
    patch_download(result=yf_empty("XYZ"), logs=["$XYZ: possibly delisted; no timezone found"])
    with caplog.at_level(logging.WARNING), pytest.raises(UnknownSymbolError):
        download_yahoo("XYZ", "2024-01-02", "2024-01-04")
    assert not [r for r in caplog.records if r.name == "yfinance"]
    assert logging.getLogger("yfinance").propagate is True  # restored afterwards
