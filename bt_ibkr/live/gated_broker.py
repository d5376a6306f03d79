"""GatedIBBroker: the checks every order of a paper/live run passes before it is sent.

The gates (:meth:`~bt_ibkr.ib.broker.IBBroker.add_gate`), in this order:

1. the decision is written to the audit log;
2. the order's contract trades in the account's base currency
   (:mod:`~bt_ibkr.live.currency_check`): otherwise the run stops (CurrencyMismatchError,
   audited) before anything is journaled or sent, since its sizes would be off by the rate;
   a futures run's close-out check (:attr:`GatedIBBroker.close_out`,
   :class:`~bt_ibkr.live.futures_closeout.CloseOutWatch`): an order that opens or adds to a
   position in a physically settled contract inside its close-out window stops the run
   (CloseOutError, audited) before anything is journaled or sent;
3. :class:`~bt_ibkr.live.risk.RiskGate` checks it (max position, max order notional, daily-loss
   halt, the order's initial margin); a refusal rejects the backtrader order
   (``order.info.reason``) and is audited, the daily-loss halt is announced once (log warning
   + audit record). Notionals count the contract multiplier. With ``max_margin_fraction`` set,
   an order that adds exposure waits (up to :attr:`GatedIBBroker.what_if_timeout` s) for IB's
   what-if margin (:meth:`~bt_ibkr.ib.store.IBStore.what_if_margin`);
4. read-only runs stop here: the order is recorded as *withheld* (journal event + audit) and
   cancelled in backtrader, nothing leaves the process;
   an order on the side of an earlier run's order for the same symbol that is still working at
   the gateway (followed after a restart) is refused (``order.info.reason`` names it): the
   Strategy sizes from the filled position, which does not yet hold that order, so a stream
   run re-deciding on a later bar would buy the same exposure twice. It may order again once
   the earlier order is done. When that earlier order is one this process does not follow
   (placed under another clientId: IB sends its status and fills to that client only,
   :mod:`bt_ibkr.live.client_ids`), it would never be done here, so the run stops instead
   (:class:`~bt_ibkr.errors.AttentionError`, one line naming the order, its clientId and what
   to do), never refusing bar after bar;
5. the order's deterministic orderRef (:mod:`bt_ibkr.ib.order_refs`) and its intent are
   committed to the SQLite journal BEFORE it is sent. If the journal already holds that
   orderRef (the same decision made again after a restart) nothing is sent: the backtrader order
   is attached to the gateway's order (adopted: ``order.info.adopted`` is True) or cancelled
   when the journaled one is finished; only an intent that :meth:`Journal.reconcile` listed
   under ``resend`` is sent again, with the same orderRef.

What comes back once it is sent is :class:`~bt_ibkr.live.journaled_broker.JournaledIBBroker`'s.
Testing hook: ``crash_at="after_journal"`` SIGKILLs the process right after the intent is
committed (before sending); the runner sets it from ``BT_IBKR_CRASH_AT``.
"""

from __future__ import annotations

import copy
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from bt_ibkr.errors import AttentionError
from bt_ibkr.ib.broker import IBBroker, IBOrder
from bt_ibkr.ib.order_refs import decision_time
from bt_ibkr.ib.parsing import contract_symbol
from bt_ibkr.live.audit import AuditLog
from bt_ibkr.live.client_ids import placed_by, stop_line
from bt_ibkr.live.currency_check import (
    CurrencyMismatchError,
    account_base_currency,
    check_order_currency,
)
from bt_ibkr.live.journal import (
    INTENT,
    OPEN_STATUSES,
    PARTIAL,
    SENT,
    SUBMITTED,
    Intent,
    Journal,
)
from bt_ibkr.live.risk import RiskGate

log = logging.getLogger("bt_ibkr.live")

CRASH_POINTS = ("after_journal", "after_send")
"""Valid values of the ``BT_IBKR_CRASH_AT`` testing hook."""


def crash_now(point: str) -> None:  # pragma: no cover - the process dies here
    log.warning("BT_IBKR_CRASH_AT=%s: killing this process now (testing hook)", point)
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _Decision:
    """What the order gates check, read once from the order and its feed (``qty`` shrinks
    when the risk gate sends less)."""

    ref: str
    symbol: str
    side: str
    qty: float
    price: float
    when: date | datetime
    position: float
    equity: float
    mult: float = 1.0  # the contract's multiplier: notionals are qty x price x mult


