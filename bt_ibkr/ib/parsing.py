"""IB client objects -> bt_ibkr's dataclasses and frames (ib_async and ib_insync, duck-typed).

* bars: :func:`bars_frame` (historical ``BarData`` -> the canonical bar frame of
  :mod:`bt_ibkr.validation`), :func:`frame_bars` (canonical frame -> :class:`Bar` list stamped
  the way backtrader stamps), :func:`bar_stamp`, :func:`realtime_bar`, :func:`tick_bar`;
* orders and executions: :class:`OrderSnapshot`, :class:`Fill` / :class:`ExecSnapshot`,
  :func:`order_snapshot` (a ``Trade``), :func:`exec_snapshot` (a ``Fill``), :func:`normalize_side`.

Nothing here imports the client library: the objects are read by attribute name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any

import pandas as pd

from bt_ibkr.ib.bars import BAR_SECONDS, is_intraday
from bt_ibkr.ib.events import Bar
from bt_ibkr.utc import naive_utc, to_utc

if TYPE_CHECKING:
    from ib_async import Contract, Trade
    from ib_async import Fill as IBFill

#: IB sends 1.7976931348623157E308 (UNSET_DOUBLE) for "no value"
UNSET = 1e300
#: backtrader's default session end (DataBase.p.sessionend)
DEFAULT_SESSIONEND = dtime(23, 59, 59, 999990)


def finite(x: Any) -> float:
    """Return ``x`` as a float, or 0.0 when it is missing, NaN, infinite or IB's UNSET."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return 0.0
    return x if math.isfinite(x) and abs(x) < UNSET else 0.0


# ------------------------------------------------------------------ bars
def bar_stamp(value: datetime | date, daily: bool, tz: Any = None,
              sessionend: dtime | None = None, length: int = 0) -> datetime:
    """Return the naive-UTC stamp of a bar: intraday bars at their END (IB stamps the start;
    backtrader stamps bars at their close), daily bars at ``sessionend`` in ``tz`` (a pytz or
    zoneinfo zone; None = UTC). Raises TypeError for a value that is not a date/datetime."""
    if isinstance(value, datetime) and not daily:
        return naive_utc(value) + timedelta(seconds=length)
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise TypeError(f"unexpected bar date {value!r}")
    dt = datetime.combine(value, sessionend or DEFAULT_SESSIONEND)
    if tz is not None:
        dt = tz.localize(dt) if hasattr(tz, "localize") else dt.replace(tzinfo=tz)
        dt = naive_utc(dt)
    return dt


def bars_frame(bars: list, intraday: bool) -> pd.DataFrame:
    """Return IB's historical bars (``formatDate=2``) as a canonical bar frame: intraday
    indexed by the bar's start in UTC, daily by session date; NaN volume reads 0."""
    if not bars:
        return pd.DataFrame(columns=["open", "high", "low", "close", "volume"], dtype=float)
    stamps = [b.date for b in bars]
    if intraday:
        index = pd.DatetimeIndex([to_utc(s) for s in stamps]).tz_convert("UTC")
    else:
        index = pd.DatetimeIndex([pd.Timestamp(s.date() if isinstance(s, datetime) else s)
                                  for s in stamps])
    frame = pd.DataFrame(
        {"open": [float(b.open) for b in bars], "high": [float(b.high) for b in bars],
         "low": [float(b.low) for b in bars], "close": [float(b.close) for b in bars],
         "volume": [max(0.0, finite(b.volume)) for b in bars]},
        index=index)
    frame.index.name = "datetime"
    return frame


def frame_bars(frame: pd.DataFrame, bar_size: str, tz: Any = None,
               sessionend: dtime | None = None) -> list[Bar]:
    """Return a canonical frame's rows as :class:`Bar` items stamped like :func:`bar_stamp`
    (intraday: start + bar length in UTC; daily and longer: the session end in ``tz``)."""
    intraday = is_intraday(bar_size)
    length = BAR_SECONDS[bar_size]
    out = []
    for ts, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        value = ts.to_pydatetime() if intraday else ts.date()
        out.append(Bar(bar_stamp(value, not intraday, tz, sessionend, length), float(row.open),
                       float(row.high), float(row.low), float(row.close),
                       max(0.0, finite(row.volume))))
    return out


def realtime_bar(b: Any) -> Bar:
    """Return IB's 5-second ``RealTimeBar`` as a Bar stamped at its close."""
    end = naive_utc(b.time) + timedelta(seconds=5)
    return Bar(end, float(b.open_), float(b.high), float(b.low), float(b.close),
               max(0.0, finite(b.volume)))


