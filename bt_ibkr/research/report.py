"""The HTML summary of a sweep: a heatmap of one metric over two params, the top-N table, the
equity curves of the best tasks and the failed tasks. One self-contained file (PNG charts are
embedded), written by :func:`write_sweep_report`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bt_ibkr.redaction import write_text
from bt_ibkr.research.results import read_returns
from bt_ibkr.research.tasks import TaskResult

__all__ = ["heatmap_axes", "heatmap_table", "rank", "write_sweep_report"]

_LOWER_IS_BETTER = {"volatility"}
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#263238}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px}
p.sub{color:#607d8b;margin-top:0} table{border-collapse:collapse;font-size:12px}
th,td{border-bottom:1px solid #eceff1;padding:4px 8px;text-align:right}
th{background:#f5f7f8} td.l,th.l{text-align:left} img{max-width:100%}
"""


def _fmt(v: Any) -> str:
    return json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v)


def _score(r: TaskResult, metric: str) -> float:
    """Higher is better; a NaN metric scores -inf."""
    v = r.metric(metric)
    if metric in _LOWER_IS_BETTER:
        return -v if np.isfinite(v) else float("-inf")
    return v


def rank(results: Sequence[TaskResult], metric: str) -> list[TaskResult]:
    """Return the successful results, best first by ``metric`` (ties: lower task id first).

    Higher is better except for volatility; NaN metrics rank last.
    """
    ok = [r for r in results if r.ok]
    return sorted(ok, key=lambda r: (-_score(r, metric), r.task_id))


def heatmap_axes(grid: dict[str, list[Any]]) -> tuple[str | None, str | None]:
    """Return (x, y) params of the heatmap: the first two grid params with > 1 value.

    (x, None) when only one param varies, (None, None) when none does.
    """
    varying = [k for k, v in grid.items() if len(v) > 1]
    return (varying[0] if varying else None, varying[1] if len(varying) > 1 else None)


def heatmap_table(results: Sequence[TaskResult], grid: dict[str, list[Any]], metric: str,
                  x: str, y: str | None) -> pd.DataFrame:
    """Return the mean of ``metric`` over successful tasks per (y, x) cell, in grid order.

    Other varying params and symbol sets are averaged; a cell whose tasks all failed is NaN.
    """
    xs = [_fmt(v) for v in grid[x]]
    ys = [_fmt(v) for v in grid[y]] if y else ["all"]
    table = pd.DataFrame(np.nan, index=ys, columns=xs)
    cells: dict[tuple[str, str], list[float]] = {}
    for r in results:
        if not r.ok or x not in r.params:
            continue
        value = getattr(r, metric)
        if value is None or not np.isfinite(value):
            continue
        key = (_fmt(r.params[y]) if y else "all", _fmt(r.params[x]))
        cells.setdefault(key, []).append(float(value))
    for (yy, xx), vals in cells.items():
        if yy in table.index and xx in table.columns:
            table.loc[yy, xx] = float(np.mean(vals))
    return table


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _heatmap_png(table: pd.DataFrame, metric: str, x: str, y: str | None) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    data = table.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(min(12, 2 + 1.1 * data.shape[1]), min(9, 1.6 + 0.6 * data.shape[0])))
    finite = data[np.isfinite(data)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    cmap = "RdYlGn_r" if metric in _LOWER_IS_BETTER else "RdYlGn"
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(data.shape[1]), list(table.columns))
    ax.set_yticks(range(data.shape[0]), list(table.index))
    ax.set_xlabel(x)
    ax.set_ylabel(y or "")
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            text = "failed" if not np.isfinite(data[i, j]) else f"{data[i, j]:.3g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(f"{metric} by {x}" + (f" x {y}" if y else ""))
    fig.tight_layout()
    return _png(fig)


def _curves_png(curves: dict[str, pd.Series]) -> str:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    for label, returns in curves.items():
        growth = (1.0 + returns.sort_index()).cumprod()
        ax.plot(growth.index, growth.to_numpy(), linewidth=1.0, label=label)
    ax.set_title("Growth of 1 (best tasks)")
    ax.grid(alpha=0.2)
    ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    return _png(fig)


def _params_text(r: TaskResult) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in r.params.items()) or "(defaults)"


