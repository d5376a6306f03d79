"""The status lines a paper/live run says from its audit records (the CLI prints them)."""

from __future__ import annotations

from typing import Any


def audit_line(record: dict[str, Any]) -> str | None:
    """Return the one short status line of an audit ``record``: a decision, an order sent,
    refused or withheld, a fill; None for every other record."""
    kind = record.get("kind")
    if kind == "decision":
        return (f"decision {record.get('bar', '')}: {record.get('side')} "
                f"{float(record.get('quantity') or 0):g} {record.get('symbol')} "
                f"(position {float(record.get('position') or 0):g}, equity "
                f"{float(record.get('equity') or 0):,.2f})")
    if kind == "order" and record.get("status") in ("sent", "refused", "withheld"):
        why = f": {record.get('reason')}" if record.get("reason") else ""
        return f"order {record.get('orderRef')}: {record.get('status')}{why}"
    if kind == "fill":
        return (f"fill {record.get('side')} {float(record.get('shares') or 0):g} "
                f"{record.get('symbol')} @ {float(record.get('price') or 0):g}")
    return None


__all__ = ["audit_line"]
