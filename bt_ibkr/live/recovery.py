"""Start-up recovery of a journaled process: match the journal with the gateway before trading.

:func:`recover` is what a (re)started process does once it is connected and before its
Strategy runs (the live runner, and the parity path's kill-and-restart scenario,
:mod:`bt_ibkr.parity.restart`, call the same function):

1. asks the gateway for its open and completed orders (``reqAllOpenOrders`` +
   ``reqCompletedOrders``), every execution it still has (``reqExecutions``: every client's,
   and those of each clientId that placed one of the journal's orders,
   :mod:`bt_ibkr.live.client_ids`) and the account's positions;
2. :func:`~bt_ibkr.live.reconcile.reconcile`: fills missed while away are journaled
   (deduplicated by execId), orders of ours found at the gateway are adopted, statuses are
   brought up to date, intents that never reached the gateway are listed for resending;
3. never reuses an order id: the client's next id is set above every id the journal or the
   gateway has seen (the gateway's nextValidId may have rolled back);
4. follows our orders still working at the gateway under this client's clientId (IB sends an
   order's events only to the client that placed it): their status changes and executions
   (those the client already has first) are routed to the broker under their orderRef. The broker
   counts every fill of them once in its position and cash, re-made decision or not (a stream
   run never re-makes it); a re-made decision that finds its orderRef in the journal
   (:class:`~bt_ibkr.live.journaled_broker.JournaledIBBroker`) is bound to the order and gets
   its fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bt_ibkr.live.client_ids import journal_client_ids, learn_client_ids
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.reconcile import ReconcileReport, reconcile
from bt_ibkr.live.settlements import parse_occ

#: an intent journaled but never sent is resent after a restart only if younger than this
MAX_INTENT_AGE = timedelta(hours=12)


@dataclass
class Recovery:
    """What :func:`recover` did: the journal's ``report``, the ``highest_id`` used so far
    (0: none; the client's ids now start above it) and the orderRefs ``followed`` (working
    orders of earlier processes whose events now reach this one's broker)."""

    report: ReconcileReport
    highest_id: int = 0
    followed: list[str] = field(default_factory=list)
    snapshots: list = field(default_factory=list)  # the gateway's orders (OrderSnapshot)


def recover(store, journal: Journal, account: str, now: datetime,
            max_intent_age: timedelta = MAX_INTENT_AGE) -> Recovery:
    """Reconcile ``journal`` with the gateway behind the connected ``store`` for ``account``
    (see the module docstring); return the :class:`Recovery`.

    Raises GatewayTimeoutError when the gateway does not answer the order or execution
    requests, JournalError when the journal cannot be written.
    """
    snaps = store.order_snapshots(account)
    learn_client_ids(journal, snaps)
    # the executions of every clientId that placed one of the journal's orders (an earlier
    # run may have used another one: its fills made while away are ours to record)
    execs = store.exec_snapshots(account, client_ids=journal_client_ids(journal))
    positions = store.holdings(account)
    # an option the journal holds may have expired: judged by the gateway's clock (asked
    # only then: a paced simulator steps its clock on every time request)
    held = journal.positions()
    gateway_now = store.server_time() if any(parse_occ(s) for s in held) else None
    report = reconcile(journal, snaps, execs, positions, now, max_intent_age, gateway_now)
    ids = [r.order_id for r in journal.intents() if r.order_id]
    ids += [s.order_id for s in snaps if s.order_id]
    ids += [e.order_id for e in execs if e.order_id]
    top = max(ids, default=0)
    if top:
        store.reserve_order_ids(top)
    followed = store.follow_trades({r.order_ref for r in journal.intents()})
    return Recovery(report=report, highest_id=top, followed=list(followed), snapshots=snaps)


__all__ = ["MAX_INTENT_AGE", "Recovery", "recover"]
