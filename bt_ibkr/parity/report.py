"""The parity diff report as one self-contained HTML page.

``write_html(report, path)`` writes what was compared (the period, the symbols, the Strategy
and its params, costs), the verdict, the final value of each path, both paths' value curves
overlaid with their difference below (inline SVG), the orders of both paths side by side
around the first divergence (or the first ones when there is none), a summary table (bars,
orders and fills per path, diff counts, max value difference), and the first 200 differing
bars with both sides' values, the environment's secrets masked (a journal or session path may
hold one). Returns the path; raises OSError when it cannot be written.
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
tr.diverged td{background:#fde7e7}
pre{margin:0;white-space:pre-wrap;max-width:420px;font-size:12px}"""

SUMMARY_FIELDS = ("bars", "bars_backtest", "bars_ib", "orders_backtest", "orders_ib",
                  "fills_backtest", "fills_ib", "decision_diffs", "order_diffs", "fill_diffs",
                  "position_diffs", "max_value_diff", "max_cash_diff", "tolerance")


def _pre(value) -> str:
    return f"<pre>{html.escape(json.dumps(value, indent=1, default=str))}</pre>"


def _what(report: ParityReport) -> str:
    t = report.timeline or {}
    period = t.get("period") or [None, None]
    meta = report.meta or {}
    first_meta = (meta.get("sessions") or [meta])[0] if meta.get("sessions") else meta
    symbols = first_meta.get("symbols") or (first_meta.get("ib") or {}).get("symbols") or []
    strategy = first_meta.get("strategy", "")
    rows = [("period", f"{str(period[0])[:19]} .. {str(period[1])[:19]}"
             if period[0] else "no bars"),
            ("bars", str(t.get("bars", report.bars))),
            ("symbols", ", ".join(symbols) or "as recorded"),
            ("strategy", f"{strategy} {json.dumps(first_meta.get('params') or {})}".strip())]
    if "commission_bps" in first_meta:
        rows.append(("costs", f"commission {first_meta['commission_bps']:g} bp, slippage "
                              f"{first_meta['slippage_bps']:g} bp, cash "
                              f"{first_meta.get('cash', 0):,.0f}"))
    if meta.get("sessions"):
        rows.append(("sessions", str(len(meta["sessions"]))))
    final = t.get("final") or {}
    if final.get("backtest") is not None or final.get("ib") is not None:
        fb, fi = final.get("backtest"), final.get("ib")
        diff = (fi - fb) if fb is not None and fi is not None else None
        rows.append(("final value", f"backtest {fb:,.2f} | IB {fi:,.2f}"
                     + (f" | difference {diff:+,.2f}" if diff is not None else "")))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                   for k, v in rows)
    return f"<table id='what'>{body}</table>"


