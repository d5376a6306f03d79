"""Which API client placed each journaled order, and the orders this process cannot follow.

IB binds every order to the clientId that placed it. What another client on the same login
sees of it (TWS API documentation; ib_async's ``Wrapper.openOrder``):

* its status, openOrder and execution messages are pushed to the placing client only (and to
  TWS's *Master API client ID*, a setting that is empty by default);
* ``reqOpenOrders`` lists only the asking client's own working orders; ``reqAllOpenOrders``
  lists every client's, once, with the clientId that placed each (read-only: only the placing
  client can modify or cancel it);
* ``reqExecutions`` filters by the ExecutionFilter's clientId (0: no filter), and
  ``reqCompletedOrders`` lists the account's finished orders without a clientId.

So a restart under another clientId can settle what finished while it was away (the start-up
reconcile reads executions and completed orders), but it can never see an earlier clientId's
still-working order move: it would wait for that fill for ever. This module keeps that from
ever becoming a silent run:

* the journal records the clientId when an order is sent (the ``sent`` event's
  ``client_id``; ``adopted`` / ``recovered`` events carry the gateway's, and for orders of
  older journals :func:`learn_client_ids` records what the gateway's openOrder says):
  :func:`placed_by`, :func:`journal_client_ids` (the start-up asks for those clients'
  executions too);
* :func:`unfollowable` lists the journal's open orders working at the gateway that this process
  does not follow; the runner refuses the start on them (:class:`ClientIdError`, exit 2) with
  :func:`refusal`, one line naming the clientId to use;
* :func:`stop_line` is the line of the broker's last guard: a decision refused because of an
  earlier order this process cannot follow stops the run (exit 4) instead of being refused bar
  after bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib.parsing import OrderSnapshot
from bt_ibkr.live.intents import OPEN_STATUSES, IntentRecord, normalize_status
from bt_ibkr.live.journal import Journal

__all__ = ["ClientIdError", "journal_client_ids", "learn_client_ids", "placed_by", "refusal",
           "stop_line", "unfollowable"]

#: journal events whose detail may carry the clientId that placed the order
_PLACING_EVENTS = ("sent", "adopted", "recovered", "placed_by")


class ClientIdError(ConfigError):
    """The run was started under a clientId that cannot follow an order of its journal still
    working at the gateway (exit code 2); the message names the clientId to use."""


def _client_ids_by_ref(journal: Journal) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind in _PLACING_EVENTS:
        for ev in journal.events(kind):
            cid = ev["detail"].get("client_id")
            if ev["order_ref"] and isinstance(cid, int):
                out[ev["order_ref"]] = cid
    return out


def placed_by(journal: Journal, order_ref: str) -> int | None:
    """Return the clientId the journal recorded for ``order_ref`` (when it was sent, adopted
    or recovered), or None when it has none (journals written before it was recorded)."""
    return _client_ids_by_ref(journal).get(order_ref)


def journal_client_ids(journal: Journal) -> set[int]:
    """Return every clientId the journal recorded as having placed one of its orders."""
    return set(_client_ids_by_ref(journal).values())


def learn_client_ids(journal: Journal, snapshots: Iterable[OrderSnapshot]) -> list[str]:
    """Record in ``journal`` (a ``placed_by`` event) the clientId the gateway reports for each
    of its orders that has none recorded yet (journals written before it was recorded);
    return the orderRefs it learned."""
    known = _client_ids_by_ref(journal)
    refs = {r.order_ref for r in journal.intents()}
    learned = []
    for snap in snapshots:
        ref = snap.order_ref
        if ref in refs and ref not in known and snap.client_id is not None:
            journal.log_event("placed_by", {"client_id": snap.client_id}, order_ref=ref)
            known[ref] = snap.client_id
            learned.append(ref)
    return learned


def unfollowable(journal: Journal, snapshots: Iterable[OrderSnapshot],
                 follows: Callable[[str], bool]) -> list[tuple[IntentRecord, int | None]]:
    """Return ``(intent, clientId)`` for each open intent of ``journal`` that the gateway
    reports working (``snapshots``: :meth:`~bt_ibkr.ib.store.IBStore.order_snapshots`) and
    for which ``follows(orderRef)`` is False (its events do not reach this process: placed
    under another clientId). The clientId is the gateway's, else the journal's, else None."""
    working: dict[str, OrderSnapshot] = {}
    for snap in snapshots:
        try:
            is_open = normalize_status(snap.status) in OPEN_STATUSES
        except ValueError:
            is_open = False
        if snap.order_ref and is_open:
            working[snap.order_ref] = snap
    out = []
    recorded: dict[str, int] | None = None
    for rec in journal.open_intents():
        found = working.get(rec.order_ref)
        if found is None or follows(rec.order_ref):
            continue
        cid = found.client_id
        if cid is None:
            recorded = _client_ids_by_ref(journal) if recorded is None else recorded
            cid = recorded.get(rec.order_ref)
        out.append((rec, cid))
    return out


def _order(rec: IntentRecord) -> str:
    return (f"order {rec.order_ref} ({rec.side} {rec.quantity:g} {rec.symbol}, "
            f"{rec.filled:g} filled)")


def _fix(client_id: int | None) -> str:
    if client_id is None:
        return "run with the clientId that placed it, or cancel it in TWS and run again"
    return (f"run with --client-id {client_id} (connection.client_id), or cancel it in TWS and "
            "run again")


def refusal(journal_path: Path | str, rec: IntentRecord, client_id: int | None,
            mine: int) -> str:
    """Return the one line refusing a start under clientId ``mine`` while ``rec`` works at
    the gateway under ``client_id`` (None: unknown)."""
    who = f"clientId {client_id}" if client_id is not None else "another clientId"
    return (f"journal {journal_path}: {_order(rec)} is working at the gateway under {who}, and "
            "IB sends an order's status and fills only to the client that placed it, so this "
            f"run (clientId {mine}) could not follow it: {_fix(client_id)}")


def stop_line(rec: IntentRecord, client_id: int | None, mine: int,
              waiting: bool = False) -> str:
    """Return the one line that stops a run (clientId ``mine``) whose decision was refused
    because of ``rec``, an earlier order it cannot follow (placed by ``client_id``), or with
    ``waiting``, whose decision found ``rec`` as its own order already sent."""
    who = f"clientId {client_id}" if client_id is not None else "another clientId"
    why = ("the decision that made it would wait for its fill in vain" if waiting else
           f"every {rec.side} {rec.symbol} decision would be refused until it ends")
    return (f"{_order(rec)}, placed by {who}, is still open and this run (clientId {mine}) "
            f"cannot follow it, so {why}: stopped instead; {_fix(client_id)}")
