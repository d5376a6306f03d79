"""Start-up reconciliation: match a journal against what the gateway says, in one transaction.

:func:`reconcile` is what a (re)started process runs (through :func:`bt_ibkr.live.recovery.
recover`) before its Strategy decides anything:

* intent journaled, never marked sent, but the gateway has it  -> **adopted** (ids recorded);
* intent journaled, nothing at the gateway, still fresh        -> **resend** with the SAME
  orderRef (so a second crash still cannot duplicate it);
* the same, but older than ``max_intent_age``                  -> **expired** (not sent);
* executions the journal has not seen                          -> recorded (**missed fills**);
* sent intents with no trace at the gateway and no fills       -> **lost** (reported loudly);
* journal positions (adopted start positions + fills) vs the gateway's -> **mismatches**.

It writes through :meth:`Journal.transaction <bt_ibkr.live.journal.Journal.transaction>`, the
same consistent writes (fills, statuses, start positions, events) every other journal call uses.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bt_ibkr.ib.order_refs import ref_fields, ref_owner, ref_time
from bt_ibkr.ib.parsing import ExecSnapshot, Fill, OrderSnapshot, normalize_side
from bt_ibkr.live.intents import (
    CANCELLED,
    EXPIRED,
    FILLED,
    INTENT,
    LOST,
    OPEN_STATUSES,
    SENT,
    SUBMITTED,
    IntentRecord,
    intent_from_row,
    iso,
    normalize_status,
    parse_time,
)
from bt_ibkr.live.journal import Journal, JournalTx
from bt_ibkr.live.settlements import explain_mismatches, journal_settlement
from bt_ibkr.utc import to_utc as _utc


@dataclass
class PositionMismatch:
    """A symbol whose journal position differs from the gateway's."""

    symbol: str
    journal: float
    gateway: float

    @property
    def difference(self) -> float:
        return self.gateway - self.journal


@dataclass
class ReconcileReport:
    """What :func:`reconcile` found and did. ``ok`` is False when a human should look."""

    adopted: list[str] = field(default_factory=list)
    resend: list[IntentRecord] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    missed_fills: list[Fill] = field(default_factory=list)
    foreign_fills: list[Fill] = field(default_factory=list)
    unknown_orders: list[OrderSnapshot] = field(default_factory=list)
    recovered: list[IntentRecord] = field(default_factory=list)
    adopted_positions: dict[str, float] = field(default_factory=dict)
    position_mismatches: list[PositionMismatch] = field(default_factory=list)
    #: orders or executions at the gateway that carry one of our orderRefs but differ from the
    #: journaled decision in side, size or symbol: never adopted (the run stops, exit 4)
    conflicts: list[str] = field(default_factory=list)
    #: option settlements IB made without an order (expiry, exercise, assignment) that
    #: explain position differences (:mod:`bt_ibkr.live.settlements`): journaled, not drift
    settlements: list[str] = field(default_factory=list)
    #: other bt_ibkr journals seen on this account (working orders or today's executions):
    #: their identity ("bt1" for refs without one) -> the symbols they trade
    other_journals: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing needs a human: no lost orders, no position mismatch, no order of
        ours the journal did not know (recovered), no order that differs from its decision.
        Orders and fills of other programs are reported, not a problem."""
        return not (self.lost or self.position_mismatches or self.recovered or self.conflicts)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data (for the audit log and ``--json``)."""
        data = asdict(self)
        data["resend"] = [r.order_ref for r in self.resend]
        data["recovered"] = [r.order_ref for r in self.recovered]
        data["ok"] = self.ok
        return json.loads(json.dumps(data, default=str))

    def summary(self) -> str:
        """Return a few human-readable lines; problems first, prefixed with ``!!``."""
        lines: list[str] = list(self.conflicts)
        for ref in self.lost:
            lines.append(f"!! LOST order {ref}: marked sent but the gateway has no trace of it and "
                         "no fills; check TWS (Trades / Orders) before trading this symbol again")
        for r in self.recovered:
            lines.append(f"!! RECOVERED order {r.order_ref} ({r.side} {r.quantity:g} {r.symbol}, "
                         f"{r.status}, {r.filled:g} filled) is at the gateway but was not in this "
                         "journal (journal lost, replaced or a different file?): adopted so it is "
                         "never sent again; check TWS and the position before trading it again")
        for m in self.position_mismatches:
            lines.append(f"!! POSITION MISMATCH {m.symbol}: journal {m.journal:g}, gateway "
                         f"{m.gateway:g} (difference {m.difference:+g}); trades made outside this "
                         "journal? accept the gateway's with Journal.accept_positions()")
        if self.unknown_orders or self.foreign_fills:
            refs = sorted({o.order_ref or "(no ref)" for o in self.unknown_orders}
                          | {f.order_ref or "(no ref)" for f in self.foreign_fills})
            syms = sorted({o.symbol for o in self.unknown_orders}
                          | {f.symbol for f in self.foreign_fills})
            lines.append(f"not ours: {len(self.unknown_orders)} working order(s) and "
                         f"{len(self.foreign_fills)} fill(s) of other programs, manual orders or "
                         f"other journals on {', '.join(syms)} ({', '.join(refs[:6])}"
                         f"{' ...' if len(refs) > 6 else ''}): never counted in this journal's "
                         "positions or cash")
        lines.extend(self.settlements)
        if self.adopted:
            lines.append(f"adopted {len(self.adopted)} order(s) found at the gateway: "
                         + ", ".join(self.adopted))
        if self.resend:
            lines.append(f"{len(self.resend)} journaled order(s) never reached the gateway and "
                         "will be sent with the same orderRef: "
                         + ", ".join(r.order_ref for r in self.resend))
        if self.expired:
            lines.append(f"{len(self.expired)} unsent order(s) too old to send, expired: "
                         + ", ".join(self.expired))
        if self.missed_fills:
            lines.append(f"recorded {len(self.missed_fills)} fill(s) that arrived while away")
        if self.adopted_positions:
            lines.append("adopted start positions: " + ", ".join(
                f"{s} {q:g}" for s, q in sorted(self.adopted_positions.items())))
        if self.updated:
            lines.append(f"updated {len(self.updated)} order status(es) from the gateway")
        return "\n".join(lines) if lines else "journal and gateway agree"


