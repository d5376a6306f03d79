"""JournaledIBBroker: IBBroker with the live rails of a paper/live run in front of every order.

For every order the strategy submits, in this order:

1. the decision is written to the audit log;
2. :class:`~bt_ibkr.live.risk.RiskGate` checks it (max position, max order notional, daily-loss
   halt); a refusal rejects the backtrader order (``order.info.reason``) and is audited, the
   daily-loss halt is announced once (log warning + audit record);
3. read-only runs stop here: the order is recorded as *withheld* (journal event + audit) and
   cancelled in backtrader, nothing leaves the process;
   an order on the side of an earlier run's order for the same symbol that is still working at
   the gateway (followed after a restart, see below) is refused (``order.info.reason`` names
   it): the Strategy sizes from the filled position, which does not yet hold that order, so a
   stream run re-deciding on a later bar would buy the same exposure twice. It may order again
   once the earlier order is done; its fills then count in the position. When that earlier
   order is one this process does not follow (placed under another clientId: IB sends its
   status and fills to that client only, :mod:`bt_ibkr.live.client_ids`), it would never be
   done here, so the run stops instead (:class:`~bt_ibkr.errors.AttentionError`, one line
   naming the order, its clientId and what to do), never refusing bar after bar;
4. the order's deterministic orderRef (given by IBBroker, :mod:`bt_ibkr.ib.order_refs`: the
   strategy, symbol, decision bar and the order's number within that decision) and its intent
   are committed to the SQLite journal BEFORE it is sent. If the journal already holds that
   orderRef (the same decision made again after a restart) nothing is sent: the backtrader order
   is attached to the gateway's order (adopted: ``order.info.adopted`` is True) or cancelled
   when the journaled one is finished;
   only an intent that :meth:`Journal.reconcile` listed under ``resend`` is sent again, with the
   same orderRef;
5. the order is sent through the store; ids, statuses and fills (deduplicated by execId) are
   written to the journal and the audit log as they come back: the broker subscribes its
   :meth:`JournaledIBBroker.on_event` to its own events (:meth:`IBBroker.subscribe`).

Orders of earlier runs still working at the gateway are followed (:func:`bt_ibkr.live.recovery.
recover`); when the broker starts they are announced to ``notify_store`` and the audit log, and
their fills count in this run's position and cash when they come (:class:`~bt_ibkr.ib.broker.
IBBroker`, recorded in the audit log as ``fill`` records with ``event="followed"``), while the
risk gate counts what is left of them (``Journal.pending_shares``) until then.

Testing hook: ``crash_at="after_journal"`` SIGKILLs the process right after the intent is
committed (before sending); ``crash_at="after_send"`` SIGKILLs it when the gateway has
acknowledged the order (before any fill). The runner sets it from the environment variable
``BT_IBKR_CRASH_AT``; it exists only so the crash-recovery tests can kill the process at exact
points.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from bt_ibkr.errors import AttentionError
from bt_ibkr.ib.broker import IBBroker, IBOrder
from bt_ibkr.ib.codes import (
    CANCEL_CONFIRMATIONS,
    CANCELLED_STATUSES,
    DUPLICATE_ORDER_ID,
    WORKING_STATUSES,
    is_warning,
)
from bt_ibkr.ib.codes import INACTIVE as IB_INACTIVE
from bt_ibkr.ib.events import (
    AccountChanged,
    BrokerEvent,
    CommissionReceived,
    ConnectionGaveUp,
    ConnectionLost,
    ConnectionRestored,
    ConnectivityNotice,
    ExecutionReceived,
    FollowedFill,
    OrderError,
    OrderPlaced,
    OrderStatusChanged,
)
from bt_ibkr.ib.order_refs import decision_time
from bt_ibkr.ib.parsing import contract_symbol
from bt_ibkr.live.audit import AuditLog
from bt_ibkr.live.client_ids import placed_by, stop_line
from bt_ibkr.live.journal import (
    CANCELLED,
    INACTIVE,
    INTENT,
    OPEN_STATUSES,
    PARTIAL,
    REJECTED,
    SENT,
    SUBMITTED,
    Fill,
    Intent,
    Journal,
)
from bt_ibkr.live.risk import RiskGate
from bt_ibkr.utc import utc_now

log = logging.getLogger("bt_ibkr.live")

CRASH_POINTS = ("after_journal", "after_send")
"""Valid values of the ``BT_IBKR_CRASH_AT`` testing hook."""


def _crash(point: str) -> None:  # pragma: no cover - the process dies here
    log.warning("BT_IBKR_CRASH_AT=%s: killing this process now (testing hook)", point)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def is_rejection(code: int | None) -> bool:
    """Return True when IB error ``code`` on an order refuses it (201 order rejected, 202's
    kin excluded: a cancel confirmation or an informational warning is no rejection)."""
    return (bool(code) and code not in CANCEL_CONFIRMATIONS and code not in _CANCEL_REPLIES
            and not is_warning(code))


#: answers to a cancel request (order not found, not cancellable): about the cancel, not the order
_CANCEL_REPLIES = frozenset({161, 10147})


class JournaledIBBroker(IBBroker):
    """IBBroker with risk gate, read-only mode and journal-before-send (see module docstring).

    ``JournaledIBBroker(store=store)`` then :meth:`configure` before cerebro starts. ``records``
    lists what this run did with each order (dicts with orderRef, symbol, side, quantity,
    status), for the run summary.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.journal: Journal | None = None
        self.audit: AuditLog | None = None
        self.gate: RiskGate | None = None
        self.read_only = False
        self.strategy_name = "Strategy"
        self.run_id: str | None = None
        self.account: str | None = None
        self.crash_at: str | None = None
        self.resend_refs: set[str] = set()
        self.trading_day: date | None = None
        #: the session of "now" on the gateway's clock, and what to do when it moves on (set
        #: by the runner: the halt is filed under the session of the loss)
        #: the trading session of "now" on the gateway's clock (set by the run's wiring)
        self.session_now: Callable[[], date] | None = None
        #: called with (new day, equity) when a stream run reaches the next session
        self.on_new_day: Callable[[date, float], None] | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.halt_announced = False
        self._fills: dict[str, Fill] = {}
        self._early_commission: dict[str, float] = {}
        self._rejections: dict[str, tuple[int, str]] = {}  # orderRef -> IB's (code, text)
        self._crashed_after_send = False
        self._held_back: set[str] = set()  # earlier runs' orders that refused an order (logged)
        self.subscribe(self.on_event)

    def configure(self, *, journal: Journal, audit: AuditLog | None, gate: RiskGate | None,
                  strategy_name: str, run_id: str | None, account: str | None,
                  read_only: bool = False, resend_refs: set[str] | None = None,
                  crash_at: str | None = None, trading_day: date | None = None) -> None:
        """Attach the run's journal, audit log, risk gate and options; returns None.

        ``trading_day`` is the exchange session the run belongs to: a daily-loss halt is
        recorded in the journal under it."""
        if crash_at and crash_at not in CRASH_POINTS:
            raise ValueError(f"BT_IBKR_CRASH_AT={crash_at!r}: expected one of {CRASH_POINTS}")
        self.journal, self.audit, self.gate = journal, audit, gate
        # the journal's identity in every orderRef: no other journal or program makes ours
        self.refs.owner = journal.journal_id
        self.strategy_name = strategy_name
        self.run_id, self.account = run_id, account
        self.read_only = bool(read_only)
        self.resend_refs = set(resend_refs or ())
        self.crash_at = crash_at or None
        self.trading_day = trading_day

    def start(self) -> None:
        """Start the broker (adopting positions and cash), then announce the orders of earlier
        runs that are still working (followed) to ``notify_store`` and the audit log."""
        super().start()
        if self.journal is None:
            return
        for rec in self._earlier_working():
            text = (f"following {rec.order_ref}, an order of an earlier run still working: "
                    f"{rec.side} {rec.quantity:g} {rec.symbol} ({rec.filled:g} filled); its "
                    f"fills count in this run's position and cash, new {rec.side} orders for "
                    f"{rec.symbol} wait until it is done")
            log.info(text)
            self.store.notify_event(text, orderRef=rec.order_ref, symbol=rec.symbol,
                                    side=rec.side, quantity=rec.quantity, filled=rec.filled)
            self._audit("order", orderRef=rec.order_ref, symbol=rec.symbol, side=rec.side,
                        quantity=rec.quantity, status="followed", journal_status=rec.status,
                        filled=rec.filled)

    def own_start_size(self, conid: int, held: float) -> float:
        """Count only this journal's position at start (its adopted start position plus its
        fills): shares other programs or manual orders hold in the account are not the
        Strategy's. The difference is said once."""
        if self.journal is None:
            return held
        data = self._feed_of(conid)
        if data is None:
            return held
        symbol = contract_symbol(data.tradecontract)
        mine = self.journal.position_from_fills(symbol)
        if abs(mine - held) > 1e-9:
            text = (f"{symbol}: the account holds {held:g}, this journal {mine:g}; the "
                    f"Strategy's position is the journal's {mine:g} (the rest is other "
                    "programs' or manual trades)")
            log.warning(text)
            self._audit("order", status="not_ours", symbol=symbol, held=held, journal=mine,
                        reason=text)
        return mine

    def _session_now(self) -> date | None:
        try:
            return self.session_now() if self.session_now is not None else None
        except Exception:  # noqa: BLE001 - outside the calendar's years: the run's day
            log.debug("session of now unknown", exc_info=True)
            return None

    def _roll_day(self, equity: float) -> None:
        """A run that reached the next exchange session starts a new day there."""
        day = self._session_now()
        if day is None or self.trading_day is None or day <= self.trading_day:
            return
        log.info("a new trading session: %s (was %s)", day, self.trading_day)
        self.trading_day = day
        self.halt_announced = False
        if self.on_new_day is not None and equity > 0:
            self.on_new_day(day, equity)
            self.halt_announced = bool(self.gate is not None and self.gate.halted)

    def _earlier_working(self, symbol: str | None = None) -> list:
        """Return the journaled orders this broker has no backtrader order for (an earlier
        run's) that are still working at the gateway or have executions this broker has not
        counted yet, of ``symbol`` when given."""
        found = {r.order_ref: r for r in self._bound().intents((SENT, SUBMITTED, PARTIAL),
                                                              symbol=symbol)}
        # done per the journal, but IB announced fills not counted yet (only followed orders
        # have statuses or executions here without a backtrader order)
        for ref in self.unsettled_refs():
            if ref not in found and self._uncounted(ref):
                rec = self._bound().get(ref)
                if rec is not None and (symbol is None or rec.symbol == symbol):
                    found[ref] = rec
        return [r for r in found.values() if r.order_ref not in self.orders]

    def _uncounted(self, ref: str) -> bool:
        """Return True when IB announced executions of ``ref`` that this broker has not counted
        yet: one received without its commission report, or a status that says more shares
        filled than the executions the journal holds (IB may send it before them)."""
        if self.awaiting_commission(ref):
            return True
        reported = self.announced_filled(ref)
        return reported is not None and reported > sum(
            f.shares for f in self._bound().fills(order_ref=ref)) + 1e-9

    # ------------------------------------------------------------------ helpers
    def _bound(self) -> Journal:
        """Return the journal :meth:`configure` bound. Raises RuntimeError before that (an order
        path reached before the run wired the broker is a bug, not a state to handle)."""
        if self.journal is None:
            raise RuntimeError("JournaledIBBroker used before configure() bound its journal")
        return self.journal

    def _audit(self, kind: str, **fields: Any) -> None:
        if self.audit is not None:
            try:
                self.audit.write(kind, **fields)
            except Exception:  # noqa: BLE001 - the audit must never stop trading
                log.exception("audit write failed")

    def _record(self, ref: str, **fields: Any) -> None:
        rec = self.records.setdefault(ref, {"orderRef": ref})
        rec.update(fields)

    def _refuse(self, order: IBOrder, reason: str) -> IBOrder:
        order.submit(self)
        order.info.reason = reason
        order.reject(self)
        self.notify(order)
        return order

    # ------------------------------------------------------------------ submit
    def submit(self, order: IBOrder) -> IBOrder:  # noqa: C901 - one linear checklist
        """Run the checklist of the module docstring, then send (or not); returns ``order``."""
        if self.journal is None:
            return super().submit(order)
        data = order.data
        symbol = contract_symbol(data.tradecontract)
        side = order.ib_order.action
        qty = float(abs(order.size))
        try:
            price = float(order.price) if order.price else float(data.close[0])
        except (IndexError, TypeError, ValueError):
            price = float("nan")
        when = decision_time(data)
        ref = order.ib_order.orderRef
        position = self.getposition(data).size
        equity = self.getvalue()
        self._audit("decision", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                    price=price, position=position, equity=equity, bar=str(when))

        # 1. risk gate (before anything is journaled or sent)
        if self.gate is not None:
            self._roll_day(equity)
            decision = self.gate.check(symbol, side, qty, price, position,
                                       equity if equity > 0 else None,
                                       pending=self.journal.pending_shares(symbol))
            if decision.newly_halted and not self.halt_announced:
                # RiskGate logs the halt once (warning); the audit gets it once too, and the
                # journal keeps it for the trading day, so a restart cannot lift it
                self.halt_announced = True
                self._audit("risk", event="daily_loss_halt", reason=self.gate.halt_reason,
                            equity=equity)
                day = self._session_now() or self.trading_day
                if day is not None and self.account:
                    self.journal.record_halt(day, self.account,
                                             self.gate.halt_reason, run_id=self.run_id)
            if decision.allowed and decision.quantity is not None and decision.quantity < qty:
                # a limit in risk.shrink: send the largest whole quantity that fits
                log.warning("risk: %s", decision.reason)
                self._audit("risk", event="shrunk", orderRef=ref, symbol=symbol, side=side,
                            quantity=qty, sent=decision.quantity, reason=decision.reason)
                self.journal.log_event("shrunk", {"symbol": symbol, "side": side,
                                                  "quantity": qty, "sent": decision.quantity,
                                                  "reason": decision.reason},
                                       order_ref=ref, run_id=self.run_id)
                order.resize(decision.quantity)
                qty = float(decision.quantity)
            if not decision.allowed:
                (log.info if decision.halted else log.warning)(
                    "risk refused %s: %s", ref, decision.reason)
                self._audit("risk", event="refused", orderRef=ref, symbol=symbol, side=side,
                            quantity=qty, price=price, reason=decision.reason,
                            halted=decision.halted)
                self._record(ref, symbol=symbol, side=side, quantity=qty, status="refused",
                             reason=decision.reason)
                return self._refuse(order, decision.reason)

        # 2. read-only: decide, record, never send
        if self.read_only:
            self.journal.log_event("withheld", {"symbol": symbol, "side": side,
                                                "quantity": qty, "price": price},
                                   order_ref=ref, run_id=self.run_id)
            self._audit("order", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                        status="withheld", reason="read-only run: nothing is sent")
            self._record(ref, symbol=symbol, side=side, quantity=qty, status="withheld")
            order.submit(self)
            order.info.reason = "read-only"
            order.cancel()
            self.notify(order)
            return order

        # 3. an earlier run's order on this side still working: this one would duplicate it
        earlier = next((r for r in self._earlier_working(symbol)
                        if r.side == side and r.order_ref != ref), None)
        if earlier is not None and not self.store.follows_order(earlier.order_ref):
            # its events never reach this process (placed under another clientId): it would
            # refuse this side of the symbol for ever, silently; stop and say what to do
            text = stop_line(earlier, placed_by(self.journal, earlier.order_ref),
                             self.store.clientId)
            log.error("%s not sent: %s", ref, text)
            self._audit("order", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                        status="stopped", reason=text, working=earlier.order_ref)
            self._record(ref, symbol=symbol, side=side, quantity=qty, status="refused",
                         reason=text)
            raise AttentionError(text)
        if earlier is not None:
            reason = (f"an order of an earlier run, {earlier.order_ref} ({earlier.side} "
                      f"{earlier.quantity:g} {symbol}, {earlier.filled:g} filled), is still "
                      f"working at the gateway: no new {side} order for {symbol} until it is "
                      "done (its fills count in the position; cancel it in TWS to trade now)")
            (log.debug if earlier.order_ref in self._held_back else log.warning)(
                "%s not sent: %s", ref, reason)
            self._held_back.add(earlier.order_ref)
            self._audit("order", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                        status="refused", reason=reason, working=earlier.order_ref)
            self._record(ref, symbol=symbol, side=side, quantity=qty, status="refused",
                         reason=reason)
            return self._refuse(order, reason)

        # 4. journal the intent BEFORE sending
        ib = order.ib_order
        created = self.journal.record_intent(Intent(
            order_ref=ref, strategy=self.strategy_name, symbol=symbol, side=side,
            quantity=qty, decision_time=when, order_type=ib.orderType,
            limit_price=ib.lmtPrice if ib.orderType in ("LMT", "STP LMT") else None,
            stop_price=ib.auxPrice if ib.orderType in ("STP", "STP LMT") else None,
            tif=ib.tif or "DAY", account=self.account, run_id=self.run_id))
        if not created:
            rec = self.journal.get(ref)
            resend = rec is not None and rec.status == INTENT and ref in self.resend_refs
            if not resend:
                return self._already_journaled(order, ref, rec, symbol, side, qty)
            self.resend_refs.discard(ref)
            log.info("resending %s (journaled before a crash, never reached the gateway)", ref)
        if self.crash_at == "after_journal":
            _crash("after_journal")
        self._audit("order", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                    order_type=ib.orderType, status="sent", resend=not created)
        self._record(ref, symbol=symbol, side=side, quantity=qty, status="sent")
        return super().submit(order)

    def _already_journaled(self, order: IBOrder, ref: str, rec, symbol: str, side: str,
                           qty: float) -> IBOrder:
        """The same decision was made before (a restart): never send it again."""
        status = rec.status if rec is not None else "unknown"
        log.info("%s is already in the journal (%s): not sent again", ref, status)
        self._audit("order", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                    status="skipped_duplicate", journal_status=status)
        self._record(ref, symbol=symbol, side=side, quantity=qty, status=status,
                     duplicate_skipped=True)
        order.submit(self)
        working = rec is not None and rec.status in OPEN_STATUSES and rec.status != INTENT
        if working and not self.store.follows_order(ref):
            # bound to an order whose events never reach this process: it would wait for it in
            # vain (placed under another clientId); stop and say what to do
            text = stop_line(rec, placed_by(self._bound(), ref), self.store.clientId,
                             waiting=True)
            log.error("%s: %s", ref, text)
            self._audit("order", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                        status="stopped", reason=text, working=ref)
            raise AttentionError(text)
        if working or self.follows(ref):
            # working at the gateway (or filled while this run followed it): its events and
            # fills reach this order; marked adopted so a recorder can tell it from an order
            # this process sent
            self.bind_order(order)
        else:
            order.info.reason = f"already in the journal as {status}"
            order.cancel()
            self.notify(order)
        return order

    # ------------------------------------------------------------------ events
    def on_event(self, event: BrokerEvent) -> None:
        """Write what an applied broker event means to the journal and the audit log (called
        by :meth:`IBBroker.process_events` for every event; does nothing before
        :meth:`configure`)."""
        if self.journal is None:
            return
        match event:
            case OrderPlaced(ref=ref, order_id=oid):
                if self.journal.get(ref) is not None:
                    self.journal.mark_sent(ref, oid, client_id=self.store.clientId)
                    self._record(ref, orderId=oid)
            case OrderStatusChanged():
                self._journal_status(event)
            case OrderError(ref=ref, code=code, text=text):
                if not is_warning(code):
                    if code == DUPLICATE_ORDER_ID:
                        log.error("IB error 103 (duplicate order id) for %s: %s", ref, text)
                    self._audit("error", orderRef=ref, code=code, text=text)
                    if is_rejection(code):
                        self._on_rejection(ref, code, text)
            case ExecutionReceived():
                self._journal_fill(event)
            case CommissionReceived(exec_id=exec_id, commission=commission):
                self._journal_commission(exec_id, commission)
            case FollowedFill():
                self._on_followed_fill(event)
            case ConnectivityNotice(code=code, text=text):
                self._audit("connection", event="status", code=code, text=text)
            case ConnectionLost():
                log.warning("connection to the gateway lost; new orders are held until it is back")
                self._audit("connection", event="lost")
            case ConnectionRestored():
                log.info("reconnected to the gateway; orders and executions re-synced")
                self._audit("connection", event="reconnected")
            case ConnectionGaveUp():
                log.error("gave up reconnecting to the gateway")
                self._audit("connection", event="gave_up")
            case AccountChanged(reason=reason):
                log.error("%s", reason)
                self._audit("alert", event="account_mismatch", message=reason)
                if self.journal is not None:
                    self.journal.log_event("account_mismatch", {"reason": reason},
                                           run_id=self.run_id)

    def _on_rejection(self, ref: str, code: int, text: str) -> None:
        """IB refused order ``ref`` (error ``code``): once its status is terminal without a
        fill, the journal says ``rejected`` with IB's reason."""
        self._rejections[ref] = (code, text)
        rec = self.journal.get(ref) if self.journal is not None else None
        if rec is not None and rec.status in (CANCELLED, INACTIVE) and not rec.filled:
            self._mark_rejected(ref, rec.status, None, code, text)

    def _mark_rejected(self, ref: str, ib_status: str | None, ev: OrderStatusChanged | None,
                       code: int, text: str) -> None:
        text = re.sub(r"^Error -?\d+, reqId -?\d+: ", "", text or "").strip()
        self._bound().update_status(ref, REJECTED, reason=f"IB error {code}: {text}")
        log.warning("order %s rejected by the gateway: IB error %d: %s", ref, code, text)
        self._audit("order", orderRef=ref, status=REJECTED, ib_status=ib_status,
                    filled=0.0, remaining=ev.remaining if ev is not None else None,
                    code=code, reason=text)
        self._record(ref, status=REJECTED, filled=0.0, reason=f"IB error {code}: {text}")

    def _journal_status(self, ev: OrderStatusChanged) -> None:
        rec = self._bound().get(ev.ref)
        if rec is None:
            return
        code = ev.error_code if is_rejection(ev.error_code) else None
        text = ev.reason
        if code is None and ev.ref in self._rejections:
            code, text = self._rejections[ev.ref]
        if (code is not None and not ev.filled and rec.status != REJECTED
                and (ev.status in CANCELLED_STATUSES or ev.status == IB_INACTIVE)):
            self._mark_rejected(ev.ref, ev.status, ev, code, text or "")
            return
        try:
            self._bound().update_status(ev.ref, ev.status, filled=ev.filled,
                                       avg_price=ev.avg_price if ev.avg_price and ev.filled
                                       else None)
        except ValueError:
            log.debug("unknown IB status %r for %s", ev.status, ev.ref)
        new = self._bound().get(ev.ref)
        if new is not None and new.status != rec.status:
            self._audit("order", orderRef=ev.ref, status=new.status, ib_status=ev.status,
                        filled=ev.filled, remaining=ev.remaining, code=ev.error_code,
                        reason=ev.reason)
            self._record(ev.ref, status=new.status, filled=new.filled)
        if (self.crash_at == "after_send" and not self._crashed_after_send
                and ev.status in WORKING_STATUSES and not ev.filled):
            self._crashed_after_send = True
            _crash("after_send")

    def _journal_fill(self, ev: ExecutionReceived) -> None:
        if ev.exec_id in self._fills:
            return
        order = self.orders.get(ev.ref)
        rec = self._bound().get(ev.ref)
        if order is not None:
            symbol = contract_symbol(order.data.tradecontract)
        else:
            symbol = rec.symbol if rec is not None else "?"
        t = ev.time if isinstance(ev.time, datetime) else utc_now()
        fill = Fill(exec_id=ev.exec_id, order_ref=ev.ref, symbol=symbol,
                    side="BUY" if ev.shares > 0 else "SELL", shares=abs(float(ev.shares)),
                    price=float(ev.price), time=t,
                    commission=self._early_commission.pop(ev.exec_id, None),
                    order_id=order.orderId if order is not None else None)
        self._fills[ev.exec_id] = fill
        if fill.shares > 0 and self._bound().record_fill(fill):
            self._audit("fill", orderRef=ev.ref, execId=ev.exec_id, symbol=symbol,
                        side=fill.side, shares=fill.shares, price=fill.price,
                        time=t.isoformat())
            rec = self._bound().get(ev.ref)
            if rec is not None:
                self._record(ev.ref, status=rec.status, filled=rec.filled,
                             symbol=rec.symbol, side=rec.side, quantity=rec.quantity)

    def _on_followed_fill(self, fill: FollowedFill) -> None:
        """A fill of an earlier run's order was counted in the position and cash: say so."""
        log.info("fill of %s (an order of an earlier run): %s %g %s @ %g; position %g, cash "
                 "%.2f", fill.ref, fill.side, abs(fill.shares), fill.symbol, fill.price,
                 fill.position, fill.cash)
        self._audit("fill", event="followed", orderRef=fill.ref, execId=fill.exec_id,
                    symbol=fill.symbol, side=fill.side, shares=abs(fill.shares),
                    price=fill.price, commission=fill.commission,
                    in_position_at_start=fill.in_position, in_cash_at_start=fill.in_cash,
                    position=fill.position, cash=fill.cash)
        rec = self._bound().get(fill.ref)
        if rec is not None:
            self._record(fill.ref, status=rec.status, filled=rec.filled, symbol=rec.symbol,
                         side=rec.side, quantity=rec.quantity, followed=True)

    def _journal_commission(self, exec_id: str, commission: float) -> None:
        if not math.isfinite(commission):
            return
        fill = self._fills.get(exec_id)
        if fill is None:  # IB's report came before the execution: keep it for the fill
            self._early_commission[exec_id] = float(commission)
        elif fill.commission is None:
            self._fills[exec_id] = fill = replace(fill, commission=float(commission))
            self._bound().record_fill(fill)

    # ------------------------------------------------------------------ queries
    def working_refs(self) -> list[str]:
        """Return the orderRefs of this run's orders still alive in backtrader."""
        return [ref for ref, o in self.orders.items() if o.alive()]
