"""IBStore: backtrader's Store for Interactive Brokers, on one
:class:`~bt_ibkr.ib.connection.IBConnection`.

The store is the face the feeds (:class:`~feeds.ibdata.IBData`) and the broker
(:class:`~bt_ibkr.ib.broker.IBBroker`) see. It owns one connection (one client object on one
asyncio loop in one background thread) and three parts that run on that loop: the live streams
(:mod:`bt_ibkr.ib.streams`), the order routes (:mod:`bt_ibkr.ib.orders`) and the historical
path (:mod:`bt_ibkr.ib.historical`). backtrader's thread calls in through methods that return
at once (subscribe, place, cancel, request history) and receives through ``queue.Queue``
objects: one per data feed (bars, errors, connection events) and :attr:`IBStore.broker_q`
(order status, executions, commission reports). Nothing here waits on the network in
backtrader's thread except the explicit start-up calls (connect, qualify, the reconcile
queries of :mod:`bt_ibkr.ib.reconcile_queries`) that backtrader's own IBStore also makes
synchronously.

Drop-in with backtrader's ``IBStore`` parameters (host, port, clientId, notifyall, _debug,
reconnect, timeout, timeoffset, timerefresh, indcash) plus a few of ours: ``account`` (the
account to follow and to put on orders), ``readonly``, ``marketdatatype`` (3 = delayed),
``delayed_fallback`` (switch a tick stream refused with 354/10089 to delayed data),
``pacing`` (client-side historical pacing), ``connect_timeout``, ``request_timeout``,
``backoff_max`` (cap of the reconnect back-off) and ``cache`` (a
:class:`~bt_ibkr.cache.BarCache` that history requests read and extend; None: none). Like
backtrader's singleton, the first store created becomes the *default* store that ``IBData()`` /
``IBBroker()`` share when they are not given one.

Connection life cycle: ``start()`` connects (``reconnect`` retries ``timeout`` s apart; error
326 fails at once), a lost socket is re-dialled in the background with exponential back-off,
then every live stream is re-subscribed, executions missed while away are handed to the
broker (deduplicated there by execId), feeds get :class:`~bt_ibkr.ib.events.ConnectionRestored`
and backfill their gap, and orders submitted meanwhile (held) are sent. Order ids are never reused, even when the
gateway's nextValidId rolls back after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from bt_ibkr.errors import (
    ConfigError,
    GatewayTimeoutError,
    UnknownSymbolError,
)
from bt_ibkr.ib.book import AccountSnapshot, FillBook
from bt_ibkr.ib.codes import CONNECTIVITY, CONNECTIVITY_RESTORED_DATA_LOST
from bt_ibkr.ib.connection import IBConnection
from bt_ibkr.ib.contracts import contract_to_dataname
from bt_ibkr.ib.events import (
    AccountChanged,
    ConnectionGaveUp,
    ConnectionLost,
    ConnectionRestored,
    ConnectivityNotice,
    StoreClosed,
    StoreMessage,
)
from bt_ibkr.ib.historical import HistoricalData
from bt_ibkr.ib.identity import account_guard
from bt_ibkr.ib.orders import OrderRoutes, PendingOrder
from bt_ibkr.ib.parsing import ExecSnapshot, OrderSnapshot, contract_symbol
from bt_ibkr.ib.position_events import PositionWatch, SettlementFollower
from bt_ibkr.ib.reconcile_queries import ask_executions, ask_orders
from bt_ibkr.ib.store_method import store_or_default
from bt_ibkr.ib.streams import LiveStream, LiveStreams
from bt_ibkr.ib.what_if import WhatIfMargin, ask_what_if

__all__ = ["STORE_PARAMS", "IBStore", "StoreMessage"]

log = logging.getLogger("bt_ibkr.ib.store")

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
    "cache": None,
}


class IBStore:
    """Owns the IB connection; see the module docstring. ``IBStore(**params)``.

    Raises :class:`ConfigError` for an unknown parameter name.
    """

    params = tuple(STORE_PARAMS.items())
    #: the feed class ``getdata`` makes: the feed registers itself when its module is imported
    #: (:meth:`register_feed`, called by ``feeds.ibdata``), so this layer never imports feeds/
    _feed_cls: type | None = None
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
        p = self.p
        self.clientId = int(p.clientId) if p.clientId is not None else random.randint(1, 65535)
        self.notifs: queue.Queue = queue.Queue()
        self.broker_q: queue.Queue = queue.Queue()
        self.broker = None
        self.datas: list = []
        self.connection = IBConnection(
            p.host, p.port, self.clientId, account=p.account, readonly=p.readonly,
            connect_timeout=p.connect_timeout, request_timeout=p.request_timeout,
            market_data_type=p.marketdatatype,
            clock_refresh=float(p.timerefresh or 0) if p.timeoffset else None,
            reconnect_policy=lambda: (int(self.p.reconnect), float(self.p.timeout),
                                      float(self.p.backoff_max)),
            name="bt_ibkr-ib")
        self.streams = LiveStreams(self.connection, delayed_fallback=bool(p.delayed_fallback))
        self.routes = OrderRoutes(self.connection, self.broker_q, self._route_notice,
                                  notifyall=bool(p.notifyall))
        self.history = HistoricalData(self.connection, cache=p.cache or None, pacing=p.pacing,
                                      timeout=p.request_timeout)
        #: which executions the adopted position and cash include (:mod:`bt_ibkr.ib.book`)
        self.book = FillBook(p.account)
        #: option settlements IB makes without an order (:mod:`bt_ibkr.ib.position_events`)
        self.position_watch = PositionWatch(self.broker_q.put, self._gateway_clock, p.account)
        s = self.connection
        s.on_client.append(self.routes.attach)
        s.on_client.append(self.book.attach)
        s.on_client.append(self.position_watch.attach)
        s.on_error.append(self._on_error)
        s.on_connected.append(self._on_connected)
        s.on_lost.append(self._on_lost)
        s.on_gave_up.append(self._on_gave_up)
        s.on_identity.append(self._on_identity)
        s.on_notice.append(lambda text: self._notify(None, text, kind="connection"))
        self._refs = 0
        self._closing = False
        self._lock = threading.RLock()
        #: monotonic time after which blocking waits give up (a run's max-runtime); None: none
        self.deadline: float | None = None
        with IBStore._default_lock:
            if IBStore._default is None or IBStore._default.closing:
                IBStore._default = self

    # ------------------------------------------------------------------ defaults, factories
    @classmethod
    def default(cls, **kwargs: Any) -> IBStore:
        """Return the shared default store, creating it with ``kwargs`` if there is none."""
        with cls._default_lock:
            store = cls._default
            if store is not None and not store.closing:
                return store
        return cls(**kwargs)

    @classmethod
    def reset_default(cls) -> None:
        """Forget the default store (it is not stopped); the next ``default()`` makes a new one."""
        with cls._default_lock:
            cls._default = None

    @classmethod
    def register_feed(cls, feed_cls: type) -> None:
        """Make ``feed_cls`` the class :meth:`getdata` returns (``feeds.ibdata`` registers
        ``IBData`` when it is imported)."""
        IBStore._feed_cls = feed_cls

    @store_or_default
    def getdata(self, *args: Any, **kwargs: Any):
        """Return an ``IBData`` feed bound to this store (``store.getdata(dataname=...)``).

        Raises ConfigError when no feed class is registered yet (``from feeds import IBData``
        registers it).
        """
        feed_cls = IBStore._feed_cls
        if feed_cls is None:
            raise ConfigError("IBStore.getdata: no IB data feed is registered; import the feed "
                              "first (from feeds import IBData)")
        return feed_cls(*args, store=self, **kwargs)

    @store_or_default
    def follow_settlements(self, broker) -> SettlementFollower:
        """Return a :class:`~bt_ibkr.ib.position_events.SettlementFollower` booking in
        ``broker`` the option settlements this store's watch finds (subscribed to it)."""
        follower = SettlementFollower(broker)
        broker.subscribe(follower.on_event)
        return follower

    def getbroker(self, *args: Any, **kwargs: Any):
        """Return an ``IBBroker`` bound to this store."""
        from bt_ibkr.ib.broker import IBBroker  # imported on use: broker.py imports this module

        return IBBroker(*args, store=self, **kwargs)

    # ------------------------------------------------------------------ loop thread
    def in_loop_thread(self) -> bool:
        """Return True when called from the store's event-loop thread."""
        return self.connection.in_loop_thread()

    def run(self, coro, timeout: float | None = None):
        """Run ``coro`` on the store's loop and return its result (blocks the caller).

        Meant for start-up calls and tests, never for backtrader's per-bar path. Raises
        ``TimeoutError`` after ``timeout`` seconds and whatever the coroutine raises.
        """
        return self.connection.run(coro, timeout)

    def call(self, fn: Callable, *args: Any, timeout: float | None = 30.0):
        """Call the plain function ``fn(*args)`` in the loop thread and return its result."""
        return self.connection.call(fn, *args, timeout=timeout)

    def post(self, fn: Callable, *args: Any) -> None:
        """Schedule ``fn(*args)`` in the loop thread and return at once (fire and forget)."""
        self.connection.post(fn, *args)

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
                try:
                    self.connection.connect(int(self.p.reconnect), float(self.p.timeout))
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
            self.connection.close()
            self.streams.broadcast(StoreClosed())
            with IBStore._default_lock:
                if IBStore._default is self:
                    IBStore._default = None

    @property
    def closing(self) -> bool:
        """True from :meth:`close` until the next :meth:`start`."""
        return self._closing

    def connected(self) -> bool:
        """Return True when the socket to the gateway is up."""
        return self.connection.connected

    @property
    def ready(self) -> bool:
        """True when connected and re-synced after the last (re)connect: orders go out."""
        return self.connection.ready

    @property
    def managed_accounts(self) -> list[str]:
        """The accounts the gateway said this login manages."""
        return list(self.connection.managed_accounts)

    def expect_account(self, account: str, mode: str) -> None:
        """From now on, check after every reconnect that the gateway is still logged into
        ``account`` and only into accounts of ``mode``'s kind (paper ``DU``/``DF``, live
        ``U``/``F``) BEFORE anything is sent on the new connection; on a mismatch the store
        disconnects, never re-dials, puts :class:`~bt_ibkr.ib.events.AccountChanged` on the
        broker's queue and reports it in :attr:`identity_error`. Returns None."""
        self.connection.account_guard = account_guard(account, mode)

    @property
    def identity_error(self) -> str | None:
        """Why the store stopped after reconnecting into the wrong account (None: it did
        not)."""
        return self.connection.identity_error

    def _on_identity(self, reason: str) -> None:
        self.streams.broadcast(ConnectionGaveUp())
        self.broker_q.put(AccountChanged(reason))

    # --------------------------------------------------------------- connection hooks (loop)
    def _on_connected(self, first: bool) -> None:
        self.book.rebase()
        self.position_watch.resync(self.connection.ib.positions())
        self.routes.floor_ids()  # never reuse an order id, even after an id rollback
        if first:
            return
        self.streams.resubscribe_all()
        self.routes.recover_executions()
        self.streams.broadcast(ConnectionRestored())
        self.broker_q.put(ConnectionRestored())
        self.routes.flush_held()

    async def _gateway_clock(self) -> datetime:
        return await self.connection.server_time(min(10.0, float(self.p.request_timeout)))

    def _on_lost(self) -> None:
        self.streams.broadcast(ConnectionLost())
        self.broker_q.put(ConnectionLost())

    def _on_gave_up(self, reason: str) -> None:
        self.streams.broadcast(ConnectionGaveUp())
        self.broker_q.put(ConnectionGaveUp())

    def _on_error(self, req_id: int, code: int, text: str) -> None:
        self._notify(code, text, reqId=req_id)
        if self.streams.on_error(req_id, code, text):
            return
        if code in CONNECTIVITY:
            self.streams.broadcast(ConnectivityNotice(code, text))
            self.broker_q.put(ConnectivityNotice(code, text))
            if code == CONNECTIVITY_RESTORED_DATA_LOST:  # restored, subscriptions lost
                self.streams.resubscribe_all()
            return
        self.routes.on_error(req_id, code, text)

    # ------------------------------------------------------------------ notifications
    def _notify(self, code: int | None, text: str, reqId: int = -1, kind: str = "error",
                **details: Any) -> None:
        msg = StoreMessage(code=code, text=text, reqId=reqId, kind=kind)
        if self.p._debug:
            print(f"bt_ibkr IBStore: {msg}")
        self.notifs.put((msg, (), details))

    def notify_event(self, text: str, kind: str = "event", **details: Any) -> None:
        """Queue a :class:`StoreMessage` of ``kind`` for ``notify_store``; ``details`` reach it
        as keyword arguments (``notify_store(msg, **details)``, backtrader's convention)."""
        self._notify(None, text, kind=kind, **details)

    def _route_notice(self, text: str, req_id: int, kind: str) -> None:
        self._notify(None, text, reqId=req_id, kind=kind)

    def get_notifications(self) -> list:
        """Return the pending store notifications as ``(msg, args, kwargs)`` (backtrader's form)."""
        out = []
        while True:
            try:
                out.append(self.notifs.get_nowait())
            except queue.Empty:
                return out

    # ------------------------------------------------------------------ clock, account
    def timeoffset(self) -> timedelta:
        """Return the gateway-minus-local clock offset (zero with ``timeoffset=False``)."""
        return self.connection.timeoffset() if self.p.timeoffset else timedelta()

    def server_time(self, timeout: float = 10.0, strict: bool = False) -> datetime:
        """Return the gateway's clock, tz-aware UTC (a blocking round trip; for start-up code
        and tools, not per-bar code). Without an answer: this machine's clock plus the last
        measured offset, or with ``strict`` :class:`GatewayTimeoutError`."""
        timeout = self.remaining(timeout)
        try:
            return self.run(self.connection.server_time(timeout, strict), timeout=timeout + 5)
        except TimeoutError:
            if strict:
                raise GatewayTimeoutError(
                    f"the gateway did not answer the time request within {timeout:g}s") from None
            raise

    def remaining(self, timeout: float) -> float:
        """Return ``timeout`` capped by the seconds left until :attr:`deadline` (a monotonic
        time the owner of a run sets; None: no cap), at least 0.01 s."""
        deadline = self.deadline
        if deadline is None:
            return float(timeout)
        return max(0.01, min(float(timeout), deadline - time.monotonic()))

    def past_deadline(self) -> bool:
        """Return True when :attr:`deadline` is set and has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def get_acc_cash(self, account: str | None = None) -> float:
        """Return the account's cash (TotalCashBalance in BASE), 0.0 before the first download."""
        return self.connection.account.number(
            ("TotalCashBalance", "CashBalance", "TotalCashValue", "AvailableFunds"), account)

    def get_acc_value(self, account: str | None = None) -> float:
        """Return the account's net liquidation value, 0.0 before the first download."""
        return self.connection.account.number(("NetLiquidation", "NetLiquidationByCurrency"),
                                           account)

    def get_acc_values(self, account: str | None = None) -> dict:
        """Return every account value as ``{(account, tag, currency): value}``."""
        return self.connection.account.values(account)

    def account_snapshot(self, settle: float = 5.0) -> AccountSnapshot:
        """Return positions, cash, value and which known executions they include, read in the
        loop thread between two messages (:class:`~bt_ibkr.ib.book.AccountSnapshot`; blocking,
        start-up only); waits up to ``settle`` s for an execution IB reported a position of
        before sending it (:meth:`~bt_ibkr.ib.book.FillBook.settle`)."""
        book = self.book
        return book.settle(lambda: self.call(lambda: book.snapshot(
            self.get_positions(), self.get_acc_cash(), self.get_acc_value(),
            [f.execution.execId for f in self.connection.ib.fills()])), self.remaining(settle))

    def get_positions(self) -> dict[int, tuple[float, float]]:
        """Return the gateway's positions as ``{conId: (size, avgCost)}`` (a copy)."""
        return self.connection.account.positions()

    def holdings(self, account: str | None = None) -> dict[str, float]:
        """Return ``{symbol: size}`` of the non-zero positions (of ``account`` when given)."""
        out: dict[str, float] = {}
        for contract, size in self.connection.account.holdings(account):
            sym = contract_symbol(contract)
            out[sym] = out.get(sym, 0.0) + float(size)
        return out

    # ------------------------------------------------------------------ contracts
    def qualify(self, contract, dataname: str = "", timeout: float | None = None):
        """Return the one ``ContractDetails`` IB has for ``contract`` (blocking, start-up only).

        Raises :class:`UnknownSymbolError` for no match, ``AmbiguousContractError`` for several
        (messages name ``dataname``), :class:`SourceUnavailableError` on timeout.
        """
        name = dataname or contract_to_dataname(contract)
        timeout = self.remaining(timeout or self.p.request_timeout)
        try:
            return self.run(self.connection.qualify(contract, name), timeout=timeout + 5)
        except TimeoutError:
            raise GatewayTimeoutError(
                f"contract lookup for dataname {name!r} got no answer in {timeout:g}s"
            ) from None
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
        name: str | None = None,
    ) -> queue.Queue:
        """Fetch ``contract``'s bars from ``start`` to ``end`` (naive UTC; None end: now on the
        gateway's clock, None start: IB's max duration) through the historical path: chunked,
        paced, retried, and through the store's ``cache`` filed under ``name`` (the dataname).

        Returns at once with the queue that receives :class:`BarReceived` events in ascending
        time (intraday: bars starting at or after ``start``; daily: sessions from ``start``'s
        date), then :class:`HistoryEnded`; an IB error arrives as :class:`RequestFailed` before
        the end. Bars are stamped at their close: daily bars at ``sessionend`` in ``tz``.
        """
        q = q if q is not None else queue.Queue()
        name = name or contract_to_dataname(contract)
        self.post(lambda: asyncio.ensure_future(self.history.into_queue(
            contract, start, end, barsize, what, use_rth, tz, sessionend, q, name)))
        return q

    # ------------------------------------------------------------------ live data
    def subscribe_live(self, contract, rtbar: bool, what: str | None, use_rth: bool,
                       q: queue.Queue) -> LiveStream:
        """Start a live stream into ``q`` (returns at once): :class:`BarReceived` events.

        ``rtbar=True``: IB's 5-second real-time bars; else ticks (last trade; bid for CASH,
        ask with ``what='ASK'``). Errors arrive as :class:`RequestFailed` (or
        :class:`SwitchedToDelayed`), connection changes as the events of
        :data:`bt_ibkr.ib.events.ConnectionEvent`.
        """
        return self.streams.subscribe(contract, rtbar, what, use_rth, q)

    def cancel_live(self, stream: LiveStream) -> None:
        """Stop ``stream`` (returns at once)."""
        self.streams.cancel(stream)

    # ------------------------------------------------------------------ orders
    def place_order(self, key: str, contract, order, parent_key: str | None = None) -> None:
        """Send ``order`` for ``contract`` (returns at once). ``key`` is the unique orderRef.

        Events come back on :attr:`broker_q` (:data:`bt_ibkr.ib.events.BrokerEvent`):
        OrderPlaced, OrderStatusChanged, ExecutionReceived, FillCompleted, OrderError, all
        keyed by ``key``. While disconnected the order is held and sent after the reconnect
        has re-synced state.
        """
        self.post(self.routes.place, PendingOrder(key, contract, order, parent_key))

    def cancel_order(self, key: str) -> None:
        """Ask IB to cancel the order with orderRef ``key`` (returns at once)."""
        self.post(self.routes.cancel, key)

    def reserve_order_ids(self, highest_used: int) -> None:
        """Never hand out an order id <= ``highest_used`` (ids a journal or the gateway saw
        before a restart rolled nextValidId back). Runs on the store's loop; returns when done."""
        self.call(self.routes.reserve_ids, highest_used)

    def follow_trades(self, refs: set[str]) -> list[str]:
        """Route the events of open trades whose orderRef is in ``refs`` (orders placed by an
        earlier process under this store's clientId: IB streams an order's events to the
        client that placed it) to the broker under that orderRef, their executions the client
        already has first; the broker counts each fill once (:mod:`bt_ibkr.ib.broker`).

        Returns the refs newly followed (already followed ones are skipped). Runs on the
        store's loop; returns when done.
        """
        return self.call(self.routes.follow, refs)

    def follows_order(self, ref: str) -> bool:
        """Return True when the events of the order with orderRef ``ref`` reach the broker:
        placed by this store, or followed (:meth:`follow_trades`; only orders placed under
        this store's clientId can be). A journaled order for which this is False sends this
        process nothing: not its fills, not its end."""
        return self.routes.routes(ref)

    def what_if_margin(self, contract, order, timeout: float = 5.0) -> WhatIfMargin | None:
        """Return IB's what-if margin of ``order`` on ``contract`` (nothing is placed; blocks
        the caller up to ``timeout`` s, capped by :attr:`deadline`), or None when IB gives
        none: unset, refused, not connected, a read-only API connection (IB refuses every
        order message there, a whatIf too), or no answer in time
        (:func:`~bt_ibkr.ib.what_if.ask_what_if`)."""
        if self.p.readonly or not self.connected():
            return None
        timeout = self.remaining(timeout)
        try:
            return self.run(ask_what_if(self.connection.ib, contract, order, timeout),
                            timeout=timeout + 5)
        except (TimeoutError, ConnectionError, RuntimeError):
            return None

    # ------------------------------------------------------------------ reconciling (start-up)
    def _answer(self, coro, timeout: float, what: str):
        """Run ``coro`` within ``timeout`` (capped by :attr:`deadline`); raises
        :class:`GatewayTimeoutError` naming ``what`` when the gateway does not answer."""
        timeout = self.remaining(timeout)
        try:
            return self.run(coro, timeout=timeout)
        except TimeoutError:
            raise GatewayTimeoutError(
                f"the gateway did not answer {what} within {timeout:g}s; check that it is "
                "running and logged in, then run again (the journal is safe)") from None

    def order_snapshots(self, account: str, timeout: float = 30.0) -> list[OrderSnapshot]:
        """Return the gateway's open and completed orders of ``account`` (blocking, start-up;
        see :func:`~bt_ibkr.ib.reconcile_queries.ask_orders`). Raises GatewayTimeoutError."""
        return self._answer(ask_orders(self.connection.ib, account), timeout,
                            "the open and completed orders request "
                            "(reqAllOpenOrders / reqCompletedOrders)")

    def exec_snapshots(self, account: str, client_ids: Iterable[int] = (),
                       timeout: float = 30.0) -> list[ExecSnapshot]:
        """Return every execution the gateway still has for ``account`` (blocking, start-up;
        ``client_ids``: see :func:`~bt_ibkr.ib.reconcile_queries.ask_executions`). Raises
        GatewayTimeoutError."""
        return self._answer(ask_executions(self.connection.ib, account, client_ids), timeout,
                            "the executions request (reqExecutions)")