# --------------------------------------------------------------------------------------------
# from the gateway's executions


def fill_from_exec(snap: ExecSnapshot) -> Fill:
    """Return the journal :class:`Fill` of an :class:`ExecSnapshot` (for :meth:`~bt_ibkr.live.journal.Journal.record_fill`)."""
    return Fill(snap.exec_id, snap.order_ref or None, snap.symbol, normalize_side(snap.side),
                float(snap.shares), float(snap.price), snap.time, snap.commission, snap.order_id,
                snap.perm_id)


# ------------------------------------------------------------------------------------------
# the reconciliation


def reconcile(
    journal: Journal,
    gateway_orders: Iterable[OrderSnapshot],
    gateway_executions: Iterable[ExecSnapshot],
    gateway_positions: Mapping[str, float],
    now: datetime,
    max_intent_age: timedelta,
    gateway_now: datetime | None = None,
) -> ReconcileReport:
    """Match the journal against the gateway's state at start-up; return what was done.

    Args:
        gateway_orders: open and completed orders (``reqAllOpenOrders`` +
            ``reqCompletedOrders``), as :class:`OrderSnapshot`.
        gateway_executions: executions since the last run (``reqExecutions``).
        gateway_positions: the traded account's positions ``{symbol: quantity}``; a symbol
            that is missing is flat.
        now: the current time (journaled-not-sent intents older than ``now -
            max_intent_age`` expire instead of being resent).
        max_intent_age: how old an unsent intent may be and still be sent.
        gateway_now: the gateway's clock (default ``now``): an option whose expiry it has
            passed and that the gateway no longer holds was settled by IB, not drift.

    In one transaction: records unseen executions (dedupe by execId); adopts gateway orders
    that match journaled-but-unsent intents; updates statuses of sent intents; marks resend /
    expired / lost; adopts start positions of symbols the journal has never seen; lists
    position mismatches. Idempotent: running it again with the same inputs changes nothing
    and reports the same resends (same orderRefs).
    """
    report = ReconcileReport()
    now = _utc(now)
    orders = list(gateway_orders)
    gateway_executions = list(gateway_executions)
    by_ref: dict[str, OrderSnapshot] = {}
    for o in orders:
        if o.order_ref:
            prev = by_ref.get(o.order_ref)
            # several rows for one ref (open + completed): keep the most advanced one
            if prev is None or (o.filled or 0) >= (prev.filled or 0):
                by_ref[o.order_ref] = o
    jid = journal.journal_id
    with journal.transaction() as tx:
        known_refs = {r[0] for r in tx.execute("SELECT order_ref FROM intents")}
        intents = {r["order_ref"]: r for r in tx.execute(
            "SELECT order_ref, symbol, side, quantity FROM intents")}

        def ours(ref: str | None) -> bool:
            """In this journal, or carrying its identity (a lost journal's orders)."""
            if not ref:
                return False
            return ref in known_refs or (jid is not None and ref_owner(ref) == jid)
        known_syms = {r[0] for r in tx.execute(
            "SELECT symbol FROM start_positions UNION SELECT symbol FROM fills")}
        # what was open before this reconcile (recording fills below may finish some)
        rows = tx.execute(
            f"SELECT * FROM intents WHERE status IN ({','.join('?' * len(OPEN_STATUSES))})"
            " ORDER BY created, order_ref", OPEN_STATUSES).fetchall()
        # 1. executions -> fills (dedupe by execId)
        for e in gateway_executions:
            fill = fill_from_exec(e)
            if not ours(fill.order_ref):
                report.foreign_fills.append(fill)  # never in our positions or cash
                _note_other_journal(report, fill.order_ref, fill.symbol)
                continue
            intent = intents.get(fill.order_ref or "")
            if fill.order_ref and intent is not None and (normalize_side(fill.side) != intent["side"]
                                       or fill.symbol != intent["symbol"]):
                report.conflicts.append(_conflict(fill.order_ref, intent, fill.side,
                                                  fill.shares, fill.symbol, "an execution"))
                continue
            if tx.record_fill(fill) and fill.order_ref in known_refs:
                report.missed_fills.append(fill)
        # 2. open intents vs gateway orders and executions
        for row in rows:
            ref = row["order_ref"]
            was_unsent = row["status"] == INTENT
            snap = by_ref.get(ref)
            if snap is not None and (normalize_side(snap.side) != row["side"]
                                     or snap.symbol != row["symbol"]
                                     or abs(float(snap.quantity) - row["quantity"]) > 1e-9):
                report.conflicts.append(_conflict(ref, row, snap.side, snap.quantity,
                                                  snap.symbol, "an order"))
                continue  # never adopted: it is not the order we decided
            cur = tx.execute("SELECT status, quantity, filled FROM intents WHERE order_ref = ?",
                             (ref,)).fetchone()
            fills = float(tx.execute(
                "SELECT COALESCE(SUM(shares), 0) FROM fills WHERE order_ref = ?",
                (ref,)).fetchone()[0])
            if snap is None and fills <= 0:
                if not was_unsent:
                    tx.set_status(ref, cur, LOST, None, None, None)
                    report.lost.append(ref)
                elif now - (parse_time(row["created"]) or now) > max_intent_age:
                    tx.set_status(ref, cur, EXPIRED, None, None, None)
                    report.expired.append(ref)
                else:
                    report.resend.append(intent_from_row(row))
                continue
            if was_unsent:
                # sent before the crash but never marked: adopt the gateway's ids
                # (completed orders carry no orderId; the executions do)
                exec_ids = tx.execute(
                    "SELECT MAX(order_id), MAX(perm_id) FROM fills WHERE order_ref = ?",
                    (ref,)).fetchone()
                tx.execute(
                    "UPDATE intents SET order_id = COALESCE(?, order_id),"
                    " perm_id = COALESCE(?, perm_id), sent_at = ?, updated = ?,"
                    " status = CASE WHEN status = ? THEN ? ELSE status END"
                    " WHERE order_ref = ?",
                    (snap.order_id if snap and snap.order_id else exec_ids[0],
                     snap.perm_id if snap and snap.perm_id else exec_ids[1],
                     iso(now), iso(now), INTENT, SENT, ref))
                tx.event("adopted", ref, {
                    "order_id": snap.order_id if snap else None,
                    "status": snap.status if snap else "from executions",
                    "client_id": snap.client_id if snap else None})
                report.adopted.append(ref)
                cur = tx.execute("SELECT status, quantity, filled FROM intents"
                                 " WHERE order_ref = ?", (ref,)).fetchone()
            if snap is not None:
                try:
                    status = normalize_status(snap.status)
                except ValueError:
                    status = cur["status"]
                filled = max(float(snap.filled or 0.0), fills)
                avg, perm = snap.avg_price, snap.perm_id
            else:
                # gone from the gateway, executions known: done, remainder cancelled
                status, filled, avg, perm = CANCELLED, fills, None, None
            if filled >= cur["quantity"] - 1e-9:
                status = FILLED
            changed = tx.set_status(ref, cur, status, filled, avg, perm)
            if (changed or cur["status"] != row["status"]) and not was_unsent:
                report.updated.append(ref)
        # 3. gateway orders the journal does not know. Ours (this package's orderRef prefix)
        # are adopted first, whatever their state: the journal was lost or replaced, and the
        # same decision made again must find its orderRef here and never be sent twice.
        report.recovered = _recover(tx, by_ref, gateway_executions, known_refs, now, jid)
        recovered = {r.order_ref for r in report.recovered}
        for o in orders:
            if o.order_ref in recovered:
                continue
            if not ours(o.order_ref):
                try:
                    working = normalize_status(o.status) in OPEN_STATUSES
                except ValueError:
                    working = True
                if working:
                    report.unknown_orders.append(o)
                    _note_other_journal(report, o.order_ref, o.symbol)
        # 4. positions
        journal_syms = {r[0] for r in tx.execute(
            "SELECT symbol FROM start_positions UNION SELECT symbol FROM fills")}
        for symbol in sorted(set(gateway_positions) | journal_syms):
            gw = float(gateway_positions.get(symbol, 0.0) or 0.0)
            if symbol not in known_syms:
                # first contact with this symbol: take the gateway's position as the start
                # (start = gateway - fills recorded above, so they add up to the gateway's)
                if abs(gw) > 1e-9 or symbol in journal_syms:
                    start = tx.adopt_position(symbol, gw, now)
                    if abs(start) > 1e-9:
                        report.adopted_positions[symbol] = start
                continue
            mine = tx.position(symbol)
            if abs(mine - gw) > 1e-6:
                report.position_mismatches.append(PositionMismatch(symbol, mine, gw))
        settled, report.position_mismatches = explain_mismatches(
            report.position_mismatches, _utc(gateway_now) if gateway_now else now)
        for s in settled:
            journal_settlement(tx, s, now, source="reconcile")
            report.settlements.append(s.describe())
        tx.event("reconcile", None, {
            "adopted": report.adopted, "resend": [r.order_ref for r in report.resend],
            "expired": report.expired, "lost": report.lost,
            "missed_fills": [f.exec_id for f in report.missed_fills],
            "mismatches": [asdict(m) for m in report.position_mismatches],
            "settlements": report.settlements})
    return report


