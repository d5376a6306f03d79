"""The trading day's bookkeeping: start-of-day equity and the daily-loss halt, across restarts.

A run belongs to one exchange session (:func:`bt_ibkr.calendars.risk_session` on the
gateway's clock: the session open then, else the next one). The first run of that session writes the start-of-day equity into the journal, later
runs reuse it, so a restart cannot move the daily-loss floor; a halt recorded during the
session holds for every later run of it until the session ends or the operator lifts it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from bt_ibkr.live.audit import AuditLog
from bt_ibkr.live.journal import Journal
from bt_ibkr.live.risk import RiskGate


def day_start_equity(journal: Journal, account: str, run_id: str, equity: float,
                     day: date) -> float | None:
    """Return the start-of-day equity of trading day ``day`` for ``account``: the one an
    earlier run of the day recorded, else ``equity`` (recorded now); None when there is no
    positive equity to record."""
    today = str(day)
    for ev in journal.events("day_start"):
        d = ev["detail"]
        if d.get("date") == today and d.get("account") == account and d.get("equity"):
            return float(d["equity"])
    if not equity > 0:
        return None
    journal.log_event("day_start", {"date": today, "account": account, "equity": equity},
                      run_id=run_id)
    return equity


def open_day(gate: RiskGate, journal: Journal, audit: AuditLog, *, day: date, account: str,
             run_id: str, equity: float, lift_halt: bool,
             say: Callable[[str], None]) -> None:
    """Set ``gate`` up for trading day ``day``: its start-of-day equity, and a halt recorded
    earlier in the day put back in force (or lifted, audited, when ``lift_halt``); returns
    None. ``say`` gets the status line."""
    start = day_start_equity(journal, account, run_id, equity, day)
    if start:
        gate.new_day(start)
    halt = journal.halt_in_force(day, account)
    if halt and lift_halt:
        journal.lift_halt(day, account, run_id=run_id)
        audit.write("risk", event="halt_lifted", day=str(day), reason=halt, by="--lift-halt")
        say(f"daily-loss halt of {day} lifted by --lift-halt (was: {halt})")
    elif lift_halt:
        say(f"--lift-halt: no daily-loss halt in force for session {day}: nothing to lift")
    elif halt:
        gate.restore_halt(halt)
        say(f"!! daily-loss halt in force for trading day {day} (recorded by an earlier run): "
            "only orders that reduce positions go out; --lift-halt lifts it")


__all__ = ["day_start_equity", "open_day"]
