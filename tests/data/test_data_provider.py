"""IBKRDataProvider end to end: the real ib_async client against the gateway simulator.

Ground truth is the simulator's own daily series (``sim.market.series(contract)``); yfinance is
patched at ``yfinance.download`` only. The synthetic simulator's clock stands at
2024-01-02 09:30 New York, so its last complete session is 2023-12-29.
"""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import yfinance
from helpers.sim import VirtualClock, history_settled, poll_until, use_virtual_clock

from bench.data import add_symbols
from bt_ibkr.cache import BarCache, CacheKey
from bt_ibkr.data.provider import IBKRDataProvider, load_ibkr_history
from bt_ibkr.errors import ConfigError, SourceUnavailableError, UnknownSymbolError
from bt_ibkr.ib.bars import duration_delta, normalize_bar_size, parse_duration
from bt_ibkr.ib.historical import chunk_range
from bt_ibkr.validation import validate_bars
from feeds.yahoo import yahoo_period, yahoo_plan

HANG = 60  # hang guard for waits, seconds


def hist_requests(sim) -> list[tuple[str, ...]]:
    return [r[3] for r in sim.requests_named("reqHistoricalData")]


def sim_daily(sim, symbol: str) -> pd.DataFrame:
    """The simulator's daily OHLCV for ``symbol`` (what IB history must reproduce)."""
    contract = sim.contracts.by_symbol(symbol, "STK")
    s = sim.call(sim.market.series, contract)
    return pd.DataFrame({"open": s.open, "high": s.high, "low": s.low, "close": s.close,
                         "volume": s.volume}, index=pd.DatetimeIndex(s.dates.astype("M8[ns]")))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def provider(sim, tmp_path, **kw) -> IBKRDataProvider:
    opts = dict(port=sim.port, client_id=11, cache=BarCache(tmp_path / "cache"), progress=False,
                timeout=20, backoff=0.05, fallback_to_yfinance=False)
    opts.update(kw)
    return IBKRDataProvider(**opts)


def yf_frame(symbol: str, days: list[str], close0: float = 100.0) -> pd.DataFrame:
    """A frame shaped like yfinance 1.x's download (MultiIndex (Price, Ticker), NY dates)."""
    n = len(days)
    close = close0 + np.arange(n, dtype=float)
    idx = pd.DatetimeIndex(pd.to_datetime(days)).tz_localize("America/New_York")
    hist = pd.DataFrame({"Open": close - 0.5, "High": close + 1, "Low": close - 1,
                         "Close": close, "Volume": np.full(n, 1000, dtype=np.int64)}, index=idx)
    hist.index.name = "Date"
    data = pd.concat([hist], axis=1, keys=[symbol], names=["Ticker", "Price"])
    data.columns = data.columns.swaplevel(0, 1)
    return data.sort_index(level=0, axis=1)


# ------------------------------------------------------------------ pure helpers


def test_durations_and_bar_sizes_parse_like_ib():
    assert parse_duration("1 Y") == (1, "Y")
    assert parse_duration("3600 S") == (3600, "S")
    assert duration_delta("2 W").days == 14
    assert pd.Timestamp("2024-03-31") - duration_delta("1 M") == pd.Timestamp("2024-02-29")
    assert normalize_bar_size("1  Day") == "1 day"
    assert normalize_bar_size("5 MINS") == "5 mins"
    with pytest.raises(ConfigError, match="'1 fortnight'"):
        parse_duration("1 fortnight")
    with pytest.raises(ConfigError, match="'7 mins' is not an IB bar size"):
        normalize_bar_size("7 mins")


