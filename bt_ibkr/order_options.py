"""Named order options a Strategy passes to ``buy``/``sell``: auctions, extended hours, Adaptive.

backtrader's convention: ``Strategy.buy(..., **kwargs)`` hands the extra keywords to the
broker; BackBroker stores them in ``order.info`` and IBBroker turns them into IB ``Order``
fields. The options below mean the same on both brokers (and are in ``order.info`` on both):

* ``auction="open"``: take part in the opening auction. exectype Market -> MOO (IB: MKT, TIF
  OPG), Limit -> LOO (IB: LMT, TIF OPG; fills only if the limit is marketable at the open).
  An auction order that does not fill in its auction is cancelled.
* ``auction="close"``: take part in the closing auction. Market -> MOC (IB: orderType MOC,
  TIF DAY), Limit -> LOC (IB: orderType LOC, TIF DAY; fills only if the close is at the
  limit or better).
* ``outside_rth=True``: may fill outside regular trading hours (IB: ``outsideRth``).
* ``algo="adaptive"`` with ``priority="Normal"`` (default), ``"Urgent"`` or ``"Patient"``:
  IB's Adaptive algo on a Market or Limit order (IB: ``algoStrategy="Adaptive"``,
  ``algoParams=[TagValue("adaptivePriority", priority)]``).
* Financial-advisor allocation (IB: ``faGroup``, ``faMethod``, ``faPercentage``,
  ``faProfile``): ``fa_group="Growth"`` allocates the order over an FA account group set up in
  TWS; ``fa_method`` is one of IB's group methods ``EqualQuantity``, ``NetLiq``,
  ``AvailableEquity``, ``PctChange``; ``fa_percentage`` (with ``PctChange`` only, a
  non-zero number in [-100, 100]); ``fa_profile`` names an allocation profile. IB merged
  profiles into groups (TWS 983+, "Unification of Groups and Profiles"), and the API client
  sends ``faProfile`` only to gateways older than server version 177: on a current gateway
  name the profile in ``fa_group``. The backtest broker records these options but allocates
  nothing (a backtest has one account). Tested: the fields reach the gateway simulator on the
  order; not tested: IB's real allocation over an FA's accounts.

Example: ``self.buy(size=10, auction=AUCTION_OPEN)``, ``self.sell(size=10,
exectype=bt.Order.Limit, price=99.5, auction=AUCTION_CLOSE)``, ``self.buy(size=5,
algo=ADAPTIVE, priority="Patient")``.

IB's rules the validation follows (each a :class:`~bt_ibkr.errors.ConfigError` naming the
bad value): only Market and Limit orders go to an auction; an auction order's time in force
is the auction's (OPG, or DAY for the close), so ``valid`` must be None or a day order;
``outside_rth`` is not available for OPG, MOC or LOC orders (IB's order ticket: "Not
available for IOC, OPG (MOO and LOO), FOK, MOC or LOC orders"); Adaptive works on Market and
Limit orders only, in the regular session (not in an auction).

Sources: IB's TWS API Basic Orders (MOO, LOO, MOC, LOC;
https://interactivebrokers.github.io/tws-api/basic_orders.html), IB Algos (Adaptive;
https://interactivebrokers.github.io/tws-api/ibalgos.html#adaptive), the TWS order ticket's
Time in Force help (outside RTH not for OPG, MOC, LOC; IB webhelp Screens/orderticketTif.htm),
QuantConnect Lean's IB integration, which found that IB rejects a MOC sent GTC
(https://github.com/QuantConnect/Lean/pull/1432), and IB's Financial Advisors pages (allocation
methods and order fields; https://interactivebrokers.github.io/tws-api/financial_advisor.html,
financial_advisor_methods_and_orders.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from backtrader.order import Order

from bt_ibkr.errors import ConfigError

__all__ = ["ADAPTIVE", "ADAPTIVE_PRIORITIES", "AUCTION_CLOSE", "AUCTION_OPEN", "FA_METHODS",
           "OPTION_NAMES", "OrderOptions", "ib_fields", "options_of"]

AUCTION_OPEN = "open"
AUCTION_CLOSE = "close"
ADAPTIVE = "adaptive"
ADAPTIVE_PRIORITIES = ("Urgent", "Normal", "Patient")
#: IB's allocation methods for an FA group (TWS API, Financial Advisors: Allocation by Group)
FA_METHODS = ("EqualQuantity", "NetLiq", "AvailableEquity", "PctChange")
FA_OPTION_NAMES = ("fa_group", "fa_method", "fa_percentage", "fa_profile")
OPTION_NAMES = ("auction", "outside_rth", "algo", "priority", *FA_OPTION_NAMES)


@dataclass(frozen=True)
class OrderOptions:
    """The named options of one order (see the module docstring); all unset by default."""

    auction: str | None = None
    outside_rth: bool = False
    algo: str | None = None
    priority: str | None = None
    fa_group: str | None = None
    fa_method: str | None = None
    fa_percentage: float | None = None
    fa_profile: str | None = None

    @property
    def any(self) -> bool:
        """Return True when at least one option is set."""
        return bool(self.auction or self.outside_rth or self.algo or self.fa_group
                    or self.fa_profile)

    def info(self) -> dict[str, Any]:
        """Return the options that are set, as ``order.info`` keys."""
        out: dict[str, Any] = {}
        if self.auction:
            out["auction"] = self.auction
        if self.outside_rth:
            out["outside_rth"] = True
        if self.algo:
            out["algo"] = self.algo
            out["priority"] = self.priority
        for name in FA_OPTION_NAMES:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def parse(cls, values: dict[str, Any], exectype: int | None = None,
              valid: Any = None) -> OrderOptions:
        """Return the validated options in ``values`` (other keys are ignored) for an order of
        backtrader ``exectype`` (None: Market) and ``valid``.

        Raises ConfigError naming the first bad value and what to use instead.
        """
        exectype = Order.Market if exectype is None else exectype
        kind = Order.ExecTypes[exectype] if 0 <= exectype < len(Order.ExecTypes) else exectype
        auction = values.get("auction")
        if auction is not None:
            if auction not in (AUCTION_OPEN, AUCTION_CLOSE):
                raise ConfigError(f"order option auction={auction!r}: use 'open' (MOO/LOO) or "
                                  "'close' (MOC/LOC)")
            if exectype not in (Order.Market, Order.Limit):
                raise ConfigError(f"order option auction={auction!r} with exectype {kind!r}: "
                                  "only Market (MOO/MOC) and Limit (LOO/LOC) orders go to an "
                                  "auction")
            if not _is_day(valid):
                raise ConfigError(f"order option auction={auction!r} with valid={valid!r}: an "
                                  "auction order lives until its auction; leave valid unset")
        outside = values.get("outside_rth", False)
        if outside is None:
            outside = False
        if not isinstance(outside, bool):
            raise ConfigError(f"order option outside_rth={outside!r}: use True or False")
        if outside and auction is not None:
            raise ConfigError(f"order option outside_rth=True with auction={auction!r}: IB "
                              "does not allow outside-RTH on OPG, MOC or LOC orders; drop one")
        algo = values.get("algo")
        priority = values.get("priority")
        if algo is not None:
            if not isinstance(algo, str) or algo.lower() != ADAPTIVE:
                raise ConfigError(f"order option algo={algo!r}: the only algo supported is "
                                  "'adaptive' (IB's Adaptive)")
            algo = ADAPTIVE
            if exectype not in (Order.Market, Order.Limit):
                raise ConfigError(f"order option algo='adaptive' with exectype {kind!r}: IB's "
                                  "Adaptive algo takes Market and Limit orders only")
            if auction is not None:
                raise ConfigError(f"order option algo='adaptive' with auction={auction!r}: "
                                  "the Adaptive algo works in the regular session, not in an "
                                  "auction; drop one")
            priority = "Normal" if priority is None else priority
            priority = _one_of("priority", priority, ADAPTIVE_PRIORITIES)
        elif priority is not None:
            raise ConfigError(f"order option priority={priority!r} without algo='adaptive': "
                              "priority is the Adaptive algo's setting; add algo='adaptive'")
        return cls(auction=auction, outside_rth=outside, algo=algo, priority=priority,
                   **_parse_fa(values))


def _one_of(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return the spelling in ``choices`` of ``value`` (any case); ConfigError naming it."""
    wanted = {c.lower(): c for c in choices}
    if not isinstance(value, str) or value.lower() not in wanted:
        raise ConfigError(f"order option {name}={value!r}: use one of {', '.join(choices)}")
    return wanted[value.lower()]


