"""HTML pieces bt_ibkr adds to the quantstats tearsheet: run summary, EOY chart, regimes, ablation.

Charts are inline SVG with real ``<text>`` labels (sharp at any zoom, readable by tests), sized
for the report's 960-pixel column and scaled by their viewBox, never stretched.

The EOY chart replaces quantstats' own: with pandas 3, ``DataFrame.plot(kind="bar")`` on a
year-end DatetimeIndex puts the bars at period ordinals (1999 -> x=29) while quantstats labels
ticks 0..n-1, so its years are wrong (ranaroussi/quantstats#518 and its pandas-3 variant).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analyzers.regime import RegimeReport
from bt_ibkr.metrics import yearly_returns

__all__ = [
    "REGIME_COLORS",
    "ablation_section",
    "eoy_chart",
    "eoy_chart_svg",
    "regime_section",
    "summary_table",
    "svg_of",
]

REGIME_COLORS = {
    "bull_quiet": "#2e7d32",
    "bull_volatile": "#9ccc65",
    "range": "#bdbdbd",
    "bear_quiet": "#ffb74d",
    "crisis": "#c62828",
    "warmup": "#eceff1",
}
STRATEGY_COLOR = "#348dc1"  # quantstats' palette: strategy blue, benchmark yellow
BENCHMARK_COLOR = "#fedd78"
_WIDTH_IN = 9.6  # 960 px at 100 dpi: the report container's width


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def svg_of(fig) -> str:
    """Return ``fig`` as an inline ``<svg>`` element that scales with its container.

    Text stays text (``svg.fonttype: none``); the fixed width/height attributes are dropped so
    the viewBox keeps the aspect ratio at any width. The figure is closed.
    """
    plt = _pyplot()
    buf = io.StringIO()
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.find("<svg"):]
    head_end = text.find(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    return head + ' style="width:100%;height:auto"' + text[head_end:]


def eoy_chart(returns: pd.Series, benchmark: pd.Series | None = None, *,
              strategy_title: str = "Strategy", benchmark_title: str = "Benchmark"):
    """Return a matplotlib Figure of the compounded return per calendar year.

    Bars sit at positions 0..n-1 and tick i is labelled with year i of the data (every year,
    or every k-th year when there are more than 25), so a label always names its bars.
    """
    plt = _pyplot()
    years = yearly_returns(returns)
    x = np.arange(len(years))
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)  # quantstats' chart size: same text scale
    if benchmark is not None:
        bench = yearly_returns(benchmark).reindex(years.index).fillna(0.0)
        ax.bar(x - 0.2, bench.to_numpy() * 100, width=0.4, color=BENCHMARK_COLOR,
               label=benchmark_title)
        ax.bar(x + 0.2, years.to_numpy() * 100, width=0.4, color=STRATEGY_COLOR,
               label=strategy_title)
        ax.legend(loc="upper left", fontsize=11, frameon=False)
    else:
        ax.bar(x, years.to_numpy() * 100, width=0.6, color=STRATEGY_COLOR, label=strategy_title)
    mean = float(years.mean()) * 100 if len(years) else 0.0
    ax.axhline(mean, ls="--", lw=1, color="red")
    ax.axhline(0, lw=0.8, color="black")
    step = max(1, int(np.ceil(len(years) / 25)))
    ax.set_xticks(x[::step])
    ax.set_xticklabels([str(y) for y in years.index[::step]], rotation=45, ha="right",
                       fontsize=10)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0f}%")
    ax.tick_params(axis="y", labelsize=11)
    ax.set_xlim(-0.7, len(years) - 0.3)
    ax.set_title("EOY Returns" + ("  vs Benchmark" if benchmark is not None else ""),
                 fontsize=14, fontweight="bold")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def eoy_chart_svg(returns: pd.Series, benchmark: pd.Series | None = None, **titles: str) -> str:
    """Return :func:`eoy_chart` as inline SVG, wrapped with the years in ``data-years``."""
    years = ",".join(str(y) for y in yearly_returns(returns).index)
    return f"<div class='bt-eoy' data-years='{years}'>{svg_of(eoy_chart(returns, benchmark, **titles))}</div>"


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table id='{table_id}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_table(rows: Sequence[tuple[str, str, str]], *, strategy_title: str = "Strategy",
                  benchmark_title: str = "Buy & hold", notes: Sequence[str] = ()) -> str:
    """Return the "Run summary" box: the terminal's table (metric, strategy, benchmark), then
    ``notes`` (what the figures leave out), one paragraph each."""
    cells = [[html.escape(m), html.escape(a), html.escape(b)] for m, a, b in rows]
    text = "".join(f"<p class='bt-note'>{html.escape(n)}</p>" for n in notes)
    return (
        "<div id='bt-summary'><h3>Run summary</h3>"
        + _table("summary-table", ["Metric", strategy_title, benchmark_title], cells)
        + (f"<div id='bt-notes'>{text}</div>" if text else "")
        + "</div>"
    )


def regime_section(report: RegimeReport, values: pd.Series) -> str:
    """Return the regime section: value chart shaded by regime and the by-regime table."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(_WIDTH_IN, 3.0), dpi=100)
    vals = values.copy()
    vals.index = pd.DatetimeIndex(vals.index)
    ax.plot(vals.index, vals.to_numpy(), color="#263238", linewidth=1.0)
    seen: set[str] = set()
    for start, end, label in report.segments:
        ax.axvspan(
            pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1),
            color=REGIME_COLORS.get(label, "#90a4ae"), alpha=0.35, linewidth=0,
            label=label if label not in seen else None,
        )
        seen.add(label)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:,.0f}")
    ax.set_title("Portfolio value by regime", fontsize=11, fontweight="bold")
    ax.legend(loc="upper left", fontsize=8, ncol=6, frameon=False)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    chart = svg_of(fig)

    rows = []
    for label, st in sorted(report.by_regime.items(), key=lambda kv: -kv[1].bars):
        swatch = f"<span style='color:{REGIME_COLORS.get(label, '#90a4ae')}'>&#9632;</span> "
        rows.append([
            swatch + html.escape(label), str(st.bars), f"{st.time_pct:.1%}",
            f"{st.avg_exposure:.2f}", f"{st.total_return:.2%}", f"{st.ann_return:.2%}",
            f"{st.ann_volatility:.2%}", f"{st.sharpe:.2f}", f"{st.max_drawdown:.2%}",
        ])
    table = _table(
        "regime-table",
        ["Regime", "Bars", "Time", "Avg exposure", "Return", "Ann. return", "Ann. vol",
         "Sharpe", "Max DD"],
        rows,
    )
    return (
        "<div id='regimes'><h3>Regimes</h3>"
        f"<div id='regime-chart'>{chart}</div>"
        "<h3>Performance by regime</h3>"
        "<p>The return from one bar to the next is attributed to the regime in force when the "
        "positions were decided. Max DD is the worst peak-to-trough loss inside one spell of "
        "the regime (a run of consecutive bars in it), never chained across spells, so it is "
        "never deeper than the whole run's.</p>"
        f"{table}</div>"
    )


def ablation_section(rows: Sequence[dict[str, Any]], note: str = "") -> str:
    """Return the ablation section: one row per variant (name, Sharpe, CAGR, ...)."""
    cells = [
        [
            html.escape(str(r["name"])), f"{r['sharpe']:.2f}", f"{r['cagr']:.2%}",
            f"{r['max_drawdown']:.2%}", f"{r['volatility']:.2%}", f"{r['exposure']:.2f}",
            f"{r['turnover']:.2f}",
        ]
        for r in rows
    ]
    table = _table(
        "ablation-table",
        ["Variant", "Sharpe", "CAGR", "Max DD", "Volatility", "Exposure", "Turnover"],
        cells,
    )
    extra = f"<p>{html.escape(note)}</p>" if note else ""
    return (
        "<div id='ablation'><h3>Ablation</h3>"
        "<p>Each variant over the same period and costs: the ensemble, its sleeves with static "
        "weights (no regimes), each sleeve alone, and buy-and-hold scaled to the ensemble's "
        "volatility. Exposure: mean gross exposure; turnover: traded value per year over mean "
        "equity.</p>"
        f"{extra}{table}</div>"
    )
