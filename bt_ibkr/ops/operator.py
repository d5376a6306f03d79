"""The operator's side of a run: status, metrics and alerts from what the run already records.

A run writes everything it does to its audit log (decisions, orders, fills, connection events,
risk refusals, the start and the end). :class:`Operator` listens to those records
(``AuditLog.listeners``) and to every bar (:meth:`Operator.recorder`, a backtrader analyzer),
and turns them into:

* the :class:`~bt_ibkr.ops.status.RunStatus` behind ``/healthz``, ``/metrics`` and the status
  page (:class:`~bt_ibkr.ops.http.StatusServer`, started by :meth:`Operator.serve`);
* alerts (:class:`~bt_ibkr.ops.alerts.Alerter`): the run's start and stop with its summary,
  each fill and rejection, a daily-loss halt, an account mismatch, data notes, a disconnect
  outside the gateway's restart window, a gateway not back after the window ("needs a login
  (2FA)"), a crash and any non-zero exit.

The operator never touches the IB client and never raises into the run: a failed alert or a
broken listener is logged. In service mode one Operator outlives the daily runs, so the page
and the metrics cover all of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import backtrader as bt

from bt_ibkr.ib.restart_window import RestartWindow
from bt_ibkr.ops.alerts import Alert, Alerter
from bt_ibkr.ops.status import RunStatus, health

__all__ = ["Operator"]

log = logging.getLogger("bt_ibkr.ops")

JOURNAL_BEHIND_AFTER = 30.0
"""Seconds an order may stay journaled-but-unacknowledged before the health says so."""

LOGIN_GRACE = timedelta(minutes=10)
"""How long after the restart window (or after a disconnect outside it) a gateway may stay
away before the alert says it needs a login."""


class Operator:
    """Status, metrics and alerts of one run, or of a service's runs (module docstring).

    Args:
        alerter: where alerts go (None: an Alerter with no URL, which only logs).
        restart_window: the gateway's daily restart window (None: every disconnect alerts).
        clock: the current UTC time (tests pass their own).
        login_grace: see :data:`LOGIN_GRACE`.
    """

    def __init__(self, alerter: Alerter | None = None, *,
                 restart_window: RestartWindow | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 login_grace: timedelta = LOGIN_GRACE) -> None:
        self.alerter = alerter if alerter is not None else Alerter([])
        self.status = RunStatus()
        self.restart_window = restart_window
        self.clock = clock
        self.login_grace = login_grace
        self.server = None
        self.metrics = None
        self._lost_at: datetime | None = None
        self._login_alerted = False
        self._stale_alerted: set[str] = set()
        self._last_bar_mono: float | None = None
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._journal = None

    # ------------------------------------------------------------------ the journal
    def attach_journal(self, journal) -> None:
        """Read working orders and order counts from ``journal`` (None: detach; the runner
        detaches before it closes the journal)."""
        self._journal = journal

    def snapshot(self) -> RunStatus:
        """Return the status with the journal's orders brought up to date (the page, the
        health and the metrics read this)."""
        journal = self._journal
        if journal is not None:
            try:
                self._from_journal(journal)
            except Exception:  # noqa: BLE001 - a closed journal between runs: keep the last
                log.debug("operator: journal not readable", exc_info=True)
        return self.status

    def _from_journal(self, journal) -> None:
        from bt_ibkr.live.intents import INTENT, OPEN_STATUSES, SENT

        intents = journal.intents()
        states: dict[str, int] = {}
        for rec in intents:
            states[rec.status] = states.get(rec.status, 0) + 1
        working = [{"orderRef": r.order_ref, "symbol": r.symbol, "side": r.side,
                    "quantity": r.quantity, "filled": r.filled, "status": r.status}
                   for r in intents if r.status in OPEN_STATUSES]
        now = self.clock()
        behind = sum(1 for r in intents if r.status in (INTENT, SENT) and r.updated is not None
                     and (now - r.updated).total_seconds() > JOURNAL_BEHIND_AFTER)
        # the positions as the journal has them (its own, fills included the moment they are
        # journaled); the bars refresh equity and cash
        self.status.update(orders_by_state=states, working_orders=working,
                           journal_behind=behind,
                           positions={**{sym: 0.0 for sym in self.status.symbols},
                                      **journal.positions()})

    # ------------------------------------------------------------------ alerts
    def alert(self, kind: str, title: str, body: str = "", level: str = "info",
              key: str = "") -> str:
        """Send an alert (see :meth:`Alerter.send`) and keep it for the status page."""
        outcome = self.alerter.send(Alert(kind, title, body, level, key))
        self.status.update(alerts=self.alerter.recent(10))
        return outcome

    # ------------------------------------------------------------------ the audit stream
    def on_audit(self, record: dict[str, Any]) -> None:
        """Take one audit record (an ``AuditLog`` listener); never raises."""
        try:
            self._on_audit(record)
        except Exception:  # noqa: BLE001 - the operator must never stop the run
            log.exception("operator: audit record %s not handled", record.get("kind"))

    def _on_audit(self, r: dict[str, Any]) -> None:  # noqa: C901 - one branch per record kind
        kind, event = r.get("kind"), r.get("event")
        s = self.status
        if kind == "run" and event == "start":
            s.update(mode=str(r.get("mode") or ""), run_mode=str(r.get("run_mode") or ""),
                     halt=None, started=self.clock())
        elif kind == "run" and event == "end":
            stopped = r.get("stopped_by", "")
            if stopped == "error":
                self.alert("crash", f"run stopped on an error: {r.get('error', '')}",
                           level="failure")
            else:
                pos = r.get("positions") or {}
                held = ", ".join(f"{k} {v:g}" for k, v in sorted(pos.items()) if v) or "flat"
                self.alert("stop", f"run stopped ({stopped}): {r.get('orders', 0)} order(s), "
                           f"equity {float(r.get('equity') or 0):,.2f}, positions: {held}",
                           key=f"stop:{s.run_id}")
        elif kind == "run" and event == "refused":
            self.alert("refused", f"run refused: {r.get('reason', '')}", level="failure")
        elif kind == "connection":
            self._on_connection(event, r)
        elif kind == "decision":
            s.add_decision({"bar": r.get("bar", ""), "symbol": r.get("symbol", ""),
                            "side": r.get("side", ""), "quantity": r.get("quantity", 0),
                            "outcome": "decided"})
        elif kind == "order":
            status = str(r.get("status") or "")
            if status == "sent" and self._last_bar_mono is not None and self.metrics:
                self.metrics.bar_to_order.observe(time.monotonic() - self._last_bar_mono)
            if status in ("rejected", "inactive"):
                self.alert("rejection", f"order {r.get('orderRef')} rejected: "
                           f"{r.get('reason') or r.get('ib_status') or ''}", level="failure",
                           key=f"reject:{r.get('orderRef')}")
            elif status in ("refused",) and r.get("working"):
                s.add_decision({"bar": "", "symbol": r.get("symbol", ""),
                                "side": r.get("side", ""), "quantity": r.get("quantity", 0),
                                "outcome": f"refused: {r.get('reason', '')[:80]}"})
        elif kind == "fill":
            s.add_fill({"time": str(r.get("time") or r.get("ts") or "")[:19],
                        "symbol": r.get("symbol", ""), "side": r.get("side", ""),
                        "shares": float(r.get("shares") or 0), "price": float(r.get("price") or 0),
                        "orderRef": r.get("orderRef", "")})
            self.alert("fill", f"{r.get('side')} {float(r.get('shares') or 0):g} "
                       f"{r.get('symbol')} @ {float(r.get('price') or 0):g} ({r.get('orderRef')})",
                       level="success", key=f"fill:{r.get('execId')}")
        elif kind == "risk" and event == "daily_loss_halt":
            s.update(halt=str(r.get("reason") or "daily-loss halt"))
            self.alert("halt", f"daily-loss halt: {r.get('reason', '')}", level="failure")
        elif kind == "risk" and event == "halt_lifted":
            s.update(halt=None)
        elif kind == "data":
            self.alert("data", f"data: {r.get('note', '')}", level="warning")
        elif kind in ("alert", "safety"):
            self.alert(str(r.get("event") or kind), str(r.get("message") or r.get("reason")
                                                        or r.get("text") or kind),
                       level="failure")
        elif kind == "error":
            self.alert("error", f"{r.get('event', 'error')}: {r.get('error', '')}",
                       level="warning")

    def _on_connection(self, event: str | None, r: dict[str, Any]) -> None:
        s = self.status
        now = self.clock()
        if event in ("connected", "reconnected"):
            was_alerted = self._login_alerted or (self._lost_at is not None
                                                  and not self._expected(self._lost_at))
            s.update(connected=True, connection_note="", expected_outage=False)
            if event == "connected" and r.get("accounts"):
                s.update(account=str((r.get("accounts") or [""])[0]))
            if was_alerted:
                away = (now - self._lost_at).total_seconds() / 60 if self._lost_at else 0
                self.alert("reconnected", f"gateway back after {away:.0f} min", key="reconnect")
            with self._lock:
                self._lost_at, self._login_alerted = None, False
        elif event == "lost":
            expected = self._expected(now)
            with self._lock:
                self._lost_at = now
            s.update(connected=False, expected_outage=expected,
                     connection_note="inside the restart window" if expected else "lost")
            if not expected:
                self.alert("disconnect", "lost the connection to the gateway outside its "
                           "restart window; reconnecting", level="warning", key="disconnect")
        elif event == "gave_up":
            s.update(connected=False, connection_note="gave up reconnecting")
            self.alert("disconnect", "gave up reconnecting to the gateway", level="failure")

    def _expected(self, when: datetime) -> bool:
        return self.restart_window is not None and self.restart_window.contains(when)

    # ------------------------------------------------------------------ periodic checks
    def tick(self, now: datetime | None = None) -> None:
        """Run the time-based checks once: a gateway away too long (needs a login), a stale
        feed. Called every few seconds by :meth:`serve`'s ticker (tests call it directly)."""
        now = now or self.clock()
        with self._lock:
            lost = self._lost_at
        if lost is not None and not self._login_alerted:
            if self._expected(lost) and self.restart_window is not None:
                due = self.restart_window.closes_after(lost) + self.login_grace
            else:
                due = lost + self.login_grace
            if now >= due:
                self._login_alerted = True
                self.alert("gateway_login", "the gateway needs a login (2FA): it has not come "
                           f"back since {lost:%Y-%m-%d %H:%M} UTC", level="failure",
                           key="gateway_login")
        h = health(self.snapshot(), now)
        for reason in h.reasons:
            if not reason.startswith("stale feed"):
                continue
            feed = reason.split()[2]  # "stale feed <name> (no bar for ...)"
            if feed not in self._stale_alerted:
                self._stale_alerted.add(feed)
                self.alert("stale_data", reason, level="warning", key=f"stale:{feed}")

    # ------------------------------------------------------------------ bars
    def recorder(self) -> type:
        """Return a backtrader Analyzer class that reports every bar, the equity, cash and
        regime to this operator (add it to the run's Cerebro). Positions are the journal's
        (:meth:`snapshot`), the one source the page and the metrics read them from."""
        operator = self

        class StatusRecorder(bt.Analyzer):
            def start(self):
                self._seen: dict[str, int] = {}

            def next(self):
                s = operator.status
                now = operator.clock()
                for i, d in enumerate(self.strategy.datas):
                    name = d._name or f"data{i}"
                    if len(d) != self._seen.get(name):
                        self._seen[name] = len(d)
                        s.bar(name, now)
                operator._last_bar_mono = time.monotonic()
                broker = self.strategy.broker
                s.update(equity=float(broker.getvalue()), cash=float(broker.getcash()),
                         regime=getattr(self.strategy, "regime", None))

            def get_analysis(self):
                return {}

        return StatusRecorder

    # ------------------------------------------------------------------ the HTTP port
    def serve(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
              tick_every: float = 5.0) -> str:
        """Start the status/health/metrics port and the periodic checks; return its URL.

        Raises ConfigError: a non-loopback host without a token, a port that cannot be bound.
        """
        from bt_ibkr.ops.http import StatusServer
        from bt_ibkr.ops.metrics import RunMetrics

        self.metrics = RunMetrics(self.snapshot)
        self.server = StatusServer(self.snapshot, host, port, token,
                                   metrics=self.metrics).start()
        self.start_ticker(tick_every)
        return self.server.url

    def start_ticker(self, every: float = 5.0) -> None:
        """Run :meth:`tick` every ``every`` seconds in a daemon thread (idempotent)."""
        if self._ticker is not None:
            return

        def loop():
            while not self._stop.wait(every):
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - logged, never raised
                    log.exception("operator tick failed")

        self._ticker = threading.Thread(target=loop, name="bt_ibkr-ops-tick", daemon=True)
        self._ticker.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the port and the ticker, deliver queued alerts (at most ``timeout`` s)."""
        self._stop.set()
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.alerter.close(timeout)
