"""IBBroker(bt.BrokerBase): backtrader orders to Interactive Brokers through an IBStore.

Drop-in for backtrader's ``IBBroker``: Market, Limit, Stop, StopLimit, StopTrail,
StopTrailLimit and Close (MOC, a DAY order) orders; ``valid`` -> TIF (None: GTC,
``timedelta(0)``/0: DAY, a datetime or other timedelta: GTD); brackets
(``buy_bracket``/``sell_bracket``: children carry the parent's id, only the last one
transmits); ``oco=`` -> an IB OCA group; the named options of :mod:`bt_ibkr.order_options`
(``auction="open"|"close"`` -> MOO/LOO/MOC/LOC, ``outside_rth=True``, ``algo="adaptive"``
with ``priority``) mean what they mean in a backtest; any other extra keyword is set on the
IB ``Order`` as it is (``outsideRth=True``, ``orderRef=...``, ``account=...``).

Submitting never waits on the network: the order goes to the store's loop thread and the
call returns. Order status, executions and commission reports come back on the store's
broker queue and are applied in backtrader's thread in :meth:`IBBroker.next`, producing the
usual notifications (Submitted, Accepted, Partial, Completed, Canceled, Rejected with IB's
reason in ``order.info.reason``). Commission is IB's (``order.executed.comm``).

What a Strategy reads at a decision (``mark="close"``, the default) is kept by
:class:`~bt_ibkr.ib.ledger.Ledger`: ``getcash()`` is the account's cash at start minus what this
broker's own fills cost (price x size x multiplier plus IB's commission; a future, settled by
IB in P&L only, sets its notional at entry aside from it); ``getposition()`` is the position
adopted at start plus those fills; ``getvalue()`` is that cash plus every position at its
notional, marked at its feed's current close (the decision bar's close; a position whose feed
has no bar yet at its average cost). That is what backtrader's BackBroker means by the same
calls (with :func:`bt_ibkr.futures.backtest.futures_comminfo` for a future), so a Strategy that
sizes from them makes the same decision on both brokers. IB's own NetLiquidation is no
substitute: it is recomputed on IB's schedule (every few minutes), so at a close it lags the
decision bar. The account is
still the truth across sessions: :meth:`IBBroker.account_drift` says how far the ledger is from
IB's numbers, :meth:`IBBroker.reconcile` adopts IB's cash (when no order is working), and
``mark="account"`` reads IB's TotalCashBalance and NetLiquidation instead.

Positions and cash are adopted once, in :meth:`IBBroker.start`, from one snapshot of the account
(:meth:`IBStore.account_snapshot`) that also says which executions they already include; from
then on every execution of an order of ours is counted exactly once, by its execId: those of
this broker's orders, and those of orders it did not place, i.e. an earlier process's orders
that the store follows after a restart (:meth:`IBStore.follow_trades`) and their fills replayed
at start-up. IB tells of a fill in separate messages that may reach the client before or after
the snapshot, in any order; :mod:`bt_ibkr.ib.book` records in which order they came, so a fill
is added to the position (and cash) unless a report that includes it came before the snapshot
(anchored on execIds, never on comparing numbers). The fill of an order this broker did
not place has no backtrader order to notify: it reaches ``notify_store`` (kind ``"fill"``,
keyword arguments orderRef, symbol, side, size, price, commission, execId) and the subscribers
(:class:`~bt_ibkr.ib.events.FollowedFill`); a Strategy order later bound to it
(:meth:`IBBroker.bind_order`, a restarted run re-making the same decision) gets those fills as
its executions.

Every order carries a deterministic ``orderRef`` (:mod:`bt_ibkr.ib.order_refs`) unless the user
gave one: the key a journal records before sending. Code that must see every event the broker
applies (a journal, an audit) subscribes with :meth:`IBBroker.subscribe`.
"""

from __future__ import annotations

import collections
import logging
import queue
from collections.abc import Callable
from datetime import datetime
from typing import Any

import backtrader as bt
from backtrader.order import Order
from backtrader.position import Position

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.book import AccountSnapshot
from bt_ibkr.ib.codes import (
    CANCEL_CONFIRMATIONS,
    CANCELLED_STATUSES,
    INACTIVE,
    ORDER_CANCELLED,
    WORKING_STATUSES,
    is_warning,
)
from bt_ibkr.ib.events import (
    BrokerEvent,
    ExecutionReceived,
    FillCompleted,
    FollowedFill,
    OrderError,
    OrderPlaced,
    OrderStatusChanged,
)
from bt_ibkr.ib.iborder import (
    CommInfoBook,
    IBCommInfo,
    IBOrder,
    OrderGate,
    tif_for,
)
from bt_ibkr.ib.ledger import Holding, Ledger
from bt_ibkr.ib.order_refs import OrderRefs, decision_time
from bt_ibkr.ib.parsing import contract_symbol
from bt_ibkr.ib.store import STORE_PARAMS, IBStore
from bt_ibkr.utc import naive_utc

