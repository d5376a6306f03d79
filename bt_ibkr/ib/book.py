"""FillBook: which executions the position and cash a client has read already include.

IB tells of one fill in separate messages: ``execDetails`` (the fill, under its execId),
``commissionReport``, ``position`` (the contract's new position, absolute) and
``updateAccountValue`` (the new cash; on a real gateway sometimes minutes later). A broker that
adopts IB's position and cash at start and then adds the executions it is told about must know,
for every execution, whether the position and the cash it adopted include it already; otherwise
a fill that arrives around the start is lost or counted twice.

The book answers that from the order in which the client received the messages. It runs in the
store's loop thread (the one thread that reads the socket), so :meth:`FillBook.snapshot`, called
there, sees a consistent state between two messages:

* an execution received *live* is in the cash and position IB reported *after* it (a position
  report of its contract, a cash report), and in none reported before it;
* IB may also report the position first and the execution after it. A position change that the
  executions received so far do not explain is kept as the contract's *unexplained* change; an
  execution arriving later that it covers (same sign, not larger) is taken as already in the
  position (and in the cash when a cash report came after that position report). A snapshot
  with an unexplained change is not *settled*: :meth:`IBStore.account_snapshot` waits for the
  execution before using it (an unexplained change that stays is a trade this client is not
  told about, e.g. one made in TWS, and is adopted as it is);
* executions the client only knows from a request's answer (``reqExecutions`` at connect or at
  start-up recovery: fills made while no process was connected) are in the position and cash
  the gateway sent at connect.

From a disconnect (and before the first connect) until :meth:`FillBook.rebase`, which runs
once a (re)connect has synced, position reports are the new base: the positions the gateway
sends with the connect include everything done while away, and show no unexplained change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ib_async import IB, Fill, Trade

__all__ = ["CASH_TAGS", "AccountSnapshot", "FillBook"]

log = logging.getLogger("bt_ibkr.ib.book")

CASH_TAGS = ("TotalCashBalance", "CashBalance", "TotalCashValue", "AvailableFunds")
"""The account values that give the cash (:meth:`IBStore.get_acc_cash` reads the first found)."""

_EPS = 1e-9


@dataclass(frozen=True)
class AccountSnapshot:
    """The account as one moment of the client saw it (see the module docstring).

    ``positions``: ``{conId: (size, avgCost)}``; ``cash`` and ``value``: IB's TotalCashBalance
    and NetLiquidation; ``known``: every execId the client knew; ``not_in_position`` /
    ``not_in_cash``: the known ones the position / the cash do not include yet;
    ``unexplained``: ``{conId: shares}`` of position change IB reported without an execution.
    """

    positions: dict[int, tuple[float, float]]
    cash: float
    value: float
    known: frozenset[str] = frozenset()
    not_in_position: frozenset[str] = frozenset()
    not_in_cash: frozenset[str] = frozenset()
    unexplained: dict[int, float] = field(default_factory=dict)

    @property
    def settled(self) -> bool:
        """True when every reported position change is explained by a known execution."""
        return not self.unexplained

    def counted(self, exec_id: str) -> tuple[bool, bool]:
        """Return ``(in the position, in the cash)`` for execution ``exec_id``: both False for
        one the client did not know at the snapshot."""
        if exec_id not in self.known:
            return False, False
        return exec_id not in self.not_in_position, exec_id not in self.not_in_cash


class FillBook:
    """The order of executions, position reports and cash reports of ``account`` ("" = any)
    as the client received them (loop thread only, except :meth:`wait_change`)."""

    def __init__(self, account: str = "") -> None:
        self.account = account
        self._seq = 0
        self._size: dict[int, float] = {}  # conId -> last reported position
        self._unreported: dict[int, dict[str, float]] = {}  # conId -> {execId: signed shares}
        self._no_cash: set[str] = set()  # live executions no cash report has followed yet
        self._unexplained: dict[int, float] = {}
        self._unexplained_at: dict[int, int] = {}  # conId -> seq of the report that showed it
        self._cash_at = 0  # seq of the last cash report
        self._changed = threading.Condition()
        self._version = 0
        self._base = True  # until the connect has synced: reports set the base
        #: True while :meth:`settle` waits for a message (tests wait on it)
        self.waiting = False

    def attach(self, ib: IB) -> None:
        """Follow a client object's executions, positions and account values (a connection hook)."""
        ib.execDetailsEvent += self.on_exec
        ib.positionEvent += self.on_position
        ib.accountValueEvent += self.on_value
        ib.disconnectedEvent += self.on_disconnected

    # ------------------------------------------------------------------ client events (loop)
    def _mine(self, account: str) -> bool:
        return not self.account or not account or account == self.account

    def on_exec(self, trade: Trade, fill: Fill) -> None:
        """A live execution (``execDetailsEvent``: new, of an order the client knows)."""
        ex = fill.execution
        if not self._mine(getattr(ex, "acctNumber", "")):
            return
        self._seq += 1
        con_id = fill.contract.conId
        shares = float(ex.shares) if ex.side in ("BOT", "BUY") else -float(ex.shares)
        left = self._unexplained.get(con_id, 0.0)
        if left * shares > 0 and abs(left) >= abs(shares) - _EPS:
            # IB reported the position with this fill before the execution: already in it
            rest = left - shares
            if abs(rest) > _EPS:
                self._unexplained[con_id] = rest
            else:
                self._unexplained.pop(con_id, None)
            if self._cash_at < self._unexplained_at.get(con_id, 0):
                self._no_cash.add(ex.execId)
        else:
            self._unreported.setdefault(con_id, {})[ex.execId] = shares
            self._no_cash.add(ex.execId)
        self._bump()

    def on_position(self, pos: Any) -> None:
        """A position report (``positionEvent``): it includes every execution received before."""
        if not self._mine(getattr(pos, "account", "")):
            return
        self._seq += 1
        con_id = pos.contract.conId
        pending = self._unreported.pop(con_id, {})
        expected = self._size.get(con_id, 0.0) + sum(pending.values())
        self._size[con_id] = float(pos.position)
        change = float(pos.position) - expected
        if abs(change) > _EPS and not self._base:
            total = self._unexplained.get(con_id, 0.0) + change
            if abs(total) > _EPS:
                self._unexplained[con_id] = total
                self._unexplained_at[con_id] = self._seq
            else:
                self._unexplained.pop(con_id, None)
        self._bump()

    def on_value(self, value: Any) -> None:
        """An account value (``accountValueEvent``): a cash report includes every execution
        received before it."""
        if value.tag not in CASH_TAGS or not self._mine(getattr(value, "account", "")):
            return
        self._seq += 1
        self._cash_at = self._seq
        self._no_cash.clear()
        self._bump()

    def on_disconnected(self) -> None:
        """The socket dropped: reports are the base again until :meth:`rebase`."""
        self._base = True
        self._unexplained.clear()
        self._unexplained_at.clear()
        self._bump()

    def rebase(self) -> None:
        """A (re)connect has synced (loop thread): from now on a reported position change that
        no execution explains is unexplained."""
        self._base = False
        self._unexplained.clear()
        self._unexplained_at.clear()
        self._bump()

    # ------------------------------------------------------------------ reading
    def snapshot(self, positions: dict[int, tuple[float, float]], cash: float, value: float,
                 known: Iterable[str]) -> AccountSnapshot:
        """Return the :class:`AccountSnapshot` of ``positions``/``cash``/``value`` (the
        client's current ones) with ``known`` (every execId the client has); loop thread."""
        known = frozenset(known)
        unreported = {e for pending in self._unreported.values() for e in pending}
        return AccountSnapshot(positions=dict(positions), cash=float(cash), value=float(value),
                               known=known, not_in_position=frozenset(unreported & known),
                               not_in_cash=frozenset(self._no_cash & known),
                               unexplained=dict(self._unexplained))

    def settle(self, take: Callable[[], AccountSnapshot], seconds: float) -> AccountSnapshot:
        """Return ``take()`` (a snapshot read in the loop thread) once it is settled, taking it
        again after each message the book takes in, for at most ``seconds``; a change still
        unexplained then is adopted as it is (logged). Any thread but the loop's."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            version = self._version
            snap = take()
            left = end - time.monotonic()
            if snap.settled or left <= 0:
                break
            self.waiting = True
            try:
                self.wait_change(version, left)
            finally:
                self.waiting = False
        if not snap.settled:
            log.warning("positions adopted with a change IB reported without an execution this "
                        "client received (a trade made elsewhere, e.g. in TWS?): %s",
                        snap.unexplained)
        return snap

    def _bump(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    @property
    def version(self) -> int:
        """A number that grows with every message the book takes in."""
        return self._version

    def wait_change(self, version: int, timeout: float) -> bool:
        """Block (any thread but the loop's) until the book takes in a message after
        ``version`` or ``timeout`` seconds pass; return True on a change."""
        with self._changed:
            return self._changed.wait_for(lambda: self._version != version, timeout)
