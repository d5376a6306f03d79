"""The orderRef every order carries: one format, built here, deterministic from the decision.

``bt2:<owner>:<strategy tag>:<symbol>:<decision time>:<seq>``, e.g.
``bt2:K3QZT:RAE:SPY:20240105:1``, where ``owner`` is the identity of the journal the order
belongs to (:func:`bt_ibkr.live.journal.journal_identity`: the account and the journal file),
so no other journal or program can make the same ref and an order at the gateway is ours only
when it carries our owner (or is in our journal). An IBBroker without a journal makes the
older ``bt1:<strategy tag>:<symbol>:<decision time>:<seq>``. IB
echoes ``orderRef`` back in ``openOrder``, ``execDetails`` and ``completedOrder``, so the ref is
the key that ties an order to its journal entry (:mod:`bt_ibkr.live.journal`) across restarts:
the same decision made again yields the same ref and is recognised, never sent twice.
:class:`~bt_ibkr.ib.broker.IBBroker` stamps every order it makes (unless the user passed
``orderRef=``) with :meth:`OrderRefs.next`; the decision time is :func:`decision_time` of the
order's data feed.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from bt_ibkr.utc import to_utc, utc_now

__all__ = ["MAX_REF_LEN", "REF_PREFIX", "REF_PREFIX_OWNED", "OrderRefs", "decision_time",
           "make_order_ref", "ref_fields", "ref_owner", "ref_time"]

REF_PREFIX = "bt1"
"""Version tag of orderRefs made without an owner (an IBBroker without a journal)."""
REF_PREFIX_OWNED = "bt2"
"""Version tag of orderRefs that carry their journal's identity (``bt2:<owner>:...``)."""
MAX_REF_LEN = 40
"""The longest orderRef IB keeps."""


def strategy_tag(strategy: str) -> str:
    """Return the short tag of a strategy name (``RegimeAwareEnsemble`` -> ``RAE``)."""
    capitals = "".join(ch for ch in strategy if ch.isupper())
    if len(capitals) >= 2 and not strategy.isupper():
        tag = capitals
    else:
        tag = re.sub(r"[^A-Za-z0-9]", "", strategy)
    return (tag or "S")[:8]


def _when_text(decision_time: datetime | date) -> str:
    if not isinstance(decision_time, datetime):
        ts = datetime(decision_time.year, decision_time.month, decision_time.day)
    else:
        ts = to_utc(decision_time) if decision_time.tzinfo is not None else decision_time
    if (ts.hour, ts.minute, ts.second) == (0, 0, 0):
        return ts.strftime("%Y%m%d")
    if ts.second == 0:
        return ts.strftime("%Y%m%dT%H%M")
    return ts.strftime("%Y%m%dT%H%M%S")


def make_order_ref(strategy: str, symbol: str, decision_time: datetime | date, seq: int,
                   owner: str | None = None) -> str:
    """Return the deterministic orderRef of one order decision (at most 40 characters).

    The tag is the strategy's capitals (``RegimeAwareEnsemble`` -> ``RAE``), the time is the
    date when ``decision_time`` is a ``date`` or a midnight datetime, and ``YYYYMMDDTHHMM[SS]``
    otherwise (tz-aware times are converted to UTC first, microseconds dropped; pass the bar's
    session date for daily bars, since backtrader stamps them at the session end), ``seq``
    numbers the orders of one decision (1, 2, ...). Long symbols are shortened with a hash so
    the whole stays unique and <= 40 characters. The same inputs always give the same ref.
    ``owner`` (a journal's identity, letters and digits) makes a ``bt2:<owner>:...`` ref.

    Raises:
        ValueError: ``seq`` is negative, ``symbol`` or ``strategy`` is empty.
    """
    if not strategy or not str(strategy).strip():
        raise ValueError("make_order_ref: strategy must be a non-empty name")
    if not symbol or not str(symbol).strip():
        raise ValueError("make_order_ref: symbol must be a non-empty string")
    if int(seq) < 0:
        raise ValueError(f"make_order_ref: seq must be >= 0, got {seq}")
    when = _when_text(decision_time)
    tag = strategy_tag(str(strategy).strip())
    sym = re.sub(r"[^A-Za-z0-9.\-]", "", str(symbol).strip().upper()) or "X"
    head = REF_PREFIX
    if owner:
        if not re.fullmatch(r"[A-Za-z0-9]{1,12}", owner):
            raise ValueError(f"make_order_ref: owner {owner!r} must be 1-12 letters or digits")
        head = f"{REF_PREFIX_OWNED}:{owner}"
    fixed = f"{head}:{tag}::{when}:{int(seq)}"
    room = MAX_REF_LEN - len(fixed)
    if len(sym) > room:
        digest = hashlib.sha1(str(symbol).encode()).hexdigest()[:6]
        sym = sym[: max(room - 7, 1)] + "~" + digest
    ref = f"{head}:{tag}:{sym}:{when}:{int(seq)}"
    return ref[:MAX_REF_LEN]


def ref_owner(ref: str) -> str | None:
    """Return the owner (journal identity) a ``bt2:<owner>:...`` orderRef carries, else None."""
    parts = str(ref or "").split(":")
    return parts[1] if len(parts) >= 3 and parts[0] == REF_PREFIX_OWNED and parts[1] else None


def ref_fields(ref: str) -> tuple[str, str, str] | None:
    """Return (strategy tag, symbol, decision time text) of one of this package's orderRefs
    (bt1 or bt2), else None."""
    parts = str(ref or "").split(":")
    if parts and parts[0] == REF_PREFIX_OWNED:
        parts = [REF_PREFIX] + parts[2:]
    if len(parts) >= 5 and parts[0] == REF_PREFIX:
        return parts[1], parts[2], parts[3]
    return None


def ref_time(text: str) -> datetime | None:
    """Return the decision time written in an orderRef's time field (``YYYYMMDD[THHMM[SS]]``,
    UTC), or None when it is not one."""
    fmt = {8: "%Y%m%d", 13: "%Y%m%dT%H%M", 15: "%Y%m%dT%H%M%S"}.get(len(text))
    try:
        return datetime.strptime(text, fmt).replace(tzinfo=UTC) if fmt else None
    except ValueError:
        return None


def decision_time(data: Any) -> date | datetime:
    """Return the decision bar's time of a backtrader feed: the session date for daily and
    longer bars, the bar's naive-UTC close time (seconds) for intraday bars; now (UTC) before
    the feed's first bar."""
    import backtrader as bt

    if not len(data):
        return utc_now().replace(tzinfo=None, microsecond=0)
    if data._timeframe >= bt.TimeFrame.Days:
        return data.datetime.date(0)  # in the data's (exchange) time zone
    return bt.num2date(data.datetime[0]).replace(microsecond=0)  # naive UTC


class OrderRefs:
    """Numbers the orders of each decision: :meth:`next` returns the next orderRef (``owner``:
    the journal identity its refs carry; None: ``bt1`` refs)."""

    def __init__(self, owner: str | None = None) -> None:
        self._seq: Counter = Counter()
        self.owner = owner

    def next(self, strategy: str, symbol: str, when: datetime | date) -> str:
        """Return the orderRef of the next order ``strategy`` decides on ``symbol`` at ``when``
        (seq 1 for the first, 2 for the second ... of the same strategy tag, symbol and time)."""
        key = (strategy_tag(str(strategy).strip()), str(symbol).strip().upper(), _when_text(when))
        self._seq[key] += 1
        return make_order_ref(strategy, symbol, when, self._seq[key], owner=self.owner)
