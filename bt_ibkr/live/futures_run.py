"""Futures in a paper/live run (``python -m examples.live --futures ES``): the contract each
futures symbol trades, and the roll of held positions at start.

A futures symbol of the run (``--futures SYMBOL[:ROOT]``, or ``"futures"`` in the config file)
trades the contract the roll registry (:mod:`bt_ibkr.futures.registry`) holds on the session's
date: its feed's dataname is that contract with the root's exchange, currency and multiplier
(``ES-FUT-CME-USD-202406-50``), so the broker values a position at ``multiplier`` per point.

On every start, after the usual reconciliation and before the Strategy's first decision,
:func:`roll_at_start`:

1. brings the journal's ``ROLL:`` intents up to date with the gateway (orders and executions
   by orderRef, :func:`~bt_ibkr.live.futures_roll_exec.recover_roll_orders_async`);
2. finishes the rolls still in flight (:func:`~bt_ibkr.live.futures_roll.pending_rolls`: the
   close was journaled, the open is not done);
3. asks the gateway for the account's positions (``reqPositions``) and plans a roll for each
   position in a contract of a run's root that the registry no longer holds
   (:func:`~bt_ibkr.live.futures_roll.plan_rolls`); a position in a contract that is neither
   the held one nor an earlier one (a later month, bought by hand) stops the run
   (AttentionError, exit 4) naming it;
4. executes them, one close and one open each, journaled with deterministic orderRefs. A roll
   whose earlier attempt ended with the position still in the old contract (the close filled
   nothing, or part) is retried as the next attempt (new refs).

The gates of the run's other orders apply: ``read_only`` says the plan and sends nothing, a
daily-loss halt sends nothing, the close-out guard refuses an open into a physically settled
contract's close-out window (CloseOutError, one line, exit 2; the close is done and the open
stays journaled, unsent: the registry rolls long before the new contract's window, so this only
happens to a roll left in flight for months, and a person decides what to hold).
The Strategy's own orders on a physically settled contract near or inside its close-out window
are :mod:`bt_ibkr.live.futures_closeout`'s (a warning at start; an open refused inside it).
A position's contract month is read from its last trade date by the root's rule
(:meth:`~bt_ibkr.futures.registry.FutureSpec.contract_of`: CL's trading ends the month before).
Every roll, order and fill is in the audit log (kinds ``order``/``fill``, ``roll=True``).
The roll runs on the store's loop (:meth:`IBStore.run`), never in backtrader's thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING

from bt_ibkr.errors import AttentionError, ConfigError
from bt_ibkr.futures.guard import CloseOutGuard
from bt_ibkr.futures.registry import ContractMonth, FutureSpec, get_spec
from bt_ibkr.live.futures_roll import (
    ROLL_EVENT,
    RollPlan,
    RollStep,
    pending_rolls,
    plan_rolls,
)
from bt_ibkr.live.futures_roll_exec import (
    REF_PREFIX,
    execute_roll_async,
    recover_roll_orders_async,
)
from bt_ibkr.live.intents import LOST, OPEN_STATUSES
from bt_ibkr.utc import utc_now

if TYPE_CHECKING:
    from ib_async import IB

    from bt_ibkr.live.audit import AuditLog
    from bt_ibkr.live.journal import Journal

__all__ = ["FuturesLeg", "futures_legs", "gateway_contracts", "next_attempt", "roll_at_start"]

log = logging.getLogger("bt_ibkr.live")

ROLL_TIMEOUT = 60.0
"""Seconds an order of a roll may make no progress before the run stops (AttentionError);
the roll stays journaled and the next start finishes it."""


@dataclass(frozen=True)
class FuturesLeg:
    """One futures symbol of a run: the run's ``symbol`` (the feed's name), its root's
    ``spec`` and the ``contract`` the registry holds on the run's session date."""

    symbol: str
    spec: FutureSpec
    contract: ContractMonth

    @property
    def dataname(self) -> str:
        """The feed's dataname: the held contract with exchange, currency and multiplier."""
        s = self.spec
        return f"{s.root}-FUT-{s.exchange}-{s.currency}-{self.contract.code}-{s.multiplier:g}"

    def line(self) -> str:
        """One status line: what the symbol trades."""
        return (f"futures {self.symbol}: trading {self.contract.local_symbol} "
                f"({self.spec.description}, x{self.spec.multiplier:g} {self.spec.currency} per "
                f"point, {self.spec.exchange}), the contract held until "
                f"{self.spec.roll_date(self.contract.year, self.contract.month)}")


