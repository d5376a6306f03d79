"""JournaledIBBroker: IBBroker with the live rails of a paper/live run in front of every order.

For every order the strategy submits, in this order:

1. the decision is written to the audit log;
2. :class:`~bt_ibkr.live.risk.RiskGate` checks it (max position, max order notional, daily-loss
   halt); a refusal rejects the backtrader order (``order.info.reason``) and is audited, the
   daily-loss halt is announced once (log warning + audit record);
3. read-only runs stop here: the order is recorded as *withheld* (journal event + audit) and
   cancelled in backtrader, nothing leaves the process;
4. the order gets its deterministic orderRef (:func:`bt_ibkr.live.journal.make_order_ref` from the
   strategy, symbol, decision bar and the order's number within that decision) and the intent
   is committed to the SQLite journal BEFORE it is sent. If the journal already holds that
   orderRef (the same decision made again after a restart) nothing is sent: the backtrader order
   is attached to the gateway's order (adopted) or cancelled when the journaled one is finished;
   only an intent that :meth:`Journal.reconcile` listed under ``resend`` is sent again, with the
   same orderRef;
5. the order is sent through the store; ids, statuses and fills (deduplicated by execId) are
   written to the journal and the audit log as they come back.

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
import signal
from collections import Counter
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import backtrader as bt

from bt_ibkr.ib.broker import IBBroker, IBOrder
from bt_ibkr.ib.parsing import contract_symbol
from bt_ibkr.live.audit import AuditLog
from bt_ibkr.live.journal import (
    INTENT,
    OPEN_STATUSES,
    Fill,
    Intent,
    Journal,
    make_order_ref,
)
from bt_ibkr.live.risk import RiskGate

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
        self.records: dict[str, dict[str, Any]] = {}
        self.halt_announced = False
        self.max_order_id = 0
        self._decision_seq: Counter = Counter()
        self._fills: dict[str, Fill] = {}
        self._crashed_after_send = False

    def configure(self, *, journal: Journal, audit: AuditLog | None, gate: RiskGate | None,
                  strategy_name: str, run_id: str | None, account: str | None,
                  read_only: bool = False, resend_refs: set[str] | None = None,
                  crash_at: str | None = None) -> None:
        """Attach the run's journal, audit log, risk gate and options; returns None."""
        if crash_at and crash_at not in CRASH_POINTS:
            raise ValueError(f"BT_IBKR_CRASH_AT={crash_at!r}: expected one of {CRASH_POINTS}")
        self.journal, self.audit, self.gate = journal, audit, gate
        self.strategy_name = strategy_name
        self.run_id, self.account = run_id, account
        self.read_only = bool(read_only)
        self.resend_refs = set(resend_refs or ())
        self.crash_at = crash_at or None

    # ------------------------------------------------------------------ helpers
    def _audit(self, kind: str, **fields: Any) -> None:
        if self.audit is not None:
            try:
                self.audit.write(kind, **fields)
            except Exception:  # noqa: BLE001 - the audit must never stop trading
                log.exception("audit write failed")

    def _record(self, ref: str, **fields: Any) -> None:
        rec = self.records.setdefault(ref, {"orderRef": ref})
        rec.update(fields)

    @staticmethod
    def decision_time(data) -> date | datetime:
        """Return the decision bar's time for the orderRef: the session date for daily and
        longer bars, the bar's naive-UTC close time for intraday bars."""
        dt = bt.num2date(data.datetime[0])  # naive UTC
        if data._timeframe >= bt.TimeFrame.Days:
            return data.datetime.date(0)  # in the data's (exchange) time zone
        return dt.replace(microsecond=0)

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
        when = self.decision_time(data)
        key = (symbol, str(when))
        self._decision_seq[key] += 1
        ref = make_order_ref(self.strategy_name, symbol, when, self._decision_seq[key])
        position = self.getposition(data).size
        equity = self.getvalue()
        self._audit("decision", orderRef=ref, symbol=symbol, side=side, quantity=qty,
                    price=price, position=position, equity=equity, bar=str(when))

        # 1. risk gate (before anything is journaled or sent)
        if self.gate is not None:
            decision = self.gate.check(symbol, side, qty, price, position,
                                       equity if equity > 0 else None)
            if decision.newly_halted and not self.halt_announced:
                # RiskGate logs the halt once (warning); the audit gets it once too
                self.halt_announced = True
                self._audit("risk", event="daily_loss_halt", reason=self.gate.halt_reason,
                            equity=equity)
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

        # 3. journal the intent BEFORE sending
        order.ib_order.orderRef = ref
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
        if rec is not None and rec.status in OPEN_STATUSES and rec.status != INTENT:
            # working at the gateway: follow it (its events carry this orderRef)
            self.orders[ref] = order
            order.accept(self)
            self.notify(order)
        else:
            order.info.reason = f"already in the journal as {status}"
            order.cancel()
            self.notify(order)
        return order

    # ------------------------------------------------------------------ events
    def _ev_placed(self, key: str, oid: int) -> None:
        super()._ev_placed(key, oid)
        self.max_order_id = max(self.max_order_id, int(oid))
        if self.journal is not None and self.journal.get(key) is not None:
            self.journal.mark_sent(key, oid)
            self._record(key, orderId=oid)

    def _ev_status(self, *args) -> None:
        super()._ev_status(*args)
        if len(args) < 7 or self.journal is None:
            if len(args) >= 2:
                self._audit("connection", event="status", code=args[0], text=args[1])
            return
        key, status, filled, remaining, avg, code, reason = args
        rec = self.journal.get(key)
        if rec is None:
            return
        try:
            self.journal.update_status(key, status, filled=filled,
                                       avg_price=avg if avg and filled else None)
        except ValueError:
            log.debug("unknown IB status %r for %s", status, key)
        new = self.journal.get(key)
        if new is not None and new.status != rec.status:
            self._audit("order", orderRef=key, status=new.status, ib_status=status,
                        filled=filled, remaining=remaining, code=code, reason=reason)
            self._record(key, status=new.status, filled=new.filled)
        if (self.crash_at == "after_send" and not self._crashed_after_send
                and status in ("Submitted", "PreSubmitted") and not filled):
            self._crashed_after_send = True
            _crash("after_send")

    def _ev_error(self, key: str, code: int, text: str) -> None:
        super()._ev_error(key, code, text)
        if code in (399, 404, 2109, 10167) or 2100 <= code < 2200:
            return
        if code == 103:
            log.error("IB error 103 (duplicate order id) for %s: %s", key, text)
        self._audit("error", orderRef=key, code=code, text=text)

    def _ev_exec(self, key: str, execid: str, signed: float, price: float, when) -> None:
        if self.journal is not None and execid not in self._fills:
            order = self.orders.get(key)
            rec = self.journal.get(key)
            if order is not None:
                symbol = contract_symbol(order.data.tradecontract)
            elif rec is not None:
                symbol = rec.symbol
            else:
                symbol = "?"
            t = when if isinstance(when, datetime) else datetime.now(UTC)
            fill = Fill(exec_id=execid, order_ref=key, symbol=symbol,
                        side="BUY" if signed > 0 else "SELL", shares=abs(float(signed)),
                        price=float(price), time=t,
                        order_id=order.orderId if order is not None else None)
            self._fills[execid] = fill
            if fill.shares > 0 and self.journal.record_fill(fill):
                self._audit("fill", orderRef=key, execId=execid, symbol=symbol,
                            side=fill.side, shares=fill.shares, price=fill.price,
                            time=t.isoformat())
                rec = self.journal.get(key)
                if rec is not None:
                    self._record(key, status=rec.status, filled=rec.filled,
                                 symbol=rec.symbol, side=rec.side, quantity=rec.quantity)
        super()._ev_exec(key, execid, signed, price, when)

    def _ev_comm(self, key: str, execid: str, commission: float, pnl: float) -> None:
        fill = self._fills.get(execid)
        if self.journal is not None and fill is not None and fill.commission is None \
                and math.isfinite(commission):
            fill = replace(fill, commission=float(commission))
            self._fills[execid] = fill
            self.journal.record_fill(fill)
        super()._ev_comm(key, execid, commission, pnl)

    def _ev_connbroken(self) -> None:
        super()._ev_connbroken()
        log.warning("connection to the gateway lost; new orders are held until it is back")
        self._audit("connection", event="lost")

    def _ev_reconnected(self) -> None:
        super()._ev_reconnected()
        log.info("reconnected to the gateway; orders and executions re-synced")
        self._audit("connection", event="reconnected")

    def _ev_disconnected(self) -> None:
        super()._ev_disconnected()
        log.error("gave up reconnecting to the gateway")
        self._audit("connection", event="gave_up")

    # ------------------------------------------------------------------ queries
    def working_refs(self) -> list[str]:
        """Return the orderRefs of this run's orders still alive in backtrader."""
        return [ref for ref, o in self.orders.items() if o.alive()]
