"""IBConnection: the one IB client object, on one asyncio loop in one background thread.

backtrader is synchronous, the IB client is asyncio. A connection runs an event loop in a daemon
thread (:class:`LoopThread`) and owns the client object: this module is the only place that
creates one. Everything else reaches IB through a connection: the store (live feeds, orders), the
historical path (:mod:`bt_ibkr.ib.historical`), the data provider and, through those, the
doctor and the live runner. Callers in other threads use :meth:`IBConnection.run` (a coroutine,
blocking for its result), :meth:`~IBConnection.call` and :meth:`~IBConnection.post`; code already on
the loop awaits the ``async`` methods.

What a connection keeps:

* the connection: :meth:`~IBConnection.connect` with retries (error 326, client id in use, fails
  at once or, with ``replace_client_id``, retries under a new id), :meth:`ensure_connected`
  (connect on first use, or wait for a reconnect in progress: one reconnect shared by all),
  automatic re-dialling with exponential back-off after a lost socket when a
  ``reconnect_policy`` is given;
* the gateway's connectivity to IB (1100 lost, 1101/1102 restored): :meth:`wait_connectivity`,
  :meth:`loss_signal`;
* the gateway's clock: :meth:`server_time`, :meth:`timeoffset` (refreshed every
  ``clock_refresh`` seconds when set);
* contracts: :meth:`qualify` (one ContractDetails or a clear error), :meth:`qualify_dataname`
  (cached per connection);
* account state: :attr:`managed_accounts`, :attr:`account` (values and positions, kept current
  by the client's events).

Hooks (lists of callables, called in the loop thread): ``on_client(ib)`` when a client object is
made (to attach event handlers), ``on_error(reqId, code, text)``, ``on_connected(first)`` after
every (re)connect once state is synced, ``on_lost()`` when a synced connection drops,
``on_gave_up(reason)`` when re-dialling stops, ``on_notice(text)`` for connection messages.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bt_ibkr.errors import ConnectionFailedError, GatewayTimeoutError, SourceUnavailableError
from bt_ibkr.ib.account import AccountState
from bt_ibkr.ib.codes import (
    CLIENT_ID_IN_USE,
    CONNECTIVITY_LOST,
    CONNECTIVITY_RESTORED,
    CONNECTIVITY_RESTORED_DATA_LOST,
    NO_SECURITY_DEFINITION,
    PORT_HINT,
    SIMULATOR_BRAND,
)
from bt_ibkr.ib.contracts import parse_dataname, select_single
from bt_ibkr.ib.loop import LoopThread
from bt_ibkr.utc import to_utc, utc_now

if TYPE_CHECKING:
    from ib_async import IB, Contract

__all__ = ["SIMULATOR_BRAND", "ConnectFailed", "IBConnection", "classify_connect_error",
           "safe_disconnect"]


log = logging.getLogger("bt_ibkr.ib.connection")

T = TypeVar("T")


class ConnectFailed(ConnectionFailedError):
    """The connection could not be made; ``reason`` is the one line saying why and what to do."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def classify_connect_error(exc: BaseException, host: str, port: int, timeout: float) -> str:
    """Return one line saying why connecting to ``host:port`` failed and what to do about it."""
    if isinstance(exc, ConnectionRefusedError):
        return (f"nothing listens on {host}:{port} — start IB Gateway/TWS and log in, enable "
                f"its API (Configure > API > Settings > 'Enable ActiveX and Socket Clients'; "
                f"TWS does not open the port without it), or check the port: {PORT_HINT}")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return (f"{host}:{port} accepts connections but did not answer the API handshake within "
                f"{timeout:g} s — the API is disabled (TWS/Gateway: Configure > API > Settings > "
                f"'Enable ActiveX and Socket Clients'), 127.0.0.1 is not a trusted IP, or another "
                f"service owns that port")
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        return f"cannot reach {host}:{port}: {exc}"
    text = str(exc) or type(exc).__name__
    return (f"the gateway on {host}:{port} closed the API connection ({text}); check that the API "
            f"is enabled and that the client id is free")


