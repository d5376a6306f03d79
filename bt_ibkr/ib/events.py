"""What the store hands to backtrader's thread: bars and the events of orders and connections.

The store's loop thread puts these frozen dataclasses on ``queue.Queue`` objects; feeds and the
broker take them off in backtrader's thread. One class per happening, named for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar (or a tick: o=h=l=c) as handed to a feed; ``dt`` is naive UTC, the bar's
    END for intraday bars and the session end for daily bars (backtrader's stamping)."""

    dt: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    openinterest: float = 0.0


# ------------------------------------------------------------------ feeds
@dataclass(frozen=True)
class BarReceived:
    """A bar for a feed: a 5-second real-time bar, a tick (o=h=l=c) or a historical bar;
    ``delayed`` when IB marked the data as delayed."""

    bar: Bar
    delayed: bool = False


@dataclass(frozen=True)
class HistoryEnded:
    """A historical request is complete: ``count`` bars were delivered before this event."""

    count: int


@dataclass(frozen=True)
class RequestFailed:
    """IB ended a data request (historical or live) with error ``code``: ``text``;
    ``bad_data``: the gateway answered with bars that failed validation (NaN, negative)."""

    code: int
    text: str
    bad_data: bool = False


@dataclass(frozen=True)
class SwitchedToDelayed:
    """IB refused live data (``code``, ``text``); the stream now asks for delayed data."""

    code: int
    text: str


@dataclass(frozen=True)
class StoreClosed:
    """The store was closed: no more events will come."""


# ------------------------------------------------------------------ connection (feeds and broker)
@dataclass(frozen=True)
class ConnectionLost:
    """The socket to the gateway dropped; the store is re-dialling (orders are held)."""


@dataclass(frozen=True)
class ConnectionRestored:
    """The store reconnected and re-synced: streams renewed, missed executions handed over,
    held orders sent. Feeds backfill their gap."""


@dataclass(frozen=True)
class ConnectionGaveUp:
    """Re-dialling the gateway stopped after the configured retries: the connection is over."""


@dataclass(frozen=True)
class AccountChanged:
    """The gateway came back logged into another account or kind than the run's: the store
    disconnected without sending anything and will not re-dial (``reason`` names both)."""

    reason: str


@dataclass(frozen=True)
class ConnectivityNotice:
    """The gateway's own link to IB changed: 1100 lost, 1101 restored (data lost), 1102
    restored, 2110 broken (see :data:`bt_ibkr.ib.codes.CONNECTIVITY`)."""

    code: int
    text: str


# ------------------------------------------------------------------ orders (broker)
@dataclass(frozen=True)
class OrderPlaced:
    """The order keyed ``ref`` (its orderRef) went to the gateway as IB order ``order_id``."""

    ref: str
    order_id: int


@dataclass(frozen=True)
class OrderStatusChanged:
    """IB's status of order ``ref`` (``Submitted``, ``Filled``, ``Cancelled`` ...), its filled
    and remaining quantity, average fill price, and the last error code/reason IB gave."""

    ref: str
    status: str
    filled: float
    remaining: float
    avg_price: float
    error_code: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class ExecutionReceived:
    """An execution of order ``ref`` seen (``execDetails``), before its commission report:
    ``shares`` signed (+ bought, - sold) at ``price``; ``contract`` is the IB contract it
    traded (None when unknown). It is counted from its :class:`FillCompleted`."""

    ref: str
    exec_id: str
    shares: float
    price: float
    time: datetime | None
    contract: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FillCompleted:
    """An execution of order ``ref`` together with IB's commission report for it: the one
    event a fill is counted from. :mod:`bt_ibkr.ib.orders` pairs ``execDetails`` with
    ``commissionReport`` (whichever arrives first) and emits it once per ``exec_id``, after the
    :class:`ExecutionReceived` of the same execution. ``shares`` signed (+ bought, - sold);
    ``commission`` and ``realized_pnl`` are IB's."""

    ref: str
    exec_id: str
    shares: float
    price: float
    time: datetime | None
    commission: float
    realized_pnl: float
    contract: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class FollowedFill:
    """An execution of order ``ref`` that this broker did not place (an earlier process's order
    it follows), as :class:`~bt_ibkr.ib.broker.IBBroker` accounted it: ``shares`` signed at
    ``price`` with IB's ``commission``; ``in_position`` / ``in_cash``: the position / cash
    adopted at start already held it (only the rest was added); ``position`` and ``cash``: the
    broker's after it. Passed to the broker's subscribers after the execution's events."""

    ref: str
    exec_id: str
    symbol: str
    shares: float
    price: float
    commission: float
    time: datetime | None
    in_position: bool
    in_cash: bool
    position: float
    cash: float

    @property
    def side(self) -> str:
        """BUY or SELL."""
        return "BUY" if self.shares > 0 else "SELL"


@dataclass(frozen=True)
class OrderError:
    """An IB error or warning about order ``ref`` (see :func:`bt_ibkr.ib.codes.is_warning`)."""

    ref: str
    code: int
    text: str


# ------------------------------------------------------------------ notify_store
@dataclass(frozen=True)
class StoreMessage:
    """What ``notify_store`` receives: an IB error/warning, a connection event or a broker
    event (e.g. the fill of an order an earlier process placed).

    ``code`` is IB's error code (None for the others), ``reqId`` the request or order id it
    refers to (-1 for none), ``kind`` one of "error", "connection", "event", "fill".
    """

    code: int | None
    text: str
    reqId: int = -1
    kind: str = "error"

    def __str__(self) -> str:
        if self.code is None:
            return f"[{self.kind}] {self.text}"
        return f"[IB {self.code}] reqId {self.reqId}: {self.text}"


ConnectionEvent = ConnectionLost | ConnectionRestored | ConnectionGaveUp | ConnectivityNotice \
    | AccountChanged
"""Events put on every feed's queue and on the broker's."""
FeedEvent = BarReceived | HistoryEnded | RequestFailed | SwitchedToDelayed | StoreClosed \
    | ConnectionEvent
"""What a feed's queue carries."""
BrokerEvent = OrderPlaced | OrderStatusChanged | ExecutionReceived | FillCompleted \
    | OrderError | FollowedFill | ConnectionEvent
"""What the broker's queue carries, and what its subscribers see (plus :class:`FollowedFill`,
which the broker makes of an execution of an order it did not place)."""
