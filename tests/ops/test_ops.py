"""Unattended operation, the parts that stand alone (issue #20): alerts through the real
Apprise to an HTTP receiver on loopback, systemd's notify socket, and the service's exchange-
calendar schedule over two simulated weeks with a holiday and a half-day."""

from __future__ import annotations

import json
import socket
from datetime import UTC, date, datetime, timedelta

import pytest
from helpers.receiver import Receiver

from bt_ibkr.calendars import sessions_between
from bt_ibkr.errors import ConfigError
from bt_ibkr.ops.alerts import Alert, Alerter, alert_urls
from bt_ibkr.ops.schedule import SessionSchedule, SessionService
from bt_ibkr.ops.systemd import SystemdNotifier


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.slow
def test_a_fill_and_a_halt_reach_the_receiver_through_apprise(receiver):
    alerter = Alerter([receiver.url])
    try:
        assert alerter.send(Alert("fill", "BUY 10 SPY @ 501.2 (bt2:ab3cd:RAE:SPY:20261203:1)",
                                  level="success")) == "queued"
        assert alerter.send(Alert("halt", "daily-loss halt: equity -3.1% since the open",
                                  level="failure")) == "queued"
        bodies = receiver.wait_for(2)
    finally:
        alerter.close()
    assert [b["type"] for b in bodies] == ["success", "failure"]
    assert bodies[0]["title"] == "bt_ibkr: BUY 10 SPY @ 501.2 (bt2:ab3cd:RAE:SPY:20261203:1)"
    assert "daily-loss halt" in bodies[1]["message"]
    assert alerter.delivered == 2 and alerter.failed == 0


@pytest.mark.slow
def test_repeats_are_held_and_counted_then_rate_limited(receiver):
    clock = Clock()
    alerter = Alerter([receiver.url], repeat_after=600, max_per_hour=3, clock=clock)
    try:
        stale = Alert("stale_data", "SPY: no bar for 300 s")
        assert alerter.send(stale) == "queued"
        assert [alerter.send(stale) for _ in range(4)] == ["held"] * 4
        clock.t += 601
        assert alerter.send(stale) == "queued"  # says how many were held
        assert alerter.send(Alert("fill", "one")) == "queued"
        assert alerter.send(Alert("fill", "two")) == "dropped"  # 3 per hour
        clock.t += 3600
        assert alerter.send(Alert("fill", "three")) == "queued"
        bodies = receiver.wait_for(4)
    finally:
        alerter.close()
    assert len(bodies) == 4
    assert "4 more of these since the last one were held back" in bodies[1]["message"]
    outcomes = [a["outcome"] for a in alerter.recent(20)]
    assert outcomes.count("held") == 4 and outcomes.count("dropped") == 1


@pytest.mark.slow
def test_a_receiver_that_fails_never_stops_the_caller_and_the_url_is_masked(caplog):
    """The receiver answers 500: send() still returns at once, the failure is logged and the
    URL (it carries credentials) never appears in a log line."""
    bad = Receiver(status=500)
    secret_url = f"json://user:s3cr3t-token@127.0.0.1:{bad.port}/hook"
    try:
        alerter = Alerter([secret_url])
        with caplog.at_level("INFO"):
            assert alerter.send(Alert("crash", "run crashed: exit 4", level="failure")) == "queued"
            assert alerter.flush(30)
            alerter.close()
        bad.wait_for(1)
    finally:
        bad.close()
    assert alerter.failed == 1 and alerter.delivered == 0
    text = caplog.text
    assert "not delivered" in text
    assert "s3cr3t-token" not in text


def test_alert_urls_come_from_the_environment_and_bad_ones_are_named():
    assert alert_urls({"BT_IBKR_ALERT_URLS": "json://a:1/x, ntfys://topic\nmailto://u:p@h"}) == [
        "json://a:1/x", "ntfys://topic", "mailto://u:p@h"]
    with pytest.raises(ConfigError, match="BT_IBKR_ALERT_URLS: Apprise does not understand a URL "
                                          "of scheme 'nosuch'") as exc:
        Alerter(["nosuch://secret-value@host"])
    assert "secret-value" not in str(exc.value)


def test_no_url_only_logs(caplog):
    alerter = Alerter([])
    with caplog.at_level("INFO"):
        assert alerter.send(Alert("start", "run started")) == "logged"
    alerter.close()
    assert "alert [start] run started" in caplog.text


