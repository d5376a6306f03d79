"""LiveRunner against the gateway simulator: journal before send, never twice, rails, records."""

from __future__ import annotations

import csv
import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import backtrader as bt
import pytest
from helpers.live import BuyOneOnDecision, make_config, sim_orders
from helpers.sim import order_status, our_ref, run_live_until

from bt_ibkr.errors import ConfigError, ConnectionFailedError
from bt_ibkr.ib.bars import timeframe_of
from bt_ibkr.live.audit import read_audit
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner, run_live
from bt_ibkr.live.safety import SafetyError


def REF_OF(tmp_path):  # noqa: N802 - RegimeAwareEnsemble's decision on the 2016-12-30 bar
    return our_ref(tmp_path / "journal.sqlite")


def sim_position(sim, symbol: str = "SPY") -> float:
    return sum(p.position for p in sim.broker.positions() if p.contract.symbol == symbol)


def audit_records(tmp_path: Path) -> list[dict]:
    out = []
    for path in sorted((tmp_path / "logs").glob("audit-*.jsonl")):
        out += read_audit(path)
    return out


def equity_rows(tmp_path: Path) -> list[dict]:
    with open(tmp_path / "equity.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_daily_run_journals_sends_fills_and_a_rerun_sends_nothing(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port)
    res = run_live(cfg, max_runtime=60)

    assert [(o["orderRef"], o["side"], o["status"]) for o in res.orders] == [
        (REF_OF(tmp_path), "BUY", "filled")]
    qty = res.orders[0]["quantity"]
    assert qty > 100  # ~98% of 1,000,000 in SPY at ~224
    assert res.account == "DU1234567" and res.stopped_by == "finished"
    assert len(sim_orders(sim, REF_OF(tmp_path))) == 1
    assert res.positions == {"SPY": sim_position(sim)} == {"SPY": qty}
    with Journal(cfg.paths.journal) as j:
        assert {f.exec_id for f in j.fills()} == {e.exec_id for e in sim.broker.executions()}
        assert j.get(REF_OF(tmp_path)).status == "filled" and j.get(REF_OF(tmp_path)).order_id == sim_orders(sim)[0].order_id
    kinds = [r["kind"] for r in audit_records(tmp_path)]
    for kind in ("run", "connection", "reconcile", "decision", "order", "fill"):
        assert kind in kinds, kind
    rows = equity_rows(tmp_path)
    assert len(rows) == 1 and rows[0]["datetime"].startswith("2016-12-30")

    # the same day again: the decision bar is re-decided, nothing new is sent or recorded
    res2 = run_live(cfg, max_runtime=60)
    assert res2.orders == []
    assert len(sim_orders(sim)) == 1
    assert res2.reconcile["ok"] and res2.positions == {"SPY": qty}
    assert len(equity_rows(tmp_path)) == 1


@pytest.mark.slow
def test_restart_re_deciding_the_same_bar_follows_the_working_order(gateway_sim_factory,
                                                                       tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    cfg = make_config(tmp_path, sim.port)
    # the order rests: stopping the run leaves it working
    first = run_live_until(cfg, order_status(REF_OF(tmp_path), "submitted"))
    assert first.stopped_by == "test"
    assert [(o["orderRef"], o["status"]) for o in first.orders] == [(REF_OF(tmp_path), "submitted")]
    assert len(sim.broker.open_orders()) == 1

    runner = LiveRunner(cfg, max_runtime=30)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("res", runner.run()))
    thread.start()
    deadline = time.monotonic() + 20
    while not (runner.broker is not None and REF_OF(tmp_path) in runner.broker.records):
        assert time.monotonic() < deadline, "the restarted run never re-decided the bar"
        time.sleep(0.05)
    sim.advance(seconds=10)  # next bar: the working order fills
    thread.join(30)
    assert not thread.is_alive()
    res = out["res"]
    assert res.stopped_by == "finished"
    (order,) = res.orders
    assert order["orderRef"] == REF_OF(tmp_path) and order["status"] == "filled"
    assert order.get("duplicate_skipped") is True
    assert len(sim_orders(sim, REF_OF(tmp_path))) == 1  # never sent twice
    with Journal(cfg.paths.journal) as j:
        assert {f.exec_id for f in j.fills()} == {e.exec_id for e in sim.broker.executions()}
        assert len(j.fills()) >= 1
    assert res.positions == {"SPY": sim_position(sim)} == {"SPY": order["quantity"]}


def test_read_only_decides_and_records_but_sends_nothing(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port, read_only=True)
    res = run_live(cfg, max_runtime=30)
    assert [(o["orderRef"], o["status"]) for o in res.orders] == [(REF_OF(tmp_path), "withheld")]
    assert sim_orders(sim) == [] and sim.requests_named("placeOrder") == []
    with Journal(cfg.paths.journal) as j:
        assert j.intents() == []  # a later normal run must not resend a read-only decision
        assert [e["order_ref"] for e in j.events("withheld")] == [REF_OF(tmp_path)]
    withheld = [r for r in audit_records(tmp_path)
                if r["kind"] == "order" and r.get("status") == "withheld"]
    assert [r["orderRef"] for r in withheld] == [REF_OF(tmp_path)]


@pytest.mark.parametrize("limit,value,says", [
    ("max_order_notional", 10_000, "exceeds max_order_notional 10,000.00"),
    ("max_position_per_symbol", 100, "above max_position_per_symbol 100"),
    ("max_position_notional", 50_000, "above max_position_notional 50,000.00"),
])
def test_risk_limit_refuses_the_order_and_says_why(gateway_sim_factory, tmp_path, limit, value,
                                                   says):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port, **{f"risk.{limit}": value})
    res = run_live(cfg, max_runtime=30)
    assert [(o["orderRef"], o["status"]) for o in res.orders] == [(REF_OF(tmp_path), "refused")]
    assert sim_orders(sim) == [] and sim.requests_named("placeOrder") == []
    refusals = [r for r in audit_records(tmp_path) if r["kind"] == "risk"]
    assert len(refusals) == 1 and says in refusals[0]["reason"]
    with Journal(cfg.paths.journal) as j:
        assert j.intents() == []


