"""Ledger: the money side of :class:`~bt_ibkr.ib.broker.IBBroker` (``mark="close"``).

It keeps two numbers of cash apart:

* :attr:`Ledger.account_cash` is the account's cash as IB books it: the cash at start (less
  :attr:`Ledger.capital_offset`), minus what each fill of a stock-like contract cost (price x
  size x multiplier, an option's premium included) plus, for a future, its realized P&L; every
  fill pays IB's commission. A futures fill moves no notional: that is IB's
  TotalCashBalance, what :meth:`Ledger.drift` compares and :meth:`Ledger.adopt` takes over.
* :meth:`Ledger.cash` is what the Strategy reads as ``getcash()``: the account cash less the
  notional at entry of each open futures position (the collateral set aside), which is what a
  backtest with :func:`bt_ibkr.futures.backtest.futures_comminfo` (a future carried at its full
  notional) reports after the same fills. :meth:`Ledger.value` is that cash plus every
  position at its mark times its multiplier: for a future, the account cash plus its open P&L.

So the same orders give the same ``getcash()`` and ``getvalue()`` in the backtest and here, and
the account's own cash still reconciles with IB's.

Marks: a position is valued at its feed's current close (the decision bar's); between bars or
before the first bar, at the last finite close seen, else at its average cost
(:meth:`Ledger.mark`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["FillFigures", "Holding", "Ledger"]


@dataclass(frozen=True)
class Holding:
    """One open position as the ledger values it.

    ``size`` signed units, ``cost`` the average price per unit (IB's avgCost / multiplier),
    ``mark`` the price it is valued at, ``mult`` the contract multiplier, ``futures`` True for
    a contract settled like a future (its cash moves by realized P&L only)."""

    size: float
    cost: float
    mark: float
    mult: float
    futures: bool = False

    @property
    def value(self) -> float:
        """Return the signed notional at the mark (what backtrader's value of it is)."""
        return self.size * self.mark * self.mult

    @property
    def collateral(self) -> float:
        """Return the notional at entry set aside for a future (0.0 for a stock-like one)."""
        return self.size * self.cost * self.mult if self.futures else 0.0

    @property
    def open_pnl(self) -> float:
        """Return the profit or loss of the position from its cost to its mark."""
        return self.size * (self.mark - self.cost) * self.mult


@dataclass(frozen=True)
class FillFigures:
    """What one fill did to a position, in the order backtrader's ``order.execute`` takes
    them after the size and price (:meth:`args`)."""

    closed: float
    closedvalue: float
    closedcomm: float
    opened: float
    openedvalue: float
    openedcomm: float
    margin: float
    pnl: float
    psize: float
    pprice: float

    def args(self) -> tuple[float, ...]:
        """Return the figures as ``order.execute(dt, size, price, *args())`` takes them."""
        return (self.closed, self.closedvalue, self.closedcomm, self.opened, self.openedvalue,
                self.openedcomm, self.margin, self.pnl, self.psize, self.pprice)


class Ledger:
    """Cash and value of a broker's own positions (see the module docstring)."""

    def __init__(self) -> None:
        #: the account's cash as IB books it, less ``capital_offset``
        self.account_cash = 0.0
        #: account value left out of the ledger (IBBroker's ``capital``)
        self.capital_offset = 0.0
        self._marks: dict[int, float] = {}  # conId -> the last finite close seen

    def open(self, cash: float, value: float, capital: float | None = None) -> None:
        """Start from the account's ``cash`` and ``value``; ``capital`` (when set, > 0 and
        below ``value``): the value the Strategy sizes from, the rest of the account is left
        out (:attr:`capital_offset`). Returns None."""
        self.capital_offset = 0.0
        if capital is not None and 0 < capital < value:
            self.capital_offset = value - float(capital)
        self.account_cash = cash - self.capital_offset

    def book(self, size: float, price: float, mult: float, futures: bool, pnl: float,
             commission: float) -> None:
        """Move the account cash by one fill of ``size`` (signed) at ``price``: a stock-like
        contract pays or receives the traded value (x ``mult``), a future only its realized
        ``pnl``; both pay ``commission``. Returns None."""
        if futures:
            self.account_cash += pnl - commission
        else:
            self.account_cash -= size * price * mult + commission

    def fill(self, position: Any, info: Any, size: float, price: float, commission: float,
             book: bool = True) -> FillFigures:
        """Apply a fill of ``size`` (signed) at ``price`` to ``position`` (a backtrader
        Position, updated in place) and, when ``book``, to the account cash (:meth:`book`);
        ``info`` is the contract's CommInfo (multiplier, stock-like or future). Returns
        backtrader's figures of it; the commission is split between the closed and the opened
        part by size."""
        before = position.price
        psize, pprice, opened, closed = position.update(size, price)
        closedcomm = commission * abs(closed) / abs(size) if size else 0.0
        pnl = info.profitandloss(-closed, before, price) if closed else 0.0
        if book:
            self.book(size, price, info.p.mult, not info.stocklike, pnl, commission)
        return FillFigures(closed, info.getoperationcost(closed, before), closedcomm, opened,
                           info.getoperationcost(opened, price), commission - closedcomm,
                           info.getvaluesize(size, price), pnl, psize, pprice)

    def mark(self, conid: int, data: Any, fallback: float) -> float:
        """Return the price position ``conid`` is valued at: ``data``'s current close when it
        is a finite number (remembered), else the last one remembered, else ``fallback`` (also
        when ``data`` is None or has no price lines)."""
        close = getattr(data, "close", None)  # None: a position with no feed of its own
        price = close[0] if close is not None and len(data) else math.nan
        if math.isfinite(price):
            self._marks[conid] = price
            return price
        # no bar yet, or a live line between bars (read from another thread)
        return self._marks.get(conid, fallback)

    def cash(self, holdings: Iterable[Holding]) -> float:
        """Return the Strategy's cash: the account cash less the futures' collateral."""
        return self.account_cash - sum(h.collateral for h in holdings)

    def value(self, holdings: Iterable[Holding]) -> float:
        """Return the Strategy's value: :meth:`cash` plus every holding at its mark."""
        held = list(holdings)
        return self.cash(held) + sum(h.value for h in held)

    def drift(self, ib_cash: float, ib_value: float, value: float) -> dict[str, float]:
        """Return ``{"cash": account cash - IB's cash, "value": value - IB's
        NetLiquidation}`` (``value``: the ledger's, :meth:`value`), the capital offset added
        back to both."""
        return {"cash": self.account_cash + self.capital_offset - ib_cash,
                "value": value + self.capital_offset - ib_value}

    def adopt(self, ib_cash: float) -> float:
        """Take IB's cash as the account cash (less the capital offset); return the change."""
        change = ib_cash - self.capital_offset - self.account_cash
        self.account_cash += change
        return change
