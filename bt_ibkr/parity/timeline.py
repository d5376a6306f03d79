"""What a parity report shows besides the counts: the period, both value curves, the final
values and the orders of both paths side by side.

:class:`Timeline` is fed the two paths' bars in step (``add(backtest_bar, ib_bar)``, None once
a side has ended) and keeps, in bounded memory, the first and last bar time, each side's last
value, the value curves thinned to at most :data:`MAX_POINTS` points (every bar's difference
still counts in the largest difference), and the bars on which either side ordered (at most
:data:`MAX_ORDER_ROWS`). :meth:`Timeline.to_dict` is the ``timeline`` of a
:class:`~bt_ibkr.parity.diff.ParityReport`.
"""

from __future__ import annotations

from typing import Any

from bt_ibkr.records.recorder import BarRecord

__all__ = ["MAX_ORDER_ROWS", "MAX_POINTS", "Timeline", "order_text", "timeline_of"]

MAX_POINTS = 2000
MAX_ORDER_ROWS = 5000


def order_text(order: dict[str, Any]) -> str:
    """Return one order as a short text: ``BUY 10 SPY MKT`` (``@ price`` when it has one)."""
    size = order.get("size")
    side = order.get("side") or ("BUY" if (size or 0) > 0 else "SELL")
    text = f"{side} {abs(float(size or 0)):g} {order.get('data', '')} {order.get('type', '')}"
    price = order.get("price")
    if price:
        text += f" @ {float(price):g}"
    return text.strip()


class Timeline:
    """The period, value curves, final values and orders of two paths (module docstring)."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.last: str | None = None
        self.n = 0
        self.final = {"backtest": None, "ib": None}
        self._points: list[list[Any]] = []
        self._step = 1
        self.orders: list[dict[str, Any]] = []

    def add(self, backtest: BarRecord | None, ib: BarRecord | None) -> None:
        """Take the next bar of each side (None: that side has no more bars)."""
        if backtest is not None:
            self.final["backtest"] = backtest.value
        if ib is not None:
            self.final["ib"] = ib.value
        bar = backtest or ib
        if bar is None:
            return
        if self.first is None:
            self.first = bar.dt
        self.last = bar.dt
        i = self.n
        self.n += 1
        if backtest is not None and ib is not None:
            if i % self._step == 0:
                self._points.append([bar.dt, backtest.value, ib.value])
                if len(self._points) > MAX_POINTS:  # thin: keep every other point
                    self._points = self._points[::2]
                    self._step *= 2
        a = (backtest.orders + backtest.adopted) if backtest is not None else []
        b = (ib.orders + ib.adopted) if ib is not None else []
        if (a or b) and len(self.orders) < MAX_ORDER_ROWS:
            self.orders.append({"bar": i, "dt": bar.dt, "backtest": [order_text(o) for o in a],
                                "ib": [order_text(o) for o in b]})

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"period": [first, last], "final": {...}, "curve": [[dt, bt, ib], ...],
        "orders": [...]}``."""
        return {"period": [self.first, self.last], "bars": self.n, "final": dict(self.final),
                "curve": list(self._points), "orders": list(self.orders)}


def timeline_of(backtest: list[BarRecord], ib: list[BarRecord]) -> dict[str, Any]:
    """Return the :meth:`Timeline.to_dict` of two in-memory recordings' bars."""
    t = Timeline()
    for i in range(max(len(backtest), len(ib))):
        t.add(backtest[i] if i < len(backtest) else None, ib[i] if i < len(ib) else None)
    return t.to_dict()


def merge(timelines: list[dict[str, Any]]) -> dict[str, Any]:
    """Return one timeline of several sessions' (in time order)."""
    parts = [t for t in timelines if t]
    if not parts:
        return {}
    return {"period": [parts[0]["period"][0], parts[-1]["period"][1]],
            "bars": sum(t["bars"] for t in parts), "final": parts[-1]["final"],
            "curve": [p for t in parts for p in t["curve"]][-MAX_POINTS * 4:],
            "orders": [o for t in parts for o in t["orders"]][:MAX_ORDER_ROWS]}
