"""The simulator's order-side records: orders, executions, positions, and the broker's events.

:class:`~bt_ibkr.gateway_sim.broker.SimBroker` keeps these; ``order_handlers`` turns its events
into TWS messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from .model import SimContract
from .order_codec import ContractSpec, OrderSpec, OrderStateInfo

DONE = {"Filled", "Cancelled"}
ORDER_TYPES = {"MKT", "LMT", "STP", "STP LMT", "TRAIL", "TRAIL LIMIT", "MOC", "LOC"}
TIFS = {"", "DAY", "GTC", "GTD", "IOC", "OPG"}


@dataclass
class SimOrder:
    """One order as the broker keeps it. ``status`` is IB's orderStatus text."""

    client_id: int
    order_id: int
    perm_id: int
    contract: SimContract
    spec: OrderSpec
    contract_spec: ContractSpec | None = None
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    transmitted: bool = True
    active: bool = True  # False for children waiting for their parent's fill
    triggered: bool = False  # STP LMT / TRAIL LIMIT: the stop part has fired
    trail_stop: float | None = None
    bars_seen: int = 0
    placed_at: datetime | None = None
    completed_at: datetime | None = None
    completed_status: str = ""
    commission_paid: float = 0.0
    filled_value: float = 0.0
    why_held: str = ""

    @property
    def remaining(self) -> float:
        """Return the quantity still to fill."""
        return max(self.spec.totalQuantity - self.filled, 0.0)

    @property
    def is_done(self) -> bool:
        """Return True once Filled or Cancelled."""
        return self.status in DONE

    @property
    def is_buy(self) -> bool:
        """Return True for BUY orders."""
        return self.spec.action.upper() == "BUY"

    @property
    def parent_id(self) -> int:
        """Return the parent's order id (0 = none)."""
        return self.spec.parentId

    def order_state(self) -> OrderStateInfo:
        """Return the openOrder OrderState block for this order's status."""
        return OrderStateInfo(status=self.status)


@dataclass
class SimExecution:
    """One fill (an IB Execution plus its commission report)."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    contract: SimContract
    exchange: str
    time: datetime
    account: str
    side: str  # "BOT" / "SLD"
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    order_ref: str
    commission: float
    currency: str
    realized_pnl: float | None  # None for an opening fill (IB sends "unset")


@dataclass
class SimPosition:
    """A position: quantity and IB-style average cost (incl. commission, x multiplier)."""

    contract: SimContract
    position: float = 0.0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0


@dataclass
class PortfolioItem:
    """What a portfolioValue message reports for one position."""

    contract: SimContract
    position: float
    market_price: float
    market_value: float
    average_cost: float
    unrealized_pnl: float
    realized_pnl: float


# events -------------------------------------------------------------------


@dataclass
class OrderUpdated:
    """An order changed -> openOrder + orderStatus to the placing client."""

    client_id: int
    order: SimOrder  # a snapshot taken when the event was raised


@dataclass
class Executed:
    """A fill -> execDetails(reqId -1) + commissionReport to the placing client."""

    client_id: int
    order: SimOrder
    execution: SimExecution


@dataclass
class PositionChanged:
    """A position changed -> position (61) + portfolioValue (7) pushes."""

    contract: SimContract
    position: float
    avg_cost: float
    #: the account whose position changed ("" = the login's account)
    account: str = ""


@dataclass
class PortfolioRevalued:
    """A held contract's price moved -> portfolioValue (7) push only."""

    contract: SimContract


@dataclass
class AccountChanged:
    """Account values changed -> accountValue (6) pushes. ``values``: (key, value, ccy)."""

    values: list[tuple[str, str, str]]


@dataclass
class OrderError:
    """An order-related error message (4) for ``order_id``: 201 reject, 202 cancel, 10147..."""

    client_id: int
    order_id: int
    code: int
    text: str


#: The name the design brief uses for rejects; rejects are OrderError events with code 201.
OrderRejected = OrderError

Event = OrderUpdated | Executed | PositionChanged | PortfolioRevalued | AccountChanged | OrderError


