"""The backtrader side of an IB order: :class:`IBOrder` (a backtrader order carrying the IB
``Order`` it is sent as), :func:`tif_for` (backtrader's ``valid`` -> IB's TIF) and
:class:`IBCommInfo` (value and cost of IB positions; the commission itself is IB's).

:class:`~bt_ibkr.ib.broker.IBBroker` makes and sends these; they are importable from
:mod:`bt_ibkr.ib.broker` too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

import backtrader as bt
from backtrader.comminfo import CommInfoBase
from backtrader.order import Order, OrderBase

from bt_ibkr.errors import ConfigError
from bt_ibkr.ib import client as ibc
from bt_ibkr.order_options import OPTION_NAMES, OrderOptions, ib_fields
from bt_ibkr.utc import naive_utc, utc_now

__all__ = ["CommInfoBook", "IBCommInfo", "IBOrder", "OrderGate", "contract_multiplier",
           "tif_for"]


class IBCommInfo(CommInfoBase):
    """Cost/value helper for IB orders (the real commission comes from IB's reports)."""

    params = (("commission", 0.0),)

    def getvaluesize(self, size, price):
        return abs(size) * price * self.p.mult

    def getoperationcost(self, size, price):
        return abs(size) * price * self.p.mult

    def getsize(self, price, cash):
        """Return the whole units whose notional (price x multiplier) fits ``cash``: a
        future's and an option's too, as :func:`bt_ibkr.futures.backtest.futures_comminfo`
        sizes (backtrader's futures rule, cash // margin, would buy ``cash`` contracts)."""
        return int(self.p.leverage * (cash // (price * self.p.mult)))

    def getvalue(self, position, price):
        """Return the signed notional of ``position`` at ``price`` (what IBBroker values)."""
        return position.size * price * self.p.mult


def contract_multiplier(contract: Any) -> float:
    """Return ``contract.multiplier`` as a number (1.0 when unset, empty or unreadable)."""
    try:
        return float(contract.multiplier) or 1.0
    except (AttributeError, TypeError, ValueError):
        return 1.0


class CommInfoBook:
    """One :class:`IBCommInfo` per (multiplier, stock-like): backtrader's params objects are
    slow to build, and the broker asks several times a bar. A future (FUT) is not stock-like:
    IB settles it in P&L, its notional never leaves the cash. An option's premium is paid in
    full, as a stock's price, times its multiplier; so is an option on a future's (FOP: CME's
    premium-style options, as IB books them)."""

    def __init__(self) -> None:
        self._infos: dict[tuple[float, bool], IBCommInfo] = {}

    def of(self, contract: Any) -> IBCommInfo:
        """Return the IBCommInfo of ``contract`` (None: a stock with multiplier 1)."""
        sec = getattr(contract, "secType", "STK")
        key = (contract_multiplier(contract), sec != "FUT")
        info = self._infos.get(key)
        if info is None:
            # commtype set: with commtype None backtrader ignores ``stocklike`` and treats
            # every contract without a margin as a stock (a future's notional moved cash)
            info = self._infos[key] = IBCommInfo(mult=key[0], stocklike=key[1],
                                                 commtype=CommInfoBase.COMM_FIXED)
        return info


_IB_ORDER_TYPES = {
    Order.Market: "MKT",
    Order.Limit: "LMT",
    Order.Close: "MOC",
    Order.Stop: "STP",
    Order.StopLimit: "STP LMT",
    Order.StopTrail: "TRAIL",
    Order.StopTrailLimit: "TRAIL LIMIT",
}


def tif_for(valid) -> tuple[str, str]:
    """Return ``(tif, goodTillDate)`` for a backtrader ``valid`` value.

    None -> GTC; ``timedelta(0)`` or 0 -> DAY; a datetime/date -> GTD at that (naive = UTC)
    time; any other timedelta -> GTD now + delta; a float -> GTD at that backtrader date
    number. goodTillDate is written in IB's UTC form ``YYYYMMDD-HH:MM:SS``.
    """
    if valid is None:
        return "GTC", ""
    if isinstance(valid, timedelta):
        if valid == timedelta(0):
            return "DAY", ""
        when = naive_utc(utc_now()) + valid
    elif isinstance(valid, datetime):
        when = naive_utc(valid)
    elif isinstance(valid, date):
        when = datetime.combine(valid, datetime.max.time()).replace(microsecond=0)
    elif valid == 0:
        return "DAY", ""
    else:
        try:
            when = bt.num2date(float(valid))
        except (TypeError, ValueError):
            raise ConfigError(f"order valid={valid!r} is not None, a datetime, a timedelta "
                              "or a backtrader date number") from None
    return "GTD", when.strftime("%Y%m%d-%H:%M:%S")


class IBOrder(OrderBase):
    """A backtrader order carrying the IB ``Order`` it is sent as (``order.ib_order``).

    The named options of :mod:`bt_ibkr.order_options` (``auction``, ``outside_rth``,
    ``algo``, ``priority``) become IB's fields for them and are kept in ``order.info`` (as
    BackBroker keeps them); other extra keyword arguments are set on the IB order as they are
    (unknown field names are an error).
    ``order.orderRef`` is the unique key of the order, ``order.orderId`` IB's id once placed.
    """

    def __init__(self, action: str, **kwargs: Any) -> None:
        self.ordtype = self.Buy if action == "BUY" else self.Sell
        raw_valid = self.p.valid
        named = {k: kwargs.pop(k) for k in OPTION_NAMES if k in kwargs}
        super().__init__()
        self._willexpire = False
        self.orderId: int | None = None
        self.execids: set[str] = set()
        ib = ibc.Order()
        ib.action = action
        if self.exectype not in _IB_ORDER_TYPES:
            raise ConfigError(
                f"exectype {self.ExecTypes[self.exectype]!r} has no IB order type; use Market, "
                "Limit, Stop, StopLimit, StopTrail, StopTrailLimit or Close"
            )
        ib.orderType = _IB_ORDER_TYPES[self.exectype]
        ib.totalQuantity = abs(self.size)
        if self.exectype == Order.Limit:
            ib.lmtPrice = self.price
        elif self.exectype == Order.Stop:
            ib.auxPrice = self.price
        elif self.exectype == Order.StopLimit:
            ib.lmtPrice = self.pricelimit
            ib.auxPrice = self.price
        elif self.exectype in (Order.StopTrail, Order.StopTrailLimit):
            if self.trailamount is not None:
                ib.auxPrice = self.trailamount
            elif self.trailpercent is not None:
                ib.trailingPercent = self.trailpercent * 100.0
            if self.exectype == Order.StopTrailLimit:
                if self.p.price is not None:
                    ib.trailStopPrice = self.p.price
                if self.p.pricelimit is not None and self.p.price is not None:
                    ib.lmtPriceOffset = abs(self.p.price - self.p.pricelimit)
        elif self.exectype == Order.Market:
            pass
        ib.transmit = bool(self.transmit)
        ib.ocaType = 1  # as backtrader: a fill cancels the other members of an OCA group
        ib.tif, ib.goodTillDate = tif_for(raw_valid)
        if self.exectype == Order.Close and raw_valid is None:
            ib.tif = "DAY"  # a MOC lives until today's close; IB refuses a GTC one
        opts = OrderOptions.parse(named, self.exectype, raw_valid)
        for name, value in ib_fields(opts, self.exectype).items():
            if name == "algoParams":
                value = [ibc.TagValue(tag, v) for tag, v in value]
            setattr(ib, name, value)
        if opts.any:
            self.addinfo(**opts.info())
        for name, value in kwargs.items():
            if not hasattr(ib, name):
                raise ConfigError(
                    f"order keyword {name!r} is not a field of the IB Order; check the spelling "
                    "(e.g. outsideRth, orderRef, account, ocaGroup)"
                )
            setattr(ib, name, value)
        self.ib_order = ib

    def resize(self, size: float) -> None:
        """Change the size of an order not yet submitted (a risk limit shrank it): the
        backtrader order and the IB order it is sent as; the sign follows the side."""
        size = abs(float(size))
        signed = size if self.isbuy() else -size
        self.size = signed
        self.created.size = signed
        self.executed.remsize = signed
        self.ib_order.totalQuantity = size

    @property
    def orderRef(self) -> str:
        return self.ib_order.orderRef

    def __str__(self) -> str:
        base = super().__str__()
        o = self.ib_order
        return (f"{base}\norderRef: {o.orderRef}\norderId: {self.orderId}\n"
                f"Action: {o.action}\nOrderType: {o.orderType}\nTif: {o.tif}")


OrderGate = Callable[[IBOrder], "IBOrder | None"]
"""A check an order passes before it is sent (:meth:`bt_ibkr.ib.broker.IBBroker.add_gate`):
None passes it on; the order returned stops it there."""