def _recover(tx: JournalTx, by_ref: Mapping[str, OrderSnapshot],
             executions: list[ExecSnapshot], known_refs: set[str],
             now: datetime, jid: str | None) -> list[IntentRecord]:
    """Journal the gateway's orders and executions that carry this package's orderRef
    prefix but are not in the journal; return them as stored (status from the gateway,
    fills already recorded by execId)."""
    if jid is None:
        return []
    refs = {ref for ref in by_ref if ref_owner(ref) == jid}
    refs |= {e.order_ref for e in executions if e.order_ref and ref_owner(e.order_ref) == jid}
    out: list[IntentRecord] = []
    for ref in sorted(refs - known_refs):
        snap = by_ref.get(ref)
        execs = [e for e in executions if e.order_ref == ref]
        filled = float(tx.execute(
            "SELECT COALESCE(SUM(shares), 0) FROM fills WHERE order_ref = ?",
            (ref,)).fetchone()[0])
        if snap is not None:
            symbol, side, qty = snap.symbol, normalize_side(snap.side), float(snap.quantity)
            try:
                status = normalize_status(snap.status)
            except ValueError:
                status = SUBMITTED
            filled = max(filled, float(snap.filled or 0.0))
            order_id, perm_id, avg = snap.order_id, snap.perm_id, snap.avg_price
            order_type = snap.order_type or "?"
        else:  # gone from the gateway's order lists; its executions are what is left
            first = execs[0]
            symbol, side, qty = first.symbol, normalize_side(first.side), filled
            status, order_id, perm_id, avg, order_type = (FILLED, first.order_id,
                                                          first.perm_id, None, "?")
        if qty <= 0:
            continue
        if filled >= qty - 1e-9:
            status = FILLED
        fields = ref_fields(ref)
        strategy = fields[0] if fields else "?"
        decided = ref_time(fields[2]) if fields else None
        stamp = iso(now)
        tx.execute(
            "INSERT INTO intents (order_ref, strategy, symbol, side, quantity, order_type,"
            " decision_time, created, status, order_id, perm_id, filled, avg_price, sent_at,"
            " updated, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ref, strategy, symbol, side, qty, order_type, iso(decided or now), stamp,
             status, order_id, perm_id, filled, avg, stamp, stamp,
             "recovered from the gateway: the journal did not know this order"))
        tx.event("recovered", ref, {"status": status, "filled": filled,
                                           "quantity": qty, "symbol": symbol,
                                           "client_id": snap.client_id if snap else None})
        out.append(intent_from_row(tx.execute("SELECT * FROM intents WHERE order_ref = ?",
                                      (ref,)).fetchone()))
    return out


def _note_other_journal(report: ReconcileReport, ref: str | None, symbol: str) -> None:
    """Remember a foreign order of another bt_ibkr journal (its refs parse as ours)."""
    if ref and ref_fields(ref) is not None:
        owner = ref_owner(ref) or "bt1"
        syms = report.other_journals.setdefault(owner, [])
        if symbol not in syms:
            syms.append(symbol)


def _conflict(ref: str, intent, side: str, quantity: float, symbol: str, what: str) -> str:
    return (f"!! CONFLICT {ref}: {what} at the gateway is {normalize_side(side)} "
            f"{float(quantity):g} {symbol}, but the journal's decision was {intent['side']} "
            f"{float(intent['quantity']):g} {intent['symbol']}: not adopted; check TWS (a manual "
            "order carrying this orderRef?), cancel or accept it there, then run again")


__all__ = ["PositionMismatch", "ReconcileReport", "fill_from_exec", "reconcile"]
