"""Faults of the gateway a daily run must survive with one clear line and the right exit code.

Each test runs the real CLI (``python -m examples.live``) as a subprocess against a GatewaySim in
this process whose fault API makes the gateway misbehave: stale or future-stamped bars, a NaN or
negative bar, no reply to the history / executions / time request, a rejected order. The
elapsed-time assertions are hang guards (max-runtime + 20 s), not speed limits.
"""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from helpers.live import assert_one_line_end, audit, run_cli
from helpers.sim import our_ref

from bt_ibkr.live.journal import Journal

NY = ZoneInfo("America/New_York")
# message ids of the requests (TWS API): reqHistoricalData, reqExecutions, reqCurrentTime
REQ_HISTORICAL, REQ_EXECUTIONS, REQ_CURRENT_TIME = 20, 7, 49


def run_end(tmp_path) -> dict:
    ends = [r for r in audit(tmp_path) if r.get("kind") == "run" and r.get("event") == "end"]
    assert ends, "no 'run end' audit record"
    return ends[-1]


# ------------------------------------------------------------------------ item 5: freshness
@pytest.mark.slow
def test_stale_data_is_not_traded_exit_4_naming_symbol_bar_and_expected_date(
        gateway_sim_factory, tmp_path):
    """Sample prices end 2018-12-31; the gateway's clock is six weeks later."""
    sim = gateway_sim_factory(data="sample", start=datetime(2019, 2, 12, 10, 0, tzinfo=NY))
    code, err, _ = run_cli(tmp_path, sim)
    assert code == 4, err
    last = assert_one_line_end(err, code, "[live] !! ")
    assert "SPY" in last and "2018-12-31" in last and "2019-02-11" in last, last
    assert "stale" in last
    assert not sim.broker.open_orders() + sim.broker.completed_orders(), "stale data was traded"
    assert "StaleDataError" in run_end(tmp_path)["error"]


@pytest.mark.slow
def test_a_bar_stamped_in_the_future_is_reported_not_dropped(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")  # clock 2017-01-03 09:30 New York
    sim.add_future_bar("SPY", days=7)  # a copy of 2016-12-30's bar stamped 2017-01-06
    code, err, _ = run_cli(tmp_path, sim)
    assert code == 4, err
    last = assert_one_line_end(err, code, "[live] !! ")
    assert "SPY" in last and "2017-01-06" in last and "clock" in last, last
    assert not sim.broker.open_orders() + sim.broker.completed_orders()


# ------------------------------------------------------------------------ item 7: bounded waits
@pytest.mark.slow
def test_no_reply_to_history_ends_within_max_runtime_exit_3(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")
    sim.drop_replies(REQ_HISTORICAL, n=1000)
    code, err, elapsed = run_cli(tmp_path, sim, max_runtime=15)
    assert code == 3, err
    last = assert_one_line_end(err, code, "error: ")
    assert "history" in last and "SPY" in last, last
    assert elapsed < 15 + 20, f"hang guard: {elapsed:.0f}s"
    assert "GatewayTimeoutError" in run_end(tmp_path)["error"]


@pytest.mark.slow
@pytest.mark.parametrize("values, says", [({"close": float("nan")}, "NaN"),
                                          ({"low": -1.0}, "not a positive price")])
def test_a_nan_or_negative_bar_is_rejected_naming_symbol_and_time(gateway_sim_factory, tmp_path,
                                                                  values, says):
    sim = gateway_sim_factory(data="sample")
    sim.corrupt_newest_bar("SPY", **values)
    code, err, elapsed = run_cli(tmp_path, sim, max_runtime=20)
    assert code == 4, err
    last = assert_one_line_end(err, code, "[live] !! ")
    assert "SPY" in last and "2016-12-30" in last and says in last, last
    assert elapsed < 20 + 20, f"hang guard: {elapsed:.0f}s"
    assert not sim.broker.open_orders() + sim.broker.completed_orders()


# ------------------------------------------------------------------------ item 8: exit codes
@pytest.mark.slow
@pytest.mark.parametrize("msg_id, says", [(REQ_EXECUTIONS, "reqExecutions"),
                                          (REQ_CURRENT_TIME, "time request")])
def test_no_reply_to_executions_or_time_exits_3_in_one_line(gateway_sim_factory, tmp_path,
                                                            msg_id, says):
    sim = gateway_sim_factory(data="sample")
    sim.drop_replies(msg_id, n=1000)
    code, err, elapsed = run_cli(tmp_path, sim, max_runtime=15)
    assert code == 3, err
    last = assert_one_line_end(err, code, "error: ")
    assert says in last, last
    assert elapsed < 15 + 20, f"hang guard: {elapsed:.0f}s"
    assert run_end(tmp_path)["stopped_by"] == "error"


@pytest.mark.slow
def test_a_rejected_order_is_journaled_audited_and_needs_attention(gateway_sim_factory,
                                                                   tmp_path):
    sim = gateway_sim_factory(data="sample")
    sim.reject_next_order(201, "Order rejected - reason:YOUR ORDER IS NOT ACCEPTED. MARGIN")
    code, err, _ = run_cli(tmp_path, sim)
    assert code == 4, err
    ref = our_ref(tmp_path / "journal.sqlite")
    last = assert_one_line_end(err, code, f"[live] !! REJECTED order {ref}: ")
    assert "IB error 201" in last and "MARGIN" in last, last
    summary = json.loads((tmp_path / "run.json").read_text())
    (order,) = summary["orders"]
    assert order["status"] == "rejected" and "MARGIN" in order["reason"]
    with Journal(tmp_path / "journal.sqlite") as j:
        assert j.get(order["orderRef"]).status == "rejected"
        events = [e for e in j.events("status") if e["detail"].get("to") == "rejected"]
    assert events and "MARGIN" in events[0]["detail"]["reason"]
    rejected = [r for r in audit(tmp_path) if r.get("kind") == "order"
                and r.get("status") == "rejected"]
    assert rejected and rejected[0]["code"] == 201 and "MARGIN" in rejected[0]["reason"]


def test_console_log_lines_carry_no_traceback_the_log_file_does(tmp_path, monkeypatch, capsys):
    import logging

    from bt_ibkr.logs import setup_logging

    monkeypatch.setenv("BT_IBKR_LOG_DIR", str(tmp_path / "logs"))
    path = setup_logging("faults")
    try:
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            logging.getLogger("bt_ibkr.test").exception("internal error")
    finally:
        for h in [h for h in logging.getLogger().handlers if getattr(h, "_bt_ibkr", None)]:
            logging.getLogger().removeHandler(h)
            h.close()
    err = capsys.readouterr().err
    assert err == "ERROR bt_ibkr.test: internal error\n"
    assert "Traceback" in path.read_text() and "ZeroDivisionError: boom" in path.read_text()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 0.0, -5.0])
def test_the_runner_refuses_a_non_finite_or_non_positive_max_runtime(tmp_path, value):
    from bt_ibkr.errors import ConfigError
    from bt_ibkr.live.config import load_config
    from bt_ibkr.live.runner import LiveRunner

    with pytest.raises(ConfigError, match="max_runtime"):
        LiveRunner(load_config(None, overrides={"mode": "paper"}), max_runtime=value)