def test_yfinance_mapping_and_intraday_limits():
    assert yahoo_period("1 Y") == "1y"
    assert yahoo_period("6 M") == "6mo"
    assert yahoo_period("30 D") == "1mo"
    assert yahoo_period("2 W") == "1mo"
    assert yahoo_period("3600 S") == "1d"
    assert yahoo_period("10 Y") == "10y"
    today = date(2026, 11, 24)
    plan = yahoo_plan("1 Y", "1 day", date(2025, 11, 24), today, today)
    assert (plan.interval, plan.period, plan.pieces) == (
        "1d", "1y", ((date(2025, 11, 24), today),))
    assert yahoo_plan("30 D", "1 hour", date(2026, 10, 26), today, today).interval == "1h"
    # 1-minute bars: 7 days per request, 30 days back at most
    plan = yahoo_plan("20 D", "1 min", date(2026, 11, 5), today, today)
    assert plan.interval == "1m"
    assert plan.pieces[0] == (date(2026, 11, 5), date(2026, 11, 11))
    assert plan.pieces[-1][1] == today and len(plan.pieces) == 3
    with pytest.raises(ConfigError, match="last 60 days only"):
        yahoo_plan("6 M", "5 mins", date(2026, 5, 24), today, today)
    with pytest.raises(ConfigError, match="yfinance has no '10 mins' bars"):
        yahoo_plan("1 D", "10 mins", today, today, today)


def test_aligned_chunks_touch_at_midnights_and_respect_max_duration():
    start = datetime(2014, 1, 1, tzinfo=UTC)
    end = datetime(2024, 1, 2, 14, 30, tzinfo=start.tzinfo)
    chunks = chunk_range(start, end, "1 day")
    assert chunks[0].end == end and chunks[-1].start == start
    for newer, older in zip(chunks, chunks[1:], strict=False):
        assert older.end == newer.start
        assert older.end.hour == 0 and older.end.minute == 0
    assert {c.duration for c in chunks[1:]} == {"365 D"}
    # 10 x 365 days from 2014-01-01 end on 2023-12-30; the last chunk runs to "now"
    assert chunks[0].start == datetime(2023, 12, 30, tzinfo=UTC) and chunks[0].duration == "4 D"
    hourly = chunk_range(start, datetime(2014, 3, 2, tzinfo=start.tzinfo), "1 hour")
    assert [c.duration for c in hourly] == ["30 D", "30 D"]
    assert hourly[0].start == datetime(2014, 1, 31, tzinfo=start.tzinfo)


# ------------------------------------------------------------------ IB history


@pytest.mark.slow
def test_ten_years_daily_equal_the_simulator_series_without_gaps_or_duplicates(
        gateway_sim, tmp_path):
    with provider(gateway_sim, tmp_path) as p:
        frame = p.get_historical_data("SPY", "10 Y", "1 day", end="2023-12-29")
    truth = sim_daily(gateway_sim, "SPY")
    truth = truth.loc["2013-12-30":"2023-12-29"]  # 10 calendar years back from 2023-12-30
    # the NYSE sessions: len(exchange_calendars.get_calendar("XNYS")
    #                        .sessions_in_range("2013-12-30", "2023-12-29")) == 2518
    assert len(frame) == len(truth) == 2518
    assert frame.index.equals(pd.DatetimeIndex(truth.index, name="datetime"))
    np.testing.assert_allclose(frame["close"].to_numpy(), truth["close"].to_numpy())
    np.testing.assert_allclose(frame["volume"].to_numpy(), truth["volume"].to_numpy())
    assert frame.attrs == {"symbol": "SPY", "source": "ibkr", "tz": "America/New_York",
                           "adjusted": False, "simulated": True,
                           "gateway": f"IB gateway simulator at 127.0.0.1:{gateway_sim.port}",
                           # the gateway's clock when fetched (a backtest leaves out a session
                           # that had not closed then)
                           "gateway_now": "2024-01-02T14:30:00+00:00"}
    validate_bars(frame, "spy", intraday=False)  # canonical
    assert frame.index.tz is None and frame.index.name == "datetime"
    # the synthetic SPY series on XNYS sessions (seed 0): sim_daily(gateway_sim, "SPY")
    assert frame.loc["2023-12-29", "close"] == pytest.approx(464.48)
    # chunks of IB's 365-day maximum counted from the start, newest first, explicit UTC ends
    reqs = [(r[15], r[17]) for r in hist_requests(gateway_sim)]
    assert len(reqs) == 11
    assert reqs[:2] == [("20231230 00:00:00 UTC", "2 D"), ("20231228 00:00:00 UTC", "365 D")]
    assert reqs[-1] == ("20141230 00:00:00 UTC", "365 D")
    assert p.last_sources == {"SPY": "ibkr"}


