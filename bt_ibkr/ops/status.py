"""What a running paper/live run shows an operator: a snapshot, its health, and the status page.

:class:`RunStatus` is the one snapshot of a run (account, connection, the newest bar per
symbol, positions, working orders, recent fills and decisions, equity, halt, alerts) that
the runner keeps up to date; the HTTP port (:mod:`bt_ibkr.ops.http`) renders it three ways:
:func:`health` for ``/healthz``, :mod:`bt_ibkr.ops.metrics` for ``/metrics`` and
:func:`render_page` for ``/``.
"""

from __future__ import annotations

import html
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["Health", "RunStatus", "health", "render_page"]


@dataclass
class RunStatus:
    """The live state of one run, updated by the runner (thread-safe through :meth:`update`
    and :meth:`copy`)."""

    account: str = ""
    mode: str = ""
    run_mode: str = ""
    run_id: str = ""
    strategy: str = ""
    symbols: list[str] = field(default_factory=list)
    connected: bool = False
    connection_note: str = ""
    expected_outage: bool = False  # inside the gateway's restart window
    last_bar: dict[str, datetime] = field(default_factory=dict)  # symbol -> when it arrived
    bar_seconds: float = 86400.0  # the bar size: a feed is stale after 3 bars without one
    positions: dict[str, float] = field(default_factory=dict)
    working_orders: list[dict[str, Any]] = field(default_factory=list)
    orders_by_state: dict[str, int] = field(default_factory=dict)
    fills: int = 0
    recent_fills: deque = field(default_factory=lambda: deque(maxlen=20))
    recent_decisions: deque = field(default_factory=lambda: deque(maxlen=20))
    equity: float = 0.0
    cash: float = 0.0
    peak_equity: float = 0.0
    equity_curve: deque = field(default_factory=lambda: deque(maxlen=2000))
    regime: str | None = None
    halt: str | None = None
    journal_behind: int = 0  # intents journaled but not yet acknowledged by the gateway
    alerts: list[dict[str, Any]] = field(default_factory=list)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **fields: Any) -> None:
        """Set fields under the lock; an ``equity`` also extends the curve and the peak."""
        with self._lock:
            for key, value in fields.items():
                setattr(self, key, value)
            if "equity" in fields and fields["equity"]:
                self.peak_equity = max(self.peak_equity, float(fields["equity"]))
                self.equity_curve.append((datetime.now(UTC), float(fields["equity"])))

    def bar(self, symbol: str, when: datetime | None = None) -> None:
        """Record that a bar of ``symbol`` arrived (now, or ``when``)."""
        with self._lock:
            self.last_bar[symbol] = when or datetime.now(UTC)

    def add_fill(self, fill: dict[str, Any]) -> None:
        """Record a fill (for the page and the fill counter)."""
        with self._lock:
            self.fills += 1
            self.recent_fills.appendleft(fill)

    def add_decision(self, decision: dict[str, Any]) -> None:
        """Record a decision (for the page)."""
        with self._lock:
            self.recent_decisions.appendleft(decision)

    def copy(self) -> RunStatus:
        """Return a consistent copy to render from."""
        with self._lock:
            out = RunStatus(**{k: getattr(self, k) for k in self.__dataclass_fields__
                               if k != "_lock"})
            out.last_bar = dict(self.last_bar)
            out.positions = dict(self.positions)
            out.working_orders = list(self.working_orders)
            out.orders_by_state = dict(self.orders_by_state)
            out.recent_fills = deque(self.recent_fills, maxlen=20)
            out.recent_decisions = deque(self.recent_decisions, maxlen=20)
            out.equity_curve = deque(self.equity_curve, maxlen=2000)
            out.alerts = list(self.alerts)
            return out

    @property
    def drawdown(self) -> float:
        """Return the drawdown from the peak equity seen in this run (<= 0)."""
        if self.peak_equity <= 0 or self.equity <= 0:
            return 0.0
        return self.equity / self.peak_equity - 1.0

    def seconds_since_bar(self, now: datetime | None = None) -> dict[str, float | None]:
        """Return seconds since the last bar of each symbol (None: none yet)."""
        now = now or datetime.now(UTC)
        return {s: ((now - self.last_bar[s]).total_seconds() if s in self.last_bar else None)
                for s in self.symbols or sorted(self.last_bar)}


@dataclass(frozen=True)
class Health:
    """``/healthz``: ok, or degraded with the reasons."""

    ok: bool
    reasons: tuple[str, ...] = ()

    def text(self) -> str:
        """Return ``ok`` or ``degraded: reason; reason``."""
        return "ok" if self.ok else "degraded: " + "; ".join(self.reasons)