# ----------------------------------------------------------------------------------- systemd
def test_systemd_notify_reaches_the_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        n = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000000"})
        assert n.enabled and n.watchdog_interval == 10.0
        assert n.ready("waiting")
        assert sock.recv(4096).decode() == "READY=1\nSTATUS=waiting"
        assert n.watchdog()
        assert sock.recv(4096).decode() == "WATCHDOG=1"
    off = SystemdNotifier({})
    assert not off.enabled and off.ready() is False


# ----------------------------------------------------------------------------------- schedule
class SimClock:
    """A UTC clock the test moves: wait(seconds) advances it (no sleeping)."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.now = start
        self.end = end
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        return self.now >= self.end


class Journalish:
    """What the service needs from the journal: which sessions were decided."""

    def __init__(self) -> None:
        self.decided: set[date] = set()

    def mark(self, session: date) -> None:
        self.decided.add(session)


def _service(clock, journal, runs, **kw):
    def run_session(session):
        runs.append((session, clock()))
        return "ok"

    return SessionService(schedule=kw.pop("schedule", SessionSchedule()),
                          run_session=kw.pop("run_session", run_session),
                          decided=journal.decided.__contains__, mark_decided=journal.mark,
                          clock=clock, wait=clock.wait, **kw)


def test_two_weeks_with_a_holiday_and_a_half_day_decide_once_per_session():
    """2026-11-23 .. 2026-12-04 on XNYS: Thanksgiving (Nov 26) has no session, Nov 27 closes
    at 13:00 ET; a decision 5 minutes after each close, exactly once per session."""
    clock = SimClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
                     datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    runs: list[tuple[date, datetime]] = []
    journal = Journalish()
    journal.mark(date(2026, 11, 20))  # last week's Friday was decided then
    _service(clock, journal, runs).run()
    sessions = sessions_between(date(2026, 11, 23), date(2026, 12, 4))
    assert [s for s, _ in runs] == sessions
    assert date(2026, 11, 26) not in sessions and len(sessions) == 9
    when = dict(runs)
    assert when[date(2026, 11, 27)] == datetime(2026, 11, 27, 18, 5, tzinfo=UTC)  # half-day
    assert when[date(2026, 11, 25)] == datetime(2026, 11, 25, 21, 5, tzinfo=UTC)
    assert len(clock.waits) < 40  # it sleeps until the next decision, it does not poll


def test_a_reboot_catches_up_the_missed_session_once_and_skips_an_older_one():
    journal = Journalish()
    journal.mark(date(2026, 11, 30))
    alerts: list[tuple[str, str]] = []
    # down from Monday evening to Wednesday 02:00 UTC: Dec 1's decision (21:05 UTC) was missed,
    # Dec 2 has not opened yet -> Dec 1 is decided at once, late
    clock = SimClock(datetime(2026, 12, 2, 2, 0, tzinfo=UTC),
                     datetime(2026, 12, 2, 22, 0, tzinfo=UTC))
    runs: list[tuple[date, datetime]] = []
    _service(clock, journal, runs, alert=lambda k, t: alerts.append((k, t))).run()
    assert runs == [(date(2026, 12, 1), datetime(2026, 12, 2, 2, 0, tzinfo=UTC)),
                    (date(2026, 12, 2), datetime(2026, 12, 2, 21, 5, tzinfo=UTC))]
    # down past the next open: the missed session is reported and never traded late
    journal2 = Journalish()
    clock2 = SimClock(datetime(2026, 12, 2, 15, 0, tzinfo=UTC),
                      datetime(2026, 12, 2, 22, 0, tzinfo=UTC))
    runs2: list[tuple[date, datetime]] = []
    alerts2: list[tuple[str, str]] = []
    _service(clock2, journal2, runs2, alert=lambda k, t: alerts2.append((k, t))).run()
    assert [s for s, _ in runs2] == [date(2026, 12, 2)]
    assert alerts2 and alerts2[0][0] == "missed_session" and "2026-12-01" in alerts2[0][1]


def test_a_first_start_before_the_open_decides_the_newest_session():
    """Started on Monday before the open with nothing decided: Friday's bar is the newest,
    its orders can still go out before Monday's open, so Friday is decided at once."""
    clock = SimClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
                     datetime(2026, 11, 23, 13, 0, tzinfo=UTC))
    runs: list[tuple[date, datetime]] = []
    _service(clock, Journalish(), runs).run()
    assert runs == [(date(2026, 11, 20), datetime(2026, 11, 23, 12, 0, tzinfo=UTC))]


