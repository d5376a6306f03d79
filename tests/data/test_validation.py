"""validate_bars: each DESIGN §9 rule raises its own error naming the input and the row's date."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bt_ibkr.errors import DataValidationError
from bt_ibkr.validation import BAR_COLUMNS, validate_bars


def bars(dates=("2020-01-02", "2020-01-03", "2020-01-06"), overrides=None) -> pd.DataFrame:
    """Three good daily bars; ``overrides`` maps (column, row position) -> value."""
    n = len(dates)
    frame = pd.DataFrame(
        {
            "open": np.full(n, 10.0),
            "high": np.full(n, 11.0),
            "low": np.full(n, 9.0),
            "close": np.full(n, 10.5),
            "volume": np.full(n, 1000.0),
        },
        index=pd.DatetimeIndex(pd.to_datetime(list(dates))),
    )
    for (col, pos), value in (overrides or {}).items():
        frame.iloc[pos, frame.columns.get_loc(col)] = value
    return frame


def test_good_frame_is_canonical():
    raw = bars()
    raw.columns = ["Open", "HIGH", "low", "Close", "Volume"]
    raw["volume"] = raw.pop("Volume").astype("int64")  # int volume, other order
    out = validate_bars(raw, "SPY", attrs={"symbol": "SPY", "source": "csv"})
    assert list(out.columns) == list(BAR_COLUMNS)
    assert all(str(t) == "float64" for t in out.dtypes)
    assert out.index.name == "datetime"
    assert out.index.tz is None
    assert out["volume"].tolist() == [1000.0, 1000.0, 1000.0]
    assert out.attrs == {"symbol": "SPY", "source": "csv"}
    assert out.index[0] == pd.Timestamp("2020-01-02")


def test_nan_close_names_the_date():
    frame = bars(overrides={("close", 1): np.nan})
    with pytest.raises(DataValidationError, match=r"SPY: 2020-01-03: close is missing"):
        validate_bars(frame, "SPY")


def test_duplicate_dates_are_named():
    frame = bars(dates=("2020-01-02", "2020-01-03", "2020-01-03"))
    with pytest.raises(DataValidationError, match=r"SPY: duplicate timestamp\(s\) 2020-01-03"):
        validate_bars(frame, "SPY")


def test_high_below_close_names_the_date_and_values():
    frame = bars(overrides={("close", 2): 11.5})  # high 11.0 < close 11.5
    with pytest.raises(DataValidationError) as err:
        validate_bars(frame, "data/spy.csv")
    msg = str(err.value)
    assert "data/spy.csv: 2020-01-06: high 11 is below close 11.5" in msg
    assert "never dropped" in msg


def test_low_above_open_is_an_error():
    frame = bars(overrides={("low", 0): 10.2})  # low 10.2 > open 10.0
    with pytest.raises(DataValidationError, match=r"2020-01-02: low 10.2 is above open 10"):
        validate_bars(frame, "SPY")


def test_tiny_float_error_on_high_is_tolerated():
    frame = bars(overrides={("high", 0): 10.5 * (1 - 1e-12)})  # high a hair below close 10.5
    out = validate_bars(frame, "SPY")
    assert len(out) == 3


def test_negative_volume_names_the_date():
    frame = bars(overrides={("volume", 1): -5.0})
    with pytest.raises(DataValidationError, match=r"SPY: 2020-01-03: volume -5 is negative"):
        validate_bars(frame, "SPY")


def test_unsorted_names_the_out_of_order_date():
    frame = bars(dates=("2020-01-02", "2020-01-06", "2020-01-03"))
    with pytest.raises(DataValidationError) as err:
        validate_bars(frame, "SPY")
    assert "not in ascending order: 2020-01-03 comes after 2020-01-06" in str(err.value)


def test_empty_frame_is_an_error():
    with pytest.raises(DataValidationError, match=r"QQQ: no bars \(empty frame\)"):
        validate_bars(bars(dates=()), "QQQ")


def test_nan_volume_is_an_error_unless_source_has_no_volume():
    frame = bars(overrides={("volume", 0): np.nan})
    with pytest.raises(DataValidationError, match=r"EUR.USD: 2020-01-02: volume is missing"):
        validate_bars(frame, "EUR.USD")
    out = validate_bars(frame, "EUR.USD", fill_missing_volume=True)
    assert out["volume"].tolist() == [0.0, 1000.0, 1000.0]


def test_missing_columns_are_listed():
    frame = bars().drop(columns=["volume", "low"])
    with pytest.raises(DataValidationError) as err:
        validate_bars(frame, "SPY")
    assert "missing column(s) low, volume" in str(err.value)
    assert "found: open, high, close" in str(err.value)


def test_intraday_is_converted_to_utc_and_naive_intraday_rejected():
    stamps = pd.DatetimeIndex(["2024-03-01 09:30", "2024-03-01 09:35"], tz="America/New_York")
    frame = bars(dates=range(2)).set_axis(stamps, axis=0)
    out = validate_bars(frame, "SPY")
    assert str(out.index.tz) == "UTC"
    assert out.index[0] == pd.Timestamp("2024-03-01 14:30", tz="UTC")
    with pytest.raises(DataValidationError, match="need tz-aware timestamps"):
        validate_bars(frame.tz_localize(None), "SPY")


def test_daily_with_time_of_day_is_rejected():
    frame = bars()
    frame.index = frame.index + pd.Timedelta(hours=16)
    with pytest.raises(DataValidationError, match="daily bars must be dates at 00:00"):
        validate_bars(frame, "SPY", intraday=False)


@pytest.mark.parametrize("column, value", [("close", 0.0), ("open", -2.5), ("low", 0.0)])
def test_non_positive_price_names_symbol_date_and_column(column, value):
    overrides = {(column, 1): value}
    if column in ("open", "close"):
        overrides[("low", 1)] = value  # keep low <= open/close: only the sign is wrong
    frame = bars(overrides=overrides)
    with pytest.raises(DataValidationError) as err:
        validate_bars(frame, "SPY")
    msg = str(err.value)
    assert msg.startswith("SPY: 2020-01-03: ")
    assert f"{column} {value:g}" in msg and "positive" in msg


def test_non_positive_prices_count_every_bad_row():
    frame = bars(overrides={("low", 0): 0.0, ("low", 2): -1.0})
    with pytest.raises(DataValidationError, match=r"SPY: 2020-01-02: low 0 .*2 rows in all: 2020-01-02, 2020-01-06"):
        validate_bars(frame, "SPY")