def _curves_svg(curve: list) -> str:
    """Both value curves overlaid (backtest blue, IB orange dashed) and their difference."""
    if len(curve) < 2:
        return "<p>fewer than two bars: no curve</p>"
    w, h, dh = 900, 220, 90
    bt_v = [float(p[1]) for p in curve]
    ib_v = [float(p[2]) for p in curve]
    diff = [b - a for a, b in zip(bt_v, ib_v, strict=True)]
    lo, hi = min(bt_v + ib_v), max(bt_v + ib_v)
    span = (hi - lo) or 1.0
    worst = max(abs(d) for d in diff)
    dmax = worst or 1.0  # the scale; the label says the real largest difference
    xs = [i * w / (len(curve) - 1) for i in range(len(curve))]

    def line(vals, y0, height, lo_, span_):
        return " ".join(f"{x:.1f},{y0 + height - (v - lo_) / span_ * height:.1f}"
                        for x, v in zip(xs, vals, strict=True))

    top = line(bt_v, 10, h - 20, lo, span)
    top_ib = line(ib_v, 10, h - 20, lo, span)
    bottom = line(diff, h + 10, dh - 20, -dmax, 2 * dmax)
    zero = h + 10 + (dh - 20) / 2
    first, last = str(curve[0][0])[:10], str(curve[-1][0])[:10]
    return (
        f"<svg id='curves' viewBox='0 0 {w} {h + dh}' width='100%'>"
        f"<polyline class='backtest' fill='none' stroke='#348dc1' stroke-width='1.5' "
        f"points='{top}'/>"
        f"<polyline class='ib' fill='none' stroke='#e8710a' stroke-width='1.2' "
        f"stroke-dasharray='4 3' points='{top_ib}'/>"
        f"<line x1='0' x2='{w}' y1='{zero:.1f}' y2='{zero:.1f}' stroke='#bbb'/>"
        f"<polyline class='difference' fill='none' stroke='#b00' stroke-width='1' "
        f"points='{bottom}'/>"
        f"<text x='4' y='20' font-size='12'>value {hi:,.0f}</text>"
        f"<text x='4' y='{h - 4}' font-size='12'>{lo:,.0f}</text>"
        f"<text x='4' y='{h + 22}' font-size='12'>IB - backtest (largest {worst:,.2f})</text>"
        f"<text x='4' y='{h + dh - 2}' font-size='12'>{first}</text>"
        f"<text x='{w - 80}' y='{h + dh - 2}' font-size='12'>{last}</text>"
        "</svg><p class='legend'><span style='color:#348dc1'>&#9644; backtest</span> "
        "<span style='color:#e8710a'>&#9644; IB path</span> "
        "<span style='color:#b00'>&#9644; difference</span></p>")


def _orders_table(report: ParityReport, around: int = 5, first_n: int = 20) -> str:
    """The orders of both paths side by side: around the first divergence, else the first."""
    rows = (report.timeline or {}).get("orders") or []
    if not rows:
        return "<p>no orders on either path</p>"
    first = report.first_divergence
    if first is not None and first.get("bar") is not None:
        at = int(first["bar"])
        before = [r for r in rows if r["bar"] < at][-around:]
        after = [r for r in rows if r["bar"] >= at][:around + 1]
        picked, note = before + after, (f"orders of the {around} bars with orders before and "
                                        f"after the first divergence (bar {at})")
    else:
        picked = rows[:first_n]
        note = f"the first {min(first_n, len(rows))} of {len(rows)} bars with orders"
    mark = " class='diverged'"
    body = "".join(
        f"<tr{mark if first and r['bar'] == first.get('bar') else ''}>"
        f"<td>{r['bar']}</td><td>{html.escape(str(r['dt'])[:19])}</td>"
        f"<td>{html.escape('; '.join(r['backtest']) or '-')}</td>"
        f"<td>{html.escape('; '.join(r['ib']) or '-')}</td></tr>" for r in picked)
    return (f"<p>{html.escape(note)}</p><table id='orders'><tr><th>bar</th><th>time</th>"
            f"<th>backtest orders</th><th>IB orders</th></tr>{body}</table>")


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
<h2>What was compared</h2>{_what(report)}
<h2>Value of both paths</h2>{_curves_svg((report.timeline or {}).get("curve") or [])}
<h2>Orders side by side</h2>{_orders_table(report)}
<h2>Counts</h2><table>{rows}</table><h2>First divergence</h2>{first_html}
<h2>Differences ({len(report.diffs)}, first 200)</h2>
<table><tr><th>bar</th><th>date</th><th>kind</th><th>field</th><th>backtest</th><th>IB</th></tr>
{diff_rows}</table><h2>Runs</h2>{meta}</body></html>"""


def write_html(report: ParityReport, path: Path, title: str = "Parity: backtest vs IB") -> Path:
    """Write :func:`render_html` to ``path`` (parents created, the environment's secrets
    masked: :func:`bt_ibkr.redaction.write_text`); return ``path``."""
    return write_text(render_html(report, title), path)
