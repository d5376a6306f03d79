"""The simulator's rules for auction orders, extended hours and IB's Adaptive algo.

How IB treats these orders, as the simulator does (buy side shown, sell mirrored):

* MOO / LOO are MKT / LMT orders with TIF ``OPG``. They take part only in the opening
  auction: they fill on the first bar of the next session, all at once at its open (an
  auction crosses at one price); a LOO only when the open is at its limit or better. What the
  auction did not fill is cancelled. IB accepts OPG orders only outside the regular session
  (from the close to shortly before the next open); one sent while the session is open is
  rejected with error 201. Not simulated: the cut-off shortly before the open (about 09:28
  New York) and the moments right at the close when IB answers "Order rejected -
  reason:Exchange is closed".
* MOC / LOC (orderType ``MOC`` / ``LOC``) fill at the close of the session's closing bar, all
  at once; a LOC only if the close is at its limit or better, else it is cancelled with the
  day's other orders. Their TIF must be DAY (IB rejects a MOC sent GTC). An order sent after
  a session's last bar works in the next session (see :mod:`~bt_ibkr.gateway_sim.broker`).
  IB's submission cut-off before the close (about 15:50 New York) is not simulated.
* ``outsideRth``: the simulator has no extended-hours trading (no bars outside the session);
  in ``fill_mode="immediate"`` an order placed outside the session waits for the next
  session's first bar unless it has ``outsideRth`` and the clock is in the extended hours of
  a US stock (04:00 to 20:00 New York), where it fills at once against the quote (the last
  close: the price does not move outside the session in the simulator). On OPG, MOC and
  LOC orders the flag changes nothing (they fill in their auction only); IB's order ticket
  does not offer it for them ("Not available for IOC, OPG (MOO and LOO), FOK, MOC or LOC
  orders"), and whether the API refuses or ignores it is not known here, so the simulator
  takes it (bt_ibkr's named options refuse the combination before it is sent).
* Adaptive (``algoStrategy="Adaptive"``, ``algoParams`` ``adaptivePriority`` Urgent, Normal
  or Patient) is accepted on MKT and LMT orders outside auctions and fills as the order it
  wraps; IB's price improvement is not simulated. Any other algo, order type or priority is
  rejected with error 201.

Sources: IB's TWS API Basic Orders and IB Algos pages (order types, Adaptive's
``adaptivePriority``), the TWS Time in Force guide (OPG; DAY orders queued after the close),
QuantConnect Lean's IB integration for what IB answers in practice: MOO accepted from 16:00 to
about 09:28 New York (https://github.com/QuantConnect/Lean/pull/8969), "Exchange is closed"
right at 16:00 (https://github.com/QuantConnect/Lean.Brokerages.InteractiveBrokers/issues/204),
a GTC MOC rejected (https://github.com/QuantConnect/Lean/pull/1432). The wording of the
simulator's own 201 texts is not IB's (IB's text for these cases was not found).
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from .model import Quote, SimContract
from .order_codec import OrderSpec
from .records import OrderRejectedError, SimOrder

__all__ = ["ADAPTIVE_PRIORITIES", "EXTENDED_HOURS", "close_auction_price", "in_extended_hours",
           "is_auction", "is_opening_auction", "open_auction_price", "validate_special"]

ADAPTIVE_PRIORITIES = ("Urgent", "Normal", "Patient")
#: the extended trading hours of a US stock (local New York time): pre-market to after-hours
EXTENDED_HOURS = (time(4, 0), time(20, 0))


def is_opening_auction(spec: OrderSpec) -> bool:
    """Return True for a MOO or LOO (a MKT or LMT order with TIF OPG)."""
    return spec.tif.upper() == "OPG"


def is_auction(spec: OrderSpec) -> bool:
    """Return True for an order that fills only in an auction (OPG, MOC, LOC)."""
    return is_opening_auction(spec) or spec.orderType.upper() in ("MOC", "LOC")


def validate_special(spec: OrderSpec, in_session: bool | None) -> None:
    """Raise OrderRejectedError (201) for an auction, outside-RTH or Adaptive order IB would
    refuse. ``in_session``: whether the contract's regular session is open now (None:
    unknown, no timing check)."""
    otype = spec.orderType.upper()
    tif = spec.tif.upper()
    if tif == "OPG":
        if otype not in ("MKT", "LMT"):
            raise OrderRejectedError(f"Order rejected - reason:TIF OPG is valid only for MKT "
                                     f"and LMT orders, not {otype}")
        if in_session:
            raise OrderRejectedError("Order rejected - reason:OPG orders are accepted only "
                                     "outside the regular session, before the opening auction")
    if otype in ("MOC", "LOC") and tif not in ("", "DAY"):
        raise OrderRejectedError(f"Order rejected - reason:{otype} orders must be DAY orders "
                                 f"(time in force {spec.tif!r})")
    if otype == "LOC" and (spec.lmtPrice is None or spec.lmtPrice <= 0):
        raise OrderRejectedError("LOC order needs a positive limit price")
    algo = spec.algoStrategy
    if not algo:
        return
    if algo != "Adaptive":
        raise OrderRejectedError(f"Order rejected - reason:Unsupported algo strategy {algo!r} "
                                 "(the simulator knows Adaptive)")
    if otype not in ("MKT", "LMT") or is_auction(spec):
        raise OrderRejectedError("Order rejected - reason:The Adaptive algo takes MKT and LMT "
                                 f"orders in the regular session, not {otype} {spec.tif}")
    params = dict(spec.algoParams)
    priority = params.get("adaptivePriority")
    if priority not in ADAPTIVE_PRIORITIES:
        raise OrderRejectedError(f"Order rejected - reason:adaptivePriority {priority!r} must "
                                 f"be one of {', '.join(ADAPTIVE_PRIORITIES)}")


def open_auction_price(order: SimOrder, bar: Quote) -> float | None:
    """Return the price a MOO/LOO fills at in the opening auction of ``bar`` (the session's
    first bar): its open, for a LOO only when the open is at the limit or better; else None."""
    if order.spec.orderType.upper() == "MKT":
        return bar.open
    lmt = order.spec.lmtPrice
    ok = bar.open <= lmt if order.is_buy else bar.open >= lmt
    return bar.open if ok else None


def close_auction_price(order: SimOrder, bar: Quote) -> float | None:
    """Return the price a MOC/LOC fills at in the closing auction (``bar`` is the session's
    closing bar): its close, for a LOC only when the close is at the limit or better."""
    if order.spec.orderType.upper() == "MOC":
        return bar.close
    lmt = order.spec.lmtPrice
    ok = bar.close <= lmt if order.is_buy else bar.close >= lmt
    return bar.close if ok else None


def in_extended_hours(contract: SimContract, now: datetime) -> bool:
    """Return True when ``now`` is in the extended hours of ``contract`` (US stocks only:
    04:00 to 20:00 in its time zone, weekdays)."""
    if contract.secType.upper() != "STK" or contract.currency != "USD":
        return False
    try:
        local = now.astimezone(ZoneInfo(contract.timeZoneId or "America/New_York"))
    except (KeyError, ValueError):
        return False
    start, end = EXTENDED_HOURS
    return local.weekday() < 5 and start <= local.time() < end
