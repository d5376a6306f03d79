"""Market-data wire codec: the server->client messages of contracts, history, bars and ticks.

Every ``*_fields`` encoder returns the field list (message id first) for ``wire.frame()``, in
the shape the installed clients' decoders read (ib_async 2.1.0, ib_insync 0.9.86). The order
side's encoders are in :mod:`~bt_ibkr.gateway_sim.order_codec`.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from bt_ibkr.gateway_sim.marketdata import Bar, format_bar_time
from bt_ibkr.gateway_sim.model import SimContract


def contract_details_fields(c: SimContract, req_id: int, version: int) -> list:
    """Return contractDetails (10) for ``c`` in the shape the client decodes at ``version``.

    < 164: a version field after the id and mdSizeMultiplier after minTick; 163 adds
    suggestedSizeIncrement; >= 164: minSize, sizeIncrement, suggestedSizeIncrement.
    """
    fields: list = [10]
    if version < 164:
        fields.append(8)
    fields += [req_id, c.symbol, c.secType, c.lastTradeDateOrContractMonth, c.strike, c.right,
               c.exchange, c.currency, c.localSymbol, c.tradingClass, c.tradingClass, c.conId,
               c.minTick]
    if version < 164:
        fields.append("")  # mdSizeMultiplier
    contract_month = (c.contractMonth or c.lastTradeDateOrContractMonth[:6]) \
        if c.secType == "FUT" else ""
    fields += [c.multiplier, c.orderTypes, c.validExchanges, 1, 0, c.longName,
               c.primaryExchange, contract_month, c.industry, c.category, c.subcategory,
               c.timeZoneId, c.tradingHours, c.liquidHours, "", "", 0,
               1, "", "", "26" if c.secType == "STK" else "", c.lastTradeDateOrContractMonth,
               c.stockType]
    if version == 163:
        fields.append(1.0)
    if version >= 164:
        increment = 1.0 if c.secType != "CASH" else 1.0
        fields += [1.0, increment, 100.0 if c.secType == "STK" else 1.0]
    return fields


def historical_data_fields(req_id: int, bars: list[Bar], tz_name: str, format_date: int,
                           end: int) -> list:
    """Return historicalData (17): start/end text, bar count and 8 fields per bar."""
    tz = ZoneInfo(tz_name)
    start_text = (datetime.fromtimestamp(bars[0].start, tz).strftime("%Y%m%d %H:%M:%S")
                  if bars else "")
    end_text = datetime.fromtimestamp(end, tz).strftime("%Y%m%d %H:%M:%S")
    fields: list = [17, req_id, start_text, end_text, len(bars)]
    for b in bars:
        fields += [format_bar_time(b, tz_name, format_date), b.open, b.high, b.low, b.close,
                   b.volume, b.wap, b.count]
    return fields


def contract_details_end_fields(req_id: int) -> list:
    """Return contractDetailsEnd (52)."""
    return [52, 1, req_id]


def head_timestamp_fields(req_id: int, text: str) -> list:
    """Return headTimestamp (88): the first bar's time as ``text``."""
    return [88, req_id, text]


def market_data_type_fields(req_id: int, delayed: bool) -> list:
    """Return marketDataType (58): 3 for delayed data, 1 for live."""
    return [58, 1, req_id, 3 if delayed else 1]


def tick_snapshot_end_fields(req_id: int) -> list:
    """Return tickSnapshotEnd (57)."""
    return [57, 1, req_id]


def realtime_bar_fields(req_id: int, start: int, bar: Bar) -> list:
    """Return realtimeBar (50) of the 5-second bar starting at epoch ``start``."""
    return [50, 3, req_id, start, bar.open, bar.high, bar.low, bar.close,
            max(bar.volume, 0.0), bar.wap if bar.wap > 0 else bar.close, max(bar.count, 0)]


def historical_update_fields(req_id: int, bar: Bar, tz_name: str, format_date: int) -> list:
    """Return historicalDataUpdate (90): the keepUpToDate bar so far."""
    return [90, req_id, bar.count, format_bar_time(bar, tz_name, format_date),
            bar.open, bar.close, bar.high, bar.low, bar.wap, bar.volume]


def tick_price_fields(req_id: int, tick_type: int, price: float, size: float) -> list:
    """Return tickPrice (1) of ``tick_type`` (1 bid, 2 ask, 4 last; +65 delayed ...)."""
    return [1, 6, req_id, tick_type, price, size, 0]


def tick_size_fields(req_id: int, tick_type: int, size: float) -> list:
    """Return tickSize (2) of ``tick_type`` (8 volume, 74 delayed volume)."""
    return [2, 6, req_id, tick_type, size]


def tick_string_fields(req_id: int, tick_type: int, text: str) -> list:
    """Return tickString (46), e.g. RTVolume (48) ``price;size;time;volume;vwap;single``."""
    return [46, 6, req_id, tick_type, text]
