"""Embedded sample, CSV files and the backtrader feed built from a canonical frame."""

from __future__ import annotations

from pathlib import Path

import backtrader as bt
import pandas as pd
import pytest

from bt_ibkr.errors import DataError, DataValidationError, UnknownSymbolError
from feeds.csv_source import load_csv
from feeds.frame_feed import infer_timeframe, make_feed
from feeds.sample import SAMPLE_SYMBOLS, load_sample

DATA = Path(__file__).parents[1] / "fixtures"
HEADER = "Date,Open,High,Low,Close,Volume\n"


# -- sample ------------------------------------------------------------------------------------


def test_sample_gspc_matches_arch():
    import arch.data.sp500

    raw = arch.data.sp500.load()
    frame = load_sample("^GSPC")
    assert len(frame) == 5031
    assert frame.index[0] == pd.Timestamp("1999-01-04")
    assert frame.index[-1] == pd.Timestamp("2018-12-31")
    assert frame["close"].iloc[0] == raw["Close"].iloc[0] == pytest.approx(1228.099976)
    assert frame["close"].iloc[-1] == pytest.approx(2506.850098)  # S&P 500 close, 2018-12-31
    assert frame.attrs == {
        "symbol": "^GSPC", "source": "sample", "tz": "America/New_York", "adjusted": False,
    }


def test_sample_alias_and_date_slice():
    frame = load_sample("s&p 500", start="2008-01-01", end="2008-12-31")
    assert frame.attrs["symbol"] == "^GSPC"
    assert frame.index[0] == pd.Timestamp("2008-01-02")
    assert frame.index[-1] == pd.Timestamp("2008-12-31")
    assert len(frame) == 253  # NYSE sessions in 2008
    nasdaq = load_sample("NASDAQ", end="1999-01-05")
    assert nasdaq.attrs["symbol"] == "^IXIC"
    assert nasdaq["close"].tolist() == pytest.approx([2208.050049, 2251.270020])


def test_sample_unknown_symbol_lists_available():
    with pytest.raises(UnknownSymbolError) as err:
        load_sample("AAPL")
    msg = str(err.value)
    assert "'AAPL'" in msg
    assert "^GSPC" in msg and "^IXIC" in msg
    assert SAMPLE_SYMBOLS == ("^GSPC", "^IXIC")


def test_sample_range_outside_coverage():
    with pytest.raises(DataError) as err:
        load_sample("^GSPC", start="2020-01-01", end="2020-12-31")
    assert "2020-01-01..2020-12-31" in str(err.value)
    assert "1999-01-04..2018-12-31" in str(err.value)


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_round_trip():
    frame = load_csv(DATA / "spy_daily.csv")
    assert frame.attrs == {
        "symbol": "spy_daily", "source": "csv", "tz": "America/New_York", "adjusted": False,
    }
    assert len(frame) == 5
    assert frame.index[0] == pd.Timestamp("2020-01-02")
    assert frame.loc["2020-01-06", "close"] == 323.64
    assert frame.loc["2020-01-08", "volume"] == 68296000.0
    adjusted = load_csv(DATA / "spy_daily.csv", "SPY", use_adj_close=True)
    assert adjusted.attrs["adjusted"] is True
    assert adjusted["close"].iloc[0] == 305.82
    assert adjusted["open"].iloc[0] == pytest.approx(323.54 * 305.82 / 324.87)


def test_csv_written_frame_reads_back_identically(tmp_path):
    original = load_sample("^GSPC", end="1999-03-31")
    path = tmp_path / "GSPC.csv"
    original.to_csv(path)
    again = load_csv(path, "^GSPC")
    pd.testing.assert_frame_equal(again, original, check_freq=False)