def health(status: RunStatus, now: datetime | None = None) -> Health:
    """Return the run's health: degraded when disconnected (outside an expected restart
    window too: the reason says which), a feed is stale (no bar for 3 bar lengths, at least
    5 minutes, once the run has had its first bar), halted, or intents wait for the gateway."""
    reasons = []
    if not status.connected:
        reasons.append("disconnected" + (" (inside the gateway's restart window)"
                                         if status.expected_outage else "")
                       + (f": {status.connection_note}" if status.connection_note else ""))
    limit = max(3 * status.bar_seconds, 300.0)
    for symbol, age in status.seconds_since_bar(now).items():
        if age is not None and age > limit:
            reasons.append(f"stale feed {symbol} (no bar for {age:.0f} s)")
    if status.halt:
        reasons.append(f"halted: {status.halt}")
    if status.journal_behind:
        reasons.append(f"journal behind: {status.journal_behind} order(s) not acknowledged")
    return Health(not reasons, tuple(reasons))


def _table(cls: str, head: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<p class='empty {cls}'>{html.escape(empty)}</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table class='{cls}'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _curve_svg(points: list[tuple[datetime, float]]) -> str:
    if len(points) < 2:
        return "<p class='empty'>equity curve: fewer than two points yet</p>"
    w, h = 600, 140
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    xs = [i * w / (len(points) - 1) for i in range(len(points))]
    ys = [h - 10 - (v - lo) / span * (h - 20) for v in values]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return (f"<svg id='equity' viewBox='0 0 {w} {h}' width='100%' height='{h}'>"
            f"<polyline fill='none' stroke='#348dc1' stroke-width='1.5' points='{path}'/>"
            f"<text x='4' y='12' font-size='11'>{hi:,.2f}</text>"
            f"<text x='4' y='{h - 2}' font-size='11'>{lo:,.2f}</text></svg>")


_CSS = """body{font:14px system-ui,sans-serif;margin:1.5em;max-width:1000px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.light{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.ok{background:#2e7d32}.degraded{background:#c62828}.empty{color:#777}"""


def render_page(status: RunStatus, now: datetime | None = None, refresh: int = 5) -> str:
    """Return the status page: a traffic light with the health, account and equity, the
    equity curve, positions, working orders, recent fills and decisions, regime, halt and
    recent alerts; it reloads itself every ``refresh`` seconds. Self-contained (no request
    leaves the page)."""
    now = now or datetime.now(UTC)
    h = health(status, now)
    light = (f"<span id='health' class='light {'ok' if h.ok else 'degraded'}'>"
             f"{html.escape(h.text())}</span>")
    ages = status.seconds_since_bar(now)
    feeds = [[s, f"{a:.0f} s ago" if a is not None else "no bar yet"] for s, a in ages.items()]
    orders = [[o.get("orderRef", ""), o.get("symbol", ""), o.get("side", ""),
               f"{o.get('quantity', 0):g}", f"{o.get('filled', 0):g}", o.get("status", "")]
              for o in status.working_orders]
    fills = [[f.get("time", ""), f.get("symbol", ""), f.get("side", ""),
              f"{f.get('shares', 0):g}", f"{f.get('price', 0):,.4g}", f.get("orderRef", "")]
             for f in status.recent_fills]
    decisions = [[d.get("bar", ""), d.get("symbol", ""), d.get("side", ""),
                  f"{d.get('quantity', 0):g}", d.get("outcome", "")]
                 for d in status.recent_decisions]
    alerts = [[a.get("time", ""), a.get("kind", ""), a.get("title", ""), a.get("outcome", "")]
              for a in status.alerts]
    positions = [[s, f"{q:g}"] for s, q in sorted(status.positions.items()) if q]
    title = f"bt_ibkr {status.mode} {status.account}".strip()
    return f"""<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{int(refresh)}"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)} {light}</h1>
<p id='summary'>{html.escape(status.strategy)} on {html.escape(', '.join(status.symbols))}
({html.escape(status.run_mode)}, run {html.escape(status.run_id)}) &middot; equity
<b id='equity-value'>{status.equity:,.2f}</b> &middot; cash {status.cash:,.2f} &middot;
drawdown {status.drawdown:.2%} &middot; regime {html.escape(str(status.regime or '-'))}
&middot; {'connected' if status.connected else 'DISCONNECTED'} &middot; updated
{now:%Y-%m-%d %H:%M:%S} UTC</p>
{f"<p id='halt' class='degraded light'>{html.escape(status.halt)}</p>" if status.halt else ""}
<h2>Equity</h2>{_curve_svg(list(status.equity_curve))}
<h2>Positions</h2>{_table("positions", ["symbol", "quantity"], positions, "flat")}
<h2>Working orders</h2>{_table("orders", ["orderRef", "symbol", "side", "quantity", "filled",
                                          "status"], orders, "none")}
<h2>Feeds</h2>{_table("feeds", ["symbol", "last bar"], feeds, "no feed")}
<h2>Recent fills</h2>{_table("fills", ["time", "symbol", "side", "shares", "price",
                                       "orderRef"], fills, "none yet")}
<h2>Recent decisions</h2>{_table("decisions", ["bar", "symbol", "side", "quantity",
                                               "outcome"], decisions, "none yet")}
<h2>Recent alerts</h2>{_table("alerts", ["time", "kind", "alert", "outcome"], alerts, "none")}
</body></html>"""
