"""The simulated IB Gateway: TWS socket protocol on loopback, one asyncio loop.

Architecture
------------
``GatewayServer`` owns one ``asyncio`` server bound to 127.0.0.1 (never any other address).
Each accepted socket becomes a ``ClientConnection``:

1. handshake: raw ``API\\0``, then the client's ``v<min>..<max>`` range; the server answers
   ``[version, connTime]`` with ``version = min(max_server_version, client max)`` and closes the
   socket (logging why) when that is below ``max(157, client min)``;
2. ``startApi`` (71) carries the clientId: a clientId already connected gets error 326 and the
   socket is closed; otherwise the connection is *started*: ``nextValidId`` (9),
   ``managedAccounts`` (15) and the farm notices 2104/2106/2158 are sent;
3. every later message is recorded (``requests``), logged as one line and dispatched through
   ``handlers[msg_id](conn, reader)``.

The market is driven by a ``SimClock`` (``clock.py``): ``advance()``/``catch_up()`` walk the
clock forward in 5-second steps; at each step inside a contract's session the server sends the
5-second real-time bars (50), keepUpToDate updates (90) and ticks (1/2) of every subscription
on that contract, and calls ``broker.on_bar(contract, quote)``. With a frozen clock
(``speed=0``, the test default) ``advance()`` moves ``clock.now()`` to each step before emitting
it; with ``speed > 0`` a background task catches up every few real milliseconds. Steps only
happen inside sessions (gaps between sessions are skipped in one jump).

Served requests (besides startApi): 8 reqIds, 49 reqCurrentTime (the SIMULATED clock),
17 reqManagedAccts; the market-data side (``marketdata_handlers``): 59 reqMarketDataType,
9 reqContractDetails (10/52, version-correct; unknown -> error 200 only), 20/25
reqHistoricalData/cancel (17, keepUpToDate -> 90), 50/51 real-time bars, 1/2 reqMktData/cancel
(58 + ticks 1/2, delayed ids 66-76 in market data type 3/4, RTVolume tickString 48 for generic
tick 233, snapshots end with 57), 87 reqHeadTimeStamp. Clients and faults: ``connection``.
Until ``order_handlers.register`` replaces them, the startup-sync requests (61, 5, 16, 99, 6,
76, 62, 7, 15) get empty but valid replies and placeOrder is rejected with 201.

Options: ``broker_options`` (dict handed to SimBroker by register), ``live_data=False``
(no live market-data subscription: live reqMktData -> 10089, delayed -> warning 10167),
``master_client_id`` (TWS's *Master API client ID*: that client also gets every other
client's order messages; see ``order_handlers``),
``pacing`` / ``pacing_scale`` / ``pacing_clock`` (``pacing.py``), ``max_server_version``,
``next_valid_id``.

Extension interface (what ``order_handlers.register(server)`` codes against)
---------------------------------------------------------------------------
``ClientConnection``
    ``client_id: int`` (from startApi), ``server_version: int`` (negotiated),
    ``send(fields: list) -> None`` (frame and write; non-blocking; thread-safe; honours the
    delay/drop faults of the request being handled), ``subscriptions: dict`` (free-form state
    for handlers, e.g. ``{"positions": True}``), ``closed: bool``.
``GatewayServer``
    ``account: str``; ``connections: list[ClientConnection]`` (connected *and started*);
    ``contracts: ContractDB`` (``.resolve(conId=, symbol=, secType=, exchange=, currency=,
    lastTradeDateOrContractMonth=) -> SimContract | None``, ``.by_conid(conId)``);
    ``clock: SimClock`` (``.now()`` tz-aware UTC); ``market: MarketData``
    (``.quote(contract) -> Quote | None``); ``broker`` (set by ``register``; the server calls
    ``broker.on_bar(contract, quote)`` at every clock step for the contracts in
    ``broker.active_conids()`` when that method exists, else for every contract with data);
    ``handlers: dict[int, Callable[[ClientConnection, FieldReader], None | Awaitable[None]]]``
    — the reader is positioned just after the message id (a version field, if the message has one,
    is NOT consumed); ``next_order_id() -> int`` (the id the next ``nextValidId`` would carry;
    placeOrder ids bump it; ``restart(rollback_ids=True)`` rolls it back);
    ``error(conn, req_id, code, message, advanced_json="")`` (msg 4 with the
    version-correct field count; ``conn=None`` sends to every connection);
    ``faults: FaultPlan`` (``reject_next_order: tuple[int, str] | None`` is consumed by the
    order handlers).

Everything runs on the server's event loop; handlers must not block.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bt_ibkr.errors import ConfigError, ConnectionFailedError
from bt_ibkr.gateway_sim.clock import SimClock
from bt_ibkr.gateway_sim.connection import ClientConnection, FaultPlan, reply_context
from bt_ibkr.gateway_sim.contracts_db import ContractDB
from bt_ibkr.gateway_sim.marketdata import (
    MarketData,
)
from bt_ibkr.gateway_sim.marketdata_handlers import MarketDataRouter
from bt_ibkr.gateway_sim.model import SimContract
from bt_ibkr.gateway_sim.options import install as install_options
from bt_ibkr.gateway_sim.order_codec import account_download_end_fields, account_time_fields
from bt_ibkr.gateway_sim.pacing import PacingGuard
from bt_ibkr.gateway_sim.wire import MSG_NAMES, FieldReader, split_fields
from bt_ibkr.ib.codes import SIMULATOR_BRAND

log = logging.getLogger("bt_ibkr.gateway_sim")

MIN_SERVER_VERSION = 157
MAX_SERVER_VERSION = 178
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

NOTICES: dict[int, str] = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
    2103: "Market data farm connection is broken:usfarm",
    2104: "Market data farm connection is OK:usfarm",
    2105: "HMDS data farm connection is broken:ushmds",
    2106: "HMDS data farm connection is OK:ushmds",
    2158: "Sec-def data farm connection is OK:secdefnj",
}

Handler = Callable[["ClientConnection", FieldReader], "None | Awaitable[None]"]

class GatewayServer:
    """The simulated gateway (see the module docstring). Create, then ``await start()``.

    Raises ConfigError for a non-loopback ``host`` or a bad option.
    """

    def __init__(
        self,
        account: str = "DU1234567",
        data: str = "synthetic",
        seed: int = 0,
        start: datetime | None = None,
        speed: float = 0.0,
        max_server_version: int = MAX_SERVER_VERSION,
        pacing: bool = False,
        pacing_scale: float = 1.0,
        pacing_clock: Callable[[], float] | None = None,
        host: str = "127.0.0.1",
        next_valid_id: int = 1,
        install_orders: bool = True,
        broker_options: dict | None = None,
        live_data: bool = True,
        master_client_id: int | None = None,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"gateway_sim host {host!r} refused: the simulator only binds loopback "
                f"(127.0.0.1); drop --host or pass 127.0.0.1")
        if not account:
            raise ConfigError("gateway_sim needs a non-empty account id, e.g. 'DU1234567'")
        if data not in ("synthetic", "sample"):
            raise ConfigError(f"gateway_sim data must be 'synthetic' or 'sample', got {data!r}")
        if max_server_version < 100:
            raise ConfigError(f"max_server_version {max_server_version} is not a TWS version")
        self.host = "127.0.0.1"
        self.account = account
        self.max_server_version = min(int(max_server_version), MAX_SERVER_VERSION)
        if start is None:
            start = default_start(data)
        self.clock = SimClock(start, speed=speed)
        self._start = self.clock.now()
        self._started_once = False
        self.contracts = ContractDB(self.clock.now())
        self.market = MarketData(self.clock, data=data, seed=seed)
        #: True: at each step fill orders first, then send the bars (gateway_sim.frames)
        self.fills_first = False
        #: price events per step for the order engine (>1: partial fills at one price)
        self.fill_rounds = 1
        #: paced clock (see :meth:`pace`): epoch seconds still to step to, or None
        self.paced_steps: deque[int] | None = None
        self.faults = FaultPlan()
        self.pacing: PacingGuard | None = PacingGuard(
            scale=pacing_scale, clock=pacing_clock or time.monotonic) if pacing else None
        self.connections: list[ClientConnection] = []
        self._pending: list[ClientConnection] = []
        self.handlers: dict[int, Handler] = {}
        #: observers of every message a client sends, called (loop thread) before it is handled
        self.on_message: list[Callable[[ClientConnection, list[str]], None]] = []
        self.market_data = MarketDataRouter(self)
        self.options = install_options(self)  # the SPY chain and reqSecDefOptParams (78)
        self.broker = None
        #: keyword arguments order_handlers.register() passes to SimBroker (fill_mode, cash, ...)
        self.broker_options: dict = dict(broker_options or {})
        #: False = the account has no live market-data subscription (a typical paper account):
        #: live requests get error 10089, delayed ones warning 10167 plus delayed ticks
        self.live_data = bool(live_data)
        #: TWS's "Master API client ID" setting (API -> Settings; empty by default): the client
        #: connected with it also receives the order status, openOrder and execution messages
        #: of every other client's orders. None = no master, as TWS ships
        self.master_client_id = None if master_client_id is None else int(master_client_id)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread_id: int | None = None
        self.port: int = 0
        self._server: asyncio.Server | None = None
        self._next_id = int(next_valid_id)
        self._refuse_until = 0.0
        self._requests: list[tuple[int, int, str, tuple[str, ...]]] = []
        self._req_lock = threading.Lock()
        self._emitted = _floor5(self.clock.now().timestamp())
        self._step_lock: asyncio.Lock | None = None
        self._driver: asyncio.Task | None = None
        self._install_defaults()
        if install_orders:
            self._install_order_handlers()

    # ------------------------------------------------------------ lifecycle
    def _install_order_handlers(self) -> None:
        if importlib.util.find_spec("bt_ibkr.gateway_sim.order_handlers") is None:
            log.info("order engine not installed (bt_ibkr.gateway_sim.order_handlers missing): "
                     "startup sync answers empty, orders are rejected")
            return
        order_handlers = importlib.import_module("bt_ibkr.gateway_sim.order_handlers")
        order_handlers.register(self)

    async def start(self, port: int = 0) -> int:
        """Bind 127.0.0.1:``port`` (0 = any free port) and start serving; return the port.

        Raises ConnectionFailedError naming the port when it is already in use.
        """
        self.loop = asyncio.get_running_loop()
        self.loop_thread_id = threading.get_ident()
        self._step_lock = asyncio.Lock()
        # build the price series now (importing arch takes ~1 s) so no request stalls later
        await self.loop.run_in_executor(None, self._warm_up)
        if not self._started_once:  # a running clock starts at `start` when serving begins
            self._started_once = True
            self.clock.set(self._start)
            self._emitted = _floor5(self._start.timestamp())
        try:
            self._server = await asyncio.start_server(self._on_client, self.host, port)
        except OSError as exc:
            raise ConnectionFailedError(
                f"gateway_sim cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}. "
                f"Is another gateway or simulator using port {port}? Pick another --port.",
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if self.clock.speed > 0:
            self._driver = asyncio.create_task(self._drive())
        log.info("gateway_sim listening on 127.0.0.1:%d (account %s, v%d max, clock %s)",
                 self.port, self.account, self.max_server_version,
                 self.clock.now().isoformat())
        return self.port

    def _warm_up(self) -> None:
        for symbol in ("SPY", "SPX", "COMP"):
            contract = self.contracts.by_symbol(symbol)
            if contract is not None:
                self.market.series(contract)

    async def stop(self) -> None:
        """Stop listening and close every connection (G14)."""
        self._stopped = True
        if self._driver is not None:
            self._driver.cancel()
            self._driver = None
        if self._server is not None:
            self._server.close()
        self.drop_all()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass
            self._server = None
        log.info("gateway_sim on port %d stopped", self.port)

    async def _drive(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, max(0.02, 5.0 / max(self.clock.speed, 1e-9))))
            try:
                await self.catch_up()
            except Exception:  # keep the clock running; the log shows the bug
                log.exception("gateway_sim clock step failed")

    # ------------------------------------------------------------ test/fault API
    @property
    def requests(self) -> list[tuple[int, int, str, tuple[str, ...]]]:
        """Return a copy of the recorded ``(client_id, msg_id, name, fields)`` requests."""
        with self._req_lock:
            return list(self._requests)

    def next_order_id(self) -> int:
        """Return the id the next nextValidId message carries."""
        return self._next_id

    def note_order_id(self, order_id: int) -> None:
        """Bump the nextValidId counter past ``order_id`` (called for every placeOrder)."""
        self._next_id = max(self._next_id, int(order_id) + 1)

    def error(self, conn: ClientConnection | None, req_id: int, code: int, message: str,
              advanced_json: str = "") -> None:
        """Send error/notice msg 4 to ``conn`` (None: every started connection)."""
        targets = [conn] if conn is not None else list(self.connections)
        for s in targets:
            fields: list = [4, 2, req_id, code, message]
            if s.server_version >= 166:
                fields.append(advanced_json)
            s.send(fields)

    def drop_all(self) -> None:
        """Close every client connection; the server keeps listening."""
        for s in list(self.connections) + list(self._pending):
            s.close()
        self.connections.clear()
        self._pending.clear()

    def notice(self, code: int, message: str | None = None) -> None:
        """Send a system notice (reqId -1), e.g. 1100/1101/1102, to every client.

        1101 ("data lost") also drops every market-data subscription, as TWS does; clients
        must resubscribe.
        """
        text = message or NOTICES.get(code, f"notice {code}")
        self.error(None, -1, code, text)
        if code == 1101:
            for s in self.connections:
                s.market_subs.clear()
                s.rt_subs.clear()
                s.hist_subs.clear()

    def restart(self, rollback_ids: bool = True, rollback_to: int = 1,
                downtime: float = 0.0, account: str | None = None) -> None:
        """Simulate a gateway restart: drop every connection, optionally roll nextValidId back
        to ``rollback_to`` and be down for ``downtime`` real seconds. Orders, positions and
        executions persist; ``account``: it comes back logged into that account instead.

        While down, the port is closed like a restarting IB Gateway's (clients get "connection
        refused" at once); it listens again on the same port afterwards. Call on the server's
        loop (GatewaySim.restart does)."""
        self.drop_all()
        if account:  # it comes back logged into another account (login_as)
            self.login_as(account)
        if rollback_ids:
            self._next_id = int(rollback_to)
        self._refuse_until = time.monotonic() + max(downtime, 0.0)
        if downtime > 0 and self._server is not None and self.loop is not None:
            self._server.close()
            self._server = None
            self.loop.call_later(downtime, lambda: self.loop.create_task(self._relisten()))
        log.info("fault: gateway restart (next id %d, down %.2fs)", self._next_id, downtime)

    def managed_accounts_text(self) -> str:
        """Return the managedAccounts (15) text: the login's account, then any other account
        it manages (``broker.accounts``), comma-separated as TWS sends them."""
        accounts = getattr(self.broker, "accounts", None)  # None before the order handlers
        return ",".join(accounts.names()) if accounts is not None else self.account

    def login_as(self, account: str) -> None:
        """Log the gateway into ``account`` (as after a restart with another user): the
        managed accounts, positions, cash, orders and executions clients see from now on are
        that account's (a new one starts empty with the configured cash); the previous
        account's are kept and come back when it logs in again. Call on the server's loop
        (GatewaySim.restart(account=...) does)."""
        if not account:
            raise ConfigError("gateway_sim login_as needs a non-empty account id")
        if account == self.account:
            return
        logins = self.__dict__.setdefault("_logins", {})
        logins[self.account] = (self.broker, getattr(self, "order_router", None))
        self.account = account
        if account in logins:
            self.broker, self.order_router = logins[account]
            if self.order_router is not None:
                self.order_router.install_handlers()
        else:
            from bt_ibkr.gateway_sim.order_handlers import register

            register(self)
        log.info("fault: gateway now logged into %s", account)

    async def _relisten(self) -> None:
        """Listen on the same port again after a restart's downtime (not after stop())."""
        if getattr(self, "_stopped", False):
            return
        try:
            self._server = await asyncio.start_server(self._on_client, self.host, self.port)
            log.info("gateway_sim back up on 127.0.0.1:%d", self.port)
        except OSError as exc:  # the port was taken meanwhile: stay down, say so
            log.error("gateway_sim cannot listen again on 127.0.0.1:%d: %s", self.port, exc)

    def pace(self, steps: list[int] | None) -> None:
        """Let the client pace the frozen clock: from now on, each reqCurrentTime first
        advances the clock to the next epoch second of ``steps`` (emitting that step's fills
        and bars), then answers with the new time; once ``steps`` are used up, or with None,
        reqCurrentTime only tells the time. A client that asks after it has decided on a bar
        (its orders go first on the same socket) gets the next bar only then, so the run is
        the same as a driver waiting for each decision, without the driver's round trips
        (bt_ibkr.parity.paths). Call on the server's loop."""
        self.paced_steps = deque(int(t) for t in steps) if steps is not None else None

    async def _on_current_time(self, conn: ClientConnection, reader: FieldReader) -> None:
        """49 reqCurrentTime -> 49 currentTime (the simulated clock; paced: step first)."""
        if self.paced_steps:
            target = self.paced_steps.popleft()
            await self.advance(max(target - self.clock.now().timestamp(), 0.0))
        conn.send([49, 1, int(self.clock.now().timestamp())])

    async def advance(self, seconds: float) -> datetime:
        """Advance the simulated clock by ``seconds`` and emit everything in between; return
        the new time.

        With a frozen clock (speed 0) the clock is walked step by step, so while a step's bars
        and ``broker.on_bar`` run, ``clock.now()`` is that step's time (fills and requests
        handled in between are stamped in order).
        """
        if seconds < 0:
            raise ValueError(f"the simulated clock cannot go back ({seconds} s)")
        if self.clock.speed > 0:
            self.clock.advance(seconds)
            await self.catch_up()
        else:
            await self.catch_up(until=self.clock.now() + timedelta(seconds=seconds))
        return self.clock.now()

    async def catch_up(self, until: datetime | None = None) -> None:
        """Emit every 5-second step after the last emitted one up to ``until`` (default
        ``clock.now()``); with ``until`` the clock is moved to each step and finally to it."""
        assert self._step_lock is not None
        async with self._step_lock:
            end = until if until is not None else self.clock.now()
            target = _floor5(end.timestamp())
            t = self._emitted + 5
            steps = 0
            while t <= target:
                contracts = self._relevant_contracts()
                active = [c for c in contracts if self.market.in_session(c, t - 1)]
                if not active:
                    opens = [o for o in (self.market.next_open(c, t - 1) for c in contracts)
                             if o is not None]
                    if not opens or min(opens) > target:
                        break
                    t = _floor5(min(opens)) + 5
                    continue
                if until is not None:
                    self.clock.set(datetime.fromtimestamp(t, UTC))
                self.market_data.release_held(t)  # bars held back by faults.rt_bar_lags
                self.options.on_step(t)  # options held past their expiry: exercise or expire
                if self.fills_first:  # see frames.py: a session compressed to one step
                    for c in active:
                        await self._step_broker(c, t)
                    for c in active:
                        for s in list(self.connections):
                            self.market_data.step(s, c, t)
                else:
                    for c in active:
                        await self._step(c, t)
                t += 5
                steps += 1
                if steps % 100 == 0:
                    await asyncio.sleep(0)
            if until is not None:
                self.clock.set(end)
            self.market_data.release_held(end.timestamp())
            self._emitted = max(self._emitted, target)

    def _relevant_contracts(self) -> list[SimContract]:
        by_id: dict[int, SimContract] = {}
        for s in self.connections:
            for sub in (*s.market_subs.values(), *s.rt_subs.values(), *s.hist_subs.values()):
                by_id[sub.contract.conId] = sub.contract
        if self.broker is not None:
            active = getattr(self.broker, "active_conids", None)
            ids = active() if callable(active) else [c.conId for c in self.contracts.all()]
            for con_id in ids:
                c = self.contracts.by_conid(con_id)
                if c is not None:
                    by_id[c.conId] = c
        return list(by_id.values())

    async def _step(self, contract: SimContract, t: int) -> None:
        for s in list(self.connections):
            self.market_data.step(s, contract, t)
        await self._step_broker(contract, t)

    async def _step_broker(self, contract: SimContract, t: int) -> None:
        await self._broker_bar(contract, t)
        if self.fill_rounds > 1 and self.broker is not None:
            for _ in range(self.fill_rounds - 1):  # more executions while orders keep filling
                before = len(self.broker.executions())
                await self._broker_bar(contract, t)
                if len(self.broker.executions()) == before:
                    break

    async def _broker_bar(self, contract: SimContract, t: int) -> None:
        if self.broker is not None:
            active = getattr(self.broker, "active_conids", None)
            if not callable(active) or contract.conId in active():
                quote = self.market.quote_at(contract, t)
                if quote is not None:
                    result = self.broker.on_bar(contract, quote)
                    if inspect.isawaitable(result):
                        await result

    # ------------------------------------------------------------ connection handling
    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        conn = ClientConnection(self, reader, writer)
        self._pending.append(conn)
        try:
            if time.monotonic() < self._refuse_until:
                log.info("refusing %s: gateway is restarting", conn.peer)
                return
            if not await self._handshake(conn):
                return
            while not conn.closed:
                head = await reader.readexactly(4)
                size = int.from_bytes(head, "big")
                if size > MAX_MESSAGE_BYTES:
                    log.warning("client %d sent a %d-byte message (limit %d): closing",
                                conn.client_id, size, MAX_MESSAGE_BYTES)
                    return
                payload = await reader.readexactly(size)
                await self._dispatch(conn, split_fields(payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gateway_sim: connection %r failed", conn)
        finally:
            if conn in self._pending:
                self._pending.remove(conn)
            if conn in self.connections:
                self.connections.remove(conn)
            if not conn.closed:
                log.info("client %d disconnected", conn.client_id)
            conn.close()

    async def _handshake(self, conn: ClientConnection) -> bool:
        prefix = await conn.reader.readexactly(4)
        if prefix != b"API\0":
            log.warning("refusing %s: expected the API\\0 prefix, got %r", conn.peer, prefix)
            return False
        size = int.from_bytes(await conn.reader.readexactly(4), "big")
        text = (await conn.reader.readexactly(size)).decode(errors="replace")
        m = re.match(r"v(\d+)(?:\.\.(\d+))?", text.strip())
        if not m:
            log.warning("refusing %s: bad version string %r", conn.peer, text)
            return False
        cmin = int(m.group(1))
        cmax = int(m.group(2) or m.group(1))
        version = min(self.max_server_version, cmax)
        if version < max(cmin, MIN_SERVER_VERSION):
            log.warning(
                "refusing %s: client speaks v%d..%d, simulator offers up to v%d (minimum %d); "
                "closing", conn.peer, cmin, cmax, self.max_server_version, MIN_SERVER_VERSION)
            return False
        conn.server_version = version
        conn_time = self.clock.now().astimezone(ZoneInfo("America/New_York"))
        conn.send([version, conn_time.strftime("%Y%m%d %H:%M:%S %Z")])
        return True

    def _start_api(self, conn: ClientConnection, fields: list[str]) -> None:
        client_id = int(fields[2]) if len(fields) > 2 and fields[2] else 0
        conn.client_id = client_id
        if any(s.client_id == client_id and not s.closed for s in self.connections):
            log.warning("client id %d already in use: error 326, closing", client_id)
            self.error(conn, -1, 326, "Unable to connect as the client id is already in "
                       "use. Retry with a unique client id.")
            conn.close()
            return
        if conn in self._pending:
            self._pending.remove(conn)
        self.connections.append(conn)
        conn.started = True
        conn.send([9, 1, self._next_id])
        conn.send([15, 1, self.managed_accounts_text()])
        for code in (2104, 2106, 2158):
            self.error(conn, -1, code, NOTICES[code])

    async def _dispatch(self, conn: ClientConnection, fields: list[str]) -> None:
        if not fields:
            return
        for observe in self.on_message:
            observe(conn, fields)
        try:
            msg_id = int(fields[0])
        except ValueError:
            log.warning("client %d sent a non-numeric message id %r", conn.client_id,
                        fields[0])
            return
        name = MSG_NAMES.get(msg_id, f"msg{msg_id}")
        client_id = conn.client_id
        if msg_id == 71 and len(fields) > 2 and fields[2].lstrip("-").isdigit():
            client_id = int(fields[2])
        with self._req_lock:
            self._requests.append((client_id, msg_id, name, tuple(fields)))
        log.info("client %d %s %s", client_id, name, _summary(fields))
        if msg_id == 71:
            if not conn.started:
                self._start_api(conn, fields)
            return
        if not conn.started:
            log.warning("client sent %s before startApi; ignored", name)
            return
        if msg_id == 3 and len(fields) > 1 and fields[1].lstrip("-").isdigit():
            self.note_order_id(int(fields[1]))
        handler = self.handlers.get(msg_id)
        if handler is None:
            log.info("client %d %s: not simulated, no reply", conn.client_id, name)
            return
        drop = False
        if self.faults.drops.get(msg_id, 0) > 0:
            self.faults.drops[msg_id] -= 1
            drop = True
        token = reply_context.set((msg_id, drop) if (drop or msg_id in self.faults.delays)
                               else None)
        try:
            reader = FieldReader(fields, name)
            reader.pos = 1
            result = handler(conn, reader)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("gateway_sim: handler for %s failed on %s", name, fields)
        finally:
            reply_context.reset(token)

    # ------------------------------------------------------------ default handlers
    def _install_defaults(self) -> None:
        h = self.handlers
        h[8] = lambda s, r: s.send([9, 1, self._next_id])
        h[49] = self._on_current_time
        h[17] = lambda s, r: s.send([15, 1, self.managed_accounts_text()])
        self.market_data.install()
        # empty-but-valid startup sync, replaced by order_handlers.register()
        h[61] = lambda s, r: s.send([62, 1])
        h[64] = lambda s, r: None
        h[5] = lambda s, r: s.send([53, 1])
        h[16] = lambda s, r: s.send([53, 1])
        h[15] = lambda s, r: None
        h[99] = lambda s, r: s.send([102])
        h[104] = lambda s, r: s.send([107, r.int(), SIMULATOR_BRAND])  # reqUserInfo -> userInfo
        h[6] = self._on_account_updates
        h[76] = lambda s, r: (r.skip(), s.send([74, 1, r.int()]))
        h[77] = lambda s, r: None
        h[62] = lambda s, r: (r.skip(), s.send([64, 1, r.int()]))
        h[63] = lambda s, r: None
        h[7] = lambda s, r: (r.skip(), s.send([55, 1, r.int()]))
        h[3] = self._on_place_order_unavailable
        h[4] = self._on_cancel_order_unavailable
        h[58] = lambda s, r: None

    def _on_place_order_unavailable(self, conn: ClientConnection, reader: FieldReader) -> None:
        order_id = reader.int()
        self.error(conn, order_id, 201, "Order rejected - reason:the simulator's order "
                   "engine (bt_ibkr.gateway_sim.order_handlers) is not installed")

    def _on_cancel_order_unavailable(self, conn: ClientConnection, reader: FieldReader) -> None:
        reader.skip()  # version
        order_id = reader.int()
        self.error(conn, order_id, 10147,
                   f"OrderId {order_id} that needs to be cancelled is not found.")

    def _on_account_updates(self, conn: ClientConnection, reader: FieldReader) -> None:
        reader.skip()
        subscribe = reader.bool()
        account = reader.str() or self.account
        if subscribe:
            now = self.clock.now().astimezone(ZoneInfo("America/New_York"))
            conn.send(account_time_fields(now))
            conn.send(account_download_end_fields(account))

def default_start(data: str) -> datetime:
    """Return the default clock start: 2017-01-03 09:30 New York (sample) or
    2024-01-02 09:30 New York (synthetic)."""
    ny = ZoneInfo("America/New_York")
    if data == "sample":
        return datetime(2017, 1, 3, 9, 30, tzinfo=ny)
    return datetime(2024, 1, 2, 9, 30, tzinfo=ny)


def _floor5(ts: float) -> int:
    t = int(math.floor(ts))
    return t - t % 5


def _summary(fields: list[str]) -> str:
    text = ",".join(f for f in fields[1:] if f != "")
    return text if len(text) <= 160 else text[:157] + "..."