def safe_disconnect(ib: IB) -> None:
    """Disconnect ``ib`` even half-connected (ib_async's disconnect() raises when the socket is
    open but the API connection never became ready)."""
    try:
        ib.disconnect()
    except ConnectionError:
        ib.client.disconnect()


class IBConnection:
    """One API connection to IB Gateway/TWS (see the module docstring).

    Args:
        host, port, client_id: where to connect and as whom (None: a random id).
        account: the account whose positions to follow ("" = all).
        readonly: connect read-only (no order placement).
        connect_timeout: seconds the API handshake may take.
        request_timeout: seconds a contract lookup may take.
        market_data_type: 1 live, 2 frozen, 3 delayed, 4 delayed frozen (set after connecting).
        replace_client_id: on error 326 retry (twice) with a random client id instead of failing.
        clock_refresh: seconds between measurements of the gateway's clock offset (0: measured
            at connect only; None: not measured).
        reconnect_policy: None (a lost socket is re-dialled on the next request only) or a
            callable returning ``(retries, first_delay, max_delay)``: re-dial at once in the
            background with exponential back-off, ``retries`` -1 = forever.
        name: the loop thread's name.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 4002, client_id: int | None = None,
                 *, account: str = "", readonly: bool = False, connect_timeout: float = 10.0,
                 request_timeout: float = 60.0, market_data_type: int = 1,
                 replace_client_id: bool = False, clock_refresh: float | None = None,
                 reconnect_policy: Callable[[], tuple[int, float, float]] | None = None,
                 name: str = "bt_ibkr-ib") -> None:
        self.host = host
        self.port = int(port)
        self.client_id = int(client_id) if client_id is not None else random.randint(100, 999)
        self.readonly = readonly
        self.connect_timeout = float(connect_timeout)
        self.request_timeout = float(request_timeout)
        self.market_data_type = int(market_data_type or 1)
        self.replace_client_id = replace_client_id
        self.clock_refresh = clock_refresh
        self.reconnect_policy = reconnect_policy
        self.name = name
        self.account = AccountState(account)
        self.managed_accounts: list[str] = []
        #: True when the gateway identified itself as bt_ibkr's simulator (reqUserInfo)
        self.simulated = False
        #: successful connects so far (the first one included)
        self.connects = 0
        self.on_client: list[Callable[[Any], None]] = []
        self.on_error: list[Callable[[int, int, str], None]] = []
        self.on_connected: list[Callable[[bool], None]] = []
        self.on_lost: list[Callable[[], None]] = []
        self.on_gave_up: list[Callable[[str], None]] = []
        self.on_notice: list[Callable[[str], None]] = []
        #: checks the managed accounts after every RE-connect, before anything is sent:
        #: returns None (fine) or why not (the account or its kind changed); see
        #: :meth:`IBStore.expect_account`
        self.account_guard: Callable[[list[str]], str | None] | None = None
        #: why the connection stopped for good after a reconnect into the wrong account
        self.identity_error: str | None = None
        self.on_identity: list[Callable[[str], None]] = []
        self._thread: LoopThread | None = None
        self._ib: Any = None
        self._ready = False
        self._closing = False
        self._fatal: str | None = None
        self._connect_task: asyncio.Future | None = None
        self._reconnect_task: asyncio.Task | None = None
        self._clock_handle: asyncio.TimerHandle | None = None
        self._offset = timedelta()
        self._offset_lock = threading.Lock()
        self._details: dict[str, tuple[Any, str]] = {}
        self._loss_waiters: list[asyncio.Future] = []
        self._lock: asyncio.Lock | None = None
        self._connectivity: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"IBConnection({self.host}:{self.port}, clientId {self.client_id})"

    # ------------------------------------------------------------------ the loop thread
    def open(self) -> None:
        """Start the loop thread and make the client object (idempotent; no network yet)."""
        if self._thread is not None and self._thread.alive:
            return
        self._closing = False
        self._thread = LoopThread(f"{self.name}-{self.client_id}")
        self._thread.call(self._make_client)

    def _make_client(self) -> None:
        from bt_ibkr.ib import client as ibc

        ib = ibc.IB()  # the one place a client object is made
        ib.RaiseRequestErrors = True
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        ib.accountValueEvent += self.account.on_value
        ib.positionEvent += self.account.on_position
        self._ib = ib
        self._lock = asyncio.Lock()
        self._connectivity = asyncio.Event()
        self._connectivity.set()
        for hook in self.on_client:
            hook(ib)

    @property
    def ib(self) -> Any:
        """The client object (``ib_async.IB`` or ``ib_insync.IB``); for bt_ibkr.ib's modules."""
        if self._ib is None:
            raise ConnectionFailedError("the IB connection is not open; call open() or connect()")
        return self._ib

    @property
    def loop_thread(self) -> threading.Thread | None:
        """The thread the connection's loop runs in (None before ``open()``)."""
        return self._thread.thread if self._thread is not None else None

    @property
    def running(self) -> bool:
        """True while the loop thread runs."""
        return self._thread is not None and self._thread.alive

    def in_loop_thread(self) -> bool:
        """Return True when called from the connection's loop thread."""
        return self._thread is not None and self._thread.in_thread()

    def _loop_thread(self) -> LoopThread:
        if self._thread is None or not self._thread.alive:
            raise ConnectionFailedError("the IB connection is not running; connect first")
        return self._thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the connection's loop and return its result (see LoopThread.run)."""
        if self._thread is None or not self._thread.alive:
            coro.close()
            raise ConnectionFailedError("the IB connection is not running; connect first")
        return self._thread.run(coro, timeout)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0) -> T:
        """Call ``fn(*args)`` in the loop thread and return its result (blocks)."""
        return self._loop_thread().call(fn, *args, timeout=timeout)

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Schedule ``fn(*args)`` in the loop thread; returns at once."""
        self._loop_thread().post(fn, *args)

    def close(self) -> None:
        """Disconnect and stop the loop thread (idempotent; ``open()`` starts a new one)."""
        self._closing = True
        self._ready = False
        thread = self._thread
        if thread is not None and thread.alive:
            try:
                thread.run(self._shutdown(), timeout=10)
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.debug("error while disconnecting", exc_info=True)
            thread.stop()
        self._thread = None
        self._ib = None

    async def _shutdown(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self._clock_handle is not None:
            self._clock_handle.cancel()
        if self._ib is not None and self._ib.isConnected():
            safe_disconnect(self._ib)

    # ------------------------------------------------------------------ connection
    @property
    def connected(self) -> bool:
        """True when the socket to the gateway is up."""
        return bool(self._ib is not None and self.running and self._ib.isConnected())

    @property
    def ready(self) -> bool:
        """True when connected and the state after connecting is synced (orders may be sent)."""
        return self._ready and self.connected

    @property
    def server_version(self) -> int | None:
        """The TWS API server version of the open connection (None when not connected)."""
        return self._ib.client.serverVersion() if self.connected else None

    def connect(self, retries: int = 0, retry_delay: float = 1.0) -> list[str]:
        """Open the loop thread and the API connection (blocking); return the managed accounts.

        ``retries`` more attempts ``retry_delay`` seconds apart (-1: forever) follow a failed
        one. Raises :class:`ConnectFailed` saying why (nothing listens, no handshake, client id
        in use) and what to do.
        """
        self.open()
        self.run(self.connect_async(retries, retry_delay), timeout=None)
        return list(self.managed_accounts)

    def _notice(self, text: str) -> None:
        for hook in self.on_notice:
            hook(text)

    async def connect_async(self, retries: int = 0, retry_delay: float = 1.0,
                            exponential: bool = False, max_delay: float | None = None) -> bool:
        """Connect unless already connected; return True when this call connected.

        One connect at a time: a second caller waits and finds the connection ready. Raises
        :class:`ConnectFailed` after ``retries`` + 1 failed attempts (error 326 at once unless
        ``replace_client_id``).
        """
        assert self._lock is not None
        async with self._lock:
            if self.ready:
                return False
            attempt, swaps = 0, 0
            while True:
                try:
                    await self._connect_once()
                    return True
                except asyncio.CancelledError:
                    if self._fatal is None:
                        raise
                    exc: BaseException = ConnectionError(self._fatal)
                except Exception as err:  # noqa: BLE001 - classified below
                    exc = err
                safe_disconnect(self._ib)
                if self._fatal is not None:
                    reason, self._fatal = self._fatal, None
                    if self.replace_client_id and swaps < 2:
                        swaps += 1
                        old, self.client_id = self.client_id, random.randint(100, 999)
                        log.info("client id %d is in use on %s:%d; trying %d", old, self.host,
                                 self.port, self.client_id)
                        continue
                    raise ConnectFailed(f"IB gateway at {self.host}:{self.port} refused the "
                                        f"connection: {reason}", reason) from None
                attempt += 1
                reason = classify_connect_error(exc, self.host, self.port, self.connect_timeout)
                if self._closing or (retries >= 0 and attempt > retries):
                    raise ConnectFailed(
                        f"cannot connect to IB gateway at {self.host}:{self.port} (clientId "
                        f"{self.client_id}) after {attempt} attempt(s): {reason}", reason,
                    ) from None
                delay = retry_delay * (2 ** (attempt - 1) if exponential else 1)
                if max_delay is not None:
                    delay = min(delay, max_delay)
                self._notice(f"connect attempt {attempt} failed ({reason}); retry in {delay:g}s")
                await asyncio.sleep(delay)

    async def _connect_once(self) -> None:
        self._fatal = None
        self._connect_task = asyncio.ensure_future(self._ib.connectAsync(
            self.host, self.port, self.client_id, timeout=self.connect_timeout,
            readonly=self.readonly, account=self.account.account))
        try:
            await self._connect_task
        finally:
            self._connect_task = None
        await self._after_connect()

    async def _after_connect(self) -> None:
        ib = self._ib
        self.managed_accounts = list(ib.managedAccounts())
        if self.account_guard is not None and self.connects > 0:
            # a RE-connect: the gateway may have come back logged into someone else. Check
            # before the connection is ready: held orders, resends and cancels wait for ready
            why = self.account_guard(self.managed_accounts)
            if why:
                self.identity_error = (f"the gateway at {self.host}:{self.port} came back "
                                       f"{why}")
                self._notice(self.identity_error)
                for hook in self.on_identity:
                    hook(self.identity_error)
                ib.disconnect()  # nothing is sent on this connection; no re-dial
                return
        if self.market_data_type != 1:
            ib.reqMarketDataType(self.market_data_type)
        self.account.reset(ib.accountValues(), ib.positions())
        assert self._connectivity is not None
        self._connectivity.set()
        if self.clock_refresh is not None:
            await self._refresh_clock()
        self.simulated = await self._is_simulator()
        first = self.connects == 0
        self.connects += 1
        self._ready = True
        from bt_ibkr.ib import client as ibc

        self._notice(f"connected to {self.host}:{self.port} as clientId {self.client_id} "
                     f"({ibc.CLIENT_NAME} {ibc.CLIENT_VERSION})")
        for on_connected in self.on_connected:
            on_connected(first)

    async def _is_simulator(self) -> bool:
        """Ask the gateway who it is (reqUserInfo, once per connect): True when it answers
        :data:`SIMULATOR_BRAND`. A gateway that does not answer within 2 s (older servers
        ignore the request) counts as a real one.

        ib_async and ib_insync both drop the answer's ``whiteBrandingId`` (their
        ``reqUserInfoAsync`` resolves to None), so the connection reads it off the client's
        ``wrapper.userInfo`` call for the length of the request."""
        wrapper = self._ib.wrapper
        brands: list[str] = []
        library_user_info = wrapper.userInfo

        def user_info(req_id: int, white_branding_id: str) -> None:
            brands.append(str(white_branding_id or ""))
            library_user_info(req_id, white_branding_id)

        wrapper.userInfo = user_info
        try:
            await asyncio.wait_for(self._ib.reqUserInfoAsync(), min(2.0, self.connect_timeout))
        except Exception:  # noqa: BLE001 - no answer: a real gateway
            log.debug("reqUserInfo got no answer; treating the gateway as IB's", exc_info=True)
        finally:
            del wrapper.userInfo  # back to the library's method
        return SIMULATOR_BRAND in brands

    def describe(self) -> str:
        """Return where data comes from: "IB gateway simulator at host:port" or "IB gateway
        at host:port"."""
        kind = "IB gateway simulator" if self.simulated else "IB gateway"
        return f"{kind} at {self.host}:{self.port}"

    async def ensure_connected(self, timeout: float | None = None) -> bool:
        """Connect if needed (waiting for a reconnect already under way); return True when
        this call connected. Raises ConnectFailed, or TimeoutError after ``timeout`` s."""
        if self.ready:
            return False
        if self.identity_error:
            raise ConnectFailed(self.identity_error, self.identity_error)
        task = self._reconnect_task
        if task is not None and not task.done():
            await asyncio.wait_for(asyncio.shield(task), timeout)
            if self.ready:
                return False
            raise ConnectFailed(f"the connection to {self.host}:{self.port} is lost and "
                                "re-dialling gave up", "re-dialling gave up")
        return await asyncio.wait_for(self.connect_async(), timeout)

    def _on_disconnected(self) -> None:
        was_ready, self._ready = self._ready, False
        self._wake_loss_waiters()
        if self._closing or not was_ready or self.identity_error:
            return  # our own disconnect, or a failed connect attempt
        self._notice("connection to the gateway lost")
        for hook in self.on_lost:
            hook()
        policy = self.reconnect_policy() if self.reconnect_policy is not None else None
        if policy is not None and (self._reconnect_task is None or self._reconnect_task.done()):
            self._reconnect_task = asyncio.ensure_future(self._redial(*policy))

    async def _redial(self, retries: int, delay: float, max_delay: float) -> None:
        try:
            await asyncio.sleep(0)
            await self.connect_async(retries, delay, exponential=True, max_delay=max_delay)
        except asyncio.CancelledError:
            return
        except ConnectFailed as exc:
            self._notice(str(exc))
            for hook in self.on_gave_up:
                hook(str(exc))

    # ------------------------------------------------------------------ errors, connectivity
    def _on_error(self, req_id: int, code: int, text: str, contract: Contract | None = None) -> None:
        if code == CLIENT_ID_IN_USE:  # retrying with this id cannot help
            self._fatal = (f"IB error 326: clientId {self.client_id} is already connected to "
                           f"{self.host}:{self.port}; pass another client id (each connection "
                           "to a gateway needs its own)")
            if self._connect_task is not None and not self._connect_task.done():
                self._connect_task.cancel()
        elif code == CONNECTIVITY_LOST and self._connectivity is not None:
            log.warning("the gateway lost its connection to IB (1100); holding requests")
            self._connectivity.clear()
            self._wake_loss_waiters()
        elif code in (CONNECTIVITY_RESTORED, CONNECTIVITY_RESTORED_DATA_LOST) \
                and self._connectivity is not None:
            log.info("gateway connectivity restored (%d)", code)
            self._connectivity.set()
        for hook in self.on_error:
            hook(req_id, code, text)

    def _wake_loss_waiters(self) -> None:
        for fut in self._loss_waiters:
            if not fut.done():
                fut.set_result(None)
        self._loss_waiters.clear()

    def loss_signal(self) -> asyncio.Future:
        """Return a future resolved when the gateway next loses IB (1100) or the socket drops;
        cancel it when no longer needed (loop thread only)."""
        fut = asyncio.get_running_loop().create_future()
        self._loss_waiters.append(fut)

        def forget(done: asyncio.Future) -> None:
            if done in self._loss_waiters:
                self._loss_waiters.remove(done)

        fut.add_done_callback(forget)
        return fut

    async def wait_connectivity(self, timeout: float | None = None) -> None:
        """Return once the gateway is connected to IB; TimeoutError after ``timeout`` s."""
        if self._connectivity is not None and not self._connectivity.is_set():
            await asyncio.wait_for(self._connectivity.wait(), timeout)

    def set_market_data_type(self, kind: int) -> None:
        """Ask for live (1), frozen (2), delayed (3) or delayed frozen (4) data from now on
        (loop thread; remembered for reconnects)."""
        self.market_data_type = int(kind)
        if self.connected:
            self._ib.reqMarketDataType(self.market_data_type)

    # ------------------------------------------------------------------ the gateway's clock
    async def server_time(self, timeout: float = 10.0, strict: bool = False) -> datetime:
        """Return the gateway's clock (tz-aware UTC) and refresh :meth:`timeoffset`; falls back
        to this machine's clock plus the last offset when the gateway does not answer, unless
        ``strict`` (then raises :class:`GatewayTimeoutError`: a decision needs the gateway's
        own clock)."""
        try:
            t0 = time.time()
            server = await asyncio.wait_for(self._ib.reqCurrentTimeAsync(), timeout)
            t1 = time.time()
        except Exception as exc:  # noqa: BLE001 - the local clock is the next best thing
            log.debug("reqCurrentTime failed", exc_info=True)
            if strict:
                raise GatewayTimeoutError(
                    f"the gateway did not answer the time request (reqCurrentTime) within "
                    f"{timeout:g}s ({type(exc).__name__}); check that it is running and logged "
                    "in, then run again") from None
            return utc_now() + self.timeoffset()
        server = to_utc(server)
        with self._offset_lock:
            self._offset = server - datetime.fromtimestamp((t0 + t1) / 2, server.tzinfo)
        return server

    def timeoffset(self) -> timedelta:
        """Return the gateway-minus-local clock offset last measured (zero before any)."""
        with self._offset_lock:
            return self._offset

    async def _refresh_clock(self) -> None:
        await self.server_time(min(10.0, self.connect_timeout))
        if self.clock_refresh and self.running and not self._closing:
            self._clock_handle = asyncio.get_running_loop().call_later(
                float(self.clock_refresh), lambda: asyncio.ensure_future(self._refresh_clock()))

    # ------------------------------------------------------------------ contracts
    async def qualify(self, contract: Contract, name: str) -> Any:
        """Return the one ``ContractDetails`` IB has for ``contract`` (``name`` = the user's
        dataname, for messages). Raises UnknownSymbolError (none), AmbiguousContractError
        (several), SourceUnavailableError (lookup failed or unanswered)."""
        from bt_ibkr.ib import client as ibc

        try:
            details = await asyncio.wait_for(self._ib.reqContractDetailsAsync(contract),
                                             self.request_timeout)
        except ibc.ib_module.RequestError as exc:
            if exc.code != NO_SECURITY_DEFINITION:
                raise SourceUnavailableError(
                    f"contract lookup for dataname {name!r} failed: IB error {exc.code} "
                    f"{exc.message}") from exc
            details = []
        except TimeoutError:
            raise SourceUnavailableError(f"contract lookup for dataname {name!r} got no answer "
                                         f"in {self.request_timeout:g}s") from None
        return select_single(name, list(details or []))

    async def qualify_dataname(self, dataname: str) -> tuple[Any, str]:
        """Return ``(contract, exchange time zone)`` of a backtrader dataname (cached)."""
        hit = self._details.get(dataname)
        if hit is None:
            await self.ensure_connected(self.request_timeout)
            cd = await self.qualify(parse_dataname(dataname).to_contract(), dataname)
            hit = self._details[dataname] = (cd.contract, cd.timeZoneId or "America/New_York")
        return hit

    # ------------------------------------------------------------------ requests
    async def until_answer_or_loss(self, request: Awaitable[T]) -> tuple[bool, T | None]:
        """Await ``request`` unless the gateway loses IB (1100) or the socket drops first.

        Returns ``(True, result)``, or ``(False, None)`` after a loss (the request cancelled).
        """
        task = asyncio.ensure_future(request)
        lost = self.loss_signal()
        try:
            done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
        if task not in done:
            task.cancel()
            return False, None
        return True, task.result()