def _parse_fa(values: dict[str, Any]) -> dict[str, Any]:
    """Return the validated FA options in ``values``; ConfigError naming a bad one."""
    group, method = values.get("fa_group"), values.get("fa_method")
    pct, profile = values.get("fa_percentage"), values.get("fa_profile")
    for name, text in (("fa_group", group), ("fa_profile", profile)):
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise ConfigError(f"order option {name}={text!r}: give the name set up in TWS "
                              "(Allocations), e.g. 'Growth'")
    if group is not None and profile is not None:
        raise ConfigError(f"order option fa_group={group!r} with fa_profile={profile!r}: an "
                          "order is allocated by a group or a profile, not both; drop one")
    if method is not None:
        if group is None:
            raise ConfigError(f"order option fa_method={method!r} without fa_group: the "
                              "method is the group's; add fa_group")
        method = _one_of("fa_method", method, FA_METHODS)
    if pct is not None:
        if method != "PctChange":
            raise ConfigError(f"order option fa_percentage={pct!r} needs "
                              "fa_method='PctChange' (IB uses it with that method only)")
        if isinstance(pct, bool) or not isinstance(pct, int | float) or not (
                0 < abs(pct) <= 100):
            raise ConfigError(f"order option fa_percentage={pct!r}: give a non-zero "
                              "percentage in [-100, 100]")
        pct = float(pct)
    elif method == "PctChange":
        raise ConfigError("order option fa_method='PctChange' needs fa_percentage (the "
                          "percentage to change each account's position by)")
    return {"fa_group": group.strip() if group else None, "fa_method": method,
            "fa_percentage": pct, "fa_profile": profile.strip() if profile else None}


