"""Option expiry in the simulated gateway: exercise, assignment and lapse, reported as IB does.

What IB and the OCC do with an equity or index option still held after its last trading day,
and what this module reproduces (the sources are public IB pages; none of it has been tried
against a real account):

- **Exercise by exception.** The OCC exercises every expiring option that is in the money by
  $0.01 or more at the underlying's close, unless the holder says otherwise; IB's short
  options in the money are assigned (IBKR knowledge base, "FAQs - U.S. Securities Option
  Expiration"; IBKR, "Expiration & Corporate Action Related Liquidations": "clearinghouses
  automatically exercise options at in-the-money levels as low as $0.01 per share"). The
  simulator has no contrary instructions and assigns every short option in the money (IB says
  one may go unassigned; not simulated). The underlying's close is the simulator's price of
  the underlying at 16:00 New York on the expiry date.
- **Physical settlement** (options on stocks and ETFs): the option position leaves at 0 and
  ``contracts x multiplier`` shares are delivered at the strike: a long call exercised or a
  short put assigned buys them, a long put exercised or a short call assigned sells them (IB's
  statements, "Option Exercises, Assignments and Expirations": "Assignment underlying
  Transaction Types are either Sell (call option) or Buy (put option). Exercise underlying
  Transaction Types are Sell (put option) or Buy (call option)"). The stock's average cost is
  the strike (the premium is not folded into it: an assumption).
- **Cash settlement** (options on an index, underlying secType IND): the option leaves at 0 and
  the cash moves by ``contracts x multiplier x intrinsic value``.
- **Lapse**: out of the money (or in it by less than $0.01), the option leaves at 0 and the
  cash does not move.
- **No commission**: "There is no IB commission associated with US stock and index security
  options" exercise or assignment (IBKR knowledge base, "Are there commissions associated with
  option exercise or assignment?").
- **How the API reports it**: the client sees the position changes (``position`` 61 and
  ``updatePortfolio`` 7: the option at 0, the stock's new size) and the new account values;
  **no** ``execDetails``/``commissionReport``: there is no order behind it. This follows the
  ib_async maintainers' account (ib-api-reloaded/ib_async issue #93, "How to watch for option
  assignment/settlement?": IB "just drop[s] it into your account ... as a new position and
  there's no event", and ``positionEvent`` "should fire when something is added or removed
  with size=0 for removals even overnight"). Whether a real account also shows the exercise in
  ``reqExecutions`` is not known here; a client must not depend on either.
- **Early assignment**: a short American-style option may be assigned before its expiry (the
  OCC assigns exercise notices to short positions at random, any night). The simulator does it
  only when told (:meth:`OptionExpiry.assign_early`, ``GatewaySim.assign_early``) and reports
  it like an assignment at expiry.
- **When**: IB processes expirations after the close, overnight. The simulator settles at its
  first clock step after 16:00 New York on the expiry date; since the clock skips the hours
  when no market is open, that is in practice the next session's first step.

The order of IB's position messages for one settlement is not documented, so the client must
not depend on it. Three knobs of :class:`OptionExpiry` vary it (tests): ``stock_first`` reports
the delivered stock before the option, ``combine`` books the deliveries of every option on one
underlying as one stock change after all the options (one report of the final position), and
``delivery_delay_steps`` books the deliveries that many clock steps after the options (the
clock steps while a market is open for a contract someone holds, trades or watches).

Sources: IBKR knowledge base "FAQs - U.S. Securities Option Expiration"
(ibkb.interactivebrokers.com/node/1718); "Expiration & Corporate Action Related Liquidations"
(ibkr.info/article/1767); "Are there commissions associated with option exercise or
assignment?" (ibkr.info/node/186); IB's statement guide "Option Exercises, Assignments and
Expirations" (interactivebrokers.com/en/software/reportguide); ib_async issue #93
(github.com/ib-api-reloaded/ib_async/issues/93).

Every managed account's options are settled (:class:`~bt_ibkr.gateway_sim.managed.
ManagedLedgers`). An option whose underlying the simulator does not know is left as it is (a
warning is logged): the simulator does not invent a settlement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from bt_ibkr.gateway_sim.contracts_db import NEW_YORK
from bt_ibkr.gateway_sim.model import SimContract

__all__ = ["ITM_THRESHOLD", "OptionExpiry", "Settlement", "expiry_close_epoch"]

log = logging.getLogger("bt_ibkr.gateway_sim")
_NY = ZoneInfo(NEW_YORK)

#: OCC exercise by exception: in the money by at least this much at expiry
ITM_THRESHOLD = 0.01


def expiry_close_epoch(contract: SimContract) -> int:
    """Return the epoch second of 16:00 New York on ``contract``'s expiry date."""
    d = datetime.strptime(contract.lastTradeDateOrContractMonth[:8], "%Y%m%d").date()
    return int(datetime.combine(d, time(16, 0), _NY).timestamp())