def tick_bar(tick: Any, when: datetime, price: float) -> Bar:
    """Return one tick (``TickData``) of ``price`` at ``when`` as a Bar with o=h=l=c."""
    return Bar(naive_utc(when), price, price, price, price, max(0.0, finite(tick.size)))


# ------------------------------------------------------------------ orders and executions
def normalize_side(side: str) -> str:
    """Return ``"BUY"`` or ``"SELL"`` for BUY/SELL/BOT/SLD (any case); raise ValueError otherwise."""
    s = str(side).strip().upper()
    if s in ("BUY", "BOT", "B"):
        return "BUY"
    if s in ("SELL", "SLD", "S", "SSHORT"):
        return "SELL"
    raise ValueError(f"side {side!r}: expected BUY or SELL (or IB's BOT / SLD)")


@dataclass
class Fill:
    """One execution (``execDetails``), identified by IB's ``execId``."""

    exec_id: str
    order_ref: str | None
    symbol: str
    side: str
    shares: float
    price: float
    time: datetime
    commission: float | None = None
    order_id: int | None = None
    perm_id: int | None = None


@dataclass
class OrderSnapshot:
    """An order as the gateway reports it (open or completed orders), for reconciling."""

    order_ref: str
    order_id: int | None
    status: str
    symbol: str
    side: str
    quantity: float
    filled: float = 0.0
    perm_id: int | None = None
    avg_price: float | None = None
    order_type: str = ""
    #: the API client that placed it (IB streams its events to that client alone, and to the
    #: Master API client ID); 0 is clientId 0 or a manual TWS order; None: not reported (IB's
    #: completedOrder message carries no clientId)
    client_id: int | None = None


@dataclass
class ExecSnapshot(Fill):
    """An execution as the gateway reports it (``reqExecutions``), for reconciling: the same
    fields as a journaled :class:`Fill`."""


def contract_symbol(contract: Contract) -> str:
    """Return the symbol bt_ibkr files a contract under: an option's (OPT/FOP) IB local symbol
    (OCC's ``SPY   240119C00470000``: its underlying's symbol would mix it with the stock),
    else ``symbol``, else ``localSymbol``."""
    local = getattr(contract, "localSymbol", "") or ""
    if local and getattr(contract, "secType", "") in ("OPT", "FOP"):
        return local
    return getattr(contract, "symbol", "") or local or "?"


def order_snapshot(trade: Trade,
                   symbol_of: Callable[[Any], str] = contract_symbol) -> OrderSnapshot:
    """Return the :class:`OrderSnapshot` of a ``Trade`` (``ib.openTrades()``,
    ``reqAllOpenOrders()``, ``reqCompletedOrders()``); ``symbol_of(contract)`` names its symbol.
    """
    order, status = trade.order, trade.orderStatus
    avg = getattr(status, "avgFillPrice", 0.0) or None
    return OrderSnapshot(
        order_ref=getattr(order, "orderRef", "") or "",
        order_id=getattr(order, "orderId", None) or getattr(status, "orderId", None) or None,
        status=getattr(status, "status", "") or "",
        symbol=symbol_of(trade.contract),
        side=order.action,
        quantity=float(order.totalQuantity),
        # a completed order's status holds no quantities: its order says what filled
        filled=finite(getattr(status, "filled", 0.0)) or finite(getattr(order, "filledQuantity",
                                                                        0.0)),
        perm_id=getattr(order, "permId", None) or getattr(status, "permId", None) or None,
        avg_price=avg if avg is not None and avg < UNSET else None,
        order_type=getattr(order, "orderType", "") or "",
        client_id=getattr(order, "clientId", None),
    )


def exec_snapshot(fill: IBFill,
                  symbol_of: Callable[[Any], str] = contract_symbol) -> ExecSnapshot:
    """Return the :class:`ExecSnapshot` of a client ``Fill`` (``ib.fills()``,
    ``reqExecutions()``); the commission is None until IB's commission report has arrived."""
    ex = fill.execution
    report = getattr(fill, "commissionReport", None)
    commission = None
    if report is not None and getattr(report, "execId", None) and report.commission < UNSET:
        commission = float(report.commission)
    return ExecSnapshot(
        exec_id=ex.execId,
        order_ref=getattr(ex, "orderRef", "") or None,
        symbol=symbol_of(fill.contract),
        side=normalize_side(ex.side),
        shares=float(ex.shares),
        price=float(ex.price),
        time=getattr(ex, "time", None) or fill.time,
        commission=commission,
        order_id=getattr(ex, "orderId", None) or None,
        perm_id=getattr(ex, "permId", None) or None,
    )
