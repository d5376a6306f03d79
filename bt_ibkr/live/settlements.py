"""Option settlements in the journal: position changes IB makes without an order of ours.

An option held into its expiry leaves the account without an execution: it lapses, or is
exercised or assigned into ``contracts x multiplier`` shares of its underlying at the strike
(:mod:`bt_ibkr.gateway_sim.option_expiry` cites the IB rules). The journal's positions are its
start positions plus its fills, so without help the option would stay in the journal and the
delivered shares would be missing: a restart would see both as drift needing attention.

* During a run the broker notices the settlement (:mod:`bt_ibkr.ib.position_events`) and the
  journaled broker calls :func:`journal_settlement`.
* At a restart, :func:`explain_mismatches` finds, among the reconciliation's position
  mismatches, the options the journal holds that the gateway no longer does and whose expiry
  (16:00 New York on the date in their OCC symbol) has passed by the gateway's clock: each is
  an expiry; when the underlying's mismatch is exactly the delivery of an exercise (long) or
  assignment (short) at the standard multiplier of 100, that too is explained. Whatever does
  not fit stays a mismatch.

Either way the journal records one ``expiry`` event per option and moves its positions by the
settlement (the option to 0, the underlying by the delivery): never a fill, since there was no
execution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Protocol, TypeVar
from zoneinfo import ZoneInfo

from bt_ibkr.ib.position_events import itm_legs
from bt_ibkr.live.journal import JournalTx


class PositionMismatch(Protocol):
    """What this module reads of a reconciliation's position mismatch
    (:class:`bt_ibkr.live.reconcile.PositionMismatch`, which imports this module)."""

    symbol: str
    journal: float
    gateway: float

    @property
    def difference(self) -> float: ...


M = TypeVar("M", bound=PositionMismatch)

__all__ = ["OccSymbol", "Settled", "explain_mismatches", "journal_settlement", "parse_occ"]

_OCC = re.compile(r"^(?P<root>[A-Z0-9.]{1,6})\s*(?P<ymd>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")
_NEW_YORK = ZoneInfo("America/New_York")
_EPS = 1e-6
#: the contract size a restart assumes for an OCC symbol (the journal keeps no multiplier)
STANDARD_MULTIPLIER = 100.0


@dataclass(frozen=True)
class OccSymbol:
    """An OCC option symbol's parts: ``root`` (the underlying's symbol), ``expiry``,
    ``right`` ("C"/"P") and ``strike``."""

    root: str
    expiry: date
    right: str
    strike: float

    @property
    def expiry_close(self) -> datetime:
        """16:00 New York on the expiry date."""
        return datetime.combine(self.expiry, time(16, 0), _NEW_YORK)


def parse_occ(symbol: str) -> OccSymbol | None:
    """Return the parts of an OCC symbol (``SPY   240119C00470000``), None for anything else."""
    m = _OCC.match((symbol or "").strip())
    if m is None:
        return None
    try:
        expiry = datetime.strptime(m["ymd"], "%y%m%d").date()
    except ValueError:
        return None
    return OccSymbol(m["root"], expiry, m["right"], int(m["strike"]) / 1000.0)


@dataclass(frozen=True)
class Settled:
    """One option settlement the journal records: ``contracts`` of ``option`` left (signed as
    held); ``how`` is "expired", "exercised" or "assigned"; ``delivered`` signed shares of
    ``underlying`` at ``strike``."""

    option: str
    contracts: float
    how: str
    underlying: str = ""
    delivered: float = 0.0
    strike: float = 0.0

    def describe(self) -> str:
        """One line for the reconcile summary."""
        text = f"option {self.option.strip()}: {self.contracts:+g} contract(s) {self.how}"
        if self.delivered:
            text += f", {self.underlying} {self.delivered:+g} shares at {self.strike:g}"
        return text + " (IB's settlement, no order)"


def journal_settlement(tx: JournalTx, settled: Settled, now: datetime,
                       run_id: str | None = None, **detail: object) -> None:
    """Move the journal's positions by ``settled`` (the option by ``-contracts``, the
    underlying by ``delivered``) and record an ``expiry`` event with ``detail``, in ``tx``."""
    if settled.contracts:
        tx.adopt_position(settled.option, tx.position(settled.option) - settled.contracts, now)
    if settled.delivered and settled.underlying:
        tx.adopt_position(settled.underlying,
                          tx.position(settled.underlying) + settled.delivered, now)
    tx.event("expiry", None, {"option": settled.option, "contracts": settled.contracts,
                              "how": settled.how, "underlying": settled.underlying,
                              "delivered": settled.delivered, "strike": settled.strike,
                              **detail}, run_id)


def explain_mismatches(mismatches: list[M], gateway_now: datetime
                       ) -> tuple[list[Settled], list[M]]:
    """Split ``mismatches`` (:class:`~bt_ibkr.live.reconcile.PositionMismatch`) into the
    option settlements they show and the rest; return ``(settled, still_mismatched)``.

    An option mismatch is a settlement when the gateway holds none of it, the journal does,
    and its expiry has passed at ``gateway_now``; the underlying's mismatch is its delivery
    when it equals ``contracts x 100`` (bought for a call exercised or a put assigned, sold
    for the others), alone or summed with the deliveries of the other options on it that one
    underlying close would put in the money (:func:`~bt_ibkr.ib.position_events.itm_legs`)."""
    by_symbol = {m.symbol: m for m in mismatches}
    options: list[tuple[M, OccSymbol]] = []
    for m in mismatches:
        occ = parse_occ(m.symbol)
        if (occ is not None and abs(m.gateway) < _EPS and abs(m.journal) > _EPS
                and gateway_now >= occ.expiry_close):
            options.append((m, occ))
    settled: list[Settled] = []
    explained = {m.symbol for m, _ in options}
    by_root: dict[str, list[tuple[M, OccSymbol]]] = {}
    for m, occ in options:
        by_root.setdefault(occ.root, []).append((m, occ))
    for root, group in by_root.items():
        deliveries = [m.journal * STANDARD_MULTIPLIER * (1 if occ.right == "C" else -1)
                      for m, occ in group]
        stock = by_symbol.get(root)
        gap = stock.difference if stock is not None else 0.0
        itm = itm_legs([(occ.expiry.isoformat(), occ.strike, occ.right, deliveries[k])
                        for k, (_, occ) in enumerate(group)], gap)
        if stock is not None and itm and abs(sum(deliveries[k] for k in itm) - gap) < _EPS:
            explained.add(root)
        for k, (m, occ) in enumerate(group):
            if k in itm:
                settled.append(Settled(m.symbol, m.journal,
                                       "exercised" if m.journal > 0 else "assigned", root,
                                       deliveries[k], occ.strike))
            else:
                settled.append(Settled(m.symbol, m.journal, "expired", strike=occ.strike))
    rest = [m for m in mismatches if m.symbol not in explained]
    return settled, rest
