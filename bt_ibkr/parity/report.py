"""The parity diff report as one self-contained HTML page.

``write_html(report, path)`` writes a summary table (bars, orders and fills per path, diff
counts, max value difference, first divergence) and the first 200 differing bars with both
sides' values, the environment's secrets masked (a journal or session path may hold one).
Returns the path; raises OSError when it cannot be written.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from bt_ibkr.parity.diff import ParityReport
from bt_ibkr.redaction import write_text

_CSS = """body{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;text-align:left}th{background:#f4f4f4}.ok{color:#070}.bad{color:#b00}
pre{margin:0;white-space:pre-wrap;max-width:420px;font-size:12px}"""

SUMMARY_FIELDS = ("bars", "bars_backtest", "bars_ib", "orders_backtest", "orders_ib",
                  "fills_backtest", "fills_ib", "decision_diffs", "order_diffs", "fill_diffs",
                  "position_diffs", "max_value_diff", "max_cash_diff", "tolerance")


def _pre(value) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=1, default=str))}</pre>"


def render_html(report: ParityReport, title: str = "Parity: backtest vs IB") -> str:
    """Return the report page as a string."""
    ok = report.decisions_match
    verdict = ("decisions match" if ok else "decisions DIVERGE")
    rows = "".join(f"<tr><th>{f}</th><td>{html.escape(str(getattr(report, f)))}</td></tr>"
                   for f in SUMMARY_FIELDS)
    first = report.first_divergence
    first_html = "none" if first is None else _pre(first)
    diff_rows = "".join(
        f"<tr><td>{d['bar']}</td><td>{d['dt']}</td><td>{d['kind']}</td><td>{d['field']}</td>"
        f"<td>{_pre(d['backtest'])}</td><td>{_pre(d['ib'])}</td></tr>"
        for d in report.diffs[:200])
    meta = _pre(report.meta)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>
<p class="{'ok' if ok else 'bad'}"><b>{verdict}</b></p>
<table>{rows}</table><h2>First divergence</h2>{first_html}
<h2>Differences ({len(report.diffs)}, first 200)</h2>
<table><tr><th>bar</th><th>date</th><th>kind</th><th>field</th><th>backtest</th><th>IB</th></tr>
{diff_rows}</table><h2>Runs</h2>{meta}</body></html>"""


def write_html(report: ParityReport, path: Path, title: str = "Parity: backtest vs IB") -> Path:
    """Write :func:`render_html` to ``path`` (parents created, the environment's secrets
    masked: :func:`bt_ibkr.redaction.write_text`); return ``path``."""
    return write_text(render_html(report, title), path)