@pytest.mark.parametrize(("bar_size", "first", "requests", "per_session"), [
    ("1 hour", "2023-09-01", 4, 7),   # 120 days in 30-day chunks; 09:30, 10:30 .. 15:30 NY
    ("5 mins", "2023-12-09", 3, 78),  # 21 days in 7-day chunks
    ("1 min", "2023-12-26", 4, 390),  # 4 days in 1-day chunks
])
def test_intraday_bars_across_chunk_boundaries_are_complete(gateway_sim, tmp_path, bar_size,
                                                            first, requests, per_session):
    with provider(gateway_sim, tmp_path) as p:
        frames = p.get_range_data(["SPY"], first, "2023-12-29", bar_size)
    frame = frames["SPY"]
    assert len(hist_requests(gateway_sim)) == requests
    assert frame.index.tz is not None and str(frame.index.tz) == "UTC"
    assert not frame.index.has_duplicates
    daily = sim_daily(gateway_sim, "SPY").loc[first:"2023-12-29"]
    per_day = frame.groupby(frame.index.tz_convert("America/New_York").date)
    assert per_day.size().eq(per_session).all() and len(per_day) == len(daily)
    agg = per_day.agg({"open": "first", "high": "max", "low": "min", "close": "last",
                       "volume": "sum"})
    np.testing.assert_allclose(agg["close"].to_numpy(), daily["close"].to_numpy())
    np.testing.assert_allclose(agg["high"].to_numpy(), daily["high"].to_numpy())
    np.testing.assert_allclose(agg["open"].to_numpy(), daily["open"].to_numpy())
    np.testing.assert_allclose(agg["volume"].to_numpy(), daily["volume"].to_numpy())


def test_second_call_is_served_by_the_cache_without_any_request(gateway_sim, tmp_path):
    """The simulator's bars are filed as ibkr-sim, which the provider reads once connected
    (it must learn that the gateway is the simulator); IB's ("ibkr") are read before."""
    with provider(gateway_sim, tmp_path) as p:
        first = p.get_historical_data("AAPL", "1 Y", "1 day", end="2023-12-29")
    before = len(hist_requests(gateway_sim))
    with provider(gateway_sim, tmp_path, client_id=12) as p:
        second = p.get_historical_data("AAPL", "1 Y", "1 day", end="2023-12-29")
        assert p.last_sources == {"AAPL": "cache"}
    assert len(hist_requests(gateway_sim)) == before  # no historical request
    cache = BarCache(tmp_path / "cache")
    sim_key, ibkr_key = CacheKey("ibkr-sim", "AAPL"), CacheKey("ibkr", "AAPL")
    (lo, _), *_, (_, hi) = cache.coverage(sim_key) * 2
    cache.store(ibkr_key, cache.load(sim_key), lo, hi)
    shutil.rmtree(tmp_path / "cache" / "ibkr-sim")
    requests = len(gateway_sim.requests)
    with provider(gateway_sim, tmp_path, client_id=13) as p:  # bars filed as IB's
        third = p.get_historical_data("AAPL", "1 Y", "1 day", end="2023-12-29")
        assert p.last_sources == {"AAPL": "cache"}
        assert not p.connected
    assert len(gateway_sim.requests) == requests  # not even a connection
    pd.testing.assert_frame_equal(first, third, check_like=False)
    assert second.attrs["source"] == "cache"
    pd.testing.assert_frame_equal(first, second, check_like=False)


def test_extended_range_fetches_only_the_missing_part(gateway_sim, tmp_path):
    with provider(gateway_sim, tmp_path) as p:
        p.get_range_data(["MSFT"], "2021-01-04", "2022-06-30")
        n = len(hist_requests(gateway_sim))
        frame = p.get_range_data(["MSFT"], "2021-01-04", "2023-06-30")["MSFT"]
    new = hist_requests(gateway_sim)[n:]
    assert [(r[15], r[17]) for r in new] == [("20230701 00:00:00 UTC", "365 D")]
    truth = sim_daily(gateway_sim, "MSFT").loc["2021-01-04":"2023-06-30"]
    assert frame.index.equals(pd.DatetimeIndex(truth.index, name="datetime"))
    np.testing.assert_allclose(frame["close"].to_numpy(), truth["close"].to_numpy())
    assert frame.attrs["source"] == "ibkr"


