"""Market-data requests of the simulated gateway: contracts, history, real-time bars, ticks.

:class:`MarketDataRouter` installs the handlers of reqContractDetails (9), reqHistoricalData /
cancel (20/25, keepUpToDate), reqRealTimeBars / cancel (50/51), reqMktData / cancel (1/2),
reqMarketDataType (59) and reqHeadTimeStamp (87) on the server, keeps each connection's
subscriptions and, at every 5-second clock step, sends what they subscribed to
(:meth:`MarketDataRouter.step`). The order-side twin is :mod:`~bt_ibkr.gateway_sim.order_handlers`;
the messages are encoded by :mod:`~bt_ibkr.gateway_sim.marketdata_codec`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bt_ibkr.gateway_sim.contfut import (
    CONTFUT,
    CONTFUT_END_CODE,
    CONTFUT_END_TEXT,
    contfut_view,
    front_future,
)
from bt_ibkr.gateway_sim.marketdata import (
    HMDS,
    Bar,
    HistoricalDataError,
    bar_step,
    parse_end_datetime,
    transform_bar,
)
from bt_ibkr.gateway_sim.marketdata_codec import (
    contract_details_end_fields,
    contract_details_fields,
    head_timestamp_fields,
    historical_data_fields,
    historical_update_fields,
    market_data_type_fields,
    realtime_bar_fields,
    tick_price_fields,
    tick_size_fields,
    tick_snapshot_end_fields,
    tick_string_fields,
)
from bt_ibkr.gateway_sim.model import SimContract
from bt_ibkr.gateway_sim.pacing import PACING_TEXT
from bt_ibkr.gateway_sim.wire import FieldReader

log = logging.getLogger("bt_ibkr.gateway_sim")

NO_SECDEF = "No security definition has been found for the request"


@dataclass
class MarketSub:
    """One reqMktData streaming subscription."""

    req_id: int
    contract: SimContract
    delayed: bool
    last: dict[int, float] = field(default_factory=dict)
    rt_volume: bool = False  # generic tick 233: RTVolume strings (tickString 48)


@dataclass
class RealTimeSub:
    """One reqRealTimeBars subscription."""

    req_id: int
    contract: SimContract
    what: str


@dataclass
class HistSub:
    """One keepUpToDate historical subscription."""

    req_id: int
    contract: SimContract
    bar_size: str
    step: int  # bar seconds, 0 for day/week/month
    what: str
    format_date: int


class MarketDataRouter:
    """The market-data side of one GatewayServer (see the module docstring)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        #: real-time bars held back by ``faults.rt_bar_lags``: (due epoch s, order, conn,
        #: req id, fields), sent by :meth:`release_held` once the clock reaches ``due``
        self.held: list[tuple[float, int, Any, int, list]] = []
        self._held_seq = 0

    def install(self) -> None:
        """Register the market-data handlers on the server."""
        h = self.server.handlers
        h[59] = self._on_market_data_type
        h[9] = self._on_contract_details
        h[20] = self._on_historical
        h[25] = self._on_cancel_historical
        h[50] = self._on_realtime_bars
        h[51] = lambda s, r: (r.skip(), s.rt_subs.pop(r.int(), None))
        h[1] = self._on_mkt_data
        h[2] = lambda s, r: (r.skip(), s.market_subs.pop(r.int(), None))
        h[87] = self._on_head_timestamp

    def step(self, conn: Any, contract: SimContract, t: int) -> None:
        """Send ``conn`` what it subscribed to on ``contract`` for the step ending at ``t``:
        real-time bars, keepUpToDate updates and ticks."""
        for rt in list(conn.rt_subs.values()):
            if rt.contract.conId == contract.conId:
                self.send_rt_bar(conn, rt, t)
        for hs in list(conn.hist_subs.values()):
            if hs.contract.conId == contract.conId:
                self.send_hist_update(conn, hs, t)
        for ms in list(conn.market_subs.values()):
            if ms.contract.conId == contract.conId:
                self.send_ticks(conn, ms, t)

    # ------------------------------------------------------------ requests
    def _on_market_data_type(self, conn: Any, reader: FieldReader) -> None:
        reader.skip()
        conn.market_data_type = reader.int(1)

    def _read_contract(self, reader: FieldReader) -> dict[str, object]:
        keys = ("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike",
                "right", "multiplier", "exchange", "primaryExchange", "currency",
                "localSymbol", "tradingClass")
        return {k: reader.str() for k in keys}

    def _resolve(self, spec: dict[str, object],
                 include_expired: bool = False) -> SimContract | None:
        con_id = int(float(spec["conId"] or 0))
        return self.server.contracts.resolve(
            include_expired=include_expired,
            conId=con_id, symbol=str(spec["symbol"]), secType=str(spec["secType"]),
            exchange=str(spec["exchange"]), currency=str(spec["currency"]),
            lastTradeDateOrContractMonth=str(spec["lastTradeDateOrContractMonth"]),
            primaryExchange=str(spec["primaryExchange"]), localSymbol=str(spec["localSymbol"]),
            strike=str(spec["strike"]), right=str(spec["right"]))

    def _front(self, spec: dict[str, object]) -> SimContract | None:
        """The front future a CONTFUT request stands for (None: no such future)."""
        return front_future(self.server.contracts.all(), str(spec["symbol"]),
                            self.server.clock.now().date(), str(spec["exchange"]),
                            str(spec["currency"]))

    def _on_contract_details(self, conn: Any, reader: FieldReader) -> None:
        reader.skip()  # version 8
        req_id = reader.int()
        spec = self._read_contract(reader)
        if str(spec["secType"]).upper() == CONTFUT:
            front = self._front(spec)
            if front is None:
                self.server.error(conn, req_id, 200, NO_SECDEF)
                return
            view = self.server.contracts.details_view(front, str(spec["exchange"]),
                                                      self.server.clock.now().date())
            conn.send(contract_details_fields(contfut_view(view), req_id,
                                                 conn.server_version))
            conn.send(contract_details_end_fields(req_id))
            return
        con_id = int(float(spec["conId"] or 0))
        include_expired = reader.bool()  # expired futures only when asked (IB's rule)
        found = self.server.contracts.matches(
            include_expired=include_expired,
            conId=con_id, symbol=str(spec["symbol"]), secType=str(spec["secType"]),
            exchange=str(spec["exchange"]), currency=str(spec["currency"]),
            lastTradeDateOrContractMonth=str(spec["lastTradeDateOrContractMonth"]),
            primaryExchange=str(spec["primaryExchange"]), localSymbol=str(spec["localSymbol"]),
            strike=str(spec["strike"]), right=str(spec["right"]))
        if not found:
            self.server.error(conn, req_id, 200, NO_SECDEF)
            return
        today = self.server.clock.now().date()
        for c in found:
            view = self.server.contracts.details_view(c, str(spec["exchange"]), today)
            conn.send(contract_details_fields(view, req_id, conn.server_version))
        conn.send(contract_details_end_fields(req_id))

    def _on_head_timestamp(self, conn: Any, reader: FieldReader) -> None:
        req_id = reader.int()
        contract = self._resolve(self._read_contract(reader))
        if contract is None:
            self.server.error(conn, req_id, 200, NO_SECDEF)
            return
        reader.skip(3)  # includeExpired, useRTH, whatToShow
        fmt_date = reader.int(1)
        series = self.server.market.series(contract)
        if series is None or not len(series.opens):
            self.server.error(conn, req_id, 162, f"{HMDS}HMDS query returned no data")
            return
        first = int(series.opens[0])
        text = str(first) if fmt_date == 2 else datetime.fromtimestamp(
            first, ZoneInfo("UTC")).strftime("%Y%m%d-%H:%M:%S")
        conn.send(head_timestamp_fields(req_id, text))

    def _on_historical(self, conn: Any, reader: FieldReader) -> None:
        req_id = reader.int()
        spec = self._read_contract(reader)
        include_expired = reader.bool()
        end_text = reader.str()
        bar_size = " ".join(reader.str().split())
        duration = reader.str()
        reader.bool()  # useRTH: no extended-hours data in the simulator
        what = reader.str().upper()
        format_date = reader.int(1)
        if spec["secType"] == "BAG":
            reader.skip(4 * reader.int())
        keep_up = reader.bool()
        contfut = str(spec["secType"]).upper() == CONTFUT
        if contfut and end_text.strip():
            self.server.error(conn, req_id, CONTFUT_END_CODE, CONTFUT_END_TEXT)
            return
        contract = self._front(spec) if contfut else self._resolve(spec, include_expired)
        if contract is None:
            self.server.error(conn, req_id, 200, NO_SECDEF)
            return
        if self.server.pacing is not None:
            identical = (contract.conId, end_text, bar_size, duration, what, format_date)
            reason = self.server.pacing.check(identical, (contract.conId, contract.exchange, what))
            if reason is not None:
                log.info("pacing: request %d refused (%s)", req_id, reason)
                self.server.error(conn, req_id, 162, PACING_TEXT)
                return
        if keep_up and end_text.strip():
            self.server.error(conn, req_id, 321, "Error validating request.-'bX' : cause - End "
                       "date not supported with live updates: pass endDateTime=''")
            return
        now = int(math.floor(self.server.clock.now().timestamp()))
        try:
            end = min(parse_end_datetime(end_text, contract.timeZoneId, now), now)
            bars = self.server.market.historical(contract, end, duration, bar_size, what, now)
        except HistoricalDataError as exc:
            self.server.error(conn, req_id, exc.code, exc.message)
            return
        for edit in self.server.faults.bar_edits.get(contract.symbol, ()):
            bars = edit(list(bars))
        conn.send(historical_data_fields(req_id, bars, contract.timeZoneId, format_date,
                                           end))
        if keep_up:
            conn.hist_subs[req_id] = HistSub(req_id, contract, bar_size,
                                                bar_step(bar_size), what, format_date)

    def _on_cancel_historical(self, conn: Any, reader: FieldReader) -> None:
        reader.skip()
        conn.hist_subs.pop(reader.int(), None)

    def _on_realtime_bars(self, conn: Any, reader: FieldReader) -> None:
        reader.skip()  # version 3
        req_id = reader.int()
        contract = self._resolve(self._read_contract(reader))
        reader.skip()  # bar size (always 5)
        what = reader.str().upper() or "TRADES"
        if contract is None:
            self.server.error(conn, req_id, 200, NO_SECDEF)
            return
        if what not in ("TRADES", "MIDPOINT", "BID", "ASK"):
            self.server.error(conn, req_id, 420, f"Invalid Real-time Query:whatToShow {what!r} "
                       "is not supported; use TRADES, MIDPOINT, BID or ASK")
            return
        conn.rt_subs[req_id] = RealTimeSub(req_id, contract, what)

    def _on_mkt_data(self, conn: Any, reader: FieldReader) -> None:
        reader.skip()  # version 11
        req_id = reader.int()
        spec = self._read_contract(reader)
        if spec["secType"] == "BAG":
            reader.skip(4 * reader.int())
        if reader.bool():
            reader.skip(3)
        generic = reader.str()
        snapshot = reader.bool()
        regulatory = reader.bool()
        contract = self._resolve(spec)
        if contract is None:
            self.server.error(conn, req_id, 200, NO_SECDEF)
            return
        delayed = conn.market_data_type in (3, 4)
        if not self.server.live_data:
            listing = f"{contract.symbol} {contract.primaryExchange or contract.exchange}/TOP/ALL"
            if not delayed:
                self.server.error(conn, req_id, 10089, "Requested market data requires additional "
                           "subscription for API. See link in 'Market Data Connections dialog' "
                           f"for more details.Delayed market data is available.{listing}")
                return
            self.server.error(conn, req_id, 10167, "Requested market data is not subscribed. "
                       f"Displaying delayed market data.{listing}")
        sub = MarketSub(req_id, contract, delayed,
                        rt_volume="233" in generic.replace(" ", "").split(","))
        conn.send(market_data_type_fields(req_id, delayed))
        now = int(math.floor(self.server.clock.now().timestamp()))
        self.send_ticks(conn, sub, now, full=True)
        if snapshot or regulatory:
            conn.send(tick_snapshot_end_fields(req_id))
        else:
            conn.market_subs[req_id] = sub

    # ------------------------------------------------------------ per clock step
    def send_rt_bar(self, conn: Any, sub: RealTimeSub, t: int) -> None:
        bar = self.server.market.window(sub.contract, t - 5, t)
        if bar is None:
            return
        series = self.server.market.series(sub.contract)
        bar = transform_bar(bar, sub.what, sub.contract, series)
        fields = realtime_bar_fields(sub.req_id, t - 5, bar)
        lag = self.server.faults.rt_bar_lags.get(sub.contract.symbol, 0.0)
        if lag > 0:
            self._held_seq += 1
            self.held.append((t + lag, self._held_seq, conn, sub.req_id, fields))
            return
        conn.send(fields)

    def release_held(self, now: float) -> None:
        """Send the held-back real-time bars due at or before epoch ``now`` (oldest first), or
        all of a symbol whose lag was cleared; a cancelled subscription's bars are forgotten."""
        lags = self.server.faults.rt_bar_lags
        due, keep = [], []
        for item in self.held:
            _, _, conn, req_id, _ = item
            sub = conn.rt_subs.get(req_id)
            if conn.closed or sub is None:
                continue
            cleared = lags.get(sub.contract.symbol, 0.0) <= 0
            (due if cleared or item[0] <= now else keep).append(item)
        self.held = keep
        for _, _, conn, _, fields in sorted(due, key=lambda i: (i[0], i[1])):
            conn.send(fields)

    def send_hist_update(self, conn: Any, sub: HistSub, t: int) -> None:
        c = sub.contract
        bar: Bar | None
        if sub.step:
            s = self.server.market.series(c)
            if s is None:
                return
            i, elapsed = s.locate(t - 1)
            if i < 0 or elapsed is None:
                return
            opened = int(s.opens[i])
            align = s.spec.open_seconds
            bucket = (elapsed + align) // sub.step
            start = opened + max(bucket * sub.step - align, 0)
            bar = self.server.market.window(c, start, t)
            if bar is None:
                return
            bar = transform_bar(bar, sub.what, c, s)
        else:
            duration = {"1 day": "1 D", "1 week": "1 M", "1 month": "2 M"}[sub.bar_size]
            try:
                bars = self.server.market.historical(c, t, duration, sub.bar_size, sub.what, t)
            except HistoricalDataError:
                return
            bar = bars[-1]
        conn.send(historical_update_fields(sub.req_id, bar, c.timeZoneId, sub.format_date))

    def send_ticks(self, conn: Any, sub: MarketSub, t: int, full: bool = False) -> None:
        at = t - 900 if sub.delayed else t  # delayed data is 15 minutes old
        quote = self.server.market.quote_at(sub.contract, at)
        if quote is None:
            return
        d = sub.delayed
        is_index = sub.contract.secType == "IND"
        prices: list[tuple[int, float, float]] = []
        if not is_index:
            prices += [(66 if d else 1, quote.bid, 100.0), (67 if d else 2, quote.ask, 100.0)]
        prices.append((68 if d else 4, quote.last, max(quote.volume / 50.0, 1.0) // 1))
        stats = self.server.market.day_stats(sub.contract, at)
        if stats is not None:
            prices += [(72 if d else 6, stats["high"], 0.0), (73 if d else 7, stats["low"], 0.0)]
            if full:
                prices += [(75 if d else 9, stats["close"], 0.0),
                           (76 if d else 14, stats["open"], 0.0)]
        for tick_type, price, size in prices:
            key = tick_type
            if not full and sub.last.get(key) == price:
                continue
            sub.last[key] = price
            conn.send(tick_price_fields(sub.req_id, tick_type, price, size))
        if sub.contract.secType == "OPT" and not full:  # greeks come after the first prices
            from bt_ibkr.gateway_sim.options import send_computations
            send_computations(self.server.market, conn, sub.req_id, sub.contract, at, d)
        if stats is not None:
            vol = stats["volume"]
            if full or sub.last.get(-1) != vol:
                sub.last[-1] = vol
                conn.send(tick_size_fields(sub.req_id, 74 if d else 8, vol))
                if sub.rt_volume and not d and quote.volume > 0:
                    vwap = round((stats["high"] + stats["low"] + quote.last) / 3.0, 6)
                    text = (f"{quote.last};{int(quote.volume)};{at * 1000};{int(vol)};{vwap};"
                            "false")
                    conn.send(tick_string_fields(sub.req_id, 48, text))
