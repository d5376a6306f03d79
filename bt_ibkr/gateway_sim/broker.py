"""SimBroker: the simulator's deterministic order book (pure Python, no sockets).

The server feeds it placeOrder/cancel requests and one ``on_bar(contract, quote)`` per clock
step; it answers with events (:mod:`~bt_ibkr.gateway_sim.records`) that ``order_handlers``
turns into TWS messages. Everything is deterministic: prices come only from the quotes, ids
from counters. Fill rules are :mod:`~bt_ibkr.gateway_sim.fills` (the price of an order on a
quote or a bar); cash, positions, commission and margin are
:class:`~bt_ibkr.gateway_sim.account.SimAccount`; reqExecutions' filter is
:class:`~bt_ibkr.gateway_sim.exec_filter.ExecFilter`. This module is the order book, about 700
lines that stay together because brackets, OCA groups, session closes and partial fills all
change the same orders under one lock:

* ``fill_mode="immediate"``: on place, a marketable order fills at once against the quote;
  orders that do not fill rest and are checked on every later bar. When ``is_open(contract)``
  is given and returns False (outside the session), nothing fills on place; the order waits
  for the first bar of the next session (MKT fills at its open).
* ``fill_mode="next_bar"``: nothing fills on place; MKT fills at the OPEN of the next bar
  (decide at the close, fill at the next open, as a backtrader backtest does).
* MOC fills at the close of the session's closing bar. Auction orders (MOO/LOO: TIF OPG;
  MOC/LOC), outsideRth and the Adaptive algo follow :mod:`~bt_ibkr.gateway_sim.auctions`.
* Session close: ``on_bar(..., session_end=True)``, else ``is_session_end(contract, bar
  time)`` when given (the server passes "the market is closed at the bar's end"), else a bar
  whose local time (contract.timeZoneId) is >= ``session_close`` (16:00) closes that local
  date's session after the bar's fills. If a bar arrives on a later local date and the previous date was never closed,
  the previous session is closed first (at the previous bar's close). At a close, MOC orders
  fill and DAY orders (and "" / OPG) that have seen at least one bar are cancelled; orders
  placed after the last bar of a session therefore live into the next one.
* ``partial_fill_qty``: at most that many shares fill per price event (place or bar), so a
  large order produces several executions with cumQty/avgPrice accumulating.
* IOC fills what it can at its first price event and cancels the rest. GTD cancels once
  ``clock() >= goodTillDate``. GTC never expires.
* Brackets: an order with ``transmit=False`` is held (PreSubmitted) until an order of its
  group (same parent) arrives with ``transmit=True``. Children activate (Submitted) when the
  parent is completely filled, and are first checked on the bar AFTER the one that filled
  the parent. A child's fill cancels (partial fill: reduces) its siblings. Cancelling a
  parent cancels its children.
* OCA groups (same ``ocaGroup``): ocaType 1 cancels the other members on a fill; 2 and 3
  reduce their quantity by the filled amount (cancelled when nothing is left).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from . import auctions, fills
from .account import SimAccount, multiplier, without_margin
from .exec_filter import ExecFilter
from .managed import ManagedLedgers
from .model import Quote, SimContract
from .order_codec import ContractSpec, OrderSpec
from .records import (
    AccountChanged,
    Event,
    Executed,
    OrderError,
    OrderRejectedError,
    OrderUpdated,
    PortfolioRevalued,
    PositionChanged,
    SimExecution,
    SimOrder,
    SimPosition,
    WhatIfOrder,
    parse_ib_datetime,
    validate_order,
)

log = logging.getLogger("bt_ibkr.gateway_sim.broker")


class SimBroker:
    """Deterministic IB-like order book over one account's ledger (:attr:`ledger`, a
    :class:`~bt_ibkr.gateway_sim.account.SimAccount`: cash, commission, margin settings).

    ``clock()`` returns the simulated now (aware UTC); ``quote(contract)`` the current Quote
    or None; ``is_open(contract)`` (optional) whether its market is open now. Subscribe a
    callback to receive every event, in order. All public methods are thread-safe (one
    re-entrant lock); events are delivered while it is held.
    """

    def __init__(
        self,
        account: str,
        clock: Callable[[], datetime],
        quote: Callable[[SimContract], Quote | None],
        cash: float = 1_000_000.0,
        commission_per_share: float = 0.005,
        min_commission: float = 1.0,
        max_commission_pct: float = 0.01,
        fill_mode: str = "immediate",
        partial_fill_qty: float | None = None,
        base_perm_id: int = 1_000_000,
        margin_rate: float = 0.25,
        session_close: time = time(16, 0),
        faults: object | None = None,
        currency: str = "USD",
        revalue_interval: float = 60.0,
        is_open: Callable[[SimContract], bool] | None = None,
        is_session_end: Callable[[SimContract, datetime], bool] | None = None,
    ) -> None:
        if fill_mode not in ("immediate", "next_bar"):
            raise ValueError(f"fill_mode must be 'immediate' or 'next_bar', got {fill_mode!r}")
        if partial_fill_qty is not None and partial_fill_qty <= 0:
            raise ValueError(f"partial_fill_qty must be > 0 or None, got {partial_fill_qty!r}")
        self.account = account
        self.clock = clock
        self.quote = quote
        self.ledger = SimAccount(
            account, lambda c: self._last_quote.get(c.conId) or self.quote(c), cash=cash,
            commission_per_share=commission_per_share, min_commission=min_commission,
            max_commission_pct=max_commission_pct, margin_rate=margin_rate, currency=currency)
        self.fill_mode = fill_mode
        self.partial_fill_qty = partial_fill_qty
        self.session_close = session_close
        self.faults = faults
        self.currency = currency
        #: simulated seconds between portfolio/account pushes caused by price moves
        self.revalue_interval = float(revalue_interval)
        self._last_revalue: dict[int, datetime] = {}
        self.is_open = is_open
        self.is_session_end = is_session_end
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[Event], None]] = []
        self._perm_ids = itertools.count(base_perm_id)
        self._exec_seq = itertools.count(1)
        self._exec_prefix = hashlib.sha1(account.encode()).hexdigest()[:8]
        self._orders: dict[tuple[int, int], SimOrder] = {}
        #: the orders not yet Filled/Cancelled (pruned as they finish; a done order never
        #: works again), so each bar does not scan every order ever placed
        self._open: dict[tuple[int, int], SimOrder] = {}
        self._executions: list[SimExecution] = []
        self._last_quote: dict[int, Quote] = {}
        self._last_bar_date: dict[int, date] = {}
        self._closed_dates: dict[int, set[date]] = {}
        self.accounts = ManagedLedgers(self.ledger, self._lock)

    @property
    def cash(self) -> float:
        """The account's cash balance."""
        return self.ledger.cash

    # ---------------------------------------------------------------- plumbing

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Register ``callback(event)``; it receives every later event in order."""
        with self._lock:
            self._subscribers.append(callback)

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not corrupt the ledger
                log.exception("SimBroker subscriber failed on %s", type(event).__name__)

    def _order_updated(self, order: SimOrder) -> None:
        self._emit(OrderUpdated(order.client_id, replace(order)))

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now

    def _tz(self, contract: SimContract) -> ZoneInfo:
        try:
            return ZoneInfo(contract.timeZoneId or "UTC")
        except (KeyError, ValueError):
            return ZoneInfo("UTC")

    def _session_open(self, contract: SimContract) -> bool | None:
        """Return whether ``contract``'s regular session is open now (None: unknown)."""
        return None if self.is_open is None else bool(self.is_open(contract))

    def _current_quote(self, contract: SimContract) -> Quote | None:
        q = self.quote(contract)
        if q is not None:
            self._last_quote[contract.conId] = q
            return q
        return self._last_quote.get(contract.conId)

    # ---------------------------------------------------------------- requests

    def place(
        self,
        client_id: int,
        order_id: int,
        contract: SimContract,
        spec: OrderSpec,
        contract_spec: ContractSpec | None = None,
    ) -> SimOrder | None:
        """Place a new order or modify the working order ``(client_id, order_id)``.

        Returns the SimOrder, or None when it was rejected (an OrderError event: 201 invalid
        or fault, 103 duplicate id of a finished order) or was a whatIf (an OrderUpdated with
        margin numbers is sent; nothing is stored).
        """
        with self._lock:
            self._touch_day()
            try:
                self._check_fault()
                validate_order(spec, self.accounts.names())
                auctions.validate_special(spec, self._session_open(contract))
            except OrderRejectedError as exc:
                text = exc.reason if exc.reason.startswith("Order rejected") else (
                    f"Order rejected - reason:{exc.reason}")
                self._emit(OrderError(client_id, order_id, exc.code, text))
                return None
            spec = copy.deepcopy(spec)
            if not spec.account:
                spec.account = self.account
            if spec.whatIf:
                state = self.ledger.what_if(contract, spec, self._current_quote(contract))
                if getattr(self.faults, "what_if_unset", 0) > 0:
                    self.faults.what_if_unset -= 1  # type: ignore[union-attr]
                    state = without_margin(state)
                self._emit(OrderUpdated(client_id, WhatIfOrder(
                    client_id=client_id, order_id=order_id, perm_id=0, contract=contract,
                    spec=spec, status="PreSubmitted", state=state)))
                return None
            existing = self._orders.get((client_id, order_id))
            if existing is not None:
                return self._modify(existing, spec)
            return self._new_order(client_id, order_id, contract, spec, contract_spec)

    def cancel(self, client_id: int, order_id: int) -> bool:
        """Cancel ``(client_id, order_id)``. Returns True when a working order was cancelled.

        Unknown ids get error 10147, finished orders 10148 (as OrderError events).
        """
        with self._lock:
            order = self._orders.get((client_id, order_id))
            if order is None:
                self._emit(OrderError(client_id, order_id, 10147,
                                      f"OrderId {order_id} that needs to be cancelled is not "
                                      "found."))
                return False
            if order.is_done:
                self._emit(OrderError(client_id, order_id, 10148,
                                      f"OrderId {order_id} that needs to be cancelled cannot "
                                      f"be cancelled, state: {order.status}."))
                return False
            self._cancel(order, "Cancelled by Trader", notify_202=True)
            return True

    def global_cancel(self) -> int:
        """Cancel every working order of every client; return how many were cancelled."""
        with self._lock:
            working = self._working_orders()
            for order in working:
                if not order.is_done:
                    self._cancel(order, "Cancelled by Trader", notify_202=True)
            return len(working)

    # ---------------------------------------------------------------- queries

    def _sorted_orders(self) -> list[SimOrder]:
        return sorted(self._orders.values(), key=lambda o: o.perm_id)

    def _working_orders(self) -> list[SimOrder]:
        """Return the orders not done yet, by perm id (the order they were placed in)."""
        for key in [k for k, o in self._open.items() if o.is_done]:
            del self._open[key]
        return sorted(self._open.values(), key=lambda o: o.perm_id)

    def get_order(self, client_id: int, order_id: int) -> SimOrder | None:
        """Return the order ``(client_id, order_id)`` or None."""
        with self._lock:
            return self._orders.get((client_id, order_id))

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Return working orders (all clients, or only ``client_id``'s), oldest first."""
        with self._lock:
            return [o for o in self._working_orders()
                    if client_id is None or o.client_id == client_id]

    def completed_orders(self) -> list[SimOrder]:
        """Return Filled and Cancelled orders, oldest first."""
        with self._lock:
            return [o for o in self._sorted_orders() if o.is_done]

    def executions(
        self,
        client_id: int = 0,
        acct_code: str = "",
        time_from: str = "",
        symbol: str = "",
        sec_type: str = "",
        exchange: str = "",
        side: str = "",
    ) -> list[SimExecution]:
        """Return executions matching an IB ExecutionFilter (:class:`ExecFilter`)."""
        wanted = ExecFilter(client_id, acct_code, time_from, symbol, sec_type, exchange, side)
        with self._lock:
            return wanted.select(self._executions)

    def positions(self) -> list[SimPosition]:
        """Return every position ever held (closed ones with position 0), by conId."""
        with self._lock:
            return self.ledger.position_list()

    def active_conids(self) -> set[int]:
        """Return conIds with working orders or a non-zero position in any managed account."""
        with self._lock:
            ids = {o.contract.conId for o in self._working_orders()}
            return ids | {p.contract.conId for _, p in self.accounts.positions() if p.position}

    def book_delivery(self, contract: SimContract, signed: float, price: float,
                      account: str = "") -> None:
        """Book a position change that is not an order's fill (an option's exercise,
        assignment or expiry) in ``account``'s ledger ("" = the login's): ``signed`` units of
        ``contract`` at ``price``, no commission, no execution; clients get the position,
        portfolio and account updates (option_expiry.py says why)."""
        with self._lock:
            ledger = self.accounts.ledger_for(account)
            ledger.apply_fill(contract, signed, price, 0.0)
            pos = ledger.positions[contract.conId]
            self._emit(PositionChanged(contract, pos.position, pos.avg_cost, ledger.account))
            self._emit(AccountChanged(self.ledger.values()))

    def pnl(self, account: str | None = None) -> tuple[float, float, float]:
        """Return (dailyPnL, unrealizedPnL, realizedPnL) of ``account`` (None: the login's)."""
        with self._lock:
            return self.accounts.pnl(self._now().date(), account)

    def _touch_day(self) -> None:
        self.ledger.touch_day(self._now().date())

    # ---------------------------------------------------------------- validation

    def _check_fault(self) -> None:
        fault = getattr(self.faults, "reject_next_order", None) if self.faults else None
        if not fault:
            return
        try:
            self.faults.reject_next_order = None  # type: ignore[union-attr]
        except AttributeError:
            pass
        if isinstance(fault, tuple) and len(fault) == 2:
            raise OrderRejectedError(str(fault[1]), int(fault[0]))
        raise OrderRejectedError(str(fault) if isinstance(fault, str) else "simulated reject")

    # ---------------------------------------------------------------- life cycle

    def _new_order(self, client_id, order_id, contract, spec, contract_spec) -> SimOrder | None:
        parent = None
        if spec.parentId:
            parent = self._orders.get((client_id, spec.parentId))
            if parent is None:
                self._emit(OrderError(client_id, order_id, 201,
                                      f"Order rejected - reason:Parent order {spec.parentId} "
                                      "not found"))
                return None
            if parent.status == "Cancelled":
                self._emit(OrderError(client_id, order_id, 201,
                                      "Order rejected - reason:Parent order is cancelled"))
                return None
        order = SimOrder(client_id=client_id, order_id=order_id, perm_id=next(self._perm_ids),
                         contract=contract, spec=spec, contract_spec=contract_spec,
                         placed_at=self._now())
        self._orders[(client_id, order_id)] = order
        self._open[(client_id, order_id)] = order
        if order.spec.tif.upper() == "GTD" and self._expired(order):
            self._cancel(order, "Expired")
            return order
        order.transmitted = spec.transmit
        order.active = parent is None or parent.status == "Filled"
        if not spec.transmit:
            order.status = "PreSubmitted"
            self._order_updated(order)
            return order
        # transmit=True releases the whole group (parent + children placed so far)
        released = sorted((m for m in self._group_of(order) if not m.transmitted or m is order),
                          key=lambda o: o.perm_id)
        for member in released:
            member.transmitted = True
        for member in released:
            self._activate_status(member)
        # one price event per release: children activated by a fill here were already tried
        for member in [m for m in released if m.active]:
            if not member.is_done:
                self._on_place_fill(member)
        return order

    def _group_of(self, order: SimOrder) -> list[SimOrder]:
        root_id = order.parent_id or order.order_id
        members = [o for o in self._orders.values()
                   if o.client_id == order.client_id and not o.is_done
                   and (o.order_id == root_id or o.parent_id == root_id)]
        return members or [order]

    def _activate_status(self, order: SimOrder) -> None:
        if order.is_done:
            return
        order.status = "Submitted" if order.active and order.transmitted else "PreSubmitted"
        self._init_trail(order)
        self._order_updated(order)

    def _modify(self, order: SimOrder, spec: OrderSpec) -> SimOrder | None:
        if order.is_done:
            # IB answers a reused id of a finished order with 103 (e.g. after nextValidId
            # rolled back on a gateway restart)
            self._emit(OrderError(order.client_id, order.order_id, 103,
                                  f"Duplicate order id {order.order_id} (order already "
                                  f"{order.status})"))
            return None
        if spec.totalQuantity < order.filled:
            self._emit(OrderError(order.client_id, order.order_id, 201,
                                  "Order rejected - reason:The new quantity is below the "
                                  f"filled quantity {order.filled}"))
            return None
        spec.parentId = order.spec.parentId
        old = order.spec
        order.spec = spec
        trail_keys = ("orderType", "auxPrice", "trailingPercent", "trailStopPrice")
        if any(getattr(old, k) != getattr(spec, k) for k in trail_keys):
            order.trail_stop = None
            order.triggered = False
        if spec.transmit and not order.transmitted:
            released = sorted((m for m in self._group_of(order) if not m.transmitted),
                              key=lambda o: o.perm_id)
            for member in released:
                member.transmitted = True
            for member in released:
                self._activate_status(member)
        else:
            self._init_trail(order)
            self._order_updated(order)
        if order.active and order.transmitted and not order.is_done:
            self._on_place_fill(order)
        return order

    def _cancel(self, order: SimOrder, reason: str, notify_202: bool = False) -> None:
        if order.is_done:
            return
        order.status = "Cancelled"
        order.completed_at = self._now()
        order.completed_status = reason
        self._order_updated(order)
        if notify_202:
            self._emit(OrderError(order.client_id, order.order_id, 202,
                                  "Order Canceled - reason:"))
        for child in self._children(order):
            self._cancel(child, "Parent cancelled")

    def _children(self, order: SimOrder) -> list[SimOrder]:
        return sorted((o for o in self._orders.values()
                       if o.client_id == order.client_id and o.parent_id == order.order_id
                       and o.parent_id), key=lambda o: o.perm_id)

    def _expired(self, order: SimOrder) -> bool:
        if order.spec.tif.upper() != "GTD" or not order.spec.goodTillDate:
            return False
        tz = order.contract.timeZoneId or "UTC"
        return self._now() >= parse_ib_datetime(order.spec.goodTillDate, tz)

    # ---------------------------------------------------------------- pricing

    def _init_trail(self, order: SimOrder) -> None:
        fills.init_trail(order, lambda: self._current_quote(order.contract))

    def _on_place_fill(self, order: SimOrder) -> None:
        """Immediate mode: fill a marketable order against the current quote."""
        tif = order.spec.tif.upper()
        if self.fill_mode != "immediate" or auctions.is_auction(order.spec):
            return  # auction orders fill only in their auction
        if self.is_open is not None and not self.is_open(order.contract) and not (
                order.spec.outsideRth and auctions.in_extended_hours(order.contract,
                                                                     self._now())):
            return  # market closed: the order waits for the next session's first bar
        q = self._current_quote(order.contract)
        if q is None:
            return
        price = fills.quote_fill_price(order, q)
        if price is not None:
            self._fill(order, price)
        if tif == "IOC" and not order.is_done:
            self._cancel(order, "IOC remainder cancelled")

    # ---------------------------------------------------------------- bars

    def on_bar(self, contract: SimContract, quote: Quote, session_end: bool | None = None
               ) -> None:
        """Advance the engine by one bar of ``contract``: fills, expiries, revaluation.

        ``session_end`` True/False overrides the session-close detection for this bar
        (pass True for a daily bar); None = detect from the bar's local time.
        """
        with self._lock:
            self._touch_day()
            con_id = contract.conId
            tz = self._tz(contract)
            bar_time = quote.time if isinstance(quote.time, datetime) else self._now()
            if bar_time.tzinfo is None:
                bar_time = bar_time.replace(tzinfo=UTC)
            local = bar_time.astimezone(tz)
            closed = self._closed_dates.setdefault(con_id, set())
            prev_date = self._last_bar_date.get(con_id)
            prev_quote = self._last_quote.get(con_id)
            if prev_date is not None and local.date() > prev_date and prev_date not in closed:
                closed.add(prev_date)
                if prev_quote is not None:
                    self._session_close(contract, prev_quote)
            self._last_bar_date[con_id] = local.date()
            self._last_quote[con_id] = quote

            working = [o for o in self._working_orders()
                       if o.contract.conId == con_id and o.active
                       and o.transmitted]
            for order in working:
                if order.is_done or not order.active:
                    continue
                if self._expired(order):
                    self._cancel(order, "Expired")
                    continue
                if auctions.is_opening_auction(order.spec):
                    self._opening_auction(order, quote, bar_time,
                                          prev_date is None or local.date() > prev_date)
                    continue
                order.bars_seen += 1
                price = fills.bar_fill_price(order, quote)
                if price is not None:
                    self._fill(order, price, when=bar_time)
                if order.spec.tif.upper() == "IOC" and not order.is_done:
                    self._cancel(order, "IOC remainder cancelled")

            if session_end is not None:
                is_close = session_end
            elif self.is_session_end is not None:
                is_close = self.is_session_end(contract, bar_time)
            else:
                is_close = local.time() >= self.session_close
            closing_now = is_close and local.date() not in closed
            if closing_now:
                closed.add(local.date())
                self._session_close(contract, quote)

            last_push = self._last_revalue.get(con_id)
            # throttled on price moves, but always at the session's close: a strategy deciding
            # at the close reads NetLiquidation marked to the closing price
            due = closing_now or last_push is None or (
                (bar_time - last_push).total_seconds() >= self.revalue_interval)
            if due and self.accounts.held_anywhere(con_id):
                self._last_revalue[con_id] = bar_time
                self._emit(PortfolioRevalued(contract))
                self._emit(AccountChanged(self.ledger.values()))

    def _opening_auction(self, order: SimOrder, bar: Quote, when: datetime,
                         first_of_day: bool) -> None:
        """A MOO/LOO meets ``bar``: on the session's first bar it fills at the open (a LOO only
        if marketable there) or is cancelled; on a later bar (placed mid-session without a
        known session) it waits for the next opening auction."""
        if not first_of_day:
            return
        order.bars_seen += 1
        price = auctions.open_auction_price(order, bar)
        if price is not None:
            self._fill(order, price, when=when, all_qty=True)
        if not order.is_done:
            self._cancel(order, "Cancelled (not filled in the opening auction)")

    def _session_close(self, contract: SimContract, bar: Quote) -> None:
        for order in [o for o in self._working_orders()
                      if o.contract.conId == contract.conId]:
            if order.is_done or not order.active or not order.transmitted:
                continue
            if order.bars_seen < 1:
                continue
            if order.spec.orderType.upper() == "MOC":
                self._fill(order, bar.close, when=bar.time if isinstance(
                    bar.time, datetime) else None, all_qty=True)
            elif order.spec.orderType.upper() == "LOC":
                price = auctions.close_auction_price(order, bar)
                if price is not None:
                    self._fill(order, price, when=bar.time if isinstance(
                        bar.time, datetime) else None, all_qty=True)
                else:
                    self._cancel(order, "Cancelled (not filled in the closing auction)")
            elif order.spec.tif.upper() in ("", "DAY", "OPG"):
                self._cancel(order, "Expired (end of day)")

    # ---------------------------------------------------------------- fills

    def _fill(self, order: SimOrder, price: float, when: datetime | None = None,
              all_qty: bool = False) -> None:
        qty = order.remaining
        if self.partial_fill_qty and not all_qty:
            qty = min(qty, self.partial_fill_qty)
        if qty <= 0:
            return
        when = when or self._now()
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        mult = multiplier(order.contract)
        before_comm = order.commission_paid
        order.filled_value += qty * price
        order.filled += qty
        total_comm = self.ledger.commission(order.filled, order.filled_value * mult)
        commission = round(total_comm - before_comm, 8)
        order.commission_paid = total_comm
        order.avg_fill_price = order.filled_value / order.filled
        order.last_fill_price = price
        signed = qty if order.is_buy else -qty
        ledger = self.accounts.ledger_for(order.spec.account)
        realized = ledger.apply_fill(order.contract, signed, price, commission)
        ex = SimExecution(
            exec_id=f"{self._exec_prefix}.{next(self._exec_seq):08x}.01.01",
            order_id=order.order_id, client_id=order.client_id, perm_id=order.perm_id,
            contract=order.contract,
            exchange=order.contract.primaryExchange or order.contract.exchange,
            time=when, account=order.spec.account or self.account,
            side="BOT" if order.is_buy else "SLD", shares=qty, price=price,
            cum_qty=order.filled, avg_price=order.avg_fill_price,
            order_ref=order.spec.orderRef, commission=commission, currency=self.currency,
            realized_pnl=realized)
        self._executions.append(ex)
        if order.remaining <= 1e-9:
            order.status = "Filled"
            order.completed_at = when
            order.completed_status = f"Filled Size: {_num(order.filled)}"
        else:
            order.status = "Submitted"
        self._emit(Executed(order.client_id, replace(order), ex))
        self._order_updated(order)
        pos = ledger.positions[order.contract.conId]
        self._emit(PositionChanged(order.contract, pos.position, pos.avg_cost, ledger.account))
        self._emit(AccountChanged(self.ledger.values()))
        self._after_fill(order, qty)

    def _after_fill(self, order: SimOrder, qty: float) -> None:
        # bracket children activate once the parent is completely filled
        if order.status == "Filled":
            for child in self._children(order):
                if not child.active and not child.is_done:
                    child.active = True
                    self._activate_status(child)
                    if child.transmitted and self.fill_mode == "immediate":
                        self._on_place_fill(child)
        # siblings of a bracket child behave as an OCA group with reduction
        if order.parent_id:
            parent = self._orders.get((order.client_id, order.parent_id))
            siblings = [o for o in self._children(parent) if o is not order] if parent else []
            self._oca_apply(order, siblings, 3 if order.status != "Filled" else 1, qty)
        if order.spec.ocaGroup:
            members = [o for o in self._working_orders()
                       if o is not order
                       and o.spec.ocaGroup == order.spec.ocaGroup
                       and (o.spec.account or self.account) == (order.spec.account
                                                                 or self.account)]
            self._oca_apply(order, members, order.spec.ocaType or 1, qty)

    def _oca_apply(self, order: SimOrder, others: list[SimOrder], oca_type: int,
                   qty: float) -> None:
        for other in others:
            if other.is_done:
                continue
            if oca_type == 1:
                self._cancel(other, f"OCA: order {order.order_id} filled")
            else:
                other.spec = replace(other.spec,
                                     totalQuantity=max(other.spec.totalQuantity - qty,
                                                       other.filled))
                if other.remaining <= 1e-9:
                    self._cancel(other, f"OCA: reduced to zero by order {order.order_id}")
                else:
                    self._order_updated(other)

# --------------------------------------------------------------------------- helpers


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


__all__ = ["SimBroker"]
