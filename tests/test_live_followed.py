"""A restarted stream run never loses the fill of an order its predecessor left working, and
never buys the same exposure twice.

The first run (stream mode, 5-second bars, ``cancel_on_exit`` off) sends one order and stops
with it working at the simulator, as a killed process leaves it. The second run follows it
(start-up recovery). A stream run never re-decides the first run's bar, so the order's fill
reaches no Strategy order: the broker must still count it in the position and cash the
Strategy sizes from. Before the fix the second run kept the pre-fill position, bought the 10
shares again (20 at the simulator, two orders) and its cash was one fill off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import backtrader as bt
import pytest
from sim_helpers import HoldMessages, poll_until
from sim_helpers import stream_config as sim_stream_config

from bt_ibkr.live.audit import read_audit
from bt_ibkr.live.journal import Intent, Journal
from bt_ibkr.live.runner import LiveRunner

HANG = 60
QTY = 10
ROOT = Path(__file__).resolve().parents[1]


class HoldTen(bt.Strategy):
    """On every live bar with no order of its own pending: buy what is missing to hold 10
    shares (``target``), sized from ``getposition`` (a stale position buys again). ``limit``: a
    limit buy at half the close (it rests) instead of a market order. Records what it sees."""

    params = (("limit", False), ("target", QTY))
    last_bar = None  # the end of the last bar next() ran on (naive UTC)
    seen: list = []

    def __init__(self):
        self.live = False
        self.pending = None

    def notify_data(self, data, status, *args, **kwargs):
        self.live = status == data.LIVE

    def notify_store(self, msg, *args, **kwargs):
        type(self).seen.append(("store", msg, kwargs))

    def notify_order(self, order):
        type(self).seen.append(("order", order.orderRef, order.getstatusname(),
                                order.info.get("reason", None)))
        if not order.alive() and self.pending is not None and order.ref == self.pending.ref:
            self.pending = None

    def next(self):
        size = self.getposition(self.data).size
        type(self).seen.append(("bar", size, self.broker.getcash(), self.live))
        if self.live and self.pending is None and size < self.p.target:
            if self.p.limit:
                self.pending = self.buy(size=self.p.target - size, exectype=bt.Order.Limit,
                                        price=round(self.data.close[0] * 0.5, 2))
            else:
                self.pending = self.buy(size=self.p.target - size)
        type(self).last_bar = bt.num2date(self.data.datetime[0])


def stream_config(tmp_path: Path, port: int, **extra):
    """These tests' stream config: orders stay working when a run exits."""
    return sim_stream_config(tmp_path, port, **{"risk.cancel_on_exit": False, **extra})


class Run:
    """A LiveRunner with HoldTen in a thread, driven bar by bar from the test."""

    def __init__(self, sim, cfg, **params):
        self.sim = sim
        HoldTen.last_bar, HoldTen.seen = None, []
        self.runner = LiveRunner(replace(cfg, params=params), strategy=HoldTen, max_runtime=HANG)
        self.out: dict = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        subs = len(sim.requests_named("reqRealTimeBars"))
        self.thread.start()
        poll_until(lambda: len(sim.requests_named("reqRealTimeBars")) > subs
                   or not self.thread.is_alive(), timeout=HANG, what="the live subscription")

    def _run(self):
        try:
            self.out["result"] = self.runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test
            self.out["error"] = exc

    def step(self, bars: int = 1) -> None:
        """Emit ``bars`` 5-second bars, each processed by the Strategy before the next."""
        for _ in range(bars):
            end = self.sim.advance(seconds=5).replace(tzinfo=None)
            poll_until(lambda end=end: (HoldTen.last_bar is not None and HoldTen.last_bar >= end)
                       or not self.thread.is_alive(), timeout=HANG, what=f"the bar ending {end}")
            if "error" in self.out:
                raise self.out["error"]

    def step_until(self, pred, what: str, bars: int = 20) -> None:
        for _ in range(bars):
            if pred():
                return
            self.step()
        raise AssertionError(f"{what} not within {bars} bars")

    def stop(self):
        self.runner.stop("test")
        self.thread.join(HANG)
        assert not self.thread.is_alive()
        if "error" in self.out:
            raise self.out["error"]
        return self.out["result"]


def sim_refs(sim) -> list[str]:
    return [o.spec.orderRef for o in sim.broker.open_orders() + sim.broker.completed_orders()]


def sim_position(sim) -> float:
    return sum(p.position for p in sim.broker.positions() if p.contract.symbol == "SPY")


def leave_an_order_working(sim, cfg, **params) -> str:
    """The first run: trade until its order is at the gateway, then stop (it stays working)."""
    run = Run(sim, cfg, **params)

    def journaled() -> bool:
        with Journal(cfg.paths.journal) as j:
            return bool(j.intents())

    # the decision is journaled when its bar is processed; the order then travels to the
    # gateway on the store's loop: wait for it there while the simulated clock stands still
    # (stepping on at once could let it fill before it is seen working, under load)
    run.step_until(journaled, "the first run's decision")
    poll_until(lambda: sim.broker.open_orders(), timeout=HANG, what="the first run's order")
    res = run.stop()
    (ref,) = sim_refs(sim)
    assert [(o["orderRef"], o["status"]) for o in res.orders] == [(ref, "submitted")]
    with Journal(cfg.paths.journal) as j:
        assert j.pending_shares("SPY") == QTY  # the risk gate counts it
    return ref


