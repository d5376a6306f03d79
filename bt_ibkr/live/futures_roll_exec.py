"""Carry out a journaled roll (:mod:`bt_ibkr.live.futures_roll`) on an IB connection, and bring
the journal up to date with the gateway after a restart.

    await recover_roll_orders_async(ib, journal, account)   # on every (re)start, first
    for plan in pending_rolls(journal) + plan_rolls(positions, today):
        await execute_roll_async(ib, journal, plan, clock, account=account)

The coroutines run on the loop that owns ``ib`` (the live runner runs them on its store's loop,
:mod:`bt_ibkr.live.futures_run`); :func:`recover_roll_orders` and :func:`execute_roll` are the
same on ib_async's synchronous API (an ``IB`` of the calling thread).

:func:`recover_roll_orders_async` matches the gateway's executions, working and completed
orders to the journal's ``ROLL:`` intents by orderRef, so an order placed just before a crash
(before the journal could mark it sent) is found there and never sent twice. With ``account``
only that account's orders and executions count: the refs name the contracts, not the account,
so two journals rolling the same contracts in two accounts of one login make the same refs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime

from bt_ibkr.errors import AttentionError, UnknownSymbolError
from bt_ibkr.futures.guard import CloseOutGuard
from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.ib.parsing import Fill, contract_symbol
from bt_ibkr.live.futures_roll import RollPlan, RollStep, roll_step
from bt_ibkr.live.intents import INTENT, IntentRecord

__all__ = ["REF_PREFIX", "execute_roll", "execute_roll_async", "future_of",
           "recover_roll_orders", "recover_roll_orders_async", "send_roll_intent"]

REF_PREFIX = "ROLL:"


def future_of(contract: ContractMonth):
    """Return the unqualified ib_async ``Future`` of ``contract`` (root, month, the registry's
    exchange, currency and multiplier)."""
    from bt_ibkr.ib import client as ibc

    spec = get_spec(contract.root)
    return ibc.ib_module.Future(spec.root, contract.code, spec.exchange,
                                multiplier=f"{spec.multiplier:g}", currency=spec.currency)


async def _qualified(ib, contract: ContractMonth):
    from bt_ibkr.ib import client as ibc

    fut = future_of(contract)
    try:
        found = await ib.qualifyContractsAsync(fut)
    except ibc.ib_module.RequestError:  # error 200: no security definition
        found = []
    if not found or found[0] is None or not fut.conId:
        spec = get_spec(contract.root)
        raise UnknownSymbolError(f"IB has no future {contract.local_symbol} ({contract}) on "
                                 f"{spec.exchange}")
    return fut


def _contract_of(plan: RollPlan, intent: IntentRecord) -> ContractMonth:
    return plan.new if intent.order_ref == plan.refs[1] else plan.old


async def send_roll_intent(ib, journal, plan: RollPlan, intent: IntentRecord,
                           account: str | None = None):
    """Place the journaled ``intent`` of ``plan`` as a DAY market order carrying its orderRef
    (and ``account``), then mark it sent in the journal; return ib_async's Trade."""
    from bt_ibkr.ib import client as ibc

    order = ibc.ib_module.MarketOrder(intent.side, intent.quantity, orderRef=intent.order_ref,
                                      tif="DAY")
    if account:
        order.account = account
    trade = ib.placeOrder(await _qualified(ib, _contract_of(plan, intent)), order)
    journal.mark_sent(intent.order_ref, trade.order.orderId, trade.order.permId or None,
                      client_id=ib.client.clientId)
    return trade


def _record(journal, f) -> None:
    ex = f.execution
    journal.record_fill(Fill(exec_id=ex.execId, order_ref=ex.orderRef,
                             symbol=contract_symbol(f.contract), side=ex.side,
                             shares=float(ex.shares), price=float(ex.price), time=ex.time,
                             commission=(f.commissionReport.commission
                                         if f.commissionReport and f.commissionReport.commission
                                         else None),
                             order_id=ex.orderId, perm_id=ex.permId))


