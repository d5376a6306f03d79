"""``GatewaySim``: the simulator on its own event loop in a background thread.

The test (or demo) keeps its main thread for the client, e.g. ib_async's synchronous API::

    with GatewaySim(data="sample") as sim:
        ib = IB(); ib.connect(sim.host, sim.port, clientId=1)
        bars = ib.reqRealTimeBars(contract, 5, "TRADES", False)
        sim.advance(seconds=60)          # emits 12 five-second bars, calls broker.on_bar
        ib.sleep(0.1)                    # let the client read them

Every method is thread-safe: it runs the work on the simulator's loop and waits for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np

from bt_ibkr.errors import ConnectionFailedError
from bt_ibkr.gateway_sim.server import MAX_SERVER_VERSION, FaultPlan, GatewayServer

T = TypeVar("T")


class GatewaySim:
    """A simulated IB Gateway on 127.0.0.1, served from a background thread.

    Args:
        account: the paper account id the gateway manages.
        data: ``"synthetic"`` (seeded GBM) or ``"sample"`` (arch's real S&P 500 / NASDAQ).
        seed: synthetic data seed.
        port: TCP port (0 = a free port; read ``.port`` after ``start()``).
        start: simulated start time, tz-aware (naive = UTC); default 2017-01-03 09:30
            New York for sample, 2024-01-02 09:30 New York for synthetic. A running clock
            (``speed > 0``) starts from it when serving begins.
        speed: simulated seconds per real second (0 = only ``advance()`` moves the clock).
        max_server_version: highest TWS server version to negotiate (157..178).
        pacing: enforce IB's historical pacing (off by default); ``pacing_scale`` shrinks its
            windows (0.01 = 100x faster); ``pacing_clock`` (a callable returning seconds,
            default ``time.monotonic``) is the clock it enforces them on, e.g. a test's
            controlled clock shared with the client's pacer.
        host: must be loopback; anything else raises ConfigError.
        next_valid_id: the first nextValidId.
        broker_options: keyword arguments for the order engine (SimBroker), e.g.
            ``{"fill_mode": "next_bar", "cash": 100_000.0}``.
        live_data: False simulates an account without live market-data subscriptions:
            reqMktData in live mode gets error 10089, in delayed mode warning 10167 + ticks.
        master_client_id: TWS's *Master API client ID* setting (empty by default): the client
            connected with that id also receives every other client's order status, openOrder
            and execution messages. None: no master client, as TWS and IB Gateway ship.
    """

    def __init__(self, account: str = "DU1234567", data: str = "synthetic", seed: int = 0,
                 port: int = 0, start: datetime | None = None, speed: float = 0.0,
                 max_server_version: int = MAX_SERVER_VERSION, pacing: bool = False,
                 pacing_scale: float = 1.0, host: str = "127.0.0.1",
                 next_valid_id: int = 1, broker_options: dict | None = None,
                 live_data: bool = True,
                 pacing_clock: Callable[[], float] | None = None,
                 master_client_id: int | None = None) -> None:
        self.server = GatewayServer(
            account=account, data=data, seed=seed, start=start, speed=speed,
            max_server_version=max_server_version, pacing=pacing, pacing_scale=pacing_scale,
            pacing_clock=pacing_clock, host=host, next_valid_id=next_valid_id,
            broker_options=broker_options, live_data=live_data,
            master_client_id=master_client_id)
        self._want_port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> GatewaySim:
        """Start serving in a background thread; return self once the port is bound.

        Raises ConnectionFailedError when the port is in use.
        """
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.server.start(self._want_port))
            except BaseException as exc:  # report to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="gateway-sim", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise ConnectionFailedError("gateway_sim did not start within 30 s")
        if failure:
            self._thread.join(5)
            self._thread = None
            self._loop = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection, stop listening and end the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._loop = None

    def __enter__(self) -> GatewaySim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ properties
    @property
    def host(self) -> str:
        """Return the bound host (always 127.0.0.1)."""
        return self.server.host

    @property
    def port(self) -> int:
        """Return the bound TCP port (valid after ``start()``)."""
        return self.server.port

    @property
    def account(self) -> str:
        """Return the managed account id."""
        return self.server.account

    @property
    def requests(self) -> list[tuple[int, int, str, tuple[str, ...]]]:
        """Return the recorded client requests as ``(client_id, msg_id, name, fields)``."""
        return self.server.requests

    @property
    def faults(self) -> FaultPlan:
        """Return the fault plan (``reject_next_order``, ``delays``, ``drops``)."""
        return self.server.faults

    @property
    def broker(self) -> Any:
        """Return the order engine (None until sim-orders' register() installed one)."""
        return self.server.broker

    @property
    def contracts(self):
        """Return the ContractDB."""
        return self.server.contracts

    @property
    def market(self):
        """Return the MarketData."""
        return self.server.market

    def now(self) -> datetime:
        """Return the simulated time (tz-aware UTC)."""
        return self.server.clock.now()

    def requests_named(self, name: str) -> list[tuple[int, int, str, tuple[str, ...]]]:
        """Return the recorded requests whose message name is ``name`` (e.g. 'placeOrder')."""
        return [r for r in self.requests if r[2] == name]

    def wait_for_request(self, name: str, count: int = 1, timeout: float = 5.0,
                         pump: Callable[[float], object] | None = None) -> list[tuple]:
        """Wait until at least ``count`` requests named ``name`` arrived; return them.

        Client requests are fire-and-forget, so call this before ``advance()`` to be sure
        the server has seen a subscription. ``pump(seconds)`` (e.g. ``ib.sleep``) is called
        while waiting so a single-threaded client keeps running. Raises TimeoutError.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests_named(name)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway_sim saw {len(found)} {name} request(s), "
                                   f"expected {count} within {timeout} s")
            if pump is not None:
                pump(0.01)
            else:
                time.sleep(0.01)

    # ------------------------------------------------------------ run on the loop
    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` (sync or async) on the simulator's loop and return its result."""
        if self._loop is None:
            raise RuntimeError("GatewaySim is not running: call start() first")

        async def runner() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(runner(), self._loop).result(120)

    # ------------------------------------------------------------ clock
    def advance(self, seconds: float = 0.0, minutes: float = 0.0, hours: float = 0.0) -> datetime:
        """Advance the simulated clock, emitting every 5-second bar/update/tick in between and
        calling ``broker.on_bar`` per step; return the new time."""
        total = seconds + 60.0 * minutes + 3600.0 * hours
        return self.call(self.server.advance, total)

    def advance_days(self, days: int = 1) -> datetime:
        """Advance to the same New York wall time ``days`` trading days later (trading days
        of the SPY series), emitting everything in between; return the new time."""
        target = self.next_trading_time(days)
        seconds = (target - self.now()).total_seconds()
        return self.advance(seconds=max(seconds, 0.0))

    def next_trading_time(self, days: int = 1) -> datetime:
        """Return the instant ``days`` trading days after now at the same New York wall time."""
        ny = ZoneInfo("America/New_York")
        now_local = self.now().astimezone(ny)
        spy = self.server.contracts.by_symbol("SPY", "STK")
        series = self.server.market.series(spy) if spy is not None else None
        day = now_local.date()
        for _ in range(days):
            if series is not None:
                i = int(np.searchsorted(series.dates, np.datetime64(day), side="right"))
                if i >= len(series.dates):
                    day = day + timedelta(days=1)
                else:
                    day = series.session_date(i)
            else:
                day = day + timedelta(days=1)
                while day.weekday() >= 5:
                    day = day + timedelta(days=1)
        local = datetime.combine(day, now_local.time().replace(tzinfo=None), tzinfo=ny)
        return local.astimezone(ZoneInfo("UTC"))

    def set_speed(self, speed: float) -> None:
        """Change the clock speed (simulated seconds per real second; 0 = explicit only)."""
        self.server.clock.set_speed(speed)
        if speed > 0:
            self.call(self._ensure_driver)

    def _ensure_driver(self) -> None:
        if self.server._driver is None:
            self.server._driver = asyncio.get_running_loop().create_task(self.server._drive())

    # ------------------------------------------------------------ faults
    def connected_clients(self) -> list[int]:
        """Return the client ids of the API clients connected now (started, socket open), in
        the order they connected."""
        return self.call(lambda: [c.client_id for c in self.server.connections if not c.closed])

    def drop_connections(self) -> None:
        """Close every client socket (clients see a disconnect); keep listening."""
        self.call(self.server.drop_all)

    def notice(self, code: int, message: str | None = None) -> None:
        """Send a system notice to every client (1100 lost, 1101 restored-data lost, 1102
        restored-data maintained, or any other code)."""
        self.call(self.server.notice, code, message)

    def connectivity_lost(self) -> None:
        """Send notice 1100."""
        self.notice(1100)

    def connectivity_restored(self, data_lost: bool = False) -> None:
        """Send notice 1101 (data lost: market-data subscriptions dropped) or 1102."""
        self.notice(1101 if data_lost else 1102)

    def restart(self, rollback_ids: bool = True, rollback_to: int = 1,
                downtime: float = 0.0, account: str | None = None) -> None:
        """Simulate a gateway restart: drop all clients; roll nextValidId back to
        ``rollback_to``; refuse connections for ``downtime`` real seconds. Orders and
        positions persist. ``account``: it comes back logged into that account (a live
        ``U...`` or another paper ``DU...``), whose positions and orders are its own."""
        self.call(self.server.restart, rollback_ids, rollback_to, downtime, account)

    def assign_early(self, option_con_id: int, contracts: float, account: str = "") -> None:
        """Assign ``contracts`` of a short option position (conId ``option_con_id``) of
        ``account`` ("" = the login's) before its expiry: the position shrinks and the
        delivery is booked at the strike, without an execution (option_expiry.py)."""
        contract = self.contracts.by_conid(option_con_id)
        self.call(self.server.options.expiry.assign_early, account, contract, contracts)

    def add_account(self, account: str, cash: float | None = None) -> None:
        """Let the login manage ``account`` as well (managedAccounts lists both from the next
        connect; orders naming it are booked in its own ledger; reqPositions reports every
        managed account's positions; account values, portfolio rows, PnL and positionsMulti
        answer for the account asked for, account summaries list every account)."""
        self.call(self.server.broker.accounts.add, account, cash)

    def reject_next_order(self, code: int = 201,
                          reason: str = "Order rejected - reason:simulated rejection") -> None:
        """Make the order engine reject the next placeOrder with ``code``/``reason``."""
        self.server.faults.reject_next_order = (code, reason)

    def what_if_without_margin(self, count: int = 1) -> None:
        """Answer the next ``count`` whatIf orders with every margin field unset (IB's
        UNSET_DOUBLE), as TWS does when it computes no margin for an order."""
        self.server.faults.what_if_unset = int(count)

    def delay_replies(self, msg_id: int, seconds: float) -> None:
        """Hold every reply to requests with ``msg_id`` for ``seconds`` (0 clears it)."""
        if seconds <= 0:
            self.server.faults.delays.pop(msg_id, None)
        else:
            self.server.faults.delays[msg_id] = seconds

    def edit_bars(self, symbol: str, edit: Callable[[list], list]) -> None:
        """Pass every later historical reply for ``symbol`` through ``edit(bars) -> bars``
        (bars are :class:`~bt_ibkr.gateway_sim.marketdata.Bar`, oldest first)."""
        self.server.faults.bar_edits.setdefault(symbol, []).append(edit)

    def corrupt_newest_bar(self, symbol: str, **values: float) -> None:
        """Serve the newest bar of ``symbol``'s historical replies with ``values`` (e.g.
        ``close=float("nan")`` or ``low=-1.0``): bad data from the gateway. A NaN goes on the
        wire as the text ``NaN`` (how a Java double prints it), not as an empty field."""
        values = {k: ("NaN" if isinstance(v, float) and math.isnan(v) else v)
                  for k, v in values.items()}

        def edit(bars: list) -> list:
            return bars[:-1] + [dataclasses.replace(bars[-1], **values)] if bars else bars
        self.edit_bars(symbol, edit)

    def add_future_bar(self, symbol: str, days: int = 7) -> None:
        """Append to ``symbol``'s daily historical replies a copy of the newest bar stamped
        ``days`` calendar days later (a bar from the future: a clock or time-zone error)."""
        def edit(bars: list) -> list:
            if not bars or bars[-1].day is None:
                return bars
            last = bars[-1]
            return bars + [dataclasses.replace(last, start=last.start + days * 86400,
                                               day=last.day + timedelta(days=days))]
        self.edit_bars(symbol, edit)

    def delay_realtime_bars(self, symbol: str, seconds: float) -> None:
        """Send ``symbol``'s 5-second real-time bars ``seconds`` of SIMULATED time after their
        period ended instead of at once (one contract's bars behind the others' of the same
        period); the clock, not a sleep, releases them, so a test decides when they arrive.
        ``seconds <= 0`` clears the lag and sends the held bars now."""
        if seconds > 0:
            self.server.faults.rt_bar_lags[symbol] = float(seconds)
            return
        self.server.faults.rt_bar_lags.pop(symbol, None)
        self.call(self.server.market_data.release_held, self.now().timestamp())

    def drop_replies(self, msg_id: int, n: int = 1) -> None:
        """Send no reply at all to the next ``n`` requests with ``msg_id``."""
        self.server.faults.drops[msg_id] = n

    def next_order_id(self) -> int:
        """Return the id the next nextValidId message would carry."""
        return self.server.next_order_id()
