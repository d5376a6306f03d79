"""SQLite order/fill journal: every order intent is written before it is sent, never sent twice.

The rule that makes restarts safe: an order's identity is its deterministic ``orderRef``
(:func:`bt_ibkr.ib.order_refs.make_order_ref`), written and committed to the journal
(:meth:`Journal.record_intent`) *before* the order goes to the gateway. IB echoes ``orderRef`` back in ``openOrder``,
``execDetails`` and ``completedOrder``, so after a crash or a gateway restart
:meth:`Journal.reconcile` can match what the journal meant to do against what the gateway did:

* intent journaled, never marked sent, but the gateway has it  -> **adopted** (ids recorded);
* intent journaled, nothing at the gateway, still fresh        -> **resend** with the SAME
  orderRef (so a second crash still cannot duplicate it);
* the same, but older than ``max_intent_age``                  -> **expired** (not sent);
* executions the journal has not seen                          -> recorded (**missed fills**);
* sent intents with no trace at the gateway and no fills       -> **lost** (reported loudly);
* journal positions (adopted start positions + fills) vs the gateway's -> **mismatches**.

One file, WAL mode, ``synchronous=FULL``: a committed row survives a process kill or power loss,
and several processes/threads may open the same file (writers wait for each other).

Times are stored as UTC ISO-8601 strings; naive datetimes are taken to be UTC.

About 1,000 lines in one module on purpose: :meth:`Journal.reconcile` works inside one SQLite
transaction with the same private helpers (``_tx``, ``_record_fill``, ``_set_status``,
``_adopt_position``) that keep the tables consistent for every other write; a separate module
would have to reach into them. The IB client objects are parsed elsewhere
(:mod:`bt_ibkr.ib.parsing`), the orderRef is built elsewhere (:mod:`bt_ibkr.ib.order_refs`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from bt_ibkr.errors import BtIbkrError
from bt_ibkr.ib.order_refs import MAX_REF_LEN, REF_PREFIX
from bt_ibkr.ib.order_refs import ref_time as _ref_time
from bt_ibkr.ib.parsing import ExecSnapshot, Fill, OrderSnapshot, normalize_side
from bt_ibkr.utc import to_utc as _utc
from bt_ibkr.utc import utc_now as _now

# intent statuses (journal's own vocabulary; IB's statuses map onto it via normalize_status)
INTENT = "intent"          # journaled, not (known to be) sent
SENT = "sent"              # placeOrder called
SUBMITTED = "submitted"    # acknowledged by the gateway, working
PARTIAL = "partial"        # working, partly filled
FILLED = "filled"
CANCELLED = "cancelled"
INACTIVE = "inactive"      # IB "Inactive": rejected or held by the gateway
REJECTED = "rejected"      # the gateway refused it with an error (e.g. 201); reason in the event
EXPIRED = "expired"        # journaled, never sent, too old to send after a restart
LOST = "lost"              # marked sent, but the gateway has no trace and there are no fills
OPEN_STATUSES = (INTENT, SENT, SUBMITTED, PARTIAL)
TERMINAL_STATUSES = (FILLED, CANCELLED, INACTIVE, REJECTED, EXPIRED, LOST)
STATUSES = OPEN_STATUSES + TERMINAL_STATUSES

_IB_STATUS = {
    "pendingsubmit": SUBMITTED,
    "apipending": SUBMITTED,
    "presubmitted": SUBMITTED,
    "submitted": SUBMITTED,
    "pendingcancel": SUBMITTED,
    "filled": FILLED,
    "cancelled": CANCELLED,
    "apicancelled": CANCELLED,
    "inactive": INACTIVE,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    order_ref     TEXT PRIMARY KEY,
    run_id        TEXT,
    strategy      TEXT NOT NULL,
    symbol        TEXT NOT NULL,
    side          TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity      REAL NOT NULL CHECK (quantity > 0),
    order_type    TEXT NOT NULL,
    limit_price   REAL,
    stop_price    REAL,
    tif           TEXT,
    account       TEXT,
    decision_time TEXT NOT NULL,
    created       TEXT NOT NULL,
    status        TEXT NOT NULL,
    order_id      INTEGER,
    perm_id       INTEGER,
    filled        REAL NOT NULL DEFAULT 0,
    avg_price     REAL,
    sent_at       TEXT,
    updated       TEXT NOT NULL,
    note          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS intents_status ON intents (status);
CREATE TABLE IF NOT EXISTS fills (
    exec_id    TEXT PRIMARY KEY,
    order_ref  TEXT,
    symbol     TEXT NOT NULL,
    side       TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
    shares     REAL NOT NULL CHECK (shares > 0),
    price      REAL NOT NULL,
    time       TEXT NOT NULL,
    commission REAL,
    order_id   INTEGER,
    perm_id    INTEGER,
    recorded   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_ref ON fills (order_ref);
CREATE INDEX IF NOT EXISTS fills_symbol ON fills (symbol);
CREATE TABLE IF NOT EXISTS start_positions (
    symbol   TEXT PRIMARY KEY,
    quantity REAL NOT NULL,
    adopted  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id  TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    ended   TEXT,
    mode    TEXT,
    account TEXT,
    pid     INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        TEXT NOT NULL,
    run_id    TEXT,
    kind      TEXT NOT NULL,
    order_ref TEXT,
    detail    TEXT NOT NULL DEFAULT '{}'
);
"""
SCHEMA_VERSION = "1"


