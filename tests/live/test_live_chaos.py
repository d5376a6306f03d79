"""Chaos: disconnects, gateway restarts, kill -9 at the worst moments, signals.

Every scenario ends with the same three checks against the simulator's own ledger: no order
sent twice (orders counted by orderRef), no fill lost (the journal's execIds == the
simulator's), and the journal's/runner's positions == the simulator's.

The kill -9 scenarios run the real CLI as a subprocess against a GatewaySim in this process and
use the runner's testing hook ``BT_IBKR_CRASH_AT`` (after_journal | after_send), which makes the
process SIGKILL itself at that point.
"""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers.live import Flipper, audit, cli, cli_env, wait_for
from helpers.sim import our_ref, stream_config

from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner


# ------------------------------------------------------------------------------------ helpers
def sim_refs(sim) -> collections.Counter:
    orders = sim.broker.open_orders() + sim.broker.completed_orders()
    return collections.Counter(o.spec.orderRef for o in orders)


def sim_position(sim, symbol: str = "SPY") -> float:
    return sum(p.position for p in sim.broker.positions() if p.contract.symbol == symbol)


def assert_consistent(sim, journal_path: Path) -> None:
    """No duplicate orderRef at the gateway, no lost fill, positions agree."""
    refs = sim_refs(sim)
    assert refs and max(refs.values()) == 1, f"duplicate orders: {refs}"
    with Journal(journal_path) as j:
        assert {f.exec_id for f in j.fills()} == {e.exec_id for e in sim.broker.executions()}
        assert j.position_from_fills("SPY") == sim_position(sim)
        journaled = {r.order_ref for r in j.intents()}
    assert set(refs) <= journaled


# ------------------------------------------------------------------------------------ stream
@pytest.mark.slow
def test_stream_survives_disconnects_connectivity_loss_and_a_restart(gateway_sim_factory,
                                                                      tmp_path):
    sim = gateway_sim_factory(data="sample")
    Flipper.last_bar = None
    # a restarting gateway does not answer the handshake: a short connection timeout
    cfg = stream_config(tmp_path, sim.port, **{"connection.timeout": 2.0})
    runner = LiveRunner(cfg, strategy=Flipper, max_runtime=50, reconnect_backoff_max=1.0)
    out: dict = {}
    thread = threading.Thread(target=lambda: out.setdefault("res", runner.run()), daemon=True)
    thread.start()

    def trade(bars: int) -> None:
        for _ in range(bars):  # one 5-second bar at a time, each processed before the next
            end = sim.advance(seconds=5).replace(tzinfo=None)
            wait_for(lambda end=end: Flipper.last_bar is not None and Flipper.last_bar >= end,
                     30, f"the bar ending {end} at the strategy")

    sim.wait_for_request("reqRealTimeBars", timeout=20)
    trade(10)
    n0 = sum(sim_refs(sim).values())
    assert n0 >= 2, "no orders before the faults"
    for i in (2, 3):  # two plain disconnects: reconnect, resubscribe
        sim.drop_connections()
        sim.wait_for_request("reqRealTimeBars", count=i, timeout=20)
        trade(6)
    sim.connectivity_lost()
    sim.connectivity_restored(data_lost=True)  # 1101: subscriptions must be renewed
    sim.wait_for_request("reqRealTimeBars", count=4, timeout=20)
    trade(6)
    n1 = sum(sim_refs(sim).values())
    assert n1 > n0, "no orders after the disconnects"
    before_restart = max(o.order_id for o in sim.broker.completed_orders())
    sim.restart(rollback_ids=True, rollback_to=1, downtime=0.3)
    sim.wait_for_request("reqRealTimeBars", count=5, timeout=20)
    trade(9)
    runner.stop("test")
    thread.join(30)
    assert not thread.is_alive()
    res = out["res"]
    assert res.stopped_by == "test"
    after = [o.order_id for o in sim.broker.completed_orders() if o.order_id > before_restart]
    assert after, "no orders after the gateway restart"
    ids = [o.order_id for o in sim.broker.open_orders() + sim.broker.completed_orders()]
    assert len(ids) == len(set(ids))  # no id reused after the nextValidId rollback
    records = audit(tmp_path)
    assert not [r for r in records if r.get("code") == 103]
    events = [r.get("event") for r in records if r["kind"] == "connection"]
    assert events.count("lost") >= 3 and events.count("reconnected") >= 3
    assert_consistent(sim, tmp_path / "journal.sqlite")
    assert res.positions.get("SPY", 0.0) == sim_position(sim)


