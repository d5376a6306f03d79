"""Carry out a journaled roll (:mod:`bt_ibkr.live.futures_roll`) on an IB connection (ib_async's
synchronous API), and bring the journal up to date with the gateway after a restart.

    recover_roll_orders(ib, journal)            # on every (re)start, before anything is sent
    for plan in pending_rolls(journal) + plan_rolls(positions, today):
        execute_roll(ib, journal, plan, clock)  # returns the final RollStep

:func:`recover_roll_orders` matches the gateway's executions, working and completed orders to
the journal's ``ROLL:`` intents by orderRef, so an order placed just before a crash (before the
journal could mark it sent) is found there and never sent twice. Not called by the live runner
yet (see docs/SETUP.md, Futures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from bt_ibkr.errors import AttentionError, UnknownSymbolError
from bt_ibkr.futures.guard import CloseOutGuard
from bt_ibkr.futures.registry import get_spec
from bt_ibkr.ib.parsing import Fill
from bt_ibkr.live.futures_roll import RollPlan, RollStep, roll_step
from bt_ibkr.live.intents import INTENT, IntentRecord

__all__ = ["REF_PREFIX", "execute_roll", "recover_roll_orders", "send_roll_intent"]

REF_PREFIX = "ROLL:"


def _contract(ib, intent: IntentRecord, root: str):
    from bt_ibkr.ib import client as ibc

    spec = get_spec(root)
    fut = ibc.ib_module.Future(localSymbol=intent.symbol, exchange=spec.exchange,
                               currency=spec.currency)
    fut.symbol = spec.root
    found = ib.qualifyContracts(fut)
    if not found or found[0] is None or not fut.conId:
        raise UnknownSymbolError(f"IB has no future {intent.symbol} on {spec.exchange}")
    return fut


def send_roll_intent(ib, journal, intent: IntentRecord, root: str):
    """Place the journaled ``intent`` as a DAY market order carrying its orderRef, then mark it
    sent in the journal; return ib_async's Trade."""
    from bt_ibkr.ib import client as ibc

    order = ibc.ib_module.MarketOrder(intent.side, intent.quantity, orderRef=intent.order_ref,
                                      tif="DAY")
    trade = ib.placeOrder(_contract(ib, intent, root), order)
    journal.mark_sent(intent.order_ref, trade.order.orderId, trade.order.permId or None,
                      client_id=ib.client.clientId)
    return trade


def _record(journal, f) -> None:
    ex = f.execution
    journal.record_fill(Fill(exec_id=ex.execId, order_ref=ex.orderRef,
                             symbol=f.contract.localSymbol, side=ex.side, shares=float(ex.shares),
                             price=float(ex.price), time=ex.time,
                             commission=(f.commissionReport.commission
                                         if f.commissionReport and f.commissionReport.commission
                                         else None),
                             order_id=ex.orderId, perm_id=ex.permId))


def _sync(ib, journal, refs: set[str] | None = None) -> None:
    """Record the connection's fills and order states of ROLL intents (``refs``: only these)."""
    for f in ib.fills():
        ref = f.execution.orderRef or ""
        if ref.startswith(REF_PREFIX) and (refs is None or ref in refs) and journal.get(ref):
            _record(journal, f)
    for t in ib.trades():
        ref = t.order.orderRef or ""
        if not ref.startswith(REF_PREFIX) or (refs is not None and ref not in refs):
            continue
        rec = journal.get(ref)
        if rec is None:
            continue
        if rec.status == INTENT:
            journal.mark_sent(ref, t.order.orderId, t.order.permId or None)
        if t.isDone():  # the filled quantity comes from the executions recorded above
            journal.update_status(ref, t.orderStatus.status, perm_id=t.order.permId or None)


def recover_roll_orders(ib, journal) -> None:
    """Bring the journal's ROLL intents up to date with the gateway: executions (reqExecutions),
    working orders (reqAllOpenOrders) and completed orders (reqCompletedOrders), matched by
    orderRef. Call it after connecting and before :func:`execute_roll`."""
    ib.reqExecutions()
    ib.reqAllOpenOrders()
    ib.reqCompletedOrders(False)
    _sync(ib, journal)


def execute_roll(ib, journal, plan: RollPlan, clock: Callable[[], datetime],
                 timeout: float = 60.0, guard: CloseOutGuard | None = None) -> RollStep:
    """Drive ``plan`` to "done" or "abandoned" on ``ib``; return the final step.

    Before the open is sent, ``guard`` (default a new :class:`CloseOutGuard`) checks the new
    contract: a roll into a physically settled contract inside its close-out window raises
    CloseOutError with the close done and the open journaled but not sent.

    Raises AttentionError when an order of the roll makes no progress for ``timeout`` seconds
    (the roll stays journaled: a later call resumes it), UnknownSymbolError when a contract
    cannot be qualified.
    """
    refs = set(plan.refs)
    guard = guard or CloseOutGuard()
    waited_since: float | None = None
    while True:
        step = roll_step(journal, plan, clock())
        if step.action in ("done", "abandoned"):
            return step
        intent = step.intent
        if intent is None:  # every other action names its intent (roll_step's contract)
            raise RuntimeError(f"roll step {step.action!r} without an intent")
        if step.action == "send":
            if intent.order_ref == plan.refs[1]:  # opening the new contract
                guard.check(plan.new, clock().date(), 0.0, plan.quantity)
            send_roll_intent(ib, journal, intent, plan.old.root)
            waited_since = None
            continue
        before = (intent.status, intent.filled)
        _sync(ib, journal, refs)
        now = journal.get(intent.order_ref)
        if now is None or (now.status, now.filled) != before:
            waited_since = None
            continue
        waited_since = waited_since or time.monotonic()
        if time.monotonic() - waited_since > timeout:
            raise AttentionError(f"roll {plan.old} -> {plan.new}: order {now.order_ref} made no "
                                 f"progress for {timeout:g} s (status {now.status}, filled "
                                 f"{now.filled:g} of {now.quantity:g}); it stays journaled")
        ib.waitOnUpdate(timeout=1.0)
