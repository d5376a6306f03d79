"""Order routing between backtrader's thread and IB, keyed by each order's orderRef.

:class:`OrderRoutes` runs in the connection's loop thread. ``place``/``cancel`` are posted to it
and return at once; what IB answers (order status, executions, commission reports, errors) is
put on the broker queue under the order's key (its orderRef). While the connection is not ready
(disconnected, or reconnected but not yet re-synced) new orders are held and sent, oldest
first, once it is. After a reconnect the executions of our orders are handed over again
(:meth:`OrderRoutes.recover_executions`; the broker deduplicates by execId). Order ids are never
reused, even when the gateway's nextValidId rolls back after a restart.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bt_ibkr.ib.connection import IBConnection
from bt_ibkr.ib.events import (
    ExecutionReceived,
    FillCompleted,
    OrderError,
    OrderPlaced,
    OrderStatusChanged,
)
from bt_ibkr.ib.parsing import finite

if TYPE_CHECKING:
    from ib_async import IB, CommissionReport, Fill, Trade

log = logging.getLogger("bt_ibkr.ib.orders")


@dataclass
class PendingOrder:
    """An order handed to the router: its key (orderRef), contract, IB order, parent key."""

    key: str
    contract: Any
    order: Any
    parent_key: str | None


class OrderRoutes:
    """The orders of one connection (see the module docstring).

    ``broker_q`` receives the broker's events; ``notify(text, reqId, kind)`` reports to
    ``notify_store`` (an order held: kind "connection"; with ``notifyall`` every status and
    execution: kind "event").
    """

    def __init__(self, connection: IBConnection, broker_q: queue.Queue,
                 notify: Callable[[str, int, str], None], notifyall: bool = False) -> None:
        self.connection = connection
        self.broker_q = broker_q
        self.notify = notify
        self.notifyall = notifyall
        self.trades: dict[str, Any] = {}
        self.key_by_oid: dict[int, str] = {}
        self.held: list[PendingOrder] = []
        self.max_order_id = 0
        # execution <-> commission report pairing (loop thread): one FillCompleted per execId
        self._unpaired: dict[str, ExecutionReceived] = {}  # execId -> seen, no report yet
        self._early: dict[str, tuple[float, float]] = {}  # execId -> report before execution
        self._paired: set[str] = set()

    def attach(self, ib: IB) -> None:
        """Follow a new client object's order events (a connection hook)."""
        ib.orderStatusEvent += self._on_order_status
        ib.execDetailsEvent += self._on_exec
        ib.commissionReportEvent += self._on_commission

    # ------------------------------------------------------------------ placing (loop thread)
    def place(self, pending: PendingOrder) -> None:
        """Send ``pending`` now, or hold it until the connection is ready again."""
        if not self.connection.ready:
            self.held.append(pending)
            self.notify(f"order {pending.key} held until the gateway is back", -1, "connection")
            return
        if self.held:  # older held orders go first, in submission order
            self.flush_held()
        order = pending.order
        if pending.parent_key is not None:
            parent = self.trades.get(pending.parent_key)
            if parent is None:
                self.broker_q.put(OrderError(pending.key, 0,
                                             f"parent order {pending.parent_key} was never placed"))
                return
            order.parentId = parent.order.orderId
        try:
            trade = self.connection.ib.placeOrder(pending.contract, order)
        except Exception as exc:  # noqa: BLE001 - reported as a rejection
            self.broker_q.put(OrderError(pending.key, 0, f"placeOrder failed: {exc}"))
            return
        oid = trade.order.orderId
        self.max_order_id = max(self.max_order_id, oid)
        self.trades[pending.key] = trade
        self.key_by_oid[oid] = pending.key
        self.broker_q.put(OrderPlaced(pending.key, oid))

    def cancel(self, key: str) -> None:
        """Cancel the order ``key``: a held one at once, a placed one at IB."""
        for i, pending in enumerate(self.held):
            if pending.key == key:
                del self.held[i]
                self.broker_q.put(OrderStatusChanged(key, "Cancelled", 0.0, 0.0, 0.0))
                return
        trade = self.trades.get(key)
        if trade is None or not self.connection.connected or trade.isDone():
            return
        self.connection.ib.cancelOrder(trade.order)

    def flush_held(self) -> None:
        """Send the held orders (oldest first)."""
        held, self.held = self.held, []
        for pending in held:
            self.place(pending)

    def reserve_ids(self, highest_used: int) -> None:
        """Never hand out an order id <= ``highest_used`` (loop thread)."""
        self.max_order_id = max(self.max_order_id, int(highest_used))
        self.floor_ids()

    def floor_ids(self) -> None:
        """Make the client's next order id exceed every id used (after each connect)."""
        if self.connection.connected:
            self.connection.ib.client.updateReqId(self.max_order_id + 1)

    def follow(self, refs: set[str]) -> list[str]:
        """Route the events of open trades whose orderRef is in ``refs`` (orders placed by an
        earlier process) under that orderRef; return the refs newly followed (loop thread).

        Only trades placed under this connection's clientId are followed: IB pushes an order's
        status and executions to the client that placed it (and to the Master API client ID,
        a TWS setting), so another clientId's order, which ``reqAllOpenOrders`` lists, would
        never send this client a word. The executions the client already has of a followed
        trade (made before it was followed) are handed to the broker first, with their
        commission: the broker and the journal deduplicate by execId and tell which of them
        the adopted position and cash include."""
        followed = []
        mine = self.connection.ib.client.clientId
        for trade in self.connection.ib.openTrades():
            ref = getattr(trade.order, "orderRef", "")
            if (ref and ref in refs and ref not in self.trades
                    and getattr(trade.order, "clientId", mine) == mine):
                self.trades[ref] = trade
                self.key_by_oid[trade.order.orderId] = ref
                followed.append(ref)
                for fill in list(trade.fills):
                    self._push_fill(ref, fill, with_commission=True)
        return followed

    def routes(self, ref: str) -> bool:
        """Return True when the events of the order with orderRef ``ref`` reach the broker:
        this process placed it, or :meth:`follow` follows it."""
        return ref in self.trades

    # ------------------------------------------------------------------ IB's answers (loop)
    def _key_of(self, trade: Trade) -> str | None:
        ref = getattr(trade.order, "orderRef", "")
        if ref and ref in self.trades:
            if self.trades[ref] is not trade:
                self.trades[ref] = trade  # recreated after a reconnect
                self.key_by_oid[trade.order.orderId] = ref
            return ref
        return self.key_by_oid.get(trade.order.orderId)

    def on_error(self, req_id: int, code: int, text: str) -> bool:
        """Route an IB error about one of our orders to the broker; return True if it was."""
        key = self.key_by_oid.get(req_id)
        if key is None:
            return False
        self.broker_q.put(OrderError(key, code, text))
        return True

    def _on_order_status(self, trade: Trade) -> None:
        key = self._key_of(trade)
        if key is None:
            return
        st = trade.orderStatus
        code, reason = None, ""
        if trade.log:
            last = trade.log[-1]
            code = getattr(last, "errorCode", 0) or None
            reason = last.message
        self.broker_q.put(OrderStatusChanged(key, st.status, float(st.filled),
                                             float(st.remaining), float(st.avgFillPrice or 0.0),
                                             code, reason))
        if self.notifyall:
            self.notify(f"order {key}: {st.status}", trade.order.orderId, "event")

    def _on_exec(self, trade: Trade, fill: Fill) -> None:
        key = self._key_of(trade)
        if key is not None:
            self._push_fill(key, fill)

    def _push_fill(self, key: str, fill: Fill, with_commission: bool = False) -> None:
        ex = fill.execution
        shares = float(ex.shares)
        signed = shares if ex.side in ("BOT", "BUY") else -shares
        when = ex.time if isinstance(ex.time, datetime) else fill.time
        seen = ExecutionReceived(key, ex.execId, signed, float(ex.price), when,
                                 contract=fill.contract)
        self.broker_q.put(seen)
        self._execution_seen(seen)
        if with_commission:
            cr = fill.commissionReport
            if cr is not None and cr.execId:
                self._report_seen(ex.execId, finite(cr.commission), finite(cr.realizedPNL))
        if self.notifyall:
            self.notify(f"execution {ex.execId}: {signed:g} @ {ex.price}", ex.orderId, "event")

    def _on_commission(self, trade: Trade, fill: Fill, report: CommissionReport) -> None:
        if self._key_of(trade) is not None:
            self._report_seen(report.execId, finite(report.commission),
                              finite(report.realizedPNL))

    # ------------------------------------------------------------------ one fill event
    def _execution_seen(self, ev: ExecutionReceived) -> None:
        """Pair an execution with its commission report: emit FillCompleted when the report
        came first, else wait for it (IB sends ``commissionReport`` after ``execDetails``)."""
        if ev.exec_id in self._paired or ev.exec_id in self._unpaired:
            return
        early = self._early.pop(ev.exec_id, None)
        if early is None:
            self._unpaired[ev.exec_id] = ev
        else:
            self._complete(ev, *early)

    def _report_seen(self, exec_id: str, commission: float, realized_pnl: float) -> None:
        if exec_id in self._paired:
            return
        ev = self._unpaired.pop(exec_id, None)
        if ev is None:
            self._early[exec_id] = (commission, realized_pnl)
        else:
            self._complete(ev, commission, realized_pnl)

    def _complete(self, ev: ExecutionReceived, commission: float, realized_pnl: float) -> None:
        self._paired.add(ev.exec_id)
        self.broker_q.put(FillCompleted(ev.ref, ev.exec_id, ev.shares, ev.price, ev.time,
                                        commission, realized_pnl, contract=ev.contract))

    def recover_executions(self) -> None:
        """Hand the broker every execution of ours the client knows (it dedupes by execId)."""
        for fill in self.connection.ib.fills():
            key = fill.execution.orderId and self.key_by_oid.get(fill.execution.orderId)
            for ref, trade in self.trades.items():
                if trade.order.permId and trade.order.permId == fill.execution.permId:
                    key = ref
            if key:
                self._push_fill(key, fill, with_commission=True)
