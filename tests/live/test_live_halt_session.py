"""The daily-loss halt belongs to the exchange session in which the loss happened (issue 18,
point 5). A stream run started at 09:29:40 New York (before the open) halts inside the 09:30
session; the halt and the start-of-day equity are filed under that session, not the one
before, so a restart a few seconds later finds the halt and sends no buy. Through the real
client and the gateway simulator, on its clock."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from helpers.live import Flipper, wait_for
from helpers.sim import stream_config

from bt_ibkr.calendars import risk_session
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner

NY = ZoneInfo("America/New_York")


def test_the_session_of_a_moment():
    s = lambda *a: risk_session(datetime(*a, tzinfo=NY))  # noqa: E731
    assert s(2017, 1, 3, 9, 29, 40) == date(2017, 1, 3)  # before the open: the coming one
    assert s(2017, 1, 3, 9, 30, 10) == date(2017, 1, 3)
    assert s(2017, 1, 3, 16, 30) == date(2017, 1, 4)  # after the close: the next one
    assert s(2017, 1, 7, 12, 0) == date(2017, 1, 9)  # a Saturday
    assert s(2017, 1, 16, 12, 0) == date(2017, 1, 17)  # Martin Luther King Jr. Day
    assert s(2017, 11, 24, 13, 30) == date(2017, 11, 27)  # after a half-day's 13:00 close


def _run(cfg, out: dict, key: str) -> LiveRunner:
    runner = LiveRunner(cfg, strategy=Flipper, max_runtime=60, reconnect_backoff_max=1.0)
    t = threading.Thread(target=lambda: out.setdefault(key, runner.run()), daemon=True)
    t.start()
    out[key + "_thread"] = t
    return runner


def _trade(sim, bars: int) -> None:
    for _ in range(bars):
        end = sim.advance(seconds=5).replace(tzinfo=None)
        wait_for(lambda end=end: Flipper.last_bar is not None and Flipper.last_bar >= end,
                 30, f"the bar ending {end}")


@pytest.mark.slow
def test_a_halt_inside_the_session_holds_for_a_restart_seconds_later(gateway_sim_factory,
                                                                      tmp_path):
    sim = gateway_sim_factory(data="sample", start=datetime(2017, 1, 3, 9, 29, 40, tzinfo=NY))
    Flipper.last_bar = None
    cfg = stream_config(tmp_path, sim.port, **{
        "connection.timeout": 2.0,
        # any loss halts: the first buy's commission is one
        "risk.max_daily_loss": 1e-9})
    out: dict = {}
    runner = _run(cfg, out, "first")
    sim.wait_for_request("reqRealTimeBars", timeout=30)
    sim.advance(seconds=20)  # the open: the started-before-the-open run sees its first bars
    _trade(sim, 12)  # buy, sell, then the next buy meets the halt
    runner.stop("test")
    out["first_thread"].join(30)
    first = out["first"]
    assert first.halted
    halt_time = sim.now().astimezone(NY)
    assert halt_time.date() == date(2017, 1, 3) and halt_time.hour == 9
    with Journal(cfg.paths.journal) as j:
        halts = [e["detail"] for e in j.events("halt")]
        starts = [e["detail"]["date"] for e in j.events("day_start")]
        assert [h["day"] for h in halts] == ["2017-01-03"]
        assert starts == ["2017-01-03"]
    orders_before = len(sim.broker.completed_orders() + sim.broker.open_orders())

    Flipper.last_bar = None
    runner = _run(cfg, out, "second")  # a restart in the same session
    sim.wait_for_request("reqRealTimeBars", count=2, timeout=30)
    _trade(sim, 6)
    runner.stop("test")
    out["second_thread"].join(30)
    second = out["second"]
    assert second.halted
    assert all(o["status"] == "refused" for o in second.orders if o["side"] == "BUY")
    buys_after = [o for o in sim.broker.completed_orders() + sim.broker.open_orders()]
    assert len(buys_after) == orders_before  # nothing more reached the gateway
    assert sim.now().astimezone(UTC).date() == date(2017, 1, 3)


def test_lift_halt_without_a_halt_says_so(gateway_sim_factory, tmp_path):
    from helpers.live import make_config

    from bt_ibkr.live.runner import run_live

    sim = gateway_sim_factory(data="sample")
    lines: list[str] = []
    run_live(make_config(tmp_path, sim.port), max_runtime=60, lift_halt=True,
             progress=lines.append)
    assert ("--lift-halt: no daily-loss halt in force for session 2017-01-03: nothing to lift"
            in lines)