def _top_table(best: list[TaskResult], varying: list[str]) -> str:
    cols = ["#", "task", *varying, "symbols", "Sharpe", "CAGR", "max DD", "vol", "Sortino",
            "Calmar", "trades", "final value"]
    head = "".join(f"<th class='l'>{html.escape(c)}</th>" if c in varying or c == "symbols"
                   else f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for i, r in enumerate(best, 1):
        cells = [str(i), str(r.task_id)]
        cells += [html.escape(_fmt(r.params.get(k))) for k in varying]
        cells += [html.escape(",".join(r.symbols)), f"{r.sharpe:.3f}", f"{r.cagr:.2%}",
                  f"{r.max_drawdown:.2%}", f"{r.volatility:.2%}", f"{r.sortino:.3f}",
                  f"{r.calmar:.3f}", str(r.trades), f"{r.final_value:,.2f}"]
        tds = "".join(
            f"<td class='l'>{c}</td>" if 2 <= k < 3 + len(varying) else f"<td>{c}</td>"
            for k, c in enumerate(cells)
        )
        rows.append(f"<tr>{tds}</tr>")
    return f"<table id='top'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _failed_table(failed: list[TaskResult]) -> str:
    rows = "".join(
        f"<tr><td>{r.task_id}</td><td class='l'>{html.escape(_params_text(r))}</td>"
        f"<td class='l'>{html.escape(','.join(r.symbols))}</td>"
        f"<td class='l'>{html.escape(r.error or '')}</td></tr>"
        for r in failed
    )
    return (
        "<table id='failed'><thead><tr><th>task</th><th class='l'>params</th>"
        f"<th class='l'>symbols</th><th class='l'>error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def write_sweep_report(
    results: Sequence[TaskResult],
    returns_path: Path | str,
    output: Path | str,
    *,
    grid: dict[str, list[Any]],
    metric: str = "sharpe",
    top: int = 10,
    curves: int = 5,
    title: str = "Parameter sweep",
    subtitle: str = "",
) -> Path:
    """Write the sweep's HTML summary to ``output`` and return its path.

    ``returns_path`` is the ``returns.parquet`` of the sweep (the best ``curves`` tasks' equity
    curves are read from it). The heatmap shows the mean ``metric`` over the first two grid
    params that vary (see heatmap_axes); the table lists the ``top`` tasks by ``metric``.
    """
    from analyzers.tearsheet import quiet_reporting

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    ranked = rank(results, metric)
    failed = [r for r in results if not r.ok]
    varying = [k for k, v in grid.items() if len(v) > 1]
    parts = [f"<h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>"]
    with quiet_reporting():
        x, y = heatmap_axes(grid)
        if x is not None and ranked:
            table = heatmap_table(results, grid, metric, x, y)
            others = [k for k in varying if k not in (x, y)]
            if len({r.symbols for r in ranked}) > 1:
                others.append("symbols")
            note = f" (mean over {', '.join(others)})" if others else ""
            parts.append(f"<h2>{html.escape(metric)} heatmap{html.escape(note)}</h2>")
            parts.append(f"<img id='heatmap' alt='heatmap' src='data:image/png;base64,"
                         f"{_heatmap_png(table, metric, x, y)}'/>")
        elif ranked:
            parts.append("<p>No grid parameter has more than one value: no heatmap.</p>")
        best = ranked[:top]
        if best:
            parts.append(f"<h2>Top {len(best)} by {html.escape(metric)}</h2>")
            parts.append(_top_table(best, varying))
            chosen = best[:curves]
            series = read_returns(returns_path, [r.task_id for r in chosen])
            labelled = {f"#{r.task_id} {_params_text(r)}": series[r.task_id]
                        for r in chosen if r.task_id in series}
            if labelled:
                parts.append("<h2>Equity curves of the best</h2>")
                parts.append(f"<img id='curves' alt='equity curves' src='data:image/png;base64,"
                             f"{_curves_png(labelled)}'/>")
        else:
            parts.append("<p><b>Every task failed</b>; see below.</p>")
    if failed:
        parts.append(f"<h2>Failed tasks ({len(failed)})</h2>")
        parts.append(_failed_table(failed))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        + "".join(parts) + "</body></html>"
    )
    return write_text(page, output)  # the environment's secrets masked