class JournalError(BtIbkrError):
    """The journal file is unusable (corrupt, newer schema) or a call broke its rules."""


# --------------------------------------------------------------------------------------------
# helpers


def _iso(ts: datetime | None) -> str | None:
    return None if ts is None else _utc(ts).isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def normalize_status(status: str) -> str:
    """Return the journal status for an IB order status (``Submitted`` -> ``submitted``...).

    Journal statuses pass through unchanged. Raises ValueError on anything else.
    """
    s = str(status).strip()
    if s in STATUSES:
        return s
    mapped = _IB_STATUS.get(s.lower())
    if mapped is None:
        raise ValueError(f"order status {status!r}: not an IB status nor one of {', '.join(STATUSES)}")
    return mapped


# --------------------------------------------------------------------------------------------
# data


@dataclass
class Intent:
    """One order the strategy decided to send (what goes into the journal before sending)."""

    order_ref: str
    strategy: str
    symbol: str
    side: str
    quantity: float
    decision_time: datetime | date
    order_type: str = "MKT"
    limit_price: float | None = None
    stop_price: float | None = None
    tif: str = "DAY"
    account: str | None = None
    run_id: str | None = None
    created: datetime | None = None
    note: str = ""


@dataclass
class IntentRecord(Intent):
    """An intent as stored, with its lifecycle: status, ids, filled quantity."""

    status: str = INTENT
    order_id: int | None = None
    perm_id: int | None = None
    filled: float = 0.0
    avg_price: float | None = None
    sent_at: datetime | None = None
    updated: datetime | None = None

    @property
    def remaining(self) -> float:
        """Shares still to fill."""
        return max(self.quantity - self.filled, 0.0)


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
class RunInfo:
    """One row of the ``runs`` table."""

    run_id: str
    started: datetime
    ended: datetime | None
    mode: str | None
    account: str | None
    pid: int | None


