"""IBStore: the one owner of the IB client, on one asyncio loop in one background thread.

backtrader is synchronous, the IB client is asyncio. The store runs an event loop in a daemon
thread and is the only code that touches the ``IB`` object. backtrader's thread talks to it
through thread-safe calls (:meth:`IBStore.run`, :meth:`IBStore.post`) and receives through
``queue.Queue`` objects: one per data feed (bars, errors, connection events) and one for the
broker (order status, executions, commission reports). Nothing here sleeps or waits on the
network in backtrader's thread except the explicit start-up calls (connect, qualify) that
backtrader's own IBStore also makes synchronously.

Drop-in with backtrader's ``IBStore`` parameters (host, port, clientId, notifyall, _debug,
reconnect, timeout, timeoffset, timerefresh, indcash) plus a few of ours: ``account`` (the
account to follow and to put on orders), ``readonly``, ``marketdatatype`` (3 = delayed),
``delayed_fallback`` (switch a tick stream refused with 354/10089 to delayed data),
``pacing`` (client-side historical pacing, DESIGN §6), ``connect_timeout``,
``request_timeout`` and ``backoff_max`` (cap of the reconnect back-off). Like backtrader's
singleton, the first store created becomes the *default* store that ``IBData()`` /
``IBBroker()`` share when they are not given one.

Connection life cycle: ``start()`` connects (``reconnect`` retries ``timeout`` s apart; error
326 fails at once), a lost socket is re-dialled in the background with exponential back-off,
then every live stream is re-subscribed, executions missed while away are handed to the
broker (deduplicated there by execId), feeds get ``("reconnected", None)`` and backfill their
gap, and orders submitted meanwhile (held) are sent. Order ids are never reused, even when the
gateway's nextValidId rolls back after a restart.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from bt_ibkr.errors import (
    ConfigError,
    ConnectionFailedError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from bt_ibkr.ib import client as ibc
from bt_ibkr.ib.contracts import contract_to_dataname, select_single
from bt_ibkr.ib.pacing import (
    BAR_SECONDS,
    MAX_DURATION,
    Chunk,
    HistoricalPacer,
    HistRequest,
    chunk_range,
    duration_str,
)

log = logging.getLogger("bt_ibkr.ib.store")


#: IB error codes that end a data request (routed to the feed that made it)
FEED_STOP_CODES = frozenset({162, 200, 203, 320, 321, 322, 354, 420, 10089, 10168, 10197})
#: codes that mean "market data not subscribed" (-> data.NOTSUBSCRIBED)
NOTSUBSCRIBED_CODES = frozenset({354, 420, 10089, 10168, 10197})
#: codes that mean "delayed data is being shown" (-> data.DELAYED, the stream continues)
DELAYED_CODES = frozenset({10167})
#: gateway <-> IB connectivity codes (broadcast to every feed and the broker)
CONNECTIVITY_CODES = frozenset({1100, 1101, 1102, 2110})

STORE_PARAMS: dict[str, Any] = {
    # backtrader's IBStore params
    "host": "127.0.0.1",
    "port": 7496,
    "clientId": None,
    "notifyall": False,
    "_debug": False,
    "reconnect": 3,
    "timeout": 3.0,
    "timeoffset": True,
    "timerefresh": 60.0,
    "indcash": True,
    # ours
    "account": "",
    "readonly": False,
    "marketdatatype": 1,
    "pacing": True,
    "connect_timeout": 10.0,
    "request_timeout": 60.0,
    "backoff_max": 30.0,
    "delayed_fallback": False,
}


@dataclass(frozen=True)
class StoreMessage:
    """What ``notify_store`` receives: an IB error/warning or a connection event.

    ``code`` is IB's error code (None for connection events), ``reqId`` the request or order
    id it refers to (-1 for none), ``kind`` one of "error", "connection", "event".
    """

    code: int | None
    text: str
    reqId: int = -1
    kind: str = "error"

    def __str__(self) -> str:
        if self.code is None:
            return f"[{self.kind}] {self.text}"
        return f"[IB {self.code}] reqId {self.reqId}: {self.text}"


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar (or a tick: o=h=l=c) as handed to a feed; ``dt`` is naive UTC."""

    dt: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    openinterest: float = 0.0


@dataclass
class LiveStream:
    """A live subscription of one feed: 5-second bars (``rtbar``) or ticks, into ``q``."""

    contract: Any
    rtbar: bool
    what: str
    use_rth: bool
    q: queue.Queue
    kind: str = "last"  # ticks: "last", "bid", "ask"
    handle: Any = None
    reqId: int = -1
    active: bool = True


@dataclass
class _PendingOrder:
    key: str
    contract: Any
    order: Any
    parent_key: str | None