def _sync(ib, journal, refs: set[str] | None = None, account: str | None = None) -> None:
    """Record the connection's fills and order states of ROLL intents (``refs``: only these;
    ``account``: only that account's)."""
    for f in ib.fills():
        ref = f.execution.orderRef or ""
        if account and f.execution.acctNumber and f.execution.acctNumber != account:
            continue
        if ref.startswith(REF_PREFIX) and (refs is None or ref in refs) and journal.get(ref):
            _record(journal, f)
    for t in ib.trades():
        ref = t.order.orderRef or ""
        if not ref.startswith(REF_PREFIX) or (refs is not None and ref not in refs):
            continue
        if account and t.order.account and t.order.account != account:
            continue
        rec = journal.get(ref)
        if rec is None:
            continue
        if rec.status == INTENT:
            journal.mark_sent(ref, t.order.orderId, t.order.permId or None)
        if t.isDone():  # the filled quantity comes from the executions recorded above
            journal.update_status(ref, t.orderStatus.status, perm_id=t.order.permId or None)


async def recover_roll_orders_async(ib, journal, account: str | None = None) -> None:
    """Bring the journal's ROLL intents up to date with the gateway: executions (reqExecutions),
    working orders (reqAllOpenOrders) and completed orders (reqCompletedOrders), matched by
    orderRef (of ``account`` only, when given). Await it before :func:`execute_roll_async`."""
    await ib.reqExecutionsAsync()
    await ib.reqAllOpenOrdersAsync()
    await ib.reqCompletedOrdersAsync(False)
    _sync(ib, journal, account=account)


def recover_roll_orders(ib, journal, account: str | None = None) -> None:
    """:func:`recover_roll_orders_async` on ib_async's synchronous API."""
    from bt_ibkr.ib import client as ibc

    ibc.ib_module.util.run(recover_roll_orders_async(ib, journal, account))


async def execute_roll_async(ib, journal, plan: RollPlan, clock: Callable[[], datetime],
                             timeout: float = 60.0, guard: CloseOutGuard | None = None,
                             account: str | None = None, run_id: str | None = None) -> RollStep:
    """Drive ``plan`` to "done" or "abandoned" on ``ib``; return the final step.

    Before the open is sent, ``guard`` (default a new :class:`CloseOutGuard`) checks the new
    contract: a roll into a physically settled contract inside its close-out window raises
    CloseOutError with the close done and the open journaled but not sent. The intents carry
    ``account`` (the order too) and ``run_id``.

    Raises AttentionError when an order of the roll makes no progress for ``timeout`` seconds
    (the roll stays journaled: a later call resumes it), UnknownSymbolError when a contract
    cannot be qualified.
    """
    refs = set(plan.refs)
    guard = guard or CloseOutGuard()
    waited_since: float | None = None
    while True:
        step = roll_step(journal, plan, clock(), run_id, account)
        if step.action in ("done", "abandoned"):
            return step
        intent = step.intent
        if intent is None:  # every other action names its intent (roll_step's contract)
            raise RuntimeError(f"roll step {step.action!r} without an intent")
        if step.action == "send":
            if intent.order_ref == plan.refs[1]:  # opening the new contract
                guard.check(plan.new, clock().date(), 0.0, plan.quantity)
            await send_roll_intent(ib, journal, plan, intent, account)
            waited_since = None
            continue
        before = (intent.status, intent.filled)
        _sync(ib, journal, refs, account)
        now = journal.get(intent.order_ref)
        if now is None or (now.status, now.filled) != before:
            waited_since = None
            continue
        waited_since = waited_since or time.monotonic()
        if time.monotonic() - waited_since > timeout:
            raise AttentionError(f"roll {plan.old} -> {plan.new}: order {now.order_ref} made no "
                                 f"progress for {timeout:g} s (status {now.status}, filled "
                                 f"{now.filled:g} of {now.quantity:g}; a market order rests "
                                 "while the contract does not trade); the roll stays journaled "
                                 "and the next start finishes it")
        try:  # the next message from the gateway, or a second
            await asyncio.wait_for(ib.updateEvent, 1.0)
        except TimeoutError:
            pass


def execute_roll(ib, journal, plan: RollPlan, clock: Callable[[], datetime],
                 timeout: float = 60.0, guard: CloseOutGuard | None = None,
                 account: str | None = None) -> RollStep:
    """:func:`execute_roll_async` on ib_async's synchronous API (``ib`` may be None when the
    roll has nothing left to send, e.g. the open is refused by ``guard``)."""
    from bt_ibkr.ib import client as ibc

    return ibc.ib_module.util.run(execute_roll_async(ib, journal, plan, clock, timeout, guard,
                                                     account))
