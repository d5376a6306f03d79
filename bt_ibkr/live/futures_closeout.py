"""The close-out warning and refusal of a paper/live run's physically settled futures.

A long held into a physically settled contract's notice period can be assigned delivery (1,000
barrels of crude, 100 ounces of gold, a 10-year note), and IB closes such positions out itself
ahead of the first notice day. The roll registry rolls a held position before that
(``roll_days`` business days before the first notice or last trade day), but a position the
roll could not move (a read-only run, a daily-loss halt, a roll whose close filled nothing)
stays in the old contract, and so does the run that trades where the position is
(:func:`~bt_ibkr.live.futures_run.roll_at_start`). For such runs:

* **warning**: at start, each futures leg of a physically settled root whose traded contract is
  within the registry's ``warn_days`` business days (10 for CL, GC and ZN) of its first notice
  day (the last trade date for CL, whose notice comes after it) prints one ``!!`` status line
  and writes one audit record (kind ``risk``, event ``close_out_warning``): the window's first
  day, the anchor, and what the run does about it (rolls it on its roll date, or, past that,
  trades a position the roll did not move: roll or close it);
* **refusal**: from ``close_out_days`` business days (2) before that day, a Strategy order that
  opens or adds to a position in the contract (or flips it) is refused before anything is
  journaled or sent: the audit gets the refusal (kind ``risk``, event ``close_out_refused``)
  and the run stops with the guard's :class:`~bt_ibkr.futures.guard.CloseOutError` (one line,
  exit 2), as the roll's open into a window does. Reducing or closing is always sent.

Cash-settled roots (ES, NQ) are never warned about or refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from bt_ibkr.errors import ConfigError
from bt_ibkr.futures.guard import CloseOutError, CloseOutGuard
from bt_ibkr.futures.registry import ContractMonth, get_spec
from bt_ibkr.ib.contracts import parse_dataname

if TYPE_CHECKING:
    from bt_ibkr.live.audit import AuditLog

__all__ = ["CloseOutWatch", "close_out_line", "traded_futures"]

log = logging.getLogger("bt_ibkr.live")


def close_out_line(symbol: str, contract: ContractMonth, day: date) -> str | None:
    """Return the ``!!`` status line of ``symbol`` trading ``contract`` on ``day`` when the
    contract is physically settled and ``day`` is inside its warning window (None
    otherwise). Raises ConfigError for an unknown root."""
    spec = get_spec(contract.root)
    warn = spec.warn_start(contract.year, contract.month)
    if warn is None or day < warn:
        return None
    stop = spec.close_out_start(contract.year, contract.month)
    anchor = spec.roll_anchor(contract.year, contract.month)
    roll = spec.roll_date(contract.year, contract.month)
    what = "first notice" if spec.first_notice(contract.year, contract.month) == anchor \
        else "last trade"
    head = (f"!! futures {symbol}: {contract.local_symbol} is physically settled, {what} day "
            f"{anchor}; ")
    if stop is not None and day >= stop:
        head += (f"inside its close-out window since {stop}: orders that open or add to a "
                 "position are refused, reducing or closing is sent")
    else:
        head += (f"its close-out window starts {stop} ({spec.close_out_days} business days "
                 f"before): from then orders that open or add are refused")
    nxt = spec.next_contract(contract).local_symbol
    if day < roll:
        return f"{head}; the run rolls a position to {nxt} on {roll}"
    return f"{head}; the position was not rolled to {nxt}: roll or close it"


def traded_futures(symbols: Iterable[str], legs: Iterable) -> list[tuple[str, ContractMonth]]:
    """Return ``(symbol, contract)`` of each futures contract a run trades: every futures leg
    (``FuturesLeg``: ``symbol``, ``contract``) and every other symbol that is a futures
    dataname of a registry root naming its month (``CL-FUT-NYMEX-USD-202403-1000``)."""
    out = [(leg.symbol, leg.contract) for leg in legs]
    named = {sym for sym, _ in out}
    for sym in symbols:
        if sym in named:
            continue
        try:
            spec = parse_dataname(sym)
            if spec.sectype != "FUT":
                continue
            cm = get_spec(spec.symbol).contract_of(spec.expiry)
        except ConfigError:
            continue  # not a future of a registry root: no close-out rule to apply
        if cm is not None:
            out.append((sym, cm))
    return out


@dataclass
class CloseOutWatch:
    """What a run does about the close-out windows of its futures (module docstring).

    ``audit``: the run's AuditLog; ``say``: the status-line sink (each line is also logged as
    a warning); ``day``: a callable giving
    the exchange session the run is in (it may move on in a stream run).
    """

    audit: AuditLog
    say: Callable[[str], None]
    day: Callable[[], date]
    guard: CloseOutGuard = field(default_factory=CloseOutGuard)

    def warn_at_start(self, traded: Iterable[tuple[str, ContractMonth]]) -> list[str]:
        """Say and audit the warning of each ``(symbol, contract)`` (:func:`traded_futures`)
        inside its warning window on the run's day; return the lines said."""
        day, said = self.day(), []
        for symbol, c in traded:
            line = close_out_line(symbol, c, day)
            if line is None:
                continue
            spec = get_spec(c.root)
            self.audit.write("risk", event="close_out_warning", symbol=symbol,
                             contract=c.local_symbol, day=day.isoformat(),
                             close_out_start=str(spec.close_out_start(c.year, c.month)),
                             anchor=str(spec.roll_anchor(c.year, c.month)))
            log.warning("%s", line)
            self.say(line)
            said.append(line)
        return said

    def check(self, contract, position: float, quantity: float, order_ref: str = "") -> None:
        """Allow a Strategy order of signed ``quantity`` on ``contract`` (an ib_async
        Contract) while ``position`` is held, or raise.

        Raises:
            CloseOutError: the order opens, adds to or flips a position in a physically
                settled contract inside its close-out window (audited first).
        """
        if getattr(contract, "secType", "") != "FUT":
            return
        try:
            spec = get_spec(contract.symbol)
        except ConfigError:
            return  # a future the registry does not know: no rule to apply
        cm = spec.contract_of(contract.lastTradeDateOrContractMonth)
        if cm is None:
            return
        day = self.day()
        try:
            self.guard.check(cm, day, position, position + quantity)
        except CloseOutError as exc:
            self.audit.write("risk", event="close_out_refused", orderRef=order_ref,
                             symbol=contract.symbol, contract=cm.local_symbol,
                             position=position, quantity=quantity, day=day.isoformat(),
                             reason=str(exc))
            raise