class GatedIBBroker(IBBroker):
    """IBBroker whose orders pass the live rails' gates (see the module docstring).

    ``configure`` binds the run's journal, audit log and risk gate, and registers the gates.
    ``records`` lists what this run did with each order (dicts with orderRef, symbol, side,
    quantity, status), for the run summary. ``what_if_timeout``: seconds the risk gate waits
    for IB's what-if margin of an order (``risk.max_margin_fraction``).
    """

    what_if_timeout = 5.0

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
        #: the trading session of "now" on the gateway's clock (set by the run's wiring)
        self.session_now: Callable[[], date] | None = None
        #: called with (new day, equity) when a stream run reaches the next session
        self.on_new_day: Callable[[date, float], None] | None = None
        self.records: dict[str, dict[str, Any]] = {}
        #: ``(contract, position, signed quantity, orderRef)`` -> None or raises: the close-out
        #: check of a futures run (set by the runner; None: no check)
        self.close_out: Callable[[Any, float, float, str], None] | None = None
        self.halt_announced = False
        self._held_back: set[str] = set()  # earlier runs' orders that refused an order (logged)
        self._deciding: _Decision | None = None  # the order the gates are checking
        self._gated = False

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
        if not self._gated:  # the checklist of the module docstring, in its order
            self._gated = True
            for check in (self._gate_decision, self._gate_currency, self._gate_close_out,
                          self._gate_risk,
                          self._gate_read_only,
                          self._gate_earlier_order, self._gate_journal):
                self.add_gate(check)

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
    def _gate_decision(self, order: IBOrder) -> None:
        """Gate 0: audit the decision and note what the next gates check (never stops)."""
        data = order.data
        try:
            price = float(order.price) if order.price else float(data.close[0])
        except (IndexError, TypeError, ValueError):
            price = float("nan")
        d = self._deciding = _Decision(
            ref=order.ib_order.orderRef, symbol=contract_symbol(data.tradecontract),
            side=order.ib_order.action, qty=float(abs(order.size)), price=price,
            when=decision_time(data), position=self.getposition(data).size,
            equity=self.getvalue(), mult=float(order.comminfo.p.mult))
        self._audit("decision", orderRef=d.ref, symbol=d.symbol, side=d.side, quantity=d.qty,
                    price=d.price, position=d.position, equity=d.equity, bar=str(d.when))

    def _gate_currency(self, order: IBOrder) -> None:
        """Gate 1: the contract's currency is the account's base currency (raises
        CurrencyMismatchError to stop the run, audited)."""
        d = self._deciding
        if d is None:
            return None
        base = account_base_currency(self.store.get_acc_values(self.account), self.account)
        currency = getattr(order.data.tradecontract, "currency", "")
        try:
            check_order_currency(d.symbol, currency, base, self.account)
        except CurrencyMismatchError as exc:
            self._audit("order", event="refused", orderRef=d.ref, symbol=d.symbol,
                        reason=str(exc))
            raise
        return None

    def _gate_close_out(self, order: IBOrder) -> None:
        """Gate 1: a futures run's close-out check (raises CloseOutError to stop the run)."""
        d = self._deciding
        if self.close_out is None or d is None:
            return None
        signed = d.qty if d.side == "BUY" else -d.qty
        self.close_out(order.data.tradecontract, d.position, signed, d.ref)
        return None

    def _gate_risk(self, order: IBOrder) -> IBOrder | None:
        """Gate 1: the risk gate, before anything is journaled or sent (it may shrink)."""
        d, journal = self._deciding, self._bound()
        if self.gate is None or d is None:
            return None
        self._roll_day(d.equity)
        # the gate counts a future's or an option's notional with its multiplier
        decision = self.gate.check(d.symbol, d.side, d.qty, d.price, d.position,
                                   d.equity if d.equity > 0 else None,
                                   pending=journal.pending_shares(d.symbol), multiplier=d.mult,
                                   what_if=lambda qty: self._initial_margin(order, qty))
        if decision.newly_halted and not self.halt_announced:
            # RiskGate logs the halt once (warning); the audit gets it once too, and the
            # journal keeps it for the trading day, so a restart cannot lift it
            self.halt_announced = True
            self._audit("risk", event="daily_loss_halt", reason=self.gate.halt_reason,
                        equity=d.equity)
            day = self._session_now() or self.trading_day
            if day is not None and self.account:
                journal.record_halt(day, self.account, self.gate.halt_reason, run_id=self.run_id)
        if decision.allowed and decision.quantity is not None and decision.quantity < d.qty:
            # a limit in risk.shrink: send the largest whole quantity that fits
            log.warning("risk: %s", decision.reason)
            self._audit("risk", event="shrunk", orderRef=d.ref, symbol=d.symbol, side=d.side,
                        quantity=d.qty, sent=decision.quantity, reason=decision.reason)
            journal.log_event("shrunk", {"symbol": d.symbol, "side": d.side, "quantity": d.qty,
                                         "sent": decision.quantity, "reason": decision.reason},
                              order_ref=d.ref, run_id=self.run_id)
            order.resize(decision.quantity)
            d.qty = float(decision.quantity)
        if decision.allowed:
            return None
        (log.info if decision.halted else log.warning)("risk refused %s: %s", d.ref,
                                                       decision.reason)
        self._audit("risk", event="refused", orderRef=d.ref, symbol=d.symbol, side=d.side,
                    quantity=d.qty, price=d.price, reason=decision.reason,
                    halted=decision.halted)
        self._record(d.ref, symbol=d.symbol, side=d.side, quantity=d.qty, status="refused",
                     reason=decision.reason)
        return self._refuse(order, decision.reason)

    def _initial_margin(self, order: IBOrder, quantity: float) -> float | None:
        """Return IB's what-if initial margin change of ``order`` at ``quantity`` (None when
        IB gives none in :attr:`what_if_timeout` s); audited."""
        probe = copy.copy(order.ib_order)
        probe.totalQuantity = quantity
        probe.account = probe.account or self.order_account()
        answer = self.store.what_if_margin(order.data.tradecontract, probe, self.what_if_timeout)
        margin = None if answer is None else answer.init_change
        self._audit("risk", event="what_if", orderRef=order.orderRef, quantity=quantity,
                    initial_margin=margin)
        return margin

    def _gate_read_only(self, order: IBOrder) -> IBOrder | None:
        """Gate 2: a read-only run decides and records, and never sends."""
        d = self._deciding
        if not self.read_only or d is None:
            return None
        self._bound().log_event("withheld", {"symbol": d.symbol, "side": d.side,
                                             "quantity": d.qty, "price": d.price},
                                order_ref=d.ref, run_id=self.run_id)
        self._audit("order", orderRef=d.ref, symbol=d.symbol, side=d.side, quantity=d.qty,
                    status="withheld", reason="read-only run: nothing is sent")
        self._record(d.ref, symbol=d.symbol, side=d.side, quantity=d.qty, status="withheld")
        order.submit(self)
        order.info.reason = "read-only"
        order.cancel()
        self.notify(order)
        return order

    def _gate_earlier_order(self, order: IBOrder) -> IBOrder | None:
        """Gate 3: an earlier run's order on this side still working would be duplicated."""
        d = self._deciding
        if d is None:
            return None
        earlier = next((r for r in self._earlier_working(d.symbol)
                        if r.side == d.side and r.order_ref != d.ref), None)
        if earlier is None:
            return None
        if not self.store.follows_order(earlier.order_ref):
            # its events never reach this process (placed under another clientId): it would
            # refuse this side of the symbol for ever, silently; stop and say what to do
            text = stop_line(earlier, placed_by(self._bound(), earlier.order_ref),
                             self.store.clientId)
            log.error("%s not sent: %s", d.ref, text)
            self._audit("order", orderRef=d.ref, symbol=d.symbol, side=d.side, quantity=d.qty,
                        status="stopped", reason=text, working=earlier.order_ref)
            self._record(d.ref, symbol=d.symbol, side=d.side, quantity=d.qty, status="refused",
                         reason=text)
            raise AttentionError(text)
        reason = (f"an order of an earlier run, {earlier.order_ref} ({earlier.side} "
                  f"{earlier.quantity:g} {d.symbol}, {earlier.filled:g} filled), is still "
                  f"working at the gateway: no new {d.side} order for {d.symbol} until it is "
                  "done (its fills count in the position; cancel it in TWS to trade now)")
        (log.debug if earlier.order_ref in self._held_back else log.warning)(
            "%s not sent: %s", d.ref, reason)
        self._held_back.add(earlier.order_ref)
        self._audit("order", orderRef=d.ref, symbol=d.symbol, side=d.side, quantity=d.qty,
                    status="refused", reason=reason, working=earlier.order_ref)
        self._record(d.ref, symbol=d.symbol, side=d.side, quantity=d.qty, status="refused",
                     reason=reason)
        return self._refuse(order, reason)

    def _gate_journal(self, order: IBOrder) -> IBOrder | None:
        """Gate 4, the last: journal the intent BEFORE sending; a decision already in the
        journal (a restart) is never sent again."""
        d, journal = self._deciding, self._bound()
        if d is None:
            return None
        self._deciding = None
        ib = order.ib_order
        created = journal.record_intent(Intent(
            order_ref=d.ref, strategy=self.strategy_name, symbol=d.symbol, side=d.side,
            quantity=d.qty, decision_time=d.when, order_type=ib.orderType,
            limit_price=ib.lmtPrice if ib.orderType in ("LMT", "STP LMT") else None,
            stop_price=ib.auxPrice if ib.orderType in ("STP", "STP LMT") else None,
            tif=ib.tif or "DAY", account=self.account, run_id=self.run_id))
        if not created:
            rec = journal.get(d.ref)
            resend = rec is not None and rec.status == INTENT and d.ref in self.resend_refs
            if not resend:
                return self._already_journaled(order, d.ref, rec, d.symbol, d.side, d.qty)
            self.resend_refs.discard(d.ref)
            log.info("resending %s (journaled before a crash, never reached the gateway)", d.ref)
        if self.crash_at == "after_journal":
            crash_now("after_journal")
        self._audit("order", orderRef=d.ref, symbol=d.symbol, side=d.side, quantity=d.qty,
                    order_type=ib.orderType, status="sent", resend=not created)
        self._record(d.ref, symbol=d.symbol, side=d.side, quantity=d.qty, status="sent")
        return None

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
