"""Helpers shared by the gateway simulator's contract tests (real clients, no mocks)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

DECODER_LOGGERS = ("ib_async.Decoder", "ib_insync.decoder", "ib_async.decoder")


class ErrorCatcher(logging.Handler):
    """Collects ERROR records of the loggers ``names`` (default: the clients' decoders, G3: a
    dropped message logs only)."""

    def __init__(self, names: tuple[str, ...] = DECODER_LOGGERS) -> None:
        super().__init__(level=logging.ERROR)
        self.names = names
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> ErrorCatcher:
        for name in self.names:
            logging.getLogger(name).addHandler(self)
        return self

    def remove(self) -> None:
        for name in self.names:
            logging.getLogger(name).removeHandler(self)

    def messages(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records]


def wait_until(cond: Callable[[], object], pump: Callable[[float], object],
               timeout: float = 5.0) -> None:
    """Pump the client's loop (``ib.sleep``) until ``cond()`` is truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (hang guard)")
        pump(0.01)


def poll_until(pred: Callable[[], object], timeout: float = 120.0, what: str = "condition",
               interval: float = 0.005) -> None:
    """Poll ``pred()`` from this thread until truthy (for code whose own threads do the work,
    e.g. IBStore's loop); raise AssertionError naming ``what`` after ``timeout`` (hang guard)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


class VirtualClock:
    """Seconds that pass only when the code under test sleeps on them (or a test advances them).

    Pass the instance as a clock (``clock()`` returns the virtual seconds, from 0.0) and
    ``clock.sleep`` as the awaitable sleep, e.g. to a HistoricalPacer, HistoricalData's back-off
    and the simulator's ``pacing_clock``: IB's real pacing windows are then checked exactly and
    at once, whatever the machine's load. ``sleep(s)`` first waits (real time, ``hang`` s at
    most) until ``settled()`` holds, e.g. "the simulator has received every request the client
    booked", so that a request is seen by the gateway at the virtual time it was sent; then it
    moves the clock to at least its wake-up time (concurrent sleeps overlap, as in real time).
    ``sleeps`` lists every requested sleep. Thread-safe (the simulator reads it from its thread).
    """

    def __init__(self, settled: Callable[[], object] | None = None, hang: float = 60.0) -> None:
        self.settled = settled
        self.hang = hang
        self.sleeps: list[float] = []
        self._now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds``; return the new time."""
        with self._lock:
            self._now += max(0.0, seconds)
            return self._now

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on this clock (after ``settled()``; see the class)."""
        wake = self() + max(0.0, seconds)
        self.sleeps.append(seconds)
        end = time.monotonic() + self.hang
        while self.settled is not None and not self.settled():
            if time.monotonic() > end:
                raise AssertionError(f"VirtualClock: not settled within {self.hang} s (hang guard)")
            await asyncio.sleep(0.001)
        with self._lock:
            self._now = max(self._now, wake)
        await asyncio.sleep(0)


def history_settled(sim, history) -> Callable[[], bool]:
    """Return a ``settled`` predicate for VirtualClock: ``sim`` has received every historical
    request ``history`` (a HistoricalData) has sent."""
    return lambda: len(sim.requests_named("reqHistoricalData")) >= history.stats.requests


def use_virtual_clock(history, clock: VirtualClock, scale: float = 1.0) -> None:
    """Put ``history`` (a HistoricalData) on ``clock``: a pacer for IB's windows x ``scale``
    timed and sleeping on it, and its retry back-off sleeping on it."""
    from bt_ibkr.ib.pacing import HistoricalPacer

    history.pacer = HistoricalPacer.for_gateway(scale, clock=clock, sleep=clock.sleep)
    history.sleep = clock.sleep


def run_live_until(config, until: Callable[[object], object], *, hang_guard: float = 120.0,
                   **kwargs):
    """Run a LiveRunner in a thread until ``until(runner)`` holds (or the run ends by itself),
    then stop it (``stopped_by == "test"``); return its LiveResult, re-raising its error.

    For runs that would otherwise wait for a resting order until ``max_runtime``: the test
    waits for what it needs to see, not for a wall-clock limit. ``hang_guard`` is the run's
    max_runtime and this wait's limit, never a limit the test relies on.
    """
    from bt_ibkr.live.runner import LiveRunner

    runner = LiveRunner(config, max_runtime=hang_guard, **kwargs)
    out: dict = {}

    def target() -> None:
        try:
            out["result"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    thread = threading.Thread(target=target, name="run_live_until", daemon=True)
    thread.start()
    poll_until(lambda: not thread.is_alive() or until(runner), timeout=hang_guard,
               what="the live run's awaited state")
    runner.stop("test")
    thread.join(hang_guard)
    assert not thread.is_alive(), "the live run did not stop"
    if "error" in out:
        raise out["error"]
    return out["result"]


def order_status(ref: str, status: str) -> Callable[[object], bool]:
    """``until`` for :func:`run_live_until`: the run's broker has seen ``ref`` in ``status``."""
    def check(runner) -> bool:
        broker = getattr(runner, "broker", None)
        return broker is not None and broker.records.get(ref, {}).get("status") == status
    return check


