"""The service over two simulated weeks with a holiday and a half-day, with real daily runs
through the real client against the gateway simulator (issue #20, done-when): exactly one
decision per exchange session, on that session's bar, at the close + 5 minutes (the half-day
closes early), and a crash between a run and its record never trades a session twice.

The service's clock is the simulator's: waiting advances the simulated market (no sleeps)."""

from __future__ import annotations

import collections
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers.live import BuyOneOnDecision, make_config

from bt_ibkr.calendars import sessions_between
from bt_ibkr.live.runner import run_live
from bt_ibkr.ops.schedule import SessionSchedule, SessionService
from bt_ibkr.ops.service_record import ServiceRecord

NY = ZoneInfo("America/New_York")


class Crash(Exception):
    pass


def _refs_by_day(sim) -> collections.Counter:
    orders = sim.broker.open_orders() + sim.broker.completed_orders()
    return collections.Counter(o.spec.orderRef.split(":")[-2][:8] for o in orders)


def _service(sim, cfg, end: datetime, record: ServiceRecord, decided_at: dict,
             crash_on: date | None = None) -> SessionService:
    def run_session(session):
        decided_at[session] = decided_at.get(session, []) + [sim.now()]
        # the market order fills at the next open: the run leaves it working (journaled) after
        # a short wait, as the service does after its SERVICE_MAX_RUNTIME
        return run_live(cfg, strategy=BuyOneOnDecision, max_runtime=2).stopped_by

    def mark(session):
        if session == crash_on:
            raise Crash(f"killed after deciding {session}, before recording it")
        record.mark(session)

    def wait(seconds: float) -> bool:
        sim.advance(seconds=min(seconds, (end - sim.now()).total_seconds()))
        return sim.now() >= end

    return SessionService(schedule=SessionSchedule(), run_session=run_session,
                          decided=record.decided, mark_decided=mark,
                          clock=lambda: sim.now().astimezone(UTC), wait=wait)


@pytest.mark.slow
def test_two_weeks_one_decision_per_session_and_a_crash_trades_nothing_twice(
        gateway_sim_factory, tmp_path):
    start = datetime(2017, 6, 26, 9, 0, tzinfo=NY)
    end = datetime(2017, 7, 8, 12, 0, tzinfo=NY)
    sim = gateway_sim_factory(data="sample", start=start)
    cfg = make_config(tmp_path, sim.port)
    record = ServiceRecord(cfg.paths.journal)
    record.mark(date(2017, 6, 23))  # last week's Friday was decided then
    decided_at: dict = {}
    with pytest.raises(Crash):  # the process dies right after deciding July 3
        _service(sim, cfg, end, record, decided_at, crash_on=date(2017, 7, 3)).run()
    _service(sim, cfg, end, record, decided_at).run()  # restarted: catches up, goes on

    sessions = sessions_between(date(2017, 6, 26), date(2017, 7, 7))
    assert date(2017, 7, 4) not in sessions and len(sessions) == 9  # Independence Day
    assert sorted(decided_at) == sessions
    # the crash made July 3 run twice (before and after the restart), every other session once
    assert {s: len(t) for s, t in decided_at.items()} == {
        s: (2 if s == date(2017, 7, 3) else 1) for s in sessions}
    # at the close + 5 minutes; July 3 closes at 13:00 (a half-day)
    first = {s: t[0].astimezone(NY) for s, t in decided_at.items()}
    assert first[date(2017, 7, 3)].strftime("%H:%M") == "13:05"
    assert first[date(2017, 6, 28)].strftime("%H:%M") == "16:05"
    # exactly one order per session at the gateway, on that session's bar: the second run of
    # July 3 found its orderRef in the journal and sent nothing
    by_day = _refs_by_day(sim)
    assert by_day == {s.strftime("%Y%m%d"): 1 for s in sessions}
    assert all(record.decided(s) for s in sessions)
    assert decided_at[date(2017, 7, 3)][1] - decided_at[date(2017, 7, 3)][0] < timedelta(
        minutes=1)


def test_a_simulated_service_marks_its_sessions_in_the_simulated_journal(tmp_path):
    """``--service --simulate`` records decided sessions beside the simulated runs' journal:
    a real service started later must not find today marked decided by a simulation."""
    from bt_ibkr.live.config import LiveConfig
    from bt_ibkr.live.simulator import SIM_JOURNAL
    from examples.live import service_journal

    config = LiveConfig()
    real = config.paths.journal
    assert service_journal(config, simulate=False) == real
    simulated = service_journal(config, simulate=True)
    assert simulated == SIM_JOURNAL != real
    record = ServiceRecord(tmp_path / simulated)
    record.mark(date(2024, 3, 1))
    assert record.decided(date(2024, 3, 1))
    assert not ServiceRecord(tmp_path / real).decided(date(2024, 3, 1))
    # a journal the user named is theirs in both modes
    named = replace(config, paths=replace(config.paths, journal=tmp_path / "mine.sqlite"))
    assert service_journal(named, simulate=True) == tmp_path / "mine.sqlite"
