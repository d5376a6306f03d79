"""Order-side wire codec: parse the client's placeOrder, encode order/account messages.

``parse_place_order`` walks a placeOrder (msg 3) sequentially with the same conditionals as
``ib_async.client.Client.placeOrder`` (BAG legs, delta-neutral, scale, hedge, algo params,
conditions and the server-version gates 158/160/162/166/169/170/177).

Every ``*_fields`` encoder returns the field list (message id first) for ``wire.frame()``.
Field lists follow the installed clients' decoders (ib_async 2.1.0, ib_insync 0.9.86). About 700
lines in one module because the placeOrder parser and the openOrder/completedOrder encoders
walk the same ~150 order fields in the same order: a field the protocol adds is added here once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .wire import UNSET_DOUBLE, UNSET_DOUBLE_TEXT, FieldReader

# Fields after the condType for each order-condition class (ib_async order.py dataclasses).
_CONDITION_FIELDS = {
    1: ("conjunction", "isMore", "price", "conId", "exch", "triggerMethod"),  # Price
    3: ("conjunction", "isMore", "time"),  # Time
    4: ("conjunction", "isMore", "percent"),  # Margin
    5: ("conjunction", "secType", "exch", "symbol"),  # Execution
    6: ("conjunction", "isMore", "volume", "conId", "exch"),  # Volume
    7: ("conjunction", "isMore", "changePercent", "conId", "exch"),  # PercentChange
}


@dataclass
class ContractSpec:
    """The contract as the client sent it in placeOrder (12 fields + secIdType/secId)."""

    conId: int = 0
    symbol: str = ""
    secType: str = ""
    lastTradeDateOrContractMonth: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primaryExchange: str = ""
    currency: str = ""
    localSymbol: str = ""
    tradingClass: str = ""
    secIdType: str = ""
    secId: str = ""
    #: BAG legs: dicts with conId, ratio, action, exchange, openClose, shortSaleSlot,
    #: designatedLocation, exemptCode (all as sent, text)
    comboLegs: list[dict[str, str]] = field(default_factory=list)
    #: (conId, delta, price) when a delta-neutral contract was sent, else None
    deltaNeutralContract: tuple[int, float, float] | None = None


@dataclass
class OrderSpec:
    """The order fields the simulator acts on, decoded from placeOrder.

    Unset prices (the client's UNSET_DOUBLE, sent as "") are ``None``. Every other field the
    client sent is kept as text in ``extra`` under its ib_async ``Order`` attribute name.
    """

    action: str = "BUY"
    totalQuantity: float = 0.0
    orderType: str = "MKT"
    lmtPrice: float | None = None
    auxPrice: float | None = None
    tif: str = ""
    ocaGroup: str = ""
    ocaType: int = 0
    account: str = ""
    openClose: str = "O"
    origin: int = 0
    orderRef: str = ""
    transmit: bool = True
    parentId: int = 0
    outsideRth: bool = False
    hidden: bool = False
    displaySize: int = 0
    allOrNone: bool = False
    goodAfterTime: str = ""
    goodTillDate: str = ""
    trailStopPrice: float | None = None
    trailingPercent: float | None = None
    lmtPriceOffset: float | None = None
    cashQty: float | None = None
    whatIf: bool = False
    algoStrategy: str = ""
    algoParams: list[tuple[str, str]] = field(default_factory=list)
    smartComboRoutingParams: list[tuple[str, str]] = field(default_factory=list)
    orderComboLegPrices: list[float | None] = field(default_factory=list)
    #: each condition as {"condType": int, <field>: text, ...}
    conditions: list[dict[str, Any]] = field(default_factory=list)
    conditionsIgnoreRth: bool = False
    conditionsCancelOrder: bool = False
    autoCancelParent: bool = False
    manualOrderTime: str = ""
    advancedErrorOverride: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class PlaceOrder:
    """One decoded placeOrder request."""

    order_id: int
    contract: ContractSpec
    order: OrderSpec


def _opt_float(text: str) -> float | None:
    if text == "":
        return None
    if text == "Infinite":
        return math.inf
    value = float(text)
    return None if value == UNSET_DOUBLE else value


def parse_place_order(reader: FieldReader, server_version: int) -> PlaceOrder:
    """Decode a placeOrder whose reader is positioned AFTER the message id (3).

    Returns a ``PlaceOrder``. Raises ``IndexError`` (from the reader) when the message is
    shorter than the client's placeOrder at ``server_version``, ``ValueError`` on a
    non-numeric number field.
    """
    r = reader
    extra: dict[str, str] = {}

    def take(*names: str) -> None:
        for name in names:
            extra[name] = r.str()

    order_id = r.int()
    c = ContractSpec(
        conId=r.int(),
        symbol=r.str(),
        secType=r.str(),
        lastTradeDateOrContractMonth=r.str(),
        strike=r.float(),
        right=r.str(),
        multiplier=r.str(),
        exchange=r.str(),
        primaryExchange=r.str(),
        currency=r.str(),
        localSymbol=r.str(),
        tradingClass=r.str(),
        secIdType=r.str(),
        secId=r.str(),
    )
    o = OrderSpec()
    o.action = r.str()
    o.totalQuantity = r.float()
    o.orderType = r.str()
    o.lmtPrice = _opt_float(r.str())
    o.auxPrice = _opt_float(r.str())
    o.tif = r.str()
    o.ocaGroup = r.str()
    o.account = r.str()
    o.openClose = r.str()
    o.origin = r.int()
    o.orderRef = r.str()
    o.transmit = r.bool()
    o.parentId = r.int()
    take("blockOrder", "sweepToFill")
    o.displaySize = r.int()
    take("triggerMethod")
    o.outsideRth = r.bool()
    o.hidden = r.bool()

    if c.secType == "BAG":
        for _ in range(r.int()):
            leg_names = ("conId", "ratio", "action", "exchange", "openClose",
                         "shortSaleSlot", "designatedLocation", "exemptCode")
            c.comboLegs.append({name: r.str() for name in leg_names})
        o.orderComboLegPrices = [_opt_float(r.str()) for _ in range(r.int())]
        o.smartComboRoutingParams = [(r.str(), r.str()) for _ in range(r.int())]

    r.skip()  # deprecated sharesAllocation ("")
    take("discretionaryAmt")
    o.goodAfterTime = r.str()
    o.goodTillDate = r.str()
    take("faGroup", "faMethod", "faPercentage")
    if server_version < 177:
        take("faProfile")
    take("modelCode", "shortSaleSlot", "designatedLocation", "exemptCode")
    o.ocaType = r.int()
    take("rule80A", "settlingFirm")
    o.allOrNone = r.bool()
    take("minQty", "percentOffset", "eTradeOnly", "firmQuoteOnly", "nbboPriceCap",
         "auctionStrategy", "startingPrice", "stockRefPrice", "delta", "stockRangeLower",
         "stockRangeUpper", "overridePercentageConstraints", "volatility", "volatilityType",
         "deltaNeutralOrderType", "deltaNeutralAuxPrice")
    if extra["deltaNeutralOrderType"]:
        take("deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
             "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale",
             "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation")
    take("continuousUpdate", "referencePriceType")
    o.trailStopPrice = _opt_float(r.str())
    o.trailingPercent = _opt_float(r.str())
    take("scaleInitLevelSize", "scaleSubsLevelSize", "scalePriceIncrement")
    increment = _opt_float(extra["scalePriceIncrement"])
    if increment is not None and 0 < increment < UNSET_DOUBLE:
        take("scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset",
             "scaleAutoReset", "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent")
    take("scaleTable", "activeStartTime", "activeStopTime", "hedgeType")
    if extra["hedgeType"]:
        take("hedgeParam")
    take("optOutSmartRouting", "clearingAccount", "clearingIntent", "notHeld")
    if r.bool():
        c.deltaNeutralContract = (r.int(), r.float(), r.float())
    o.algoStrategy = r.str()
    if o.algoStrategy:
        o.algoParams = [(r.str(), r.str()) for _ in range(r.int())]
    take("algoId")
    o.whatIf = r.bool()
    take("orderMiscOptions", "solicited", "randomizeSize", "randomizePrice")
    if o.orderType in {"PEG BENCH", "PEGBENCH"}:
        take("referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount",
             "referenceChangeAmount", "referenceExchangeId")
    n_conditions = r.int()
    for _ in range(n_conditions):
        cond_type = r.int()
        names = _CONDITION_FIELDS.get(cond_type)
        if names is None:
            raise ValueError(f"placeOrder {order_id}: unknown order condition type {cond_type}")
        cond: dict[str, Any] = {"condType": cond_type}
        cond.update({name: r.str() for name in names})
        o.conditions.append(cond)
    if n_conditions:
        o.conditionsIgnoreRth = r.bool()
        o.conditionsCancelOrder = r.bool()
    take("adjustedOrderType", "triggerPrice")
    o.lmtPriceOffset = _opt_float(r.str())
    take("adjustedStopPrice", "adjustedStopLimitPrice", "adjustedTrailingAmount",
         "adjustableTrailingUnit", "extOperator", "softDollarTierName", "softDollarTierVal")
    o.cashQty = _opt_float(r.str())
    take("mifid2DecisionMaker", "mifid2DecisionAlgo", "mifid2ExecutionTrader",
         "mifid2ExecutionAlgo", "dontUseAutoPriceForHedge", "isOmsContainer",
         "discretionaryUpToLimitPrice", "usePriceMgmtAlgo")
    if server_version >= 158:
        take("duration")
    if server_version >= 160:
        take("postToAts")
    if server_version >= 162:
        o.autoCancelParent = r.bool()
    if server_version >= 166:
        o.advancedErrorOverride = r.str()
    if server_version >= 169:
        o.manualOrderTime = r.str()
    if server_version >= 170:
        if c.exchange == "IBKRATS":
            take("minTradeQty")
        if o.orderType in {"PEG BEST", "PEGBEST"}:
            take("minCompeteSize", "competeAgainstBestOffset")
            if extra["competeAgainstBestOffset"] == "Infinite":
                take("midOffsetAtWhole", "midOffsetAtHalf")
        elif o.orderType in {"PEG MID", "PEGMID"}:
            take("midOffsetAtWhole", "midOffsetAtHalf")
    o.extra = extra
    return PlaceOrder(order_id=order_id, contract=c, order=o)


# --------------------------------------------------------------------------- encoders


def _ext(spec: OrderSpec, name: str, default: object = "") -> object:
    return spec.extra.get(name, default)


def _contract11(contract: Any, exchange: str | None = None) -> list[object]:
    """conId .. tradingClass WITHOUT primaryExchange (openOrder/execDetails/position order)."""
    return [
        contract.conId,
        contract.symbol,
        contract.secType,
        contract.lastTradeDateOrContractMonth,
        contract.strike,
        contract.right,
        contract.multiplier,
        exchange if exchange is not None else contract.exchange,
        contract.currency,
        contract.localSymbol,
        contract.tradingClass,
    ]


@dataclass
class OrderStateInfo:
    """What openOrder reports in its OrderState block (margins as text, as IB sends them)."""

    status: str = "Submitted"
    initMarginBefore: str = ""
    maintMarginBefore: str = ""
    equityWithLoanBefore: str = ""
    initMarginChange: str = ""
    maintMarginChange: str = ""
    equityWithLoanChange: str = ""
    initMarginAfter: str = ""
    maintMarginAfter: str = ""
    equityWithLoanAfter: str = ""
    commission: float | None = None
    minCommission: float | None = None
    maxCommission: float | None = None
    commissionCurrency: str = ""
    warningText: str = ""

    def margin_fields(self) -> list[object]:
        """Return the 9 margin fields followed by commission/min/max/currency/warning."""
        return [
            self.initMarginBefore, self.maintMarginBefore, self.equityWithLoanBefore,
            self.initMarginChange, self.maintMarginChange, self.equityWithLoanChange,
            self.initMarginAfter, self.maintMarginAfter, self.equityWithLoanAfter,
            self.commission, self.minCommission, self.maxCommission,
            self.commissionCurrency, self.warningText,
        ]


def _order_common_head(spec: OrderSpec) -> list[object]:
    """action .. account, shared by openOrder and completedOrder."""
    return [
        spec.action,
        float(spec.totalQuantity),
        spec.orderType,
        spec.lmtPrice,
        spec.auxPrice,
        spec.tif or "DAY",
        spec.ocaGroup,
        spec.account,
        spec.openClose,
        spec.origin,
        spec.orderRef,
    ]


def _tail_conditions(spec: OrderSpec) -> list[object]:
    out: list[object] = [len(spec.conditions)]
    for cond in spec.conditions:
        names = _CONDITION_FIELDS[cond["condType"]]
        out.append(cond["condType"])
        out.extend(cond.get(name, "") for name in names)
    if spec.conditions:
        out += [spec.conditionsIgnoreRth, spec.conditionsCancelOrder]
    return out


def _algo(spec: OrderSpec) -> list[object]:
    out: list[object] = [spec.algoStrategy]
    if spec.algoStrategy:
        out.append(len(spec.algoParams))
        for tag, value in spec.algoParams:
            out += [tag, value]
    return out


def _combo_blocks(contract_spec: ContractSpec | None, spec: OrderSpec) -> list[object]:
    legs = contract_spec.comboLegs if contract_spec is not None else []
    names = ("conId", "ratio", "action", "exchange", "openClose", "shortSaleSlot",
             "designatedLocation", "exemptCode")
    out: list[object] = [len(legs)]
    for leg in legs:
        out += [leg.get(name, "") for name in names]
    out.append(len(spec.orderComboLegPrices))
    out += list(spec.orderComboLegPrices)
    out.append(len(spec.smartComboRoutingParams))
    for tag, value in spec.smartComboRoutingParams:
        out += [tag, value]
    return out


def _dnc(contract_spec: ContractSpec | None) -> list[object]:
    dnc = contract_spec.deltaNeutralContract if contract_spec is not None else None
    if dnc:
        return [1, dnc[0], dnc[1], dnc[2]]
    return [0]


def _v170_tail(spec) -> list:
    """The five fields openOrder and completedOrder end with from server version 170."""
    return [_ext(spec, n) for n in ("minTradeQty", "minCompeteSize", "competeAgainstBestOffset",
                                    "midOffsetAtWhole", "midOffsetAtHalf")]


def _scale_and_hedge(spec) -> list:
    """The scale block (its 7 extra fields only when a price increment is set) and the hedge
    block, as openOrder and completedOrder both carry them."""
    f: list = []
    increment = _opt_float(str(_ext(spec, "scalePriceIncrement")))
    f += [_ext(spec, "scaleInitLevelSize"), _ext(spec, "scaleSubsLevelSize"), increment]
    if increment is not None and 0 < increment < UNSET_DOUBLE:
        f += [_ext(spec, n) for n in (
            "scalePriceAdjustValue", "scalePriceAdjustInterval", "scaleProfitOffset",
            "scaleAutoReset", "scaleInitPosition", "scaleInitFillQty", "scaleRandomPercent")]
    hedge = str(_ext(spec, "hedgeType"))
    f.append(hedge)
    if hedge:
        f.append(_ext(spec, "hedgeParam"))
    return f


def open_order_fields(
    order_id: int,
    client_id: int,
    perm_id: int,
    contract: Any,
    spec: OrderSpec,
    server_version: int,
    state: OrderStateInfo | None = None,
    contract_spec: ContractSpec | None = None,
    parent_id: int | None = None,
) -> list[object]:
    """Return an openOrder (msg 5) for ``server_version`` (no version field, server >= 145).

    ``contract`` is any object with the SimContract attribute names (the resolved contract);
    its exchange is replaced by ``contract_spec.exchange`` when that was sent (the routing
    exchange, e.g. SMART). ``state`` defaults to status Submitted with no margin numbers.
    """
    state = state or OrderStateInfo()
    exchange = contract_spec.exchange if contract_spec and contract_spec.exchange else None
    dn_type = str(_ext(spec, "deltaNeutralOrderType"))
    f: list[object] = [5, order_id]
    f += _contract11(contract, exchange)
    f += _order_common_head(spec)
    f += [client_id, perm_id, spec.outsideRth, spec.hidden, _ext(spec, "discretionaryAmt", 0.0),
          spec.goodAfterTime, "", _ext(spec, "faGroup"), _ext(spec, "faMethod"),
          _ext(spec, "faPercentage")]
    if server_version < 177:
        f.append(_ext(spec, "faProfile"))
    f += [
        _ext(spec, "modelCode"), spec.goodTillDate, _ext(spec, "rule80A"),
        _ext(spec, "percentOffset"), _ext(spec, "settlingFirm"), _ext(spec, "shortSaleSlot", 0),
        _ext(spec, "designatedLocation"), _ext(spec, "exemptCode", -1),
        _ext(spec, "auctionStrategy", 0), _ext(spec, "startingPrice"),
        _ext(spec, "stockRefPrice"), _ext(spec, "delta"), _ext(spec, "stockRangeLower"),
        _ext(spec, "stockRangeUpper"),
        spec.displaySize, _ext(spec, "blockOrder", 0), _ext(spec, "sweepToFill", 0),
        spec.allOrNone, _ext(spec, "minQty"), spec.ocaType, 0, 0, "",
        spec.parentId if parent_id is None else parent_id, _ext(spec, "triggerMethod", 0),
        _ext(spec, "volatility"), _ext(spec, "volatilityType"), dn_type,
        _ext(spec, "deltaNeutralAuxPrice"),
    ]
    if dn_type:
        f += [_ext(spec, n) for n in (
            "deltaNeutralConId", "deltaNeutralSettlingFirm", "deltaNeutralClearingAccount",
            "deltaNeutralClearingIntent", "deltaNeutralOpenClose", "deltaNeutralShortSale",
            "deltaNeutralShortSaleSlot", "deltaNeutralDesignatedLocation")]
    f += [_ext(spec, "continuousUpdate", 0), _ext(spec, "referencePriceType"),
          spec.trailStopPrice, spec.trailingPercent, "", "", ""]
    f += _combo_blocks(contract_spec, spec)
    f += _scale_and_hedge(spec)
    f += [_ext(spec, "optOutSmartRouting", 0), _ext(spec, "clearingAccount"),
          _ext(spec, "clearingIntent"), _ext(spec, "notHeld", 0)]
    f += _dnc(contract_spec)
    f += _algo(spec)
    f += [_ext(spec, "solicited", 0), spec.whatIf, state.status]
    f += state.margin_fields()
    f += [_ext(spec, "randomizeSize", 0), _ext(spec, "randomizePrice", 0)]
    if spec.orderType in {"PEG BENCH", "PEGBENCH"}:
        f += [_ext(spec, n) for n in (
            "referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount",
            "referenceChangeAmount", "referenceExchangeId")]
    f += _tail_conditions(spec)
    f += [
        _ext(spec, "adjustedOrderType"), _ext(spec, "triggerPrice"), spec.trailStopPrice,
        spec.lmtPriceOffset, _ext(spec, "adjustedStopPrice"),
        _ext(spec, "adjustedStopLimitPrice"), _ext(spec, "adjustedTrailingAmount"),
        _ext(spec, "adjustableTrailingUnit", 0), _ext(spec, "softDollarTierName"),
        _ext(spec, "softDollarTierVal"), "", spec.cashQty,
        _ext(spec, "dontUseAutoPriceForHedge", 0), _ext(spec, "isOmsContainer", 0),
        _ext(spec, "discretionaryUpToLimitPrice", 0), _ext(spec, "usePriceMgmtAlgo", 0),
    ]
    if server_version >= 159:
        f.append(_ext(spec, "duration"))
    if server_version >= 160:
        f.append(_ext(spec, "postToAts"))
    if server_version >= 162:
        f.append(spec.autoCancelParent)
    if server_version >= 170:
        f += _v170_tail(spec)
    return f


def completed_order_fields(
    perm_id: int,
    contract: Any,
    spec: OrderSpec,
    server_version: int,
    status: str,
    completed_time: str,
    completed_status: str,
    filled_quantity: float,
    contract_spec: ContractSpec | None = None,
    parent_perm_id: int = 0,
) -> list[object]:
    """Return a completedOrder (msg 101): like openOrder without orderId/clientId.

    ``completed_time`` is IB's ``"YYYYMMDD HH:MM:SS Zone"``; ``completed_status`` a phrase
    such as "Filled Size: 5" or "Cancelled by Trader".
    """
    exchange = contract_spec.exchange if contract_spec and contract_spec.exchange else None
    dn_type = str(_ext(spec, "deltaNeutralOrderType"))
    f: list[object] = [101]
    f += _contract11(contract, exchange)
    f += _order_common_head(spec)
    f += [perm_id, spec.outsideRth, spec.hidden, _ext(spec, "discretionaryAmt", 0.0),
          spec.goodAfterTime, _ext(spec, "faGroup"), _ext(spec, "faMethod"),
          _ext(spec, "faPercentage")]
    if server_version < 177:
        f.append(_ext(spec, "faProfile"))
    f += [
        _ext(spec, "modelCode"), spec.goodTillDate, _ext(spec, "rule80A"),
        _ext(spec, "percentOffset"), _ext(spec, "settlingFirm"), _ext(spec, "shortSaleSlot", 0),
        _ext(spec, "designatedLocation"), _ext(spec, "exemptCode", -1),
        _ext(spec, "startingPrice"), _ext(spec, "stockRefPrice"), _ext(spec, "delta"),
        _ext(spec, "stockRangeLower"), _ext(spec, "stockRangeUpper"), spec.displaySize,
        _ext(spec, "sweepToFill", 0), spec.allOrNone, _ext(spec, "minQty"), spec.ocaType,
        _ext(spec, "triggerMethod", 0), _ext(spec, "volatility"), _ext(spec, "volatilityType"),
        dn_type, _ext(spec, "deltaNeutralAuxPrice"),
    ]
    if dn_type:
        f += [_ext(spec, n) for n in ("deltaNeutralConId", "deltaNeutralShortSale",
                                      "deltaNeutralShortSaleSlot",
                                      "deltaNeutralDesignatedLocation")]
    f += [_ext(spec, "continuousUpdate", 0), _ext(spec, "referencePriceType"),
          spec.trailStopPrice, spec.trailingPercent, ""]
    f += _combo_blocks(contract_spec, spec)
    f += _scale_and_hedge(spec)
    f += [_ext(spec, "clearingAccount"), _ext(spec, "clearingIntent"),
          _ext(spec, "notHeld", 0)]
    f += _dnc(contract_spec)
    f += _algo(spec)
    f += [_ext(spec, "solicited", 0), status, _ext(spec, "randomizeSize", 0),
          _ext(spec, "randomizePrice", 0)]
    if spec.orderType in {"PEG BENCH", "PEGBENCH"}:
        f += [_ext(spec, n) for n in (
            "referenceContractId", "isPeggedChangeAmountDecrease", "peggedChangeAmount",
            "referenceChangeAmount", "referenceExchangeId")]
    f += _tail_conditions(spec)
    f += [spec.trailStopPrice, spec.lmtPriceOffset, spec.cashQty,
          _ext(spec, "dontUseAutoPriceForHedge", 0), _ext(spec, "isOmsContainer", 0),
          "", float(filled_quantity), 0, spec.autoCancelParent, "", 0, 0, parent_perm_id,
          completed_time, completed_status]
    if server_version >= 170:
        f += _v170_tail(spec)
    return f


def order_status_fields(
    order_id: int,
    status: str,
    filled: float,
    remaining: float,
    avg_fill_price: float,
    perm_id: int,
    parent_id: int,
    last_fill_price: float,
    client_id: int,
    why_held: str = "",
    mkt_cap_price: float = 0.0,
) -> list[object]:
    """Return an orderStatus (msg 3): no version field; ``client_id`` = the placing client."""
    return [3, order_id, status, float(filled), float(remaining), float(avg_fill_price),
            perm_id, parent_id, float(last_fill_price), client_id, why_held,
            float(mkt_cap_price)]


def ib_time(when: datetime) -> str:
    """Return ``when`` as IB's execution time text ``"YYYYMMDD HH:MM:SS UTC"``."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def exec_details_fields(execution: Any, req_id: int, server_version: int) -> list[object]:
    """Return an execDetails (msg 11): 31 fields, +pendingPriceRevision at version >= 178.

    ``execution`` has: order_id, contract (SimContract-like), exchange, exec_id, time
    (datetime), account, side ("BOT"/"SLD"), shares, price, perm_id, client_id, cum_qty,
    avg_price, order_ref. ``req_id`` is -1 for a live fill, else the reqExecutions id.
    """
    f: list[object] = [11, req_id, execution.order_id]
    f += _contract11(execution.contract, execution.exchange)
    f += [
        execution.exec_id,
        ib_time(execution.time),
        execution.account,
        execution.exchange,
        execution.side,
        float(execution.shares),
        float(execution.price),
        execution.perm_id,
        execution.client_id,
        0,
        float(execution.cum_qty),
        float(execution.avg_price),
        execution.order_ref,
        "",
        "",
        "",
        getattr(execution, "last_liquidity", 1),
    ]
    if server_version >= 178:
        f.append(False)
    return f


def commission_report_fields(
    exec_id: str, commission: float, currency: str = "USD", realized_pnl: float | None = None
) -> list[object]:
    """Return a commissionReport (msg 59), exactly 8 fields (strict in both clients).

    ``realized_pnl`` None (an opening fill) is sent as IB's unset double text.
    """
    pnl: object = UNSET_DOUBLE_TEXT if realized_pnl is None else float(realized_pnl)
    return [59, 1, exec_id, float(commission), currency, pnl, UNSET_DOUBLE_TEXT, ""]


def position_fields(account: str, contract: Any, position: float, avg_cost: float) -> list[object]:
    """Return a position (msg 61), exactly 16 fields."""
    return [61, 3, account, *_contract11(contract), float(position), float(avg_cost)]


def portfolio_value_fields(
    account: str,
    contract: Any,
    position: float,
    market_price: float,
    market_value: float,
    average_cost: float,
    unrealized_pnl: float,
    realized_pnl: float,
) -> list[object]:
    """Return a portfolioValue (msg 7), exactly 20 fields (primaryExchange, not exchange)."""
    return [
        7, 8, contract.conId, contract.symbol, contract.secType,
        contract.lastTradeDateOrContractMonth, contract.strike, contract.right,
        contract.multiplier, contract.primaryExchange or contract.exchange, contract.currency,
        contract.localSymbol, contract.tradingClass, float(position), float(market_price),
        float(market_value), float(average_cost), float(unrealized_pnl), float(realized_pnl),
        account,
    ]


def account_value_fields(key: str, value: str, currency: str, account: str) -> list[object]:
    """Return an accountValue (msg 6)."""
    return [6, 2, key, value, currency, account]


def account_time_fields(when: datetime) -> list[object]:
    """Return an accountUpdateTime (msg 8) ``HH:MM`` of ``when`` (in the zone it carries)."""
    return [8, 1, when.strftime("%H:%M")]


def account_download_end_fields(account: str) -> list[object]:
    """Return an accountDownloadEnd (msg 54)."""
    return [54, 1, account]


def account_summary_fields(
    req_id: int, account: str, tag: str, value: str, currency: str
) -> list[object]:
    """Return an accountSummary (msg 63)."""
    return [63, 1, req_id, account, tag, value, currency]


def account_update_multi_fields(
    req_id: int, account: str, model_code: str, key: str, value: str, currency: str
) -> list[object]:
    """Return an accountUpdateMulti (msg 73)."""
    return [73, 1, req_id, account, model_code, key, value, currency]


def pnl_fields(req_id: int, daily: float, unrealized: float, realized: float) -> list[object]:
    """Return a pnl (msg 94): no version field."""
    return [94, req_id, float(daily), float(unrealized), float(realized)]


def pnl_single_fields(
    req_id: int, pos: float, daily: float, unrealized: float, realized: float, value: float
) -> list[object]:
    """Return a pnlSingle (msg 95): no version field."""
    return [95, req_id, float(pos), float(daily), float(unrealized), float(realized),
            float(value)]


def error_fields(req_id: int, code: int, message: str, server_version: int) -> list[object]:
    """Return an error (msg 4); at version >= 166 with the required advancedOrderRejectJson."""
    f: list[object] = [4, 2, req_id, code, message]
    if server_version >= 166:
        f.append("")
    return f