def futures_legs(futures: Mapping[str, str], symbols: Iterable[str], day: date,
                 where: str = "--futures") -> list[FuturesLeg]:
    """Return the :class:`FuturesLeg` of each ``{symbol: root}`` in ``futures`` on ``day``.

    Raises:
        ConfigError: a futures symbol that is not one of ``symbols`` or an unknown root (the
            message names ``where`` and the input).
    """
    symbols = list(symbols)
    out = []
    for symbol, root in futures.items():
        if symbol not in symbols:
            raise ConfigError(f"{where} {symbol}: not one of the run's symbols "
                              f"({', '.join(symbols)}); add it to --symbols")
        try:
            spec = get_spec(root)
        except ConfigError as exc:
            raise ConfigError(f"{where} {symbol}: {exc}") from None
        out.append(FuturesLeg(symbol, spec, spec.held_contract(day)))
    return out


def gateway_contracts(positions: Iterable, account: str,
                      roots: Iterable[str]) -> dict[ContractMonth, float]:
    """Return ``{contract: quantity}`` of ``account``'s non-zero positions (ib_async
    ``Position`` rows) in futures of ``roots``."""
    roots = set(roots)
    out: dict[ContractMonth, float] = {}
    for p in positions:
        c = p.contract
        if p.account != account or c.secType != "FUT" or c.symbol not in roots:
            continue
        # the contract month, not the last trade date's month (CL's trading ends the month
        # before its contract month)
        cm = get_spec(c.symbol).contract_of(c.lastTradeDateOrContractMonth)
        if cm is None or not p.position:
            continue
        out[cm] = out.get(cm, 0.0) + float(p.position)
    return {c: q for c, q in out.items() if q}


def _check_strays(positions: Mapping[ContractMonth, float], held: Mapping[str, ContractMonth],
                  account: str, day: date) -> None:
    for c, qty in sorted(positions.items()):
        now = held[c.root]
        if (c.year, c.month) > (now.year, now.month):
            raise AttentionError(
                f"account {account} holds {qty:g} {c.local_symbol} ({c}), a contract of "
                f"{c.root} that is neither the one this run trades on {day} "
                f"({now.local_symbol}) nor an earlier one it rolls from; close it or move it "
                f"to {now.local_symbol} in TWS, then run again")


def next_attempt(journal, plan: RollPlan, done: set[tuple[ContractMonth, ContractMonth]]
                  ) -> RollPlan | None:
    """Return the attempt of ``plan`` to run now: a finished earlier attempt (the position is
    still in the old contract: the close filled nothing or part) moves on to the next one;
    None when this run already rolled the pair (``done``). Raises AttentionError when an
    attempt's close is LOST."""
    if (plan.old, plan.new) in done:
        return None
    while True:
        close = journal.get(plan.refs[0])
        if close is None or close.status in OPEN_STATUSES:
            return plan
        if close.status == LOST:  # never retried blind: it may still exist somewhere
            raise AttentionError(
                f"roll {plan.old.local_symbol} -> {plan.new.local_symbol}: its close "
                f"{close.order_ref} was sent but the gateway has no trace of it and no fills "
                "(LOST); check TWS (Trades, Orders) and roll the position by hand there: a "
                "roll whose close is LOST is never retried")
        opened = journal.get(plan.refs[1])
        if opened is not None and opened.status in OPEN_STATUSES:
            return plan
        plan = RollPlan(plan.old, plan.new, plan.quantity, plan.strategy, plan.attempt + 1)


def _describe(plan: RollPlan) -> str:
    side = "long" if plan.long else "short"
    return (f"roll {abs(plan.quantity):g} {plan.old.local_symbol} -> {plan.new.local_symbol} "
            f"({side}, attempt {plan.attempt}; refs {plan.refs[0]}, {plan.refs[1]})")