@dataclass
class ReconcileReport:
    """What :meth:`Journal.reconcile` found and did. ``ok`` is False when a human should look."""

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

    @property
    def ok(self) -> bool:
        """True when nothing needs a human: no lost orders, no position mismatch, no order
        carrying this package's orderRef prefix that the journal did not know (recovered)."""
        ours = [o for o in self.unknown_orders if o.order_ref.startswith(REF_PREFIX + ":")]
        return not (self.lost or self.position_mismatches or ours or self.recovered)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data (for the audit log and ``--json``)."""
        data = asdict(self)
        data["resend"] = [r.order_ref for r in self.resend]
        data["recovered"] = [r.order_ref for r in self.recovered]
        data["ok"] = self.ok
        return json.loads(json.dumps(data, default=str))

    def summary(self) -> str:
        """Return a few human-readable lines; problems first, prefixed with ``!!``."""
        lines: list[str] = []
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
        for o in self.unknown_orders:
            flag = "!! " if o.order_ref.startswith(REF_PREFIX + ":") else ""
            lines.append(f"{flag}order at the gateway not in the journal: {o.order_ref or '(no ref)'}"
                         f" {o.side} {o.quantity:g} {o.symbol} {o.status}")
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
        if self.foreign_fills:
            lines.append(f"recorded {len(self.foreign_fills)} fill(s) of orders not in the journal")
        if self.adopted_positions:
            lines.append("adopted start positions: " + ", ".join(
                f"{s} {q:g}" for s, q in sorted(self.adopted_positions.items())))
        if self.updated:
            lines.append(f"updated {len(self.updated)} order status(es) from the gateway")
        return "\n".join(lines) if lines else "journal and gateway agree"


# --------------------------------------------------------------------------------------------
# from the gateway's executions


def fill_from_exec(snap: ExecSnapshot) -> Fill:
    """Return the journal :class:`Fill` of an :class:`ExecSnapshot` (for :meth:`Journal.record_fill`)."""
    return Fill(snap.exec_id, snap.order_ref or None, snap.symbol, normalize_side(snap.side),
                float(snap.shares), float(snap.price), snap.time, snap.commission, snap.order_id,
                snap.perm_id)


# --------------------------------------------------------------------------------------------
# the journal


class Journal:
    """The order/fill journal in one SQLite file (created with its folder if missing).

    Thread-safe (one connection guarded by a lock); several ``Journal`` objects or processes may
    share a file. Use as a context manager or call :meth:`close`.

    Raises:
        JournalError: the file is not a journal (corrupt, not SQLite, newer schema).
    """

    def __init__(self, path: Path | str, *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        conn = None
        try:
            self._db = conn = sqlite3.connect(
                str(self.path), timeout=busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
            with self._lock:
                # CREATE ... IF NOT EXISTS is idempotent; executescript runs outside _tx because
                # it commits any open transaction itself
                self._db.executescript(_SCHEMA)
            with self._tx() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,))
                elif row[0] != SCHEMA_VERSION:
                    raise JournalError(
                        f"journal {self.path}: schema version {row[0]} is not {SCHEMA_VERSION}; "
                        "it was written by another version of bt_ibkr"
                    )
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            storage = _storage_error(self.path, exc)
            if storage is not None:
                raise storage from None
            raise JournalError(
                f"journal {self.path}: cannot open ({exc}); move the file aside and restart "
                "(the runner will adopt the gateway's positions and orders)"
            ) from None

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so concurrent writers queue."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                else:
                    self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                storage = _storage_error(self.path, exc)
                if storage is None:
                    raise
                raise storage from None

    def _query(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def integrity_check(self) -> str:
        """Return SQLite's ``PRAGMA integrity_check`` answer ("ok" for a healthy file)."""
        return str(self._query("PRAGMA integrity_check")[0][0])

    # -- intents ------------------------------------------------------------------------------

    def record_intent(self, intent: Intent) -> bool:
        """Journal an order intent; committed (fsync'd) when this returns.

        Call it BEFORE sending the order. Returns True when the intent is new: send it. Returns
        False when an intent with that orderRef already exists (idempotent: the earlier row is
        kept untouched): do not send, unless :meth:`reconcile` listed it under ``resend``
        (status still ``intent``, nothing at the gateway). Number the orders of one decision
        deterministically (``seq`` = their order in the decision), never from the journal's
        contents, or a re-run decision would get a fresh orderRef.

        Raises:
            ValueError: bad side, quantity <= 0, empty orderRef or one longer than 40 chars.
        """
        if not intent.order_ref or len(intent.order_ref) > MAX_REF_LEN:
            raise ValueError(f"orderRef {intent.order_ref!r}: must be 1..{MAX_REF_LEN} characters")
        side = normalize_side(intent.side)
        if not intent.quantity or intent.quantity <= 0:
            raise ValueError(f"intent {intent.order_ref}: quantity must be > 0, got {intent.quantity}")
        now = _iso(_now())
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO intents (order_ref, run_id, strategy, symbol, side, quantity,"
                " order_type, limit_price, stop_price, tif, account, decision_time, created, status,"
                " updated, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (intent.order_ref, intent.run_id, intent.strategy, intent.symbol, side,
                 float(intent.quantity), intent.order_type, intent.limit_price, intent.stop_price,
                 intent.tif, intent.account, _iso(intent.decision_time),
                 _iso(intent.created) or now, INTENT, now, intent.note),
            )
            new = cur.rowcount == 1
            if new:
                self._event(db, "intent", intent.order_ref, {"side": side, "quantity": intent.quantity,
                                                             "symbol": intent.symbol})
        return new

    def mark_sent(self, order_ref: str, order_id: int | None, perm_id: int | None = None) -> None:
        """Record that the order was handed to the gateway (call right after ``placeOrder``).

        Raises:
            KeyError: no intent with that orderRef.
        """
        now = _iso(_now())
        with self._tx() as db:
            cur = db.execute(
                "UPDATE intents SET order_id = ?, perm_id = COALESCE(?, perm_id), sent_at = ?,"
                " updated = ?, status = CASE WHEN status = ? THEN ? ELSE status END"
                " WHERE order_ref = ?",
                (order_id, perm_id, now, now, INTENT, SENT, order_ref),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no journaled intent {order_ref!r}: record_intent() comes first")
            self._event(db, "sent", order_ref, {"order_id": order_id, "perm_id": perm_id})

    def update_status(
        self, order_ref: str, status: str, filled: float | None = None,
        avg_price: float | None = None, perm_id: int | None = None, reason: str | None = None,
    ) -> None:
        """Record the order's status (IB's ``Submitted``/``Filled``/... or a journal status);
        ``reason`` (IB's text of a rejection) goes into the status event.

        A working order with ``0 < filled < quantity`` becomes ``partial``. A terminal status is
        never moved back to a working one (late, out-of-order status events are ignored).

        Raises:
            KeyError: no intent with that orderRef. ValueError: unknown status.
        """
        new = normalize_status(status)
        with self._tx() as db:
            row = db.execute("SELECT status, quantity, filled FROM intents WHERE order_ref = ?",
                             (order_ref,)).fetchone()
            if row is None:
                raise KeyError(f"no journaled intent {order_ref!r}")
            self._set_status(db, order_ref, row, new, filled, avg_price, perm_id, reason)

    def _set_status(self, db, order_ref, row, new, filled, avg_price, perm_id,
                    reason: str | None = None) -> bool:
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
            (new, filled_now, avg_price, perm_id, _iso(_now()), order_ref),
        )
        if new != old:
            detail = {"from": old, "to": new, "filled": filled_now}
            if reason:
                detail["reason"] = reason
            self._event(db, "status", order_ref, detail)
        return changed

    def get(self, order_ref: str) -> IntentRecord | None:
        """Return the journaled intent with that orderRef, or None."""
        rows = self._query("SELECT * FROM intents WHERE order_ref = ?", (order_ref,))
        return _intent(rows[0]) if rows else None

    def intents(self, status: str | Iterable[str] | None = None,
                symbol: str | None = None) -> list[IntentRecord]:
        """Return intents (oldest first), optionally only those with the given status(es)/symbol."""
        sql, args = "SELECT * FROM intents WHERE 1=1", []
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            sql += f" AND status IN ({','.join('?' * len(wanted))})"
            args += wanted
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        return [_intent(r) for r in self._query(sql + " ORDER BY created, order_ref", args)]

    def open_intents(self) -> list[IntentRecord]:
        """Return intents not yet finished: journaled-not-sent, sent, working, partly filled."""
        return self.intents(OPEN_STATUSES)

    # -- fills --------------------------------------------------------------------------------

    def record_fill(self, fill: Fill) -> bool:
        """Record an execution once; return True when it is new, False for a duplicate execId.

        A duplicate that brings a commission (IB's ``commissionReport`` comes after
        ``execDetails``) fills in the stored row's commission. A new fill of a journaled order
        also updates that intent's filled quantity and average price (and its status to
        ``partial`` / ``filled``).

        Raises:
            ValueError: bad side or shares <= 0.
        """
        side = normalize_side(fill.side)
        if not fill.shares or fill.shares <= 0:
            raise ValueError(f"fill {fill.exec_id}: shares must be > 0, got {fill.shares}")
        with self._tx() as db:
            return self._record_fill(db, fill, side)

    def _record_fill(self, db: sqlite3.Connection, fill: Fill, side: str) -> bool:
        cur = db.execute(
            "INSERT OR IGNORE INTO fills (exec_id, order_ref, symbol, side, shares, price, time,"
            " commission, order_id, perm_id, recorded) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (fill.exec_id, fill.order_ref or None, fill.symbol, side, float(fill.shares),
             float(fill.price), _iso(fill.time), fill.commission, fill.order_id, fill.perm_id,
             _iso(_now())),
        )
        if cur.rowcount != 1:
            if fill.commission is not None:
                db.execute("UPDATE fills SET commission = ? WHERE exec_id = ?",
                           (fill.commission, fill.exec_id))
            return False
        self._event(db, "fill", fill.order_ref, {"exec_id": fill.exec_id, "side": side,
                                                  "shares": fill.shares, "price": fill.price})
        if fill.order_ref:
            self._refresh_filled(db, fill.order_ref)
        return True

    def _refresh_filled(self, db: sqlite3.Connection, order_ref: str) -> None:
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
        self._set_status(db, order_ref, row, status, shares, avg, None)

    def fills(self, symbol: str | None = None, order_ref: str | None = None) -> list[Fill]:
        """Return recorded fills in execution-time order, optionally for one symbol/orderRef."""
        sql, args = "SELECT * FROM fills WHERE 1=1", []
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        if order_ref is not None:
            sql += " AND order_ref = ?"
            args.append(order_ref)
        return [_fill(r) for r in self._query(sql + " ORDER BY time, exec_id", args)]

    def position_from_fills(self, symbol: str) -> float:
        """Return the journal's position in ``symbol``: adopted start position + signed fills."""
        with self._lock:
            return self._position(self._db, symbol)

    @staticmethod
    def _position(db: sqlite3.Connection, symbol: str) -> float:
        start = db.execute("SELECT quantity FROM start_positions WHERE symbol = ?",
                           (symbol,)).fetchone()
        net = db.execute(
            "SELECT COALESCE(SUM(CASE side WHEN 'BUY' THEN shares ELSE -shares END), 0)"
            " FROM fills WHERE symbol = ?", (symbol,)).fetchone()[0]
        return (start[0] if start else 0.0) + float(net)

    def positions(self) -> dict[str, float]:
        """Return the journal's non-zero positions by symbol."""
        with self._lock:
            syms = [r[0] for r in self._db.execute(
                "SELECT symbol FROM start_positions UNION SELECT symbol FROM fills")]
            out = {s: self._position(self._db, s) for s in syms}
        return {s: q for s, q in sorted(out.items()) if abs(q) > 1e-9}

    def last_exec_time(self) -> datetime | None:
        """Return the time of the latest recorded fill (for ``ExecutionFilter.time``), or None."""
        rows = self._query("SELECT MAX(time) FROM fills")
        return _parse(rows[0][0]) if rows and rows[0][0] else None

    def accept_positions(self, positions: Mapping[str, float], now: datetime | None = None) -> None:
        """Make the journal agree with the given (gateway) positions from now on.

        Sets each symbol's start position so that start + fills == the given quantity; used on
        first contact and when a human accepts a reported mismatch (e.g. after a manual trade).
        """
        with self._tx() as db:
            for symbol, qty in positions.items():
                self._adopt_position(db, symbol, float(qty), now or _now())

    def _adopt_position(self, db: sqlite3.Connection, symbol: str, qty: float,
                        now: datetime) -> float:
        """Set the start position so that start + fills == qty; return the start position."""
        net = self._position(db, symbol) - (self._start(db, symbol) or 0.0)
        db.execute(
            "INSERT INTO start_positions (symbol, quantity, adopted) VALUES (?,?,?)"
            " ON CONFLICT(symbol) DO UPDATE SET quantity = excluded.quantity,"
            " adopted = excluded.adopted",
            (symbol, qty - net, _iso(now)),
        )
        self._event(db, "adopt_position", None, {"symbol": symbol, "quantity": qty,
                                                   "start": qty - net})
        return qty - net

    @staticmethod
    def _start(db: sqlite3.Connection, symbol: str) -> float | None:
        row = db.execute("SELECT quantity FROM start_positions WHERE symbol = ?",
                         (symbol,)).fetchone()
        return None if row is None else float(row[0])

    # -- runs and events ----------------------------------------------------------------------

    def start_run(self, mode: str, account: str | None, now: datetime | None = None) -> str:
        """Record the start of a run; return its run_id (``YYYYmmddTHHMMSSZ-<8 hex>``)."""
        now = _utc(now or _now())
        run_id = now.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
        with self._tx() as db:
            db.execute("INSERT INTO runs (run_id, started, mode, account, pid) VALUES (?,?,?,?,?)",
                       (run_id, _iso(now), mode, account, os.getpid()))
            self._event(db, "run_start", None, {"mode": mode, "account": account}, run_id)
        return run_id

    def end_run(self, run_id: str, now: datetime | None = None) -> None:
        """Record the end of a run (a run without an end crashed or was killed)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET ended = ? WHERE run_id = ?", (_iso(now or _now()), run_id))
            self._event(db, "run_end", None, {}, run_id)

    def runs(self) -> list[RunInfo]:
        """Return every run, oldest first."""
        return [RunInfo(r["run_id"], _parse(r["started"]), _parse(r["ended"]), r["mode"],
                        r["account"], r["pid"])
                for r in self._query("SELECT * FROM runs ORDER BY started, run_id")]

    def last_run(self) -> RunInfo | None:
        """Return the most recent run, or None."""
        runs = self.runs()
        return runs[-1] if runs else None

    def log_event(self, kind: str, detail: Mapping[str, Any] | None = None,
                  order_ref: str | None = None, run_id: str | None = None) -> None:
        """Append a free-form event (connection lost, halt, reconcile summary ...)."""
        with self._tx() as db:
            self._event(db, kind, order_ref, dict(detail or {}), run_id)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return events (oldest first) as dicts with ts, run_id, kind, order_ref, detail."""
        sql, args = "SELECT * FROM events", []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        return [{"ts": _parse(r["ts"]), "run_id": r["run_id"], "kind": r["kind"],
                 "order_ref": r["order_ref"], "detail": json.loads(r["detail"])}
                for r in self._query(sql + " ORDER BY id", args)]

    @staticmethod
    def _event(db, kind, order_ref, detail, run_id=None) -> None:
        db.execute("INSERT INTO events (ts, run_id, kind, order_ref, detail) VALUES (?,?,?,?,?)",
                   (_iso(_now()), run_id, kind, order_ref, json.dumps(detail, default=str)))

    # -- account binding and the daily-loss halt -----------------------------------------------

    def bind_account(self, account: str) -> None:
        """Bind the journal to ``account`` on first use (stored in its ``meta`` table); returns
        None. A journal holds one account's orders: positions, fills and orderRefs of another
        account would be wrongly matched, and its working orders marked lost.

        Raises:
            JournalError: the journal already belongs to another account (names both).
        """
        if not account:
            raise ValueError("bind_account: account must be a non-empty account id")
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'account'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('account', ?)", (account,))
                self._event(db, "bound", None, {"account": account})
            elif row[0] != account:
                raise JournalError(
                    f"journal {self.path} belongs to account {row[0]}, not {account}: give this "
                    f"account its own journal (--journal / paths.journal), e.g. "
                    f"state/{account}.sqlite")

    @property
    def account(self) -> str | None:
        """The account this journal is bound to (:meth:`bind_account`), or None."""
        row = self._query("SELECT value FROM meta WHERE key = 'account'")
        return row[0][0] if row else None

    def record_halt(self, day: date, account: str, reason: str,
                    run_id: str | None = None) -> None:
        """Record that the daily-loss halt was hit on trading day ``day`` for ``account``; it
        holds for every later run of that day until :meth:`lift_halt`."""
        self.log_event("halt", {"day": str(day), "account": account, "reason": reason},
                       run_id=run_id)

    def lift_halt(self, day: date, account: str, run_id: str | None = None) -> bool:
        """Lift the halt of ``day`` for ``account`` (the operator's explicit decision); return
        True when there was one in force."""
        in_force = self.halt_in_force(day, account) is not None
        if in_force:
            self.log_event("halt_lifted", {"day": str(day), "account": account}, run_id=run_id)
        return in_force

    def halt_in_force(self, day: date, account: str) -> str | None:
        """Return the reason of the daily-loss halt recorded for ``day`` and ``account`` and
        not lifted since, else None."""
        reason = None
        for ev in self._query("SELECT kind, detail FROM events WHERE kind IN"
                              " ('halt', 'halt_lifted') ORDER BY id"):
            d = json.loads(ev["detail"])
            if d.get("day") != str(day) or d.get("account") != account:
                continue
            reason = d.get("reason", "daily-loss halt") if ev["kind"] == "halt" else None
        return reason

    def pending_shares(self, symbol: str) -> float:
        """Return the signed shares of ``symbol`` still to fill in open intents (journaled and
        not yet acknowledged, sent, or working): + for buys, - for sells."""
        rows = self._query(
            f"SELECT side, quantity, filled FROM intents WHERE symbol = ? AND status IN"
            f" ({','.join('?' * len(OPEN_STATUSES))})", (symbol, *OPEN_STATUSES))
        return sum((1.0 if r["side"] == "BUY" else -1.0) * max(r["quantity"] - r["filled"], 0.0)
                   for r in rows)

    # -- reconcile ----------------------------------------------------------------------------

    def reconcile(
        self,
        gateway_orders: Iterable[OrderSnapshot],
        gateway_executions: Iterable[ExecSnapshot],
        gateway_positions: Mapping[str, float],
        now: datetime,
        max_intent_age: timedelta,
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
        with self._tx() as db:
            known_refs = {r[0] for r in db.execute("SELECT order_ref FROM intents")}
            known_syms = {r[0] for r in db.execute(
                "SELECT symbol FROM start_positions UNION SELECT symbol FROM fills")}
            # what was open before this reconcile (recording fills below may finish some)
            rows = db.execute(
                f"SELECT * FROM intents WHERE status IN ({','.join('?' * len(OPEN_STATUSES))})"
                " ORDER BY created, order_ref", OPEN_STATUSES).fetchall()
            # 1. executions -> fills (dedupe by execId)
            for e in gateway_executions:
                fill = fill_from_exec(e)
                if self._record_fill(db, fill, fill.side):
                    (report.missed_fills if fill.order_ref in known_refs
                     else report.foreign_fills).append(fill)
            # 2. open intents vs gateway orders and executions
            for row in rows:
                ref = row["order_ref"]
                was_unsent = row["status"] == INTENT
                snap = by_ref.get(ref)
                cur = db.execute("SELECT status, quantity, filled FROM intents WHERE order_ref = ?",
                                 (ref,)).fetchone()
                fills = float(db.execute(
                    "SELECT COALESCE(SUM(shares), 0) FROM fills WHERE order_ref = ?",
                    (ref,)).fetchone()[0])
                if snap is None and fills <= 0:
                    if not was_unsent:
                        self._set_status(db, ref, cur, LOST, None, None, None)
                        report.lost.append(ref)
                    elif now - (_parse(row["created"]) or now) > max_intent_age:
                        self._set_status(db, ref, cur, EXPIRED, None, None, None)
                        report.expired.append(ref)
                    else:
                        report.resend.append(_intent(row))
                    continue
                if was_unsent:
                    # sent before the crash but never marked: adopt the gateway's ids
                    # (completed orders carry no orderId; the executions do)
                    exec_ids = db.execute(
                        "SELECT MAX(order_id), MAX(perm_id) FROM fills WHERE order_ref = ?",
                        (ref,)).fetchone()
                    db.execute(
                        "UPDATE intents SET order_id = COALESCE(?, order_id),"
                        " perm_id = COALESCE(?, perm_id), sent_at = ?, updated = ?,"
                        " status = CASE WHEN status = ? THEN ? ELSE status END"
                        " WHERE order_ref = ?",
                        (snap.order_id if snap and snap.order_id else exec_ids[0],
                         snap.perm_id if snap and snap.perm_id else exec_ids[1],
                         _iso(now), _iso(now), INTENT, SENT, ref))
                    self._event(db, "adopted", ref, {
                        "order_id": snap.order_id if snap else None,
                        "status": snap.status if snap else "from executions"})
                    report.adopted.append(ref)
                    cur = db.execute("SELECT status, quantity, filled FROM intents"
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
                changed = self._set_status(db, ref, cur, status, filled, avg, perm)
                if (changed or cur["status"] != row["status"]) and not was_unsent:
                    report.updated.append(ref)
            # 3. gateway orders the journal does not know. Ours (this package's orderRef prefix)
            # are adopted first, whatever their state: the journal was lost or replaced, and the
            # same decision made again must find its orderRef here and never be sent twice.
            report.recovered = self._recover(db, by_ref, gateway_executions, known_refs, now)
            recovered = {r.order_ref for r in report.recovered}
            for o in orders:
                if o.order_ref in recovered:
                    continue
                if not o.order_ref or o.order_ref not in known_refs:
                    try:
                        working = normalize_status(o.status) in OPEN_STATUSES
                    except ValueError:
                        working = True
                    if working:
                        report.unknown_orders.append(o)
            # 4. positions
            journal_syms = {r[0] for r in db.execute(
                "SELECT symbol FROM start_positions UNION SELECT symbol FROM fills")}
            for symbol in sorted(set(gateway_positions) | journal_syms):
                gw = float(gateway_positions.get(symbol, 0.0) or 0.0)
                if symbol not in known_syms:
                    # first contact with this symbol: take the gateway's position as the start
                    # (start = gateway - fills recorded above, so they add up to the gateway's)
                    if abs(gw) > 1e-9 or symbol in journal_syms:
                        start = self._adopt_position(db, symbol, gw, now)
                        if abs(start) > 1e-9:
                            report.adopted_positions[symbol] = start
                    continue
                mine = self._position(db, symbol)
                if abs(mine - gw) > 1e-6:
                    report.position_mismatches.append(PositionMismatch(symbol, mine, gw))
            self._event(db, "reconcile", None, {
                "adopted": report.adopted, "resend": [r.order_ref for r in report.resend],
                "expired": report.expired, "lost": report.lost,
                "missed_fills": [f.exec_id for f in report.missed_fills],
                "mismatches": [asdict(m) for m in report.position_mismatches]})
        return report


    def _recover(self, db: sqlite3.Connection, by_ref: Mapping[str, OrderSnapshot],
                 executions: list[ExecSnapshot], known_refs: set[str],
                 now: datetime) -> list[IntentRecord]:
        """Journal the gateway's orders and executions that carry this package's orderRef
        prefix but are not in the journal; return them as stored (status from the gateway,
        fills already recorded by execId)."""
        prefix = REF_PREFIX + ":"
        refs = {ref for ref in by_ref if ref.startswith(prefix)}
        refs |= {e.order_ref for e in executions if e.order_ref and e.order_ref.startswith(prefix)}
        out: list[IntentRecord] = []
        for ref in sorted(refs - known_refs):
            snap = by_ref.get(ref)
            execs = [e for e in executions if e.order_ref == ref]
            filled = float(db.execute(
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
            parts = ref.split(":")
            strategy = parts[1] if len(parts) > 1 and parts[1] else "?"
            decided = _ref_time(parts[3]) if len(parts) > 3 else None
            stamp = _iso(now)
            db.execute(
                "INSERT INTO intents (order_ref, strategy, symbol, side, quantity, order_type,"
                " decision_time, created, status, order_id, perm_id, filled, avg_price, sent_at,"
                " updated, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ref, strategy, symbol, side, qty, order_type, _iso(decided or now), stamp,
                 status, order_id, perm_id, filled, avg, stamp, stamp,
                 "recovered from the gateway: the journal did not know this order"))
            self._event(db, "recovered", ref, {"status": status, "filled": filled,
                                               "quantity": qty, "symbol": symbol})
            out.append(_intent(db.execute("SELECT * FROM intents WHERE order_ref = ?",
                                          (ref,)).fetchone()))
        return out


def _storage_error(path: Path, exc: sqlite3.Error) -> JournalError | None:
    """Return a JournalError that says what is wrong with the journal's storage (disk full,
    read-only, cannot open), or None when ``exc`` is about something else."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    where = path.resolve().parent if str(path) != ":memory:" else path
    if name.startswith("SQLITE_FULL") or "disk is full" in str(exc):
        return JournalError(f"journal {path}: the disk is full ({where}); free space there, then "
                            "run again (nothing was sent after the last journaled intent)")
    if name.startswith("SQLITE_READONLY") or "readonly" in str(exc):
        return JournalError(f"journal {path}: the file or its folder {where} is read-only; make "
                            "it writable or pass --journal on a writable disk")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_PERM")):
        return JournalError(f"journal {path}: cannot write it ({exc}); check the disk and the "
                            f"permissions of {where}")
    return None


def _intent(row: sqlite3.Row) -> IntentRecord:
    return IntentRecord(
        order_ref=row["order_ref"], strategy=row["strategy"], symbol=row["symbol"],
        side=row["side"], quantity=row["quantity"], decision_time=_parse(row["decision_time"]),
        order_type=row["order_type"], limit_price=row["limit_price"],
        stop_price=row["stop_price"], tif=row["tif"], account=row["account"],
        run_id=row["run_id"], created=_parse(row["created"]), note=row["note"],
        status=row["status"], order_id=row["order_id"], perm_id=row["perm_id"],
        filled=row["filled"], avg_price=row["avg_price"], sent_at=_parse(row["sent_at"]),
        updated=_parse(row["updated"]),
    )


def _fill(row: sqlite3.Row) -> Fill:
    return Fill(
        exec_id=row["exec_id"], order_ref=row["order_ref"], symbol=row["symbol"],
        side=row["side"], shares=row["shares"], price=row["price"], time=_parse(row["time"]),
        commission=row["commission"], order_id=row["order_id"], perm_id=row["perm_id"],
    )