@dataclass
class _AccountState:
    values: dict = field(default_factory=dict)  # (tag, currency) -> value
    lock: threading.Lock = field(default_factory=threading.Lock)


def _to_naive_utc(value) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value
    raise TypeError(f"expected a datetime, got {value!r}")


def _finite(x) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return x if x == x and abs(x) < 1e300 else 0.0


class _Hybrid:
    """A method callable on the class (uses the default store) or on an instance."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        if obj is not None:
            return functools.partial(self.func, obj)

        @functools.wraps(self.func)
        def bound(*args, **kwargs):
            return self.func(cls.default(), *args, **kwargs)

        return bound


class IBStore:
    """Owns the IB connection; see the module docstring. ``IBStore(**params)``.

    Raises :class:`ConfigError` for an unknown parameter name.
    """

    params = tuple(STORE_PARAMS.items())
    _default: IBStore | None = None
    _default_lock = threading.Lock()

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(STORE_PARAMS))
        if unknown:
            raise ConfigError(
                f"unknown IBStore parameter(s) {unknown}; known: {', '.join(STORE_PARAMS)}"
            )
        values = dict(STORE_PARAMS, **kwargs)
        self.p = type("IBStoreParams", (), values)()
        self.clientId = (
            int(self.p.clientId) if self.p.clientId is not None else random.randint(1, 65535)
        )
        self.notifs: queue.Queue = queue.Queue()
        self.broker_q: queue.Queue = queue.Queue()
        self.broker = None
        self.datas: list = []
        self.ib = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._refs = 0
        self._closing = False
        self._ready = False  # connected and synced: orders may be sent
        self._ever_connected = False
        self._reconnect_task: asyncio.Task | None = None
        self._fatal_connect: str | None = None
        self._mdtype = int(self.p.marketdatatype or 1)
        self._connect_task: asyncio.Future | None = None
        self._streams: list[LiveStream] = []
        self._live_reqs: dict[int, LiveStream] = {}
        self._trades: dict[str, Any] = {}
        self._key_by_oid: dict[int, str] = {}
        self._held: list[_PendingOrder] = []
        self._max_order_id = 0
        self._account = _AccountState()
        self._positions: dict[int, tuple[float, float]] = {}
        self._tmoffset = timedelta()
        self._tmlock = threading.Lock()
        self._tmhandle = None
        self.pacer = HistoricalPacer()
        self.managed_accounts: list[str] = []
        self._lock = threading.RLock()
        with IBStore._default_lock:
            if IBStore._default is None or IBStore._default._closing:
                IBStore._default = self

    # ------------------------------------------------------------------ defaults, factories
    @classmethod
    def default(cls, **kwargs: Any) -> IBStore:
        """Return the shared default store, creating it with ``kwargs`` if there is none."""
        with cls._default_lock:
            store = cls._default
            if store is not None and not store._closing:
                return store
        return cls(**kwargs)

    @classmethod
    def reset_default(cls) -> None:
        """Forget the default store (it is not stopped); the next ``default()`` makes a new one."""
        with cls._default_lock:
            cls._default = None

    @_Hybrid
    def getdata(self, *args: Any, **kwargs: Any):
        """Return an ``IBData`` feed bound to this store (``store.getdata(dataname=...)``)."""
        from feeds.ibdata import IBData

        return IBData(*args, store=self, **kwargs)

    @_Hybrid
    def getbroker(self, *args: Any, **kwargs: Any):
        """Return an ``IBBroker`` bound to this store."""
        from bt_ibkr.ib.broker import IBBroker

        return IBBroker(*args, store=self, **kwargs)

    # ------------------------------------------------------------------ loop thread plumbing
    def _ensure_loop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.call_soon(ready.set)
            try:
                self._loop.run_forever()
            finally:
                try:
                    pending = asyncio.all_tasks(self._loop)
                    for task in pending:
                        task.cancel()
                    if pending:
                        self._loop.run_until_complete(
                            asyncio.gather(*pending, return_exceptions=True)
                        )
                finally:
                    self._loop.close()

        self._thread = threading.Thread(target=run, name=f"bt_ibkr-ib-{self.clientId}", daemon=True)
        self._thread.start()
        ready.wait()
        self.ib = self.run(self._make_ib(), timeout=30)

    async def _make_ib(self):
        ib = ibc.IB()
        ib.RaiseRequestErrors = True
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected
        ib.orderStatusEvent += self._on_order_status
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission
        ib.accountValueEvent += self._on_account_value
        ib.positionEvent += self._on_position
        return ib

    def in_loop_thread(self) -> bool:
        """Return True when called from the store's event-loop thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def run(self, coro, timeout: float | None = None):
        """Run ``coro`` on the store's loop and return its result (blocks the caller).

        Meant for start-up calls and tests, never for backtrader's per-bar path. Raises
        ``TimeoutError`` after ``timeout`` seconds and whatever the coroutine raises.
        """
        if not asyncio.iscoroutine(coro):
            raise TypeError(
                "IBStore.run() needs a coroutine object: wrap the IB call in an async function "
                "so that it is created on the store's loop, not in the calling thread"
            )
        if self._loop is None:
            coro.close()
            raise ConnectionFailedError("the IBStore is not started; call store.start() first")
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError("IBStore.run() called from the loop thread would deadlock")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def call(self, fn: Callable, *args: Any, timeout: float | None = 30.0):
        """Call the plain function ``fn(*args)`` in the loop thread and return its result."""

        async def wrapper():
            return fn(*args)

        return self.run(wrapper(), timeout=timeout)

    def post(self, fn: Callable, *args: Any) -> None:
        """Schedule ``fn(*args)`` in the loop thread and return at once (fire and forget)."""
        if self._loop is None or self._loop.is_closed():
            raise ConnectionFailedError("the IBStore is not running; call store.start() first")
        self._loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ lifecycle
    def start(self, data=None, broker=None):
        """Connect (once) and register ``data`` or ``broker``; returns None.

        Called by cerebro (no argument), by each IBData and by IBBroker; every ``start`` must
        be matched by a ``stop``. Raises :class:`ConnectionFailedError` when the gateway
        cannot be reached after ``reconnect`` retries.
        """
        with self._lock:
            self._refs += 1
            self._closing = False
            # identity, not ``in``: backtrader overloads ``==`` on data feeds (it builds a
            # lines operation), so ``data in list`` breaks as soon as two feeds are registered.
            if data is not None and not any(d is data for d in self.datas):
                self.datas.append(data)
            if broker is not None:
                self.broker = broker
            if not self.connected():
                self._ensure_loop()
                try:
                    self.run(
                        self._connect_with_retries(initial=True),
                        timeout=None,
                    )
                except BaseException:
                    self._refs -= 1
                    raise

    def stop(self) -> None:
        """Release one ``start``; the last release disconnects and ends the loop thread."""
        with self._lock:
            self._refs = max(0, self._refs - 1)
            if self._refs == 0:
                self.close()

    def close(self) -> None:
        """Disconnect and stop the loop thread now, whatever the start count (idempotent)."""
        with self._lock:
            self._refs = 0
            self._closing = True
            self._ready = False
            loop, thread = self._loop, self._thread
            if loop is not None and thread is not None and thread.is_alive():
                try:
                    self.run(self._shutdown(), timeout=10)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    log.debug("error while disconnecting", exc_info=True)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout=10)
            self._loop = None
            self._thread = None
            for s in self._streams:
                s.q.put(("closed", None))
            with IBStore._default_lock:
                if IBStore._default is self:
                    IBStore._default = None

    async def _shutdown(self) -> None:
        if self._reconnect_task is not None:
            self._reconnect_task.cancel()
        if self._tmhandle is not None:
            self._tmhandle.cancel()
        if self.ib is not None and self.ib.isConnected():
            self.ib.disconnect()

    def connected(self) -> bool:
        """Return True when the socket to the gateway is up."""
        return bool(self.ib is not None and self._loop is not None and self.ib.isConnected())

    # ------------------------------------------------------------------ connection (loop)
    async def _connect_once(self) -> None:
        self._connect_task = asyncio.ensure_future(self.ib.connectAsync(
            self.p.host,
            int(self.p.port),
            self.clientId,
            timeout=self.p.connect_timeout,
            readonly=self.p.readonly,
            account=self.p.account,
        ))
        try:
            await self._connect_task
        except asyncio.CancelledError:
            if self._fatal_connect:  # refused (e.g. 326): fail now, not at the timeout
                raise ConnectionError(self._fatal_connect) from None
            raise
        finally:
            self._connect_task = None
        await self._after_connect()

    async def _connect_with_retries(self, initial: bool) -> None:
        retries = int(self.p.reconnect)
        attempt = 0
        last_exc: BaseException | None = None
        while not self._closing:
            try:
                await self._connect_once()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reported below
                last_exc = exc
                if self.ib.isConnected():
                    self.ib.disconnect()
                attempt += 1
                if self._fatal_connect or (retries >= 0 and attempt > retries):
                    break
                delay = float(self.p.timeout)
                if not initial:
                    delay = min(delay * (2 ** (attempt - 1)), float(self.p.backoff_max))
                self._notify(None, f"connect attempt {attempt} failed ({exc}); retry in {delay:g}s",
                             kind="connection")
                await asyncio.sleep(delay)
        if self._fatal_connect:
            reason, self._fatal_connect = self._fatal_connect, None
            raise ConnectionFailedError(
                f"IB gateway at {self.p.host}:{self.p.port} refused the session: {reason}"
            )
        detail = str(last_exc) or type(last_exc).__name__
        raise ConnectionFailedError(
            f"cannot connect to IB gateway at {self.p.host}:{self.p.port} "
            f"(clientId {self.clientId}) after {attempt} attempt(s): {detail}; "
            "is TWS/IB Gateway running with the API enabled on that port?"
        )

    async def _after_connect(self) -> None:
        ib = self.ib
        self._ever_connected = True
        self.managed_accounts = list(ib.managedAccounts())
        # never reuse an order id, even if the gateway's nextValidId rolled back
        ib.client.updateReqId(self._max_order_id + 1)
        if self._mdtype != 1:
            ib.reqMarketDataType(self._mdtype)
        with self._account.lock:
            for av in ib.accountValues():
                self._account.values[(av.account, av.tag, av.currency)] = av.value
        self._positions = {
            p.contract.conId: (float(p.position), float(p.avgCost))
            for p in ib.positions()
            if not self.p.account or p.account == self.p.account
        }
        if self.p.timeoffset:
            await self._refresh_timeoffset()
        self._ready = True
        self._notify(None, f"connected to {self.p.host}:{self.p.port} as clientId "
                     f"{self.clientId} ({ibc.CLIENT_NAME} {ibc.CLIENT_VERSION})",
                     kind="connection")

    async def _refresh_timeoffset(self) -> None:
        try:
            t0 = time.time()
            server = await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), 10)
            t1 = time.time()
            local = datetime.fromtimestamp((t0 + t1) / 2, UTC)
            with self._tmlock:
                self._tmoffset = server - local
        except Exception:  # noqa: BLE001 - an offset is a refinement, not a requirement
            log.debug("reqCurrentTime failed", exc_info=True)
        if self._loop is not None and self.p.timerefresh and not self._closing:
            self._tmhandle = self._loop.call_later(
                float(self.p.timerefresh),
                lambda: asyncio.ensure_future(self._refresh_timeoffset()),
            )

    def timeoffset(self) -> timedelta:
        """Return the server-minus-local clock offset measured with reqCurrentTime."""
        with self._tmlock:
            return self._tmoffset

    def _on_disconnected(self) -> None:
        was_ready, self._ready = self._ready, False
        if self._closing or not was_ready:
            return  # our own disconnect, or a failed connect attempt
        self._notify(None, "connection to the gateway lost", kind="connection")
        for s in self._streams:
            s.q.put(("connbroken", None))
        self.broker_q.put(("connbroken",))
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            await asyncio.sleep(0)
            await self._connect_with_retries(initial=False)
        except asyncio.CancelledError:
            return
        except ConnectionFailedError as exc:
            self._notify(None, str(exc), kind="connection")
            for s in self._streams:
                s.q.put(("disconnected", None))
            self.broker_q.put(("disconnected",))
            return
        self._resubscribe_all()
        self._recover_executions()
        for s in self._streams:
            s.q.put(("reconnected", None))
        self.broker_q.put(("reconnected",))
        self._flush_held()

    # ------------------------------------------------------------------ notifications
    def _notify(self, code: int | None, text: str, reqId: int = -1, kind: str = "error") -> None:
        msg = StoreMessage(code=code, text=text, reqId=reqId, kind=kind)
        if self.p._debug:
            print(f"bt_ibkr IBStore: {msg}")
        self.notifs.put((msg, (), {}))

    def get_notifications(self) -> list:
        """Return the pending store notifications as ``(msg, args, kwargs)`` (backtrader's form)."""
        out = []
        while True:
            try:
                out.append(self.notifs.get_nowait())
            except queue.Empty:
                return out

    def _on_error(self, reqId: int, code: int, text: str, contract=None) -> None:
        self._notify(code, text, reqId=reqId)
        if code == 326:  # clientId in use: retrying cannot help (backtrader's dontreconnect)
            self._fatal_connect = (
                f"IB error 326, {text!r}: clientId {self.clientId} is already connected; "
                "pass another clientId"
            )
            if self._connect_task is not None:
                self._connect_task.cancel()
        stream = self._live_reqs.get(reqId)
        if stream is not None and self._fall_back_to_delayed(stream, code, text):
            return
        if stream is not None:
            stream.q.put(("error", (code, text)))
            if code in FEED_STOP_CODES:
                self._live_reqs.pop(reqId, None)
            return
        if code in CONNECTIVITY_CODES:
            for s in self._streams:
                s.q.put(("status", (code, text)))
            self.broker_q.put(("status", code, text))
            if code == 1101:  # restored, subscriptions lost
                self._resubscribe_all()
            return
        key = self._key_by_oid.get(reqId)
        if key is not None:
            self.broker_q.put(("error", key, code, text))

    def _fall_back_to_delayed(self, stream: LiveStream, code: int, text: str) -> bool:
        """With ``delayed_fallback``, turn a tick stream IB refused for lack of a market-data
        subscription (354, 10089) into a delayed one (reqMarketDataType 3); returns True if so.
        """
        if not (self.p.delayed_fallback and code in (354, 10089) and not stream.rtbar):
            return False
        self._live_reqs.pop(stream.reqId, None)
        self._mdtype = 3
        try:
            self.ib.cancelMktData(stream.contract)
        except Exception:  # noqa: BLE001 - IB already ended it
            log.debug("cancelMktData after %s failed", code, exc_info=True)
        self.ib.reqMarketDataType(3)
        stream.q.put(("delayed", (code, text)))
        stream.handle = None
        self._start_stream(stream)
        return True

    # ------------------------------------------------------------------ account, positions
    def _on_account_value(self, av) -> None:
        with self._account.lock:
            self._account.values[(av.account, av.tag, av.currency)] = av.value

    def _on_position(self, pos) -> None:
        if self.p.account and pos.account != self.p.account:
            return
        self._positions[pos.contract.conId] = (float(pos.position), float(pos.avgCost))

    def _acc_number(self, tags: tuple[str, ...], account: str | None = None) -> float:
        with self._account.lock:
            items = dict(self._account.values)
        accounts = [account] if account else (
            [self.p.account] if self.p.account else sorted({a for a, _, _ in items})
        )
        total = 0.0
        for acc in accounts:
            for tag in tags:
                for cur in ("BASE", "USD", ""):
                    value = items.get((acc, tag, cur))
                    if value not in (None, ""):
                        try:
                            total += float(value)
                        except ValueError:
                            continue
                        break
                else:
                    continue
                break
        return total

    def get_acc_cash(self, account: str | None = None) -> float:
        """Return the account's cash (TotalCashBalance in BASE), 0.0 before the first download."""
        return self._acc_number(
            ("TotalCashBalance", "CashBalance", "TotalCashValue", "AvailableFunds"), account
        )

    def get_acc_value(self, account: str | None = None) -> float:
        """Return the account's net liquidation value, 0.0 before the first download."""
        return self._acc_number(("NetLiquidation", "NetLiquidationByCurrency"), account)

    def get_acc_values(self, account: str | None = None) -> dict:
        """Return every account value as ``{(account, tag, currency): value}``."""
        with self._account.lock:
            items = dict(self._account.values)
        if account:
            items = {k: v for k, v in items.items() if k[0] == account}
        return items

    def get_positions(self) -> dict[int, tuple[float, float]]:
        """Return the gateway's positions as ``{conId: (size, avgCost)}`` (a copy)."""
        return dict(self._positions)

    # ------------------------------------------------------------------ contracts
    def qualify(self, contract, dataname: str = "", timeout: float | None = None):
        """Return the one ``ContractDetails`` IB has for ``contract`` (blocking, start-up only).

        Raises :class:`UnknownSymbolError` for no match, ``AmbiguousContractError`` for several
        (messages name ``dataname``), :class:`SourceUnavailableError` on timeout.
        """
        name = dataname or contract_to_dataname(contract)

        async def lookup():
            try:
                return await self.ib.reqContractDetailsAsync(contract)
            except ibc.ib_module.RequestError as exc:
                if exc.code == 200:
                    return []
                raise SourceUnavailableError(
                    f"contract lookup for dataname {name!r} failed: IB error {exc.code} "
                    f"{exc.message}"
                ) from exc

        timeout = timeout or self.p.request_timeout
        try:
            details = self.run(lookup(), timeout=timeout)
        except TimeoutError:
            raise SourceUnavailableError(
                f"contract lookup for dataname {name!r} got no answer in {timeout:g}s"
            ) from None
        try:
            return select_single(name, list(details))
        except UnknownSymbolError as exc:
            self._notify(200, str(exc))
            raise

    # ------------------------------------------------------------------ historical data
    def request_history(
        self,
        contract,
        start: datetime | None,
        end: datetime | None,
        barsize: str,
        what: str = "TRADES",
        use_rth: bool = False,
        tz=None,
        sessionend: dtime | None = None,
        q: queue.Queue | None = None,
    ) -> queue.Queue:
        """Fetch ``(start, end]`` (naive UTC; None start: IB's max duration) in paced chunks.

        Returns at once with the queue that receives ``("bar", Bar)`` items in ascending time,
        then ``("end", n_bars)``; an IB error arrives as ``("error", (code, text))`` before the
        end. Daily bars are stamped at ``sessionend`` in ``tz`` (the exchange zone).
        """
        q = q if q is not None else queue.Queue()
        self.post(
            lambda: asyncio.ensure_future(
                self._history(contract, start, end, barsize, what, use_rth, tz, sessionend, q)
            )
        )
        return q

    async def _history(self, contract, start, end, barsize, what, use_rth, tz, sessionend, q):
        daily = barsize in ("1 day", "1 week", "1 month")
        if end is None:  # "now" on the gateway's clock, which may differ from ours
            try:
                end = _to_naive_utc(await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), 10))
            except Exception:  # noqa: BLE001 - fall back to our clock
                end = datetime.now(UTC).replace(tzinfo=None) + self.timeoffset()
            end += timedelta(seconds=1)
        if start is None:
            span = timedelta(seconds=MAX_DURATION[barsize])
            chunks = [Chunk(end - span, end, duration_str(span.total_seconds()))]
        elif start >= end:
            q.put(("end", 0))
            return
        else:
            chunks = chunk_range(start, end, barsize)
        bars: dict[datetime, Bar] = {}
        no_data = None
        key = str(contract.conId or contract_to_dataname(contract))
        try:
            for chunk in chunks:
                end_aware = chunk.end.replace(tzinfo=UTC)
                req = HistRequest(key, chunk.end.isoformat(), chunk.duration, barsize, what,
                                  bool(use_rth))
                if self.p.pacing:
                    await self.pacer.acquire(req)
                try:
                    got = await self.ib.reqHistoricalDataAsync(
                        contract,
                        endDateTime=end_aware,
                        durationStr=chunk.duration,
                        barSizeSetting=barsize,
                        whatToShow=what,
                        useRTH=bool(use_rth),
                        formatDate=2,
                        timeout=self.p.request_timeout,
                    )
                except ibc.ib_module.RequestError as exc:
                    if exc.code == 162 and "no data" in exc.message.lower():
                        no_data = (exc.code, exc.message)
                        continue  # an empty stretch (night, weekend): try older chunks
                    q.put(("error", (exc.code, exc.message)))
                    break
                except ConnectionError as exc:
                    q.put(("error", (1100, f"connection lost during history: {exc}")))
                    break
                for b in got or []:
                    dt = self._bar_time(b.date, daily, tz, sessionend, BAR_SECONDS[barsize])
                    if start is not None and dt < start:
                        continue
                    # chunks come newest first: a day cut by an older chunk's end time
                    # (a partial daily bar) never replaces the full one
                    bars.setdefault(dt, Bar(dt, float(b.open), float(b.high), float(b.low),
                                   float(b.close), max(0.0, _finite(b.volume))))
        except asyncio.CancelledError:
            q.put(("end", len(bars)))
            raise
        except Exception as exc:  # noqa: BLE001 - surfaced to the feed
            log.exception("historical request failed")
            q.put(("error", (0, f"historical request failed: {exc}")))
        if not bars and no_data is not None:
            q.put(("error", no_data))
        for dt in sorted(bars):
            q.put(("bar", bars[dt]))
        q.put(("end", len(bars)))

    @staticmethod
    def _bar_time(value, daily: bool, tz, sessionend, length: int = 0) -> datetime:
        """Return the naive-UTC stamp of a bar: intraday bars at their END (IB stamps the
        start; backtrader stamps bars at their close), daily bars at ``sessionend`` in ``tz``."""
        if isinstance(value, datetime) and not daily:
            return _to_naive_utc(value) + timedelta(seconds=length)
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, date):
            send = sessionend or dtime(23, 59, 59, 999990)
            dt = datetime.combine(value, send)
            if tz is not None:
                if hasattr(tz, "localize"):
                    dt = tz.localize(dt)
                else:
                    dt = dt.replace(tzinfo=tz)
                dt = dt.astimezone(UTC).replace(tzinfo=None)
            return dt
        raise TypeError(f"unexpected bar date {value!r}")

    # ------------------------------------------------------------------ live data
    def subscribe_live(self, contract, rtbar: bool, what: str | None, use_rth: bool,
                       q: queue.Queue) -> LiveStream:
        """Start a live stream into ``q`` (returns at once): ``("bar", Bar)`` items.

        ``rtbar=True``: IB's 5-second real-time bars; else ticks (last trade; bid for CASH,
        ask with ``what='ASK'``; IND last with ``indcash``). Errors arrive as
        ``("error", (code, text))``, connection events as ``("connbroken"|"reconnected"|
        "status", ...)``.
        """
        sec = contract.secType
        kind = "last"
        if sec in ("CASH", "CFD"):
            kind = "ask" if what == "ASK" else "bid"
        stream = LiveStream(contract=contract, rtbar=rtbar, what=what or "TRADES",
                            use_rth=use_rth, q=q, kind=kind)
        if rtbar and sec in ("CASH", "CFD") and not what:
            stream.what = "MIDPOINT"
        self._streams.append(stream)
        self.post(self._start_stream, stream)
        return stream

    def cancel_live(self, stream: LiveStream) -> None:
        """Stop ``stream`` (returns at once)."""
        stream.active = False
        if stream in self._streams:
            self._streams.remove(stream)
        if self._loop is not None and not self._loop.is_closed():
            self.post(self._cancel_stream, stream)

    def _start_stream(self, stream: LiveStream) -> None:
        if not stream.active or not self.connected():
            return
        ib = self.ib
        if stream.rtbar:
            bars = ib.reqRealTimeBars(stream.contract, 5, stream.what, stream.use_rth)
            bars.updateEvent += functools.partial(self._on_rtbar, stream)
            stream.handle = bars
            stream.reqId = bars.reqId
        else:
            generic = "" if stream.contract.secType in ("CASH", "CFD") else "233"
            ticker = ib.reqMktData(stream.contract, generic, False, False)
            ticker.updateEvent += functools.partial(self._on_ticker, stream)
            stream.handle = ticker
            stream.reqId = ib.wrapper.ticker2ReqId["mktData"].get(ticker, -1)
        self._live_reqs[stream.reqId] = stream

    def _cancel_stream(self, stream: LiveStream) -> None:
        self._live_reqs.pop(stream.reqId, None)
        if not self.connected() or stream.handle is None:
            return
        try:
            if stream.rtbar:
                self.ib.cancelRealTimeBars(stream.handle)
            else:
                self.ib.cancelMktData(stream.contract)
        except Exception:  # noqa: BLE001 - the stream is gone either way
            log.debug("cancel of live stream failed", exc_info=True)

    def _resubscribe_all(self) -> None:
        for stream in list(self._streams):
            self._live_reqs.pop(stream.reqId, None)
            stream.handle = None
            self._start_stream(stream)

    def _on_rtbar(self, stream: LiveStream, bars, has_new_bar: bool) -> None:
        if not has_new_bar or not stream.active or bars is not stream.handle:
            return
        b = bars[-1]
        end = _to_naive_utc(b.time) + timedelta(seconds=5)  # stamped at the bar's close
        stream.q.put(("bar", Bar(end, float(b.open_), float(b.high),
                                 float(b.low), float(b.close), max(0.0, _finite(b.volume)))))

    _TICK_TYPES = {"last": (4, 68), "bid": (1, 66), "ask": (2, 67)}
    _SIZE_TYPES = {"last": (5, 71), "bid": (0, 69), "ask": (3, 70)}

    def _on_ticker(self, stream: LiveStream, ticker) -> None:
        if not stream.active or ticker is not stream.handle:
            return
        wanted = self._TICK_TYPES[stream.kind]
        delayed = getattr(ticker, "marketDataType", 1) in (3, 4)
        for td in ticker.ticks:
            if td.tickType not in wanted:
                continue
            price = _finite(td.price)
            if price <= 0:
                continue
            # ticks carry the local receive time: move it to the gateway's clock (timeoffset)
            dt = _to_naive_utc(td.time or datetime.now(UTC)) + self.timeoffset()
            stream.q.put(("tick", (Bar(dt, price, price, price, price,
                                       max(0.0, _finite(td.size))), delayed)))

    # ------------------------------------------------------------------ orders
    def place_order(self, key: str, contract, order, parent_key: str | None = None) -> None:
        """Send ``order`` for ``contract`` (returns at once). ``key`` is the unique orderRef.

        Events come back on :attr:`broker_q`: ``("placed", key, orderId)``, ``("status", key,
        status, filled, remaining, avgFillPrice, errorCode, reason)``, ``("exec", key,
        execId, signed_shares, price, time)``, ``("comm", key, execId, commission, pnl)``,
        ``("error", key, code, text)``. While disconnected the order is held and sent after
        the reconnect has re-synced state.
        """
        self.post(self._place, _PendingOrder(key, contract, order, parent_key))

    def reserve_order_ids(self, highest_used: int) -> None:
        """Never hand out an order id <= ``highest_used`` (ids a journal or the gateway saw
        before a restart rolled nextValidId back). Runs on the store's loop; returns when done."""

        def bump() -> None:
            self._max_order_id = max(self._max_order_id, int(highest_used))
            self.ib.client.updateReqId(self._max_order_id + 1)

        self.call(bump)

    def follow_trades(self, refs: set[str]) -> list[str]:
        """Route the events of open trades whose orderRef is in ``refs`` (orders placed by an
        earlier process) to the broker under that orderRef, as if placed by this one.

        Returns the refs newly followed (already followed ones are skipped). Runs on the
        store's loop; returns when done.
        """

        def adopt() -> list[str]:
            followed = []
            for trade in self.ib.openTrades():
                ref = getattr(trade.order, "orderRef", "")
                if ref and ref in refs and ref not in self._trades:
                    self._trades[ref] = trade
                    self._key_by_oid[trade.order.orderId] = ref
                    followed.append(ref)
            return followed

        return self.call(adopt)

    def cancel_order(self, key: str) -> None:
        """Ask IB to cancel the order with orderRef ``key`` (returns at once)."""
        self.post(self._cancel, key)

    def _place(self, pending: _PendingOrder) -> None:
        if not self._ready or not self.connected():
            self._held.append(pending)
            self._notify(None, f"order {pending.key} held until the gateway is back",
                         kind="connection")
            return
        if self._held:  # older held orders go first, in submission order
            self._flush_held()
        order = pending.order
        if pending.parent_key is not None:
            parent = self._trades.get(pending.parent_key)
            if parent is None:
                self.broker_q.put(("error", pending.key, 0,
                                   f"parent order {pending.parent_key} was never placed"))
                return
            order.parentId = parent.order.orderId
        try:
            trade = self.ib.placeOrder(pending.contract, order)
        except Exception as exc:  # noqa: BLE001 - reported as a rejection
            self.broker_q.put(("error", pending.key, 0, f"placeOrder failed: {exc}"))
            return
        oid = trade.order.orderId
        self._max_order_id = max(self._max_order_id, oid)
        self._trades[pending.key] = trade
        self._key_by_oid[oid] = pending.key
        self.broker_q.put(("placed", pending.key, oid))

    def _cancel(self, key: str) -> None:
        for i, pending in enumerate(self._held):
            if pending.key == key:
                del self._held[i]
                self.broker_q.put(("status", key, "Cancelled", 0.0, 0.0, 0.0, None, ""))
                return
        trade = self._trades.get(key)
        if trade is None or not self.connected():
            return
        if trade.isDone():
            return
        self.ib.cancelOrder(trade.order)

    def _flush_held(self) -> None:
        held, self._held = self._held, []
        for pending in held:
            self._place(pending)

    def _key_of(self, trade) -> str | None:
        ref = getattr(trade.order, "orderRef", "")
        if ref and ref in self._trades:
            if self._trades[ref] is not trade:
                self._trades[ref] = trade  # recreated after a reconnect
                self._key_by_oid[trade.order.orderId] = ref
            return ref
        return self._key_by_oid.get(trade.order.orderId)

    def _on_order_status(self, trade) -> None:
        key = self._key_of(trade)
        if key is None:
            return
        st = trade.orderStatus
        code, reason = None, ""
        if trade.log:
            last = trade.log[-1]
            code = getattr(last, "errorCode", 0) or None
            reason = last.message
        self.broker_q.put(("status", key, st.status, float(st.filled), float(st.remaining),
                           float(st.avgFillPrice or 0.0), code, reason))
        if self.p.notifyall:
            self._notify(None, f"order {key}: {st.status}", reqId=trade.order.orderId,
                         kind="event")

    def _on_exec(self, trade, fill) -> None:
        key = self._key_of(trade)
        if key is None:
            return
        self._push_fill(key, fill)

    def _push_fill(self, key: str, fill, with_commission: bool = False) -> None:
        ex = fill.execution
        shares = float(ex.shares)
        signed = shares if ex.side in ("BOT", "BUY") else -shares
        when = ex.time if isinstance(ex.time, datetime) else fill.time
        self.broker_q.put(("exec", key, ex.execId, signed, float(ex.price), when))
        if with_commission:
            cr = fill.commissionReport
            if cr is not None and cr.execId:
                self.broker_q.put(("comm", key, ex.execId, _finite(cr.commission),
                                   _finite(cr.realizedPNL)))
        if self.p.notifyall:
            self._notify(None, f"execution {ex.execId}: {signed:g} @ {ex.price}",
                         reqId=ex.orderId, kind="event")

    def _on_commission(self, trade, fill, report) -> None:
        key = self._key_of(trade)
        if key is None:
            return
        self.broker_q.put(("comm", key, report.execId, _finite(report.commission),
                           _finite(report.realizedPNL)))

    def _recover_executions(self) -> None:
        """After a reconnect, hand the broker every execution of ours (it dedupes by execId)."""
        for fill in self.ib.fills():
            key = fill.execution.orderId and self._key_by_oid.get(fill.execution.orderId)
            for ref, trade in self._trades.items():
                if trade.order.permId and trade.order.permId == fill.execution.permId:
                    key = ref
            if key:
                self._push_fill(key, fill, with_commission=True)

    # ------------------------------------------------------------------ misc
    def reqCurrentTime(self, timeout: float = 10.0) -> datetime:
        """Return the gateway's clock (a blocking round trip; for tools, not per-bar code)."""
        async def ask():
            return await self.ib.reqCurrentTimeAsync()

        return self.run(ask(), timeout=timeout)
