"""The close-out guard and contract sizing of futures positions.

A long in a physically settled contract past its first notice day can be assigned delivery
(1,000 barrels of crude, 100 ounces of gold). :class:`CloseOutGuard` therefore refuses to OPEN
(or add to) a position in a physically settled contract from ``close_out_days`` business days
before its roll anchor (first notice day, or the last trade date when notice comes later, as
for CL), and logs ONE warning per contract from ``warn_days`` business days before. Reducing or
closing a position is always allowed. Cash-settled roots (ES, NQ) are never refused.

Sizing: a position of ``k`` contracts is ``k * multiplier * price`` of exposure;
:func:`contracts_for` is its inverse, rounded toward zero so the exposure never exceeds the
target.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import date

from bt_ibkr.errors import ConfigError
from bt_ibkr.futures.registry import ContractMonth, FutureSpec, get_spec

__all__ = ["CloseOutError", "CloseOutGuard", "contracts_for", "exposure"]

log = logging.getLogger("bt_ibkr.futures.guard")


class CloseOutError(ConfigError):
    """Opening a position in a physically settled contract inside its close-out window."""


def exposure(spec: FutureSpec, contracts: float, price: float) -> float:
    """Return the signed notional exposure of ``contracts`` at ``price``:
    ``contracts * multiplier * price``."""
    return float(contracts) * spec.multiplier * float(price)


def contracts_for(spec: FutureSpec, target: float, price: float) -> int:
    """Return the whole number of contracts whose exposure comes closest to ``target`` without
    exceeding it in size (rounded toward zero). Raises ConfigError for a price <= 0 or not
    finite."""
    if not math.isfinite(price) or price <= 0:
        raise ConfigError(f"{spec.root}: price {price!r} must be a finite number > 0")
    return int(target / (spec.multiplier * price))


@dataclass
class CloseOutGuard:
    """Checks orders on futures contracts against their close-out windows (module docstring).

    ``warned`` holds the contracts already warned about (one warning each).
    """

    warned: set[ContractMonth] = field(default_factory=set)

    def check(self, contract: ContractMonth, day: date, current: float, target: float) -> None:
        """Allow moving a position in ``contract`` from ``current`` to ``target`` contracts on
        ``day``, or raise.

        Raises:
            CloseOutError: the move opens or adds to a position (``|target| > |current|`` or
                a sign flip) in a physically settled contract on or after its close-out start;
                the message names the contract, the window and what to do.
            ConfigError: unknown root.
        """
        spec = get_spec(contract.root)
        if not spec.physical:
            return
        stop = spec.close_out_start(contract.year, contract.month)
        warn = spec.warn_start(contract.year, contract.month)
        anchor = spec.roll_anchor(contract.year, contract.month)
        opening = abs(target) > abs(current) or (current * target < 0)
        if opening and stop is not None and day >= stop:
            raise CloseOutError(
                f"{contract} ({contract.local_symbol}) is physically settled and inside its "
                f"close-out window since {stop} ({spec.close_out_days} business days before "
                f"{anchor}): refusing to open or add to a position on {day}; trade "
                f"{spec.next_contract(contract)} instead")
        if warn is not None and day >= warn and (target != 0) and contract not in self.warned:
            self.warned.add(contract)
            log.warning("%s (%s) is physically settled: close-out window from %s, "
                        "first notice/last trade %s; roll or close the position before then",
                        contract, contract.local_symbol, stop, anchor)
