"""The simulator's fill rules: at what price an order fills on a quote or on a bar, or not yet.

Buy side shown, sell side mirrored; ``b`` is the bar, "quote" the quote at place time.

* On a quote (``fill_mode="immediate"``, at place time): MKT at the ask (sell: bid); LMT when
  ask <= limit, at the ask; STP/TRAIL when last >= stop, at the ask; STP LMT / TRAIL LIMIT when
  triggered and ask <= limit. MOC and LOC never fill on a quote;
  OPG, MOC and LOC orders fill in auctions only (:mod:`~bt_ibkr.gateway_sim.auctions`).
* On a bar: MKT -> b.open. LMT -> b.open if open <= limit (a gap in your favour) else the limit
  if b.low <= limit. STP -> b.open if open >= stop (gap through the stop) else the stop if
  b.high >= stop. STP LMT: triggers like STP at p = max(stop, open); fills at p if p <= limit,
  else at the limit if b.low <= limit, else rests as a limit. TRAIL (sell): stop S starts at
  trailStopPrice, else last - amount (or last * (1 - pct)); each bar first checks the trigger
  against the OLD stop (fill at min(S, open)), then ratchets S = max(S, high - amount).
  TRAIL LIMIT: like TRAIL; on trigger it becomes a limit at S - lmtPriceOffset (buy: S +
  offset), filled as STP LMT above.

The functions update the order's trigger state (``triggered``, ``trail_stop``, the limit of a
triggered TRAIL LIMIT) and return the fill price or None; they never fill anything themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from .model import Quote
from .records import SimOrder


def trail_from(order: SimOrder, ref: float) -> float:
    """Return the trailing stop ``order`` would have with the price at ``ref``."""
    spec = order.spec
    if spec.trailingPercent is not None and spec.trailingPercent > 0:
        offset = ref * spec.trailingPercent / 100.0
    else:
        offset = spec.auxPrice or 0.0
    return ref - offset if not order.is_buy else ref + offset


def trail_limit(order: SimOrder, stop: float) -> float:
    """Return the limit a TRAIL LIMIT order gets when its stop ``stop`` triggers."""
    offset = order.spec.lmtPriceOffset or 0.0
    return stop + offset if order.is_buy else stop - offset


def init_trail(order: SimOrder, quote: Callable[[], Quote | None]) -> None:
    """Give a TRAIL / TRAIL LIMIT order its first stop: ``trailStopPrice``, else from the
    current quote (``quote()``); other orders and orders that have one are left alone."""
    otype = order.spec.orderType.upper()
    if otype not in ("TRAIL", "TRAIL LIMIT") or order.trail_stop is not None:
        return
    if order.spec.trailStopPrice is not None:
        order.trail_stop = order.spec.trailStopPrice
        return
    q = quote()
    if q is None:
        return
    ref = q.last if q.last and q.last > 0 else q.close
    order.trail_stop = trail_from(order, ref)


def quote_fill_price(order: SimOrder, q: Quote) -> float | None:
    """Return the price ``order`` fills at against quote ``q`` now, or None."""
    otype = order.spec.orderType.upper()
    buy = order.is_buy
    last = q.last if q.last and q.last > 0 else q.close
    touch = (q.ask if q.ask and q.ask > 0 else last) if buy else (
        q.bid if q.bid and q.bid > 0 else last)
    if otype in ("MOC", "LOC"):
        return None  # closing auction only (gateway_sim.auctions)
    if otype == "MKT":
        return touch
    if otype == "LMT":
        lmt = order.spec.lmtPrice
        return touch if (touch <= lmt if buy else touch >= lmt) else None
    if otype in ("STP", "STP LMT"):
        stop = order.spec.auxPrice
        if not order.triggered:
            if not (last >= stop if buy else last <= stop):
                return None
            order.triggered = True
        if otype == "STP":
            return touch
        lmt = order.spec.lmtPrice
        return touch if (touch <= lmt if buy else touch >= lmt) else None
    if otype in ("TRAIL", "TRAIL LIMIT"):
        stop = order.trail_stop
        if stop is None:
            return None
        if not order.triggered:
            if not (last >= stop if buy else last <= stop):
                return None
            order.triggered = True
            if otype == "TRAIL LIMIT":
                order.spec.lmtPrice = trail_limit(order, stop)
        if otype == "TRAIL":
            return touch
        lmt = order.spec.lmtPrice
        return touch if (touch <= lmt if buy else touch >= lmt) else None
    return None


def bar_fill_price(order: SimOrder, b: Quote) -> float | None:
    """Return the price ``order`` fills at on bar ``b``, or None (see the module rules)."""
    otype = order.spec.orderType.upper()
    buy = order.is_buy
    if otype == "MKT":
        return b.open
    if otype in ("MOC", "LOC"):
        return None  # closing auction only (gateway_sim.auctions)
    if otype == "LMT":
        return _limit_on_bar(buy, order.spec.lmtPrice, b)
    if otype in ("STP", "STP LMT"):
        stop = order.spec.auxPrice
        if order.triggered:
            if otype == "STP":
                return b.open
            return _limit_on_bar(buy, order.spec.lmtPrice, b)
        trigger = _stop_on_bar(buy, stop, b)
        if trigger is None:
            return None
        order.triggered = True
        if otype == "STP":
            return trigger
        return _after_trigger(buy, trigger, order.spec.lmtPrice, b)
    if otype in ("TRAIL", "TRAIL LIMIT"):
        if order.trail_stop is None:
            order.trail_stop = trail_from(order, b.open)
        if order.triggered:
            if otype == "TRAIL":
                return b.open
            return _limit_on_bar(buy, order.spec.lmtPrice, b)
        trigger = _stop_on_bar(buy, order.trail_stop, b)
        if trigger is None:
            extreme = b.low if buy else b.high
            new = trail_from(order, extreme)
            order.trail_stop = min(order.trail_stop, new) if buy else max(order.trail_stop, new)
            return None
        order.triggered = True
        if otype == "TRAIL":
            return trigger
        order.spec.lmtPrice = trail_limit(order, order.trail_stop)
        return _after_trigger(buy, trigger, order.spec.lmtPrice, b)
    return None


def _limit_on_bar(buy: bool, lmt: float, b: Quote) -> float | None:
    if buy:
        if b.open <= lmt:
            return b.open
        return lmt if b.low <= lmt else None
    if b.open >= lmt:
        return b.open
    return lmt if b.high >= lmt else None


def _stop_on_bar(buy: bool, stop: float, b: Quote) -> float | None:
    if buy:
        if b.open >= stop:
            return b.open
        return stop if b.high >= stop else None
    if b.open <= stop:
        return b.open
    return stop if b.low <= stop else None


def _after_trigger(buy: bool, trigger: float, lmt: float, b: Quote) -> float | None:
    if buy:
        if trigger <= lmt:
            return trigger
        return lmt if b.low <= lmt else None
    if trigger >= lmt:
        return trigger
    return lmt if b.high >= lmt else None