__all__ = ["IBBroker", "IBCommInfo", "IBOrder", "OrderGate", "tif_for"]

log = logging.getLogger("bt_ibkr.ib.broker")


class IBBroker(bt.BrokerBase):
    """Broker for Interactive Brokers (see the module docstring).

    ``IBBroker(store=None, **store_params)``: without ``store`` it shares the default IBStore
    (created from ``store_params`` if none exists), like backtrader's singleton store.
    ``broker.store`` is that store (``broker.ib`` too: backtrader's name for it). ``mark``: see
    the module docstring; ``settle``: seconds :meth:`start` waits for an execution whose
    position IB reported before it (see :mod:`bt_ibkr.ib.book`); ``capital``: the value the
    Strategy sizes from (``mark="close"``): the ledger leaves the rest of a larger account
    out (``capital_offset``), so ``getvalue()`` starts at ``capital`` (None: the account).
    """

    params = (("store", None), ("mark", "close"), ("settle", 5.0), ("capital", None))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        if self.p.mark not in ("close", "account"):
            raise ConfigError(f"IBBroker mark={self.p.mark!r}: use 'close' (value marked at "
                              "the decision bar's close) or 'account' (IB's NetLiquidation)")
        unknown = sorted(set(kwargs) - set(STORE_PARAMS))
        if unknown:
            raise ConfigError(f"unknown IBBroker parameter(s) {unknown}")
        self.store = self.p.store if self.p.store is not None else IBStore.default(**kwargs)
        self.startingcash = self.cash = 0.0
        self.startingvalue = self.value = 0.0
        self.orders: dict[str, IBOrder] = {}
        self.notifs: collections.deque = collections.deque()
        self.positions: dict[int, Position] = {}
        self.refs = OrderRefs()
        self._subscribers: list[Callable[[BrokerEvent], None]] = []
        self._pending_exec: dict[str, ExecutionReceived] = {}  # seen, its fill not complete
        self._applied: set[str] = set()
        self._cancel_after_fills: set[str] = set()  # refs cancelled while fills were due
        self._snapshot: AccountSnapshot | None = None
        self._followed: dict[str, list[FollowedFill]] = {}  # ref -> fills of orders not placed here
        self._derived: list[FollowedFill] = []  # for the subscribers, after the queue's event
        self._status_filled: dict[str, float] = {}  # ref -> filled per IB's status (not ours)
        self._started = False
        self.ledger = Ledger()  # the money side (``mark="close"``)
        self._feeds: dict[int, Any] = {}  # conId -> the data whose close marks the position
        self._infos: dict[int, IBCommInfo] = {}  # conId -> its position's commission info
        self._comminfo = CommInfoBook()
        self._gates: list[OrderGate] = []  # checks every order passes before it is sent
        self.account: str | None = None  # the account every order is placed for
        self.settlements = self.store.follow_settlements(self)  # option expiry, exercise

    @property
    def capital_offset(self) -> float:
        """Account value left out of the ledger (``capital``; 0.0 without)."""
        return self.ledger.capital_offset

    @property
    def ib(self) -> IBStore:
        """The store (backtrader's attribute name for it)."""
        return self.store

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        super().start()
        self.store.start(broker=self)
        self._started = True
        # positions, cash and the executions they hold: one reading, taken between two messages
        snap = self._snapshot = self.store.account_snapshot(float(self.p.settle))
        # ``capital``: the strategy sizes from this much of the account (never more than it
        # has): the ledger's cash leaves the rest out, so getvalue() starts at ``capital``
        self.ledger.open(snap.cash, snap.value,
                         self.p.capital if self.p.mark == "close" else None)
        self.startingcash = self.cash = self.ledger.account_cash
        self.startingvalue = self.value = snap.value - self.capital_offset

    def stop(self) -> None:
        super().stop()
        if self._started:
            self._started = False
            self.process_events()
            self.store.stop()

    # ------------------------------------------------------------------ account
    def getcash(self) -> float:
        """Return the cash: the ledger's (start cash minus own fills, an open future's notional
        at entry set aside: :meth:`Ledger.cash`) with ``mark="close"``, else IB's latest
        TotalCashBalance (never blocks)."""
        if self.p.mark == "account":
            self.cash = self.store.get_acc_cash()
        else:
            self.cash = self.ledger.cash(self._holdings())
        return self.cash

    def getvalue(self, datas=None) -> float:
        """Return the value: the ledger's cash plus positions at their notional, marked at
        their feeds' current close (``mark="close"``), else IB's latest NetLiquidation (never
        blocks). ``datas``: only those feeds' positions (backtrader's meaning)."""
        if self.p.mark == "account":
            self.value = self.store.get_acc_value()
            return self.value
        if datas is not None:
            return sum(h.value for h in self._holdings({self._conid(d) for d in datas}))
        self.value = self.ledger.value(self._holdings())
        return self.value

    def _holdings(self, wanted: set[int] | None = None) -> list[Holding]:
        """Return the open positions (of the conIds ``wanted`` when given) as the ledger
        values them. After :meth:`start` every feed's position is loaded first: a Strategy
        that reads the cash or the value before its first ``getposition`` (a restart holding
        a position) counts what it holds."""
        if self._started:
            for data in self.store.datas:
                conid = getattr(getattr(data, "tradecontract", None), "conId", None)
                if conid and conid not in self.positions:
                    self.getposition(data, clone=False)
        out = []
        for conid, pos in self.positions.items():
            if not pos.size or (wanted is not None and conid not in wanted):
                continue
            data = self._feeds.get(conid)
            info = self._infos.get(conid) or self.getcommissioninfo(data)
            out.append(Holding(pos.size, pos.price, self.ledger.mark(conid, data, pos.price),
                               info.p.mult, not info.stocklike))
        return out

    def account_cash(self) -> float:
        """Return the ledger's account cash (``mark="close"``): as IB books it (a future moves
        it by realized P&L and commission only), less ``capital_offset``."""
        return self.ledger.account_cash

    def account_drift(self) -> dict[str, float]:
        """Return ``{"cash": ledger account cash - IB cash, "value": ledger value -
        NetLiquidation}`` (``capital_offset`` added back)."""
        return self.ledger.drift(self.store.get_acc_cash(), self.store.get_acc_value(),
                                 self.getvalue())

    def reconcile(self) -> float:
        """Adopt IB's cash as the ledger's account cash (when no order is working; less
        ``capital_offset``); return the change."""
        return self.ledger.adopt(self.store.get_acc_cash())

    def get_notification(self):
        try:
            return self.notifs.popleft()
        except IndexError:
            return None

    def notify(self, order: IBOrder) -> None:
        self.notifs.append(order.clone())

    def _conid(self, data) -> int:
        contract = getattr(data, "tradecontract", None)
        if contract is None:
            raise ConfigError(f"data {data._name!r} is not an IBData (no IB trade contract)")
        return contract.conId

    def getposition(self, data, clone: bool = True) -> Position:
        """Return the position of ``data``'s trade contract (adopted from IB at start)."""
        conid = self._conid(data)
        self._feeds.setdefault(conid, data)
        pos = self._position(conid, self.getcommissioninfo(data))
        return pos.clone() if clone else pos

    def _position(self, conid: int, info: IBCommInfo) -> Position:
        pos = self.positions.get(conid)
        if pos is None:
            held = (self._snapshot.positions if self._snapshot is not None
                    else self.store.get_positions())
            size, avgcost = held.get(conid, (0.0, 0.0))
            size = self.own_start_size(conid, size)
            mult = info.p.mult
            pos = self.positions[conid] = Position(size, (avgcost / mult) if size else 0.0)
            self._infos[conid] = info
        return pos

    def own_start_size(self, conid: int, held: float) -> float:
        """Return how much of the account's position ``held`` in ``conid`` at start is this
        broker's own (all of it here; the journaled broker counts only its journal's)."""
        return held

    def _feed_of(self, conid: int):
        """Return the feed trading contract ``conid`` (None when no feed does)."""
        data = self._feeds.get(conid)
        if data is None:
            for d in self.store.datas:
                if getattr(getattr(d, "tradecontract", None), "conId", None) == conid:
                    data = self._feeds[conid] = d
                    break
        return data

    def getcommissioninfo(self, data) -> IBCommInfo:
        """Return the IBCommInfo of ``data``'s trade contract (:class:`CommInfoBook`)."""
        return self._comminfo.of(getattr(data, "tradecontract", None))

    # ------------------------------------------------------------------ orders
    def _order_ref(self, owner, data) -> str:
        strategy = type(owner).__name__ if owner is not None else "user"
        return self.refs.next(strategy, contract_symbol(data.tradecontract), decision_time(data))

    def _makeorder(self, action, owner, data, size, price=None, plimit=None, exectype=None,
                   valid=None, tradeid=0, **kwargs) -> IBOrder:
        order = IBOrder(action, owner=owner, data=data, size=size, price=price,
                        pricelimit=plimit, exectype=exectype, valid=valid, tradeid=tradeid,
                        **kwargs)
        if not order.ib_order.orderRef:
            order.ib_order.orderRef = self._order_ref(owner, data)
        if not order.ib_order.account and self.store.p.account:
            order.ib_order.account = self.store.p.account  # needed with several managed accounts
        if order.ib_order.orderRef in self.orders:
            raise ConfigError(f"orderRef {order.ib_order.orderRef!r} was already used; "
                              "every order needs a unique orderRef")
        order.addcomminfo(self.getcommissioninfo(data))
        return order

    def buy(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None,
            tradeid=0, **kwargs) -> IBOrder:
        return self.submit(self._makeorder("BUY", owner, data, size, price, plimit, exectype,
                                           valid, tradeid, **kwargs))

    def sell(self, owner, data, size, price=None, plimit=None, exectype=None, valid=None,
             tradeid=0, **kwargs) -> IBOrder:
        return self.submit(self._makeorder("SELL", owner, data, size, price, plimit, exectype,
                                           valid, tradeid, **kwargs))

    def add_gate(self, gate: OrderGate) -> None:
        """Run ``gate(order)`` on every order before it is sent, after the gates added before
        it. A gate returns None to pass the order on, or the order (refused, withheld or
        already known) to stop it there; it may raise to stop the run. Returns None."""
        self._gates.append(gate)

    def submit(self, order: IBOrder) -> IBOrder:
        """Pass ``order`` through the gates (:meth:`add_gate`), then send it to IB; return it
        at once (status Submitted), or as the gate that stopped it left it."""
        for gate in self._gates:
            stopped = gate(order)
            if stopped is not None:
                return stopped
        ib = order.ib_order
        parent_key = None
        if order.parent is not None:
            parent_key = order.parent.orderRef
            # IB brackets: the children of one parent form a one-cancels-all group
            ib.ocaGroup = ib.ocaGroup or f"{parent_key}-oca"
        if order.oco is not None:
            other = order.oco.ib_order
            if not other.ocaGroup:
                raise ConfigError(
                    f"oco= order {order.oco.orderRef!r} was sent without an OCA group; pass "
                    "oco= on every member after the first, or ocaGroup= on the first"
                )
            ib.ocaGroup = other.ocaGroup
        if not ib.account:  # every order names its account, not only with --account
            ib.account = self.order_account()
        order.submit(self)
        self.orders[ib.orderRef] = order
        contract = order.data.tradecontract
        self.store.place_order(ib.orderRef, contract, ib, parent_key)
        self.notify(order)
        return order

    def order_account(self) -> str:
        """Return the account orders are placed for: ``account`` when set (the journaled
        broker sets the run's), else the store's configured one, else the login's only managed
        account ("" when it manages several: IB then refuses an order without one)."""
        if self.account:
            return self.account
        if getattr(self.store.p, "account", ""):
            return str(self.store.p.account)
        managed = self.store.managed_accounts
        return managed[0] if len(managed) == 1 else ""

    def cancel(self, order: IBOrder) -> bool:
        """Ask IB to cancel ``order``; returns False if it is no longer alive (never blocks)."""
        if not order.alive():
            return False
        self.store.cancel_order(order.orderRef)
        return True

    def orderstatus(self, order: IBOrder) -> int:
        return self.orders.get(order.orderRef, order).status

    # ------------------------------------------------------------------ events
    def subscribe(self, callback: Callable[[BrokerEvent], None]) -> None:
        """Call ``callback(event)`` for every event this broker takes from the store, after
        applying it (backtrader's thread): order events and connection events alike."""
        self._subscribers.append(callback)

    def next(self) -> None:
        """Apply every event the store queued since the last call (cerebro calls it per bar)."""
        self.process_events()

    def process_events(self) -> int:
        """Apply queued IB events to the orders, then pass each to the subscribers; returns
        how many were handled."""
        n = 0
        q = self.store.broker_q
        while True:
            try:
                event = q.get_nowait()
            except queue.Empty:
                return n
            n += 1
            handler = self._HANDLERS.get(type(event))
            if handler is not None:
                handler(self, event)
            for callback in self._subscribers:
                callback(event)
            while self._derived:
                derived = self._derived.pop(0)
                for callback in self._subscribers:
                    callback(derived)

    def _on_placed(self, ev: OrderPlaced) -> None:
        order = self.orders.get(ev.ref)
        if order is not None:
            order.orderId = ev.order_id

    def _on_status(self, ev: OrderStatusChanged) -> None:
        order = self.orders.get(ev.ref)
        if order is None:  # an order this broker did not place: what IB says it filled
            self._status_filled[ev.ref] = max(self._status_filled.get(ev.ref, 0.0), ev.filled)
            return
        if ev.status in WORKING_STATUSES and order.status == Order.Submitted:
            order.accept(self)
            self.notify(order)
        elif ev.status in CANCELLED_STATUSES:
            if not order.alive():
                return
            if ev.error_code and ev.error_code not in CANCEL_CONFIRMATIONS:
                self._reject(order, ev.error_code, ev.reason)
                return
            if self._pending_exec_for(ev.ref):
                self._cancel_after_fills.add(ev.ref)  # executions still on their way
                return
            order.cancel()
            self.notify(order)
        elif ev.status == INACTIVE:
            if order.alive():
                self._reject(order, ev.error_code, ev.reason or "order inactive at IB")

    def _pending_exec_for(self, key: str) -> bool:
        return self.awaiting_commission(key)

    # ------------------------------------------------------------------ queries (orders of others)
    def awaiting_commission(self, ref: str) -> bool:
        """Return True when an execution of ``ref`` arrived and waits for its commission
        report (IB sends ``commissionReport`` after ``execDetails``): not counted yet."""
        return any(ex.ref == ref for ex in self._pending_exec.values())

    def announced_filled(self, ref: str) -> float | None:
        """Return the filled quantity IB's status announced for ``ref``, an order this broker
        did not place (a followed order of an earlier run), or None when none was announced."""
        return self._status_filled.get(ref)

    def unsettled_refs(self) -> set[str]:
        """Return the orderRefs, of orders this broker did not place, for which IB announced
        a status or an execution (candidates for fills not counted yet)."""
        return set(self._status_filled) | {ex.ref for ex in self._pending_exec.values()
                                           if ex.ref not in self.orders}

    def follows(self, ref: str) -> bool:
        """Return True when this broker counted fills of ``ref``, an order it did not place
        (:meth:`followed_fills`)."""
        return ref in self._followed

    def followed_fills(self, ref: str) -> list[FollowedFill]:
        """Return the fills of ``ref`` (an order this broker did not place) it counted, oldest
        first."""
        return list(self._followed.get(ref, ()))

    def _reject(self, order: IBOrder, code, reason: str) -> None:
        order.info.reason = reason
        order.info.code = code
        order.reject(self)
        self.notify(order)

    def _on_error(self, ev: OrderError) -> None:
        order = self.orders.get(ev.ref)
        if order is None or not order.alive():
            return
        if ev.code == ORDER_CANCELLED or is_warning(ev.code):
            return  # cancelled: the status event does it; warnings change nothing
        if order.status in (Order.Submitted, Order.Accepted) and not order.executed.size:
            self._reject(order, ev.code, ev.text)

    def _on_exec(self, ev: ExecutionReceived) -> None:
        if ev.exec_id not in self._applied:  # seen: awaits its commission report
            self._pending_exec.setdefault(ev.exec_id, ev)

    def _on_fill(self, ev: FillCompleted) -> None:
        """Count one completed fill (execution + IB's commission), once per execId."""
        if ev.exec_id in self._applied:
            return
        self._pending_exec.pop(ev.exec_id, None)
        self._applied.add(ev.exec_id)
        # (in the position, in the cash) adopted at start: only the rest is added
        counted = (self._snapshot.counted(ev.exec_id) if self._snapshot is not None
                   else (False, False))
        order = self.orders.get(ev.ref)
        if order is not None:
            self._execute(order, ev.exec_id, ev.shares, ev.price, ev.time, ev.commission,
                          counted)
        else:
            self._account_followed(ev, counted)

    def _account_followed(self, ex: FillCompleted, counted: tuple[bool, bool]) -> None:
        """Count an execution of an order this broker did not place (see the module
        docstring) in the ledger, then tell ``notify_store`` and the subscribers."""
        contract = ex.contract
        if contract is None:  # every execution the store routes carries its contract
            log.warning("execution %s of %s has no contract: not counted", ex.exec_id, ex.ref)
            return
        in_pos, in_cash = counted
        data = self._feed_of(contract.conId)
        info = self.getcommissioninfo(data) if data is not None else self._comminfo.of(contract)
        position = self._position(contract.conId, info)
        if not in_pos:
            self.ledger.fill(position, info, ex.shares, ex.price, ex.commission, not in_cash)
        elif not in_cash:  # IB's realized P&L, for a fill the adopted position already holds
            self.ledger.book(ex.shares, ex.price, info.p.mult, not info.stocklike,
                             ex.realized_pnl, ex.commission)
        symbol = contract_symbol(contract)
        fill = FollowedFill(ref=ex.ref, exec_id=ex.exec_id, symbol=symbol, shares=ex.shares,
                            price=ex.price, commission=ex.commission, time=ex.time,
                            in_position=in_pos, in_cash=in_cash, position=position.size,
                            cash=self.ledger.account_cash)
        self._followed.setdefault(ex.ref, []).append(fill)
        self._derived.append(fill)
        held = " (already in the position adopted at start)" if in_pos else ""
        self.store.notify_event(
            f"fill of {ex.ref}, an order of an earlier run: {fill.side} {abs(ex.shares):g} "
            f"{symbol} @ {ex.price:g}, commission {ex.commission:g}{held}; position now "
            f"{position.size:g}", kind="fill", orderRef=ex.ref, symbol=symbol, side=fill.side,
            size=abs(ex.shares), price=ex.price, commission=ex.commission, execId=ex.exec_id)

    def bind_order(self, order: IBOrder) -> None:
        """Attach the submitted ``order`` to the working order with the same orderRef that an
        earlier process placed (a restart re-making that decision): its events reach ``order``
        from now on, and the fills already counted for that orderRef become ``order``'s
        executions (notified Partial/Completed) without being counted again. Marks it
        ``order.info.adopted``; returns None."""
        order.addinfo(adopted=True)
        self.orders[order.orderRef] = order
        order.accept(self)
        self.notify(order)
        for fill in self._followed.pop(order.orderRef, []):
            self._execute(order, fill.exec_id, fill.shares, fill.price, fill.time,
                          fill.commission, (True, True))

    def book_position_change(self, contract, size: float, price: float) -> Position:
        """Book ``size`` at ``price`` no order made (:mod:`.position_events`); return it."""
        position = self._position(contract.conId, (info := self._comminfo.of(contract)))
        before, closed = position.price, position.update(size, price)[3]
        self.ledger.book(size, price, info.p.mult, not info.stocklike,
                         info.profitandloss(-closed, before, price), 0.0)
        return position

    _HANDLERS: dict[type, Callable[[IBBroker, Any], None]] = {
        OrderPlaced: _on_placed,
        OrderStatusChanged: _on_status,
        OrderError: _on_error,
        ExecutionReceived: _on_exec,
        FillCompleted: _on_fill,
    }

    def _execute(self, order: IBOrder, execid: str, size: float, price: float, when,
                 comm: float, counted: tuple[bool, bool] = (False, False)) -> None:
        """Apply one execution to ``order`` and to the ledger; ``counted``: (the position,
        the cash) already hold it, so only the order's bookkeeping changes for that part."""
        if order.status == Order.Submitted:
            order.accept(self)
            self.notify(order)
        order.execids.add(execid)
        position = self.getposition(order.data, clone=False)
        if counted[0]:  # the order's figures on the position as it was before this fill
            position = Position(position.size - size, position.price)
        figures = self.ledger.fill(position, order.comminfo, size, price, comm, not counted[1])
        if isinstance(when, datetime):
            dt = bt.date2num(naive_utc(when))
        else:
            dt = order.data.datetime[0] if len(order.data) else 0.0
        order.execute(dt, size, price, *figures.args())
        if abs(order.executed.remsize) < 1e-9:
            order.completed()
        else:
            order.partial()
        self.notify(order)
        ref = order.orderRef
        if ref in self._cancel_after_fills and not self._pending_exec_for(ref):
            self._cancel_after_fills.discard(ref)  # its fills are in: end it as IB did
            if order.alive():
                order.cancel()
                self.notify(order)