def test_daily_loss_halt_stops_new_orders_and_is_announced_once(gateway_sim_factory, tmp_path,
                                                                 caplog):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port, **{"risk.max_daily_loss": 0.03})
    with Journal(cfg.paths.journal) as j:  # an earlier run today saw 2,000,000
        j.log_event("day_start", {"date": "2017-01-03", "account": "DU1234567",
                                  "equity": 2_000_000.0})
    with caplog.at_level(logging.INFO):
        res = run_live(cfg, max_runtime=30)
    warned = [r for r in caplog.records
              if r.levelno >= logging.WARNING and "daily loss limit hit" in r.getMessage()]
    assert len(warned) == 1
    assert res.halted is True
    assert [o["status"] for o in res.orders] == ["refused"]
    assert sim_orders(sim) == []
    halts = [r for r in audit_records(tmp_path) if r.get("event") == "daily_loss_halt"]
    assert len(halts) == 1 and "daily loss limit hit" in halts[0]["reason"]
    assert any("daily loss limit" in line for line in res.needs_attention)


def test_paper_mode_refuses_a_live_account(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample", account="U7654321")
    cfg = make_config(tmp_path, sim.port)
    with pytest.raises(SafetyError, match="U7654321"):
        run_live(cfg, max_runtime=10)
    assert sim.requests_named("placeOrder") == []


def test_paper_mode_refuses_a_live_port_before_connecting(tmp_path):
    cfg = make_config(tmp_path, 4001)
    with pytest.raises(SafetyError, match="4001"):
        run_live(cfg, max_runtime=5)
    assert not (tmp_path / "journal.sqlite").exists()


@pytest.mark.slow
def test_unreachable_gateway_says_what_to_check(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_config(tmp_path, port)
    with pytest.raises(ConnectionFailedError) as info:
        run_live(cfg, max_runtime=5)
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "API" in msg and "4002" in msg


@pytest.mark.slow
def test_equity_grows_one_row_per_day_and_report_is_written(gateway_sim_factory, tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port)
    run_live(cfg, max_runtime=30)
    sim.advance_days(1)
    report = tmp_path / "reports" / "paper.html"
    res = run_live(cfg, max_runtime=30, report_path=report)
    rows = equity_rows(tmp_path)
    assert [r["datetime"][:10] for r in rows] == ["2016-12-30", "2017-01-03"]
    assert res.report == str(report)
    # two daily runs: 3 days of account value, too few for annualized ratios: the page lists
    # the values and says what the figures rest on
    page = report.read_text(encoding="utf-8")
    assert "2 real session(s), 3 days of account value" in page
    assert "withheld below 20 days" in page
    assert "Sharpe" not in page.replace("annualized ratios (Sharpe,", "")  # no ratio shown
    assert page.count("<tr><td>20") == 3
    assert "2 real session(s)" in res.report_message


@pytest.mark.slow
def test_gateway_restart_with_id_rollback_never_reuses_an_order_id(gateway_sim_factory,
                                                                    tmp_path):
    sim = gateway_sim_factory(data="sample")
    cfg = make_config(tmp_path, sim.port)
    first = run_live(cfg, strategy=BuyOneOnDecision, max_runtime=30)
    sim.advance_days(1)
    sim.restart(rollback_ids=True, rollback_to=1)
    assert sim.next_order_id() <= 2
    second = run_live(cfg, strategy=BuyOneOnDecision, max_runtime=30)
    ids = [o.order_id for o in sim_orders(sim)]
    assert len(ids) == 2 and len(set(ids)) == 2 and ids[1] > ids[0]
    assert [o["status"] for o in first.orders + second.orders] == ["filled", "filled"]
    assert not [r for r in audit_records(tmp_path) if r.get("code") == 103]
    assert second.positions == {"SPY": 2.0}


def test_unknown_strategy_param_is_named(tmp_path):
    cfg = make_config(tmp_path, 4002, **{"strategy.params": {"bandd": 0.1}})
    with pytest.raises(ConfigError, match="bandd"):
        run_live(cfg)


def test_timeframe_of_bar_sizes():
    assert timeframe_of("5 secs") == (bt.TimeFrame.Seconds, 5)
    assert timeframe_of("1 hour") == (bt.TimeFrame.Minutes, 60)
    assert timeframe_of("1 day") == (bt.TimeFrame.Days, 1)
    with pytest.raises(ConfigError, match="fortnight"):
        timeframe_of("1 fortnight")


@pytest.mark.slow
def test_daily_warm_up_goes_through_the_shared_bar_cache(gateway_sim_factory, tmp_path):
    """The warm-up reads the parquet cache backtests share; a rerun asks IB only for what is new."""
    from bt_ibkr.cache import BarCache, CacheKey

    sim = gateway_sim_factory(data="sample")
    cache = BarCache(tmp_path / "bars")
    first = run_live(make_config(tmp_path, sim.port, **{"connection.readonly": False}),
                     max_runtime=60, cache=cache)
    # the simulator's bars are filed as "ibkr-sim", never as IB's
    assert cache.load(CacheKey("ibkr", "SPY")) is None
    cached = cache.load(CacheKey("ibkr-sim", "SPY"))
    assert cached is not None and len(cached) >= 500  # two years of completed daily bars
    asked_first = len(sim.requests_named("reqHistoricalData"))
    assert asked_first >= 2
    # the warm-up asks on the run's own connection: no second session with the gateway
    assert {r[0] for r in sim.requests_named("reqHistoricalData")} == {1}
    assert len(sim.requests_named("startApi")) == 1

    sim2 = gateway_sim_factory(data="sample")  # same prices, a fresh account
    second = run_live(make_config(tmp_path / "again", sim2.port), max_runtime=60, cache=cache)
    # the same decision; each journal's own identity in its ref
    assert first.orders[0]["orderRef"] == REF_OF(tmp_path)
    assert second.orders[0]["orderRef"] == REF_OF(tmp_path / "again")
    assert second.orders[0]["quantity"] == first.orders[0]["quantity"]
    # the cache covered the two years: no long history request the second time
    second_requests = sim2.requests_named("reqHistoricalData")
    assert len(second_requests) < asked_first, (asked_first, second_requests)
    assert not any("365 D" in r[3] for r in second_requests)


def test_a_mistyped_strategy_param_is_refused_from_python_too(tmp_path):
    cfg = replace(make_config(tmp_path, 4002), params={"use_hmm": "maybe"})
    with pytest.raises(ConfigError, match="use_hmm"):
        run_live(cfg, max_runtime=5)
