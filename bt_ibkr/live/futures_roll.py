"""The live roll of a held futures position, as a journaled state machine.

A roll is ONE decision journaled as a ``roll`` event (root, old and new contract, quantity,
attempt) that expands into two orders with deterministic orderRefs::

    ROLL:ES:202403>202406:1:C     close the old contract (SELL a long, BUY a short)
    ROLL:ES:202403>202406:1:O     open the same direction in the new contract

The refs depend only on the contracts and the attempt number, never on the clock or on the
journal's contents, so re-planning the same roll after a crash (even on a later day) finds the
same intents and never sends a second close or a second open. The order is strict:

1. the close intent is journaled and sent;
2. only when the close is terminal (filled, or cancelled/rejected) is the open intent
   journaled, for exactly the quantity the close FILLED; a close that filled nothing ends the
   roll with the position untouched ("abandoned"), never an open without a close.

So a crash at any point leaves either nothing rolled, the close in flight (the restart's
reconciliation finds it at the gateway by orderRef), or the close done and the open derivable
from the journal alone, never a doubled position and never a closed position without its
re-open. :func:`pending_rolls` recovers the in-flight rolls from the journal's ``roll`` events
(positions alone cannot: once the close filled, the old contract shows no position).

What the caller (the live runner) does with a :class:`RollStep`: ``send`` the intent (after the
usual reconciliation on a restart, which tells whether an ``intent``-status order already
reached the gateway), ``wait`` for its fills, nothing for ``done``/``abandoned``.

Both orders are journaled under the root's symbol (``ES``), the symbol IB's contract carries and
every other journal entry of a futures position uses (the live runner's reconciliation matches
executions and positions by it), so a finished roll leaves the journal's ``ES`` position as it
was; which contract each order trades is in its orderRef, its note and the ``roll`` event. The
per-contract positions a roll is planned from are the gateway's
(:func:`bt_ibkr.live.futures_run.gateway_contracts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.live.intents import INTENT, OPEN_STATUSES, Intent, IntentRecord

__all__ = ["ROLL_EVENT", "RollPlan", "RollStep", "pending_rolls", "plan_rolls", "roll_step"]

ROLL_EVENT = "roll"


@dataclass(frozen=True)
class RollPlan:
    """Roll ``quantity`` (signed: > 0 long) from ``old`` to ``new``; ``attempt`` numbers
    retries of an abandoned roll (1 first)."""

    old: ContractMonth
    new: ContractMonth
    quantity: float
    strategy: str = "roll"
    attempt: int = 1

    @property
    def refs(self) -> tuple[str, str]:
        """The deterministic orderRefs (close, open)."""
        base = f"ROLL:{self.old.root}:{self.old.code}>{self.new.code}:{self.attempt}"
        return f"{base}:C", f"{base}:O"

    @property
    def long(self) -> bool:
        """True when the rolled position is long."""
        return self.quantity > 0

    def to_json(self) -> dict:
        """The ``roll`` event's detail."""
        return {"root": self.old.root, "old": [self.old.year, self.old.month],
                "new": [self.new.year, self.new.month], "quantity": self.quantity,
                "strategy": self.strategy, "attempt": self.attempt}

    @classmethod
    def from_json(cls, d: Mapping) -> RollPlan:
        """Inverse of :meth:`to_json`."""
        root = str(d["root"])
        return cls(ContractMonth(root, *map(int, d["old"])), ContractMonth(root, *map(int, d["new"])),
                   float(d["quantity"]), str(d["strategy"]), int(d["attempt"]))


@dataclass(frozen=True)
class RollStep:
    """What to do next for one roll: ``action`` is "send" (``intent``), "wait" (``intent``
    is working), "done" (the open is terminal; ``intent`` is it) or "abandoned" (the close
    filled nothing; the position is unchanged). ``left_in_old``: contracts the close did not
    fill (a partial close then cancel), still held in the old contract."""

    action: str
    intent: IntentRecord | None
    left_in_old: float = 0.0


def plan_rolls(positions: Mapping[ContractMonth, float], day: date,
               strategy: str = "roll") -> list[RollPlan]:
    """Return a roll for each non-zero position whose contract is no longer the held one on
    ``day`` (the registry's roll date has come), into the held contract."""
    out = []
    for c, qty in sorted(positions.items()):
        if not qty:
            continue
        held = get_spec(c.root).held_contract(day)
        if held != c and (held.year, held.month) > (c.year, c.month):
            out.append(RollPlan(c, held, float(qty), strategy))
    return out


def _intent(plan: RollPlan, opening: bool, quantity: float, now: datetime,
            run_id: str | None, account: str | None) -> Intent:
    close_ref, open_ref = plan.refs
    buy = plan.long if opening else not plan.long
    contract = plan.new if opening else plan.old
    return Intent(order_ref=open_ref if opening else close_ref, strategy=plan.strategy,
                  symbol=contract.root, side="BUY" if buy else "SELL",
                  quantity=abs(quantity), decision_time=now, run_id=run_id, account=account,
                  note=f"roll {plan.old.local_symbol} -> {plan.new.local_symbol} "
                       f"({'open' if opening else 'close'} {contract.local_symbol})")


def roll_step(journal, plan: RollPlan, now: datetime, run_id: str | None = None,
              account: str | None = None) -> RollStep:
    """Journal what the roll needs next and return it (see the module docstring); the intents
    and the ``roll`` event it journals carry ``run_id`` and ``account``.

    Idempotent: calling it again in the same journal state returns the same step and writes
    nothing new. ``journal`` is a :class:`bt_ibkr.live.journal.Journal`.
    """
    close_ref, open_ref = plan.refs
    close = journal.get(close_ref)
    if close is None:
        journal.log_event(ROLL_EVENT, plan.to_json(), order_ref=close_ref, run_id=run_id)
        journal.record_intent(_intent(plan, False, plan.quantity, now, run_id, account))
        close = journal.get(close_ref)
    if close.status == INTENT:
        return RollStep("send", close)
    if close.status in OPEN_STATUSES:
        return RollStep("wait", close)
    left = max(close.quantity - close.filled, 0.0)
    if close.filled <= 0:
        return RollStep("abandoned", close, left)
    opened = journal.get(open_ref)
    if opened is None:
        journal.record_intent(_intent(plan, True, close.filled, now, run_id, account))
        opened = journal.get(open_ref)
    if opened.status == INTENT:
        return RollStep("send", opened, left)
    if opened.status in OPEN_STATUSES:
        return RollStep("wait", opened, left)
    return RollStep("done", opened, left)


def pending_rolls(journal) -> list[RollPlan]:
    """Return the journaled rolls that are not finished (their next step is not "done" or
    "abandoned"), oldest first, from the journal's ``roll`` events alone."""
    out, seen = [], set()
    for ev in journal.events(ROLL_EVENT):
        plan = RollPlan.from_json(ev["detail"])
        if plan.refs in seen:
            continue
        seen.add(plan.refs)
        close_ref, open_ref = plan.refs
        close, opened = journal.get(close_ref), journal.get(open_ref)
        if close is None or close.status in OPEN_STATUSES:
            out.append(plan)
        elif close.filled > 0 and (opened is None or opened.status in OPEN_STATUSES):
            out.append(plan)
    return out
