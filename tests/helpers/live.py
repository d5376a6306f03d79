"""Live-run helpers shared by the live test packages: CLI runs, waits, configs, and the small
strategies that subprocess runs load by name (``helpers.live:Name``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import backtrader as bt

from bt_ibkr.live.audit import read_audit
from bt_ibkr.live.config import load_config
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.runner import LiveRunner
from helpers.sim import poll_until
from helpers.sim import stream_config as sim_stream_config

ROOT = Path(__file__).resolve().parents[2]


class Flipper(bt.Strategy):
    """Every ``every``-th live bar: buy ``size`` when flat, sell it when long."""

    params = (("every", 3), ("size", 10))
    #: the end (naive UTC) of the last bar processed: the tests wait on it, not on time
    last_bar = None

    def __init__(self):
        self.live = False
        self.n = 0
        self.pending = None

    def notify_data(self, data, status, *args, **kwargs):
        self.live = status == data.LIVE

    def notify_order(self, order):
        if not order.alive():
            self.pending = None

    def next(self):
        type(self).last_bar = bt.num2date(self.data.datetime[0])  # naive UTC, the bar's end
        if not self.live or self.pending is not None:
            return
        self.n += 1
        if self.n % self.p.every:
            return
        if self.getposition(self.data).size > 0:
            self.pending = self.sell(size=self.p.size)
        else:
            self.pending = self.buy(size=self.p.size)


class RestingLimit(bt.Strategy):
    """On the first live bar: a limit buy far below the market (it never fills)."""

    def __init__(self):
        self.sent = False

    def notify_data(self, data, status, *args, **kwargs):
        if status == data.LIVE and not self.sent:
            self.sent = True
            self.buy(size=5, price=round(self.data.close[0] * 0.5, 2), exectype=bt.Order.Limit)


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"hang guard: {what} within {timeout}s"
        time.sleep(0.05)


def cli(tmp_path: Path, port: int, *extra: str, env_extra: dict | None = None,
        config: Path | None = None) -> list[str]:
    args = [sys.executable, "-m", "examples.live", "--paper", "--port", str(port),
            "--journal", str(tmp_path / "journal.sqlite"),
            "--equity", str(tmp_path / "equity.csv"), "--json", str(tmp_path / "run.json")]
    if config is not None:
        args += ["--config", str(config)]
    return args + list(extra)


def cli_env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.pop("BT_IBKR_CRASH_AT", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"),
                                         env.get("PYTHONPATH", "")])
    env["BT_IBKR_LOG_DIR"] = str(tmp_path / "logs")
    env.update(extra)
    return env


def audit(tmp_path: Path) -> list[dict]:
    out = []
    for path in sorted((tmp_path / "logs").glob("audit-*.jsonl")):
        out += read_audit(path)
    return out


def run_cli(tmp_path, sim, *extra: str, max_runtime: float = 30.0):
    """Run the CLI against ``sim``; return (exit code, stderr, elapsed seconds)."""
    t0 = time.monotonic()
    proc = subprocess.run(cli(tmp_path, sim.port, "--max-runtime", f"{max_runtime:g}", *extra),
                          cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True,
                          timeout=max_runtime + 120)
    return proc.returncode, proc.stderr, time.monotonic() - t0


def assert_one_line_end(err: str, code: int, prefix: str) -> str:
    """The run ended with one line starting with ``prefix``, no traceback; return that line."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(prefix), err
    return last


HANG = 60


QTY = 10


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


class BuyOneOnDecision(bt.Strategy):
    """Buys ``size`` (1) shares on every bar the feed reports LIVE (the decision bar in daily
    mode); with ``once``, only on the first such bar."""

    params = (("size", 1), ("once", False))

    def __init__(self):
        self.live = False

    def notify_data(self, data, status, *args, **kwargs):
        self.live = status == data.LIVE

    def next(self):
        if self.live:
            self.buy(size=self.p.size)
            if self.p.once:
                self.live = False


def make_config(tmp_path: Path, port: int, **overrides):
    values = {
        "connection.port": port,
        "paths.journal": str(tmp_path / "journal.sqlite"),
        "paths.logs": str(tmp_path / "logs"),
        "paths.equity": str(tmp_path / "equity.csv"),
        "paths.reports": str(tmp_path / "reports"),
    }
    values.update(overrides)
    return load_config(None, env={}, overrides=values)


def sim_orders(sim, ref: str | None = None) -> list:
    orders = sim.broker.open_orders() + sim.broker.completed_orders()
    return [o for o in orders if ref is None or o.spec.orderRef == ref]


def multi_config(tmp_path: Path, port: int, symbols: list[str], **extra):
    values = {"connection.port": port, "symbols": ",".join(symbols),
              "paths.journal": str(tmp_path / "journal.sqlite"),
              "paths.logs": str(tmp_path / "logs"), "paths.equity": str(tmp_path / "equity.csv")}
    values.update(extra)
    return load_config(None, env={}, overrides=values)
