"""JournaledIBBroker: a :class:`~bt_ibkr.live.gated_broker.GatedIBBroker` that journals what
comes back from IB.

Every order first passes the gates of :mod:`bt_ibkr.live.gated_broker` (audit, risk gate,
read-only, an earlier run's working order, the journal before sending). Once sent, its ids,
statuses and fills (deduplicated by execId) are written to the journal and the audit log as
they come back: the broker subscribes its :meth:`JournaledIBBroker.on_event` to its own events
(:meth:`IBBroker.subscribe`).

Orders of earlier runs still working at the gateway are followed (:func:`bt_ibkr.live.recovery.
recover`); when the broker starts they are announced to ``notify_store`` and the audit log, and
their fills count in this run's position and cash when they come (:class:`~bt_ibkr.ib.broker.
IBBroker`, recorded in the audit log as ``fill`` records with ``event="followed"``), while the
risk gate counts what is left of them (``Journal.pending_shares``) until then.

Testing hook: ``crash_at="after_send"`` SIGKILLs the process when the gateway has acknowledged
the order (before any fill); it exists only so the crash-recovery tests can kill the process at
exact points.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import replace
from datetime import datetime
from typing import Any

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
    ConnectionGaveUp,
    ConnectionLost,
    ConnectionRestored,
    ConnectivityNotice,
    ExecutionReceived,
    FillCompleted,
    FollowedFill,
    OrderError,
    OrderPlaced,
    OrderStatusChanged,
)
from bt_ibkr.ib.parsing import contract_symbol
from bt_ibkr.ib.position_events import PositionSettlement
from bt_ibkr.live.gated_broker import (  # noqa: F401 - CRASH_POINTS re-exported
    CRASH_POINTS,
    GatedIBBroker,
    crash_now,
)
from bt_ibkr.live.journal import (
    CANCELLED,
    INACTIVE,
    REJECTED,
    Fill,
)
from bt_ibkr.live.settlements import Settled, journal_settlement
from bt_ibkr.utc import utc_now

log = logging.getLogger("bt_ibkr.live")


def is_rejection(code: int | None) -> bool:
    """Return True when IB error ``code`` on an order refuses it (201 order rejected, 202's
    kin excluded: a cancel confirmation or an informational warning is no rejection)."""
    return (bool(code) and code not in CANCEL_CONFIRMATIONS and code not in _CANCEL_REPLIES
            and not is_warning(code))


#: answers to a cancel request (order not found, not cancellable): about the cancel, not the order
_CANCEL_REPLIES = frozenset({161, 10147})


class JournaledIBBroker(GatedIBBroker):
    """GatedIBBroker that journals and audits the statuses and fills IB sends back (see the
    module docstring). ``JournaledIBBroker(store=store)`` then :meth:`configure` before
    cerebro starts."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fills: dict[str, Fill] = {}
        self._rejections: dict[str, tuple[int, str]] = {}  # orderRef -> IB's (code, text)
        self._crashed_after_send = False
        self.subscribe(self.on_event)

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
            case FillCompleted(exec_id=exec_id, commission=commission):
                self._journal_commission(exec_id, commission)
            case FollowedFill():
                self._on_followed_fill(event)
            case PositionSettlement():
                self._journal_settlement(event)
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

    def _journal_settlement(self, ev: PositionSettlement) -> None:
        """An option settled by IB without an order (expiry, exercise, assignment): the
        journal's positions follow it (an ``expiry`` event, never a fill)."""
        if self.journal is None:
            return
        settled = Settled(ev.option_symbol, ev.contracts, ev.how, ev.underlying_symbol,
                          ev.delivered, ev.strike)
        with self.journal.transaction() as tx:
            journal_settlement(tx, settled, utc_now(), self.run_id, source="run",
                               early=ev.early)
        self._audit("order", status="settlement", symbol=ev.option_symbol, how=ev.how,
                    contracts=ev.contracts, underlying=ev.underlying_symbol,
                    delivered=ev.delivered, strike=ev.strike, reason=ev.describe())

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
            crash_now("after_send")

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
                    commission=None,  # comes with the execution's FillCompleted
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
        fill = self._fills.get(exec_id)  # journaled at its ExecutionReceived, just before
        if fill is not None and fill.commission is None:
            self._fills[exec_id] = fill = replace(fill, commission=float(commission))
            self._bound().record_fill(fill)

    # ------------------------------------------------------------------ queries
    def working_refs(self) -> list[str]:
        """Return the orderRefs of this run's orders still alive in backtrader."""
        return [ref for ref, o in self.orders.items() if o.alive()]