def test_several_symbols_concurrently_on_one_connection(gateway_sim, tmp_path):
    with provider(gateway_sim, tmp_path, progress=True) as p:
        frames = p.get_multiple_symbols_data(["SPY", "AAPL", "NVDA"], "3 Y", "1 day",
                                             end="2023-12-29")
    assert not p.connected  # leaving the with block disconnected
    assert list(frames) == ["SPY", "AAPL", "NVDA"]
    assert p.last_sources == {"SPY": "ibkr", "AAPL": "ibkr", "NVDA": "ibkr"}
    for sym, frame in frames.items():
        truth = sim_daily(gateway_sim, sym).loc["2020-12-30":"2023-12-29"]
        assert len(frame) == len(truth) == 755  # XNYS sessions 2020-12-30..2023-12-29
        np.testing.assert_allclose(frame["close"].to_numpy(), truth["close"].to_numpy())
    reqs = gateway_sim.requests_named("reqHistoricalData")
    assert {r[0] for r in reqs} == {11}  # one connection
    assert len(reqs) == 3 * 3
    # gathered, not one symbol after the other: every symbol's first request reaches the
    # gateway before any symbol's last one (the order within that is the machine's)
    order = [r[3][3] for r in reqs]
    firsts = {s: order.index(s) for s in ("SPY", "AAPL", "NVDA")}
    lasts = {s: len(order) - 1 - order[::-1].index(s) for s in firsts}
    assert max(firsts.values()) < min(lasts.values()), order


def test_a_client_id_in_use_is_replaced(gateway_sim, tmp_path):
    with provider(gateway_sim, tmp_path, client_id=77) as first, \
            provider(gateway_sim, tmp_path, client_id=77) as second:
        first.connect()
        accounts = second.connect()
        assert accounts == ["DU1234567"]
        assert second.client_id != 77 and first.client_id == 77
        assert first.connected and second.connected


@pytest.mark.slow
def test_no_pacing_violation_under_enforcement_on_a_virtual_clock(gateway_sim_factory,
                                                                   tmp_path):
    """IB's real windows (60 requests per 10 min, ...) enforced by the simulator on a clock
    that moves only when the client waits: 72 requests must wait out the 10-minute window."""
    clock = VirtualClock()
    sim = gateway_sim_factory(data="synthetic", pacing=True, pacing_clock=clock)
    symbols = add_symbols(sim, 9)
    with provider(sim, tmp_path, max_retries=0) as p:
        use_virtual_clock(p.history, clock)
        clock.settled = history_settled(sim, p.history)
        frames = p.get_range_data(symbols, "2016-01-04", "2023-12-29")
        stats = p.stats
    assert stats.pacing_violations == 0 and stats.retries == 0
    assert len(hist_requests(sim)) == 9 * 8 == stats.requests  # > 60: the window was waited
    window = 600 * 1.02 + 1.0  # for_gateway(1.0)'s 10-minute window with its margin
    assert window <= clock() < 2 * window
    # the clock moves only by the pacer's sleeps: their sum is the wait the stats report
    assert stats.pacing_wait == pytest.approx(sum(clock.sleeps)) and stats.pacing_wait >= clock()
    for sym in symbols:
        truth = sim_daily(sim, sym).loc["2016-01-04":"2023-12-29"]
        assert len(frames[sym]) == len(truth) == 2012  # XNYS sessions 2016-01-04..2023-12-29


