"""SQLite order/fill journal: every order intent is written before it is sent, never sent twice.

The rule that makes restarts safe: an order's identity is its deterministic ``orderRef``
(:func:`bt_ibkr.ib.order_refs.make_order_ref`), written and committed to the journal
(:meth:`Journal.record_intent`) *before* the order goes to the gateway. IB echoes ``orderRef``
back in ``openOrder``, ``execDetails`` and ``completedOrder``, so after a crash or a gateway
restart :func:`bt_ibkr.live.reconcile.reconcile` can match what the journal
meant to do against what the gateway did.

One file, WAL mode, ``synchronous=FULL``: a committed row survives a process kill or power loss,
and several processes/threads may open the same file (writers wait for each other).

The house: this module is the store (intents, fills, positions, runs, events, the account
binding and the daily-loss halt); :mod:`bt_ibkr.live.journal_schema` holds its tables,
:mod:`bt_ibkr.live.journal_tx` the table rules every write goes through (and
:class:`JournalTx`), :mod:`bt_ibkr.live.intents` the statuses and records it hands out;
:mod:`bt_ibkr.live.reconcile` the start-up reconciliation, which writes through
:meth:`Journal.transaction`. Times are stored as UTC ISO-8601 strings; naive datetimes
are taken to be UTC.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any

from bt_ibkr.ib.order_refs import MAX_REF_LEN
from bt_ibkr.ib.parsing import Fill, normalize_side
from bt_ibkr.live.intents import (  # noqa: F401 - re-exported: the journal's vocabulary
    CANCELLED,
    EXPIRED,
    FILLED,
    INACTIVE,
    INTENT,
    LOST,
    OPEN_STATUSES,
    PARTIAL,
    REJECTED,
    SENT,
    STATUSES,
    SUBMITTED,
    TERMINAL_STATUSES,
    Intent,
    IntentRecord,
    RunInfo,
    fill_from_row,
    intent_from_row,
    iso,
    normalize_status,
    parse_required_time,
    parse_time,
)
from bt_ibkr.live.journal_schema import SCHEMA, SCHEMA_VERSION
from bt_ibkr.live.journal_storage import (  # noqa: F401 - re-exported
    JournalError,
    journal_identity,
    storage_error,
)
from bt_ibkr.live.journal_tx import (
    JournalTx,
    add_event,
    adopt_position,
    position,
    record_fill,
    set_status,
)
from bt_ibkr.utc import to_utc as _utc
from bt_ibkr.utc import utc_now as _now

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
            from bt_ibkr.live.run_lock import check_single_name, journal_path

            # one name per journal: SQLite keeps the write-ahead log by name (run_lock)
            self.path = journal_path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_single_name(self.path)
        self._lock = threading.RLock()
        #: called with each write transaction's duration in seconds (the run's metrics)
        self.on_commit = None
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
                self._db.executescript(SCHEMA)
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
            storage = storage_error(self.path, exc)
            if storage is not None:
                raise storage from None
            raise JournalError(
                f"journal {self.path}: cannot open ({exc}); move the file aside and restart "
                "(the runner will adopt the gateway's positions and orders)"
            ) from None

    # -- plumbing ---------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with BEGIN IMMEDIATE so concurrent writers queue;
        ``on_commit`` (when set) gets the seconds it took, fsync included."""
        with self._lock:
            try:
                t0 = time.perf_counter()
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
                else:
                    self._db.execute("COMMIT")
                    if self.on_commit is not None:
                        self.on_commit(time.perf_counter() - t0)
            except sqlite3.OperationalError as exc:
                storage = storage_error(self.path, exc)
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
        now = iso(_now())
        with self._tx() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO intents (order_ref, run_id, strategy, symbol, side, quantity,"
                " order_type, limit_price, stop_price, tif, account, decision_time, created, status,"
                " updated, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (intent.order_ref, intent.run_id, intent.strategy, intent.symbol, side,
                 float(intent.quantity), intent.order_type, intent.limit_price, intent.stop_price,
                 intent.tif, intent.account, iso(intent.decision_time),
                 iso(intent.created) or now, INTENT, now, intent.note),
            )
            new = cur.rowcount == 1
            if new:
                add_event(db, "intent", intent.order_ref, {"side": side, "quantity": intent.quantity,
                                                             "symbol": intent.symbol})
        return new

    def mark_sent(self, order_ref: str, order_id: int | None, perm_id: int | None = None,
                  client_id: int | None = None) -> None:
        """Record that the order was handed to the gateway (call right after ``placeOrder``);
        ``client_id``, the API client that placed it, goes into the ``sent`` event.

        Raises:
            KeyError: no intent with that orderRef.
        """
        now = iso(_now())
        with self._tx() as db:
            cur = db.execute(
                "UPDATE intents SET order_id = ?, perm_id = COALESCE(?, perm_id), sent_at = ?,"
                " updated = ?, status = CASE WHEN status = ? THEN ? ELSE status END"
                " WHERE order_ref = ?",
                (order_id, perm_id, now, now, INTENT, SENT, order_ref),
            )
            if cur.rowcount != 1:
                raise KeyError(f"no journaled intent {order_ref!r}: record_intent() comes first")
            add_event(db, "sent", order_ref, {"order_id": order_id, "perm_id": perm_id,
                                                "client_id": client_id})

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
            set_status(db, order_ref, row, new, filled, avg_price, perm_id, reason)

    def get(self, order_ref: str) -> IntentRecord | None:
        """Return the journaled intent with that orderRef, or None."""
        rows = self._query("SELECT * FROM intents WHERE order_ref = ?", (order_ref,))
        return intent_from_row(rows[0]) if rows else None

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
        return [intent_from_row(r) for r in self._query(sql + " ORDER BY created, order_ref", args)]

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
            return record_fill(db, fill, side)

    def fills(self, symbol: str | None = None, order_ref: str | None = None) -> list[Fill]:
        """Return recorded fills in execution-time order, optionally for one symbol/orderRef."""
        sql, args = "SELECT * FROM fills WHERE 1=1", []
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        if order_ref is not None:
            sql += " AND order_ref = ?"
            args.append(order_ref)
        return [fill_from_row(r) for r in self._query(sql + " ORDER BY time, exec_id", args)]

    def position_from_fills(self, symbol: str) -> float:
        """Return the journal's position in ``symbol``: adopted start position + signed fills."""
        with self._lock:
            return position(self._db, symbol)

    def positions(self) -> dict[str, float]:
        """Return the journal's non-zero positions by symbol."""
        with self._lock:
            syms = [r[0] for r in self._db.execute(
                "SELECT symbol FROM start_positions UNION SELECT symbol FROM fills")]
            out = {s: position(self._db, s) for s in syms}
        return {s: q for s, q in sorted(out.items()) if abs(q) > 1e-9}

    def last_exec_time(self) -> datetime | None:
        """Return the time of the latest recorded fill (for ``ExecutionFilter.time``), or None."""
        rows = self._query("SELECT MAX(time) FROM fills")
        return parse_time(rows[0][0]) if rows and rows[0][0] else None

    def accept_positions(self, positions: Mapping[str, float], now: datetime | None = None) -> None:
        """Make the journal agree with the given (gateway) positions from now on.

        Sets each symbol's start position so that start + fills == the given quantity; used on
        first contact and when a human accepts a reported mismatch (e.g. after a manual trade).
        """
        with self._tx() as db:
            for symbol, qty in positions.items():
                adopt_position(db, symbol, float(qty), now or _now())

    # -- runs and events ----------------------------------------------------------------------

    def start_run(self, mode: str, account: str | None, now: datetime | None = None) -> str:
        """Record the start of a run; return its run_id (``YYYYmmddTHHMMSSZ-<8 hex>``)."""
        now = _utc(now or _now())
        run_id = now.strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
        with self._tx() as db:
            db.execute("INSERT INTO runs (run_id, started, mode, account, pid) VALUES (?,?,?,?,?)",
                       (run_id, iso(now), mode, account, os.getpid()))
            add_event(db, "run_start", None, {"mode": mode, "account": account}, run_id)
        return run_id

    def end_run(self, run_id: str, now: datetime | None = None) -> None:
        """Record the end of a run (a run without an end crashed or was killed)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET ended = ? WHERE run_id = ?", (iso(now or _now()), run_id))
            add_event(db, "run_end", None, {}, run_id)

    def runs(self) -> list[RunInfo]:
        """Return every run, oldest first."""
        return [RunInfo(r["run_id"], parse_required_time(r["started"]), parse_time(r["ended"]),
                        r["mode"], r["account"], r["pid"])
                for r in self._query("SELECT * FROM runs ORDER BY started, run_id")]

    def last_run(self) -> RunInfo | None:
        """Return the most recent run, or None."""
        runs = self.runs()
        return runs[-1] if runs else None

    def log_event(self, kind: str, detail: Mapping[str, Any] | None = None,
                  order_ref: str | None = None, run_id: str | None = None) -> None:
        """Append a free-form event (connection lost, halt, reconcile summary ...)."""
        with self._tx() as db:
            add_event(db, kind, order_ref, dict(detail or {}), run_id)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Return events (oldest first) as dicts with ts, run_id, kind, order_ref, detail."""
        sql, args = "SELECT * FROM events", []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        return [{"ts": parse_time(r["ts"]), "run_id": r["run_id"], "kind": r["kind"],
                 "order_ref": r["order_ref"], "detail": json.loads(r["detail"])}
                for r in self._query(sql + " ORDER BY id", args)]

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
                add_event(db, "bound", None, {"account": account})
            if db.execute("SELECT 1 FROM meta WHERE key = 'journal_id'").fetchone() is None \
                    and (row is None or row[0] == account):
                jid = journal_identity(account, self.path)
                db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?)", (jid,))
                add_event(db, "identity", None, {"journal_id": jid})
            elif row[0] != account:
                raise JournalError(
                    f"journal {self.path} belongs to account {row[0]}, not {account}: give this "
                    f"account its own journal: leave --journal (paths.journal) at its "
                    f"default, state/{{account}}/journal.sqlite, or give e.g. "
                    f"state/{account}/journal.sqlite")

    @property
    def journal_id(self) -> str | None:
        """The journal's identity, carried by every orderRef it makes (``bt2:<id>:...``):
        set when the journal is bound to its account (:func:`journal_identity`), None
        before."""
        row = self._query("SELECT value FROM meta WHERE key = 'journal_id'")
        return row[0][0] if row else None

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

    @contextmanager
    def transaction(self) -> Iterator[JournalTx]:
        """Open one write transaction (BEGIN IMMEDIATE: concurrent writers queue) and yield a
        :class:`JournalTx` for the writes inside it; committed when the block ends, rolled back
        when it raises.

        Raises:
            JournalError: the journal's storage failed (disk full, read-only).
        """
        with self._tx() as db:
            yield JournalTx(db)
