"""The journal's table rules, and the writes of one open transaction (:class:`JournalTx`).

Every journal write goes through these functions, on a connection inside a write transaction
(``db``), so the tables stay consistent however they are reached: a fill updates its intent's
filled quantity, average price and status; a status never moves back from terminal to
working; an adopted position is a start position that adds up with the fills; every change is
an ``events`` row. :class:`~bt_ibkr.live.journal.Journal` calls them in its own transactions,
the start-up reconciliation (:mod:`bt_ibkr.live.reconcile`) through :class:`JournalTx`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from bt_ibkr.ib.parsing import Fill, normalize_side
from bt_ibkr.live.intents import (
    FILLED,
    OPEN_STATUSES,
    PARTIAL,
    SENT,
    SUBMITTED,
    TERMINAL_STATUSES,
    iso,
)
from bt_ibkr.utc import utc_now as _now

__all__ = ["JournalTx", "add_event", "adopt_position", "position", "record_fill",
           "set_status", "start_position"]


def add_event(db: sqlite3.Connection, kind: str, order_ref: str | None,
              detail: Mapping[str, Any], run_id: str | None = None) -> None:
    """Append an ``events`` row (``detail`` stored as JSON)."""
    db.execute("INSERT INTO events (ts, run_id, kind, order_ref, detail) VALUES (?,?,?,?,?)",
               (iso(_now()), run_id, kind, order_ref, json.dumps(detail, default=str)))


def set_status(db: sqlite3.Connection, order_ref: str, row: Mapping[str, Any], new: str,
               filled: float | None, avg_price: float | None, perm_id: int | None,
               reason: str | None = None) -> bool:
    """Move the intent ``order_ref`` (its current ``row``: status, quantity, filled) to status
    ``new``; return True when something changed. A working order with ``0 < filled <
    quantity`` becomes ``partial``; a terminal status never moves back to a working one."""
    old = row["status"]
    qty = row["quantity"]
    filled_now = row["filled"] if filled is None else float(filled)
    if old in TERMINAL_STATUSES and new in OPEN_STATUSES:
        return False
    if new in (SUBMITTED, SENT) and 0 < filled_now < qty:
        new = PARTIAL
    if new == SUBMITTED and old == PARTIAL and filled_now > 0:
        new = PARTIAL
    changed = new != old or filled_now != row["filled"]
    if not changed and avg_price is None and perm_id is None:
        return False
    db.execute(
        "UPDATE intents SET status = ?, filled = ?, avg_price = COALESCE(?, avg_price),"
        " perm_id = COALESCE(?, perm_id), updated = ? WHERE order_ref = ?",
        (new, filled_now, avg_price, perm_id, iso(_now()), order_ref),
    )
    if new != old:
        detail = {"from": old, "to": new, "filled": filled_now}
        if reason:
            detail["reason"] = reason
        add_event(db, "status", order_ref, detail)
    return changed


def record_fill(db: sqlite3.Connection, fill: Fill, side: str) -> bool:
    """Record an execution once (``side``: normalized); return True when it is new. A
    duplicate that brings a commission fills in the stored row's commission; a new fill of a
    journaled order updates that intent's filled quantity, average price and status."""
    cur = db.execute(
        "INSERT OR IGNORE INTO fills (exec_id, order_ref, symbol, side, shares, price, time,"
        " commission, order_id, perm_id, recorded) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (fill.exec_id, fill.order_ref or None, fill.symbol, side, float(fill.shares),
         float(fill.price), iso(fill.time), fill.commission, fill.order_id, fill.perm_id,
         iso(_now())),
    )
    if cur.rowcount != 1:
        if fill.commission is not None:
            db.execute("UPDATE fills SET commission = ? WHERE exec_id = ?",
                       (fill.commission, fill.exec_id))
        return False
    add_event(db, "fill", fill.order_ref, {"exec_id": fill.exec_id, "side": side,
                                           "shares": fill.shares, "price": fill.price})
    if fill.order_ref:
        _refresh_filled(db, fill.order_ref)
    return True


