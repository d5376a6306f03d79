"""IB historical pacing and max-duration chunking."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import backtrader as bt
import pytest

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.bars import MAX_DURATION, bar_size
from bt_ibkr.ib.historical import chunk_range
from bt_ibkr.ib.pacing import HistoricalPacer, HistRequest


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _req(i=0, contract="AAPL", what="TRADES"):
    return HistRequest(contract, f"end{i}", "1 D", "1 min", what, False)


def test_sixty_requests_per_ten_minutes():
    clock = FakeClock()
    p = HistoricalPacer(clock=clock, per_contract=10**6)
    for i in range(60):
        assert p.delay(_req(i, contract=f"C{i}")) == 0.0
        p.record(_req(i, contract=f"C{i}"))
        clock.t += 1.0
    # the 61st must wait until the first leaves the 600 s window: sent at 1000, now 1060
    assert p.delay(_req(99, contract="Z")) == pytest.approx(540.0)
    clock.t += 540.0
    assert p.delay(_req(99, contract="Z")) == 0.0


def test_identical_request_waits_fifteen_seconds():
    clock = FakeClock()
    p = HistoricalPacer(clock=clock)
    p.record(_req(1))
    clock.t += 4.0
    assert p.delay(_req(1)) == pytest.approx(11.0)
    assert p.delay(_req(2)) == 0.0  # a different end date is not identical
    clock.t += 11.0
    assert p.delay(_req(1)) == 0.0


def test_six_per_contract_per_two_seconds():
    clock = FakeClock()
    p = HistoricalPacer(clock=clock)
    for i in range(6):
        p.record(_req(i))
        clock.t += 0.1
    assert p.delay(_req(7)) == pytest.approx(2.0 - 0.6)
    assert p.delay(_req(7, contract="MSFT")) == 0.0
    assert p.delay(_req(7, what="BID")) == 0.0


def test_acquire_really_waits_in_the_loop():
    p = HistoricalPacer(per_contract=2, per_contract_window=0.3)

    async def run():
        waits = [await p.acquire(_req(i)) for i in range(3)]
        return waits

    waits = asyncio.run(run())
    assert waits[0] == 0.0 and waits[1] == 0.0
    assert 0.2 < waits[2] <= 0.31


@pytest.mark.parametrize(
    "tf, comp, expected",
    [
        (bt.TimeFrame.Seconds, 5, "5 secs"),
        (bt.TimeFrame.Minutes, 1, "1 min"),
        (bt.TimeFrame.Minutes, 15, "15 mins"),
        (bt.TimeFrame.Minutes, 60, "1 hour"),
        (bt.TimeFrame.Minutes, 240, "4 hours"),
        (bt.TimeFrame.Days, 1, "1 day"),
        (bt.TimeFrame.Weeks, 1, "1 week"),
        (bt.TimeFrame.Months, 1, "1 month"),
    ],
)
def test_bar_size_from_backtrader_timeframe(tf, comp, expected):
    assert bar_size(tf, comp) == expected


def test_unsupported_bar_size_is_a_clear_error():
    with pytest.raises(ConfigError, match="7"):
        bar_size(bt.TimeFrame.Minutes, 7)


def test_chunks_respect_max_duration_and_cover_the_range():
    start = datetime(2020, 1, 1)
    end = datetime(2023, 7, 1)
    chunks = chunk_range(start, end, "1 day")
    assert chunks[0].end == end and chunks[-1].start == start
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a.start == b.end
    for c in chunks:
        assert (c.end - c.start).total_seconds() <= MAX_DURATION["1 day"]
    assert len(chunks) == 4  # 3.5 years in <= 365-day chunks, counted from the start
    assert [c.duration for c in chunks[1:]] == ["365 D"] * 3 and chunks[0].duration == "182 D"


def test_intraday_chunks_use_seconds_and_days():
    end = datetime(2024, 1, 10, 16)
    chunks = chunk_range(end - timedelta(hours=5), end, "5 secs")
    assert [c.duration for c in chunks] == ["3600 S", "7200 S", "7200 S"]  # newest first
    chunks = chunk_range(end - timedelta(days=3, hours=1), end, "1 min")
    assert [c.duration for c in chunks] == ["3600 S"] + ["86400 S"] * 3


def test_chunk_range_rejects_bad_input():
    with pytest.raises(ConfigError, match="empty"):
        chunk_range(datetime(2024, 1, 2), datetime(2024, 1, 1), "1 day")
    with pytest.raises(ConfigError, match="7 mins"):
        chunk_range(datetime(2024, 1, 1), datetime(2024, 1, 2), "7 mins")


def test_daily_chunks_are_cut_between_days_not_inside_a_session():
    end = datetime(2024, 1, 2, 14, 30, 1)  # mid-morning UTC: a session may be open
    chunks = chunk_range(datetime(2021, 6, 1), end, "1 day")
    assert chunks[0].end == end
    for c in chunks[1:]:
        assert c.end.time() == datetime.min.time()  # 00:00 UTC, after every US close
    assert chunks[-1].start == datetime(2021, 6, 1)