def _is_day(valid: Any) -> bool:
    """Return True for a ``valid`` an auction order accepts: unset, or a day order."""
    if valid is None:
        return True
    if isinstance(valid, timedelta):
        return valid == timedelta(0)
    if isinstance(valid, bool):
        return False
    return isinstance(valid, int | float) and valid == 0


def options_of(order: Any) -> OrderOptions:
    """Return the named options recorded in ``order.info`` (a backtrader order of either
    broker), validated against the order's exectype and ``valid``; raises ConfigError for a
    bad value."""
    info = order.info
    values = {name: info[name] for name in OPTION_NAMES if name in info}
    return OrderOptions.parse(values, order.exectype, getattr(order.p, "valid", None))


def ib_fields(opts: OrderOptions, exectype: int | None) -> dict[str, Any]:
    """Return the IB ``Order`` fields ``opts`` set on an order of backtrader ``exectype``
    (validated already), as IB's API documents them:

    * MOO: orderType MKT, tif OPG; LOO: orderType LMT, tif OPG ("A Market-on-Open (MOO) order
      combines a market order with the OPG time in force"; "A Limit-on-Open (LOO) order
      combines a limit order with the OPG time in force", TWS API order types).
    * MOC: orderType MOC; LOC: orderType LOC (TWS API order types), tif DAY (IB rejects a
      MOC with GTC).
    * outsideRth True ("Allow this order to be triggered or filled outside of regular trading
      hours", the Order's outsideRth field).
    * Adaptive: algoStrategy "Adaptive", algoParams [TagValue("adaptivePriority", priority)]
      (TWS API IB Algos, ``FillAdaptiveParams``).
    * FA allocation: faGroup, faMethod, faPercentage (as text, IB's field type), faProfile
      (TWS API, Placing Orders to a FA account).

    ``algoParams`` is returned as ``(tag, value)`` pairs; the caller makes TagValues.
    """
    exectype = Order.Market if exectype is None else exectype
    out: dict[str, Any] = {}
    if opts.auction == AUCTION_OPEN:
        out["orderType"] = "MKT" if exectype == Order.Market else "LMT"
        out["tif"] = "OPG"
        out["goodTillDate"] = ""
    elif opts.auction == AUCTION_CLOSE:
        out["orderType"] = "MOC" if exectype == Order.Market else "LOC"
        out["tif"] = "DAY"
        out["goodTillDate"] = ""
    if opts.outside_rth:
        out["outsideRth"] = True
    if opts.algo == ADAPTIVE:
        out["algoStrategy"] = "Adaptive"
        out["algoParams"] = [("adaptivePriority", opts.priority)]
    if opts.fa_group:
        out["faGroup"] = opts.fa_group
    if opts.fa_method:
        out["faMethod"] = opts.fa_method
    if opts.fa_percentage is not None:
        out["faPercentage"] = f"{opts.fa_percentage:g}"
    if opts.fa_profile:
        out["faProfile"] = opts.fa_profile
    return out