def test_a_failed_session_is_retried_not_looped_and_reported():
    journal = Journalish()
    journal.mark(date(2026, 11, 30))
    clock = SimClock(datetime(2026, 12, 1, 21, 0, tzinfo=UTC),
                     datetime(2026, 12, 1, 21, 30, tzinfo=UTC))
    tries: list[datetime] = []
    alerts: list[tuple[str, str]] = []

    def flaky(session):
        tries.append(clock())
        if len(tries) < 3:
            raise ConnectionError("gateway down")
        return "ok"

    _service(clock, journal, [], run_session=flaky,
             alert=lambda k, t: alerts.append((k, t))).run()
    assert [t - tries[0] for t in tries] == [timedelta(0), timedelta(minutes=5),
                                            timedelta(minutes=10)]
    assert date(2026, 12, 1) in journal.decided
    assert [k for k, _ in alerts] == ["session_failed", "session_failed"]


def test_schedule_rejects_bad_settings():
    with pytest.raises(ConfigError, match="anchor 'noon'"):
        SessionSchedule(anchor="noon")
    with pytest.raises(ConfigError, match="calendar 'NOPE'"):
        SessionSchedule(calendar="NOPE")
    with pytest.raises(ConfigError, match="at most 12 hours"):
        SessionSchedule(offset=timedelta(hours=13))
    opening = SessionSchedule(anchor="open", offset=timedelta(minutes=-15))
    assert opening.decision_time(date(2026, 11, 27)) == datetime(2026, 11, 27, 14, 15,
                                                                tzinfo=UTC)


