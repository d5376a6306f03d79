"""Run a daily Strategy as a service on the exchange's calendar: one decision per session.

:class:`SessionSchedule` says when a session's decision is due: at ``offset`` from the
session's close (or open), as exchange_calendars gives them, so holidays have no decision and
half-days decide at their early close. :class:`SessionService` is the loop: it sleeps until the
next decision time, runs the session (``run_session(session)``), records it as decided, and
tells systemd it is alive in between (:class:`~bt_ibkr.ops.systemd.SystemdNotifier`).

After a crash or a reboot the service catches up: a session whose decision time has passed and
that was not decided is run at once, as long as the next session has not opened (its bar is
then still the newest, and its orders can still go out before that open); older ones are
skipped and reported. Deciding a session twice cannot trade it twice: the daily run's orderRefs
are deterministic from the bar (the journal finds them and sends nothing), which the tests show
by running a session again after a crash between the run and its record.

Time comes from ``clock`` and passes in ``wait``: tests drive two weeks of sessions with their
own clock, without sleeping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd

from bt_ibkr.calendars import DEFAULT_CALENDAR, get_calendar
from bt_ibkr.errors import ConfigError

__all__ = ["SessionSchedule", "SessionService"]

log = logging.getLogger("bt_ibkr.service")


def _utc(ts) -> datetime:
    return pd.Timestamp(ts).tz_convert(UTC).to_pydatetime()


@dataclass(frozen=True)
class SessionSchedule:
    """When each exchange session's decision is due.

    Args:
        calendar: exchange_calendars code (XNYS, XNAS, CMES, XLON ...).
        anchor: ``"close"`` (default: decide on the session's completed daily bar) or
            ``"open"``.
        offset: time after the anchor (negative: before it), e.g. ``timedelta(minutes=5)``.
    """

    calendar: str = DEFAULT_CALENDAR
    anchor: str = "close"
    offset: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.anchor not in ("close", "open"):
            raise ConfigError(f"schedule anchor {self.anchor!r}: use 'close' or 'open'")
        if abs(self.offset) > timedelta(hours=12):
            raise ConfigError(f"schedule offset {self.offset}: at most 12 hours from the "
                              f"{self.anchor}")
        get_calendar(self.calendar)  # ConfigError for an unknown calendar

    def decision_time(self, session: date) -> datetime:
        """Return the UTC time ``session``'s decision is due (its close or open + offset)."""
        cal = get_calendar(self.calendar)
        ts = pd.Timestamp(session)
        edge = cal.session_close(ts) if self.anchor == "close" else cal.session_open(ts)
        return _utc(edge) + self.offset

    def _session_near(self, now: datetime, direction: str) -> date:
        cal = get_calendar(self.calendar)
        ts = pd.Timestamp(now).tz_convert(UTC).floor("min")
        return cal.minute_to_session(ts, direction=direction).date()

    def next_session(self, session: date) -> date:
        """Return the session after ``session``."""
        return get_calendar(self.calendar).next_session(pd.Timestamp(session)).date()

    def previous_session(self, session: date) -> date:
        """Return the session before ``session``."""
        return get_calendar(self.calendar).previous_session(pd.Timestamp(session)).date()

    def last_due(self, now: datetime) -> date | None:
        """Return the newest session whose decision time is at or before ``now``, or None."""
        session = self._session_near(now, "previous")
        for _ in range(3):
            if self.decision_time(session) <= now:
                return session
            session = self.previous_session(session)
        return None

    def next_decision(self, now: datetime) -> tuple[date, datetime]:
        """Return the first (session, decision time) strictly after ``now``."""
        session = self._session_near(now, "previous")
        while self.decision_time(session) <= now:
            session = self.next_session(session)
        return session, self.decision_time(session)

    def catch_up_until(self, session: date) -> datetime:
        """Return the last moment a missed decision of ``session`` may still run: the open of
        the next session."""
        cal = get_calendar(self.calendar)
        return _utc(cal.session_open(pd.Timestamp(self.next_session(session))))


@dataclass
class SessionService:
    """The service loop (see the module docstring).

    Args:
        schedule: when decisions are due.
        run_session: decides one session (the daily run); its return value is logged. An
            exception is reported (``alert``) and the service goes on with the next session.
        decided: True when a session was already decided (the journal's record).
        mark_decided: records that a session was decided.
        clock: the current UTC time (tz-aware).
        wait: waits up to the given seconds; returns True when the service must stop.
        notifier: systemd notifier (READY/WATCHDOG/STATUS); None: none.
        alert: called with (kind, text) for things a person should know.
        say: one status line per step.
    """

    schedule: SessionSchedule
    run_session: Callable[[date], Any]
    decided: Callable[[date], bool]
    mark_decided: Callable[[date], None]
    clock: Callable[[], datetime]
    wait: Callable[[float], bool]
    notifier: Any = None
    alert: Callable[[str, str], None] | None = None
    say: Callable[[str], None] = lambda msg: None
    max_sessions: int | None = None
    retry_after: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        self._failed_at: dict[date, datetime] = {}

    def _alert(self, kind: str, text: str) -> None:
        if self.alert is not None:
            self.alert(kind, text)

    def due(self, now: datetime) -> date | None:
        """Return the session to decide at ``now``, or None. A passed, undecided session is
        due until the next session opens; a session missed longer than that is reported
        once and skipped."""
        session = self.schedule.last_due(now)
        if session is None or self.decided(session):
            return None
        failed = self._failed_at.get(session)
        if failed is not None and now - failed < self.retry_after:
            return None  # failed a moment ago: retried after retry_after
        if now >= self.schedule.catch_up_until(session):
            self._alert("missed_session", f"session {session} was not decided (the service was "
                        f"down until {now:%Y-%m-%d %H:%M} UTC, after the next session opened); "
                        "skipped")
            self.mark_decided(session)  # reported once; never traded late
            return None
        return session

    def run(self) -> int:
        """Loop until ``wait`` says stop (or ``max_sessions`` were decided); return the number
        of sessions decided."""
        done = 0
        interval = getattr(self.notifier, "watchdog_interval", None)
        if self.notifier is not None:
            self.notifier.ready("waiting for the next session")
        while True:
            now = self.clock()
            session = self.due(now)
            if session is not None:
                late = now - self.schedule.decision_time(session)
                self.say(f"session {session}: deciding"
                         + (f" ({late.total_seconds() / 60:.0f} min late: catching up)"
                            if late > timedelta(minutes=1) else ""))
                try:
                    result = self.run_session(session)
                except Exception as exc:  # noqa: BLE001 - reported; the next session runs
                    log.exception("session %s failed", session)
                    self._alert("session_failed", f"session {session} failed: "
                                f"{type(exc).__name__}: {exc}")
                    self._failed_at[session] = now
                else:
                    self.mark_decided(session)
                    done += 1
                    log.info("session %s decided: %s", session, result)
                if self.max_sessions is not None and done >= self.max_sessions:
                    return done
                continue
            nxt, when = self.schedule.next_decision(now)
            retries = [t + self.retry_after for s, t in self._failed_at.items()
                       if not self.decided(s) and t + self.retry_after > now]
            if retries and min(retries) < when:
                when = min(retries)
            seconds = max((when - now).total_seconds(), 0.0)
            status = f"next decision: session {nxt} at {when:%Y-%m-%d %H:%M} UTC"
            if self.notifier is not None:
                self.notifier.watchdog(status)
            step = min(seconds, interval) if interval else seconds
            if self.wait(max(step, 0.001)):
                return done
