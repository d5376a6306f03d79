"""Live market-data streams of the store's feeds: 5-second bars or ticks, into one queue each.

:class:`LiveStreams` runs in the connection's loop thread (its ``_``-methods) and is driven from
backtrader's thread through :meth:`LiveStreams.subscribe` / :meth:`LiveStreams.cancel`, which
return at once. A stream survives reconnects: :meth:`LiveStreams.resubscribe_all` renews every
subscription after the store reconnected (or IB's 1101). With ``delayed_fallback`` a tick
stream IB refused for lack of a market-data subscription (354, 10089) is asked for again as
delayed data (reqMarketDataType 3).
"""

from __future__ import annotations

import functools
import logging
import queue
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bt_ibkr.ib.codes import DELAYED_AVAILABLE, FEED_STOP
from bt_ibkr.ib.connection import IBConnection
from bt_ibkr.ib.events import BarReceived, RequestFailed, SwitchedToDelayed
from bt_ibkr.ib.parsing import finite, realtime_bar, tick_bar
from bt_ibkr.utc import utc_now

if TYPE_CHECKING:
    from ib_async import Contract, RealTimeBarList, Ticker

log = logging.getLogger("bt_ibkr.ib.streams")

#: tick types of a ticker's ticks, by stream kind: (live, delayed)
TICK_TYPES = {"last": (4, 68), "bid": (1, 66), "ask": (2, 67)}


@dataclass
class LiveStream:
    """A live subscription of one feed: 5-second bars (``rtbar``) or ticks, into ``q``."""

    contract: Any
    rtbar: bool
    what: str
    use_rth: bool
    q: queue.Queue
    kind: str = "last"  # ticks: "last", "bid", "ask"
    handle: Any = None
    reqId: int = -1
    active: bool = True


class LiveStreams:
    """The live streams of one connection (see the module docstring)."""

    def __init__(self, connection: IBConnection, delayed_fallback: bool = False) -> None:
        self.connection = connection
        self.delayed_fallback = delayed_fallback
        self.streams: list[LiveStream] = []
        self._by_req: dict[int, LiveStream] = {}

    # ------------------------------------------------------------------ backtrader's thread
    def subscribe(self, contract: Contract, rtbar: bool, what: str | None, use_rth: bool,
                  q: queue.Queue) -> LiveStream:
        """Start a live stream into ``q`` and return it (at once).

        ``rtbar=True``: IB's 5-second real-time bars (MIDPOINT for CASH/CFD unless ``what``);
        else ticks (last trade; bid for CASH/CFD, ask with ``what='ASK'``).
        """
        sec = contract.secType
        kind = "last"
        if sec in ("CASH", "CFD"):
            kind = "ask" if what == "ASK" else "bid"
        stream = LiveStream(contract=contract, rtbar=rtbar, what=what or "TRADES",
                            use_rth=use_rth, q=q, kind=kind)
        if rtbar and sec in ("CASH", "CFD") and not what:
            stream.what = "MIDPOINT"
        self.streams.append(stream)
        self.connection.post(self._start, stream)
        return stream

    def cancel(self, stream: LiveStream) -> None:
        """Stop ``stream`` (returns at once; nothing is sent when the connection is gone)."""
        stream.active = False
        if stream in self.streams:
            self.streams.remove(stream)
        if self.connection.running:
            self.connection.post(self._cancel, stream)

    def broadcast(self, event: Any) -> None:
        """Put ``event`` on every stream's queue (connection events)."""
        for stream in self.streams:
            stream.q.put(event)

    # ------------------------------------------------------------------ loop thread
    def _start(self, stream: LiveStream) -> None:
        if not stream.active or not self.connection.connected:
            return
        ib = self.connection.ib
        if stream.rtbar:
            bars = ib.reqRealTimeBars(stream.contract, 5, stream.what, stream.use_rth)
            bars.updateEvent += functools.partial(self._on_rtbar, stream)
            stream.handle = bars
            stream.reqId = bars.reqId
        else:
            generic = "" if stream.contract.secType in ("CASH", "CFD") else "233"
            ticker = ib.reqMktData(stream.contract, generic, False, False)
            ticker.updateEvent += functools.partial(self._on_ticker, stream)
            stream.handle = ticker
            stream.reqId = ib.wrapper.ticker2ReqId["mktData"].get(ticker, -1)
        self._by_req[stream.reqId] = stream

    def _cancel(self, stream: LiveStream) -> None:
        self._by_req.pop(stream.reqId, None)
        if not self.connection.connected or stream.handle is None:
            return
        try:
            if stream.rtbar:
                self.connection.ib.cancelRealTimeBars(stream.handle)
            else:
                self.connection.ib.cancelMktData(stream.contract)
        except Exception:  # noqa: BLE001 - the stream is gone either way
            log.debug("cancel of live stream failed", exc_info=True)

    def resubscribe_all(self) -> None:
        """Renew every active subscription (after a reconnect or IB's 1101)."""
        for stream in list(self.streams):
            self._by_req.pop(stream.reqId, None)
            stream.handle = None
            self._start(stream)

    def _on_rtbar(self, stream: LiveStream, bars: RealTimeBarList, has_new_bar: bool) -> None:
        if not has_new_bar or not stream.active or bars is not stream.handle:
            return
        stream.q.put(BarReceived(realtime_bar(bars[-1])))

    def _on_ticker(self, stream: LiveStream, ticker: Ticker) -> None:
        if not stream.active or ticker is not stream.handle:
            return
        wanted = TICK_TYPES[stream.kind]
        delayed = getattr(ticker, "marketDataType", 1) in (3, 4)
        for td in ticker.ticks:
            if td.tickType not in wanted:
                continue
            price = finite(td.price)
            if price <= 0:
                continue
            # ticks carry the local receive time: move it to the gateway's clock (timeoffset)
            when: datetime = (td.time or utc_now()) + self.connection.timeoffset()
            stream.q.put(BarReceived(tick_bar(td, when, price), delayed))

    def on_error(self, req_id: int, code: int, text: str) -> bool:
        """Route an IB error to the stream it belongs to; return True when one did."""
        stream = self._by_req.get(req_id)
        if stream is None:
            return False
        if self.delayed_fallback and code in DELAYED_AVAILABLE and not stream.rtbar:
            self._fall_back_to_delayed(stream, code, text)
            return True
        stream.q.put(RequestFailed(code, text))
        if code in FEED_STOP:
            self._by_req.pop(req_id, None)
        return True

    def _fall_back_to_delayed(self, stream: LiveStream, code: int, text: str) -> None:
        self._by_req.pop(stream.reqId, None)
        try:
            self.connection.ib.cancelMktData(stream.contract)
        except Exception:  # noqa: BLE001 - IB already ended it
            log.debug("cancelMktData after %s failed", code, exc_info=True)
        self.connection.set_market_data_type(3)
        stream.q.put(SwitchedToDelayed(code, text))
        stream.handle = None
        self._start(stream)
