"""option_frame: an option's daily bars priced from the underlying's (Black-Scholes)."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.options.feed import option_frame
from bt_ibkr.options.pricing import bs_price, implied_vol

DAYS = pd.bdate_range("2024-01-08", periods=13)


def _under(closes):
    return pd.DataFrame({"Open": closes, "High": [c + 1 for c in closes],
                         "Low": [c - 1 for c in closes], "Close": closes}, index=DAYS)


def test_frame_runs_to_expiry_and_ends_at_intrinsic_value():
    closes = [470.0 + k for k in range(13)]
    f = option_frame(_under(closes), date(2024, 1, 19), 475.0, "P", vol=0.25)
    assert list(f.index) == list(DAYS[:10])  # nothing after the expiry
    assert f["close"].iloc[-1] == pytest.approx(max(475.0 - closes[9], 0.0))
    assert f["close"].iloc[0] == pytest.approx(round(bs_price(470.0, 475.0, 11 / 365, "P",
                                                              0.25), 2))
    # a put is worth most at the underlying's low
    assert (f["high"] >= f[["open", "close"]].max(axis=1)).all()
    assert f["high"].iloc[0] == pytest.approx(round(bs_price(469.0, 475.0, 11 / 365, "P",
                                                             0.25), 2))
    assert (f["volume"] == 0).all()


def test_frame_refuses_bad_input_by_name():
    with pytest.raises(ConfigError, match="right 'X'"):
        option_frame(_under([1.0] * 13), date(2024, 1, 19), 1.0, "X")
    with pytest.raises(ConfigError, match=r"column\(s\) \['open', 'high', 'low'\]"):
        option_frame(pd.DataFrame({"close": [1.0]}, index=DAYS[:1]), date(2024, 1, 19), 1.0, "C")
    with pytest.raises(ConfigError, match="vol -0.1"):
        option_frame(_under([1.0] * 13), date(2024, 1, 19), 1.0, "C", vol=-0.1)


def test_implied_vol_inverts_the_price_and_refuses_below_intrinsic():
    price = bs_price(100.0, 105.0, 0.25, "C", 0.3)
    assert implied_vol(price, 100.0, 105.0, 0.25, "C") == pytest.approx(0.3, abs=1e-6)
    assert implied_vol(4.0, 110.0, 105.0, 0.25, "C") is None  # below intrinsic (5)