@dataclass(frozen=True)
class Settlement:
    """What happened to one account's expired option position: ``how`` is "exercised"
    (long, in the money), "assigned" (short, in the money), "cash_settled" (index option in
    the money) or "lapsed"; ``position`` the option contracts held; ``delivered`` the signed
    shares of the underlying booked at the strike (0 for cash settlement and lapse);
    ``cash`` the cash credit of a cash settlement; ``spot`` the underlying's close used."""

    account: str
    option: SimContract
    how: str
    position: float
    delivered: float
    cash: float
    spot: float


class OptionExpiry:
    """Settles the option positions of ``server.broker`` past their expiry (module
    docstring). ``underlying_of(contract)`` returns the option's underlying SimContract or
    None; ``settlements`` lists every :class:`Settlement` made, oldest first."""

    def __init__(self, server: Any, underlying_of: Any) -> None:
        self.server = server
        self.underlying_of = underlying_of
        self.settlements: list[Settlement] = []
        #: report the delivered stock before the option (default: the option first)
        self.stock_first = False
        #: one stock change per underlying for all of a step's deliveries, after the options
        self.combine = False
        #: book the deliveries this many clock steps after the options (0: the same step)
        self.delivery_delay_steps = 0
        self._unknown: set[tuple[str, int]] = set()  # warned: underlying not known
        self._later: list[tuple[int, list[tuple[str, SimContract, float, float]]]] = []

    def on_step(self, t: int) -> list[Settlement]:
        """At clock step ``t`` (epoch seconds): settle every option position of every managed
        account whose expiry (16:00 New York) is before ``t``; return what was settled."""
        broker = self.server.broker
        if broker is None or not hasattr(broker, "book_delivery"):
            return []
        for item in [x for x in self._later if x[0] <= 0]:
            self._later.remove(item)
            self._deliver(item[1])
        self._later = [(n - 1, d) for n, d in self._later]
        due = [(acc, pos) for acc, pos in broker.accounts.positions()
               if pos.position and pos.contract.secType == "OPT"
               and expiry_close_epoch(pos.contract) < t]
        done: list[Settlement] = []
        deliveries: list[tuple[str, SimContract, float, float]] = []
        for acc, pos in due:
            s = self._settle(acc, pos.contract, pos.position, deliveries)
            if s is not None:
                done.append(s)
        if self.combine:
            deliveries = _combined(deliveries)
        if self.delivery_delay_steps > 0 and deliveries:
            self._later.append((self.delivery_delay_steps - 1, deliveries))
        else:
            self._deliver(deliveries)
        return done

    def assign_early(self, account: str, contract: SimContract, contracts: float) -> Settlement:
        """Assign ``contracts`` (> 0) of ``account``'s short position in the American-style
        option ``contract`` before its expiry, as the OCC may on any night: the option's short
        position shrinks by them and the delivery is booked at the strike, reported like an
        assignment at expiry (no execution). Raises ValueError for more than is held short or
        for an index option (European style, cash-settled)."""
        broker = self.server.broker
        held = next((p.position for acc, p in broker.accounts.positions()
                     if acc == (account or self.server.account)
                     and p.contract.conId == contract.conId), 0.0)
        if contracts <= 0 or held > -contracts + 1e-9:
            raise ValueError(f"assign_early {contract.localSymbol}: {account or 'the login'} "
                             f"holds {held:g}, cannot assign {contracts:g}")
        und = self.underlying_of(contract)
        if und is None or und.secType != "STK":
            raise ValueError(f"assign_early {contract.localSymbol}: only options on a stock or "
                             "ETF (American style, delivered) are assigned early")
        shares = contracts * float(contract.multiplier or 100) * (
            -1.0 if contract.right == "C" else 1.0)
        broker.book_delivery(contract, contracts, 0.0, account)
        broker.book_delivery(und, shares, contract.strike, account)
        s = Settlement(account=account or self.server.account, option=contract, how="assigned",
                       position=-contracts, delivered=shares, cash=0.0, spot=float("nan"))
        self.settlements.append(s)
        return s

    def _deliver(self, deliveries: list[tuple[str, SimContract, float, float]]) -> None:
        for account, und, shares, price in deliveries:
            self.server.broker.book_delivery(und, shares, price, account)

    def settle(self, account: str, contract: SimContract, position: float) -> Settlement | None:
        """Settle ``position`` contracts of the expired option ``contract`` held in
        ``account``; return the :class:`Settlement` (None: the underlying is unknown and the
        position stays)."""
        deliveries: list[tuple[str, SimContract, float, float]] = []
        s = self._settle(account, contract, position, deliveries)
        self._deliver(deliveries)
        return s

    def _settle(self, account: str, contract: SimContract, position: float,
                deliveries: list[tuple[str, SimContract, float, float]]) -> Settlement | None:
        """Book the option's side of a settlement; append its delivery
        ``(account, underlying, shares, strike)`` to ``deliveries`` (or book it first with
        ``stock_first``)."""
        broker = self.server.broker
        und = self.underlying_of(contract)
        q = self.server.market.quote_at(und, expiry_close_epoch(contract)) if und else None
        if und is None or q is None:
            if (account, contract.conId) not in self._unknown:
                self._unknown.add((account, contract.conId))
                log.warning("option %s expired but its underlying's close is not known to the "
                            "simulator: the position is left as it is", contract.localSymbol)
            return None
        spot = float(q.last)
        call = contract.right == "C"
        value = max(spot - contract.strike, 0.0) if call else max(contract.strike - spot, 0.0)
        mult = float(contract.multiplier or 100)
        itm = round(value, 6) >= ITM_THRESHOLD
        delivered = cash = 0.0
        if not itm:
            how = "lapsed"
            broker.book_delivery(contract, -position, 0.0, account)
        elif und.secType == "IND":
            how, cash = "cash_settled", position * mult * value
            broker.book_delivery(contract, -position, value, account)
        else:
            how = "exercised" if position > 0 else "assigned"
            delivered = position * mult * (1.0 if call else -1.0)
            if self.stock_first:
                broker.book_delivery(und, delivered, contract.strike, account)
            else:
                deliveries.append((account, und, delivered, contract.strike))
            broker.book_delivery(contract, -position, 0.0, account)
        s = Settlement(account=account, option=contract, how=how, position=position,
                       delivered=delivered, cash=cash, spot=spot)
        self.settlements.append(s)
        log.info("option %s (%s) expired %s: %s %g contracts, underlying close %g, %g shares "
                 "delivered", contract.localSymbol, account,
                 contract.lastTradeDateOrContractMonth, how, position, spot, delivered)
        return s


def _combined(deliveries: list[tuple[str, SimContract, float, float]]
              ) -> list[tuple[str, SimContract, float, float]]:
    """Return one delivery per (account, underlying): the shares summed at their average
    price (the position IB would report once; the cash moves by the same amount). Deliveries
    that cancel out stay separate (no price books their cash)."""
    out: dict[tuple[str, int], list[tuple[str, SimContract, float, float]]] = {}
    for d in deliveries:
        out.setdefault((d[0], d[1].conId), []).append(d)
    merged = []
    for group in out.values():
        shares = sum(d[2] for d in group)
        if abs(shares) < 1e-9:
            merged.extend(group)
        else:
            value = sum(d[2] * d[3] for d in group)
            merged.append((group[0][0], group[0][1], shares, value / shares))
    return merged
