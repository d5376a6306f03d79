"""A stream run with the operator on (issue #20, done-when): through the real ib_async client
and the gateway simulator, ``/metrics`` counts match the journal's orders and fills,
``/healthz`` turns degraded when the simulator drops the connection and ok after the reconnect,
a fill's alert reaches a loopback receiver through Apprise's JSON notifier, and the status
page, loaded in headless Chromium, shows the positions and orders the journal has."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request

import pytest
from helpers.browser import CHROMIUM, QUIET, need_browser
from helpers.live import Flipper, wait_for
from helpers.receiver import Receiver
from helpers.sim import stream_config

from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner
from bt_ibkr.ops.alerts import Alerter
from bt_ibkr.ops.operator import Operator


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.mark.slow
def test_stream_run_serves_status_metrics_health_and_alerts(gateway_sim_factory, tmp_path,
                                                             receiver):
    sim = gateway_sim_factory(data="sample")
    Flipper.last_bar = None
    cfg = stream_config(tmp_path, sim.port, **{"connection.timeout": 2.0})
    operator = Operator(Alerter([receiver.url]))
    url = operator.serve("127.0.0.1", 0, tick_every=3600)
    runner = LiveRunner(cfg, strategy=Flipper, max_runtime=60, reconnect_backoff_max=1.0,
                        operator=operator)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("res", runner.run()), daemon=True)
    thread.start()
    try:
        def trade(bars: int) -> None:
            for _ in range(bars):
                end = sim.advance(seconds=5).replace(tzinfo=None)
                wait_for(lambda end=end: Flipper.last_bar is not None and Flipper.last_bar >= end,
                         30, f"the bar ending {end} at the strategy")

        sim.wait_for_request("reqRealTimeBars", timeout=20)
        trade(7)  # two orders: buy 10, then sell 10 ... (every 3rd live bar)
        wait_for(lambda: operator.status.fills >= 2, 30, "two fills counted")
        assert _get(url + "/healthz") == (200, "ok\n")

        # /metrics against the journal (read before and after: a fill in flight can land
        # between the two; then look again)
        def journal_now():
            with Journal(tmp_path / "journal.sqlite") as j:
                return (sorted((r.order_ref, r.status) for r in j.intents()), j.fills(),
                        j.position_from_fills("SPY"))

        for _ in range(10):
            before = journal_now()
            code, text = _get(url + "/metrics")
            if journal_now() == before:
                break
        assert code == 200
        _, fills, position = before
        states: dict[str, int] = {}
        for _ref, status in before[0]:
            states[status] = states.get(status, 0) + 1
        assert _metric(text, "bt_ibkr_fills_total") == len(fills) >= 2
        for state, n in states.items():
            assert _metric(text, "bt_ibkr_orders", f'{{state="{state}"}}') == n
        assert _metric(text, "bt_ibkr_position", '{symbol="SPY"}') == position
        assert _metric(text, "bt_ibkr_connected") == 1.0
        assert _metric(text, "bt_ibkr_bar_to_order_seconds_count") >= 2

        # a fill's alert reached the receiver through Apprise
        bodies = receiver.wait_for(2)
        titles = [b["title"] for b in bodies]
        assert any(t.startswith("bt_ibkr: BUY 10 SPY @ ") for t in titles), titles

        # health: degraded while the gateway is away, ok after the reconnect
        sim.restart(rollback_ids=False, downtime=2.0)
        wait_for(lambda: _get(url + "/healthz")[0] == 503, 30, "/healthz degraded")
        assert _get(url + "/healthz")[1].startswith("degraded: disconnected")
        sim.wait_for_request("reqRealTimeBars", count=2, timeout=30)
        wait_for(lambda: _get(url + "/healthz") == (200, "ok\n"), 30, "/healthz ok again")
        trade(3)

        # the page in a real browser shows what the journal has (read before and after the
        # page: an order in flight can change between the two; then look again)
        sync_playwright = need_browser()

        def journal_state():
            with Journal(tmp_path / "journal.sqlite") as j:
                return (j.position_from_fills("SPY"),
                        sorted(r.order_ref for r in j.open_intents()))

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=QUIET)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                for _ in range(10):
                    before = journal_state()
                    page.goto(url + "/")
                    rows = page.locator("table.positions tbody tr").all_inner_texts()
                    orders = page.locator("table.orders tbody tr").all_inner_texts()
                    if journal_state() == before:
                        break
                position, working = before
                assert errors == []
                assert page.locator("#health").inner_text() == "ok"
                shown = {r.split("\t")[0]: float(r.split("\t")[1]) for r in rows}
                assert shown == ({"SPY": position} if position else {})
                assert sorted(r.split("\t")[0] for r in orders) == working
                assert page.locator("table.fills tbody tr").count() >= 2
            finally:
                browser.close()
    finally:
        runner.stop("test")
        thread.join(30)
        operator.close()
    assert not thread.is_alive()
