"""Futures in backtrader backtests: the commission scheme that applies the multiplier.

:func:`futures_comminfo` returns a backtrader CommissionInfo for a continuous future:

- ``mult`` = the root's multiplier: a one-point move of one contract is ``multiplier`` in
  profit or loss;
- the position is carried at its full notional ``contracts * multiplier * price`` (a fully
  collateralised future: the margin set aside is the notional), so a strategy's target
  percent is notional exposure: ``order_target_percent(0.5)`` on 100,000 of equity buys
  ``floor(50,000 / (multiplier * price))`` contracts, never leverage it did not ask for;
- commission = ``commission_bps`` of the traded notional (backtrader's own percentage
  commission leaves the multiplier out, which would charge 1/50th on ES).

Why not backtrader's futures mode (``stocklike=False``) with ``automargin=-1``: it settles the
daily profit into cash AND values the position at the margin of the current price, so every
move is counted twice. Carrying the notional (stock-like accounting with the multiplier in
every value) gives the same equity as daily settlement of a fully collateralised position.
The exchange's real initial margin is lower than the notional; margin calls are not modelled.
"""

from __future__ import annotations

import backtrader as bt

from bt_ibkr.futures.registry import FutureSpec

__all__ = ["FuturesCommInfo", "futures_comminfo"]


class FuturesCommInfo(bt.CommInfoBase):
    """A future carried at its notional, the multiplier in every value (module docstring)."""

    params = (
        ("stocklike", True),
        ("commtype", bt.CommInfoBase.COMM_PERC),
        ("percabs", True),
    )

    def _getcommission(self, size, price, pseudoexec):
        return abs(size) * price * self.p.mult * self.p.commission

    def getsize(self, price, cash):
        """Whole contracts whose notional fits ``cash``."""
        return int(self.p.leverage * (cash // (price * self.p.mult)))

    def getoperationcost(self, size, price):
        """Notional of ``size`` contracts at ``price``."""
        return abs(size) * price * self.p.mult

    def getvaluesize(self, size, price):
        """Signed notional of ``size`` contracts at ``price``."""
        return size * price * self.p.mult

    def getvalue(self, position, price):
        """Value of ``position`` at ``price`` (a short gains as the price falls)."""
        size = position.size
        if size >= 0:
            return size * price * self.p.mult
        return (position.price * size + (position.price - price) * size) * self.p.mult


def futures_comminfo(spec: FutureSpec, commission_bps: float) -> FuturesCommInfo:
    """Return the commission info of ``spec`` with ``commission_bps`` of notional per fill."""
    return FuturesCommInfo(mult=spec.multiplier, commission=commission_bps / 10_000.0)