class OrderRejectedError(ValueError):
    """Raised inside the broker for an invalid order; becomes an OrderError(201)."""

    def __init__(self, reason: str, code: int = 201) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


def parse_ib_datetime(text: str, default_tz: str) -> datetime:
    """Return an aware UTC datetime for IB's "YYYYMMDD HH:MM:SS [Zone]" or "YYYYMMDD-HH:MM:SS".

    Raises ValueError naming the text when it is not one of those forms.
    """
    raw = text.strip()
    try:
        if "-" in raw[:9] and len(raw) >= 17 and raw[8] == "-":
            return datetime.strptime(raw, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
        parts = raw.split()
        if len(parts) == 1 and len(parts[0]) == 8:
            parts.append("23:59:59")
        stamp = datetime.strptime(" ".join(parts[:2]), "%Y%m%d %H:%M:%S")
        zone = ZoneInfo(parts[2]) if len(parts) > 2 else ZoneInfo(default_tz)
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(
            f"cannot read date/time {text!r}: use 'YYYYMMDD HH:MM:SS [Zone]'"
        ) from exc
    return stamp.replace(tzinfo=zone).astimezone(UTC)


def validate_order(spec: OrderSpec, account: str | list[str]) -> None:
    """Raise OrderRejectedError (201, the reason in IB's words) for an order the simulator
    cannot take: bad action/type/quantity/TIF, an account the login does not manage
    (``account``: the login's account, or the list of every account it manages), missing
    prices."""
    managed = [account] if isinstance(account, str) else list(account)
    otype = spec.orderType.upper()
    if spec.action.upper() not in ("BUY", "SELL"):
        raise OrderRejectedError(f"Invalid action {spec.action!r}: use BUY or SELL")
    if otype not in ORDER_TYPES:
        raise OrderRejectedError(
            f"Unsupported order type {spec.orderType!r} (simulator supports "
            f"{', '.join(sorted(ORDER_TYPES))})")
    if not spec.totalQuantity or spec.totalQuantity <= 0:
        raise OrderRejectedError(
            f"The order quantity must be positive (got {spec.totalQuantity})")
    if spec.tif.upper() not in TIFS:
        raise OrderRejectedError(f"Invalid time in force {spec.tif!r}")
    if spec.account and spec.account not in managed:
        raise OrderRejectedError(
            f"Account {spec.account!r} is not managed by this login ({', '.join(managed)})")
    if otype in ("LMT", "STP LMT") and (spec.lmtPrice is None or spec.lmtPrice <= 0):
        raise OrderRejectedError(f"{otype} order needs a positive limit price")
    if otype in ("STP", "STP LMT") and (spec.auxPrice is None or spec.auxPrice <= 0):
        raise OrderRejectedError(f"{otype} order needs a positive stop price (auxPrice)")
    if otype in ("TRAIL", "TRAIL LIMIT"):
        has_amount = spec.auxPrice is not None and spec.auxPrice > 0
        has_pct = spec.trailingPercent is not None and spec.trailingPercent > 0
        if not (has_amount or has_pct):
            raise OrderRejectedError(
                f"{otype} order needs a trailing amount (auxPrice) or trailingPercent")
    if otype == "TRAIL LIMIT" and spec.lmtPriceOffset is None:
        raise OrderRejectedError("TRAIL LIMIT order needs lmtPriceOffset")
    if spec.tif.upper() == "GTD":
        if not spec.goodTillDate:
            raise OrderRejectedError("GTD order needs goodTillDate")
        try:
            parse_ib_datetime(spec.goodTillDate, "UTC")
        except ValueError as exc:
            raise OrderRejectedError(str(exc)) from exc


@dataclass
class WhatIfOrder(SimOrder):
    """A whatIf answer: never stored, carries the margin/commission numbers."""

    state: OrderStateInfo | None = None

    def order_state(self) -> OrderStateInfo:
        """Return the margin/commission block computed for the whatIf."""
        return self.state or OrderStateInfo(status=self.status)