def _refresh_filled(db: sqlite3.Connection, order_ref: str) -> None:
    row = db.execute("SELECT status, quantity, filled FROM intents WHERE order_ref = ?",
                     (order_ref,)).fetchone()
    if row is None:
        return
    agg = db.execute("SELECT SUM(shares), SUM(shares * price) FROM fills WHERE order_ref = ?",
                     (order_ref,)).fetchone()
    shares = agg[0] or 0.0
    avg = agg[1] / shares if shares else None
    if shares >= row["quantity"] - 1e-9:
        status = FILLED
    elif row["status"] in TERMINAL_STATUSES:
        status = row["status"]
    else:
        status = PARTIAL
    set_status(db, order_ref, row, status, shares, avg, None)


def position(db: sqlite3.Connection, symbol: str) -> float:
    """Return the journal's position in ``symbol``: start position + signed fills."""
    start = db.execute("SELECT quantity FROM start_positions WHERE symbol = ?",
                       (symbol,)).fetchone()
    net = db.execute(
        "SELECT COALESCE(SUM(CASE side WHEN 'BUY' THEN shares ELSE -shares END), 0)"
        " FROM fills WHERE symbol = ?", (symbol,)).fetchone()[0]
    return (start[0] if start else 0.0) + float(net)


def start_position(db: sqlite3.Connection, symbol: str) -> float | None:
    """Return the adopted start position of ``symbol`` (None: none adopted)."""
    row = db.execute("SELECT quantity FROM start_positions WHERE symbol = ?",
                     (symbol,)).fetchone()
    return None if row is None else float(row[0])


def adopt_position(db: sqlite3.Connection, symbol: str, qty: float, now: datetime) -> float:
    """Set the start position so that start + fills == qty; return the start position."""
    net = position(db, symbol) - (start_position(db, symbol) or 0.0)
    db.execute(
        "INSERT INTO start_positions (symbol, quantity, adopted) VALUES (?,?,?)"
        " ON CONFLICT(symbol) DO UPDATE SET quantity = excluded.quantity,"
        " adopted = excluded.adopted",
        (symbol, qty - net, iso(now)),
    )
    add_event(db, "adopt_position", None, {"symbol": symbol, "quantity": qty,
                                           "start": qty - net})
    return qty - net


class JournalTx:
    """The writes of one open journal transaction (:meth:`Journal.transaction`).

    The same rules keep the tables consistent for every journal write (see the module
    docstring); the reconciliation (:mod:`bt_ibkr.live.reconcile`) uses them inside its one
    transaction.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def execute(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Cursor:
        """Run one SQL statement in the transaction; return its cursor."""
        return self._db.execute(sql, tuple(args))

    def record_fill(self, fill: Fill) -> bool:
        """Record an execution once (see :meth:`Journal.record_fill`); True when new."""
        return record_fill(self._db, fill, normalize_side(fill.side))

    def set_status(self, order_ref: str, row: Mapping[str, Any], new: str,
                   filled: float | None, avg_price: float | None, perm_id: int | None,
                   reason: str | None = None) -> bool:
        """Move the intent ``order_ref`` (its current ``row``: status, quantity, filled) to
        status ``new``; return True when something changed."""
        return set_status(self._db, order_ref, row, new, filled, avg_price, perm_id, reason)

    def position(self, symbol: str) -> float:
        """Return the journal's position in ``symbol`` (start position + signed fills)."""
        return position(self._db, symbol)

    def adopt_position(self, symbol: str, qty: float, now: datetime) -> float:
        """Set the start position so that start + fills == ``qty``; return the start position."""
        return adopt_position(self._db, symbol, qty, now)

    def event(self, kind: str, order_ref: str | None, detail: Mapping[str, Any],
              run_id: str | None = None) -> None:
        """Append an event row."""
        add_event(self._db, kind, order_ref, dict(detail), run_id)