def test_csv_missing_file_names_path(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv does not exist"):
        load_csv(tmp_path / "nope.csv")


def test_csv_missing_column_lists_missing_and_found(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("date,open,high,close\n2020-01-02,1,2,1.5\n")
    with pytest.raises(DataValidationError) as err:
        load_csv(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "missing column(s) low, volume" in msg
    assert "found: date, open, high, close" in msg


def test_csv_bad_number_names_line_and_value(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "2020-01-02,1,2,0.5,1.5,100\n2020-01-03,1,2,0.5,1.5O,100\n")
    with pytest.raises(DataValidationError) as err:
        load_csv(path)
    assert f"{path}: line 3: Close value '1.5O' is not a number" in str(err.value)


def test_csv_bad_date_names_line_and_value(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "2020-01-02,1,2,0.5,1.5,100\n03/01/2020,1,2,0.5,1.5,100\n")
    with pytest.raises(DataValidationError) as err:
        load_csv(path)
    assert f"{path}: line 3: cannot parse date '03/01/2020'" in str(err.value)


def test_csv_bad_row_names_path_and_date(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text(HEADER + "2020-01-02,1,2,0.5,1.5,100\n2020-01-03,1,1.2,0.5,1.5,100\n")
    with pytest.raises(DataValidationError) as err:
        load_csv(path, "XYZ")
    assert f"{path} (XYZ): 2020-01-03: high 1.2 is below close 1.5" in str(err.value)


def test_csv_intraday_with_offsets_becomes_utc(tmp_path):
    path = tmp_path / "es.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-03-08T15:55:00-05:00,1,2,0.5,1.5,10\n"
        "2024-03-11T09:30:00-04:00,1,2,0.5,1.5,10\n"  # after the DST switch
    )
    frame = load_csv(path)
    assert str(frame.index.tz) == "UTC"
    assert list(frame.index) == [
        pd.Timestamp("2024-03-08 20:55", tz="UTC"), pd.Timestamp("2024-03-11 13:30", tz="UTC"),
    ]


# -- backtrader feed ---------------------------------------------------------------------------


class _Closes(bt.Strategy):
    def __init__(self):
        self.seen = []

    def next(self):
        self.seen.append((self.data.datetime.datetime(0), self.data.close[0], self.data.volume[0]))


def _run(feed) -> list:
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(feed)
    cerebro.addstrategy(_Closes)
    return cerebro.run()[0].seen


def test_feed_over_sample_sees_every_bar():
    frame = load_sample("^GSPC")
    feed = make_feed(frame)
    assert feed._name == "^GSPC"
    assert (feed.p.timeframe, feed.p.compression) == (bt.TimeFrame.Days, 1)
    seen = _run(feed)
    assert len(seen) == 5031
    assert seen[0][0] == pd.Timestamp("1999-01-04").to_pydatetime()
    assert seen[0][1] == pytest.approx(frame["close"].iloc[0])
    assert seen[-1][0] == pd.Timestamp("2018-12-31").to_pydatetime()
    assert seen[-1][1] == pytest.approx(frame["close"].iloc[-1])
    assert seen[-1][2] == frame["volume"].iloc[-1]


def test_feed_intraday_is_naive_utc_minutes(tmp_path):
    stamps = pd.date_range("2024-03-01 14:30", periods=4, freq="5min", tz="UTC")
    frame = pd.DataFrame(
        {"open": 1.0, "high": 2.0, "low": 0.5, "close": [1.1, 1.2, 1.3, 1.4], "volume": 5.0},
        index=stamps,
    )
    assert infer_timeframe(frame) == (bt.TimeFrame.Minutes, 5)
    seen = _run(make_feed(frame, name="ES"))
    assert [s[0] for s in seen] == [t.tz_localize(None).to_pydatetime() for t in stamps]
    assert [s[1] for s in seen] == pytest.approx([1.1, 1.2, 1.3, 1.4])


def test_make_feed_rejects_non_canonical_frame():
    with pytest.raises(DataValidationError, match="make_feed needs a non-empty canonical"):
        make_feed(pd.DataFrame({"Close": [1.0]}), name="X")


@pytest.mark.slow
def test_feeds_package_imports_lazily():
    import subprocess
    import sys

    code = (
        "import sys, feeds; "
        "print(sorted(m for m in ('backtrader', 'yfinance', 'ib_async', 'ib_insync', 'arch') "
        "if m in sys.modules)); "
        "print(feeds.load_sample('^IXIC').attrs['symbol'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2], check=True).stdout.split("\n")
    assert out[0] == "[]"  # nothing heavy (and no IB client) on `import feeds`
    assert out[1] == "^IXIC"


@pytest.mark.slow
def test_public_names_and_a_backtest_path_without_the_ib_client():
    """The names users import stay where the README says; the backtest path never loads the
    IB client library (it is imported lazily, only when a store, broker or provider is used)."""
    import subprocess
    import sys

    code = (
        "import sys, bt_ibkr.backtest, bt_ibkr.data.history, feeds.yahoo; "
        "print(any(m in sys.modules for m in ('ib_async', 'ib_insync'))); "
        "from bt_ibkr import IBStore, IBBroker, IBKRDataProvider; from feeds import IBData; "
        "print(IBStore.__module__, IBBroker.__module__, IBKRDataProvider.__module__, "
        "IBData.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "False"
    assert out[1:] == ["bt_ibkr.ib.store", "bt_ibkr.ib.broker", "bt_ibkr.data.provider",
                       "feeds.ibdata"]
