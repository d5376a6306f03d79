"""What-if margin: what IB says an order would do to the account's margin, without placing it.

IB answers an order sent with ``whatIf=True`` with an ``openOrder`` whose order state carries
the initial and maintenance margin before, change and after, the equity with loan, and the
commission (strings; IB's "not set" marker ``UNSET_DOUBLE``, 1.7976931348623157E308, where it
has no number). :func:`ask_what_if` sends one through ib_async's ``whatIfOrderAsync`` on the
connection's loop and returns :class:`WhatIfMargin`, or None when IB gives no margin: an error
for the request (ib_async then answers an empty list), a state whose margin is unset, or no
answer in time (ib_async waits for a state with a margin: an answer without one never
resolves the request, so the time limit ends it).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ib_async import IB

__all__ = ["UNSET_DOUBLE", "WhatIfMargin", "ask_what_if", "margin_of"]

log = logging.getLogger("bt_ibkr.ib.what_if")

UNSET_DOUBLE = 1.7976931348623157e308
"""IB's marker for a number it does not set (Java's Double.MAX_VALUE)."""


def _number(text: Any) -> float | None:
    """Return IB's number text as a float, None when empty, unset or not a finite number."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or abs(value) >= UNSET_DOUBLE:
        return None
    return value


@dataclass(frozen=True)
class WhatIfMargin:
    """IB's what-if answer for one order (account currency).

    ``init_change``/``maint_change``: how much the order would raise (or, negative, lower) the
    initial and maintenance margin requirement; ``init_after``: the initial margin after it;
    ``equity_with_loan``: the equity with loan value after it; ``commission``: IB's estimate
    (None where IB gave none)."""

    init_change: float
    maint_change: float | None = None
    init_after: float | None = None
    equity_with_loan: float | None = None
    commission: float | None = None


def margin_of(state: Any) -> WhatIfMargin | None:
    """Return the :class:`WhatIfMargin` of an ib_async ``OrderState``; None when it is not
    one or its initial margin change is unset."""
    init_change = _number(getattr(state, "initMarginChange", None))
    if init_change is None:
        return None
    return WhatIfMargin(init_change=init_change,
                        maint_change=_number(getattr(state, "maintMarginChange", None)),
                        init_after=_number(getattr(state, "initMarginAfter", None)),
                        equity_with_loan=_number(getattr(state, "equityWithLoanAfter", None)),
                        commission=_number(getattr(state, "commission", None)))


async def ask_what_if(ib: IB, contract: Any, order: Any, timeout: float) -> WhatIfMargin | None:
    """Ask IB for the what-if margin of ``order`` on ``contract`` (a copy is sent: ``order``
    is never changed, its orderRef is cleared so no journal mistakes the answer for it);
    return it, or None when IB gives no margin within ``timeout`` seconds. Runs on ``ib``'s
    loop; never raises for IB's answer."""
    probe = copy.copy(order)
    probe.orderId, probe.orderRef = 0, ""
    probe.parentId, probe.transmit = 0, True  # a bracket's child is asked about on its own
    try:
        state = await asyncio.wait_for(ib.whatIfOrderAsync(contract, probe), timeout)
    except TimeoutError:
        log.debug("what-if for %s: no margin from IB within %gs", contract, timeout)
        return None
    except Exception as exc:  # noqa: BLE001 - IB refused the request: no margin
        log.debug("what-if for %s failed: %s", contract, exc)
        return None
    return margin_of(state)
