"""ParityRecorder: an analyzer that records, bar by bar, what a Strategy saw and did.

Per bar (``BarRecord``): the bar's time, each feed's OHLCV, the Strategy's decision, the orders
it created that bar, the fills it was notified of since the previous bar, and then its
position per feed, cash and value as the broker reports them after the decision.

The decision: a Strategy with ``targets`` (and ``regimes``) dicts, like
``RegimeAwareEnsemble``, has them recorded; any Strategy's decision also includes the intents
of the orders it created that bar (feed, side, order type), which do not depend on fills. The
orders themselves carry sizes and prices, which may legitimately differ when fills differ.

Orders created in a bar are found as the broker's orders added since the previous bar
(BackBroker's ``orders`` list, IBBroker's ``orders`` dict), so the Strategy needs no change.
An order its broker did not send because the same order was already working at the gateway
(``order.info.adopted``: a restarted process re-making a decision whose orderRef its journal
holds, :mod:`bt_ibkr.live.journaled_broker`) is recorded under ``adopted`` instead of
``orders``; its intent is part of the decision all the same. The recorder works the same on
BackBroker and IBBroker and on live feeds.

``get_analysis()`` returns a :class:`Recording`; ``on_bar`` (a param) is called with every
finished ``BarRecord`` (the live session recorder writes them to disk as they come). With
``keep=False`` the records are only passed to ``on_bar``, not kept in the Recording, so a
months-long stream run (or its replay) does not hold every bar in memory.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import backtrader as bt

SIDES = {True: "BUY", False: "SELL"}


def _r(x: float, nd: int = 10) -> float:
    return round(float(x), nd)


@dataclass
class BarRecord:
    """One bar as the Strategy saw it and what it did (see the module docstring)."""

    i: int
    dt: str
    bars: dict[str, list[float]]
    decision: dict[str, Any]
    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    position: dict[str, float]
    cash: float
    value: float
    #: per feed: the time of its current bar and whether it was LIVE (not compared)
    feeds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: orders of this bar's decision that were not sent because the gateway already had them
    #: (adopted after a restart); compared together with ``orders``
    adopted: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass
class Recording:
    """A run's ``BarRecord`` list plus its ``meta`` (strategy, params, path)."""

    bars: list[BarRecord] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def orders(self) -> list[dict[str, Any]]:
        """Return every order of the run, each with its bar's ``dt`` (adopted ones too, with
        ``adopted`` True)."""
        return [dict(o, dt=b.dt) for b in self.bars for o in b.orders + b.adopted]

    def fills(self) -> list[dict[str, Any]]:
        """Return every fill of the run, each with the ``dt`` of the bar it was seen at."""
        return [dict(f, dt=b.dt) for b in self.bars for f in b.fills]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"meta": self.meta, "bars": [b.to_dict() for b in self.bars]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recording:
        """Return the Recording of :meth:`to_dict`'s output."""
        return cls(bars=[BarRecord(**b) for b in d.get("bars", [])], meta=d.get("meta", {}))


def order_type(order) -> str:
    """Return backtrader's name of ``order``'s execution type (``Market``, ``Limit``...)."""
    return bt.Order.ExecTypes[order.exectype] if order.exectype is not None else "Market"


class ParityRecorder(bt.Analyzer):
    """Records every bar (see the module docstring). Params: ``on_bar`` (callable or None),
    ``keep`` (keep the records in the Recording; default True)."""

    params = (("on_bar", None), ("keep", True))

    def start(self) -> None:
        cls = type(self.strategy)
        broker = self.strategy.broker
        self.rec = Recording(meta={
            "strategy": cls.__name__, "strategy_path": f"{cls.__module__}:{cls.__qualname__}",
            "start_cash": broker.getcash(), "start_value": broker.getvalue()})
        self.count = 0  # bars recorded (kept or not)
        self._seen_orders = 0
        self._exbits: dict[int, int] = {}
        self._fills: list[dict[str, Any]] = []
        self._names = {id(d): (d._name or f"data{i}") for i, d in enumerate(self.datas)}
        self.cond = threading.Condition()

    def notify_order(self, order) -> None:
        if order.status not in (order.Partial, order.Completed):
            return
        bits = list(order.executed.exbits)
        done = self._exbits.get(order.ref, 0)
        for bit in bits[done:]:
            self._fills.append({
                "data": self._names.get(id(order.data), "?"), "ref": order.ref,
                "side": SIDES[order.isbuy()], "size": _r(bit.size, 8),
                "price": _r(bit.price), "commission": _r(bit.closedcomm + bit.openedcomm, 8),
                "time": bt.num2date(bit.dt).isoformat() if bit.dt else None})
        self._exbits[order.ref] = len(bits)

    def _new_orders(self) -> list:
        orders = self.strategy.broker.orders
        seq = list(orders.values()) if isinstance(orders, dict) else orders
        new = seq[self._seen_orders:]
        self._seen_orders = len(seq)
        return new

    def next(self) -> None:
        s = self.strategy
        broker = s.broker
        bars = {}
        position = {}
        feeds = {}
        for d in self.datas:
            name = self._names[id(d)]
            # a feed with no bar yet (several live feeds start apart) records None
            bars[name] = [_r(d.open[0]), _r(d.high[0]), _r(d.low[0]), _r(d.close[0]),
                          _r(d.volume[0], 4)] if len(d) else None
            position[name] = _r(broker.getposition(d).size, 8)
            feeds[name] = {"dt": bt.num2date(d.datetime[0]).isoformat() if len(d) else None,
                           "live": (not d.islive()) or d._laststatus == d.LIVE}
        orders = []
        adopted = []
        intents = []
        for o in self._new_orders():
            name = self._names.get(id(o.data), "?")
            kind = order_type(o)
            entry = {"data": name, "ref": o.ref, "side": SIDES[o.isbuy()],
                     "size": _r(abs(o.created.size), 8), "type": kind,
                     "price": None if o.price is None else _r(o.price)}
            if o.info.get("adopted"):  # .get: backtrader's info dict creates missing keys
                adopted.append(dict(entry, adopted=True))
            else:
                orders.append(entry)
            intents.append([name, SIDES[o.isbuy()], kind])
        decision: dict[str, Any] = {"intents": intents}
        for attr in ("targets", "regimes"):
            val = getattr(s, attr, None)
            if isinstance(val, dict):
                decision[attr] = {k: (_r(v) if isinstance(v, float) else v)
                                  for k, v in val.items()}
        dt = bt.num2date(max(d.datetime[0] for d in self.datas if len(d)))
        record = BarRecord(i=self.count, dt=dt.isoformat(), bars=bars,
                           decision=decision, orders=orders, fills=self._fills,
                           position=position, cash=_r(broker.getcash(), 6),
                           value=_r(broker.getvalue(), 6), feeds=feeds, adopted=adopted)
        self._fills = []
        with self.cond:
            if self.p.keep:
                self.rec.bars.append(record)
            self.count += 1
            self.cond.notify_all()
        if self.p.on_bar is not None:
            self.p.on_bar(record)

    def wait_bars(self, n: int, timeout: float) -> bool:
        """Block until ``n`` bars are recorded or ``timeout`` seconds pass (a hang guard);
        return whether they were."""
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= n, timeout)

    def get_analysis(self) -> Recording:
        return self.rec