def test_pacing_violations_are_retried_with_backoff(gateway_sim_factory, tmp_path):
    clock = VirtualClock()
    sim = gateway_sim_factory(data="synthetic", pacing=True, pacing_clock=clock)
    with provider(sim, tmp_path, backoff=1.0) as p:
        # IB's windows at the gateway, a client-side pacer 1000x too loose (6 per contract per
        # 52 ms): 6 requests at t=0, the 7th at 0.052 s breaks IB's 6 per contract per 2 s and
        # gets 162, again after the 1 s back-off, and is accepted after 2 s more (t=3.052)
        use_virtual_clock(p.history, clock, scale=0.001)
        clock.settled = history_settled(sim, p.history)
        frame = p.get_range_data(["SPY"], "2014-01-02", "2023-12-29")["SPY"]
        stats = p.stats
    gap = 2.0 * 0.001 * 1.02 + 0.05  # the loose pacer's per-contract window
    assert clock.sleeps == pytest.approx([gap, 1.0, 2.0])
    assert clock() == pytest.approx(gap + 3.0)
    assert stats.pacing_violations == 2 and stats.retries == 2
    assert len(hist_requests(sim)) == 10 + 2 == stats.requests
    truth = sim_daily(sim, "SPY").loc["2014-01-02":"2023-12-29"]
    assert frame.index.equals(pd.DatetimeIndex(truth.index, name="datetime"))


@pytest.mark.slow
def test_a_request_without_answer_is_retried_after_the_timeout(gateway_sim, tmp_path):
    gateway_sim.drop_replies(20, 1)  # the first reqHistoricalData never gets an answer
    # pacing_scale: the retry is an identical request, which IB wants 15 s apart
    with provider(gateway_sim, tmp_path, timeout=2.0, pacing_scale=0.01) as p:
        frame = p.get_historical_data("SPY", "1 M", "1 day", end="2023-12-29")
        assert p.stats.timeouts == 1 and p.stats.retries == 1
    assert len(frame) == 21
    assert len(hist_requests(gateway_sim)) == 2


def test_connectivity_loss_1100_holds_and_retries(gateway_sim, tmp_path):
    gateway_sim.drop_replies(20, 1)  # the first request stays unanswered: in flight at the loss
    seen = []

    def lose_and_restore():
        gateway_sim.wait_for_request("reqHistoricalData", timeout=HANG)
        gateway_sim.connectivity_lost()
        poll_until(lambda: 1100 in seen, HANG, "the client to see 1100")
        held.append(len(hist_requests(gateway_sim)))
        gateway_sim.connectivity_restored()

    held: list[int] = []
    t = threading.Thread(target=lose_and_restore)
    with provider(gateway_sim, tmp_path, pacing_scale=0.01) as p:
        p.connection.on_error.append(lambda req_id, code, text: seen.append(code))
        t.start()
        frame = p.get_historical_data("SPY", "1 M", "1 day", end="2023-12-29")
        t.join(HANG)
        assert p.stats.retries == 1 and p.stats.requests == 2
    assert held == [1]  # nothing was sent while the gateway had lost IB
    assert len(frame) == 21
    assert len(hist_requests(gateway_sim)) == 2


def test_a_dropped_socket_reconnects_once_and_completes_every_symbol(gateway_sim, tmp_path):
    gateway_sim.drop_replies(20, 3)  # the three first requests stay in flight until the drop

    def drop():
        gateway_sim.wait_for_request("reqHistoricalData", 3, timeout=HANG)
        gateway_sim.drop_connections()

    t = threading.Thread(target=drop)
    with provider(gateway_sim, tmp_path, pacing_scale=0.01) as p:
        t.start()
        frames = p.get_multiple_symbols_data(["SPY", "AAPL", "NVDA"], "1 M", "1 day",
                                             end="2023-12-29")
        t.join(HANG)
        assert p.stats.reconnects == 1 and p.stats.retries >= 3
    assert {k: len(v) for k, v in frames.items()} == {"SPY": 21, "AAPL": 21, "NVDA": 21}
    assert len(gateway_sim.requests_named("startApi")) == 2


def test_unknown_symbol_names_it(gateway_sim, tmp_path):
    with provider(gateway_sim, tmp_path) as p:
        with pytest.raises(UnknownSymbolError, match="'NOSUCH'"):
            p.get_historical_data("NOSUCH", "1 M", "1 day", end="2023-12-29")
        assert p.last_attempts["NOSUCH"][-1].source == "yahoo"