def fills_of(rec) -> list[tuple]:
    """Every fill of a parity Recording as (day, feed, side, size, price, commission), sorted;
    within one bar by feed (the gateway executes one contract after the other, BackBroker in
    submission order)."""
    return sorted((f["dt"][:10], f["data"], f["side"], f["size"], f["price"], f["commission"])
                  for f in rec.fills())


class HoldMessages:
    """Holds the simulator's pushed messages with ids in ``msg_ids`` to client ``client_id``
    until :meth:`release` sends them, in order: a message late on its way, so that the client
    reads a fill's execDetails (11), commissionReport (59), position (61) or account values
    (6) in another order, or later, than the simulator sends them. An execDetails answering a
    reqExecutions is never held. A context manager (patches ``ClientConnection.send`` while active;
    on exit it releases what it still holds)."""

    def __init__(self, sim, client_id: int, *msg_ids: int) -> None:
        self.sim = sim
        self.client_id = client_id
        self.msg_ids = set(msg_ids)
        self.held: list[tuple[object, list]] = []
        self._orig = None

    def _hold(self, conn, fields) -> bool:
        return (self._orig is not None and conn.server is self.sim.server
                and conn.client_id == self.client_id and bool(fields)
                and fields[0] in self.msg_ids and not (fields[0] == 11 and fields[1] != -1)
                and threading.get_ident() == self.sim.server.loop_thread_id)

    def __enter__(self) -> HoldMessages:
        from bt_ibkr.gateway_sim.connection import ClientConnection

        orig = self._orig = ClientConnection.send
        hold = self

        def send(conn, fields):
            if hold._hold(conn, fields):
                hold.held.append((conn, list(fields)))
                return None
            return orig(conn, fields)

        ClientConnection.send = send
        return self

    def ids(self) -> list[int]:
        """The ids of the messages held so far, in order."""
        return [int(fields[0]) for _, fields in self.held]

    def release(self) -> None:
        """Send the held messages now (on the simulator's loop, in the order they were held)
        and stop holding."""
        from bt_ibkr.gateway_sim.connection import ClientConnection

        orig, self._orig = self._orig, None
        if orig is not None:
            ClientConnection.send = orig
        held, self.held = self.held, []
        if held:
            self.sim.call(lambda: [orig(s, f) for s, f in held])

    def __exit__(self, *exc: object) -> None:
        self.release()


def stream_config(tmp_path, port: int, **extra):
    """A stream run's LiveConfig against the simulator on ``port``, its journal, logs and
    equity under ``tmp_path``; ``extra`` overrides (dotted keys) go on top."""
    from bt_ibkr.live.config import load_config

    values = {"run_mode": "stream", "bar_size": "5 secs", "connection.port": port,
              "paths.journal": str(tmp_path / "journal.sqlite"),
              "paths.logs": str(tmp_path / "logs"), "paths.equity": str(tmp_path / "equity.csv")}
    values.update(extra)
    return load_config(None, env={}, overrides=values)


def our_ref(journal, tail: str = "RAE:SPY:20161230:1", account: str = "DU1234567") -> str:
    """The orderRef a journal at ``journal`` trading ``account`` gives a decision (``tail``:
    strategy tag, symbol, decision time, seq): ``bt2:<the journal's identity>:<tail>``."""
    from bt_ibkr.live.journal import journal_identity
    from bt_ibkr.live.run_lock import journal_path

    return f"bt2:{journal_identity(account, journal_path(journal))}:{tail}"