# ----------------------------------------------------------------------------------- http
def _get(url: str, token: str | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token
                                 else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_healthz_metrics_and_page_follow_the_run_status():
    from bt_ibkr.ops.http import StatusServer
    from bt_ibkr.ops.status import RunStatus

    status = RunStatus(account="DU1234567", mode="paper", run_mode="stream", symbols=["SPY"],
                       connected=True, bar_seconds=5.0)
    status.bar("SPY")
    status.update(equity=100_000.0, cash=40_000.0, positions={"SPY": 120.0},
                  orders_by_state={"filled": 3, "submitted": 1},
                  working_orders=[{"orderRef": "bt2:x:RAE:SPY:1", "symbol": "SPY",
                                   "side": "BUY", "quantity": 10, "filled": 0,
                                   "status": "submitted"}])
    status.add_fill({"symbol": "SPY", "side": "BUY", "shares": 120, "price": 500.0})
    server = StatusServer(lambda: status).start()
    try:
        assert _get(server.url + "/healthz") == (200, "ok\n")
        code, text = _get(server.url + "/metrics")
        assert code == 200
        assert "bt_ibkr_connected 1.0" in text
        assert 'bt_ibkr_orders{state="submitted"} 1.0' in text
        assert 'bt_ibkr_position{symbol="SPY"} 120.0' in text
        assert "bt_ibkr_fills_total 1.0" in text and "bt_ibkr_equity 100000.0" in text
        status.update(connected=False, connection_note="gateway restart")
        code, text = _get(server.url + "/healthz")
        assert code == 503 and text == "degraded: disconnected: gateway restart\n"
        status.update(connected=True, halt="daily-loss halt: -3.2%")
        assert _get(server.url + "/healthz")[1].startswith("degraded: halted: daily-loss")
        code, page = _get(server.url + "/")
        assert code == 200 and "bt2:x:RAE:SPY:1" in page and "DU1234567" in page
        assert _get(server.url + "/nope")[0] == 404
    finally:
        server.stop()


@pytest.mark.slow
def test_a_port_off_loopback_needs_a_token():
    from bt_ibkr.ops.http import StatusServer
    from bt_ibkr.ops.status import RunStatus

    status = RunStatus(connected=True)
    with pytest.raises(ConfigError, match="BT_IBKR_HTTP_TOKEN"):
        StatusServer(lambda: status, host="0.0.0.0")
    server = StatusServer(lambda: status, host="0.0.0.0", token="t0ken").start()
    try:
        url = f"http://127.0.0.1:{server.port}"
        assert _get(url + "/healthz")[0] == 401
        assert _get(url + "/healthz", token="wrong")[0] == 401
        assert _get(url + "/healthz", token="t0ken") == (200, "ok\n")
        assert _get(url + "/healthz?token=t0ken") == (200, "ok\n")
    finally:
        server.stop()


def test_a_feed_without_bars_for_three_bar_lengths_is_stale():
    from bt_ibkr.ops.status import RunStatus, health

    status = RunStatus(connected=True, symbols=["SPY", "QQQ"], bar_seconds=60.0)
    t0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    status.bar("SPY", t0)
    status.bar("QQQ", t0 + timedelta(minutes=4))
    assert health(status, t0 + timedelta(minutes=5)).ok
    h = health(status, t0 + timedelta(minutes=6))
    assert h.reasons == ("stale feed SPY (no bar for 360 s)",)


def test_the_grafana_dashboard_asks_only_for_metrics_the_run_serves():
    import re
    from pathlib import Path

    from bt_ibkr.ops.metrics import RunMetrics
    from bt_ibkr.ops.status import RunStatus

    status = RunStatus(connected=True, symbols=["SPY"], positions={"SPY": 1.0},
                       orders_by_state={"filled": 1})
    status.bar("SPY")
    metrics = RunMetrics(lambda: status)
    metrics.bar_to_order.observe(0.002)
    metrics.journal_write.observe(0.004)
    served = set(re.findall(r"^(bt_ibkr_\w+?)(?:\{| )", metrics.render().decode(), re.M))
    dash = json.loads((Path(__file__).parents[2] / "examples/deploy/grafana-dashboard.json")
                      .read_text())
    asked = {name for p in dash["panels"] for t in p["targets"]
             for name in re.findall(r"bt_ibkr_\w+", t["expr"])}
    assert asked and asked <= served, asked - served


# ----------------------------------------------------------------------------------- operator
@pytest.mark.slow
def test_disconnects_inside_the_restart_window_are_quiet_outside_they_alert(receiver):
    """The gateway's restart window (23:40-00:10 New York): a disconnect inside it is expected
    (no alert); one outside it alerts at once; a gateway not back 10 minutes after the window
    alerts that it needs a login (2FA); the reconnect after an alert is said too."""
    from zoneinfo import ZoneInfo

    from bt_ibkr.ib.restart_window import RestartWindow
    from bt_ibkr.ops.operator import Operator

    ny = ZoneInfo("America/New_York")
    now = {"t": datetime(2026, 12, 1, 23, 45, tzinfo=ny)}
    op = Operator(Alerter([receiver.url]), restart_window=RestartWindow.parse(
        "23:40-00:10 America/New_York"), clock=lambda: now["t"])
    try:
        op.on_audit({"kind": "connection", "event": "lost"})  # inside the window
        assert op.status.expected_outage and not op.status.connected
        now["t"] = datetime(2026, 12, 2, 0, 15, tzinfo=ny)
        op.tick()  # 5 minutes after the window: not yet
        now["t"] = datetime(2026, 12, 2, 0, 21, tzinfo=ny)
        op.tick()  # 11 minutes after it: the weekly login is due
        op.tick()  # said once
        op.on_audit({"kind": "connection", "event": "reconnected"})
        now["t"] = datetime(2026, 12, 2, 14, 0, tzinfo=ny)
        op.on_audit({"kind": "connection", "event": "lost"})  # in the middle of the day
        bodies = receiver.wait_for(3)
    finally:
        op.close()
    titles = [b["title"] for b in bodies]
    assert titles[0].startswith("bt_ibkr: the gateway needs a login (2FA)")
    assert titles[1].startswith("bt_ibkr: gateway back after")
    assert titles[2] == ("bt_ibkr: lost the connection to the gateway outside its restart "
                         "window; reconnecting")
    assert len(bodies) == 3


def test_a_restart_window_that_is_not_one_is_named():
    from bt_ibkr.ib.restart_window import RestartWindow

    with pytest.raises(ConfigError, match="expected 'HH:MM-HH:MM Area/City'"):
        RestartWindow.parse("midnight")
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Base'"):
        RestartWindow.parse("23:40-00:10 Mars/Base")
    w = RestartWindow.parse("23:40-00:10")
    assert w.contains(datetime(2026, 12, 2, 5, 0, tzinfo=UTC))  # 00:00 New York
    assert not w.contains(datetime(2026, 12, 2, 5, 30, tzinfo=UTC))