def test_load_ibkr_history_for_the_backtest_chain(gateway_sim, tmp_path):
    frames = load_ibkr_history(["SPY", "QQQ"], "2023-01-03", "2023-12-29",
                               port=gateway_sim.port, client_id=21,
                               cache=BarCache(tmp_path / "c"), progress=False)
    # len(exchange_calendars.get_calendar("XNYS").sessions_in_range("2023-01-03",
    #                                                                  "2023-12-29")) == 250
    assert {k: len(v) for k, v in frames.items()} == {"SPY": 250, "QQQ": 250}
    assert frames["QQQ"].index[0] == pd.Timestamp("2023-01-03")
    assert frames["SPY"].attrs["source"] == "ibkr"
    with pytest.raises(SourceUnavailableError, match=r"nothing listens on 127\.0\.0\.1:\d+"):
        load_ibkr_history(["SPY"], "2023-01-03", "2023-12-29", port=free_port(),
                          cache=BarCache(tmp_path / "d"), progress=False)


# ------------------------------------------------------------------ snapshots


def test_real_time_price_is_the_simulated_last_trade(gateway_sim, tmp_path):
    gateway_sim.advance(minutes=30)
    quote = gateway_sim.call(gateway_sim.market.quote, gateway_sim.contracts.by_symbol("SPY"))
    with provider(gateway_sim, tmp_path) as p:
        price = p.get_real_time_price("SPY")
        assert p.last_price_delayed == {"SPY": False}
        assert p.last_sources["SPY"] == "ibkr"
    assert price == pytest.approx(quote.last)


def test_real_time_price_falls_back_to_delayed_data(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="synthetic", live_data=False)
    with provider(sim, tmp_path) as p:
        price = p.get_real_time_price("AAPL")
        assert p.last_price_delayed == {"AAPL": True}
    types = [r[3][2] for r in sim.requests_named("reqMarketDataType")]
    assert types == ["1", "3"]
    assert price == pytest.approx(sim_daily(sim, "AAPL").loc["2023-12-29", "close"])


# ------------------------------------------------------------------ fallback


def test_yfinance_serves_when_no_gateway_answers(tmp_path, monkeypatch):
    calls = []

    def fake_download(symbol, **kw):
        calls.append((symbol, kw))
        return yf_frame(symbol, ["2023-12-27", "2023-12-28", "2023-12-29"])

    monkeypatch.setattr(yfinance, "download", fake_download)
    port = free_port()
    with IBKRDataProvider(port=port, cache=BarCache(tmp_path), progress=False,
                          connect_timeout=2) as p:
        frame = p.get_historical_data("SPY", "1 W", "1 day", end="2023-12-29")
        attempts = p.last_attempts["SPY"]
        assert p.last_sources == {"SPY": "yahoo"}
    assert frame.attrs["source"] == "yahoo" and frame.attrs["adjusted"] is False
    assert list(frame["close"]) == [100.0, 101.0, 102.0]
    assert calls[0][0] == "SPY"
    assert calls[0][1]["interval"] == "1d" and calls[0][1]["auto_adjust"] is False
    assert calls[0][1]["start"] == "2023-12-23" and calls[0][1]["end"] == "2023-12-30"
    assert [a.source for a in attempts] == ["cache", "ibkr", "yahoo"]
    assert f"nothing listens on 127.0.0.1:{port}" in attempts[1].detail


def test_every_source_failing_is_one_error_naming_each(tmp_path, monkeypatch):
    def offline(symbol, **kw):
        raise ConnectionError("curl: (6) Could not resolve host: query2.finance.yahoo.com")

    monkeypatch.setattr(yfinance, "download", offline)
    port = free_port()
    with IBKRDataProvider(port=port, cache=BarCache(tmp_path), progress=False) as p:
        with pytest.raises(SourceUnavailableError) as info:
            p.get_multiple_symbols_data(["SPY", "AAPL"], "1 M", "1 day", end="2023-12-29")
        with pytest.raises(SourceUnavailableError, match="no price for 'SPY'.*ibkr.*yahoo"):
            p.get_real_time_price("SPY")
    msg = str(info.value)
    assert "SPY" in msg and "AAPL" in msg
    assert f"ibkr: nothing listens on 127.0.0.1:{port}" in msg
    assert "yahoo: yahoo unreachable" in msg and "cache: lacks" in msg


