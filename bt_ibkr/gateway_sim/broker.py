"""SimBroker: the simulator's deterministic order engine and account (pure Python, no sockets).

The server feeds it placeOrder/cancel requests and one ``on_bar(contract, quote)`` per clock
step; it answers with events (dataclasses below) that ``order_handlers`` turns into TWS
messages. Everything is deterministic: prices come only from the quotes, ids from counters.

Fill rules (``b`` = the bar passed to ``on_bar``; "quote" = ``quote(contract)`` at place time;
buy side shown, sell side mirrored):

* ``fill_mode="immediate"``: on place, a marketable order fills at once against the quote:
  MKT at the ask (sell: bid); LMT when ask <= limit, at the ask (the better of limit and
  quote); STP/TRAIL when last >= stop, at the ask; STP LMT when triggered and ask <= limit.
  Orders that do not fill rest and are checked on every later bar.
  When ``is_open(contract)`` is given and returns False (outside the session), nothing fills
  on place; the order waits for the first bar of the next session (MKT fills at its open).
* ``fill_mode="next_bar"``: nothing fills on place; MKT fills at the OPEN of the next bar
  (decide at the close, fill at the next open, as a backtrader backtest does).
* Resting orders on a bar: MKT -> b.open. LMT -> b.open if open <= limit (a gap in your
  favour) else the limit if b.low <= limit. STP -> b.open if open >= stop (gap through the
  stop) else the stop if b.high >= stop. STP LMT: triggers like STP at p = max(stop, open);
  fills at p if p <= limit, else at the limit if b.low <= limit, else rests as a limit.
  TRAIL (sell): stop S starts at trailStopPrice, else last - amount (or last * (1 - pct));
  each bar first checks the trigger against the OLD stop (fill at min(S, open)), then ratchets
  S = max(S, high - amount). TRAIL LIMIT: like TRAIL; on trigger it becomes a limit at
  S - lmtPriceOffset (buy: S + offset) filled as STP LMT above.
  MOC fills at the close of the session's closing bar.
* Session close: ``on_bar(..., session_end=True)``, else ``is_session_end(contract, bar
  time)`` when given (the server passes "the market is closed at the bar's end"), else a bar
  whose local time (contract.timeZoneId) is >= ``session_close`` (16:00) closes that local
  date's session after the bar's fills. If a bar arrives on a later local date and the previous date was never closed,
  the previous session is closed first (at the previous bar's close). At a close, MOC orders
  fill and DAY orders (and "" / OPG) that have seen at least one bar are cancelled; orders
  placed after the last bar of a session therefore live into the next one.
* ``partial_fill_qty``: at most that many shares fill per price event (place or bar), so a
  large order produces several executions with cumQty/avgPrice accumulating.
* IOC fills what it can at its first price event and cancels the rest. GTD cancels once
  ``clock() >= goodTillDate``. GTC never expires.
* Brackets: an order with ``transmit=False`` is held (PreSubmitted) until an order of its
  group (same parent) arrives with ``transmit=True``. Children activate (Submitted) when the
  parent is completely filled, and are first checked on the bar AFTER the one that filled
  the parent. A child's fill cancels (partial fill: reduces) its siblings. Cancelling a
  parent cancels its children.
* OCA groups (same ``ocaGroup``): ocaType 1 cancels the other members on a fill; 2 and 3
  reduce their quantity by the filled amount (cancelled when nothing is left).
* Commission (IB tiered-like): per order, ``min(max(cumQty * per_share, min_commission),
  max_commission_pct * cumValue)``; each execution is charged the increase of that amount.
  Position avgCost includes commissions (as IB reports it), times the multiplier.
* Margin (whatIf and account values): initial = maintenance = ``margin_rate`` (0.25) of the
  gross position value; BuyingPower = AvailableFunds / margin_rate.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from .model import Quote, SimContract
from .order_codec import ContractSpec, OrderSpec, OrderStateInfo

log = logging.getLogger("bt_ibkr.gateway_sim.broker")

ORDER_TYPES = {"MKT", "LMT", "STP", "STP LMT", "TRAIL", "TRAIL LIMIT", "MOC"}
TIFS = {"", "DAY", "GTC", "GTD", "IOC", "OPG"}
DONE = {"Filled", "Cancelled"}
BASE_TAGS_CCY = ("USD", "BASE")


# --------------------------------------------------------------------------- data


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


# --------------------------------------------------------------------------- broker


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


class SimBroker:
    """Deterministic IB-like order engine and single-account ledger.

    ``clock()`` returns the simulated now (aware UTC); ``quote(contract)`` the current Quote
    or None; ``is_open(contract)`` (optional) whether its market is open now. Subscribe a callback to receive every event, in order. All public methods are
    thread-safe (one re-entrant lock); events are delivered while it is held.
    """

    def __init__(
        self,
        account: str,
        clock: Callable[[], datetime],
        quote: Callable[[SimContract], Quote | None],
        cash: float = 1_000_000.0,
        commission_per_share: float = 0.005,
        min_commission: float = 1.0,
        max_commission_pct: float = 0.01,
        fill_mode: str = "immediate",
        partial_fill_qty: float | None = None,
        base_perm_id: int = 1_000_000,
        margin_rate: float = 0.25,
        session_close: time = time(16, 0),
        faults: object | None = None,
        currency: str = "USD",
        revalue_interval: float = 60.0,
        is_open: Callable[[SimContract], bool] | None = None,
        is_session_end: Callable[[SimContract, datetime], bool] | None = None,
    ) -> None:
        if fill_mode not in ("immediate", "next_bar"):
            raise ValueError(f"fill_mode must be 'immediate' or 'next_bar', got {fill_mode!r}")
        if partial_fill_qty is not None and partial_fill_qty <= 0:
            raise ValueError(f"partial_fill_qty must be > 0 or None, got {partial_fill_qty!r}")
        self.account = account
        self.clock = clock
        self.quote = quote
        self.cash = float(cash)
        self.commission_per_share = commission_per_share
        self.min_commission = min_commission
        self.max_commission_pct = max_commission_pct
        self.fill_mode = fill_mode
        self.partial_fill_qty = partial_fill_qty
        self.margin_rate = margin_rate
        self.session_close = session_close
        self.faults = faults
        self.currency = currency
        #: simulated seconds between portfolio/account pushes caused by price moves
        self.revalue_interval = float(revalue_interval)
        self._last_revalue: dict[int, datetime] = {}
        self.is_open = is_open
        self.is_session_end = is_session_end
        self._lock = threading.RLock()
        self._subscribers: list[Callable[[Event], None]] = []
        self._perm_ids = itertools.count(base_perm_id)
        self._exec_seq = itertools.count(1)
        self._exec_prefix = hashlib.sha1(account.encode()).hexdigest()[:8]
        self._orders: dict[tuple[int, int], SimOrder] = {}
        self._executions: list[SimExecution] = []
        self._positions: dict[int, SimPosition] = {}
        self._last_quote: dict[int, Quote] = {}
        self._last_bar_date: dict[int, date] = {}
        self._closed_dates: dict[int, set[date]] = {}
        self._realized_total = 0.0
        self._day_start: tuple[date, float] | None = None

    # ---------------------------------------------------------------- plumbing

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Register ``callback(event)``; it receives every later event in order."""
        with self._lock:
            self._subscribers.append(callback)

    def _emit(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken subscriber must not corrupt the ledger
                log.exception("SimBroker subscriber failed on %s", type(event).__name__)

    def _order_updated(self, order: SimOrder) -> None:
        self._emit(OrderUpdated(order.client_id, replace(order)))

    def _now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now

    def _tz(self, contract: SimContract) -> ZoneInfo:
        try:
            return ZoneInfo(contract.timeZoneId or "UTC")
        except (KeyError, ValueError):
            return ZoneInfo("UTC")

    def _current_quote(self, contract: SimContract) -> Quote | None:
        q = self.quote(contract)
        if q is not None:
            self._last_quote[contract.conId] = q
            return q
        return self._last_quote.get(contract.conId)

    # ---------------------------------------------------------------- requests

    def place(
        self,
        client_id: int,
        order_id: int,
        contract: SimContract,
        spec: OrderSpec,
        contract_spec: ContractSpec | None = None,
    ) -> SimOrder | None:
        """Place a new order or modify the working order ``(client_id, order_id)``.

        Returns the SimOrder, or None when it was rejected (an OrderError event: 201 invalid
        or fault, 103 duplicate id of a finished order) or was a whatIf (an OrderUpdated with
        margin numbers is sent; nothing is stored).
        """
        with self._lock:
            self._touch_day()
            try:
                self._check_fault()
                self._validate(spec)
            except OrderRejectedError as exc:
                text = exc.reason if exc.reason.startswith("Order rejected") else (
                    f"Order rejected - reason:{exc.reason}")
                self._emit(OrderError(client_id, order_id, exc.code, text))
                return None
            spec = copy.deepcopy(spec)
            if not spec.account:
                spec.account = self.account
            if spec.whatIf:
                self._emit(OrderUpdated(client_id, self._what_if(client_id, order_id,
                                                                   contract, spec)))
                return None
            existing = self._orders.get((client_id, order_id))
            if existing is not None:
                return self._modify(existing, spec)
            return self._new_order(client_id, order_id, contract, spec, contract_spec)

    def cancel(self, client_id: int, order_id: int) -> bool:
        """Cancel ``(client_id, order_id)``. Returns True when a working order was cancelled.

        Unknown ids get error 10147, finished orders 10148 (as OrderError events).
        """
        with self._lock:
            order = self._orders.get((client_id, order_id))
            if order is None:
                self._emit(OrderError(client_id, order_id, 10147,
                                      f"OrderId {order_id} that needs to be cancelled is not "
                                      "found."))
                return False
            if order.is_done:
                self._emit(OrderError(client_id, order_id, 10148,
                                      f"OrderId {order_id} that needs to be cancelled cannot "
                                      f"be cancelled, state: {order.status}."))
                return False
            self._cancel(order, "Cancelled by Trader", notify_202=True)
            return True

    def global_cancel(self) -> int:
        """Cancel every working order of every client; return how many were cancelled."""
        with self._lock:
            working = [o for o in self._sorted_orders() if not o.is_done]
            for order in working:
                if not order.is_done:
                    self._cancel(order, "Cancelled by Trader", notify_202=True)
            return len(working)

    # ---------------------------------------------------------------- queries

    def _sorted_orders(self) -> list[SimOrder]:
        return sorted(self._orders.values(), key=lambda o: o.perm_id)

    def get_order(self, client_id: int, order_id: int) -> SimOrder | None:
        """Return the order ``(client_id, order_id)`` or None."""
        with self._lock:
            return self._orders.get((client_id, order_id))

    def open_orders(self, client_id: int | None = None) -> list[SimOrder]:
        """Return working orders (all clients, or only ``client_id``'s), oldest first."""
        with self._lock:
            return [o for o in self._sorted_orders()
                    if not o.is_done and (client_id is None or o.client_id == client_id)]

    def completed_orders(self) -> list[SimOrder]:
        """Return Filled and Cancelled orders, oldest first."""
        with self._lock:
            return [o for o in self._sorted_orders() if o.is_done]

    def executions(
        self,
        client_id: int = 0,
        acct_code: str = "",
        time_from: str = "",
        symbol: str = "",
        sec_type: str = "",
        exchange: str = "",
        side: str = "",
    ) -> list[SimExecution]:
        """Return executions matching an IB ExecutionFilter (empty/0 fields match all).

        ``time_from`` is "YYYYMMDD HH:MM:SS [Zone]"; ``side`` BUY/SELL (or BOT/SLD).
        """
        with self._lock:
            since = None
            if time_from:
                try:
                    since = parse_ib_datetime(time_from, "UTC")
                except ValueError:
                    since = None
            want_side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
            out = []
            for ex in self._executions:
                if client_id and ex.client_id != client_id:
                    continue
                if acct_code and ex.account != acct_code:
                    continue
                if since is not None and ex.time < since:
                    continue
                if symbol and ex.contract.symbol.upper() != symbol.upper():
                    continue
                if sec_type and ex.contract.secType.upper() != sec_type.upper():
                    continue
                if exchange and ex.exchange.upper() != exchange.upper():
                    continue
                if want_side and ex.side != want_side:
                    continue
                out.append(ex)
            return out

    def positions(self) -> list[SimPosition]:
        """Return every position ever held (closed ones with position 0), by conId."""
        with self._lock:
            return [replace(p) for _, p in sorted(self._positions.items())]

    def active_conids(self) -> set[int]:
        """Return conIds with working orders or a non-zero position."""
        with self._lock:
            ids = {o.contract.conId for o in self._orders.values() if not o.is_done}
            ids |= {c for c, p in self._positions.items() if p.position}
            return ids

    def _mark(self, contract: SimContract) -> float:
        q = self._last_quote.get(contract.conId) or self.quote(contract)
        if q is None:
            pos = self._positions.get(contract.conId)
            mult = _multiplier(contract)
            return pos.avg_cost / mult if pos and pos.position else 0.0
        return q.last if q.last and q.last > 0 else q.close

    def portfolio(self) -> list[PortfolioItem]:
        """Return one PortfolioItem per position ever held (closed ones report 0)."""
        with self._lock:
            return [self._portfolio_item(p) for _, p in sorted(self._positions.items())]

    def portfolio_item(self, contract: SimContract) -> PortfolioItem | None:
        """Return the PortfolioItem for ``contract`` or None when never held."""
        with self._lock:
            pos = self._positions.get(contract.conId)
            return self._portfolio_item(pos) if pos else None

    def _portfolio_item(self, pos: SimPosition) -> PortfolioItem:
        mult = _multiplier(pos.contract)
        price = self._mark(pos.contract)
        value = pos.position * price * mult
        unreal = value - pos.position * pos.avg_cost if pos.position else 0.0
        return PortfolioItem(pos.contract, pos.position, price, value, pos.avg_cost,
                             unreal, pos.realized_pnl)

    def account_numbers(self) -> dict[str, float]:
        """Return the account's numbers: NetLiquidation, TotalCashValue, margins, PnL..."""
        with self._lock:
            items = [self._portfolio_item(p) for p in self._positions.values()]
            gross = sum(abs(i.market_value) for i in items)
            market = sum(i.market_value for i in items)
            unreal = sum(i.unrealized_pnl for i in items)
            net = self.cash + market
            margin = gross * self.margin_rate
            available = net - margin
            return {
                "NetLiquidation": net,
                "TotalCashValue": self.cash,
                "SettledCash": self.cash,
                "CashBalance": self.cash,
                "AccruedCash": 0.0,
                "GrossPositionValue": gross,
                "StockMarketValue": market,
                "EquityWithLoanValue": net,
                "InitMarginReq": margin,
                "MaintMarginReq": margin,
                "FullInitMarginReq": margin,
                "FullMaintMarginReq": margin,
                "AvailableFunds": available,
                "FullAvailableFunds": available,
                "ExcessLiquidity": available,
                "FullExcessLiquidity": available,
                "BuyingPower": available / self.margin_rate if self.margin_rate else available,
                "UnrealizedPnL": unreal,
                "RealizedPnL": self._realized_total,
                "Leverage-S": gross / net if net else 0.0,
            }

    def account_values(self) -> list[tuple[str, str, str]]:
        """Return (key, value, currency) rows as reqAccountUpdates reports them.

        Money values come twice, with currency USD and BASE; a few are currency-less.
        """
        with self._lock:
            nums = self.account_numbers()
            rows: list[tuple[str, str, str]] = [
                ("AccountCode", self.account, ""),
                ("AccountType", "INDIVIDUAL", ""),
                ("AccountReady", "true", ""),
                ("Currency", self.currency, self.currency),
                ("Currency", "BASE", "BASE"),
                ("ExchangeRate", "1.00", self.currency),
                ("ExchangeRate", "1.00", "BASE"),
                ("DayTradesRemaining", "-1", ""),
            ]
            for key, value in nums.items():
                if key == "Leverage-S":
                    rows.append((key, f"{value:.2f}", ""))
                    continue
                for ccy in (self.currency, "BASE"):
                    rows.append((key, f"{value:.2f}", ccy))
            return rows

    def account_summary(self, tags: str) -> list[tuple[str, str, str]]:
        """Return (tag, value, currency) for a reqAccountSummary ``tags`` string.

        Unknown tags are skipped; "$LEDGER"/"$LEDGER:ALL"/"$LEDGER:USD" give the ledger rows.
        """
        with self._lock:
            nums = self.account_numbers()
            out: list[tuple[str, str, str]] = []
            for tag in [t.strip() for t in tags.split(",") if t.strip()]:
                if tag.startswith("$LEDGER"):
                    for key in ("CashBalance", "TotalCashValue", "NetLiquidation",
                                "UnrealizedPnL", "RealizedPnL", "StockMarketValue"):
                        out.append((key, f"{nums[key]:.2f}", self.currency))
                elif tag == "AccountType":
                    out.append((tag, "INDIVIDUAL", ""))
                elif tag == "Cushion":
                    net = nums["NetLiquidation"]
                    out.append((tag, f"{nums['ExcessLiquidity'] / net if net else 0:.4f}", ""))
                elif tag in ("DayTradesRemaining",):
                    out.append((tag, "-1", ""))
                elif tag == "Leverage":
                    out.append((tag, f"{nums['Leverage-S']:.2f}", ""))
                elif tag in ("LookAheadNextChange", "HighestSeverity", "SegmentTitle"):
                    out.append((tag, "0", ""))
                else:
                    key = tag
                    if tag.startswith("LookAhead"):
                        key = tag[len("LookAhead"):]
                    if key in nums:
                        out.append((tag, f"{nums[key]:.2f}", self.currency))
            return out

    def pnl(self) -> tuple[float, float, float]:
        """Return (dailyPnL, unrealizedPnL, realizedPnL) for the account."""
        with self._lock:
            nums = self.account_numbers()
            daily = nums["NetLiquidation"] - self._day_start_value(nums["NetLiquidation"])
            return daily, nums["UnrealizedPnL"], nums["RealizedPnL"]

    def pnl_single(self, con_id: int) -> tuple[float, float, float, float, float]:
        """Return (position, dailyPnL, unrealizedPnL, realizedPnL, value) for one conId."""
        with self._lock:
            pos = self._positions.get(con_id)
            if pos is None:
                return 0.0, 0.0, 0.0, 0.0, 0.0
            item = self._portfolio_item(pos)
            return (item.position, item.unrealized_pnl, item.unrealized_pnl,
                    item.realized_pnl, item.market_value)

    def _day_start_value(self, current: float) -> float:
        self._touch_day(current)
        return self._day_start[1]  # type: ignore[index]

    def _touch_day(self, current: float | None = None) -> None:
        """Record the NetLiquidation at the first event of each UTC day (for dailyPnL)."""
        today = self._now().date()
        if self._day_start is None or self._day_start[0] != today:
            if current is None:
                current = self.account_numbers()["NetLiquidation"]
            self._day_start = (today, current)

    # ---------------------------------------------------------------- validation

    def _check_fault(self) -> None:
        fault = getattr(self.faults, "reject_next_order", None) if self.faults else None
        if not fault:
            return
        try:
            self.faults.reject_next_order = None  # type: ignore[union-attr]
        except AttributeError:
            pass
        if isinstance(fault, tuple) and len(fault) == 2:
            raise OrderRejectedError(str(fault[1]), int(fault[0]))
        raise OrderRejectedError(str(fault) if isinstance(fault, str) else "simulated reject")

    def _validate(self, spec: OrderSpec) -> None:
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
        if spec.account and spec.account != self.account:
            raise OrderRejectedError(
                f"Account {spec.account!r} is not managed by this login ({self.account})")
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

    # ---------------------------------------------------------------- life cycle

    def _new_order(self, client_id, order_id, contract, spec, contract_spec) -> SimOrder | None:
        parent = None
        if spec.parentId:
            parent = self._orders.get((client_id, spec.parentId))
            if parent is None:
                self._emit(OrderError(client_id, order_id, 201,
                                      f"Order rejected - reason:Parent order {spec.parentId} "
                                      "not found"))
                return None
            if parent.status == "Cancelled":
                self._emit(OrderError(client_id, order_id, 201,
                                      "Order rejected - reason:Parent order is cancelled"))
                return None
        order = SimOrder(client_id=client_id, order_id=order_id, perm_id=next(self._perm_ids),
                         contract=contract, spec=spec, contract_spec=contract_spec,
                         placed_at=self._now())
        self._orders[(client_id, order_id)] = order
        if order.spec.tif.upper() == "GTD" and self._expired(order):
            self._cancel(order, "Expired")
            return order
        order.transmitted = spec.transmit
        order.active = parent is None or parent.status == "Filled"
        if not spec.transmit:
            order.status = "PreSubmitted"
            self._order_updated(order)
            return order
        # transmit=True releases the whole group (parent + children placed so far)
        released = sorted((m for m in self._group_of(order) if not m.transmitted or m is order),
                          key=lambda o: o.perm_id)
        for member in released:
            member.transmitted = True
        for member in released:
            self._activate_status(member)
        # one price event per release: children activated by a fill here were already tried
        for member in [m for m in released if m.active]:
            if not member.is_done:
                self._on_place_fill(member)
        return order

    def _group_of(self, order: SimOrder) -> list[SimOrder]:
        root_id = order.parent_id or order.order_id
        members = [o for o in self._orders.values()
                   if o.client_id == order.client_id and not o.is_done
                   and (o.order_id == root_id or o.parent_id == root_id)]
        return members or [order]

    def _activate_status(self, order: SimOrder) -> None:
        if order.is_done:
            return
        order.status = "Submitted" if order.active and order.transmitted else "PreSubmitted"
        self._init_trail(order)
        self._order_updated(order)

    def _modify(self, order: SimOrder, spec: OrderSpec) -> SimOrder | None:
        if order.is_done:
            # IB answers a reused id of a finished order with 103 (e.g. after nextValidId
            # rolled back on a gateway restart)
            self._emit(OrderError(order.client_id, order.order_id, 103,
                                  f"Duplicate order id {order.order_id} (order already "
                                  f"{order.status})"))
            return None
        if spec.totalQuantity < order.filled:
            self._emit(OrderError(order.client_id, order.order_id, 201,
                                  "Order rejected - reason:The new quantity is below the "
                                  f"filled quantity {order.filled}"))
            return None
        spec.parentId = order.spec.parentId
        old = order.spec
        order.spec = spec
        trail_keys = ("orderType", "auxPrice", "trailingPercent", "trailStopPrice")
        if any(getattr(old, k) != getattr(spec, k) for k in trail_keys):
            order.trail_stop = None
            order.triggered = False
        if spec.transmit and not order.transmitted:
            released = sorted((m for m in self._group_of(order) if not m.transmitted),
                              key=lambda o: o.perm_id)
            for member in released:
                member.transmitted = True
            for member in released:
                self._activate_status(member)
        else:
            self._init_trail(order)
            self._order_updated(order)
        if order.active and order.transmitted and not order.is_done:
            self._on_place_fill(order)
        return order

    def _cancel(self, order: SimOrder, reason: str, notify_202: bool = False) -> None:
        if order.is_done:
            return
        order.status = "Cancelled"
        order.completed_at = self._now()
        order.completed_status = reason
        self._order_updated(order)
        if notify_202:
            self._emit(OrderError(order.client_id, order.order_id, 202,
                                  "Order Canceled - reason:"))
        for child in self._children(order):
            self._cancel(child, "Parent cancelled")

    def _children(self, order: SimOrder) -> list[SimOrder]:
        return sorted((o for o in self._orders.values()
                       if o.client_id == order.client_id and o.parent_id == order.order_id
                       and o.parent_id), key=lambda o: o.perm_id)

    def _expired(self, order: SimOrder) -> bool:
        if order.spec.tif.upper() != "GTD" or not order.spec.goodTillDate:
            return False
        tz = order.contract.timeZoneId or "UTC"
        return self._now() >= parse_ib_datetime(order.spec.goodTillDate, tz)

    # ---------------------------------------------------------------- pricing

    def _init_trail(self, order: SimOrder) -> None:
        otype = order.spec.orderType.upper()
        if otype not in ("TRAIL", "TRAIL LIMIT") or order.trail_stop is not None:
            return
        if order.spec.trailStopPrice is not None:
            order.trail_stop = order.spec.trailStopPrice
            return
        q = self._current_quote(order.contract)
        if q is None:
            return
        ref = q.last if q.last and q.last > 0 else q.close
        order.trail_stop = self._trail_from(order, ref)

    def _trail_from(self, order: SimOrder, ref: float) -> float:
        spec = order.spec
        if spec.trailingPercent is not None and spec.trailingPercent > 0:
            offset = ref * spec.trailingPercent / 100.0
        else:
            offset = spec.auxPrice or 0.0
        return ref - offset if not order.is_buy else ref + offset

    def _trail_limit(self, order: SimOrder, stop: float) -> float:
        offset = order.spec.lmtPriceOffset or 0.0
        return stop + offset if order.is_buy else stop - offset

    def _on_place_fill(self, order: SimOrder) -> None:
        """Immediate mode: fill a marketable order against the current quote."""
        tif = order.spec.tif.upper()
        if self.fill_mode != "immediate":
            return
        if self.is_open is not None and not self.is_open(order.contract):
            return  # market closed: the order waits for the next session's first bar
        q = self._current_quote(order.contract)
        if q is None:
            return
        price = self._quote_fill_price(order, q)
        if price is not None:
            self._fill(order, price)
        if tif == "IOC" and not order.is_done:
            self._cancel(order, "IOC remainder cancelled")

    def _quote_fill_price(self, order: SimOrder, q: Quote) -> float | None:
        otype = order.spec.orderType.upper()
        buy = order.is_buy
        last = q.last if q.last and q.last > 0 else q.close
        touch = (q.ask if q.ask and q.ask > 0 else last) if buy else (
            q.bid if q.bid and q.bid > 0 else last)
        if otype == "MOC":
            return None
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
                    order.spec.lmtPrice = self._trail_limit(order, stop)
            if otype == "TRAIL":
                return touch
            lmt = order.spec.lmtPrice
            return touch if (touch <= lmt if buy else touch >= lmt) else None
        return None

    def _bar_fill_price(self, order: SimOrder, b: Quote) -> float | None:
        """Return the fill price of ``order`` on bar ``b`` or None (see module rules)."""
        otype = order.spec.orderType.upper()
        buy = order.is_buy
        if otype == "MKT":
            return b.open
        if otype == "MOC":
            return None
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
                order.trail_stop = self._trail_from(order, b.open)
            if order.triggered:
                if otype == "TRAIL":
                    return b.open
                return _limit_on_bar(buy, order.spec.lmtPrice, b)
            trigger = _stop_on_bar(buy, order.trail_stop, b)
            if trigger is None:
                extreme = b.low if buy else b.high
                new = self._trail_from(order, extreme)
                order.trail_stop = min(order.trail_stop, new) if buy else max(
                    order.trail_stop, new)
                return None
            order.triggered = True
            if otype == "TRAIL":
                return trigger
            order.spec.lmtPrice = self._trail_limit(order, order.trail_stop)
            return _after_trigger(buy, trigger, order.spec.lmtPrice, b)
        return None

    # ---------------------------------------------------------------- bars

    def on_bar(self, contract: SimContract, quote: Quote, session_end: bool | None = None
               ) -> None:
        """Advance the engine by one bar of ``contract``: fills, expiries, revaluation.

        ``session_end`` True/False overrides the session-close detection for this bar
        (pass True for a daily bar); None = detect from the bar's local time.
        """
        with self._lock:
            self._touch_day()
            con_id = contract.conId
            tz = self._tz(contract)
            bar_time = quote.time if isinstance(quote.time, datetime) else self._now()
            if bar_time.tzinfo is None:
                bar_time = bar_time.replace(tzinfo=UTC)
            local = bar_time.astimezone(tz)
            closed = self._closed_dates.setdefault(con_id, set())
            prev_date = self._last_bar_date.get(con_id)
            prev_quote = self._last_quote.get(con_id)
            if prev_date is not None and local.date() > prev_date and prev_date not in closed:
                closed.add(prev_date)
                if prev_quote is not None:
                    self._session_close(contract, prev_quote)
            self._last_bar_date[con_id] = local.date()
            self._last_quote[con_id] = quote

            working = [o for o in self._sorted_orders()
                       if o.contract.conId == con_id and not o.is_done and o.active
                       and o.transmitted]
            for order in working:
                if order.is_done or not order.active:
                    continue
                if self._expired(order):
                    self._cancel(order, "Expired")
                    continue
                order.bars_seen += 1
                price = self._bar_fill_price(order, quote)
                if price is not None:
                    self._fill(order, price, when=bar_time)
                if order.spec.tif.upper() == "IOC" and not order.is_done:
                    self._cancel(order, "IOC remainder cancelled")

            if session_end is not None:
                is_close = session_end
            elif self.is_session_end is not None:
                is_close = self.is_session_end(contract, bar_time)
            else:
                is_close = local.time() >= self.session_close
            closing_now = is_close and local.date() not in closed
            if closing_now:
                closed.add(local.date())
                self._session_close(contract, quote)

            last_push = self._last_revalue.get(con_id)
            # throttled on price moves, but always at the session's close: a strategy deciding
            # at the close reads NetLiquidation marked to the closing price
            due = closing_now or last_push is None or (
                (bar_time - last_push).total_seconds() >= self.revalue_interval)
            if due and con_id in self._positions and self._positions[con_id].position:
                self._last_revalue[con_id] = bar_time
                self._emit(PortfolioRevalued(contract))
                self._emit(AccountChanged(self.account_values()))

    def _session_close(self, contract: SimContract, bar: Quote) -> None:
        for order in [o for o in self._sorted_orders()
                      if o.contract.conId == contract.conId and not o.is_done]:
            if order.is_done or not order.active or not order.transmitted:
                continue
            if order.bars_seen < 1:
                continue
            if order.spec.orderType.upper() == "MOC":
                self._fill(order, bar.close, when=bar.time if isinstance(
                    bar.time, datetime) else None, all_qty=True)
            elif order.spec.tif.upper() in ("", "DAY", "OPG"):
                self._cancel(order, "Expired (end of day)")

    # ---------------------------------------------------------------- fills

    def _fill(self, order: SimOrder, price: float, when: datetime | None = None,
              all_qty: bool = False) -> None:
        qty = order.remaining
        if self.partial_fill_qty and not all_qty:
            qty = min(qty, self.partial_fill_qty)
        if qty <= 0:
            return
        when = when or self._now()
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        mult = _multiplier(order.contract)
        before_comm = order.commission_paid
        order.filled_value += qty * price
        order.filled += qty
        total_comm = self._commission(order.filled, order.filled_value * mult)
        commission = round(total_comm - before_comm, 8)
        order.commission_paid = total_comm
        order.avg_fill_price = order.filled_value / order.filled
        order.last_fill_price = price
        signed = qty if order.is_buy else -qty
        realized = self._apply_position(order.contract, signed, price, commission)
        self.cash -= signed * price * mult + commission
        ex = SimExecution(
            exec_id=f"{self._exec_prefix}.{next(self._exec_seq):08x}.01.01",
            order_id=order.order_id, client_id=order.client_id, perm_id=order.perm_id,
            contract=order.contract,
            exchange=order.contract.primaryExchange or order.contract.exchange,
            time=when, account=order.spec.account or self.account,
            side="BOT" if order.is_buy else "SLD", shares=qty, price=price,
            cum_qty=order.filled, avg_price=order.avg_fill_price,
            order_ref=order.spec.orderRef, commission=commission, currency=self.currency,
            realized_pnl=realized)
        self._executions.append(ex)
        if order.remaining <= 1e-9:
            order.status = "Filled"
            order.completed_at = when
            order.completed_status = f"Filled Size: {_num(order.filled)}"
        else:
            order.status = "Submitted"
        self._emit(Executed(order.client_id, replace(order), ex))
        self._order_updated(order)
        pos = self._positions[order.contract.conId]
        self._emit(PositionChanged(order.contract, pos.position, pos.avg_cost))
        self._emit(AccountChanged(self.account_values()))
        self._after_fill(order, qty)

    def _commission(self, qty: float, value: float) -> float:
        fee = max(qty * self.commission_per_share, self.min_commission)
        if self.max_commission_pct:
            fee = min(fee, self.max_commission_pct * value)
        return fee

    def _apply_position(self, contract: SimContract, signed: float, price: float,
                        commission: float) -> float | None:
        """Update the position; return realized PnL (None when nothing was closed)."""
        mult = _multiplier(contract)
        pos = self._positions.setdefault(contract.conId, SimPosition(contract))
        old = pos.position
        if old == 0 or (old > 0) == (signed > 0):
            total_cost = old * pos.avg_cost + signed * price * mult + commission
            pos.position = old + signed
            pos.avg_cost = total_cost / pos.position if pos.position else 0.0
            return None
        closing = min(abs(signed), abs(old)) * _sign(signed)
        opening = signed - closing
        comm_close = commission * abs(closing) / abs(signed)
        comm_open = commission - comm_close
        # closing a long: sell proceeds - cost basis; closing a short: basis - buy cost
        realized = (-closing) * (price * mult - pos.avg_cost) - comm_close
        pos.position = old + closing
        pos.realized_pnl += realized
        self._realized_total += realized
        if abs(pos.position) < 1e-12:
            pos.position = 0.0
            pos.avg_cost = 0.0
        if opening:
            pos.position = opening
            pos.avg_cost = (opening * price * mult + comm_open) / opening
        return realized

    def _after_fill(self, order: SimOrder, qty: float) -> None:
        # bracket children activate once the parent is completely filled
        if order.status == "Filled":
            for child in self._children(order):
                if not child.active and not child.is_done:
                    child.active = True
                    self._activate_status(child)
                    if child.transmitted and self.fill_mode == "immediate":
                        self._on_place_fill(child)
        # siblings of a bracket child behave as an OCA group with reduction
        if order.parent_id:
            parent = self._orders.get((order.client_id, order.parent_id))
            siblings = [o for o in self._children(parent) if o is not order] if parent else []
            self._oca_apply(order, siblings, 3 if order.status != "Filled" else 1, qty)
        if order.spec.ocaGroup:
            members = [o for o in self._sorted_orders()
                       if o is not order and not o.is_done
                       and o.spec.ocaGroup == order.spec.ocaGroup
                       and (o.spec.account or self.account) == (order.spec.account
                                                                 or self.account)]
            self._oca_apply(order, members, order.spec.ocaType or 1, qty)

    def _oca_apply(self, order: SimOrder, others: list[SimOrder], oca_type: int,
                   qty: float) -> None:
        for other in others:
            if other.is_done:
                continue
            if oca_type == 1:
                self._cancel(other, f"OCA: order {order.order_id} filled")
            else:
                other.spec = replace(other.spec,
                                     totalQuantity=max(other.spec.totalQuantity - qty,
                                                       other.filled))
                if other.remaining <= 1e-9:
                    self._cancel(other, f"OCA: reduced to zero by order {order.order_id}")
                else:
                    self._order_updated(other)

    # ---------------------------------------------------------------- what-if

    def _what_if(self, client_id: int, order_id: int, contract: SimContract,
                 spec: OrderSpec) -> SimOrder:
        q = self._current_quote(contract)
        price = spec.lmtPrice or spec.auxPrice or 0.0
        if q is not None:
            last = q.last if q.last and q.last > 0 else q.close
            price = spec.lmtPrice if spec.orderType.upper() == "LMT" and spec.lmtPrice else last
        mult = _multiplier(contract)
        nums = self.account_numbers()
        pos = self._positions.get(contract.conId)
        held = pos.position if pos else 0.0
        signed = spec.totalQuantity if spec.action.upper() == "BUY" else -spec.totalQuantity
        gross_change = (abs(held + signed) - abs(held)) * price * mult
        margin_change = gross_change * self.margin_rate
        commission = self._commission(spec.totalQuantity, spec.totalQuantity * price * mult)
        init_before = nums["InitMarginReq"]
        ewl_before = nums["EquityWithLoanValue"]
        state = OrderStateInfo(
            status="PreSubmitted",
            initMarginBefore=_money(init_before),
            maintMarginBefore=_money(nums["MaintMarginReq"]),
            equityWithLoanBefore=_money(ewl_before),
            initMarginChange=_money(margin_change),
            maintMarginChange=_money(margin_change),
            equityWithLoanChange=_money(-commission),
            initMarginAfter=_money(init_before + margin_change),
            maintMarginAfter=_money(nums["MaintMarginReq"] + margin_change),
            equityWithLoanAfter=_money(ewl_before - commission),
            commission=commission,
            minCommission=commission,
            maxCommission=commission,
            commissionCurrency=self.currency,
        )
        order = _WhatIfOrder(client_id=client_id, order_id=order_id, perm_id=0,
                             contract=contract, spec=spec, status="PreSubmitted")
        order.state = state
        return order


@dataclass
class _WhatIfOrder(SimOrder):
    """A whatIf answer: never stored, carries the margin/commission numbers."""

    state: OrderStateInfo | None = None

    def order_state(self) -> OrderStateInfo:
        """Return the margin/commission block computed for the whatIf."""
        return self.state or OrderStateInfo(status=self.status)


# --------------------------------------------------------------------------- helpers


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


def _multiplier(contract: SimContract) -> float:
    try:
        return float(contract.multiplier) if contract.multiplier else 1.0
    except ValueError:
        return 1.0


def _sign(x: float) -> float:
    return 1.0 if x > 0 else -1.0 if x < 0 else 0.0


def _money(x: float) -> str:
    return f"{x:.2f}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


__all__ = [
    "AccountChanged", "Executed", "OrderError", "OrderRejected", "OrderUpdated",
    "PortfolioItem", "PortfolioRevalued", "PositionChanged", "SimBroker", "SimExecution",
    "SimOrder", "SimPosition", "parse_ib_datetime",
]