def kill_9_after_sending(sim, cfg, tmp_path: Path) -> str:
    """The first run as the real CLI, SIGKILLed (``BT_IBKR_CRASH_AT=after_send``) once the
    gateway acknowledged its order, before the fill."""
    config = tmp_path / "live.json"
    config.write_text(json.dumps({
        "run_mode": "stream", "bar_size": "5 secs", "risk": {"cancel_on_exit": False},
        "strategy": {"name": "test_live_followed:HoldTen"},
        "paths": {"logs": str(cfg.paths.logs)}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BT_IBKR_")}
    env.update(BT_IBKR_CRASH_AT="after_send", BT_IBKR_LOG_DIR=str(cfg.paths.logs),
               PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.live", "--paper", "--port", str(sim.port),
         "--config", str(config), "--journal", str(cfg.paths.journal),
         "--equity", str(cfg.paths.equity), "--max-runtime", str(HANG)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sim.wait_for_request("reqRealTimeBars", timeout=HANG)
        for _ in range(20):  # one bar at a time until the order is sent and the process dies
            sim.advance(seconds=5)
            try:
                proc.wait(timeout=5)  # a bar is decided in ms: the next comes only if none was
                break
            except subprocess.TimeoutExpired:
                continue
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, stderr[-2000:]
    (order,) = sim.broker.open_orders()  # acknowledged, not filled
    with Journal(cfg.paths.journal) as j:
        assert j.get(order.spec.orderRef).status in ("sent", "submitted")
        assert j.pending_shares("SPY") == QTY
    return order.spec.orderRef


def store_messages(kind: str) -> list[tuple]:
    """``(msg, kwargs)`` of the Strategy's notify_store calls of ``kind``."""
    return [(s[1], s[2]) for s in HoldTen.seen if s[0] == "store" and s[1].kind == kind]


def followed_fills(tmp_path: Path) -> list[dict]:
    return [r for path in sorted((tmp_path / "logs").glob("audit-*.jsonl"))
            for r in read_audit(path) if r["kind"] == "fill" and r.get("event") == "followed"]


@pytest.mark.parametrize("held,killed", [((), False), ((11, 59), False), ((), True)],
                         ids=["in_order", "execution_late", "killed_by_sigkill"])
def test_restarted_stream_run_counts_the_fill_of_the_order_it_follows(gateway_sim_factory,
                                                                      tmp_path, held, killed):
    """``execution_late``: IB's status (Filled), position and cash reach the new run before
    the execution: the Strategy decides meanwhile, and still sends nothing.
    ``killed_by_sigkill``: the first run is the CLI, killed -9 after sending."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    cfg = stream_config(tmp_path, sim.port)
    ref = kill_9_after_sending(sim, cfg, tmp_path) if killed else leave_an_order_working(sim, cfg)

    run = Run(sim, cfg)
    broker, data = run.runner.broker, run.runner.feeds[0]
    with HoldMessages(sim, cfg.connection.client_id, *held) as hold:
        run.step(3)  # the first of them fills the followed order
        assert set(hold.ids()) == set(held)
    run.step(3)
    position, cash = broker.getposition(data).size, broker.getcash()
    res = run.stop()

    assert sim_refs(sim) == [ref], "a second order for the same exposure was sent"
    assert position == sim_position(sim) == QTY
    assert cash == pytest.approx(sim.broker.cash, abs=0.01)
    (ex,) = sim.broker.executions()
    assert [kw for _, kw in store_messages("fill")] == [{
        "orderRef": ref, "symbol": "SPY", "side": "BUY", "size": QTY, "price": ex.price,
        "commission": pytest.approx(ex.commission), "execId": ex.exec_id}]
    assert [(kw["orderRef"], kw["quantity"], kw["filled"]) for m, kw in store_messages("event")
            if m.text.startswith("following")] == [(ref, QTY, 0)]
    # from the fill on, the Strategy sizes from the filled position
    bars = [s for s in HoldTen.seen if s[0] == "bar"]
    assert bars[-1][1:3] == (QTY, pytest.approx(sim.broker.cash, abs=0.01))
    with Journal(cfg.paths.journal) as j:
        assert {f.exec_id for f in j.fills()} == {ex.exec_id}
        assert j.get(ref).status == "filled" and j.pending_shares("SPY") == 0
    (audited,) = followed_fills(tmp_path)
    assert (audited["orderRef"], audited["execId"], audited["position"]) == (ref, ex.exec_id, QTY)
    assert {o["orderRef"]: o["status"] for o in res.orders if o["status"] != "refused"} == {
        ref: "filled"}
    refused = [o for o in HoldTen.seen if o[0] == "order" and o[2] == "Rejected"]
    assert all(ref in o[3] for o in refused)  # a refusal, if any, names the working order
    if held:
        assert refused, "the Strategy decided while the execution was late"


def test_order_filled_while_no_process_ran_is_in_the_adopted_position(gateway_sim_factory,
                                                                     tmp_path):
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    cfg = stream_config(tmp_path, sim.port)
    ref = leave_an_order_working(sim, cfg)
    sim.advance(seconds=5)  # it fills while no process is connected
    assert sim_position(sim) == QTY

    run = Run(sim, cfg)
    run.step(4)
    broker, data = run.runner.broker, run.runner.feeds[0]
    position, cash = broker.getposition(data).size, broker.getcash()
    run.stop()
    assert sim_refs(sim) == [ref]
    assert position == sim_position(sim) == QTY
    assert cash == pytest.approx(sim.broker.cash, abs=0.01)
    assert {s[1] for s in HoldTen.seen if s[0] == "bar"} == {QTY}  # from its first bar on
    assert followed_fills(tmp_path) == []  # nothing to follow: the fill came from reqExecutions
    with Journal(cfg.paths.journal) as j:  # recorded by the start-up reconcile
        assert [f.exec_id for f in j.fills()] == [sim.broker.executions()[0].exec_id]
        assert j.get(ref).status == "filled" and j.pending_shares("SPY") == 0


@pytest.mark.parametrize("limit", [None, 15], ids=["no_limit", "max_position_15"])
def test_while_a_followed_order_works_a_stream_redecision_sends_no_duplicate(
        gateway_sim_factory, tmp_path, limit):
    """The first run's limit buy rests. The restarted Strategy wants 10 shares on every bar;
    each order is refused, naming the working order (with ``max_position_per_symbol`` 15 the
    risk gate refuses first, counting the working order's 10 shares), until the order is
    cancelled at the gateway: then the Strategy's next order goes out, once."""
    sim = gateway_sim_factory(data="sample")
    cfg = stream_config(tmp_path, sim.port, **{"risk.max_position_per_symbol": limit})
    ref = leave_an_order_working(sim, cfg, limit=True)

    run = Run(sim, cfg, limit=True)
    run.step(4)
    refused = [o for o in HoldTen.seen if o[0] == "order" and o[2] == "Rejected"]
    assert len(refused) >= 2 and sim_refs(sim) == [ref]
    for _, _, _, reason in refused:
        if limit is None:
            assert f"an order of an earlier run, {ref} (BUY 10 SPY, 0 filled)" in reason
        else:
            assert "in working orders 10" in reason and "max_position_per_symbol 15" in reason
    with Journal(cfg.paths.journal) as j:
        assert j.pending_shares("SPY") == QTY
    (order,) = sim.broker.open_orders()
    sim.call(sim.broker.cancel, order.client_id, order.order_id)  # cancelled in TWS
    run.step_until(lambda: len(sim_refs(sim)) == 2, "the Strategy's own order")
    run.step(3)
    run.stop()
    refs = sim_refs(sim)
    assert len(refs) == len(set(refs)) == 2 and ref in refs
    assert [o.spec.totalQuantity for o in sim.broker.open_orders()] == [QTY]


def test_a_restarted_stream_run_expires_the_unsent_intents_of_the_run_before(
        gateway_sim_factory, tmp_path):
    """A stream run killed between journaling an order and sending it leaves an intent that no
    later stream run decides again (new bars, new orderRefs). It is expired at start, not kept
    for a resend that never comes, so the risk gate does not count it as pending: with
    ``max_position_per_symbol`` 15, the new run's buy of 10 goes out (10 + 10 would not)."""
    sim = gateway_sim_factory(data="sample", broker_options={"fill_mode": "next_bar"})
    cfg = stream_config(tmp_path, sim.port, **{"risk.max_position_per_symbol": 15})
    stale = "bt1:HoldTen:SPY:20240102T143005:1"
    with Journal(cfg.paths.journal) as j:  # what BT_IBKR_CRASH_AT=after_journal leaves
        assert j.record_intent(Intent(order_ref=stale, strategy="HoldTen", symbol="SPY",
                                      side="BUY", quantity=QTY,
                                      decision_time=datetime(2024, 1, 2, 14, 30, 5)))
        assert j.pending_shares("SPY") == QTY
    run = Run(sim, cfg)
    run.step_until(lambda: sim.broker.open_orders() or sim_position(sim), "the new run's order")
    run.step_until(lambda: sim_position(sim) == QTY, "its fill")
    res = run.stop()
    assert stale in res.reconcile["expired"] and res.reconcile["resend"] == []
    refs = sim_refs(sim)
    assert len(refs) == 1 and refs[0] != stale  # one order, under the new run's ref
    with Journal(cfg.paths.journal) as j:
        assert j.get(stale).status == "expired" and j.pending_shares("SPY") == 0