@dataclass
class _Roller:
    """What one start's roll needs; :meth:`run` runs on the store's loop."""

    ib: IB
    journal: Journal
    audit: AuditLog
    account: str
    run_id: str | None
    legs: list[FuturesLeg]
    day: date
    clock: Callable[[], datetime]
    hold: str | None  # why nothing is sent (read-only, halted), or None
    say: Callable[[str], None]
    timeout: float

    async def run(self) -> dict[ContractMonth, float]:
        """Roll; return the account's positions in the roots' contracts afterwards."""
        await recover_roll_orders_async(self.ib, self.journal, self.account)
        roots = {leg.spec.root for leg in self.legs}
        steps, done = [], set()
        for plan in pending_rolls(self.journal):
            steps.append(await self._execute(plan, "in flight since an earlier run"))
            done.add((plan.old, plan.new))
        if not roots:
            return {}
        positions = gateway_contracts(await self.ib.reqPositionsAsync(), self.account, roots)
        held = {leg.spec.root: leg.contract for leg in self.legs}
        _check_strays(positions, held, self.account, self.day)
        for plan in plan_rolls(positions, self.day):
            attempt = next_attempt(self.journal, plan, done)
            if attempt is not None:
                when = get_spec(plan.old.root).roll_date(plan.old.year, plan.old.month)
                steps.append(await self._execute(attempt, f"its roll date {when} has come"))
                done.add((plan.old, plan.new))
        if not any(steps):
            return positions
        # the store's positions (the broker's start) and the caller now see the rolls
        return gateway_contracts(await self.ib.reqPositionsAsync(), self.account, roots)

    async def _execute(self, plan: RollPlan, why: str) -> RollStep | None:
        if self.hold:
            self.say(f"futures: {_describe(plan)}, {why}: NOT sent ({self.hold})")
            self.audit.write("order", event="roll", status="withheld", reason=self.hold,
                             orderRef=plan.refs[0], **plan.to_json())
            return None
        self.say(f"futures: {_describe(plan)}, {why}")
        self.audit.write("order", event="roll", status="planned", **plan.to_json())
        before = {f.exec_id for ref in plan.refs for f in self._fills(ref)}
        try:
            step = await execute_roll_async(self.ib, self.journal, plan, self.clock,
                                            self.timeout, CloseOutGuard(), self.account,
                                            self.run_id)
        finally:
            self._audit_fills(plan, before)
        rec = step.intent
        self.audit.write("order", event="roll", status=step.action,
                         orderRef=rec.order_ref if rec else None, left_in_old=step.left_in_old,
                         **plan.to_json())
        if step.action == "abandoned":
            self.say(f"!! futures: {_describe(plan)}: the close filled nothing "
                     f"({rec.status if rec else '?'}); the position stays in "
                     f"{plan.old.local_symbol}, the next start tries again")
        else:
            left = f", {step.left_in_old:g} left in {plan.old.local_symbol}" \
                if step.left_in_old else ""
            self.say(f"futures: rolled {rec.filled if rec else 0:g} {plan.old.local_symbol} -> "
                     f"{plan.new.local_symbol}{left}")
        return step

    def _fills(self, ref: str) -> list:
        return self.journal.fills(order_ref=ref)

    def _audit_fills(self, plan: RollPlan, before: set[str]) -> None:
        for ref in plan.refs:
            for f in self._fills(ref):
                if f.exec_id in before:
                    continue
                self.audit.write("fill", orderRef=ref, execId=f.exec_id, symbol=f.symbol,
                                 side=f.side, shares=f.shares, price=f.price,
                                 time=f.time.isoformat() if f.time else None, roll=True)


def roll_at_start(store, journal, audit, account: str, legs: list[FuturesLeg], day: date,
                  run_id: str | None, say: Callable[[str], None], read_only: bool = False,
                  halted: bool = False, timeout: float = ROLL_TIMEOUT) -> list[FuturesLeg]:
    """Recover, finish and plan the rolls of ``legs`` in ``account`` on ``day`` and execute
    them on ``store``'s connection (see the module docstring); return the legs to trade: each
    in its held contract, or, where a position is still in an earlier contract (nothing was
    sent: ``read_only``, ``halted``; the close filled nothing), in that contract, said with
    ``!!``, so the Strategy's position is the one it holds. A roll the journal has in flight
    is finished also by a run without ``legs`` (no ``--futures`` any more): a closed position
    is never left without its re-open.

    Raises:
        AttentionError: a position in a later contract of a run's root; an order of a roll
            that made no progress for ``timeout`` seconds (the roll stays journaled).
        CloseOutError: the open of a roll into a close-out window (the close is done).
        UnknownSymbolError: IB has no such contract.
    """
    if not legs and not journal.events(ROLL_EVENT):
        return legs  # not a futures run, and no roll ever journaled here
    hold = ("read-only" if read_only else "daily-loss halt" if halted else None)
    roller = _Roller(store.connection.ib, journal, audit, account, run_id, legs, day,
                     lambda: utc_now() + store.timeoffset(), hold, say,
                     store.remaining(timeout))
    positions = store.run(roller.run())
    # the roll's order ids were taken from the client directly: never hand them out again,
    # also after a gateway restart rolls nextValidId back
    top = max((r.order_id or 0 for r in journal.intents()
               if r.order_ref.startswith(REF_PREFIX)), default=0)
    if top:
        store.reserve_order_ids(top)
    out = []
    for leg in legs:
        earlier = sorted(c for c, q in positions.items()
                         if c.root == leg.spec.root and c < leg.contract)
        if earlier:
            old = earlier[-1]
            say(f"!! futures {leg.symbol}: {positions[old]:g} {old.local_symbol} not rolled "
                f"({hold or 'see above'}); this run trades {old.local_symbol}, where the "
                "position is, and a later start rolls it")
            leg = replace(leg, contract=old)
        out.append(leg)
    return out