def test_fallback_off_means_ib_only(tmp_path, monkeypatch):
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: pytest.fail("yfinance called"))
    with IBKRDataProvider(port=free_port(), cache=BarCache(tmp_path), progress=False,
                          fallback_to_yfinance=False) as p:
        with pytest.raises(SourceUnavailableError, match="fallback_to_yfinance is off"):
            p.get_historical_data("SPY", "1 M", "1 day", end="2023-12-29")


def test_a_request_beyond_yfinance_limits_says_so_in_the_chain(tmp_path, monkeypatch):
    monkeypatch.setattr(yfinance, "download", lambda *a, **k: pytest.fail("yfinance called"))
    port = free_port()
    with IBKRDataProvider(port=port, cache=BarCache(tmp_path), progress=False) as p:
        with pytest.raises(SourceUnavailableError) as info:
            p.get_historical_data("SPY", "1 Y", "5 mins", end="2023-12-29")
    msg = str(info.value)
    assert f"ibkr: nothing listens on 127.0.0.1:{port}" in msg
    assert "yahoo: yfinance serves 5m bars for the last 60 days only" in msg


def test_end_none_is_the_gateway_clock_and_only_today_is_fetched_again(gateway_sim, tmp_path):
    gateway_sim.advance(hours=2)  # 2024-01-02 11:30 New York = 16:30 UTC
    with provider(gateway_sim, tmp_path, pacing_scale=0.01) as p:
        first = p.get_historical_data("SPY", "5 D", "5 mins")
        n = len(hist_requests(gateway_sim))
        second = p.get_historical_data("SPY", "5 D", "5 mins")
    assert first.index[-1] == pd.Timestamp("2024-01-02 16:25", tz="UTC")  # last complete bar
    today = first.loc["2024-01-02"]
    assert len(today) == 24  # 09:30 .. 11:25 New York
    assert len(first.loc["2023-12-29"]) == 78
    # 5 calendar days back from now: from 2023-12-28 16:30 UTC (11:30 New York) on
    assert first.index[0] == pd.Timestamp("2023-12-28 16:30", tz="UTC")
    # the second call asks only for the day that was not complete yet, ending "now"
    assert [(r[15], r[17]) for r in hist_requests(gateway_sim)[n:]] == [
        ("20240102 16:30:00 UTC", "59400 S")]
    pd.testing.assert_frame_equal(first, second)


def test_adjusted_last_is_one_request_ending_now_and_replaces_the_cache(gateway_sim_factory,
                                                                        tmp_path):
    sim = gateway_sim_factory(data="sample", start=datetime(2018, 12, 31, 21, 30,
                                                              tzinfo=UTC))
    with provider(sim, tmp_path, pacing_scale=0.01) as p:
        first = p.get_range_data(["SPY"], "2016-01-04", "2016-12-30",
                                 what_to_show="ADJUSTED_LAST")["SPY"]
        n = len(hist_requests(sim))
        second = p.get_range_data(["SPY"], "2016-01-04", "2017-12-29",
                                  what_to_show="ADJUSTED_LAST")["SPY"]
        with pytest.raises(ConfigError, match="ADJUSTED_LAST for daily"):
            p.get_historical_data("SPY", "1 D", "5 mins", what_to_show="ADJUSTED_LAST")
    reqs = hist_requests(sim)
    # IB refuses an explicit end for ADJUSTED_LAST: endDateTime "" and whole years back
    assert [(r[15], r[17], r[19]) for r in reqs] == [("", "3 Y", "ADJUSTED_LAST"),
                                                    ("", "3 Y", "ADJUSTED_LAST")]
    assert n == 1
    assert first.attrs["adjusted"] is True and second.attrs["adjusted"] is True
    assert len(first) == 252 and len(second) == 503
    # arch's ^GSPC sample has Adj Close == Close (a price index): SPY = ^GSPC / 10 either way
    assert first.loc["2016-01-04", "close"] == pytest.approx(201.266003)
    pd.testing.assert_frame_equal(first, second.loc[:"2016-12-30"], check_freq=False)
