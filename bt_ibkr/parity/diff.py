"""Compare two Recordings bar by bar into a :class:`ParityReport`.

Bars are matched by position and session date (the IB path stamps a daily bar at its
session's time, the backtest at midnight). Per bar:

* ``decision`` (targets, regimes, order intents) must match exactly: any difference is a
  decision diff;
* the bars themselves (OHLCV) must match exactly (a bar diff means the paths saw different
  data, and is counted as a decision diff: nothing after it is comparable);
* orders (side, size, type, price; an order adopted from the gateway after a restart counts
  as an order of its bar), fills (price, size, commission), position, cash and
  value are compared with ``tolerance`` (relative; 0 = exact to 1e-9 relative or 1e-6 absolute): a fill price or
  commission outside it is a fill diff, an order outside it an order diff, a position
  difference a position diff.

``first_divergence`` is the first bar where anything differs beyond the tolerance (null when
none): ``{"bar", "dt", "field", "backtest", "ib"}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bt_ibkr.parity.timeline import timeline_of
from bt_ibkr.records.recorder import BarRecord, Recording

EPS = 1e-9
#: absolute slack for money amounts: IB reports commissions to 1e-8 per execution, so a fill
#: split in pieces sums to the whole within a few 1e-8
ABS = 1e-6


@dataclass
class ParityReport:
    """The result of :func:`compare` (JSON via :meth:`to_dict`)."""

    bars: int
    bars_backtest: int
    bars_ib: int
    orders_backtest: int
    orders_ib: int
    fills_backtest: int
    fills_ib: int
    decision_diffs: int
    order_diffs: int
    fill_diffs: int
    position_diffs: int
    max_value_diff: float
    max_cash_diff: float
    tolerance: float
    first_divergence: dict[str, Any] | None
    diffs: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: period, value curves, final values, orders side by side (bt_ibkr.parity.timeline)
    timeline: dict[str, Any] = field(default_factory=dict)

    @property
    def decisions_match(self) -> bool:
        """True when no decision (nor bar) differs and both paths saw the same bar count."""
        return self.decision_diffs == 0 and self.bars_backtest == self.bars_ib

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (diffs capped at the first 500)."""
        d = asdict(self)
        d["diffs"] = d["diffs"][:500]
        d["decisions_match"] = self.decisions_match
        return d


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= max(tol * max(abs(a), abs(b)), EPS * max(abs(a), abs(b)), ABS)
    return a == b


def _orders_match(a: list[dict], b: list[dict], tol: float) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        for key in ("data", "side", "type"):
            if x.get(key) != y.get(key):
                return False
        for key in ("size", "price"):
            if not _close(x.get(key), y.get(key), tol):
                return False
    return True


def _fills_net(fills: list[dict]) -> dict[tuple, list[float]]:
    """Fills of one bar per (feed, side): total size, value-weighted price, commission."""
    out: dict[tuple, list[float]] = {}
    for f in fills:
        acc = out.setdefault((f["data"], f["side"]), [0.0, 0.0, 0.0])
        acc[0] += f["size"]
        acc[1] += f["size"] * f["price"]
        acc[2] += f["commission"] or 0.0  # None: IB's commission report never came
    return {k: [v[0], v[1] / v[0] if v[0] else 0.0, v[2]] for k, v in out.items()}


def compare(backtest: Recording, ib: Recording, tolerance: float = 0.0) -> ParityReport:
    """Return the bar-by-bar comparison of two recordings (see the module docstring).

    Partial fills of one order on one bar are netted (their total size, average price and
    total commission are compared), so a fill split by the gateway is not a difference.
    """
    diffs: list[dict[str, Any]] = []
    counts = {"decision": 0, "order": 0, "fill": 0, "position": 0}
    first: dict[str, Any] | None = None
    max_value = max_cash = 0.0

    def note(kind: str, i: int, a: BarRecord, fld: str, va: Any, vb: Any) -> None:
        nonlocal first
        counts[kind] += 1
        item = {"bar": i, "dt": a.dt[:10], "kind": kind, "field": fld, "backtest": va, "ib": vb}
        diffs.append(item)
        if first is None:
            first = {k: item[k] for k in ("bar", "dt", "field", "backtest", "ib")}

    n = min(len(backtest.bars), len(ib.bars))
    for i in range(n):
        a, b = backtest.bars[i], ib.bars[i]
        if a.dt[:10] != b.dt[:10] or a.bars != b.bars:
            note("decision", i, a, "bars", {"dt": a.dt, "bars": a.bars},
                 {"dt": b.dt, "bars": b.bars})
            continue
        if a.decision != b.decision:
            note("decision", i, a, "decision", a.decision, b.decision)
        oa, ob = a.orders + a.adopted, b.orders + b.adopted
        if not _orders_match(oa, ob, tolerance):
            note("order", i, a, "orders", oa, ob)
        fa, fb = _fills_net(a.fills), _fills_net(b.fills)
        if fa.keys() != fb.keys() or not all(
                all(_close(x, y, tolerance) for x, y in zip(fa[k], fb[k], strict=True))
                for k in fa):
            note("fill", i, a, "fills", a.fills, b.fills)
        if a.position != b.position:
            note("position", i, a, "position", a.position, b.position)
        max_value = max(max_value, abs(a.value - b.value))
        max_cash = max(max_cash, abs(a.cash - b.cash))
        if first is None and not _close(a.value, b.value, tolerance):
            first = {"bar": i, "dt": a.dt[:10], "field": "value", "backtest": a.value,
                     "ib": b.value}
    if len(backtest.bars) != len(ib.bars) and first is None:
        first = {"bar": n, "dt": None, "field": "bar count",
                 "backtest": len(backtest.bars), "ib": len(ib.bars)}
    return ParityReport(
        bars=n, bars_backtest=len(backtest.bars), bars_ib=len(ib.bars),
        orders_backtest=len(backtest.orders()), orders_ib=len(ib.orders()),
        fills_backtest=len(backtest.fills()), fills_ib=len(ib.fills()),
        decision_diffs=counts["decision"], order_diffs=counts["order"],
        fill_diffs=counts["fill"], position_diffs=counts["position"],
        max_value_diff=round(max_value, 6), max_cash_diff=round(max_cash, 6),
        tolerance=tolerance, first_divergence=first, diffs=diffs,
        meta={"backtest": backtest.meta, "ib": ib.meta},
        timeline=timeline_of(backtest.bars, ib.bars))