# ------------------------------------------------------------------------------------ kill -9
@pytest.mark.slow
@pytest.mark.parametrize("crash_at", ["after_journal", "after_send"])
def test_kill_9_then_restart_sends_no_duplicate_and_loses_no_fill(gateway_sim_factory,
                                                                    tmp_path, crash_at):
    REF = our_ref(tmp_path / "journal.sqlite")  # noqa: N806 - the one decision's ref
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    args = cli(tmp_path, sim.port, "--max-runtime", "30")
    crashed = subprocess.run(args, cwd=tmp_path, env=cli_env(tmp_path, BT_IBKR_CRASH_AT=crash_at),
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    with Journal(tmp_path / "journal.sqlite") as j:
        (intent,) = j.intents()
        assert intent.order_ref == REF
        # after_send: the gateway acknowledged it (journaled as submitted), then the kill
        expected = ("intent",) if crash_at == "after_journal" else ("sent", "submitted")
        assert intent.status in expected
    assert sim_refs(sim) == ({} if crash_at == "after_journal" else {REF: 1})

    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if crash_at == "after_journal":  # resent with the same orderRef
            wait_for(lambda: sim_refs(sim).get(REF), 30, "the resend")
        else:  # re-decided, found in the journal, followed (not sent)
            wait_for(lambda: any(r.get("status") == "skipped_duplicate" for r in audit(tmp_path)),
                     30, "the re-decision")
        sim.advance(seconds=10)  # the next bar fills the order
        stdout, stderr = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert sim_refs(sim) == {REF: 1}
    assert len(sim.broker.executions()) >= 1
    assert_consistent(sim, tmp_path / "journal.sqlite")
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["positions"] == {"SPY": sim_position(sim)}
    (order,) = summary["orders"]
    assert order["orderRef"] == REF and order["status"] == "filled"
    if crash_at == "after_journal":
        assert summary["reconcile"]["resend"] == [REF]


# ------------------------------------------------------------------------------------ signals
@pytest.mark.slow
@pytest.mark.parametrize("sig,cancel_on_exit", [(signal.SIGTERM, True), (signal.SIGINT, False)])
def test_signal_stops_cleanly_and_leaves_orders_as_configured(gateway_sim_factory, tmp_path, sig,
                                                               cancel_on_exit):
    sim = gateway_sim_factory(data="sample")
    config = tmp_path / "live.json"
    config.write_text(json.dumps({
        "run_mode": "stream", "bar_size": "5 secs",
        "strategy": {"name": "helpers.live:RestingLimit"},
        "risk": {"cancel_on_exit": cancel_on_exit},
        "paths": {"logs": str(tmp_path / "logs")},
    }))
    proc = subprocess.Popen(cli(tmp_path, sim.port, "--max-runtime", "40", config=config),
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        sim.wait_for_request("reqRealTimeBars", timeout=30)
        deadline = time.monotonic() + 30
        while not sim.broker.open_orders():
            assert time.monotonic() < deadline, "hang guard: the limit order never arrived"
            sim.advance(seconds=5)
            time.sleep(0.1)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert f"{signal.Signals(sig).name} received" in stderr
    (ref,) = sim_refs(sim)
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["stopped_by"] == signal.Signals(sig).name
    with Journal(tmp_path / "journal.sqlite") as j:
        status = j.get(ref).status
    if cancel_on_exit:
        assert sim.broker.open_orders() == [] and status == "cancelled"
    else:
        assert [o.spec.orderRef for o in sim.broker.open_orders()] == [ref]
        assert status == "submitted"
    assert sim_refs(sim) == {ref: 1}
