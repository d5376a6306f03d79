"""One connected client of the simulated gateway, and the faults the test API schedules.

``ClientConnection.send`` frames a reply and writes it (thread-safe); while the server handles
a request whose message id has a delay or drop fault (:class:`FaultPlan`), the replies to it are
held back or dropped. The server marks that request with :data:`reply_context` around its handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bt_ibkr.gateway_sim.marketdata_handlers import HistSub, MarketSub, RealTimeSub
from bt_ibkr.gateway_sim.wire import frame

log = logging.getLogger("bt_ibkr.gateway_sim")

# (request msg id, drop this request's replies?) while a handler runs
reply_context: contextvars.ContextVar[tuple[int, bool] | None] = contextvars.ContextVar(
    "gateway_simreply_context", default=None)


@dataclass
class FaultPlan:
    """Faults the test API schedules; handlers read them.

    ``reject_next_order``: ``(code, reason)`` -> the next placeOrder is rejected (consumed by
    the order handlers). ``delays``: request msg id -> seconds to hold every reply to it.
    ``drops``: request msg id -> how many further requests of that id get no reply at all.
    ``bar_edits``: symbol -> functions ``f(bars) -> bars`` applied, in order, to every
    historical reply for that symbol (bad data: a NaN price, a future time stamp).
    ``rt_bar_lags``: symbol -> simulated seconds by which that symbol's real-time bars reach
    the clients after their period ended (one contract's bars behind another's).
    ``what_if_unset``: how many further whatIf answers carry no margin (IB's UNSET_DOUBLE in
    every margin field, as TWS sends when it cannot compute one).
    """

    reject_next_order: tuple[int, str] | None = None
    delays: dict[int, float] = field(default_factory=dict)
    drops: dict[int, int] = field(default_factory=dict)
    bar_edits: dict[str, list[Callable[[list], list]]] = field(default_factory=dict)
    rt_bar_lags: dict[str, float] = field(default_factory=dict)
    what_if_unset: int = 0


class ClientConnection:
    """One connected client (see the module docstring for the handler-facing interface)."""

    def __init__(self, server: Any, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.client_id: int = -1
        self.server_version: int = 0
        self.started = False
        self.closed = False
        self.subscriptions: dict = {}
        self.market_data_type = 1
        self.market_subs: dict[int, MarketSub] = {}
        self.rt_subs: dict[int, RealTimeSub] = {}
        self.hist_subs: dict[int, HistSub] = {}
        self._out: list[bytes] = []  # framed replies of this loop turn, written together
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"

    def __repr__(self) -> str:
        return f"ClientConnection(client_id={self.client_id}, v{self.server_version}, {self.peer})"

    def send(self, fields: list) -> None:
        """Frame ``fields`` and write them to the client (non-blocking; thread-safe).

        While a request whose msg id has a delay/drop fault is being handled, its replies are
        delayed/dropped.
        """
        if self.closed:
            return
        loop = self.server.loop
        if loop is not None and threading.get_ident() != self.server.loop_thread_id:
            loop.call_soon_threadsafe(self.send, list(fields))
            return
        data = frame(fields)
        ctx = reply_context.get()
        if ctx is not None:
            msg_id, drop = ctx
            if drop:
                log.info("fault: dropped reply %s to msg %d for client %d",
                         fields[0] if fields else "?", msg_id, self.client_id)
                return
            delay = self.server.faults.delays.get(msg_id, 0.0)
            if delay > 0 and loop is not None:
                loop.call_later(delay, self._write, data)
                return
        self._write(data)

    def _write(self, data: bytes) -> None:
        """Queue ``data``; everything queued in one loop turn goes out in one socket write
        (as a gateway's buffered stream does), in the order it was sent."""
        if self.closed:
            return
        self._out.append(data)
        if len(self._out) == 1:
            loop = self.server.loop
            if loop is None:
                self._flush()
            else:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        if not self._out or self.closed:
            self._out.clear()
            return
        data = b"".join(self._out)
        self._out.clear()
        try:
            self.writer.write(data)
        except (ConnectionError, RuntimeError) as exc:  # transport already gone
            log.debug("write to %r failed: %s", self, exc)
            self.close()

    def close(self) -> None:
        """Close the socket (the client sees a disconnect) and forget its subscriptions."""
        if self.closed:
            return
        self._flush()  # what was sent before the close reaches the client, as over TCP
        self.closed = True
        self.market_subs.clear()
        self.rt_subs.clear()
        self.hist_subs.clear()
        try:
            self.writer.close()
        except RuntimeError:
            pass
