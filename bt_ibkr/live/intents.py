"""What the journal stores: intent statuses, the intent and run records, row conversions.

The journal's own vocabulary for an order's life (:data:`INTENT` ... :data:`LOST`, with IB's
statuses mapped onto it by :func:`normalize_status`) and the dataclasses that
:class:`~bt_ibkr.live.journal.Journal` and :mod:`bt_ibkr.live.reconcile` hand out. Times are
stored as UTC ISO-8601 strings (:func:`iso`, :func:`parse_time`); naive datetimes are UTC.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime

from bt_ibkr.ib.parsing import Fill
from bt_ibkr.utc import to_utc as _utc

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


# --------------------------------------------------------------------------------------------
# helpers


def iso(ts: datetime | date | None) -> str | None:
    """Return ``ts`` as a UTC ISO-8601 string (naive = UTC), None for None."""
    return None if ts is None else _utc(ts).isoformat()


def parse_time(text: str | None) -> datetime | None:
    """Return the datetime of a stored ISO-8601 string, None for None."""
    return None if text is None else datetime.fromisoformat(text)


def parse_required_time(text: str) -> datetime:
    """Return the datetime of a stored ISO-8601 string from a NOT NULL column."""
    return datetime.fromisoformat(text)


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
class RunInfo:
    """One row of the ``runs`` table."""

    run_id: str
    started: datetime
    ended: datetime | None
    mode: str | None
    account: str | None
    pid: int | None


# ------------------------------------------------------------------------------------------
# rows


def intent_from_row(row: sqlite3.Row) -> IntentRecord:
    """Return the IntentRecord of one ``intents`` row."""
    return IntentRecord(
        order_ref=row["order_ref"], strategy=row["strategy"], symbol=row["symbol"],
        side=row["side"], quantity=row["quantity"], decision_time=parse_required_time(row["decision_time"]),
        order_type=row["order_type"], limit_price=row["limit_price"],
        stop_price=row["stop_price"], tif=row["tif"], account=row["account"],
        run_id=row["run_id"], created=parse_time(row["created"]), note=row["note"],
        status=row["status"], order_id=row["order_id"], perm_id=row["perm_id"],
        filled=row["filled"], avg_price=row["avg_price"], sent_at=parse_time(row["sent_at"]),
        updated=parse_time(row["updated"]),
    )


def fill_from_row(row: sqlite3.Row) -> Fill:
    """Return the Fill of one ``fills`` row."""
    return Fill(
        exec_id=row["exec_id"], order_ref=row["order_ref"], symbol=row["symbol"],
        side=row["side"], shares=row["shares"], price=row["price"], time=parse_required_time(row["time"]),
        commission=row["commission"], order_id=row["order_id"], perm_id=row["perm_id"],
    )


__all__ = ["CANCELLED", "EXPIRED", "FILLED", "INACTIVE", "INTENT", "LOST", "OPEN_STATUSES",
           "PARTIAL", "REJECTED", "SENT", "STATUSES", "SUBMITTED", "TERMINAL_STATUSES", "Fill",
           "Intent", "IntentRecord", "RunInfo", "fill_from_row", "intent_from_row", "iso",
           "normalize_status", "parse_time"]
