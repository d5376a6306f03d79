"""What a paper/live run did: :class:`LiveResult`, built from the journal, the broker and the
store when the run ends (:func:`assemble_result`), and the outputs written from it
(:func:`write_outputs`: the ``--json`` summary, the ``--report`` tearsheet)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bt_ibkr.errors import ConfigError
from bt_ibkr.live.audit import audit_path
from bt_ibkr.live.config import LiveConfig
from bt_ibkr.live.journal import REJECTED, Journal
from bt_ibkr.live.options import RunOptions
from bt_ibkr.live.reconcile import ReconcileReport
from bt_ibkr.masking import Redactor


@dataclass
class LiveResult:
    """What a run did. ``to_summary()`` is the ``--json`` document."""

    account: str
    mode: str
    run_mode: str
    run_id: str
    orders: list[dict[str, Any]]
    positions: dict[str, float]
    equity: float
    cash: float
    reconcile: dict[str, Any]
    stopped_by: str
    read_only: bool
    journal: str
    audit: str
    equity_file: str
    report: str | None = None
    report_message: str = ""
    regime: str | None = None
    halted: bool = False
    needs_attention: list[str] = field(default_factory=list)
    started: str = ""
    ended: str = ""
    session_dir: str | None = None  # the session record (bt_ibkr.records.sessions)

    def to_summary(self) -> dict[str, Any]:
        """Return the JSON-able run summary (account, orders, positions, equity, ...)."""
        return json.loads(json.dumps(asdict(self), default=str))


def _orders(broker, journal: Journal, run_id: str) -> dict[str, dict[str, Any]]:
    """This run's orders (and the earlier ones it followed) by orderRef, from the journal and
    the broker's records."""
    orders: dict[str, dict[str, Any]] = {}
    for rec in journal.intents():
        if rec.run_id == run_id or rec.order_ref in broker.records:
            orders[rec.order_ref] = {
                "orderRef": rec.order_ref, "symbol": rec.symbol, "side": rec.side,
                "quantity": rec.quantity, "status": rec.status, "filled": rec.filled,
                "avg_price": rec.avg_price, "order_id": rec.order_id,
                "decision_time": str(rec.decision_time),
            }
    for ref, info in broker.records.items():
        if ref in orders and info.get("reason"):
            orders[ref]["reason"] = info["reason"]
        if ref not in orders:
            orders[ref] = {"orderRef": ref, "symbol": info.get("symbol"),
                           "side": info.get("side"), "quantity": info.get("quantity"),
                           "status": info.get("status")}
            if info.get("reason"):  # refused before the journal saw it (a risk gate)
                orders[ref]["reason"] = info["reason"]
        elif info.get("duplicate_skipped"):
            orders[ref]["duplicate_skipped"] = True
    return orders


def _attention(orders: dict[str, dict[str, Any]], broker, journal: Journal,
               report: ReconcileReport) -> list[str]:
    """The ``!!`` lines of the run: reconcile findings, rejected orders, overfills, a run whose
    every decision an earlier working order blocked, a daily-loss halt."""
    attention = [line for line in report.summary().splitlines() if line.startswith("!!")]
    for order in orders.values():
        if order.get("status") == REJECTED:
            attention.append(f"!! REJECTED order {order['orderRef']}: "
                             f"{order.get('reason') or 'rejected by the gateway'}; check "
                             "the order in TWS (permissions, margin, price) before the "
                             "next run")
    for rec in journal.intents():
        if rec.filled > rec.quantity + 1e-9:
            attention.append(f"!! OVERFILL {rec.order_ref}: {rec.filled:g} filled of "
                             f"{rec.quantity:g} {rec.symbol}; check the position in TWS")
    refused = [o for o in orders.values() if o.get("status") == "refused"]
    if orders and len(refused) == len(orders) and any(
            "still working at the gateway" in str(o.get("reason") or "") for o in refused):
        attention.append("!! every decision of this run was refused because an earlier "
                         "order still works at the gateway (see the orders above): check it "
                         "in TWS; the run traded nothing")
    if broker.halt_announced and broker.gate is not None:
        attention.append(f"!! {broker.gate.halt_reason}")
    return attention


def assemble_result(cfg: LiveConfig, strat, store, broker, journal: Journal, account: str,
                    run_id: str, report: ReconcileReport, stopped_by: str,
                    session_dir: Path | None) -> LiveResult:
    """Return the LiveResult of the run ``run_id`` (the broker's last events processed first):
    its orders, the account's positions (empty when disconnected), equity and cash, the
    reconcile report and every line that needs the operator's attention."""
    broker.process_events()
    orders = _orders(broker, journal, run_id)
    positions = store.holdings(account) if store.connected() else {}
    return LiveResult(
        account=account, mode=cfg.mode, run_mode=cfg.run_mode, run_id=run_id,
        orders=list(orders.values()), positions=positions,
        equity=float(store.get_acc_value()), cash=float(store.get_acc_cash()),
        reconcile=report.to_dict(), stopped_by=stopped_by,
        read_only=cfg.read_only, journal=str(cfg.paths.journal),
        audit=str(audit_path(cfg.paths.logs)), equity_file=str(cfg.paths.equity),
        regime=getattr(strat, "regime", None), halted=bool(broker.halt_announced),
        needs_attention=_attention(orders, broker, journal, report),
        session_dir=str(session_dir or "") or None,
    )


def write_outputs(result: LiveResult, cfg: LiveConfig, options: RunOptions, records,
                  redactor: Redactor, say: Callable[[str], None]) -> None:
    """Write the tearsheet (``options.report_path``: this journal's session records
    ``records`` only, of this run's kind) and the JSON summary (``options.json_path``, masked
    by ``redactor``); fill ``result.report`` / ``result.report_message``; say what was written.

    Raises:
        OSError: a file cannot be written (the error names it).
    """
    if options.report_path is not None:
        # parity: the tearsheet is built from the recorded sessions of this journal
        from bt_ibkr.records.sessions import sessions_root
        from bt_ibkr.records.tearsheet import write_live_tearsheet

        try:
            out, rests_on = write_live_tearsheet(
                sessions_root(Path(cfg.paths.journal).parent), options.report_path,
                title=f"bt_ibkr {result.mode} run {result.account}", records=records,
                selection=replace(options.report_select, simulated=options.simulate))
            result.report = str(out)
            result.report_message = f"tearsheet: {out} ({rests_on})"
        except (ValueError, FileNotFoundError, ConfigError) as exc:  # ConfigError: none yet
            result.report_message = (f"no tearsheet yet: {exc} (the equity curve grows by "
                                     "one point per live bar across runs)")
        except OSError as exc:
            raise _named(exc, options.report_path) from exc
        say(result.report_message)
    if options.json_path is not None:
        try:
            options.json_path.parent.mkdir(parents=True, exist_ok=True)
            options.json_path.write_text(json.dumps(redactor(result.to_summary()), indent=2),
                                         encoding="utf-8")
        except OSError as exc:
            raise _named(exc, options.json_path) from exc
        say(f"summary: {options.json_path}")


def _named(exc: OSError, path: Path) -> OSError:
    """``exc`` when it names its file, else the same OS error naming ``path`` (a write to an
    open file fails without one)."""
    if exc.filename:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


__all__ = ["LiveResult", "assemble_result", "write_outputs"]
